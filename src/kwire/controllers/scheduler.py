"""The scheduler (upstream's kube-scheduler, default profile, the basic plugins).

Plan purely, act thinly: `schedule(pod, nodes, pods_by_node)` is a pure function
that filters nodes as upstream's plugins do, in upstream's order (NodeUnschedulable,
TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit's pod count), and picks
the least-loaded feasible node; when none fits it explains why in upstream's
FailedScheduling wording. `Scheduler` is the thin loop that feeds it from the shared
informers and writes the outcome through the API: the pods/binding subresource, the
PodScheduled condition, and core/v1 Events.

A node whose Ready condition is not True counts as carrying the taint the node
lifecycle controller gives it (node.kubernetes.io/not-ready or /unreachable,
NoSchedule), so a pod that tolerates that taint may still land there, as upstream.
No preemption is done: the message's "preemption:" part says so in upstream's words.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from kwire.api.validation import quantity
from kwire.client import (ApiError, Client, Informers, WorkQueue, object_key, resource_path,
                          run_controller)
from kwire.timestamps import format_time

log = logging.getLogger("kwire.scheduler")

SCHEDULER_NAME = "default-scheduler"

UNSCHEDULABLE = "node(s) were unschedulable"
NODE_SELECTOR = "node(s) didn't match Pod's node affinity/selector"
HOST_PORTS = "node(s) didn't have free ports for the requested pod ports"
TOO_MANY_PODS = "Too many pods"
NO_NODES = "no nodes available to schedule pods"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
PREEMPTION_NEVER = "not eligible due to preemptionPolicy=Never"
RESOLVABLE = frozenset({HOST_PORTS, TOO_MANY_PODS})
"""Upstream's Unschedulable (not UnschedulableAndUnresolvable) reasons: the ones
preemption could cure by evicting pods, which kwire never does."""

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
TERMINAL_PHASES = ("Succeeded", "Failed")


def taint_reason(taint: Mapping) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"


@dataclass(frozen=True)
class Decision:
    """The node chosen, or None with why each node was filtered out (node -> reason)."""

    node: str | None
    reasons: dict[str, str] = field(default_factory=dict)
    preemption_never: bool = False

    @property
    def message(self) -> str:
        """Upstream's FitError text (with its DefaultPreemption post-filter part)."""
        if self.node is not None:
            return ""
        n = len(self.reasons)
        if not n:
            return NO_NODES
        msg = f"0/{n} nodes are available: {_histogram(self.reasons.values())}."
        if self.preemption_never:
            return f"{msg} preemption: {PREEMPTION_NEVER}."
        preemption = (NO_VICTIMS if r in RESOLVABLE else NOT_HELPFUL
                      for r in self.reasons.values())
        return f"{msg} preemption: 0/{n} nodes are available: {_histogram(preemption)}."


def _histogram(reasons: Iterable[str]) -> str:
    """"<count> <reason>" joined, sorted as strings (as upstream's sort.Strings does)."""
    return ", ".join(sorted(f"{c} {r}" for r, c in Counter(reasons).items()))


def schedule(pod: dict, nodes: Iterable[dict], pods_by_node: Mapping[str, list[dict]]
             ) -> Decision:
    """Pick a node for pod. pods_by_node holds the non-terminal pods bound (or being
    bound) to each node. Among feasible nodes the one with the fewest pods wins, then
    the smallest name, so equal clusters always give the same answer."""
    reasons: dict[str, str] = {}
    feasible: list[tuple[int, str]] = []
    for node in nodes:
        name = node["metadata"]["name"]
        on_node = pods_by_node.get(name, [])
        reason = filter_node(pod, node, on_node)
        if reason:
            reasons[name] = reason
        else:
            feasible.append((len(on_node), name))
    if feasible:
        return Decision(min(feasible)[1])
    spec = pod.get("spec") or {}
    return Decision(None, reasons, spec.get("preemptionPolicy") == "Never")


def filter_node(pod: dict, node: dict, on_node: list[dict]) -> str | None:
    """Why pod cannot go to node (the first failing filter, in upstream's order), or None."""
    spec = pod.get("spec") or {}
    tolerations = [t for t in spec.get("tolerations") or () if isinstance(t, dict)]
    nspec = node.get("spec") or {}
    if nspec.get("unschedulable") and not tolerated(
            {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}, tolerations):
        return UNSCHEDULABLE
    for taint in effective_taints(node):
        if taint.get("effect") in ("NoSchedule", "NoExecute") \
                and not tolerated(taint, tolerations):
            return taint_reason(taint)
    if not node_affinity_matches(pod, node):
        return NODE_SELECTOR
    wanted = host_ports(pod)
    if wanted and any(_ports_conflict(wanted, host_ports(p)) for p in on_node):
        return HOST_PORTS
    if len(on_node) + 1 > _allowed_pods(node):
        return TOO_MANY_PODS
    return None


def effective_taints(node: dict) -> list[dict]:
    """spec.taints plus the NoSchedule taint upstream's node lifecycle controller adds
    while Ready is False or missing (not-ready) or Unknown (unreachable)."""
    taints = [t for t in (node.get("spec") or {}).get("taints") or () if isinstance(t, dict)]
    ready = next((c.get("status") for c in (node.get("status") or {}).get("conditions") or ()
                  if isinstance(c, dict) and c.get("type") == "Ready"), "False")
    if ready != "True":
        key = "node.kubernetes.io/unreachable" if ready == "Unknown" \
            else "node.kubernetes.io/not-ready"
        if not any(t.get("key") == key and t.get("effect") == "NoSchedule" for t in taints):
            taints.append({"key": key, "effect": "NoSchedule"})
    return taints


def tolerated(taint: Mapping, tolerations: list[dict]) -> bool:
    """Toleration.ToleratesTaint for any of the tolerations."""
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("key") and t["key"] != taint.get("key"):
            continue
        op = t.get("operator") or "Equal"
        if op == "Exists" or (op == "Equal" and (t.get("value") or "") ==
                              (taint.get("value") or "")):
            return True
    return False


def node_affinity_matches(pod: dict, node: dict) -> bool:
    """spec.nodeSelector (every label equal) and the required node affinity (any term,
    every expression and field of it)."""
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if not required:
        return True
    fields = {"metadata.name": node["metadata"]["name"]}
    return any(_term_matches(term, labels, fields)
               for term in required.get("nodeSelectorTerms") or () if isinstance(term, dict))


def _term_matches(term: dict, labels: Mapping[str, str], fields: Mapping[str, str]) -> bool:
    """A term with no requirement matches nothing, as upstream."""
    exprs = [(e, labels) for e in term.get("matchExpressions") or ()] + \
        [(e, fields) for e in term.get("matchFields") or ()]
    return bool(exprs) and all(_requirement_matches(e, values) for e, values in exprs)


def _requirement_matches(expr: dict, values: Mapping[str, str]) -> bool:
    key, op, wanted = expr.get("key"), expr.get("operator"), expr.get("values") or []
    have = values.get(key)
    if op == "In":
        return have is not None and have in wanted
    if op == "NotIn":
        return have not in wanted
    if op == "Exists":
        return have is not None
    if op == "DoesNotExist":
        return have is None
    if op in ("Gt", "Lt") and have is not None and len(wanted) == 1:
        try:
            a, b = int(have), int(wanted[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def host_ports(pod: dict) -> set[tuple[str, str, int]]:
    """(hostIP, protocol, hostPort) of every container port asking for a host port."""
    out = set()
    for c in (pod.get("spec") or {}).get("containers") or ():
        for p in (c or {}).get("ports") or ():
            if isinstance(p, dict) and p.get("hostPort"):
                out.add((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP",
                         int(p["hostPort"])))
    return out


def _ports_conflict(a: set[tuple[str, str, int]], b: set[tuple[str, str, int]]) -> bool:
    """Same protocol and port, and the same host IP or either one 0.0.0.0 (all IPs)."""
    return any(pa == pb and proto_a == proto_b and
               (ip_a == ip_b or "0.0.0.0" in (ip_a, ip_b))
               for ip_a, proto_a, pa in a for ip_b, proto_b, pb in b)


def _allowed_pods(node: dict) -> int:
    """status.allocatable.pods; a node that reports none takes no pod, as upstream."""
    value = ((node.get("status") or {}).get("allocatable") or {}).get("pods")
    try:
        return int(quantity(value).amount) if value is not None else 0
    except ValueError:
        return 0


# --- the controller -----------------------------------------------------------------

UNSCHEDULABLE_FLUSH = 300.0  # upstream's podMaxInUnschedulablePodsDuration
RETRY = (1.0, 10.0)  # upstream's podInitialBackoffSeconds, podMaxBackoffSeconds


def is_ours(pod: dict) -> bool:
    """Unbound, not being deleted, not gated, and asking for this scheduler."""
    spec = pod.get("spec") or {}
    return (not spec.get("nodeName") and not pod["metadata"].get("deletionTimestamp")
            and not spec.get("schedulingGates")
            and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME)


def _live(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES


def _node_view(node: dict) -> tuple:
    """What of a Node scheduling reads (heartbeat timestamps inside conditions aside)."""
    status = node.get("status") or {}
    conds = sorted((c.get("type"), c.get("status")) for c in status.get("conditions") or ()
                   if isinstance(c, dict))
    return ((node.get("metadata") or {}).get("labels"), node.get("spec"), conds,
            status.get("allocatable"))


def unschedulable_condition(current: dict, message: str, now: str) -> dict:
    """PodScheduled=False; its transition time moves only when its status does."""
    since = current.get("lastTransitionTime") if current.get("status") == "False" else None
    return {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": message, "lastProbeTime": None, "lastTransitionTime": since or now}


def pod_event(pod: dict, etype: str, reason: str, message: str, now: str) -> dict:
    """A core/v1 Event about pod, named as upstream's recorder names them."""
    meta = pod["metadata"]
    stamp = datetime.now(timezone.utc).timestamp()
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{int(stamp * 1e9):x}",
                         "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta.get("uid", ""),
                               "resourceVersion": meta.get("resourceVersion", "")},
            "type": etype, "reason": reason, "message": message,
            "source": {"component": SCHEDULER_NAME}, "reportingComponent": SCHEDULER_NAME,
            "reportingInstance": SCHEDULER_NAME,
            "count": 1, "firstTimestamp": now, "lastTimestamp": now}


class Scheduler:
    """One worker, so each decision sees the previous ones (upstream schedules one pod
    at a time too). Pods bound but not yet seen bound by the informer are "assumed"
    on their node, so quick successive decisions still spread. An unschedulable pod
    waits until a node changes or a bound pod goes away, then retries after its own
    backoff (1s doubling to 10s), or after 5 minutes regardless."""

    def __init__(self, client: Client, informers: Informers):
        self.client, self.informers = client, informers
        self.queue: WorkQueue[str] = WorkQueue(*RETRY)
        self.assumed: dict[str, tuple[str, dict]] = {}  # pod key -> (node, pod)
        self.unschedulable: dict[str, int] = {}  # pod key -> failed attempts
        self.events: dict[tuple[str, str, str], dict] = {}  # (pod uid, reason, message) -> event

    @property
    def pods(self):
        return self.informers.get("v1", "pods")

    @property
    def nodes(self):
        return self.informers.get("v1", "nodes")

    async def run(self) -> None:
        await run_controller(self.queue, self.sync, 1, "scheduler",
                             ((self.pods, self._on_pod), (self.nodes, self._on_node)))

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        key = object_key(pod)
        if etype == "DELETED":
            was_placed = self.assumed.pop(key, None) or (pod.get("spec") or {}).get("nodeName")
            self._forget(key, pod)
            if was_placed:
                self._retry_unschedulable()
            return
        if (pod.get("spec") or {}).get("nodeName"):
            self.assumed.pop(key, None)
            self._forget(key, pod)
            if old is not None and _live(old) and not _live(pod):
                self._retry_unschedulable()
        elif is_ours(pod) and (old is None or old.get("spec") != pod.get("spec")
                               or key not in self.unschedulable):
            self.queue.add(key)

    def _on_node(self, etype: str, node: dict, old: dict | None) -> None:
        if etype != "DELETED" and (old is None or _node_view(old) != _node_view(node)):
            self._retry_unschedulable()

    def _retry_unschedulable(self) -> None:
        for key, attempts in self.unschedulable.items():
            self.queue.add_after(key, min(RETRY[0] * 2 ** (attempts - 1), RETRY[1]))

    def _forget(self, key: str, pod: dict) -> None:
        self.unschedulable.pop(key, None)
        uid = pod["metadata"].get("uid")
        for k in [k for k in self.events if k[0] == uid]:
            del self.events[k]

    def _pods_by_node(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for pod in self.pods.store.list():
            node = (pod.get("spec") or {}).get("nodeName")
            if node and _live(pod):
                out.setdefault(node, []).append(pod)
        for node, pod in self.assumed.values():
            out.setdefault(node, []).append(pod)
        return out

    async def sync(self, key: str) -> bool:
        pod = self.pods.store.get(key)
        if pod is None or not is_ours(pod) or key in self.assumed:
            return True
        decision = schedule(pod, self.nodes.store.list(), self._pods_by_node())
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        if decision.node is None:
            log.info("pod %s unschedulable: %s", key, decision.message)
            self.unschedulable[key] = self.unschedulable.get(key, 0) + 1
            self.queue.add_after(key, UNSCHEDULABLE_FLUSH)
            await self._set_unschedulable(pod, decision.message)
            await self._record(pod, "Warning", "FailedScheduling", decision.message)
            return True
        # Assumed before the request, so a deletion seen meanwhile un-assumes it.
        self.assumed[key] = (decision.node, pod)
        try:
            await self.client.request(
                "POST", resource_path("v1", "pods", ns, name, "binding"), body={
                    "apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name, "namespace": ns},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": decision.node}})
        except Exception as e:
            self.assumed.pop(key, None)
            if isinstance(e, ApiError) and e.code in (404, 409):
                # Gone, being deleted, or bound by someone else.
                log.debug("pod %s not bound: %s", key, e)
                return True
            raise
        self.unschedulable.pop(key, None)
        log.info("pod %s bound to %s", key, decision.node)
        await self._record(pod, "Normal", "Scheduled",
                           f"Successfully assigned {ns}/{name} to {decision.node}")
        return True

    async def _set_unschedulable(self, pod: dict, message: str) -> None:
        """PodScheduled=False, written only when reason or message changed."""
        current = next((c for c in (pod.get("status") or {}).get("conditions") or ()
                        if c.get("type") == "PodScheduled"), {})
        if (current.get("status"), current.get("reason"), current.get("message")) == \
                ("False", "Unschedulable", message):
            return
        meta = pod["metadata"]
        try:
            await self.client.patch("v1", "pods", meta["name"],
                                    {"status": {"conditions": [
                                        unschedulable_condition(current, message, format_time())]}},
                                    meta["namespace"], patch_type="strategic",
                                    subresource="status")
        except ApiError as e:
            if e.code != 404:
                raise

    async def _record(self, pod: dict, etype: str, reason: str, message: str) -> None:
        """Create the event, or count one more occurrence of the same one (as
        upstream's event correlator does) instead of piling up copies."""
        now = format_time()
        key = (pod["metadata"].get("uid") or "", reason, message)
        event = self.events.pop(key, None)
        try:
            if event is not None:
                try:
                    event = await self.client.patch(
                        "v1", "events", event["metadata"]["name"],
                        {"count": (event.get("count") or 1) + 1, "lastTimestamp": now},
                        event["metadata"]["namespace"])
                except ApiError as e:
                    if e.code != 404:
                        raise
                    event = None
            if event is None:
                event = await self.client.create("v1", "events",
                                                 pod_event(pod, etype, reason, message, now))
        except ApiError as e:
            log.warning("event for pod %s not recorded: %s", object_key(pod), e)
            return
        if etype == "Warning":
            self.events[key] = event
