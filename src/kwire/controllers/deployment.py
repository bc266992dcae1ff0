"""The Deployment controller (upstream's pkg/controller/deployment).

A Deployment owns ReplicaSets named `<deployment>-<pod-template-hash>`; the one
whose template equals the Deployment's (ignoring that label) is the new one,
the others are old. Each sync claims ReplicaSets by selector, then either
scales proportionally (spec.replicas changed), or takes one rollout step:
RollingUpdate scales the new ReplicaSet up within maxSurge and the old ones
down within maxUnavailable; Recreate scales the old ones to zero and starts the
new one once their pods are gone. Then old ReplicaSets beyond
revisionHistoryLimit are deleted and the status, with upstream's Available and
Progressing conditions, is written — which `kubectl rollout status` reads.

The step math, hashing and status are pure functions; `DeploymentController`
is the loop around them.
"""
from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from kwire.client import ApiError, Client, Informers, WorkQueue, object_key, run_controller
from kwire.controllers.replicaset import (adopt_patch, claim, controller_ref, new_controller_ref,
                                          release_patch, selects)
from kwire.timestamps import format_time, parse_time

log = logging.getLogger("kwire.deployment")

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
DEFAULT_HISTORY_LIMIT = 10
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # upstream's rand.SafeEncodeString alphabet


# --- hashing and naming (pure) --------------------------------------------------------

def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(s: str) -> str:
    """rand.SafeEncodeString: no vowels or look-alikes, so hashes never spell words."""
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)] for c in s)


def template_hash(template: dict, collision_count: int = 0) -> str:
    """Upstream's ComputeHash: FNV-32a of the template (plus the collision count),
    safe-encoded. Upstream hashes a dump of the Go struct; kwire hashes canonical
    JSON, so the values differ from upstream's but have the same shape and role."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode(str(fnv32a(data)))


def _without_hash(template: dict) -> dict:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return t


def equal_ignore_hash(a: dict, b: dict) -> bool:
    return _without_hash(a) == _without_hash(b)


def new_replicaset(d: dict, revision: int, replicas: int) -> dict:
    """The ReplicaSet for d's current template."""
    spec = d["spec"]
    pod_hash = template_hash(spec["template"], (d.get("status") or {}).get("collisionCount", 0))
    template = copy.deepcopy(spec["template"])
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
    selector = copy.deepcopy(spec["selector"])
    selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
    labels = dict(template["metadata"]["labels"])
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{d['metadata']['name']}-{pod_hash}",
                         "namespace": d["metadata"]["namespace"], "labels": labels,
                         "annotations": replica_annotations(d, revision),
                         "ownerReferences": [new_controller_ref(d)]},
            "spec": {"replicas": replicas, "minReadySeconds": spec.get("minReadySeconds", 0),
                     "selector": selector, "template": template}}


def replica_annotations(d: dict, revision: int) -> dict:
    replicas = d["spec"].get("replicas", 1)
    return {REVISION: str(revision), DESIRED_REPLICAS: str(replicas),
            MAX_REPLICAS: str(replicas + max_surge(d))}


def revision(obj: dict) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, 0))
    except ValueError:
        return 0


# --- rollout math (pure) --------------------------------------------------------------

def _scaled(value, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        value = "25%"
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        scaled = int(value[:-1]) * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value)


def resolve_fenceposts(replicas: int, surge, unavailable) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as numbers; both zero would stall, so unavailable becomes 1."""
    s, u = _scaled(surge, replicas, True), _scaled(unavailable, replicas, False)
    if s == 0 and u == 0:
        u = 1
    return s, u


def _rolling(d: dict) -> dict:
    return ((d["spec"].get("strategy") or {}).get("rollingUpdate")) or {}


def is_rolling(d: dict) -> bool:
    return (d["spec"].get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def max_surge(d: dict) -> int:
    if not is_rolling(d):
        return 0
    r = _rolling(d)
    return resolve_fenceposts(d["spec"].get("replicas", 1), r.get("maxSurge"),
                              r.get("maxUnavailable"))[0]


def max_unavailable(d: dict) -> int:
    replicas = d["spec"].get("replicas", 1)
    if not is_rolling(d) or replicas == 0:
        return 0
    r = _rolling(d)
    u = resolve_fenceposts(replicas, r.get("maxSurge"), r.get("maxUnavailable"))[1]
    return min(u, replicas)


@dataclass(frozen=True)
class RS:
    """What the step math needs of a ReplicaSet."""

    replicas: int        # spec.replicas
    available: int = 0   # status.availableReplicas


def new_rs_replicas(replicas: int, surge: int, new: RS, olds: list[RS]) -> int:
    """Upstream's NewRSNewReplicas for RollingUpdate: grow the new ReplicaSet as far
    as maxSurge allows."""
    if new.replicas >= replicas:
        return replicas
    current = new.replicas + sum(o.replicas for o in olds)
    if current >= replicas + surge:
        return new.replicas
    return new.replicas + min(replicas + surge - current, replicas - new.replicas)


def old_rs_replicas(replicas: int, unavailable: int, new: RS, olds: list[RS]) -> list[int]:
    """Upstream's reconcileOldReplicaSets: the old ReplicaSets' new sizes (olds oldest
    first). Unhealthy old replicas go first, then healthy ones while at least
    replicas - maxUnavailable stay available."""
    targets = [o.replicas for o in olds]
    if sum(targets) == 0:
        return targets
    min_available = replicas - unavailable
    new_unavailable = new.replicas - new.available
    budget = new.replicas + sum(targets) - min_available - new_unavailable
    if budget <= 0:
        return targets
    # cleanupUnhealthyReplicas
    for i, o in enumerate(olds):
        unhealthy = targets[i] - o.available
        if budget <= 0:
            break
        if unhealthy <= 0:
            continue
        cut = min(budget, unhealthy)
        targets[i] -= cut
        budget -= cut
    # scaleDownOldReplicaSetsForRollingUpdate
    available = new.available + sum(o.available for o in olds)
    to_cut = available - min_available
    for i, o in enumerate(olds):
        if to_cut <= 0:
            break
        cut = min(targets[i], to_cut)
        targets[i] -= cut
        to_cut -= cut
    return targets


def proportional_scale(replicas: int, surge: int, sizes: list[int]) -> list[int]:
    """Upstream's scale() for several active ReplicaSets (newest first): share the
    change in allowed size in proportion to their sizes; the rest goes to the newest."""
    allowed = replicas + surge
    total = sum(sizes)
    to_add = allowed - total
    if total == 0 or to_add == 0:
        return list(sizes)
    out, added = [], 0
    for size in sizes:
        share = int(size * to_add / total)  # Go truncates toward zero
        if to_add > 0:
            share = min(share, to_add - added)
        else:
            share = max(share, to_add - added, -size)
        out.append(size + share)
        added += share
    out[0] = max(out[0] + to_add - added, 0)
    return out


# --- status (pure) --------------------------------------------------------------------

def _condition(ctype: str, status: str, reason: str, message: str, now: str,
               old: dict | None) -> dict:
    """A condition; lastTransitionTime moves only when status does, as upstream."""
    transition = old["lastTransitionTime"] if old and old.get("status") == status else now
    return {"type": ctype, "status": status, "lastUpdateTime": now,
            "lastTransitionTime": transition, "reason": reason, "message": message}


def deployment_status(d: dict, new: dict | None, all_rs: list[dict], now: datetime,
                      new_created: bool = False) -> dict:
    """Upstream's calculateStatus plus the Available and Progressing conditions."""
    replicas = d["spec"].get("replicas", 1)

    def total(field_: str, rss: list[dict]) -> int:
        return sum((rs.get("status") or {}).get(field_, 0) for rs in rss)

    available = total("availableReplicas", all_rs)
    status = {"observedGeneration": d["metadata"].get("generation", 0),
              "replicas": total("replicas", all_rs),
              "updatedReplicas": total("replicas", [new] if new else []),
              "readyReplicas": total("readyReplicas", all_rs),
              "availableReplicas": available,
              "unavailableReplicas": max(replicas - available, 0)}
    old_status = d.get("status") or {}
    if old_status.get("collisionCount"):
        status["collisionCount"] = old_status["collisionCount"]
    old = {c["type"]: c for c in old_status.get("conditions") or ()}
    stamp = format_time(now)
    if available >= replicas - max_unavailable(d):
        avail = _condition("Available", "True", "MinimumReplicasAvailable",
                           "Deployment has minimum availability.", stamp, old.get("Available"))
    else:
        avail = _condition("Available", "False", "MinimumReplicasUnavailable",
                           "Deployment does not have minimum availability.", stamp,
                           old.get("Available"))
    if old.get("Available") and {k: old["Available"][k] for k in ("status", "reason")} == \
            {k: avail[k] for k in ("status", "reason")}:
        avail = old["Available"]
    conditions = [avail]
    progressing = _progressing(d, new, status, now, old.get("Progressing"), new_created)
    if progressing:
        conditions.append(progressing)
    status["conditions"] = conditions
    return status


def _made_progress(d: dict, status: dict) -> bool:
    """Upstream's DeploymentProgressing: more updated, ready or available pods, or fewer old ones."""
    old = d.get("status") or {}

    def old_pods(st: dict) -> int:
        return st.get("replicas", 0) - st.get("updatedReplicas", 0)
    return (old_pods(status) < old_pods(old)
            or any(status[f] > old.get(f, 0)
                   for f in ("updatedReplicas", "readyReplicas", "availableReplicas")))


def is_complete(d: dict, status: dict) -> bool:
    replicas = d["spec"].get("replicas", 1)
    return (status["updatedReplicas"] == replicas and status["replicas"] == replicas
            and status["availableReplicas"] >= replicas)


def progress_deadline_left(d: dict, now: datetime) -> float | None:
    """Seconds until a rollout that makes no progress times out; None when no deadline
    applies (none set, complete, or already timed out)."""
    deadline = d["spec"].get("progressDeadlineSeconds")
    status = d.get("status") or {}
    cond = next((c for c in status.get("conditions") or () if c["type"] == "Progressing"), None)
    if deadline is None or cond is None or cond.get("reason") not in (
            "NewReplicaSetCreated", "ReplicaSetUpdated", "FoundNewReplicaSet"):
        return None
    since = parse_time(cond.get("lastUpdateTime"))
    return None if since is None else deadline - (now - since).total_seconds()


def _progressing(d: dict, new: dict | None, status: dict, now: datetime, old: dict | None,
                 new_created: bool) -> dict | None:
    """Upstream's syncRolloutStatus: complete, still progressing (lastUpdateTime moves
    on progress), or timed out after progressDeadlineSeconds without progress."""
    if new is None:
        return old
    name = new["metadata"]["name"]
    stamp = format_time(now)
    if new_created:
        return _condition("Progressing", "True", "NewReplicaSetCreated",
                          f'Created new replica set "{name}"', stamp, old)
    if is_complete(d, status):
        if old and old.get("reason") == "NewReplicaSetAvailable" \
                and old.get("message", "").endswith(f'"{name}" has successfully progressed.'):
            return old
        return _condition("Progressing", "True", "NewReplicaSetAvailable",
                          f'ReplicaSet "{name}" has successfully progressed.', stamp, old)
    if old and old.get("reason") == "ProgressDeadlineExceeded" and not _made_progress(d, status):
        return old
    current = old and name in old.get("message", "") and old.get("reason") in (
        "NewReplicaSetCreated", "ReplicaSetUpdated")
    if current and not _made_progress(d, status):
        left = progress_deadline_left(d, now)
        if left is not None and left <= 0:
            return _condition("Progressing", "False", "ProgressDeadlineExceeded",
                              f'ReplicaSet "{name}" has timed out progressing.', stamp, old)
        return old
    return _condition("Progressing", "True", "ReplicaSetUpdated",
                      f'ReplicaSet "{name}" is progressing.', stamp, old)


def old_pod_running(pod: dict, old_uids: set[str]) -> bool:
    """Upstream's oldPodsRunning: a pod of an old ReplicaSet that has not finished,
    terminating ones included, keeps Recreate from starting the new pods."""
    return ((controller_ref(pod) or {}).get("uid") in old_uids
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))


def replicasets_to_clean(d: dict, olds: list[dict]) -> list[dict]:
    """Upstream's cleanupDeployment: idle old ReplicaSets beyond
    revisionHistoryLimit, lowest revision first."""
    limit = d["spec"].get("revisionHistoryLimit", DEFAULT_HISTORY_LIMIT)
    idle = [rs for rs in olds
            if (rs["spec"].get("replicas") or 0) == 0
            and (rs.get("status") or {}).get("replicas", 0) == 0
            and not rs["metadata"].get("deletionTimestamp")]
    excess = len(idle) - limit
    if excess <= 0:
        return []
    return sorted(idle, key=lambda rs: (revision(rs), rs["metadata"].get("creationTimestamp", "")
                                        ))[:excess]


def _created(rs: dict) -> tuple:
    return (rs["metadata"].get("creationTimestamp", ""), rs["metadata"]["name"])


# --- the controller -------------------------------------------------------------------

class DeploymentController:
    def __init__(self, client: Client, informers: Informers, workers: int = 4):
        self.client, self.informers, self.workers = client, informers, workers
        self.queue: WorkQueue[str] = WorkQueue(base_delay=0.05, max_delay=30.0)

    @property
    def deployments(self):
        return self.informers.get("apps/v1", "deployments")

    @property
    def replicasets(self):
        return self.informers.get("apps/v1", "replicasets")

    @property
    def pods(self):
        return self.informers.get("v1", "pods")

    async def run(self) -> None:
        await run_controller(self.queue, self.sync, self.workers, "deployment",
                             ((self.deployments, self._on_deployment),
                              (self.replicasets, self._on_replicaset), (self.pods, self._on_pod)),
                             wait_synced=True)

    def _on_deployment(self, etype: str, obj: dict, old: dict | None) -> None:
        self.queue.add(object_key(obj))

    def _owners_of(self, rs: dict) -> list[str]:
        ns = rs["metadata"]["namespace"]
        ref = controller_ref(rs)
        if ref is not None:
            return [f"{ns}/{ref['name']}"] if ref.get("kind") == "Deployment" else []
        return [object_key(d) for d in self.deployments.store.list(ns) if selects(d, rs)]

    def _on_replicaset(self, etype: str, obj: dict, old: dict | None) -> None:
        keys = set(self._owners_of(obj))
        if old is not None:
            keys.update(self._owners_of(old))
        for key in keys:
            self.queue.add(key)

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        """Recreate waits for the old pods to go: their deletion wakes the Deployment."""
        if etype != "DELETED":
            return
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.replicasets.store.get_object(ref["name"], pod["metadata"]["namespace"])
        if rs is not None:
            for key in self._owners_of(rs):
                self.queue.add(key)

    async def sync(self, key: str) -> bool:
        namespace, name = key.split("/", 1)
        d = self.deployments.store.get_object(name, namespace)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return True
        try:
            return await self._sync(d)
        except ApiError as e:
            if e.code in (404, 409):
                return False
            raise

    async def _sync(self, d: dict) -> bool:
        ns = d["metadata"]["namespace"]
        claimed = claim(d, self.replicasets.store.list(ns))
        owned = list(claimed.owned)
        for rs in claimed.adopt:
            owned.append(await self.client.patch("apps/v1", "replicasets", rs["metadata"]["name"],
                                                 adopt_patch(d, rs), ns))
        for rs in claimed.release:
            await self.client.patch("apps/v1", "replicasets", rs["metadata"]["name"],
                                    release_patch(d, rs), ns)
        new = next((rs for rs in owned if equal_ignore_hash(rs["spec"].get("template"),
                                                            d["spec"]["template"])), None)
        olds = sorted((rs for rs in owned if rs is not new), key=_created)
        if d["spec"].get("paused"):
            await self._update_status(d, new, owned)
            return True
        new, created = await self._ensure_new(d, new, olds)
        all_rs = [new] + olds
        if self._is_scaling_event(d, all_rs):
            await self._scale(d, new, olds)
        elif is_rolling(d):
            await self._rolling_step(d, new, olds)
        else:
            await self._recreate_step(d, new, olds)
        for rs in replicasets_to_clean(d, olds):
            await self.client.delete("apps/v1", "replicasets", rs["metadata"]["name"], ns,
                                     preconditions={"uid": rs["metadata"]["uid"]})
        await self._update_status(d, new, all_rs, created)
        return True

    async def _ensure_new(self, d: dict, new: dict | None, olds: list[dict]) -> tuple[dict, bool]:
        """The new ReplicaSet, created (at size 0 for Recreate, else as surge allows) if
        missing; its revision annotation becomes the newest.

        Upstream also copies the revision onto the Deployment through its status
        subresource (which keeps annotations there); kwire's status subresource
        takes only .status, and a plain metadata write would bump the Deployment's
        generation, so the revision lives on the ReplicaSets only, where
        `kubectl rollout history/undo` read it."""
        max_old = max((revision(rs) for rs in olds), default=0)
        if new is not None:
            if revision(new) <= max_old or DESIRED_REPLICAS not in (
                    new["metadata"].get("annotations") or {}):
                anns = replica_annotations(d, max(max_old + 1, revision(new)))
                new = await self._patch_rs(new, {"metadata": {"annotations": anns}})
            return new, False
        if is_rolling(d):
            size = new_rs_replicas(d["spec"].get("replicas", 1), max_surge(d), RS(0),
                                   [RS(rs["spec"].get("replicas", 0)) for rs in olds])
        else:
            size = 0 if any(rs["spec"].get("replicas") for rs in olds) else \
                d["spec"].get("replicas", 1)
        body = new_replicaset(d, max_old + 1, size)
        try:
            new = await self.client.create("apps/v1", "replicasets", body)
        except ApiError as e:
            if e.code != 409:
                raise
            # read the server, not the cache: the cache may just lag behind our own create
            existing = await self.client.get("apps/v1", "replicasets", body["metadata"]["name"],
                                             d["metadata"]["namespace"])
            ref = controller_ref(existing) or {}
            if ref.get("uid") != d["metadata"]["uid"] or \
                    not equal_ignore_hash(existing["spec"]["template"], d["spec"]["template"]):
                # a hash collision: bump collisionCount so the next name differs
                count = (d.get("status") or {}).get("collisionCount", 0) + 1
                await self.client.patch("apps/v1", "deployments", d["metadata"]["name"],
                                        {"status": {"collisionCount": count}},
                                        d["metadata"]["namespace"], subresource="status")
            raise
        return new, True

    def _is_scaling_event(self, d: dict, all_rs: list[dict]) -> bool:
        want = str(d["spec"].get("replicas", 1))
        return any(((rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)) not in
                   (None, want) for rs in all_rs if rs["spec"].get("replicas"))

    async def _patch_rs(self, rs: dict, patch: dict) -> dict:
        return await self.client.patch("apps/v1", "replicasets", rs["metadata"]["name"], patch,
                                       rs["metadata"]["namespace"])

    async def _set_size(self, d: dict, rs: dict, size: int) -> dict:
        anns = replica_annotations(d, revision(rs))
        have = rs["metadata"].get("annotations") or {}
        if rs["spec"].get("replicas") == size and all(have.get(k) == anns[k]
                                                      for k in (DESIRED_REPLICAS, MAX_REPLICAS)):
            return rs
        return await self._patch_rs(rs, {"spec": {"replicas": size},
                                         "metadata": {"annotations": {
                                             DESIRED_REPLICAS: anns[DESIRED_REPLICAS],
                                             MAX_REPLICAS: anns[MAX_REPLICAS]}}})

    async def _scale(self, d: dict, new: dict, olds: list[dict]) -> None:
        replicas = d["spec"].get("replicas", 1)
        active = [rs for rs in [new] + sorted(olds, key=_created, reverse=True)
                  if rs["spec"].get("replicas")]
        if len(active) <= 1:
            target = active[0] if active else new
            sizes = [replicas]
            active = [target]
        else:
            sizes = proportional_scale(replicas, max_surge(d),
                                       [rs["spec"]["replicas"] for rs in active])
        for rs, size in zip(active, sizes):
            await self._set_size(d, rs, size)

    async def _rolling_step(self, d: dict, new: dict, olds: list[dict]) -> None:
        replicas = d["spec"].get("replicas", 1)

        def rs_of(rs: dict) -> RS:
            return RS(rs["spec"].get("replicas", 0),
                      (rs.get("status") or {}).get("availableReplicas", 0))
        new_size = new_rs_replicas(replicas, max_surge(d), rs_of(new), [rs_of(o) for o in olds])
        if new_size != new["spec"].get("replicas"):
            await self._set_size(d, new, new_size)
            return
        targets = old_rs_replicas(replicas, max_unavailable(d), rs_of(new),
                                  [rs_of(o) for o in olds])
        for rs, size in zip(olds, targets):
            if size != rs["spec"].get("replicas"):
                await self._set_size(d, rs, size)

    async def _recreate_step(self, d: dict, new: dict, olds: list[dict]) -> None:
        for rs in olds:
            if rs["spec"].get("replicas"):
                await self._set_size(d, rs, 0)
        old_uids = {rs["metadata"]["uid"] for rs in olds}
        if any(old_pod_running(p, old_uids)
               for p in self.pods.store.list(d["metadata"]["namespace"])):
            return  # the new pods start once the old ones are gone
        await self._set_size(d, new, d["spec"].get("replicas", 1))

    async def _update_status(self, d: dict, new: dict | None, all_rs: list[dict],
                             created: bool = False) -> None:
        now = datetime.now(UTC)
        status = deployment_status(d, new, all_rs, now, created)
        if _comparable(status) != _comparable(d.get("status") or {}):
            await self.client.patch("apps/v1", "deployments", d["metadata"]["name"],
                                    {"status": status}, d["metadata"]["namespace"],
                                    subresource="status")
        left = progress_deadline_left({**d, "status": status}, now)
        if left is not None and not d["spec"].get("paused"):
            # upstream's requeueStuckDeployment: look again when the deadline passes
            self.queue.add_after(object_key(d), max(left, 0) + 1)


def _comparable(status: dict) -> dict:
    """A status without the times, so an unchanged one is not rewritten each sync."""
    out = dict(status)
    out["conditions"] = [{k: v for k, v in c.items() if not k.endswith("Time")}
                         for c in status.get("conditions") or ()]
    return out
