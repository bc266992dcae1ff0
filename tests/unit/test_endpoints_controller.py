"""The Endpoints controller's pure part: subsets from a Service and its pods."""
from test_endpointslice import pod, service

from kwire.controllers.endpoints import desired_subsets, endpoints_labels


def ref(name):
    return {"kind": "Pod", "namespace": "default", "name": name, "uid": f"uid-{name}"}


def test_ready_and_not_ready_pods_share_a_subset():
    pods = [pod("b", "10.0.0.10", ready=False, node="n2"), pod("a", "10.0.0.9")]
    assert desired_subsets(service(), pods) == [{
        "addresses": [{"ip": "10.0.0.9", "nodeName": "n1", "targetRef": ref("a")}],
        "notReadyAddresses": [{"ip": "10.0.0.10", "nodeName": "n2", "targetRef": ref("b")}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]


def test_terminating_pods_are_left_out_unless_not_ready_addresses_are_published():
    pods = [pod("a", "10.0.0.1", terminating=True), pod("b", "10.0.0.2", ready=False)]
    assert desired_subsets(service(), pods)[0] == {
        "notReadyAddresses": [{"ip": "10.0.0.2", "nodeName": "n1", "targetRef": ref("b")}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}
    published = desired_subsets(service(publishNotReadyAddresses=True), pods)
    assert [[a["ip"] for a in s["addresses"]] for s in published] == [["10.0.0.1",
                                                                        "10.0.0.2"]]
    assert "notReadyAddresses" not in published[0]


def test_named_ports_resolved_differently_make_separate_subsets():
    svc = service(ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"},
                         {"name": "admin", "port": 81, "protocol": "TCP", "targetPort": 9000}])
    pods = [pod("a", "10.0.0.1", ports=[{"name": "web", "containerPort": 8080}]),
            pod("b", "10.0.0.2", ports=[{"name": "web", "containerPort": 8081}]),
            pod("c", "10.0.0.3", ports=[{"name": "web", "containerPort": 8080}])]
    subsets = desired_subsets(svc, pods)
    assert [([a["ip"] for a in s["addresses"]], [(p["name"], p["port"]) for p in s["ports"]])
            for s in subsets] == [
        (["10.0.0.1", "10.0.0.3"], [("admin", 9000), ("http", 8080)]),
        (["10.0.0.2"], [("admin", 9000), ("http", 8081)])]


def test_hostname_and_addresses_sorted_numerically():
    pods = [pod("a", "10.0.0.10", hostname="h", subdomain="web"), pod("b", "10.0.0.9")]
    addresses = desired_subsets(service(), pods)[0]["addresses"]
    assert [a["ip"] for a in addresses] == ["10.0.0.9", "10.0.0.10"]
    assert addresses[1]["hostname"] == "h"


def test_no_pods_no_subsets_and_headless_label():
    assert desired_subsets(service(), []) == []
    assert endpoints_labels(service(clusterIP="None")) == {
        "team": "a", "service.kubernetes.io/headless": ""}
