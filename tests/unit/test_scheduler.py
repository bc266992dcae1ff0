"""The scheduler's pure part: which node a pod gets, and upstream's words when none."""
from kwire.controllers.scheduler import (Decision, effective_taints, is_ours, pod_event,
                                         schedule, unschedulable_condition)


def node(name, labels=None, ready="True", unschedulable=False, taints=None, pods="110"):
    n = {"metadata": {"name": name, "labels": labels or {}},
         "spec": {"unschedulable": unschedulable} if unschedulable else {},
         "status": {"allocatable": {"pods": pods} if pods is not None else {},
                    "conditions": [{"type": "Ready", "status": ready}] if ready else []}}
    if taints:
        n["spec"]["taints"] = taints
    return n


def pod(name="p", node_selector=None, tolerations=None, ports=None, **spec):
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     **({"ports": ports} if ports else {})}],
                     **({"nodeSelector": node_selector} if node_selector else {}),
                     "tolerations": tolerations or [
                         {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                          "effect": "NoExecute", "tolerationSeconds": 300}],
                     **spec}}


def test_least_loaded_then_name():
    nodes = [node("c"), node("b"), node("a")]
    assert schedule(pod(), nodes, {}) == Decision("a")
    assert schedule(pod(), nodes, {"a": [pod("x")]}).node == "b"
    assert schedule(pod(), nodes, {"a": [pod("x")], "b": [pod("y")], "c": []}).node == "c"


def test_upstream_message_counts_sorted():
    nodes = [node("a", labels={"disk": "hdd"}), node("b", unschedulable=True),
             node("c", unschedulable=True)]
    d = schedule(pod(node_selector={"disk": "ssd"}), nodes, {})
    assert d.node is None
    assert d.reasons == {"a": "node(s) didn't match Pod's node affinity/selector",
                         "b": "node(s) were unschedulable", "c": "node(s) were unschedulable"}
    assert d.message == (
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
        "2 node(s) were unschedulable. preemption: 0/3 nodes are available: "
        "3 Preemption is not helpful for scheduling.")


def test_node_selector_picks_matching_node():
    nodes = [node("a"), node("b", labels={"disk": "ssd"})]
    assert schedule(pod(node_selector={"disk": "ssd"}), nodes, {}).node == "b"


def test_no_nodes():
    d = schedule(pod(), [], {})
    assert d.node is None and d.message == "no nodes available to schedule pods"


def test_not_ready_and_unknown_nodes_carry_the_lifecycle_taints():
    nodes = [node("a", ready="False"), node("b", ready="Unknown"), node("c", ready=None)]
    d = schedule(pod(), nodes, {})
    assert d.message == (
        "0/3 nodes are available: 1 node(s) had untolerated taint "
        "{node.kubernetes.io/unreachable: }, 2 node(s) had untolerated taint "
        "{node.kubernetes.io/not-ready: }. preemption: 0/3 nodes are available: "
        "3 Preemption is not helpful for scheduling.")
    tolerant = pod(tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}])
    assert schedule(tolerant, nodes, {}).node == "a"
    # The taint the node lifecycle controller already set is not doubled.
    tainted = node("a", ready="False",
                   taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
    assert len(effective_taints(tainted)) == 1


def test_taints_and_tolerations():
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    nodes = [node("a", taints=[taint])]
    assert schedule(pod(), nodes, {}).reasons == {
        "a": "node(s) had untolerated taint {dedicated: gpu}"}
    for tol in ({"key": "dedicated", "operator": "Equal", "value": "gpu"},
                {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                {"key": "dedicated", "operator": "Exists"},
                {"operator": "Exists"}):
        assert schedule(pod(tolerations=[tol]), nodes, {}).node == "a", tol
    for tol in ({"key": "dedicated", "value": "cpu"},
                {"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}):
        assert schedule(pod(tolerations=[tol]), nodes, {}).node is None, tol
    soft = node("b", taints=[{"key": "x", "effect": "PreferNoSchedule"}])
    assert schedule(pod(), [soft], {}).node == "b"


def test_cordoned_node_tolerated_by_unschedulable_toleration():
    tol = {"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
           "effect": "NoSchedule"}
    assert schedule(pod(tolerations=[tol]), [node("a", unschedulable=True)], {}).node == "a"


def test_required_node_affinity():
    nodes = [node("a", labels={"zone": "z1", "gen": "3"}), node("b", labels={"zone": "z2"})]

    def affinity(*terms):
        return pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": list(terms)}}})

    def In(key, *values, op="In"):
        return {"key": key, "operator": op, "values": list(values)}

    assert schedule(affinity({"matchExpressions": [In("zone", "z2")]}), nodes, {}).node == "b"
    assert schedule(affinity({"matchExpressions": [In("zone", "z2", op="NotIn")]}),
                    nodes, {}).node == "a"
    assert schedule(affinity({"matchExpressions": [In("gen", "2", op="Gt")]}),
                    nodes, {}).node == "a"
    assert schedule(affinity({"matchExpressions": [{"key": "gen", "operator": "DoesNotExist"}]}),
                    nodes, {}).node == "b"
    assert schedule(affinity({"matchFields": [In("metadata.name", "b")]}), nodes, {}).node == "b"
    # Terms are ORed; an empty term matches nothing.
    assert schedule(affinity({}, {"matchExpressions": [In("zone", "z2")]}),
                    nodes, {}).node == "b"
    assert schedule(affinity({}), nodes, {}).node is None


def test_host_ports_conflict_is_resolvable_by_preemption():
    web = [{"containerPort": 80, "hostPort": 8080}]
    nodes = [node("a"), node("b", taints=[{"key": "k", "effect": "NoExecute"}])]
    d = schedule(pod(ports=web), nodes, {"a": [pod("x", ports=web)]})
    assert d.message == (
        "0/2 nodes are available: 1 node(s) didn't have free ports for the requested pod "
        "ports, 1 node(s) had untolerated taint {k: }. preemption: 0/2 nodes are available: "
        "1 No preemption victims found for incoming pod, "
        "1 Preemption is not helpful for scheduling.")
    # Another protocol, or two distinct host IPs, do not conflict; 0.0.0.0 takes them all.
    udp = [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]
    assert schedule(pod(ports=udp), nodes[:1], {"a": [pod("x", ports=web)]}).node == "a"
    ip1 = [{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]
    ip2 = [{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}]
    assert schedule(pod(ports=ip1), nodes[:1], {"a": [pod("x", ports=ip2)]}).node == "a"
    assert schedule(pod(ports=ip1), nodes[:1], {"a": [pod("x", ports=web)]}).node is None


def test_pod_count_under_allocatable():
    nodes = [node("a", pods="1"), node("b", pods=None)]
    assert schedule(pod(), nodes, {}).node == "a"
    d = schedule(pod(), nodes, {"a": [pod("x")]})
    assert d.message == ("0/2 nodes are available: 2 Too many pods. preemption: 0/2 nodes "
                         "are available: 2 No preemption victims found for incoming pod.")


def test_preemption_policy_never():
    d = schedule(pod(preemptionPolicy="Never"), [node("a", unschedulable=True)], {})
    assert d.message == ("0/1 nodes are available: 1 node(s) were unschedulable. "
                         "preemption: not eligible due to preemptionPolicy=Never.")


def test_first_failing_filter_in_upstream_order_names_the_node():
    n = node("a", labels={}, unschedulable=True, taints=[{"key": "k", "effect": "NoSchedule"}])
    assert schedule(pod(node_selector={"x": "y"}), [n], {}).reasons == {
        "a": "node(s) were unschedulable"}


def test_which_pods_are_ours():
    assert is_ours(pod())
    assert is_ours(pod(schedulerName="default-scheduler"))
    assert not is_ours(pod(schedulerName="other"))
    assert not is_ours(pod(nodeName="a"))
    assert not is_ours(pod(schedulingGates=[{"name": "g"}]))
    gone = pod()
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not is_ours(gone)


def test_pod_event():
    ev = pod_event(pod("web"), "Normal", "Scheduled", "Successfully assigned default/web to a",
                   "2026-01-01T00:00:00Z")
    assert ev["metadata"]["name"].startswith("web.")
    assert ev["metadata"]["namespace"] == "default"
    assert ev["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "name": "web",
                                    "namespace": "default", "uid": "uid-web",
                                    "resourceVersion": ""}
    assert (ev["type"], ev["reason"], ev["source"], ev["count"]) == (
        "Normal", "Scheduled", {"component": "default-scheduler"}, 1)
    assert ev["firstTimestamp"] == ev["lastTimestamp"] == "2026-01-01T00:00:00Z"


def test_unschedulable_condition_keeps_transition_time_while_false():
    fresh = unschedulable_condition({}, "m1", "t1")
    assert fresh == {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": "m1", "lastProbeTime": None, "lastTransitionTime": "t1"}
    assert unschedulable_condition(fresh, "m2", "t2")["lastTransitionTime"] == "t1"
    was_true = {**fresh, "status": "True"}
    assert unschedulable_condition(was_true, "m2", "t2")["lastTransitionTime"] == "t2"
