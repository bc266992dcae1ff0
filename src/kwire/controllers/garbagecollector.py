"""Garbage collection by ownerReferences, with upstream's semantics.

- Background: once every owner of an object is gone, the object is deleted
  (an object with at least one live owner stays; references to the missing
  owners are removed from it).
- Foreground: an owner being deleted with the "foregroundDeletion" finalizer
  has its dependents deleted; once no dependent that blocks it
  (blockOwnerDeletion) is left, the finalizer is removed and the API server
  completes the deletion.
- Orphan: an owner being deleted with the "orphan" finalizer has its
  references removed from its dependents, then the finalizer is removed.

How: one shared informer per deletable, watchable resource from discovery
feeds an ownership Graph (uid -> owners and dependents). Graph updates are
pure and synchronous (informer handlers); they name the uids to look at, which
go to two work queues. Workers decide with the pure plan_* functions below,
from the object's latest state (a GET) and from its owners' states: the graph
answers "owner exists" cheaply, but "owner is gone" is always confirmed with a
GET (or a remembered confirmed absence), because deleting is irreversible
while the graph may lag behind the server. Every delete carries a uid
precondition and every patch a resourceVersion, so racing writers only cause
retries, never wrong deletions.
"""
from __future__ import annotations

import asyncio
import enum
import functools
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

import aiohttp

from kwire.client import (ApiError, ApiResource, Backoff, Client, Informer, Informers,
                          WorkQueue, group_of, run_workers)

log = logging.getLogger("kwire.gc")

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
# Events are never owners worth tracking and change far too often (upstream ignores them too).
IGNORED_RESOURCES = frozenset({("", "events"), ("events.k8s.io", "events")})
ABSENT_CACHE_SIZE = 4096
ORPHAN_PATCH_CONCURRENCY = 16


# --- the graph (pure) ----------------------------------------------------------------

@dataclass
class Node:
    """An object the graph knows: observed through an informer, or "virtual"
    (only referenced as an owner so far, or already deleted while dependents
    still point at it)."""

    uid: str
    resource: ApiResource | None = None
    namespace: str = ""
    name: str = ""
    observed: bool = False
    owners: list[dict] = field(default_factory=list)
    dependents: set[str] = field(default_factory=set)
    deleting_dependents: bool = False


@dataclass
class Work:
    """The uids a graph change asks the workers to look at."""

    delete: set[str] = field(default_factory=set)
    orphan: set[str] = field(default_factory=set)


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def is_deleting_dependents(obj: dict) -> bool:
    meta = _meta(obj)
    return bool(meta.get("deletionTimestamp")) and FOREGROUND in (meta.get("finalizers") or ())


def is_orphaning(obj: dict) -> bool:
    meta = _meta(obj)
    return bool(meta.get("deletionTimestamp")) and ORPHAN in (meta.get("finalizers") or ())


class Graph:
    """Who owns whom, by uid. No I/O: every method returns the Work it implies."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def observe(self, resource: ApiResource, obj: dict) -> Work:
        """An object was added or changed."""
        meta = _meta(obj)
        uid = meta["uid"]
        work = Work()
        node = self.nodes.get(uid)
        if node is None:
            node = self.nodes[uid] = Node(uid)
        node.resource, node.observed = resource, True
        node.namespace, node.name = meta.get("namespace") or "", meta.get("name", "")
        old = {r["uid"]: r for r in node.owners}
        refs = [r for r in meta.get("ownerReferences") or () if r.get("uid")]
        new = {r["uid"]: r for r in refs}
        for owner_uid in old.keys() - new.keys():
            self._unlink(uid, owner_uid, work)
        for owner_uid in new.keys() - old.keys():
            self.nodes.setdefault(owner_uid, Node(owner_uid)).dependents.add(uid)
        for owner_uid in old.keys() & new.keys():
            if bool(old[owner_uid].get("blockOwnerDeletion")) != bool(
                    new[owner_uid].get("blockOwnerDeletion")):
                self._owner_may_proceed(owner_uid, work)
        node.owners = refs
        if any(not self.nodes[o].observed or self.nodes[o].deleting_dependents for o in new):
            work.delete.add(uid)
        deleting_dependents = is_deleting_dependents(obj)
        if deleting_dependents:
            if not node.deleting_dependents:
                work.delete |= node.dependents
            work.delete.add(uid)
        node.deleting_dependents = deleting_dependents
        if is_orphaning(obj):
            work.orphan.add(uid)
        return work

    def forget(self, uid: str) -> Work:
        """An object was deleted: its dependents must be looked at."""
        work = Work()
        node = self.nodes.get(uid)
        if node is None or not node.observed:
            return work
        for ref in node.owners:
            self._unlink(uid, ref["uid"], work)
        work.delete |= node.dependents
        if node.dependents:
            # Dependents still name it: keep it, virtual, until they let go.
            self.nodes[uid] = Node(uid, dependents=node.dependents)
        else:
            del self.nodes[uid]
        return work

    def blocking_dependents(self, uid: str) -> list[str]:
        """Dependents whose reference to uid has blockOwnerDeletion."""
        node = self.nodes.get(uid)
        if node is None:
            return []
        return sorted(d for d in node.dependents
                      if any(r["uid"] == uid and r.get("blockOwnerDeletion")
                             for r in self.nodes[d].owners))

    def _unlink(self, dependent: str, owner_uid: str, work: Work) -> None:
        owner = self.nodes.get(owner_uid)
        if owner is None:
            return
        owner.dependents.discard(dependent)
        self._owner_may_proceed(owner_uid, work)
        if not owner.observed and not owner.dependents:
            del self.nodes[owner_uid]

    def _owner_may_proceed(self, owner_uid: str, work: Work) -> None:
        """A foreground deletion may be unblocked by a dependent letting go."""
        owner = self.nodes.get(owner_uid)
        if owner is not None and owner.deleting_dependents:
            work.delete.add(owner_uid)


# --- decisions (pure) ----------------------------------------------------------------

class OwnerState(enum.Enum):
    SOLID = "solid"          # exists and is not waiting for its dependents
    DANGLING = "dangling"    # confirmed absent
    WAITING = "waiting"      # being deleted in the foreground


@dataclass(frozen=True)
class Keep:
    pass


@dataclass(frozen=True)
class RemoveOwnerRefs:
    uids: frozenset[str]


@dataclass(frozen=True)
class Delete:
    policy: str


Action = Keep | RemoveOwnerRefs | Delete


def owner_state(owner: dict) -> OwnerState:
    """The state of an owner that exists (from its object)."""
    return OwnerState.WAITING if is_deleting_dependents(owner) else OwnerState.SOLID


def deletion_policy(obj: dict) -> str:
    """How to delete an object nobody owns any more: as its own finalizers ask."""
    finalizers = _meta(obj).get("finalizers") or ()
    if ORPHAN in finalizers:
        return "Orphan"
    if FOREGROUND in finalizers:
        return "Foreground"
    return "Background"


def plan_dependent(obj: dict, states: dict[str, OwnerState], has_dependents: bool) -> Action:
    """What to do with an object given the state of each of its owners (by uid).

    A live owner keeps it (references to gone or foreground-deleting owners are
    dropped, or those would wait on it forever); with no live owner it is
    deleted, in the foreground when a foreground-deleting owner waits for it and
    it has dependents of its own (so the wait propagates down the tree).
    """
    refs = [r for r in _meta(obj).get("ownerReferences") or () if r.get("uid") in states]
    if not refs:
        return Keep()
    by_state: dict[OwnerState, set[str]] = {s: set() for s in OwnerState}
    for r in refs:
        by_state[states[r["uid"]]].add(r["uid"])
    if by_state[OwnerState.SOLID]:
        drop = by_state[OwnerState.DANGLING] | by_state[OwnerState.WAITING]
        return RemoveOwnerRefs(frozenset(drop)) if drop else Keep()
    if by_state[OwnerState.WAITING] and has_dependents:
        return Delete("Foreground")
    return Delete(deletion_policy(obj))


def without_owner_refs(obj: dict, uids: frozenset[str] | set[str]) -> dict:
    """The merge patch dropping the references to uids (guarded by resourceVersion)."""
    meta = _meta(obj)
    kept = [r for r in meta.get("ownerReferences") or () if r.get("uid") not in uids]
    return {"metadata": {"resourceVersion": meta["resourceVersion"],
                         "ownerReferences": kept or None}}


def without_finalizer(obj: dict, finalizer: str) -> dict:
    """The merge patch dropping one finalizer (guarded by resourceVersion)."""
    meta = _meta(obj)
    kept = [f for f in meta.get("finalizers") or () if f != finalizer]
    return {"metadata": {"resourceVersion": meta["resourceVersion"], "finalizers": kept or None}}


def tracked(resource: ApiResource) -> bool:
    """Resources the collector watches: those it could delete objects of."""
    return (resource.supports("list", "watch", "delete")
            and (resource.group, resource.plural) not in IGNORED_RESOURCES)


# --- the controller ------------------------------------------------------------------

class GarbageCollector:
    """Runs until cancelled; see the module docstring."""

    def __init__(self, client: Client, informers: Informers, *, workers: int = 20,
                 sync_timeout: float = 30.0):
        self.client = client
        self.informers = informers
        self.workers = workers
        self.sync_timeout = sync_timeout
        self.graph = Graph()
        self.delete_queue: WorkQueue[str] = WorkQueue()
        self.orphan_queue: WorkQueue[str] = WorkQueue()
        self._by_kind: dict[tuple[str, str], ApiResource] = {}
        self._absent: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def run(self) -> None:
        resources = await self._discover()
        self._by_kind = {(r.group, r.kind): r for r in resources}
        subscribed: list[tuple[Informer, object]] = []
        try:
            for r in resources:
                if tracked(r):
                    informer = self.informers.get(r.api_version, r.plural)
                    handler = functools.partial(self._on_event, r)
                    informer.add_handler(handler)
                    subscribed.append((informer, handler))
            await self._wait_synced([i for i, _ in subscribed])
            await asyncio.gather(
                run_workers(self.delete_queue, self._attempt_delete, self.workers, "gc-delete"),
                run_workers(self.orphan_queue, self._attempt_orphan, self.workers, "gc-orphan"))
        finally:
            for informer, handler in subscribed:
                informer.remove_handler(handler)

    async def _discover(self) -> list[ApiResource]:
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                return await self.client.discover()
            except (ApiError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                log.warning("discovery failed (%s); retrying", e)
                await asyncio.sleep(backoff.next())

    async def _wait_synced(self, informers: list[Informer]) -> None:
        """Wait for the caches before acting, but not forever: a resource that
        cannot be watched must not stop collection of all the others."""
        try:
            await asyncio.wait_for(asyncio.gather(*(i.wait_synced() for i in informers)),
                                   self.sync_timeout)
        except asyncio.TimeoutError:
            log.warning("not synced after %ss, collecting anyway: %s", self.sync_timeout,
                        [i for i in informers if not i.has_synced])

    # --- events ----------------------------------------------------------------------

    def _on_event(self, resource: ApiResource, etype: str, obj: dict, old: dict | None) -> None:
        meta = _meta(obj)
        if not meta.get("uid"):
            return
        if etype == "DELETED":
            self._remember_absent(meta["uid"], meta.get("namespace") or "")
            work = self.graph.forget(meta["uid"])
        else:
            work = self.graph.observe(resource, obj)
        for uid in work.delete:
            self.delete_queue.add(uid)
        for uid in work.orphan:
            self.orphan_queue.add(uid)

    def _remember_absent(self, uid: str, namespace: str) -> None:
        self._absent[(uid, namespace)] = None
        self._absent.move_to_end((uid, namespace))
        while len(self._absent) > ABSENT_CACHE_SIZE:
            self._absent.popitem(last=False)

    # --- workers ---------------------------------------------------------------------

    async def _attempt_delete(self, uid: str) -> bool:
        node = self.graph.nodes.get(uid)
        if node is None:
            return True
        if not node.observed:
            # A missing owner: its dependents decide, each from its own namespace.
            for dependent in node.dependents:
                self.delete_queue.add(dependent)
            return True
        if node.deleting_dependents:
            return await self._finish_foreground(node)
        if all(self._graph_says_solid(node, r) for r in node.owners):
            return True
        latest = await self._latest(node)
        if latest is None or _meta(latest).get("deletionTimestamp"):
            return True
        states = {}
        for ref in _meta(latest).get("ownerReferences") or ():
            if ref.get("uid"):
                states[ref["uid"]] = await self._owner_state(ref, node.namespace)
        action = plan_dependent(latest, states, bool(node.dependents))
        return await self._execute(node, latest, action)

    def _graph_says_solid(self, node: Node, ref: dict) -> bool:
        """True when the graph alone shows the owner alive and not waiting (no I/O)."""
        owner = self.graph.nodes.get(ref["uid"])
        return (owner is not None and owner.observed and not owner.deleting_dependents
                and owner.name == ref.get("name")
                and owner.namespace in ("", node.namespace))

    async def _owner_state(self, ref: dict, namespace: str) -> OwnerState:
        resource = self._by_kind.get((group_of(ref.get("apiVersion", "")), ref.get("kind", "")))
        if resource is None or (resource.namespaced and not namespace):
            # Unresolvable (unknown kind, or a cluster-scoped dependent naming a
            # namespaced owner): upstream never collects on such a reference.
            log.debug("owner reference %s/%s %s cannot be resolved; treating it as alive",
                     ref.get("apiVersion"), ref.get("kind"), ref.get("name"))
            return OwnerState.SOLID
        owner_ns = namespace if resource.namespaced else ""
        node = self.graph.nodes.get(ref["uid"])
        if node is not None and node.observed and node.namespace == owner_ns \
                and node.name == ref.get("name"):
            return OwnerState.WAITING if node.deleting_dependents else OwnerState.SOLID
        if (ref["uid"], owner_ns) in self._absent:
            return OwnerState.DANGLING
        try:
            owner = await self.client.get(resource.api_version, resource.plural,
                                          ref.get("name", ""), owner_ns or None)
        except ApiError as e:
            if e.code != 404:
                raise
            owner = None
        if owner is None or _meta(owner).get("uid") != ref["uid"]:
            self._remember_absent(ref["uid"], owner_ns)
            return OwnerState.DANGLING
        return owner_state(owner)

    async def _latest(self, node: Node) -> dict | None:
        """The object as the server has it now; None if it (this uid) is gone."""
        assert node.resource is not None
        try:
            obj = await self.client.get(node.resource.api_version, node.resource.plural,
                                        node.name, node.namespace or None)
        except ApiError as e:
            if e.code == 404:
                return None
            raise
        return obj if _meta(obj).get("uid") == node.uid else None

    async def _execute(self, node: Node, latest: dict, action: Action) -> bool:
        if isinstance(action, Keep):
            return True
        if isinstance(action, RemoveOwnerRefs):
            log.info("removing owner references %s from %s", sorted(action.uids),
                     _describe(node))
            return await self._patch(node, without_owner_refs(latest, action.uids))
        log.info("deleting %s (%s): no owner left", _describe(node), action.policy)
        return await self._delete(node, action.policy)

    async def _finish_foreground(self, owner: Node) -> bool:
        """An owner deleted in the foreground: once no dependent blocks it, drop
        the finalizer (then the API server deletes it)."""
        if self.graph.blocking_dependents(owner.uid):
            # They were queued when the owner started waiting (or when they
            # named it later); their changes and deletions bring it back here.
            return True
        latest = await self._latest(owner)
        if latest is None or not is_deleting_dependents(latest):
            return True
        log.info("dependents of %s are gone; removing %s", _describe(owner), FOREGROUND)
        return await self._patch(owner, without_finalizer(latest, FOREGROUND))

    async def _attempt_orphan(self, uid: str) -> bool:
        owner = self.graph.nodes.get(uid)
        if owner is None or not owner.observed:
            return True
        semaphore = asyncio.Semaphore(ORPHAN_PATCH_CONCURRENCY)

        async def release(dependent_uid: str) -> bool:
            dependent = self.graph.nodes.get(dependent_uid)
            if dependent is None or not dependent.observed:
                return True
            async with semaphore:
                latest = await self._latest(dependent)
                if latest is None or not any(r.get("uid") == uid for r in
                                             _meta(latest).get("ownerReferences") or ()):
                    return True
                return await self._patch(dependent, without_owner_refs(latest, {uid}))

        results = await asyncio.gather(*(release(d) for d in sorted(owner.dependents)))
        if not all(results):
            return False
        latest = await self._latest(owner)
        if latest is None or not is_orphaning(latest):
            return True
        log.info("dependents of %s are orphaned; removing %s", _describe(owner), ORPHAN)
        return await self._patch(owner, without_finalizer(latest, ORPHAN))

    async def _patch(self, node: Node, patch: dict) -> bool:
        """Apply a resourceVersion-guarded merge patch; False (retry) on a conflict."""
        assert node.resource is not None
        try:
            await self.client.patch(node.resource.api_version, node.resource.plural, node.name,
                                    patch, node.namespace or None, patch_type="merge")
        except ApiError as e:
            if e.code == 404:
                return True
            if e.code == 409:
                return False
            raise
        return True

    async def _delete(self, node: Node, policy: str) -> bool:
        assert node.resource is not None
        try:
            await self.client.delete(node.resource.api_version, node.resource.plural,
                                     node.name, node.namespace or None,
                                     propagation_policy=policy,
                                     preconditions={"uid": node.uid})
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        return True


def _describe(node: Node) -> str:
    kind = node.resource.kind if node.resource else "object"
    where = f"{node.namespace}/" if node.namespace else ""
    return f"{kind} {where}{node.name} ({node.uid})"
