"""The namespace lifecycle controller (upstream's NamespaceController).

A Namespace being deleted (deletionTimestamp set, phase Terminating) keeps the
"kubernetes" entry in spec.finalizers until this controller has emptied it:
it discovers every namespaced resource the server serves, deletes their
objects in the namespace (deletecollection where offered, else one by one),
and checks again until none is left (objects with finalizers or a graceful
deletion take their time). Then it removes "kubernetes" through PUT
/api/v1/namespaces/<name>/finalize, and the API server deletes the namespace
once no finalizer is left. Progress is reported as the upstream status
conditions (NamespaceDeletionContentFailure, NamespaceContentRemaining, ...).

Concurrency model: the shared Namespace informer only queues the names of
namespaces being deleted; workers take names from the queue (one name is never
handled by two workers at once). A pass that leaves content behind returns
False, which retries the name with a backoff capped at `max_retry_delay`.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field


from kwire.client import (TRANSPORT_ERRORS, ApiError, ApiResource, Client, Informers, WorkQueue, resource_path,
                          run_workers)
from kwire.timestamps import format_time

log = logging.getLogger("kwire.namespace")

FINALIZER = "kubernetes"


@dataclass
class ContentStatus:
    """What one deletion pass over a namespace's content found."""

    failures: list[str] = field(default_factory=list)
    remaining: dict[str, int] = field(default_factory=dict)
    finalizers: Counter = field(default_factory=Counter)

    @property
    def done(self) -> bool:
        return not self.failures and not self.remaining


def deletable_resources(resources: list[ApiResource]) -> list[ApiResource]:
    """The namespaced resources whose objects can be listed and deleted."""
    return [r for r in resources if r.namespaced and r.supports("list", "delete")]


def _condition(ctype: str, true: bool, reason: str, message: str) -> dict:
    return {"type": ctype, "status": "True" if true else "False", "reason": reason,
            "message": message}


def discovery_failed_condition(error: str) -> dict:
    return _condition("NamespaceDeletionDiscoveryFailure", True, "DiscoveryFailed",
                      f"Discovery failed for some groups, 1 failing: {error}")


def deletion_conditions(content: ContentStatus) -> list[dict]:
    """The upstream conditions after a pass that found `content` (no lastTransitionTime)."""
    remaining = ", ".join(f"{r} has {n} resource instances"
                          for r, n in sorted(content.remaining.items()))
    finalizers = ", ".join(f"{f} in {n} resource instances"
                           for f, n in sorted(content.finalizers.items()))
    return [
        _condition("NamespaceDeletionDiscoveryFailure", False, "ResourcesDiscovered",
                   "All resources successfully discovered"),
        _condition("NamespaceDeletionGroupVersionParsingFailure", False, "ParsedGroupVersions",
                   "All legacy kube types successfully parsed"),
        _condition("NamespaceDeletionContentFailure", True, "ContentDeletionFailed",
                   f"Failed to delete all resource types, {len(content.failures)} remaining: "
                   + ", ".join(content.failures))
        if content.failures else
        _condition("NamespaceDeletionContentFailure", False, "ContentDeleted",
                   "All content successfully deleted, may be waiting on finalization"),
        _condition("NamespaceContentRemaining", True, "SomeResourcesRemain",
                   f"Some resources are remaining: {remaining}")
        if content.remaining else
        _condition("NamespaceContentRemaining", False, "ContentRemoved",
                   "All content successfully removed"),
        _condition("NamespaceFinalizersRemaining", True, "SomeFinalizersRemain",
                   f"Some content in the namespace has finalizers remaining: {finalizers}")
        if content.finalizers else
        _condition("NamespaceFinalizersRemaining", False, "ContentHasNoFinalizers",
                   "All content-preserving finalizers finished"),
    ]


def merge_conditions(existing: list[dict], updates: list[dict], now: str) -> list[dict]:
    """existing with updates applied by type; lastTransitionTime moves only when
    a condition's status changes."""
    by_type = {c.get("type"): c for c in existing}
    out = list(existing)
    for update in updates:
        old = by_type.get(update["type"])
        since = old.get("lastTransitionTime") if old and old.get("status") == update["status"] \
            else now
        new = {**update, "lastTransitionTime": since}
        if old is None:
            out.append(new)
        else:
            out[out.index(old)] = new
    return out


def finalized(namespace: dict) -> dict:
    """The body for PUT .../finalize: the namespace without our spec finalizer."""
    spec = namespace.get("spec") or {}
    return {**namespace,
            "spec": {**spec, "finalizers": [f for f in spec.get("finalizers") or ()
                                            if f != FINALIZER]}}


def _resource_label(r: ApiResource) -> str:
    """Upstream's "<resource>.<group>" spelling ("pods." for the core group)."""
    return f"{r.plural}.{r.group}"


class NamespaceController:
    """Runs until cancelled; see the module docstring."""

    def __init__(self, client: Client, informers: Informers, *, workers: int = 4,
                 max_retry_delay: float = 5.0):
        self.client = client
        self.informers = informers
        self.workers = workers
        self.queue: WorkQueue[str] = WorkQueue(base_delay=0.1, max_delay=max_retry_delay)

    async def run(self) -> None:
        informer = self.informers.get("v1", "namespaces")
        informer.add_handler(self._on_event)
        try:
            await run_workers(self.queue, self.sync, self.workers, "namespace")
        finally:
            informer.remove_handler(self._on_event)

    def _on_event(self, etype: str, obj: dict, old: dict | None) -> None:
        meta = obj.get("metadata") or {}
        if etype != "DELETED" and meta.get("deletionTimestamp"):
            self.queue.add(meta["name"])

    async def sync(self, name: str) -> bool:
        """One pass over a terminating namespace; True once it is finalized."""
        try:
            ns = await self.client.get("v1", "namespaces", name)
        except ApiError as e:
            if e.code == 404:
                return True
            raise
        if not (ns.get("metadata") or {}).get("deletionTimestamp") \
                or FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or ()):
            return True
        try:
            resources = deletable_resources(await self.client.discover())
        except (ApiError, *TRANSPORT_ERRORS) as e:
            log.warning("namespace %s: discovery failed: %s", name, e)
            await self._set_conditions(ns, [discovery_failed_condition(str(e))])
            return False
        content = ContentStatus()
        results = await asyncio.gather(*(self._delete_all(name, r) for r in resources))
        for r, (error, count, finalizers) in zip(resources, results):
            if error:
                content.failures.append(error)
            if count:
                content.remaining[_resource_label(r)] = count
            content.finalizers.update(finalizers)
        ns = await self._set_conditions(ns, deletion_conditions(content))
        if not content.done:
            log.debug("namespace %s: waiting for %s %s", name, content.remaining,
                      content.failures)
            return False
        try:
            await self.client.request(
                "PUT", resource_path("v1", "namespaces", name=name, subresource="finalize"),
                body=finalized(ns))
        except ApiError as e:
            if e.code == 404:
                return True
            if e.code == 409:
                return False
            raise
        log.info("namespace %s: content deleted, finalized", name)
        return True

    async def _delete_all(self, namespace: str, r: ApiResource) -> tuple[str | None, int, Counter]:
        """Delete every object of r in namespace; (error, objects left, their finalizers)."""
        try:
            if r.supports("deletecollection"):
                await self.client.delete_collection(r.api_version, r.plural, namespace,
                                                    propagation_policy="Background")
            else:
                items, _ = await self.client.list(r.api_version, r.plural, namespace)
                for item in items:
                    meta = item.get("metadata") or {}
                    if meta.get("deletionTimestamp"):
                        continue
                    try:
                        await self.client.delete(r.api_version, r.plural, meta["name"],
                                                 namespace, propagation_policy="Background",
                                                 preconditions={"uid": meta.get("uid")})
                    except ApiError as e:
                        if e.code not in (404, 409):
                            raise
            items, _ = await self.client.list(r.api_version, r.plural, namespace)
        except (ApiError, *TRANSPORT_ERRORS) as e:
            return f"{_resource_label(r)}: {e}", 0, Counter()
        finalizers = Counter(f for item in items
                             for f in (item.get("metadata") or {}).get("finalizers") or ())
        return None, len(items), finalizers

    async def _set_conditions(self, ns: dict, updates: list[dict]) -> dict:
        """Write the conditions if they changed; the namespace as it now is."""
        status = ns.get("status") or {}
        existing = status.get("conditions") or []
        merged = merge_conditions(existing, updates, format_time())
        if merged == existing:
            return ns
        try:
            return await self.client.update_status("v1", "namespaces",
                                                   {**ns, "status": {**status,
                                                                     "conditions": merged}})
        except ApiError as e:
            if e.code in (404, 409):
                log.debug("namespace %s: status not written: %s", ns["metadata"]["name"], e)
                return ns
            raise
