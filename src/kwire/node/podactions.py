"""What a pod's containers need next, decided from what runs (upstream's
computePodActions), and the back-off that spaces restarts and image pulls.
Pure: kubelet.py carries the decisions out."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kwire.node.images import ImageError, parse_reference
from kwire.node.podstatus import ContainerInfo, PodFacts, latest

BACKOFF_INITIAL, BACKOFF_MAX = 10.0, 300.0


class Backoff:
    """upstream's flowcontrol.Backoff as the kubelet uses it for restarts and pulls:
    the first failure is retried at once, then 10 s doubling to 5 min, measured
    from the last failure; an entry untouched for twice the maximum is forgotten,
    so a container that crashes after a long healthy run starts from 10 s again."""

    def __init__(self, initial: float = BACKOFF_INITIAL, maximum: float = BACKOFF_MAX):
        self.initial, self.maximum = initial, maximum
        self.entries: dict[tuple, tuple[float, float]] = {}  # key -> (delay, last update)

    def _live(self, key: tuple, at: float) -> tuple[float, float] | None:
        entry = self.entries.get(key)
        return entry if entry is not None and at - entry[1] <= 2 * self.maximum else None

    def in_backoff_since(self, key: tuple, since: float, now: float) -> float:
        """Seconds still to wait after an event at `since`, 0 when free to go."""
        entry = self._live(key, since)
        return 0.0 if entry is None else max(0.0, since + entry[0] - now)

    def remaining(self, key: tuple, now: float) -> float:
        """Seconds still to wait counted from the last failure itself."""
        entry = self._live(key, now)
        return 0.0 if entry is None else max(0.0, entry[1] + entry[0] - now)

    def delay(self, key: tuple) -> float:
        return self.entries.get(key, (self.initial, 0.0))[0]

    def next(self, key: tuple, at: float) -> None:
        entry = self._live(key, at)
        self.entries[key] = (self.initial if entry is None else min(entry[0] * 2, self.maximum), at)

    def forget_pod(self, uid: str) -> None:
        for key in [k for k in self.entries if k[0] == uid]:
            del self.entries[key]


@dataclass
class Start:
    name: str
    attempt: int
    init: bool = False


@dataclass
class Actions:
    start: list[Start] = field(default_factory=list)
    kill: list[tuple[str, str]] = field(default_factory=list)
    """(container name, why) for running containers that must stop now."""
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Containers held back, with the reason and message the status shows."""
    retry_after: float | None = None


def should_restart(policy: str, exit_code: int | None) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def image_ref(container: Mapping) -> str:
    try:
        return str(parse_reference(container.get("image") or ""))
    except ImageError:
        return container.get("image") or ""


def compute_actions(pod: Mapping, facts: PodFacts, unhealthy: Mapping[str, tuple[str, str]],
                    backoff: Backoff, now: float) -> Actions:
    """What the pod's containers need next (upstream computePodActions): the next
    init container, or every app container that is missing or must restart.

    A running container is killed (and restarted by a later sync, counting as a
    failure) when its liveness or startup probe failed — ``unhealthy`` maps a
    container name to (the container ID the verdict is about, why) — or when its
    image in the spec changed. An instance that was created but never started (a
    failed start, an agent that died in between) is replaced at once. A container
    the node has never run starts at the pod status's restartCount + 1 when the
    status shows it ran before (the agent lost it), else at 0."""
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy") or "Always"
    uid = pod["metadata"]["uid"]
    previous = {s["name"]: s for s in ((pod.get("status") or {}).get("initContainerStatuses") or [])
                + ((pod.get("status") or {}).get("containerStatuses") or [])}
    out = Actions()

    def first_attempt(name: str) -> int:
        old = previous.get(name) or {}
        state = old.get("state") or {}
        ran = "running" in state or "terminated" in state or (old.get("lastState") or {})
        return old.get("restartCount", 0) + 1 if ran else 0

    def restart_or_wait(c: Mapping, cur: ContainerInfo, init: bool) -> None:
        key = (uid, c["name"])
        finished = cur.finished_at or now
        wait = backoff.in_backoff_since(key, finished, now)
        if wait > 0:
            name = pod["metadata"]["name"]
            out.waiting[c["name"]] = ("CrashLoopBackOff",
                                      f"back-off {_duration(backoff.delay(key))} restarting "
                                      f"failed container={c['name']} pod={name}_"
                                      f"{pod['metadata']['namespace']}({uid})")
            out.retry_after = min(out.retry_after or wait, wait)
            return
        backoff.next(key, finished)
        out.start.append(Start(c["name"], cur.attempt + 1, init))

    def kill_reason(c: Mapping, cur: ContainerInfo) -> str | None:
        verdict = unhealthy.get(c["name"])
        if verdict is not None and verdict[0] == cur.cid:
            return verdict[1]
        if image_ref(c) != cur.image:
            return f"Container {c['name']} definition changed, will be restarted"
        return None

    for c in spec.get("initContainers") or []:
        cur = latest(facts, c["name"])
        if cur is None:
            out.start.append(Start(c["name"], first_attempt(c["name"]), True))
            return out
        if cur.running:
            why = kill_reason(c, cur)
            if why:
                out.kill.append((c["name"], why))
            return out
        if not cur.exited:
            out.start.append(Start(c["name"], cur.attempt + 1, True))
            return out
        if cur.exit_code == 0:
            continue
        if policy != "Never":
            restart_or_wait(c, cur, True)
        return out
    for c in spec.get("containers") or []:
        cur = latest(facts, c["name"])
        if cur is None:
            out.start.append(Start(c["name"], first_attempt(c["name"])))
        elif cur.running:
            why = kill_reason(c, cur)
            if why:
                out.kill.append((c["name"], why))
        elif not cur.exited:
            out.start.append(Start(c["name"], cur.attempt + 1))
        elif should_restart(policy, cur.exit_code):
            restart_or_wait(c, cur, False)
    return out


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60}s" if seconds >= 60 else f"{seconds}s"
