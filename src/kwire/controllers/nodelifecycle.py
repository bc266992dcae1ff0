"""The node lifecycle controller (the health-monitoring and taint parts of
upstream's node lifecycle controller in kube-controller-manager).

An agent proves it is alive in two ways: it renews its Lease in kube-node-lease
(name = node name, spec.renewTime) and it posts the Node's Ready condition
(lastHeartbeatTime). Every monitor period this controller judges every node:
when neither heartbeat moved within the grace period the kubelet has stopped
posting status, so every condition the kubelet owns becomes Unknown and the node
gets the unreachable taints (NoSchedule keeps new pods off it, NoExecute is
upstream's taint-based eviction signal). A Ready condition of False gets the
not-ready taints instead, and a Ready node loses both. The controller never sets
Ready back to True: the agent does that when it resumes, and the controller then
only takes the taints off.

Plan purely, act thinly: `plan` decides from (Node, Lease, now) alone. The
controller feeds it from the shared informers and writes what it returns with
merge patches that carry the node's resourceVersion (status first, then
spec.taints), so a write racing the agent's own status update fails with 409 and
is planned again instead of overwriting fresher state.

Not here: evicting pods from NoExecute-tainted nodes (upstream's taint eviction
controller) and marking their pods NotReady.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from kwire.client import ApiError, Client, Informers, WorkQueue, run_workers
from kwire.timestamps import format_time, parse_time

log = logging.getLogger("kwire.controllers.nodelifecycle")

LEASE_API = "coordination.k8s.io/v1"
LEASE_NAMESPACE = "kube-node-lease"
KUBELET_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
TAINT_FOR_READY = {"Unknown": UNREACHABLE, "False": NOT_READY}
TAINT_EFFECTS = ("NoSchedule", "NoExecute")

GRACE_PERIOD = 15.0
"""Seconds without a heartbeat before a node is Unknown. Upstream's 40 s is four
missed renewals of a kubelet that renews its Lease every 10 s; a kwire agent
renews every few seconds, so 15 s still rides out several missed renewals (a
busy agent, a short API server restart) while a dead node is noticed in seconds
rather than most of a minute."""

STARTUP_GRACE_PERIOD = 30.0
"""Seconds a node never heard from (no Lease, no heartbeat) has from its
creation. Upstream's 60 s covers a kubelet registering before its container
runtime is up; a kwire agent posts its first status within seconds of
registering, so half of that is still generous."""

MONITOR_PERIOD = 2.0
"""Seconds between two passes over every node (upstream: 5 s); small next to
the grace period, so a node is judged at most this late."""

UNKNOWN_REASON, UNKNOWN_MESSAGE = "NodeStatusUnknown", "Kubelet stopped posting node status."
NEVER_REASON, NEVER_MESSAGE = "NodeStatusNeverUpdated", "Kubelet never posted node status."
COMPONENT = "node-controller"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Plan:
    """What one node needs; None leaves a field as it is."""

    conditions: list[dict] | None = None  # the whole new status.conditions
    taints: list[dict] | None = None  # the whole new spec.taints
    not_ready_event: bool = False  # the controller took Ready away from True


def _condition(node: dict, ctype: str) -> dict | None:
    conditions = (node.get("status") or {}).get("conditions") or ()
    return next((c for c in conditions if c.get("type") == ctype), None)


def last_heard(node: dict, lease: dict | None) -> datetime | None:
    """The later of the Lease's renewTime and the Ready condition's heartbeat."""
    times = [parse_time(((lease or {}).get("spec") or {}).get("renewTime")),
             parse_time((_condition(node, "Ready") or {}).get("lastHeartbeatTime"))]
    return max((t for t in times if t is not None), default=None)


def is_silent(node: dict, lease: dict | None, now: datetime, *,
              grace_period: float = GRACE_PERIOD,
              startup_grace_period: float = STARTUP_GRACE_PERIOD,
              watching_since: datetime | None = None) -> bool:
    """Whether the node's agent has been silent for longer than its grace period.
    Silence is never counted from before `watching_since` (when the controller
    started): after a control-plane outage agents get a full grace period to
    reach the server again, as upstream's observation-time probes give them."""
    heard = last_heard(node, lease)
    if heard is None:
        since = parse_time(node["metadata"].get("creationTimestamp")) or now
        limit = startup_grace_period
    else:
        since, limit = heard, grace_period
    if watching_since is not None and watching_since > since:
        since = watching_since
    return now > since + timedelta(seconds=limit)


def unknown_conditions(node: dict, now: str) -> list[dict]:
    """The node's conditions with every kubelet-owned one Unknown (upstream's
    tryUpdateNodeHealth): a changed one keeps its heartbeat and transitions now;
    a missing one is added as never updated, heartbeat at the node's creation."""
    conditions = list((node.get("status") or {}).get("conditions") or ())
    for ctype in KUBELET_CONDITIONS:
        old = _condition(node, ctype)
        if old is None:
            conditions.append({"type": ctype, "status": "Unknown",
                               "lastHeartbeatTime": node["metadata"].get("creationTimestamp"),
                               "lastTransitionTime": now, "reason": NEVER_REASON,
                               "message": NEVER_MESSAGE})
        elif old.get("status") != "Unknown":
            conditions[conditions.index(old)] = {
                **old, "status": "Unknown", "lastTransitionTime": now,
                "reason": UNKNOWN_REASON, "message": UNKNOWN_MESSAGE}
    return conditions


def ready_taints(taints: list[dict], ready: str, now: str) -> list[dict]:
    """taints with the not-ready / unreachable ones (NoSchedule and NoExecute)
    matching a Ready condition of status `ready`. Other taints, and ours that
    should stay (with their timeAdded), keep their place; new NoExecute taints
    get timeAdded = now, as upstream's eviction timing needs."""
    want = TAINT_FOR_READY.get(ready)

    def ours(t: dict) -> bool:
        return t.get("key") in TAINT_FOR_READY.values() and t.get("effect") in TAINT_EFFECTS

    out = [t for t in taints if not ours(t) or t.get("key") == want]
    if want is not None:
        for effect in TAINT_EFFECTS:
            if not any(t.get("key") == want and t.get("effect") == effect for t in out):
                out.append({"key": want, "effect": effect,
                            **({"timeAdded": now} if effect == "NoExecute" else {})})
    return out


def plan(node: dict, lease: dict | None, now: datetime, *,
         grace_period: float = GRACE_PERIOD,
         startup_grace_period: float = STARTUP_GRACE_PERIOD,
         watching_since: datetime | None = None) -> Plan:
    """What the controller should write for node at `now`, given its Lease
    (None when it has none). A node that has no Ready condition and is not
    silent keeps its taints: its agent is still registering it."""
    stamp = format_time(now)
    conditions = (node.get("status") or {}).get("conditions") or []
    new_conditions = conditions
    if is_silent(node, lease, now, grace_period=grace_period,
                 startup_grace_period=startup_grace_period, watching_since=watching_since):
        new_conditions = unknown_conditions(node, stamp)
    before = (_condition(node, "Ready") or {}).get("status")
    after = next((c.get("status") for c in new_conditions if c.get("type") == "Ready"), None)
    taints = (node.get("spec") or {}).get("taints") or []
    new_taints = taints if after is None else ready_taints(taints, after, stamp)
    return Plan(conditions=new_conditions if new_conditions != conditions else None,
                taints=new_taints if new_taints != taints else None,
                not_ready_event=before == "True" and after != "True")


def node_event(node: dict, reason: str, now: datetime) -> dict:
    """The core/v1 Event upstream's RecordNodeStatusChange records."""
    name = node["metadata"]["name"]
    stamp = format_time(now)
    nanos = (now - EPOCH) // timedelta(microseconds=1) * 1000
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.{nanos:x}",
                         "namespace": "default"},
            "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": name,
                               "uid": node["metadata"].get("uid", "")},
            "reason": reason, "message": f"Node {name} status is now: {reason}",
            "type": "Normal", "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT, "firstTimestamp": stamp, "lastTimestamp": stamp,
            "count": 1}


def _now() -> datetime:
    return datetime.now(timezone.utc)


class NodeLifecycleController:
    """Runs until cancelled; see the module docstring. Every monitor period
    queues every node; a node's own updates queue it at once too, so taints
    come off as soon as its agent posts Ready=True."""

    def __init__(self, client: Client, informers: Informers, *,
                 grace_period: float = GRACE_PERIOD,
                 startup_grace_period: float = STARTUP_GRACE_PERIOD,
                 monitor_period: float = MONITOR_PERIOD, workers: int = 2):
        self.client, self.informers = client, informers
        self.grace_period, self.startup_grace_period = grace_period, startup_grace_period
        self.monitor_period, self.workers = monitor_period, workers
        self.queue: WorkQueue[str] = WorkQueue(base_delay=0.1, max_delay=monitor_period)
        self.watching_since: datetime | None = None

    async def run(self) -> None:
        nodes = self.informers.get("v1", "nodes")
        leases = self.informers.get(LEASE_API, "leases", LEASE_NAMESPACE)
        # Judging nodes before the Lease cache is full would find them all silent.
        await asyncio.gather(nodes.wait_synced(), leases.wait_synced())
        self.watching_since = _now()
        nodes.add_handler(self._on_node)
        try:
            await asyncio.gather(self._monitor(),
                                 run_workers(self.queue, self.sync, self.workers,
                                             "nodelifecycle"))
        finally:
            nodes.remove_handler(self._on_node)

    def _on_node(self, etype: str, obj: dict, old: dict | None) -> None:
        if etype != "DELETED":
            self.queue.add(obj["metadata"]["name"])

    async def _monitor(self) -> None:
        nodes = self.informers.get("v1", "nodes")
        while True:
            for name in nodes.store.keys():
                self.queue.add(name)
            await asyncio.sleep(self.monitor_period)

    async def sync(self, name: str) -> bool:
        node = self.informers.get("v1", "nodes").store.get(name)
        if node is None:
            return True
        lease = self.informers.get(LEASE_API, "leases", LEASE_NAMESPACE).store.get(
            f"{LEASE_NAMESPACE}/{name}")
        now = _now()
        p = plan(node, lease, now, grace_period=self.grace_period,
                 startup_grace_period=self.startup_grace_period,
                 watching_since=self.watching_since)
        try:
            if p.conditions is not None:
                node = await self.client.patch(
                    "v1", "nodes", name,
                    {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                     "status": {"conditions": p.conditions}}, subresource="status")
                log.info("node %s: Ready is now %s", name,
                         (_condition(node, "Ready") or {}).get("status"))
                if p.not_ready_event:
                    await self._record(node, "NodeNotReady", now)
            if p.taints is not None:
                await self.client.patch(
                    "v1", "nodes", name,
                    {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                     "spec": {"taints": p.taints or None}})
                log.info("node %s: taints now %s", name,
                         [f"{t['key']}:{t['effect']}" for t in p.taints])
        except ApiError as e:
            if e.code == 404:
                return True
            if e.code == 409:  # the node changed under us: plan again from the fresh copy
                return False
            raise
        return True

    async def _record(self, node: dict, reason: str, now: datetime) -> None:
        """Events are best effort (as upstream's recorder): a lost one must not
        stop the taints that follow."""
        try:
            await self.client.create("v1", "events", node_event(node, reason, now))
        except ApiError as e:
            log.warning("node %s: event %s not recorded: %s", node["metadata"]["name"],
                        reason, e)
