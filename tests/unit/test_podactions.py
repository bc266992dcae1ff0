"""What the kubelet starts, restarts or kills next, and the CrashLoopBackOff timing."""
from kwire.node.podactions import Backoff, compute_actions, should_restart
from kwire.node.podstatus import ContainerInfo, PodFacts

NOW = 1_800_000_000.0
BUSYBOX = "docker.io/library/busybox:latest"


def pod(policy="Always", inits=()):
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"restartPolicy": policy,
                     "containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}],
                     "initContainers": [{"name": n, "image": "busybox"} for n in inits]}}


def info(name, attempt=0, code=None, finished=None):
    return ContainerInfo(cid=f"x-{attempt}-{name}", name=name, attempt=attempt, image=BUSYBOX,
                         started_at=NOW - 100, exit_code=code, finished_at=finished)


def test_new_pod_starts_every_container():
    acts = compute_actions(pod(), PodFacts(), {}, Backoff(), NOW)
    assert [(s.name, s.attempt, s.init) for s in acts.start] == [("a", 0, False), ("b", 0, False)]


def test_init_containers_run_one_at_a_time_in_order():
    p = pod(inits=("i1", "i2"))
    acts = compute_actions(p, PodFacts(), {}, Backoff(), NOW)
    assert [(s.name, s.init) for s in acts.start] == [("i1", True)]
    acts = compute_actions(p, PodFacts(containers={"i1": [info("i1", code=0, finished=NOW)]}),
                           {}, Backoff(), NOW)
    assert [s.name for s in acts.start] == ["i2"]
    acts = compute_actions(p, PodFacts(containers={"i1": [info("i1")]}), {}, Backoff(), NOW)
    assert acts.start == []


def test_failed_init_container_under_never_stops_the_pod():
    p = pod(policy="Never", inits=("i1",))
    acts = compute_actions(p, PodFacts(containers={"i1": [info("i1", code=1, finished=NOW)]}),
                           {}, Backoff(), NOW)
    assert acts.start == [] and acts.waiting == {}


def test_restart_policy():
    assert should_restart("Always", 0) and should_restart("Always", 1)
    assert should_restart("OnFailure", 1) and not should_restart("OnFailure", 0)
    assert not should_restart("Never", 1)
    facts = PodFacts(containers={"a": [info("a", code=0, finished=NOW)], "b": [info("b")]})
    assert compute_actions(pod("OnFailure"), facts, {}, Backoff(), NOW).start == []
    assert [s.attempt for s in compute_actions(pod("Always"), facts, {}, Backoff(), NOW).start] == [1]


def test_crash_loop_back_off_grows_from_the_last_exit():
    backoff = Backoff()
    t = NOW
    delays = []
    for attempt in range(5):
        facts = PodFacts(containers={"a": [info("a", attempt, 1, t)], "b": [info("b")]})
        acts = compute_actions(pod(), facts, {}, backoff, t)
        if attempt == 0:
            assert [s.attempt for s in acts.start] == [1]  # the first restart is immediate
            t += 1
            continue
        assert acts.start == []
        reason, message = acts.waiting["a"]
        assert reason == "CrashLoopBackOff"
        assert "restarting failed container=a pod=p_ns(u)" in message
        delays.append(acts.retry_after)
        t += acts.retry_after
        acts = compute_actions(pod(), facts, {}, backoff, t)
        assert [s.attempt for s in acts.start] == [attempt + 1]
        t += 1
    assert delays == [10.0, 20.0, 40.0, 80.0]


def test_back_off_caps_at_five_minutes():
    backoff = Backoff()
    for _ in range(12):
        backoff.next(("u", "a"), NOW)
    assert backoff.entries[("u", "a")][0] == 300.0


def test_unhealthy_running_container_is_killed():
    facts = PodFacts(containers={"a": [info("a")], "b": [info("b")]})
    why = "Container a failed liveness probe, will be restarted"
    acts = compute_actions(pod(), facts, {"a": ("x-0-a", why)}, Backoff(), NOW)
    assert acts.kill == [("a", why)]
    assert acts.start == []
    # a verdict about an instance that is gone does not kill its successor
    facts = PodFacts(containers={"a": [info("a", 1)], "b": [info("b")]})
    assert compute_actions(pod(), facts, {"a": ("x-0-a", why)}, Backoff(), NOW).kill == []


def test_changed_image_restarts_the_container():
    p = pod()
    p["spec"]["containers"][0]["image"] = "nginx:alpine"
    facts = PodFacts(containers={"a": [info("a")], "b": [info("b")]})
    assert compute_actions(p, facts, {}, Backoff(), NOW).kill == [
        ("a", "Container a definition changed, will be restarted")]


def test_created_but_never_started_instance_is_replaced():
    stuck = ContainerInfo(cid="x-0-a", name="a", attempt=0, image=BUSYBOX)
    facts = PodFacts(containers={"a": [stuck], "b": [info("b")]})
    assert [(s.name, s.attempt) for s in compute_actions(pod(), facts, {}, Backoff(), NOW).start] == [("a", 1)]


def test_lost_container_continues_the_restart_count():
    p = pod()
    p["status"] = {"containerStatuses": [
        {"name": "a", "restartCount": 3, "state": {"running": {}}},
        {"name": "b", "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}
    acts = compute_actions(p, PodFacts(), {}, Backoff(), NOW)
    assert [(s.name, s.attempt) for s in acts.start] == [("a", 4), ("b", 0)]


def test_back_off_is_forgotten_after_a_long_healthy_run():
    backoff = Backoff()
    for _ in range(8):
        backoff.next(("u", "a"), NOW)
    assert backoff.in_backoff_since(("u", "a"), NOW, NOW + 1) > 0
    later = NOW + 3600
    assert backoff.in_backoff_since(("u", "a"), later, later + 1) == 0
    backoff.next(("u", "a"), later)
    assert backoff.delay(("u", "a")) == 10.0
