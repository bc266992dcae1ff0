"""What a pod's containers need next, decided from what runs (upstream's
computePodActions), and the back-off that spaces restarts and image pulls.
Pure: kubelet.py carries the decisions out."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kwire.node.podstatus import ContainerInfo, PodFacts, latest

BACKOFF_INITIAL, BACKOFF_MAX = 10.0, 300.0


class Backoff:
    """upstream's flowcontrol.Backoff as the kubelet uses it for restarts and pulls:
    the first failure is retried at once, then 10 s doubling to 5 min, measured
    from the last failure."""

    def __init__(self, initial: float = BACKOFF_INITIAL, maximum: float = BACKOFF_MAX):
        self.initial, self.maximum = initial, maximum
        self.entries: dict[tuple, tuple[float, float]] = {}  # key -> (delay, last update)

    def in_backoff_since(self, key: tuple, since: float, now: float) -> float:
        """Seconds still to wait after an event at `since`, 0 when free to go."""
        entry = self.entries.get(key)
        if entry is None:
            return 0.0
        delay, _ = entry
        return max(0.0, since + delay - now)

    def next(self, key: tuple, now: float) -> None:
        entry = self.entries.get(key)
        if entry is None or now - entry[1] > 2 * self.maximum:
            self.entries[key] = (self.initial, now)
        else:
            self.entries[key] = (min(entry[0] * 2, self.maximum), now)

    def forget(self, prefix: str) -> None:
        for key in [k for k in self.entries if k[0] == prefix]:
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


def compute_actions(pod: Mapping, facts: PodFacts, unhealthy: Mapping[str, str],
                    backoff: Backoff, now: float) -> Actions:
    """What the pod's containers need next (upstream computePodActions): the next
    init container, or every app container that is missing or must restart; a
    container whose liveness or startup probe failed is killed (and restarted by a
    later sync, counting as a failure)."""
    spec = pod.get("spec") or {}
    policy = spec.get("restartPolicy") or "Always"
    uid = pod["metadata"]["uid"]
    out = Actions()

    def restart_or_wait(c: Mapping, cur: ContainerInfo, init: bool) -> None:
        key = (uid, c["name"])
        wait = backoff.in_backoff_since(key, cur.finished_at or now, now)
        if wait > 0:
            name = pod["metadata"]["name"]
            out.waiting[c["name"]] = ("CrashLoopBackOff",
                                      f"back-off {_duration(backoff.entries[key][0])} restarting "
                                      f"failed container={c['name']} pod={name}_"
                                      f"{pod['metadata']['namespace']}({uid})")
            out.retry_after = min(out.retry_after or wait, wait)
            return
        backoff.next(key, now)
        out.start.append(Start(c["name"], cur.attempt + 1, init))

    for c in spec.get("initContainers") or []:
        cur = latest(facts, c["name"])
        if cur is None:
            out.start.append(Start(c["name"], 0, True))
            return out
        if cur.running:
            if c["name"] in unhealthy:
                out.kill.append((c["name"], unhealthy[c["name"]]))
            return out
        if cur.exit_code == 0:
            continue
        if policy != "Never":
            restart_or_wait(c, cur, True)
        return out
    for c in spec.get("containers") or []:
        cur = latest(facts, c["name"])
        if cur is None:
            out.start.append(Start(c["name"], 0))
        elif cur.running:
            if c["name"] in unhealthy:
                out.kill.append((c["name"], unhealthy[c["name"]]))
        elif cur.exited and should_restart(policy, cur.exit_code):
            restart_or_wait(c, cur, False)
    return out


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60}s" if seconds >= 60 else f"{seconds}s"
