"""The DaemonSet controller (upstream's pkg/controller/daemon).

A DaemonSet wants one pod on every node it may run on (its template's
nodeName, nodeSelector and required node affinity match the node, and the pod
tolerates the node's NoSchedule/NoExecute taints, with the tolerations every
daemon pod gets). Each pod is created for one node, with the node affinity
`matchFields metadata.name In [node]`, and the scheduler binds it there.

Each sync, as upstream's syncDaemonSet: find or create the ControllerRevision
holding the current template (its name ends with the template hash, which
pods carry as the controller-revision-hash label, and `kubectl rollout
history/undo` read it), then `manage` (create the missing pods, delete those
on nodes that must not run them, failed ones with a per-node backoff, and
extras), then when nothing is in flight one RollingUpdate step (replace old
pods within maxUnavailable, or surge new ones within maxSurge), then trim the
history beyond revisionHistoryLimit and write the status `kubectl rollout
status` reads.

The decisions are pure functions; `DaemonSetController` feeds them from the
shared informers and writes their outcome.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kwire.api.kinds.apps import TEMPLATE_GENERATION
from kwire.api.selectors import SelectorError, selector_from_object
from kwire.client import ApiError, Client, Informers, WorkQueue, object_key, run_controller
from kwire.client.events import EventRecorder
from kwire.controllers.deployment import template_hash
from kwire.controllers.replicaset import (Expectations, adopt_patch, claim, controller_ref,
                                          is_pod_available, is_pod_ready, new_controller_ref,
                                          release_patch, selects)
from kwire.controllers.scheduler import node_affinity_matches, tolerated
from kwire.timestamps import parse_time

log = logging.getLogger("kwire.daemonset")

HASH_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"
BURST_REPLICAS = 250                 # upstream's BurstReplicas
FAILED_POD_BACKOFF = (1.0, 900.0)    # upstream's failedPodsBackoff: 1s doubling to 15min
COMPONENT = "daemonset-controller"

DEFAULT_TOLERATIONS = (
    # daemon pods stay on nodes with problems: the node lifecycle's NoExecute taints...
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    # ...and the TaintNodesByCondition ones
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
NETWORK_UNAVAILABLE = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                       "effect": "NoSchedule"}


# --- daemon pods (pure) ---------------------------------------------------------------

def _same_toleration(a: dict, b: dict) -> bool:
    """Toleration.MatchToleration: same key, operator, value and effect."""
    return all((a.get(k) or "") == (b.get(k) or "") for k in ("key", "operator", "value",
                                                              "effect"))


def add_daemon_tolerations(spec: dict) -> None:
    """AddOrUpdateDaemonPodTolerations, in place: each default toleration replaces a
    matching one (which may differ in tolerationSeconds) or is appended."""
    defaults = list(DEFAULT_TOLERATIONS)
    if spec.get("hostNetwork"):
        defaults.append(NETWORK_UNAVAILABLE)
    tolerations = list(spec.get("tolerations") or ())
    for want in defaults:
        i = next((i for i, t in enumerate(tolerations) if _same_toleration(t, want)), None)
        if i is None:
            tolerations.append(dict(want))
        else:
            tolerations[i] = dict(want)
    spec["tolerations"] = tolerations


def template_generation(ds: dict) -> int | None:
    """The template generation the API server keeps in an annotation (None if unreadable)."""
    value = ((ds.get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_GENERATION)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def daemon_template(ds: dict, hash_: str) -> dict:
    """CreatePodTemplate: the template with the daemon tolerations and the
    generation and revision-hash labels."""
    template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
    add_daemon_tolerations(template.setdefault("spec", {}))
    labels = template.setdefault("metadata", {}).get("labels") or {}
    generation = template_generation(ds)
    if generation is not None:
        labels[GENERATION_LABEL] = str(generation)
    if hash_:
        labels[HASH_LABEL] = hash_
    template["metadata"]["labels"] = labels
    return template


def node_name_affinity(affinity: dict | None, node: str) -> dict:
    """ReplaceDaemonSetPodNodeNameNodeAffinity: the required node affinity becomes the
    one term `metadata.name In [node]` (the controller already checked the others)."""
    affinity = copy.deepcopy(affinity or {})
    node_affinity = affinity.setdefault("nodeAffinity", {}) or {}
    affinity["nodeAffinity"] = node_affinity
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    required["nodeSelectorTerms"] = [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": [node]}]}]
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = required
    return affinity


def daemon_pod(ds: dict, template: dict, node: str) -> dict:
    """The pod to create for node, from daemon_template's result."""
    meta = {k: copy.deepcopy(v) for k, v in (template.get("metadata") or {}).items()
            if k in ("labels", "annotations", "finalizers")}
    meta.update(generateName=f"{ds['metadata']['name']}-",
                namespace=ds["metadata"]["namespace"], ownerReferences=[new_controller_ref(ds)])
    spec = copy.deepcopy(template.get("spec") or {})
    spec["affinity"] = node_name_affinity(spec.get("affinity"), node)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def target_node(pod: dict) -> str | None:
    """GetTargetNodeName: spec.nodeName, or for a pod not yet bound the node its
    `metadata.name In [node]` affinity names."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution")) or {}
    for term in required.get("nodeSelectorTerms") or ():
        for expr in (term or {}).get("matchFields") or ():
            if expr.get("key") == "metadata.name" and expr.get("operator") == "In":
                values = expr.get("values") or []
                return values[0] if len(values) == 1 else None
    return None


def node_should_run(node: dict, ds: dict) -> tuple[bool, bool]:
    """NodeShouldRunDaemonPod: (should a daemon pod be created there, may one already
    there keep running). A pod kept off by a NoSchedule taint only keeps running."""
    template_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    name = node["metadata"]["name"]
    if template_spec.get("nodeName") not in (None, "", name):
        return False, False
    pod_spec = copy.deepcopy(template_spec)
    add_daemon_tolerations(pod_spec)
    if not node_affinity_matches({"spec": pod_spec}, node):
        return False, False
    tolerations = pod_spec["tolerations"]
    untolerated = [t for t in (node.get("spec") or {}).get("taints") or ()
                   if t.get("effect") in ("NoSchedule", "NoExecute")
                   and not tolerated(t, tolerations)]
    if untolerated:
        return False, not any(t.get("effect") == "NoExecute" for t in untolerated)
    return True, True


def is_pod_updated(pod: dict, hash_: str, generation: int | None) -> bool:
    """IsPodUpdated: the pod carries the current revision hash or template generation."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return bool((hash_ and labels.get(HASH_LABEL) == hash_)
                or (generation is not None and labels.get(GENERATION_LABEL) == str(generation)))


def _is_terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _deleting(pod: dict) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def nodes_to_daemon_pods(pods: Iterable[dict], include_deleted_terminal: bool = False
                         ) -> dict[str, list[dict]]:
    """getNodesToDaemonPods: the daemon pods by target node. Terminal pods being
    deleted are left out unless asked for: nothing remains to do with them."""
    out: dict[str, list[dict]] = {}
    for pod in pods:
        if not include_deleted_terminal and _is_terminal(pod) and _deleting(pod):
            continue
        node = target_node(pod)
        if node:
            out.setdefault(node, []).append(pod)
    return out


def _creation_order(pod: dict) -> tuple:
    """podByCreationTimestampAndPhase: bound pods first, then oldest, then by name."""
    return (not (pod.get("spec") or {}).get("nodeName"),
            parse_time(pod["metadata"].get("creationTimestamp")) or datetime.max.replace(
                tzinfo=UTC),
            pod["metadata"]["name"])


def _scaled(value, total: int) -> int:
    """intstr.GetScaledValueFromIntOrPercent, rounding up; unset is 0."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value or 0)


def _rolling(ds: dict) -> dict | None:
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return None
    return strategy.get("rollingUpdate") or {}


def allows_surge(ds: dict) -> bool:
    rolling = _rolling(ds)
    return rolling is not None and _scaled(rolling.get("maxSurge"), 1) > 0


def rollout_limits(ds: dict, desired: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) for `desired` nodes; both zero would stall, so
    unavailability becomes 1, as upstream's updatedDesiredNodeCounts does."""
    rolling = _rolling(ds)
    if rolling is None:
        return 0, 0
    surge = _scaled(rolling.get("maxSurge"), desired)
    unavailable = _scaled(rolling.get("maxUnavailable"), desired)
    if desired > 0 and surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


# --- failed pods backoff (pure, given the clock) ------------------------------------------

@dataclass
class _BackoffEntry:
    delay: float
    updated: float


class FailedPodsBackoff:
    """flowcontrol.Backoff as the DaemonSet controller uses it, without jitter: a
    failed daemon pod is deleted at once, the next failure on the same node only
    after 1s, then 2s, 4s... up to 15 min; an entry idle for twice that is forgotten."""

    def __init__(self, initial: float = FAILED_POD_BACKOFF[0],
                 maximum: float = FAILED_POD_BACKOFF[1], clock: Callable[[], float] =
                 time.monotonic):
        self.initial, self.maximum, self.clock = initial, maximum, clock
        self._entries: dict[str, _BackoffEntry] = {}

    def _expired(self, entry: _BackoffEntry, now: float) -> bool:
        return now - entry.updated > 2 * self.maximum

    def in_backoff(self, key: str) -> bool:
        """IsInBackOffSinceUpdate."""
        now = self.clock()
        entry = self._entries.get(key)
        return entry is not None and not self._expired(entry, now) \
            and now - entry.updated < entry.delay

    def delay(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry.delay if entry is not None else 0.0

    def next(self, key: str) -> None:
        now = self.clock()
        for k in [k for k, e in self._entries.items() if self._expired(e, now)]:
            del self._entries[k]
        entry = self._entries.get(key)
        delay = self.initial if entry is None else min(entry.delay * 2, self.maximum)
        self._entries[key] = _BackoffEntry(delay, now)


# --- manage and rolling update (pure) -----------------------------------------------------

def _pod_name(pod: dict) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


@dataclass
class Plan:
    """Nodes to create a daemon pod on, pods to delete, the events that tell why
    finished pods go, and when to look again (a failed pod waiting out its backoff)."""

    create: list[str] = field(default_factory=list)
    delete: list[dict] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # type, reason, message
    retry_after: float | None = None


def plan_manage(ds: dict, nodes: list[dict], by_node: dict[str, list[dict]], hash_: str,
                backoff: FailedPodsBackoff, now: datetime) -> Plan:
    """manage + podsShouldBeOnNode + getUnscheduledPodsWithoutNode."""
    plan = Plan()
    min_ready = (ds.get("spec") or {}).get("minReadySeconds") or 0
    surge = allows_surge(ds)
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        should_run, should_continue = node_should_run(node, ds)
        pods = by_node.get(name)
        if should_run and pods is None:
            plan.create.append(name)
        elif should_continue:
            running = []
            for pod in pods or ():
                if _deleting(pod):
                    continue
                phase = (pod.get("status") or {}).get("phase")
                if phase == "Failed":
                    observed = (ds.get("status") or {}).get("observedGeneration", 0)
                    key = f"{ds['metadata'].get('uid', '')}/{observed}/{name}"
                    if backoff.in_backoff(key):
                        delay = backoff.delay(key)
                        plan.retry_after = delay if plan.retry_after is None \
                            else min(plan.retry_after, delay)
                        continue
                    backoff.next(key)
                    plan.events.append(("Warning", "FailedDaemonPod",
                                        f"Found failed daemon pod {_pod_name(pod)} on node "
                                        f"{name}, will try to kill it"))
                    plan.delete.append(pod)
                elif phase == "Succeeded":
                    plan.events.append(("Normal", "SucceededDaemonPod",
                                        f"Found succeeded daemon pod {_pod_name(pod)} on node "
                                        f"{name}, will try to delete it"))
                    plan.delete.append(pod)
                else:
                    running.append(pod)
            running.sort(key=_creation_order)
            if not surge:
                # one pod per node: the oldest stays
                plan.delete.extend(running[1:])
                continue
            if not running:
                if should_run:
                    plan.create.append(name)
                continue
            # surging: an old and a new pod may overlap until the new one is available
            oldest_new = oldest_old = None
            for pod in running:
                if (pod["metadata"].get("labels") or {}).get(HASH_LABEL) == hash_:
                    if oldest_new is None:
                        oldest_new = pod
                        continue
                elif oldest_old is None:
                    oldest_old = pod
                    continue
                plan.delete.append(pod)
            if oldest_new is not None and oldest_old is not None and (
                    not is_pod_ready(oldest_old)
                    or is_pod_available(oldest_new, min_ready, now)):
                plan.delete.append(oldest_old)
        elif pods:
            plan.delete.extend(p for p in pods if not _deleting(p))
    existing = {n["metadata"]["name"] for n in nodes}
    for name, pods in sorted(by_node.items()):
        if name not in existing:
            plan.delete.extend(p for p in pods if not (p.get("spec") or {}).get("nodeName"))
    return plan


def _updated_and_old(pods: list[dict], hash_: str, generation: int | None
                     ) -> tuple[dict | None, dict | None, bool]:
    """findUpdatedPodsOnNode: the node's new and old pod, not ok if it has two of either."""
    new = old = None
    for pod in pods:
        if _deleting(pod):
            continue
        if is_pod_updated(pod, hash_, generation):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


def plan_rolling_update(ds: dict, nodes: list[dict], by_node: dict[str, list[dict]],
                        hash_: str, now: datetime) -> tuple[list[dict], list[str]]:
    """One rollingUpdate step: (old pods to delete, nodes to surge a new pod onto).
    Without surge, old pods are deleted while at most maxUnavailable nodes lack an
    available pod (manage then creates their replacements); with surge, new pods
    are created beside at most maxSurge available old ones."""
    min_ready = (ds.get("spec") or {}).get("minReadySeconds") or 0
    generation = template_generation(ds)
    by_node = dict(by_node)
    node_by_name = {n["metadata"]["name"]: n for n in nodes}
    desired = 0
    for node in nodes:
        if node_should_run(node, ds)[0]:
            desired += 1
            by_node.setdefault(node["metadata"]["name"], [])
    max_surge, max_unavailable = rollout_limits(ds, desired)

    def available(pod: dict) -> bool:
        return is_pod_available(pod, min_ready, now)

    if max_surge == 0:
        unavailable = 0
        replace: list[dict] = []
        candidates: list[dict] = []
        for name in sorted(by_node):
            new, old, ok = _updated_and_old(by_node[name], hash_, generation)
            if not ok or (new is None) == (old is None):
                unavailable += 1  # manage sorts this node out
            elif new is not None:
                if not available(new):
                    unavailable += 1
            elif not available(old):
                replace.append(old)  # replaced whatever the budget, but counted in it
                unavailable += 1
            elif unavailable < max_unavailable:
                candidates.append(old)
        room = min(max(max_unavailable - unavailable, 0), len(candidates))
        return replace + candidates[:room], []

    to_delete: list[dict] = []
    should_not_run: list[dict] = []
    allowed: list[str] = []
    candidates_new: list[str] = []
    surging = 0
    num_available = 0
    for name in sorted(by_node):
        new, old, ok = _updated_and_old(by_node[name], hash_, generation)
        if not ok:
            surging += 1
            continue
        if (old or new) is not None and available(old or new):
            num_available += 1
        if old is None:
            continue
        if new is None:
            node = node_by_name.get(name)
            should_run = node is not None and node_should_run(node, ds)[0]
            if not available(old):
                if should_run:
                    allowed.append(name)
                else:
                    to_delete.append(old)
            elif not should_run:
                should_not_run.append(old)
            elif surging < max_surge:
                candidates_new.append(name)
        elif not available(new):
            surging += 1
        else:
            to_delete.append(old)
    # with surge, availability stays at 100%: a pod on a node it no longer fits
    # goes only once enough pods are available elsewhere
    deletable = min(max(num_available - desired, 0), len(should_not_run))
    to_delete.extend(should_not_run[:deletable])
    room = min(max(max_surge - surging, 0), len(candidates_new))
    return to_delete, allowed + candidates_new[:room]


# --- status (pure) --------------------------------------------------------------------

def daemonset_status(ds: dict, nodes: list[dict], by_node: dict[str, list[dict]], hash_: str,
                     now: datetime, observed: bool) -> dict:
    """updateDaemonSetStatus: counted per node, from its oldest daemon pod.
    observedGeneration moves only when the sync acted on this generation."""
    min_ready = (ds.get("spec") or {}).get("minReadySeconds") or 0
    generation = template_generation(ds)
    desired = current = misscheduled = ready = updated = available = 0
    for node in nodes:
        should_run, _ = node_should_run(node, ds)
        pods = sorted(by_node.get(node["metadata"]["name"]) or (), key=_creation_order)
        if not should_run:
            misscheduled += bool(pods)
            continue
        desired += 1
        if not pods:
            continue
        current += 1
        if is_pod_ready(pods[0]):
            ready += 1
            available += is_pod_available(pods[0], min_ready, now)
        updated += is_pod_updated(pods[0], hash_, generation)
    old = ds.get("status") or {}
    status = {"currentNumberScheduled": current, "numberMisscheduled": misscheduled,
              "desiredNumberScheduled": desired, "numberReady": ready,
              "observedGeneration": ds["metadata"].get("generation", 0) if observed
              else old.get("observedGeneration", 0),
              "updatedNumberScheduled": updated, "numberAvailable": available,
              "numberUnavailable": desired - available}
    for key in ("collisionCount", "conditions"):
        if old.get(key) is not None:
            status[key] = old[key]
    return status


# --- history (pure) -------------------------------------------------------------------

def history_data(ds: dict) -> dict:
    """getPatch: a strategic merge patch that puts this template back (what `kubectl
    rollout undo` applies)."""
    template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def history_matches(ds: dict, history: dict) -> bool:
    return history.get("data") == history_data(ds)


def new_history(ds: dict, hash_: str, revision: int) -> dict:
    """snapshot: a ControllerRevision `<ds>-<hash>` for the current template."""
    labels = dict(((ds["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {})
    labels[HASH_LABEL] = hash_
    meta = {"name": f"{ds['metadata']['name']}-{hash_}",
            "namespace": ds["metadata"]["namespace"], "labels": labels,
            "ownerReferences": [new_controller_ref(ds)]}
    if ds["metadata"].get("annotations"):
        meta["annotations"] = dict(ds["metadata"]["annotations"])
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta,
            "data": history_data(ds), "revision": revision}


def histories_to_clean(ds: dict, old: list[dict], live_hashes: set[str]) -> list[dict]:
    """cleanupHistory: old revisions beyond revisionHistoryLimit, lowest first, but
    none whose pods still exist."""
    excess = len(old) - (ds["spec"].get("revisionHistoryLimit", 10))
    out = []
    for history in sorted(old, key=lambda h: h.get("revision", 0)):
        if len(out) >= excess:
            break
        if (history["metadata"].get("labels") or {}).get(HASH_LABEL) not in live_hashes:
            out.append(history)
    return out


# --- the controller -------------------------------------------------------------------

def _view(node: dict) -> tuple:
    """What of a Node the DaemonSet decisions read (shouldIgnoreNodeUpdate)."""
    return (node["metadata"].get("labels") or {}, (node.get("spec") or {}).get("taints") or [])


class DaemonSetController:
    def __init__(self, client: Client, informers: Informers, workers: int = 2):
        self.client, self.informers, self.workers = client, informers, workers
        self.queue: WorkQueue[str] = WorkQueue(base_delay=0.05, max_delay=30.0)
        self.expectations = Expectations()
        self.backoff = FailedPodsBackoff()
        self.recorder = EventRecorder(client, COMPONENT)

    @property
    def daemonsets(self):
        return self.informers.get("apps/v1", "daemonsets")

    @property
    def histories(self):
        return self.informers.get("apps/v1", "controllerrevisions")

    @property
    def pods(self):
        return self.informers.get("v1", "pods")

    @property
    def nodes(self):
        return self.informers.get("v1", "nodes")

    async def run(self) -> None:
        await run_controller(self.queue, self.sync, self.workers, "daemonset",
                             ((self.daemonsets, self._on_daemonset),
                              (self.histories, self._on_history), (self.pods, self._on_pod),
                              (self.nodes, self._on_node)),
                             wait_synced=True)

    # --- handlers ---------------------------------------------------------------------

    def _on_daemonset(self, etype: str, obj: dict, old: dict | None) -> None:
        key = object_key(obj)
        if etype == "DELETED":
            self.expectations.forget(key)
        self.queue.add(key)

    def _owners_of(self, obj: dict) -> list[str]:
        """The DaemonSet controlling obj, or for an orphan every one that selects it."""
        ns = obj["metadata"]["namespace"]
        ref = controller_ref(obj)
        if ref is not None:
            return [f"{ns}/{ref['name']}"] if ref.get("kind") == "DaemonSet" else []
        return [object_key(ds) for ds in self.daemonsets.store.list(ns) if selects(ds, obj)]

    def _on_history(self, etype: str, obj: dict, old: dict | None) -> None:
        for key in set(self._owners_of(obj) + (self._owners_of(old) if old else [])):
            self.queue.add(key)

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        ref = controller_ref(pod)
        if ref is not None and ref.get("kind") == "DaemonSet":
            key = f"{pod['metadata']['namespace']}/{ref['name']}"
            if etype == "ADDED" and old is None:
                self.expectations.created(key)
            if etype == "DELETED" or _deleting(pod):
                self.expectations.deleted(key, pod["metadata"]["uid"])
        for key in set(self._owners_of(pod) + (self._owners_of(old) if old else [])):
            self.queue.add(key)

    def _on_node(self, etype: str, node: dict, old: dict | None) -> None:
        """A new or deleted node concerns every DaemonSet; a changed one those whose
        decision for it changes."""
        if old is not None and etype != "DELETED" and _view(old) == _view(node):
            return
        for ds in self.daemonsets.store.list():
            if old is None or etype == "DELETED" or \
                    node_should_run(old, ds) != node_should_run(node, ds):
                self.queue.add(object_key(ds))

    # --- sync -------------------------------------------------------------------------

    async def sync(self, key: str) -> bool:
        namespace, name = key.split("/", 1)
        ds = self.daemonsets.store.get_object(name, namespace)
        if ds is None:
            self.expectations.forget(key)
            return True
        try:
            empty = selector_from_object(ds["spec"].get("selector")).empty
        except SelectorError:
            empty = True
        if empty:
            await self.recorder.event(ds, "Warning", "SelectingAll",
                                      "This daemon set is selecting all pods. "
                                      "A non-empty selector is required.")
            return True
        if ds["metadata"].get("deletionTimestamp"):
            # its pods and history may be going already: nothing sure to count
            return True
        try:
            return await self._sync(key, ds)
        except ApiError as e:
            if e.code in (404, 409):
                return False
            raise

    async def _sync(self, key: str, ds: dict) -> bool:
        current, old = await self._construct_history(ds)
        hash_ = current["metadata"]["labels"][HASH_LABEL]
        await self._claim_pods(ds)
        if not self.expectations.satisfied(key):
            return await self._update_status(ds, hash_, observed=False)
        ok = await self._manage(key, ds, hash_)
        if self.expectations.satisfied(key) and _rolling(ds) is not None:
            delete, create = plan_rolling_update(ds, self.nodes.store.list(),
                                                 self._by_node(ds), hash_, datetime.now(UTC))
            ok = await self._sync_nodes(key, ds, delete, create, hash_) and ok
        await self._cleanup_history(ds, old)
        return await self._update_status(ds, hash_, observed=True) and ok

    def _owned_pods(self, ds: dict) -> list[dict]:
        c = claim(ds, self.pods.store.list(ds["metadata"]["namespace"]))
        return c.owned + c.adopt

    def _by_node(self, ds: dict, include_deleted_terminal: bool = False
                 ) -> dict[str, list[dict]]:
        return nodes_to_daemon_pods(self._owned_pods(ds), include_deleted_terminal)

    async def _claim_pods(self, ds: dict) -> None:
        c = claim(ds, self.pods.store.list(ds["metadata"]["namespace"]))
        for pod, patch in [(p, adopt_patch(ds, p)) for p in c.adopt] + \
                [(p, release_patch(ds, p)) for p in c.release]:
            try:
                await self.client.patch("v1", "pods", pod["metadata"]["name"], patch,
                                        pod["metadata"]["namespace"])
            except ApiError as e:
                if e.code not in (404, 409, 422):
                    raise

    async def _manage(self, key: str, ds: dict, hash_: str) -> bool:
        plan = plan_manage(ds, self.nodes.store.list(), self._by_node(ds), hash_, self.backoff,
                           datetime.now(UTC))
        for etype, reason, message in plan.events:
            await self.recorder.event(ds, etype, reason, message)
        if plan.retry_after is not None:
            self.queue.add_after(key, plan.retry_after)
        return await self._sync_nodes(key, ds, plan.delete, plan.create, hash_)

    async def _sync_nodes(self, key: str, ds: dict, delete: list[dict], create: list[str],
                          hash_: str) -> bool:
        """syncNodes: create (in slow-start batches: 1, 2, 4... stopping at the first
        failure) and delete, within BURST_REPLICAS each, expecting every write."""
        create, delete = create[:BURST_REPLICAS], delete[:BURST_REPLICAS]
        if not create and not delete:
            return True
        self.expectations.expect(key, adds=len(create),
                                 deletes=[p["metadata"]["uid"] for p in delete])
        template = daemon_template(ds, hash_)
        ok = True
        batch, start = 1, 0
        while start < len(create):
            nodes = create[start:start + batch]
            results = await asyncio.gather(*(self._create(key, ds, template, n) for n in nodes))
            start += len(nodes)
            batch *= 2
            if not all(results):
                for _ in create[start:]:
                    self.expectations.created(key)  # never to be created, nor observed
                ok = False
                break
        results = await asyncio.gather(*(self._delete(key, ds, p) for p in delete))
        return ok and all(results)

    async def _create(self, key: str, ds: dict, template: dict, node: str) -> bool:
        try:
            pod = await self.client.create("v1", "pods", daemon_pod(ds, template, node))
        except ApiError as e:
            self.expectations.created(key)
            if e.code == 403:  # namespace terminating
                return True
            await self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating: {e.message}")
            log.warning("creating a pod on %s for daemonset %s: %s", node, key, e.message)
            return False
        await self.recorder.event(ds, "Normal", "SuccessfulCreate",
                                  f"Created pod: {pod['metadata']['name']}")
        return True

    async def _delete(self, key: str, ds: dict, pod: dict) -> bool:
        meta = pod["metadata"]
        try:
            await self.client.delete("v1", "pods", meta["name"], meta["namespace"],
                                     preconditions={"uid": meta["uid"]})
        except ApiError as e:
            self.expectations.deleted(key, meta["uid"])
            if e.code in (404, 409):
                return True
            raise
        await self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {meta['name']}")
        return True

    # --- history ----------------------------------------------------------------------

    async def _construct_history(self, ds: dict) -> tuple[dict, list[dict]]:
        """constructHistory: the current ControllerRevision (created, or renumbered to
        be the newest) and the old ones."""
        ns = ds["metadata"]["namespace"]
        claimed = claim(ds, self.histories.store.list(ns))
        for h in claimed.release:
            await self.client.patch("apps/v1", "controllerrevisions", h["metadata"]["name"],
                                    release_patch(ds, h), ns)
        histories = list(claimed.owned)
        for h in claimed.adopt:
            histories.append(await self.client.patch(
                "apps/v1", "controllerrevisions", h["metadata"]["name"], adopt_patch(ds, h), ns))
        current, old = [], []
        for h in histories:
            if HASH_LABEL not in (h["metadata"].get("labels") or {}):
                h = await self.client.patch(
                    "apps/v1", "controllerrevisions", h["metadata"]["name"],
                    {"metadata": {"labels": {HASH_LABEL: h["metadata"]["name"]}}}, ns)
            (current if history_matches(ds, h) else old).append(h)
        revision = max((h.get("revision", 0) for h in old), default=0) + 1
        if not current:
            return await self._snapshot(ds, revision), old
        cur = await self._dedup(ds, current)
        if cur.get("revision", 0) < revision:
            cur = await self.client.patch("apps/v1", "controllerrevisions",
                                          cur["metadata"]["name"], {"revision": revision}, ns)
        return cur, old

    async def _snapshot(self, ds: dict, revision: int) -> dict:
        collisions = (ds.get("status") or {}).get("collisionCount", 0)
        body = new_history(ds, template_hash(ds["spec"]["template"], collisions), revision)
        ns = ds["metadata"]["namespace"]
        try:
            return await self.client.create("apps/v1", "controllerrevisions", body)
        except ApiError as e:
            if e.code != 409:
                raise
            existing = await self.client.get("apps/v1", "controllerrevisions",
                                             body["metadata"]["name"], ns)
            if history_matches(ds, existing):
                return existing
            # a hash collision: bump collisionCount (unless ours is stale) so the name changes
            fresh = await self.client.get("apps/v1", "daemonsets", ds["metadata"]["name"], ns)
            if (fresh.get("status") or {}).get("collisionCount", 0) == collisions:
                await self.client.update_status("apps/v1", "daemonsets", {
                    **fresh, "status": {**(fresh.get("status") or {}),
                                        "collisionCount": collisions + 1}})
            raise

    async def _dedup(self, ds: dict, current: list[dict]) -> dict:
        """dedupCurHistories: keep the highest revision; move the pods of the others
        over to its hash, then delete them."""
        keep = max(current, key=lambda h: h.get("revision", 0))
        keep_hash = keep["metadata"]["labels"][HASH_LABEL]
        for h in current:
            if h is keep:
                continue
            dup_hash = h["metadata"]["labels"][HASH_LABEL]
            for pod in self._owned_pods(ds):
                if (pod["metadata"].get("labels") or {}).get(HASH_LABEL) == dup_hash:
                    await self.client.patch("v1", "pods", pod["metadata"]["name"],
                                            {"metadata": {"labels": {HASH_LABEL: keep_hash}}},
                                            pod["metadata"]["namespace"])
            await self.client.delete("apps/v1", "controllerrevisions", h["metadata"]["name"],
                                     h["metadata"]["namespace"],
                                     preconditions={"uid": h["metadata"]["uid"]})
        return keep

    async def _cleanup_history(self, ds: dict, old: list[dict]) -> None:
        live = {(p["metadata"].get("labels") or {}).get(HASH_LABEL)
                for pods in self._by_node(ds, include_deleted_terminal=True).values()
                for p in pods}
        for h in histories_to_clean(ds, old, live):
            try:
                await self.client.delete("apps/v1", "controllerrevisions", h["metadata"]["name"],
                                         h["metadata"]["namespace"],
                                         preconditions={"uid": h["metadata"]["uid"]})
            except ApiError as e:
                if e.code not in (404, 409):
                    raise

    # --- status -----------------------------------------------------------------------

    async def _update_status(self, ds: dict, hash_: str, observed: bool) -> bool:
        status = daemonset_status(ds, self.nodes.store.list(), self._by_node(ds), hash_,
                                  datetime.now(UTC), observed)
        if status != ds.get("status"):
            try:
                await self.client.update_status("apps/v1", "daemonsets", {**ds, "status": status})
            except ApiError as e:
                if e.code == 404:
                    return True
                if e.code == 409:
                    return False
                raise
        min_ready = ds["spec"].get("minReadySeconds") or 0
        if min_ready and status["numberReady"] != status["numberAvailable"]:
            self.queue.add_after(object_key(ds), min_ready)
        return True
