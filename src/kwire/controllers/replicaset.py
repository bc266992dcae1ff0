"""The ReplicaSet controller (upstream's pkg/controller/replicaset).

Each sync claims pods (adopts orphans the selector matches with a controller
ownerReference, releases owned pods it no longer matches), then creates pods
from the template or deletes the extra ones, preferring to delete pods that are
unscheduled, pending, not ready or newer (upstream's ActivePods order), and
finally writes the status. Expectations remember the creates and deletes in
flight so a sync never acts twice while the informer has not yet seen them.

The decisions (`claim`, `pods_to_delete`, `replicaset_status`, ...) are pure;
`ReplicaSetController` feeds them from the shared informers. `claim` and the
ownerReference helpers are shared with the Deployment controller.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kwire.api.selectors import SelectorError, selector_from_object
from kwire.client import ApiError, Client, Informers, WorkQueue, object_key, run_controller
from kwire.timestamps import parse_time

log = logging.getLogger("kwire.replicaset")

EXPECTATIONS_TIMEOUT = 300.0  # upstream's ExpectationsTimeout: forget lost events after 5 min
BURST_REPLICAS = 500          # upstream's burstReplicas: most pods created/deleted per sync


# --- ownership (pure, shared with the Deployment controller) ---------------------------

def controller_ref(obj: dict) -> dict | None:
    """The ownerReference with controller: true, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def new_controller_ref(owner: dict) -> dict:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


def selects(owner: dict, obj: dict) -> bool:
    """Does the owner's spec.selector match obj's labels (an invalid one matches nothing)?"""
    try:
        selector = selector_from_object((owner.get("spec") or {}).get("selector"))
    except SelectorError:
        return False
    return not selector.empty and selector.matches((obj.get("metadata") or {}).get("labels"))


@dataclass
class Claim:
    """Upstream's ClaimObjects split: what the owner keeps, adopts and releases."""

    owned: list[dict] = field(default_factory=list)
    adopt: list[dict] = field(default_factory=list)
    release: list[dict] = field(default_factory=list)


def claim(owner: dict, objs: Iterable[dict]) -> Claim:
    """Upstream's ControllerRefManager: an owner being deleted adopts nothing and
    releases nothing; an object being deleted is never adopted."""
    uid = owner["metadata"]["uid"]
    deleting = bool(owner["metadata"].get("deletionTimestamp"))
    out = Claim()
    for obj in objs:
        ref = controller_ref(obj)
        matches = selects(owner, obj)
        if ref is not None:
            if ref.get("uid") != uid:
                continue
            if matches or deleting:
                out.owned.append(obj)
            else:
                out.release.append(obj)
        elif matches and not deleting and not obj["metadata"].get("deletionTimestamp"):
            out.adopt.append(obj)
    return out


def adopt_patch(owner: dict, obj: dict) -> dict:
    """A merge patch adding owner's controllerRef; the resourceVersion makes it conditional."""
    refs = list(obj["metadata"].get("ownerReferences") or ()) + [new_controller_ref(owner)]
    return {"metadata": {"ownerReferences": refs,
                         "resourceVersion": obj["metadata"]["resourceVersion"]}}


def release_patch(owner: dict, obj: dict) -> dict:
    uid = owner["metadata"]["uid"]
    refs = [r for r in obj["metadata"].get("ownerReferences") or () if r.get("uid") != uid]
    return {"metadata": {"ownerReferences": refs or None,
                         "resourceVersion": obj["metadata"]["resourceVersion"]}}


# --- pods (pure) ----------------------------------------------------------------------

def is_pod_active(pod: dict) -> bool:
    """Upstream's IsPodActive: not finished and not being deleted."""
    return ((pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and not pod["metadata"].get("deletionTimestamp"))


def _ready_condition(pod: dict) -> dict | None:
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return cond
    return None


def is_pod_ready(pod: dict) -> bool:
    cond = _ready_condition(pod)
    return cond is not None and cond.get("status") == "True"


def _ready_since(pod: dict) -> datetime | None:
    cond = _ready_condition(pod)
    if cond is None or cond.get("status") != "True" or not cond.get("lastTransitionTime"):
        return None
    return parse_time(cond["lastTransitionTime"])


def is_pod_available(pod: dict, min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least minReadySeconds."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = _ready_since(pod)
    return since is not None and (now - since).total_seconds() >= min_ready_seconds


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def deletion_rank(pod: dict) -> tuple:
    """Upstream's ActivePods Less, as a sort key: the pods to delete first sort first."""
    status = pod.get("status") or {}
    ready_since = _ready_since(pod)
    restarts = sum(c.get("restartCount", 0) for c in status.get("containerStatuses") or ())
    created = pod["metadata"].get("creationTimestamp")
    created_at = parse_time(created) if created else _EPOCH
    return (bool((pod.get("spec") or {}).get("nodeName")),
            _PHASE_RANK.get(status.get("phase", ""), 1),
            is_pod_ready(pod),
            # ready for less time first, then more restarts first, then newer first
            -(ready_since or _EPOCH).timestamp(),
            -restarts,
            -created_at.timestamp())


def pods_to_delete(pods: list[dict], count: int) -> list[dict]:
    return sorted(pods, key=deletion_rank)[:max(count, 0)]


def pod_from_template(rs: dict) -> dict:
    """A pod for rs: its template, generateName `<rs>-`, and rs as controller."""
    template = (rs.get("spec") or {}).get("template") or {}
    meta = dict(template.get("metadata") or {})
    meta.pop("name", None)
    meta.update(generateName=f"{rs['metadata']['name']}-", namespace=rs["metadata"]["namespace"],
                ownerReferences=[new_controller_ref(rs)])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": template.get("spec") or {}}


def replicaset_status(rs: dict, pods: list[dict], now: datetime) -> dict:
    """Upstream's calculateStatus from the active pods rs owns (conditions kept as they are)."""
    spec = rs.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = spec.get("minReadySeconds") or 0
    status = {
        "replicas": len(pods),
        "fullyLabeledReplicas": sum(
            1 for p in pods
            if all((p["metadata"].get("labels") or {}).get(k) == v
                   for k, v in template_labels.items())),
        "readyReplicas": sum(1 for p in pods if is_pod_ready(p)),
        "availableReplicas": sum(1 for p in pods if is_pod_available(p, min_ready, now)),
        "observedGeneration": rs["metadata"].get("generation", 0),
    }
    conditions = (rs.get("status") or {}).get("conditions")
    if conditions:
        status["conditions"] = conditions
    return status


# --- expectations ---------------------------------------------------------------------

@dataclass
class _Expected:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)
    since: float = field(default_factory=time.monotonic)


class Expectations:
    """Upstream's UIDTrackingControllerExpectations: creates by count (the names
    are not known in advance), deletes by pod uid."""

    def __init__(self, timeout: float = EXPECTATIONS_TIMEOUT):
        self.timeout = timeout
        self._by_key: dict[str, _Expected] = {}

    def satisfied(self, key: str) -> bool:
        e = self._by_key.get(key)
        return (e is None or (e.adds <= 0 and not e.deletes)
                or time.monotonic() - e.since > self.timeout)

    def expect(self, key: str, adds: int = 0, deletes: Iterable[str] = ()) -> None:
        self._by_key[key] = _Expected(adds, set(deletes))

    def created(self, key: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.adds -= 1

    def deleted(self, key: str, uid: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.deletes.discard(uid)

    def forget(self, key: str) -> None:
        self._by_key.pop(key, None)


# --- the controller -------------------------------------------------------------------

def owner_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


class ReplicaSetController:
    def __init__(self, client: Client, informers: Informers, workers: int = 4):
        self.client, self.informers, self.workers = client, informers, workers
        self.queue: WorkQueue[str] = WorkQueue(base_delay=0.05, max_delay=30.0)
        self.expectations = Expectations()

    @property
    def replicasets(self):
        return self.informers.get("apps/v1", "replicasets")

    @property
    def pods(self):
        return self.informers.get("v1", "pods")

    async def run(self) -> None:
        await run_controller(self.queue, self.sync, self.workers, "replicaset",
                             ((self.replicasets, self._on_replicaset), (self.pods, self._on_pod)),
                             wait_synced=True)

    def _on_replicaset(self, etype: str, obj: dict, old: dict | None) -> None:
        key = object_key(obj)
        if etype == "DELETED":
            self.expectations.forget(key)
        self.queue.add(key)

    def _owners_of(self, pod: dict) -> list[str]:
        """The ReplicaSet controlling pod, or for an orphan every one that selects it."""
        ns = pod["metadata"]["namespace"]
        ref = controller_ref(pod)
        if ref is not None:
            return [owner_key(ns, ref["name"])] if ref.get("kind") == "ReplicaSet" else []
        return [object_key(rs) for rs in self.replicasets.store.list(ns) if selects(rs, pod)]

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        ref = controller_ref(pod)
        if ref is not None and ref.get("kind") == "ReplicaSet":
            key = owner_key(pod["metadata"]["namespace"], ref["name"])
            if etype == "ADDED" and old is None:
                self.expectations.created(key)
            if etype == "DELETED" or pod["metadata"].get("deletionTimestamp"):
                self.expectations.deleted(key, pod["metadata"]["uid"])
        keys = set(self._owners_of(pod))
        if old is not None:
            keys.update(self._owners_of(old))
        for key in keys:
            self.queue.add(key)

    async def sync(self, key: str) -> bool:
        namespace, name = key.split("/", 1)
        rs = self.replicasets.store.get_object(name, namespace)
        if rs is None:
            self.expectations.forget(key)
            return True
        all_pods = [p for p in self.pods.store.list(namespace) if is_pod_active(p)]
        claimed = claim(rs, all_pods)
        owned = list(claimed.owned)
        ok = True
        for pod in claimed.adopt:
            if await self._patch_pod(pod, adopt_patch(rs, pod)):
                owned.append(pod)
        for pod in claimed.release:
            await self._patch_pod(pod, release_patch(rs, pod))
        if self.expectations.satisfied(key) and not rs["metadata"].get("deletionTimestamp"):
            ok = await self._manage(key, rs, owned)
        now = datetime.now(UTC)
        status = replicaset_status(rs, owned, now)
        if status != rs.get("status"):
            try:
                await self.client.update_status("apps/v1", "replicasets",
                                                {**rs, "status": status})
            except ApiError as e:
                if e.code == 404:
                    return True
                if e.code == 409:
                    return False
                raise
        min_ready = (rs.get("spec") or {}).get("minReadySeconds") or 0
        if min_ready and status["readyReplicas"] != status["availableReplicas"]:
            self.queue.add_after(key, min_ready)
        return ok

    async def _patch_pod(self, pod: dict, patch: dict) -> bool:
        try:
            await self.client.patch("v1", "pods", pod["metadata"]["name"], patch,
                                    pod["metadata"]["namespace"])
            return True
        except ApiError as e:
            if e.code in (404, 409, 422):
                return False
            raise

    async def _manage(self, key: str, rs: dict, pods: list[dict]) -> bool:
        """Create or delete pods toward spec.replicas. False when some write failed."""
        diff = len(pods) - ((rs.get("spec") or {}).get("replicas", 1))
        if diff < 0:
            count = min(-diff, BURST_REPLICAS)
            self.expectations.expect(key, adds=count)
            results = await asyncio.gather(*(self._create(key, rs) for _ in range(count)))
            return all(results)
        if diff > 0:
            victims = pods_to_delete(pods, min(diff, BURST_REPLICAS))
            self.expectations.expect(key, deletes=[p["metadata"]["uid"] for p in victims])
            results = await asyncio.gather(*(self._delete(key, p) for p in victims))
            return all(results)
        return True

    async def _create(self, key: str, rs: dict) -> bool:
        try:
            await self.client.create("v1", "pods", pod_from_template(rs))
            return True
        except ApiError as e:
            self.expectations.created(key)  # it will never be observed
            if e.code == 403:  # namespace terminating
                return True
            log.warning("creating a pod for replicaset %s: %s", key, e.message)
            return False

    async def _delete(self, key: str, pod: dict) -> bool:
        meta = pod["metadata"]
        try:
            await self.client.delete("v1", "pods", meta["name"], meta["namespace"],
                                     preconditions={"uid": meta["uid"]})
            return True
        except ApiError as e:
            self.expectations.deleted(key, meta["uid"])
            if e.code in (404, 409):
                return True
            raise
