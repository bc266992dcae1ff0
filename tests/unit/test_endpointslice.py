"""The EndpointSlice controller's pure parts: endpoints from a Service, its pods
and the nodes, and the plan that turns existing slices into the desired ones."""
from kwire.controllers.endpointslice import (CONTROLLER_NAME, MANAGED_BY_LABEL,
                                             MAX_ENDPOINTS_PER_SLICE, SERVICE_NAME_LABEL,
                                             desired_endpoints, reconcile)


def service(ports=None, **spec):
    return {"metadata": {"name": "web", "namespace": "default", "uid": "svc-uid",
                         "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"},
                     "ports": ports or [{"name": "http", "port": 80, "protocol": "TCP",
                                         "targetPort": 8080}], **spec}}


def pod(name, ip, ready=True, node="n1", terminating=False, ports=(), **spec):
    meta = {"name": name, "namespace": "default", "uid": f"uid-{name}",
            "labels": {"app": "web"}}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta,
            "spec": {"nodeName": node, **spec,
                     "containers": [{"name": "c", "ports": list(ports)}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready",
                                       "status": "True" if ready else "False"}]}}


NODES = {"n1": {"metadata": {"name": "n1",
                             "labels": {"topology.kubernetes.io/zone": "zone-a"}}},
         "n2": {"metadata": {"name": "n2"}}}


def only_group(groups):
    assert len(groups) == 1
    return next(iter(groups.values()))


def test_a_ready_pod_becomes_a_full_endpoint():
    group = only_group(desired_endpoints(service(), [pod("a", "10.244.1.5")], NODES))
    assert group.ports == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert group.endpoints == [{
        "addresses": ["10.244.1.5"],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "nodeName": "n1", "zone": "zone-a",
        "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}}]


def test_conditions_follow_readiness_and_termination():
    pods = [pod("a", "10.0.0.1", ready=False, node="n2"),
            pod("b", "10.0.0.2", terminating=True),
            pod("c", "10.0.0.3", ready=False, terminating=True)]
    eps = only_group(desired_endpoints(service(), pods, NODES)).endpoints
    assert [e["conditions"] for e in eps] == [
        {"ready": False, "serving": False, "terminating": False},
        {"ready": False, "serving": True, "terminating": True},
        {"ready": False, "serving": False, "terminating": True}]
    assert "zone" not in eps[0]


def test_publish_not_ready_addresses_makes_every_endpoint_ready():
    pods = [pod("a", "10.0.0.1", ready=False), pod("b", "10.0.0.2", terminating=True)]
    eps = only_group(desired_endpoints(service(publishNotReadyAddresses=True), pods,
                                       NODES)).endpoints
    assert [e["conditions"]["ready"] for e in eps] == [True, True]


def test_unselected_unaddressed_and_finished_pods_are_left_out():
    other = pod("x", "10.0.0.9")
    other["metadata"]["labels"] = {"app": "db"}
    done = pod("d", "10.0.0.8")
    done["status"]["phase"] = "Succeeded"
    assert desired_endpoints(service(), [other, done, pod("p", None)], NODES) == {}


def test_named_target_ports_resolve_per_pod_and_split_groups():
    svc = service(ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"}])
    pods = [pod("a", "10.0.0.1", ports=[{"name": "web", "containerPort": 8080}]),
            pod("b", "10.0.0.2", ports=[{"name": "web", "containerPort": 9090}]),
            pod("c", "10.0.0.3", ports=[{"name": "web", "containerPort": 8080}]),
            pod("d", "10.0.0.4", ports=[{"name": "web", "containerPort": 53,
                                         "protocol": "UDP"}])]
    groups = desired_endpoints(svc, pods, NODES)
    by_port = {g.ports[0]["port"] if g.ports else None:
               [e["targetRef"]["name"] for e in g.endpoints] for g in groups.values()}
    assert by_port == {8080: ["a", "c"], 9090: ["b"], None: ["d"]}


def test_hostname_only_when_the_subdomain_is_the_service():
    pods = [pod("a", "10.0.0.1", hostname="h", subdomain="web"),
            pod("b", "10.0.0.2", hostname="h2", subdomain="other")]
    eps = only_group(desired_endpoints(service(), pods, NODES)).endpoints
    assert eps[0]["hostname"] == "h" and "hostname" not in eps[1]


def names(slices):
    return [[e["targetRef"]["name"] for e in s["endpoints"]] for s in slices]


def test_new_slices_carry_labels_owner_and_at_most_100_endpoints():
    svc = service()
    pods = [pod(f"p{i:03}", f"10.0.{i // 200}.{i % 200 + 1}") for i in range(150)]
    plan = reconcile(svc, desired_endpoints(svc, pods, NODES), [])
    assert [len(s["endpoints"]) for s in plan.create] == [MAX_ENDPOINTS_PER_SLICE, 50]
    s = plan.create[0]
    assert s["metadata"]["generateName"] == "web-"
    assert s["metadata"]["labels"] == {"team": "a", SERVICE_NAME_LABEL: "web",
                                       MANAGED_BY_LABEL: CONTROLLER_NAME}
    assert s["metadata"]["ownerReferences"] == [{
        "apiVersion": "v1", "kind": "Service", "name": "web", "uid": "svc-uid",
        "controller": True, "blockOwnerDeletion": True}]
    assert s["addressType"] == "IPv4"


def existing(svc, pods, name="web-abcde"):
    s = reconcile(svc, desired_endpoints(svc, pods, NODES), []).create[0]
    return {**s, "metadata": {**s["metadata"], "name": name}}


def test_unchanged_slices_are_not_written():
    svc, pods = service(), [pod("a", "10.0.0.1"), pod("b", "10.0.0.2")]
    plan = reconcile(svc, desired_endpoints(svc, pods, NODES), [existing(svc, pods)])
    assert (plan.create, plan.update, plan.delete) == ([], [], [])


def test_changes_update_the_slice_in_place():
    svc, pods = service(), [pod("a", "10.0.0.1"), pod("b", "10.0.0.2")]
    old = existing(svc, pods)
    now = [pod("a", "10.0.0.1", ready=False), pod("c", "10.0.0.3")]
    plan = reconcile(svc, desired_endpoints(svc, now, NODES), [old])
    assert plan.create == [] and plan.delete == []
    assert names(plan.update) == [["a", "c"]]
    assert plan.update[0]["metadata"]["name"] == "web-abcde"
    assert plan.update[0]["endpoints"][0]["conditions"]["ready"] is False


def test_slices_with_ports_no_longer_wanted_are_replaced():
    svc, pods = service(), [pod("a", "10.0.0.1")]
    old = existing(svc, pods)
    moved = service(ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 81}])
    plan = reconcile(moved, desired_endpoints(moved, pods, NODES), [old])
    assert plan.delete == [old] and names(plan.create) == [["a"]]
    assert plan.create[0]["ports"][0]["port"] == 81


def test_a_service_without_endpoints_keeps_one_empty_slice():
    svc = service()
    plan = reconcile(svc, {}, [])
    assert [(s["endpoints"], s["ports"]) for s in plan.create] == [([], [])]
    old = existing(svc, [pod("a", "10.0.0.1")])
    plan = reconcile(svc, {}, [old])
    assert plan.delete == [] and plan.create == []
    assert [(s["metadata"]["name"], s["endpoints"]) for s in plan.update] == [("web-abcde", [])]
    placeholder = plan.update[0]
    assert reconcile(svc, {}, [placeholder]).update == []
