"""Pod status from runtime facts: phase, conditions and container states as the
kubelet reports them."""
from kwire.node.podstatus import ContainerInfo, PodFacts, phase, pod_status, status_patch

NOW = 1_800_000_000.0


def pod(containers=("a",), inits=(), policy="Always", status=None):
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy,
                     "containers": [{"name": n, "image": "busybox"} for n in containers],
                     **({"initContainers": [{"name": n, "image": "busybox"} for n in inits]}
                        if inits else {})},
            "status": status or {"phase": "Pending",
                                 "conditions": [{"type": "PodScheduled", "status": "True",
                                                 "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}


def running(name, attempt=0):
    return ContainerInfo(cid=f"abc-{attempt}-{name}", name=name, attempt=attempt, image="i",
                         image_id="docker.io/library/busybox@sha256:1", started_at=NOW - 5)


def exited(name, code, attempt=0):
    return ContainerInfo(cid=f"abc-{attempt}-{name}", name=name, attempt=attempt, image="i",
                         started_at=NOW - 10, finished_at=NOW - 1, exit_code=code)


def cond(status, type_):
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_creating_pod_is_pending_with_container_creating():
    s = pod_status(pod(("a", "b")), PodFacts(sandbox_ready=True, host_ip="172.30.0.2"), NOW)
    assert s["phase"] == "Pending"
    assert [c["state"] for c in s["containerStatuses"]] == [{"waiting": {"reason": "ContainerCreating"}}] * 2
    assert cond(s, "Ready")["status"] == "False"
    assert cond(s, "Ready")["message"] == "containers with unready status: [a b]"
    assert cond(s, "PodScheduled")["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert s["hostIP"] == "172.30.0.2" and s["hostIPs"] == [{"ip": "172.30.0.2"}]


def test_running_pod_is_ready_with_ips_and_ids():
    facts = PodFacts(containers={"a": [running("a")], "b": [running("b")]}, sandbox_ready=True,
                     pod_ips=["10.244.1.5"], start_time=NOW - 6)
    s = pod_status(pod(("a", "b")), facts, NOW)
    assert s["phase"] == "Running"
    assert [c["type"] for c in s["conditions"]] == [
        "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
    assert all(c["status"] == "True" for c in s["conditions"])
    a = s["containerStatuses"][0]
    assert a["ready"] and a["started"] and a["restartCount"] == 0
    assert a["containerID"] == "runc://abc-0-a"
    assert a["imageID"] == "docker.io/library/busybox@sha256:1"
    assert "running" in a["state"] and s["podIP"] == "10.244.1.5"
    assert s["podIPs"] == [{"ip": "10.244.1.5"}]


def test_failed_readiness_keeps_ready_false():
    facts = PodFacts(containers={"a": [running("a")]}, ready={"a": False}, sandbox_ready=True)
    s = pod_status(pod(), facts, NOW)
    assert s["phase"] == "Running"
    assert cond(s, "Ready")["status"] == "False"
    assert cond(s, "Ready")["reason"] == "ContainersNotReady"
    assert s["containerStatuses"][0]["ready"] is False


def test_crash_loop_shows_waiting_and_last_state():
    facts = PodFacts(containers={"a": [exited("a", 1, 0), exited("a", 1, 1)]},
                     waiting={"a": ("CrashLoopBackOff", "back-off 10s restarting failed container=a")})
    s = pod_status(pod(), facts, NOW)
    a = s["containerStatuses"][0]
    assert a["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert a["lastState"]["terminated"]["exitCode"] == 1
    assert a["lastState"]["terminated"]["reason"] == "Error"
    assert a["restartCount"] == 1
    assert s["phase"] == "Running"  # restarting containers count as stopped under Always


def test_phases_by_restart_policy():
    done = PodFacts(containers={"a": [exited("a", 0)], "b": [exited("b", 0)]})
    failed = PodFacts(containers={"a": [exited("a", 0)], "b": [exited("b", 2)]})
    assert pod_status(pod(("a", "b"), policy="Never"), done, NOW)["phase"] == "Succeeded"
    assert pod_status(pod(("a", "b"), policy="OnFailure"), done, NOW)["phase"] == "Succeeded"
    assert pod_status(pod(("a", "b"), policy="Never"), failed, NOW)["phase"] == "Failed"
    assert pod_status(pod(("a", "b"), policy="OnFailure"), failed, NOW)["phase"] == "Running"
    term = pod_status(pod(("a", "b"), policy="Never"), failed, NOW)["containerStatuses"][1]
    assert term["state"]["terminated"]["reason"] == "Error"
    succeeded = pod_status(pod(("a", "b"), policy="Never"), done, NOW)
    assert cond(succeeded, "Ready")["reason"] == "PodCompleted"


def test_terminal_phase_sticks():
    p = pod(policy="Never", status={"phase": "Succeeded", "conditions": []})
    assert phase(p, PodFacts(), [], []) == "Succeeded"


def test_init_containers_gate_app_containers():
    p = pod(("a",), inits=("i1", "i2"))
    s = pod_status(p, PodFacts(containers={"i1": [exited("i1", 0)], "i2": [running("i2")]}), NOW)
    assert s["phase"] == "Pending"
    assert cond(s, "Initialized")["status"] == "False"
    assert cond(s, "Initialized")["message"] == "containers with incomplete status: [i2]"
    assert s["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert s["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert s["initContainerStatuses"][1]["ready"] is False
    never = pod(("a",), inits=("i1",), policy="Never")
    s = pod_status(never, PodFacts(containers={"i1": [exited("i1", 3)]}), NOW)
    assert s["phase"] == "Failed"


def test_transition_time_kept_while_status_unchanged():
    old = pod_status(pod(), PodFacts(containers={"a": [running("a")]}), NOW)
    again = pod_status(pod(status=old), PodFacts(containers={"a": [running("a")]}), NOW + 60)
    assert cond(again, "Ready")["lastTransitionTime"] == cond(old, "Ready")["lastTransitionTime"]
    assert status_patch(old, again) is None
    flipped = pod_status(pod(status=old), PodFacts(containers={"a": [running("a")]},
                                                   ready={"a": False}), NOW + 60)
    assert cond(flipped, "Ready")["lastTransitionTime"] != cond(old, "Ready")["lastTransitionTime"]
    patch = status_patch(old, flipped)
    assert set(patch) == {"conditions", "containerStatuses"}


def test_status_patch_nulls_only_what_the_kubelet_owns():
    assert status_patch({"phase": "Running", "podIP": "10.244.0.5"}, {"phase": "Running"}) == {"podIP": None}
    assert status_patch({"phase": "Running", "nominatedNodeName": "n"}, {"phase": "Running"}) is None


def test_lost_containers_keep_their_previous_status():
    old = {"phase": "Succeeded", "containerStatuses": [
        {"name": "a", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
    p = pod(policy="Never", status=old)
    s = pod_status(p, PodFacts(), NOW)
    assert s["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    running_before = {"phase": "Running", "containerStatuses": [
        {"name": "a", "restartCount": 2, "lastState": {"terminated": {"exitCode": 1}},
         "state": {"running": {}}}]}
    s = pod_status(pod(status=running_before), PodFacts(), NOW)
    assert s["containerStatuses"][0]["restartCount"] == 2
    assert s["containerStatuses"][0]["lastState"] == {"terminated": {"exitCode": 1}}


def test_deleted_pod_gets_a_final_phase():
    facts = PodFacts(containers={"a": [exited("a", 0)]})
    assert pod_status(pod(), facts, NOW, terminated=True)["phase"] == "Succeeded"
    facts = PodFacts(containers={"a": [exited("a", 137)]})
    s = pod_status(pod(), facts, NOW, terminated=True)
    assert s["phase"] == "Failed"
    assert cond(s, "Ready")["reason"] == "PodFailed"


def test_start_error_and_pod_initializing_reasons():
    failed = ContainerInfo(cid="abc-0-a", name="a", attempt=0, image="i", started_at=NOW,
                           finished_at=NOW, exit_code=128, reason="StartError", message="exec: nope")
    term = pod_status(pod(policy="Never"), PodFacts(containers={"a": [failed]}), NOW)
    assert term["containerStatuses"][0]["state"]["terminated"]["reason"] == "StartError"
    assert term["phase"] == "Failed"
    s = pod_status(pod(("a",), inits=("i1",)), PodFacts(containers={"i1": [exited("i1", 0)]}), NOW)
    assert s["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert s["initContainerStatuses"][0]["ready"] is True
