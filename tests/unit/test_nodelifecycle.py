"""The node lifecycle controller: its pure plan at a fixed `now`, then the
controller against the in-process fake API."""
import asyncio
from datetime import datetime, timezone

from fake_api import DEFAULT_RESOURCES, FakeAPI, eventually

from kwire.client import Backoff, Client, Informers
from kwire.controllers.nodelifecycle import (NodeLifecycleController, Plan, is_silent,
                                             node_event, plan)

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)
STAMP = "2026-11-26T12:00:00Z"


def cond(ctype: str, status: str, heartbeat: str = "2026-11-26T11:59:50Z",
         since: str = "2026-11-26T11:00:00Z") -> dict:
    return {"type": ctype, "status": status, "lastHeartbeatTime": heartbeat,
            "lastTransitionTime": since, "reason": "KubeletReady", "message": "m"}


def node(conditions=None, taints=None, created="2026-11-26T11:00:00Z") -> dict:
    n = {"metadata": {"name": "n1", "uid": "u1", "creationTimestamp": created,
                      "resourceVersion": "1"},
         "spec": {}, "status": {}}
    if conditions is not None:
        n["status"]["conditions"] = conditions
    if taints is not None:
        n["spec"]["taints"] = taints
    return n


def lease(renew: str) -> dict:
    return {"metadata": {"name": "n1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": renew}}


HEALTHY = [cond("Ready", "True"), cond("MemoryPressure", "False"),
           cond("DiskPressure", "False"), cond("PIDPressure", "False")]
UNREACHABLE = [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
               {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
                "timeAdded": STAMP}]


def unknown(ctype: str, heartbeat: str = "2026-11-26T11:59:40Z") -> dict:
    return {"type": ctype, "status": "Unknown", "lastHeartbeatTime": heartbeat,
            "lastTransitionTime": STAMP, "reason": "NodeStatusUnknown",
            "message": "Kubelet stopped posting node status."}


def test_fresh_heartbeat_changes_nothing():
    assert plan(node(HEALTHY), lease("2026-11-26T11:59:59.500000Z"), NOW) == Plan()


def test_fresh_lease_alone_keeps_a_node_alive():
    old = [cond(c["type"], c["status"], heartbeat="2026-11-26T11:50:00Z") for c in HEALTHY]
    assert plan(node(old), lease("2026-11-26T11:59:50.000001Z"), NOW) == Plan()
    assert plan(node(old), lease("2026-11-26T11:59:44Z"), NOW).conditions is not None


def test_grace_period_boundary_is_strict():
    n = node([cond("Ready", "True", heartbeat="2026-11-26T11:59:45Z")])
    assert not is_silent(n, None, NOW)  # exactly 15 s ago
    assert is_silent(n, None, NOW, grace_period=14.9)


def test_silent_node_goes_unknown_and_unreachable():
    conditions = [cond(c["type"], c["status"], heartbeat="2026-11-26T11:59:40Z")
                  for c in HEALTHY] + [cond("NetworkUnavailable", "False")]
    other = {"key": "example.com/x", "value": "y", "effect": "NoSchedule"}
    p = plan(node(conditions, [other]), lease("2026-11-26T11:59:30Z"), NOW)
    assert p == Plan(
        conditions=[unknown("Ready"), unknown("MemoryPressure"), unknown("DiskPressure"),
                    unknown("PIDPressure"), cond("NetworkUnavailable", "False")],
        taints=[other, *UNREACHABLE], not_ready_event=True)


def test_silent_node_already_unknown_is_left_alone():
    conditions = [unknown(c["type"]) for c in HEALTHY]
    conditions[0]["lastTransitionTime"] = "2026-11-26T11:59:58Z"
    n = node(conditions, UNREACHABLE)
    assert plan(n, None, NOW) == Plan()


def test_missing_kubelet_conditions_are_added_as_never_updated():
    p = plan(node([cond("Ready", "False", heartbeat="2026-11-26T11:58:00Z")]), None, NOW)
    never = {"status": "Unknown", "lastHeartbeatTime": "2026-11-26T11:00:00Z",
             "lastTransitionTime": STAMP, "reason": "NodeStatusNeverUpdated",
             "message": "Kubelet never posted node status."}
    assert p == Plan(conditions=[unknown("Ready", "2026-11-26T11:58:00Z"),
                                 {"type": "MemoryPressure", **never},
                                 {"type": "DiskPressure", **never},
                                 {"type": "PIDPressure", **never}],
                     taints=UNREACHABLE, not_ready_event=False)


def test_ready_again_takes_the_taints_off_and_keeps_others():
    other = {"key": "example.com/x", "effect": "NoExecute"}
    n = node(HEALTHY, [UNREACHABLE[0], other, UNREACHABLE[1],
                       {"key": "node.kubernetes.io/unreachable", "effect": "PreferNoSchedule"}])
    assert plan(n, lease("2026-11-26T11:59:59Z"), NOW) == Plan(
        taints=[other, {"key": "node.kubernetes.io/unreachable", "effect": "PreferNoSchedule"}])
    assert plan(node(HEALTHY, UNREACHABLE), None, NOW) == Plan(taints=[])


def test_resumed_lease_with_ready_still_unknown_keeps_the_taints():
    """Only the agent may say Ready=True again."""
    n = node([unknown(c["type"]) for c in HEALTHY], UNREACHABLE)
    assert plan(n, lease("2026-11-26T11:59:59Z"), NOW) == Plan()


def test_ready_false_gets_not_ready_taints_replacing_unreachable():
    n = node([cond("Ready", "False")], [UNREACHABLE[1]])
    assert plan(n, lease("2026-11-26T11:59:59Z"), NOW) == Plan(taints=[
        {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute", "timeAdded": STAMP}])


def test_never_heard_from_node_gets_the_startup_grace_period():
    registering = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
    young = node(taints=[registering], created="2026-11-26T11:59:31Z")
    assert plan(young, None, NOW) == Plan()  # 29 s old: still registering
    p = plan(node(created="2026-11-26T11:59:29Z"), None, NOW)
    assert [(c["type"], c["status"], c["reason"]) for c in p.conditions] == [
        (t, "Unknown", "NodeStatusNeverUpdated") for t in
        ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")]
    assert p.taints == UNREACHABLE and not p.not_ready_event
    assert plan(young, None, NOW, startup_grace_period=10).conditions is not None


def test_silence_is_not_counted_before_the_controller_watched():
    n = node([cond("Ready", "True", heartbeat="2026-11-26T11:00:00Z")])
    since = datetime(2026, 11, 26, 11, 59, 50, tzinfo=timezone.utc)
    assert plan(n, None, NOW, watching_since=since) == Plan()
    assert plan(n, None, NOW).not_ready_event


def test_node_event():
    assert node_event(node(), "NodeNotReady", NOW) == {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "n1.18eb968af5288000", "namespace": "default"},
        "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u1"},
        "reason": "NodeNotReady", "message": "Node n1 status is now: NodeNotReady",
        "type": "Normal", "source": {"component": "node-controller"},
        "reportingComponent": "node-controller", "firstTimestamp": STAMP,
        "lastTimestamp": STAMP, "count": 1}


# --- the controller against the fake API ------------------------------------------

RESOURCES = DEFAULT_RESOURCES + (("coordination.k8s.io/v1", "leases", "Lease", True),
                                 ("v1", "events", "Event", True))


def stamp(delta: float = 0.0) -> str:
    t = datetime.now(timezone.utc).timestamp() + delta
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_controller_marks_silent_node_unknown_and_untaints_when_ready():
    async def main():
        async with FakeAPI(RESOURCES) as fake:
            async with Client(str(fake.server.make_url("")).rstrip("/")) as client:
                fake.put("v1", "nodes", {"metadata": {"name": "n1"}, "status": {
                    "conditions": [cond("Ready", "True", heartbeat=stamp())]}})
                fake.put("v1", "nodes", {"metadata": {"name": "n2"}, "status": {
                    "conditions": [cond("Ready", "True", heartbeat=stamp(-60))]}})
                fake.put("coordination.k8s.io/v1", "leases", lease(stamp()) | {
                    "metadata": {"name": "n2", "namespace": "kube-node-lease"}})
                informers = Informers(client, backoff=Backoff(0.01, 0.05))
                controller = NodeLifecycleController(client, informers, grace_period=1.0,
                                                     monitor_period=0.1)
                task = asyncio.create_task(controller.run())

                def ready(name):
                    return next(c["status"] for c in fake.get("v1", "nodes", name)["status"]
                                ["conditions"] if c["type"] == "Ready")

                def taints(name):
                    return [(t["key"], t["effect"]) for t in
                            fake.get("v1", "nodes", name).get("spec", {}).get("taints") or ()]
                try:
                    # n1 stops after its one heartbeat; n2's lease keeps being renewed.
                    for _ in range(15):
                        fake.put("coordination.k8s.io/v1", "leases", lease(stamp()) | {
                            "metadata": {"name": "n2", "namespace": "kube-node-lease"}})
                        await asyncio.sleep(0.1)
                    await eventually(lambda: ready("n1") == "Unknown"
                                     and len(taints("n1")) == 2)
                    assert taints("n1") == [("node.kubernetes.io/unreachable", "NoSchedule"),
                                            ("node.kubernetes.io/unreachable", "NoExecute")]
                    assert ready("n2") == "True" and taints("n2") == []
                    events = list(fake.objects[("v1", "events")].values())
                    assert [(e["reason"], e["involvedObject"]["name"]) for e in events] == [
                        ("NodeNotReady", "n1")]
                    n1 = fake.get("v1", "nodes", "n1")
                    fake.put("v1", "nodes", {**n1, "status": {
                        "conditions": [cond("Ready", "True", heartbeat=stamp())]}})
                    await eventually(lambda: "taints" not in fake.get("v1", "nodes", "n1")
                                     ["spec"])
                    assert ready("n1") == "True"
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    await informers.stop()
    asyncio.run(main())
