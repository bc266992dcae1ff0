"""The DaemonSet controller's pure decisions (which nodes, which pods, rollout
steps, status, history) and its sync against the fake API."""
import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from fake_api import DEFAULT_RESOURCES, FakeAPI, eventually

from kwire.api.kinds.apps import CONTROLLER_REVISION, DAEMONSET
from kwire.client import Client, Informers
from kwire.controllers.daemonset import (
    GENERATION_LABEL,
    HASH_LABEL,
    DaemonSetController,
    FailedPodsBackoff,
    add_daemon_tolerations,
    daemon_pod,
    daemon_template,
    daemonset_status,
    histories_to_clean,
    history_data,
    history_matches,
    new_history,
    node_name_affinity,
    node_should_run,
    nodes_to_daemon_pods,
    plan_manage,
    plan_rolling_update,
    rollout_limits,
    target_node,
)
from kwire.controllers.scheduler import schedule
from kwire.timestamps import format_time

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NEW, OLD = "newhash", "oldhash"


def ds(strategy=None, min_ready=0, node_selector=None, tolerations=None, **spec):
    pod_spec = {"containers": [{"name": "c", "image": "busybox"}]}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid",
                         "generation": 3,
                         "annotations": {"deprecated.daemonset.template.generation": "2"}},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}}, "spec": pod_spec},
                     "updateStrategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {
                         "maxUnavailable": 1, "maxSurge": 0}},
                     "minReadySeconds": min_ready, "revisionHistoryLimit": 2, **spec}}


def node(name, labels=None, taints=None, unschedulable=False):
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "allocatable": {"pods": "110"}}}


def pod(name, node_name, hash_=NEW, phase="Running", ready_for=60, created_ago=100,
        bound=True, deleting=False):
    meta = {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": "1",
            "labels": {"app": "agent", HASH_LABEL: hash_},
            "creationTimestamp": format_time(NOW - timedelta(seconds=created_ago)),
            "ownerReferences": [{"kind": "DaemonSet", "name": "agent", "uid": "ds-uid",
                                 "controller": True}]}
    if deleting:
        meta["deletionTimestamp"] = format_time(NOW)
    conds = []
    if ready_for is not None:
        conds.append({"type": "Ready", "status": "True",
                      "lastTransitionTime": format_time(NOW - timedelta(seconds=ready_for))})
    spec = {"affinity": node_name_affinity(None, node_name)}
    if bound:
        spec["nodeName"] = node_name
    return {"metadata": meta, "spec": spec, "status": {"phase": phase, "conditions": conds}}


def names(pods):
    return sorted(p["metadata"]["name"] for p in pods)


# --- eligibility ------------------------------------------------------------------------

def test_default_tolerations_are_added_or_replace_matching_ones():
    spec = {"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 30},
                            {"key": "custom", "operator": "Exists"}]}
    add_daemon_tolerations(spec)
    keys = [(t.get("key"), t.get("effect")) for t in spec["tolerations"]]
    assert keys == [("node.kubernetes.io/not-ready", "NoExecute"), ("custom", None),
                    ("node.kubernetes.io/unreachable", "NoExecute"),
                    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
                    ("node.kubernetes.io/unschedulable", "NoSchedule")]
    assert "tolerationSeconds" not in spec["tolerations"][0]
    host = {"hostNetwork": True}
    add_daemon_tolerations(host)
    assert host["tolerations"][-1]["key"] == "node.kubernetes.io/network-unavailable"


def test_node_should_run_follows_selector_affinity_name_and_taints():
    assert node_should_run(node("a"), ds()) == (True, True)
    picky = ds(node_selector={"role": "edge"})
    assert node_should_run(node("a"), picky) == (False, False)
    assert node_should_run(node("a", {"role": "edge"}), picky) == (True, True)
    affinity = ds()
    affinity["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}
    assert node_should_run(node("a", {"zone": "z2"}), affinity) == (False, False)
    assert node_should_run(node("a", {"zone": "z1"}), affinity) == (True, True)
    named = ds(nodeName="b")
    named["spec"]["template"]["spec"]["nodeName"] = "b"
    assert node_should_run(node("a"), named) == (False, False)
    # a NoSchedule taint keeps new pods off but lets a running one stay; NoExecute evicts
    no_schedule = node("a", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])
    assert node_should_run(no_schedule, ds()) == (False, True)
    no_execute = node("a", taints=[{"key": "k", "effect": "NoExecute"}])
    assert node_should_run(no_execute, ds()) == (False, False)
    tolerant = ds(tolerations=[{"key": "k", "operator": "Exists"}])
    assert node_should_run(no_execute, tolerant) == (True, True)
    # the default tolerations: cordoned and not-ready (NoExecute) nodes keep daemon pods
    assert node_should_run(node("a", unschedulable=True), ds()) == (True, True)
    cordoned = node("a", taints=[{"key": "node.kubernetes.io/unschedulable",
                                  "effect": "NoSchedule"}])
    assert node_should_run(cordoned, ds()) == (True, True)
    not_ready = node("a", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                                  {"key": "node.kubernetes.io/not-ready",
                                   "effect": "NoSchedule"}])
    assert node_should_run(not_ready, ds()) == (False, True)


def test_daemon_pod_targets_its_node_and_the_scheduler_binds_it_there():
    d = ds()
    d["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": []}}
    p = daemon_pod(d, daemon_template(d, NEW), "b")
    assert p["metadata"]["generateName"] == "agent-"
    assert p["metadata"]["labels"] == {"app": "agent", GENERATION_LABEL: "2", HASH_LABEL: NEW}
    assert p["metadata"]["ownerReferences"][0]["controller"] is True
    affinity = p["spec"]["affinity"]["nodeAffinity"]
    assert affinity["requiredDuringSchedulingIgnoredDuringExecution"] == {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}
    assert "preferredDuringSchedulingIgnoredDuringExecution" in affinity
    assert target_node(p) == "b"
    assert d["spec"]["template"]["spec"].get("tolerations") is None  # the DaemonSet is untouched
    cordoned = node("b", unschedulable=True)
    decision = schedule(p, [node("a"), cordoned], {"a": [], "b": [{}] * 5})
    assert decision.node == "b"
    assert schedule(p, [node("a")], {}).node is None


def test_pods_group_by_target_node_leaving_out_finished_deleted_ones():
    gone = pod("gone", "a", phase="Failed", deleting=True)
    by_node = nodes_to_daemon_pods([pod("p1", "a"), pod("p2", "b", bound=False), gone])
    assert {n: names(ps) for n, ps in by_node.items()} == {"a": ["p1"], "b": ["p2"]}
    assert names(nodes_to_daemon_pods([gone], True)["a"]) == ["gone"]


# --- manage -------------------------------------------------------------------------------

def plan(d, nodes, pods, backoff=None):
    return plan_manage(d, nodes, nodes_to_daemon_pods(pods), NEW, backoff or FailedPodsBackoff(),
                       NOW)


def test_manage_creates_missing_and_deletes_misplaced_pods():
    d = ds(node_selector={"role": "edge"})
    nodes = [node("a", {"role": "edge"}), node("b", {"role": "edge"}), node("c")]
    p = plan(d, nodes, [pod("on-a", "a"), pod("on-c", "c"), pod("orphaned", "gone", bound=False),
                        pod("bound-gone", "gone")])
    assert p.create == ["b"]
    assert names(p.delete) == ["on-c", "orphaned"]


def test_manage_keeps_the_oldest_of_several_pods_and_waits_for_terminating_ones():
    nodes = [node("a"), node("b")]
    p = plan(ds(), nodes, [pod("old", "a", created_ago=300), pod("young", "a", created_ago=10),
                           pod("leaving", "b", deleting=True)])
    assert p.create == [] and names(p.delete) == ["young"]


def test_failed_pods_are_replaced_with_backoff():
    clock = [0.0]
    backoff = FailedPodsBackoff(clock=lambda: clock[0])
    nodes = [node("a")]
    p = plan(ds(), nodes, [pod("f1", "a", phase="Failed")], backoff)
    assert names(p.delete) == ["f1"]
    assert p.events == [("Warning", "FailedDaemonPod",
                         "Found failed daemon pod default/f1 on node a, will try to kill it")]
    clock[0] = 0.5
    p = plan(ds(), nodes, [pod("f2", "a", phase="Failed")], backoff)
    assert p.delete == [] and p.retry_after == 1.0
    clock[0] = 1.5
    assert names(plan(ds(), nodes, [pod("f2", "a", phase="Failed")], backoff).delete) == ["f2"]
    clock[0] = 2.0
    assert plan(ds(), nodes, [pod("f3", "a", phase="Failed")], backoff).retry_after == 2.0
    clock[0] = 10_000.0  # idle for long: forgotten
    assert names(plan(ds(), nodes, [pod("f4", "a", phase="Failed")], backoff).delete) == ["f4"]
    p = plan(ds(), nodes, [pod("done", "a", phase="Succeeded")], backoff)
    assert names(p.delete) == ["done"] and p.events[0][1] == "SucceededDaemonPod"


def test_manage_with_surge_keeps_an_old_pod_until_the_new_one_is_available():
    d = ds({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
           min_ready=30)
    nodes = [node("a")]
    waiting = plan(d, nodes, [pod("old", "a", OLD, created_ago=300),
                              pod("new", "a", ready_for=10, created_ago=20)])
    assert waiting.delete == [] and waiting.create == []
    done = plan(d, nodes, [pod("old", "a", OLD, created_ago=300),
                           pod("new", "a", ready_for=40, created_ago=50)])
    assert names(done.delete) == ["old"]
    old_not_ready = plan(d, nodes, [pod("old", "a", OLD, created_ago=300, ready_for=None),
                                    pod("new", "a", ready_for=None, created_ago=20)])
    assert names(old_not_ready.delete) == ["old"]
    assert plan(d, nodes, [pod("leaving", "a", deleting=True)]).create == ["a"]


# --- rolling update -----------------------------------------------------------------------

def test_rollout_limits_round_percentages_up_and_never_stall():
    surge = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "10%"}}
    assert rollout_limits(ds(surge), 3) == (1, 0)
    unavailable = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}}
    assert rollout_limits(ds(unavailable), 3) == (0, 2)
    stalled = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "0%",
                                                          "maxSurge": 0}}
    assert rollout_limits(ds(stalled), 3) == (0, 1)
    assert rollout_limits(ds({"type": "OnDelete"}), 3) == (0, 0)


def test_rolling_update_replaces_one_node_at_a_time():
    nodes = [node("a"), node("b"), node("c")]
    pods = [pod("pa", "a", OLD), pod("pb", "b", OLD), pod("pc", "c", OLD)]
    delete, create = plan_rolling_update(ds(), nodes, nodes_to_daemon_pods(pods), NEW, NOW)
    assert names(delete) == ["pa"] and create == []
    # a is being replaced (no pod yet, then an unready new one): nothing more goes
    for on_a in ([], [pod("na", "a", ready_for=None)]):
        delete, _ = plan_rolling_update(ds(), nodes, nodes_to_daemon_pods(on_a + pods[1:]),
                                        NEW, NOW)
        assert delete == []
    delete, _ = plan_rolling_update(ds(), nodes, nodes_to_daemon_pods([pod("na", "a")] + pods[1:]),
                                    NEW, NOW)
    assert names(delete) == ["pb"]
    # unavailable old pods are replaced regardless of the budget, and use it up
    broken = [pod("pa", "a", OLD, ready_for=None), pod("pb", "b", OLD, ready_for=None), pods[2]]
    delete, _ = plan_rolling_update(ds(), nodes, nodes_to_daemon_pods(broken), NEW, NOW)
    assert names(delete) == ["pa", "pb"]


def test_rolling_update_counts_the_template_generation_as_updated():
    p = pod("pa", "a", OLD)
    p["metadata"]["labels"][GENERATION_LABEL] = "2"
    delete, _ = plan_rolling_update(ds(), [node("a")], nodes_to_daemon_pods([p]), NEW, NOW)
    assert delete == []


def test_rolling_update_with_surge_creates_before_deleting():
    d = ds({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}})
    nodes = [node("a"), node("b")]
    pods = [pod("pa", "a", OLD), pod("pb", "b", OLD)]
    assert plan_rolling_update(d, nodes, nodes_to_daemon_pods(pods), NEW, NOW) == ([], ["a"])
    surging = pods + [pod("na", "a", ready_for=None)]
    assert plan_rolling_update(d, nodes, nodes_to_daemon_pods(surging), NEW, NOW) == ([], [])
    ready = pods + [pod("na", "a")]
    delete, create = plan_rolling_update(d, nodes, nodes_to_daemon_pods(ready), NEW, NOW)
    assert names(delete) == ["pa"] and create == ["b"]
    broken = [pod("pa", "a", OLD, ready_for=None), pod("pb", "b", OLD, ready_for=None)]
    assert plan_rolling_update(d, nodes, nodes_to_daemon_pods(broken), NEW, NOW) == (
        [], ["a", "b"])


# --- status -------------------------------------------------------------------------------

def test_status_counts_nodes_by_their_oldest_pod():
    d = ds(min_ready=30, node_selector={"role": "edge"})
    nodes = [node(n, {"role": "edge"}) for n in "abcd"] + [node("e")]
    pods = [pod("pa", "a"), pod("pb", "b", OLD, ready_for=10), pod("pc", "c", ready_for=None),
            pod("young", "a", OLD, created_ago=5), pod("pe", "e")]
    status = daemonset_status(d, nodes, nodes_to_daemon_pods(pods), NEW, NOW, observed=True)
    assert status == {"currentNumberScheduled": 3, "numberMisscheduled": 1,
                      "desiredNumberScheduled": 4, "numberReady": 2, "observedGeneration": 3,
                      "updatedNumberScheduled": 2, "numberAvailable": 1, "numberUnavailable": 3}
    d["status"] = {"observedGeneration": 2, "collisionCount": 1}
    status = daemonset_status(d, nodes, {}, NEW, NOW, observed=False)
    assert status["observedGeneration"] == 2 and status["collisionCount"] == 1


# --- history ------------------------------------------------------------------------------

def test_history_holds_a_patch_restoring_the_template():
    d = ds()
    d["metadata"]["annotations"]["kubernetes.io/change-cause"] = "first"
    h = new_history(d, NEW, 4)
    assert h["metadata"]["name"] == f"agent-{NEW}"
    assert h["metadata"]["labels"] == {"app": "agent", HASH_LABEL: NEW}
    assert h["metadata"]["annotations"]["kubernetes.io/change-cause"] == "first"
    assert h["revision"] == 4
    assert h["data"]["spec"]["template"]["$patch"] == "replace"
    assert history_data(d) == h["data"] and history_matches(d, h)
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx"
    assert not history_matches(d, h)


def test_old_history_beyond_the_limit_goes_unless_pods_use_it():
    def h(rev, hash_):
        return {"metadata": {"name": f"r{rev}", "labels": {HASH_LABEL: hash_}}, "revision": rev}
    old = [h(3, "c"), h(1, "a"), h(2, "b"), h(4, "d")]
    assert [x["revision"] for x in histories_to_clean(ds(), old, {"a"})] == [2, 3]
    assert histories_to_clean(ds(), old[:2], set()) == []


# --- the API side: template generation and ControllerRevision --------------------------

def test_the_server_counts_template_generations():
    created = ds()
    del created["metadata"]["annotations"]
    DAEMONSET.default(created)
    assert created["metadata"]["annotations"] == {"deprecated.daemonset.template.generation": "1"}
    same = {**created, "metadata": {**created["metadata"], "annotations": {}},
            "spec": {**created["spec"], "minReadySeconds": 5}}
    DAEMONSET.prepare_update(same, created)
    assert same["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "1"
    changed = {**same, "spec": {**same["spec"], "template": {
        "metadata": {"labels": {"app": "agent"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    DAEMONSET.prepare_update(changed, same)
    assert changed["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "2"


def test_controller_revision_kind():
    h = new_history(ds(), NEW, 1)
    h["metadata"]["creationTimestamp"] = format_time(NOW - timedelta(minutes=3))
    h["metadata"]["ownerReferences"][0]["apiVersion"] = "apps/v1"
    assert CONTROLLER_REVISION.row(h, NOW) == [f"agent-{NEW}", "daemonset.apps/agent", 1, "3m"]
    assert [c.name for c in CONTROLLER_REVISION.columns] == ["Name", "Controller", "Revision",
                                                            "Age"]
    assert CONTROLLER_REVISION.validate(h) == []
    assert [str(c) for c in CONTROLLER_REVISION.validate({**h, "data": None, "revision": -1})] == [
        "data: Required value: data is mandatory",
        "revision: Invalid value: -1: must be greater than or equal to 0"]
    assert CONTROLLER_REVISION.validate_update({**h, "revision": 2}, h) == []
    [cause] = CONTROLLER_REVISION.validate_update({**h, "data": {}}, h)
    assert str(cause).endswith("field is immutable")


# --- the controller against the fake API ---------------------------------------------------

RESOURCES = DEFAULT_RESOURCES + (("apps/v1", "daemonsets", "DaemonSet", True),
                                 ("apps/v1", "controllerrevisions", "ControllerRevision", True),
                                 ("v1", "events", "Event", True))


class Fake(FakeAPI):
    """The fake API, naming objects created with generateName as the server does."""

    def _create(self, api_version, plural, namespace, body):
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        return super()._create(api_version, plural, namespace, body)


def test_controller_creates_one_pod_per_node_and_reports_status():
    async def main():
        async with Fake(RESOURCES) as fake:
            async with Client(str(fake.server.make_url("")).rstrip("/")) as client:
                for n in (node("a"), node("b")):
                    fake.put("v1", "nodes", n)
                d = ds()
                d["metadata"].pop("uid")
                fake.put("apps/v1", "daemonsets", d)
                informers = Informers(client)
                task = asyncio.create_task(DaemonSetController(client, informers).run())
                try:
                    await eventually(lambda: len(fake.names("v1", "pods", "default")) == 2)
                    pods = [fake.get("v1", "pods", n, "default")
                            for n in fake.names("v1", "pods", "default")]
                    assert sorted(target_node(p) for p in pods) == ["a", "b"]
                    [rev] = fake.names("apps/v1", "controllerrevisions", "default")
                    history = fake.get("apps/v1", "controllerrevisions", rev, "default")
                    assert history["revision"] == 1
                    hash_ = history["metadata"]["labels"][HASH_LABEL]
                    assert all(p["metadata"]["labels"][HASH_LABEL] == hash_ for p in pods)

                    def status():
                        return fake.get("apps/v1", "daemonsets", "agent", "default").get(
                            "status") or {}
                    await eventually(lambda: status().get("currentNumberScheduled") == 2)
                    assert status()["desiredNumberScheduled"] == 2
                    assert status()["observedGeneration"] == 3
                    fake.remove("v1", "nodes", "b")
                    await eventually(lambda: status().get("desiredNumberScheduled") == 1)
                    unbound_on_b = next(p for p in pods if target_node(p) == "b")
                    await eventually(lambda: fake.get(
                        "v1", "pods", unbound_on_b["metadata"]["name"], "default") is None)
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    await informers.stop()
    asyncio.run(main())
