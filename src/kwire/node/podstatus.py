"""A pod's status as the kubelet reports it, worked out from what the runtime
says about the pod's containers. Pure: the agent gathers the facts
(ContainerInfo per container instance, the reasons a container waits, probe
results) and this module turns them into phase, conditions and container
statuses with upstream's rules (kubelet getPhase, generateAPIPodStatus,
convertToAPIContainerStatuses)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kwire.timestamps import format_time

TERMINAL = ("Succeeded", "Failed")
CONDITION_ORDER = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                   "PodScheduled")


@dataclass
class ContainerInfo:
    """One instance (attempt) of a container, as the runtime knows it."""

    cid: str
    name: str
    attempt: int
    image: str
    image_id: str = ""
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    log_path: str = ""
    pod_uid: str = ""

    @property
    def running(self) -> bool:
        return self.started_at is not None and self.exit_code is None

    @property
    def exited(self) -> bool:
        return self.exit_code is not None

    @property
    def container_id(self) -> str:
        return f"runc://{self.cid}"

    def terminated(self) -> dict:
        reason = self.reason or ("Completed" if self.exit_code == 0 else "Error")
        out = {"exitCode": self.exit_code, "reason": reason,
               "startedAt": format_time(self.started_at) if self.started_at else None,
               "finishedAt": format_time(self.finished_at or self.started_at or self.created_at),
               "containerID": self.container_id}
        if self.message:
            out["message"] = self.message
        return out


@dataclass
class PodFacts:
    """Everything the status is made from, gathered by the agent."""

    containers: Mapping[str, list[ContainerInfo]] = field(default_factory=dict)
    """Instances per container name, oldest attempt first."""
    waiting: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Why a container is not running now: name -> (reason, message)."""
    ready: Mapping[str, bool] = field(default_factory=dict)
    """Readiness probe results (containers without a readiness probe are absent)."""
    started: Mapping[str, bool] = field(default_factory=dict)
    """Startup probe results (containers without a startup probe are absent)."""
    sandbox_ready: bool = False
    pod_ips: list[str] = field(default_factory=list)
    host_ip: str = ""
    start_time: float | None = None
    images: Mapping[str, str] = field(default_factory=dict)
    """Container name -> the image reference as resolved (docker.io/library/nginx:alpine)."""


def latest(facts: PodFacts, name: str) -> ContainerInfo | None:
    instances = facts.containers.get(name) or []
    return instances[-1] if instances else None


def _last_exited(facts: PodFacts, name: str, skip_latest: bool) -> ContainerInfo | None:
    instances = list(facts.containers.get(name) or [])
    if skip_latest and instances:
        instances = instances[:-1]
    for c in reversed(instances):
        if c.exited:
            return c
    return None


def init_succeeded(facts: PodFacts, name: str) -> bool:
    c = latest(facts, name)
    return c is not None and c.exit_code == 0


def container_status(facts: PodFacts, container: Mapping, *, init: bool = False,
                     initializing: bool = False, previous: Mapping | None = None) -> dict:
    """One entry of (init)containerStatuses. A container the node holds no instance of
    (never started, or lost with an agent restart) keeps what the previous status said
    of it: a terminated state whole, else its restartCount and lastState, as upstream's
    convertToAPIContainerStatuses starts from the old status."""
    name = container["name"]
    cur = latest(facts, name)
    waiting = facts.waiting.get(name)
    previous = previous or {}
    if cur is None and waiting is None and "terminated" in (previous.get("state") or {}):
        return dict(previous)
    status: dict = {"name": name, "image": facts.images.get(name) or container.get("image", ""),
                    "imageID": cur.image_id if cur else "",
                    "restartCount": cur.attempt if cur else previous.get("restartCount", 0),
                    "ready": False, "started": False,
                    "lastState": {} if cur else dict(previous.get("lastState") or {})}
    if cur is not None:
        status["containerID"] = cur.container_id
    if cur is not None and cur.running:
        status["state"] = {"running": {"startedAt": format_time(cur.started_at)}}
        prev = _last_exited(facts, name, skip_latest=True)
        if prev is not None:
            status["lastState"] = {"terminated": prev.terminated()}
        started = facts.started.get(name, True)
        status["started"] = started
        status["ready"] = started and facts.ready.get(name, True) and not init
    elif waiting is not None:
        reason, message = waiting
        status["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        prev = _last_exited(facts, name, skip_latest=False)
        if prev is not None:
            status["lastState"] = {"terminated": prev.terminated()}
    elif cur is not None and cur.exited:
        status["state"] = {"terminated": cur.terminated()}
        prev = _last_exited(facts, name, skip_latest=True)
        if prev is not None:
            status["lastState"] = {"terminated": prev.terminated()}
        status["ready"] = init and cur.exit_code == 0
    else:
        reason = "PodInitializing" if initializing else "ContainerCreating"
        status["state"] = {"waiting": {"reason": reason}}
    return status


def phase(pod: Mapping, facts: PodFacts, statuses: list[dict], init_statuses: list[dict],
          terminated: bool = False) -> str:
    """upstream getPhase; ``terminated``: every container of the pod has been stopped
    for good (deletion), so the phase is final whatever the restart policy."""
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy") or "Always"
    current = (pod.get("status") or {}).get("phase")
    if current in TERMINAL:
        return current
    if terminated:
        codes = [((s.get("state") or {}).get("terminated") or {}).get("exitCode") for s in statuses]
        return "Succeeded" if codes and all(c == 0 for c in codes) else "Failed"
    for s, c in zip(init_statuses, spec.get("initContainers") or []):
        if not init_succeeded(facts, c["name"]):
            term = (s.get("state") or {}).get("terminated")
            if policy == "Never" and term and term.get("exitCode") != 0:
                return "Failed"
            return "Pending"
    running = waiting = stopped = succeeded = 0
    for s in statuses:
        state = s.get("state") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in state:
            if (s.get("lastState") or {}).get("terminated"):
                stopped += 1
            else:
                waiting += 1
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(type_: str, ok: bool, now: str, previous: Mapping[str, dict],
               reason: str = "", message: str = "") -> dict:
    status = "True" if ok else "False"
    old = previous.get(type_)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else now
    out = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if not ok or reason:
        if reason:
            out["reason"] = reason
        if message:
            out["message"] = message
    return out


def pod_status(pod: Mapping, facts: PodFacts, now: float, *, terminated: bool = False) -> dict:
    """The whole status the agent writes for pod (``terminated``: see phase())."""
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    stamp = format_time(now)
    inits = spec.get("initContainers") or []
    before = {s["name"]: s for s in (old.get("initContainerStatuses") or [])
              + (old.get("containerStatuses") or [])}
    init_statuses = [container_status(facts, c, init=True, initializing=True,
                                      previous=before.get(c["name"])) for c in inits]
    statuses = [container_status(facts, c, initializing=bool(inits), previous=before.get(c["name"]))
                for c in spec.get("containers") or []]
    ph = phase(pod, facts, statuses, init_statuses, terminated)
    if ph in TERMINAL:
        for s in init_statuses + statuses:
            s["ready"] = False
    previous = {c["type"]: c for c in old.get("conditions") or []}
    pending_init = [c["name"] for c, st in zip(inits, init_statuses)
                    if not init_succeeded(facts, c["name"])
                    and ((st.get("state") or {}).get("terminated") or {}).get("exitCode") != 0]
    unready = [s["name"] for s in statuses if not s["ready"]]
    conditions = [_condition("PodReadyToStartContainers", facts.sandbox_ready, stamp, previous)]
    if ph == "Succeeded" and not pending_init:
        conditions.append(_condition("Initialized", True, stamp, previous, "PodCompleted"))
    else:
        conditions.append(_condition("Initialized", not pending_init, stamp, previous,
                                     "" if not pending_init else "ContainersNotInitialized",
                                     f"containers with incomplete status: [{' '.join(pending_init)}]"))
    if ph in TERMINAL:
        reason = "PodCompleted" if ph == "Succeeded" else "PodFailed"
        conditions.append(_condition("Ready", False, stamp, previous, reason))
        conditions.append(_condition("ContainersReady", False, stamp, previous, reason))
    else:
        message = f"containers with unready status: [{' '.join(unready)}]"
        reason = "" if not unready else "ContainersNotReady"
        conditions.append(_condition("Ready", not unready, stamp, previous, reason, message))
        conditions.append(_condition("ContainersReady", not unready, stamp, previous, reason, message))
    scheduled = previous.get("PodScheduled") or {"type": "PodScheduled", "status": "True",
                                                  "lastProbeTime": None, "lastTransitionTime": stamp}
    conditions.append(scheduled)
    conditions += [c for t, c in previous.items() if t not in CONDITION_ORDER]
    status: dict = {"phase": ph, "conditions": conditions}
    if facts.host_ip:
        status["hostIP"] = facts.host_ip
        status["hostIPs"] = [{"ip": facts.host_ip}]
    if facts.pod_ips:
        status["podIP"] = facts.pod_ips[0]
        status["podIPs"] = [{"ip": ip} for ip in facts.pod_ips]
    start = old.get("startTime") or (format_time(facts.start_time) if facts.start_time else None)
    if start:
        status["startTime"] = start
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    status["containerStatuses"] = statuses
    if old.get("qosClass"):
        status["qosClass"] = old["qosClass"]
    return status


OWNED = ("phase", "conditions", "hostIP", "hostIPs", "podIP", "podIPs", "startTime",
         "initContainerStatuses", "containerStatuses")
"""The status fields the kubelet writes; others (reason, message, nominatedNodeName,
resize...) belong to other writers and are left alone."""


def status_patch(old: Mapping, new: Mapping) -> dict | None:
    """A merge patch of status turning old into new (None when equal): owned keys
    new does not have are nulled, lists and maps replaced whole."""
    patch = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in OWNED if k in old and k not in new})
    return patch or None
