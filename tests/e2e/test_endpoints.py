"""The Endpoints and EndpointSlice controllers end to end: real pods on two nodes
behind a Service, read back with the real kubectl."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import Cluster, running_cluster, wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    with running_cluster("ep", tmp_path_factory.mktemp("ep"), nodes=2) as c:
        yield c


def pod(name: str, node: str, **container) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "busybox",
                                     "command": ["sleep", "3600"],
                                     "ports": [{"name": "http", "containerPort": 8080}],
                                     **container}]}}


def endpoints(cluster: Cluster) -> dict[str, bool]:
    """Slice endpoints of Service web: pod name -> ready."""
    slices = cluster.kubectl_json("get", "endpointslices",
                                  "-l", "kubernetes.io/service-name=web")["items"]
    return {e["targetRef"]["name"]: e["conditions"]["ready"]
            for s in slices for e in s.get("endpoints") or ()}


def test_pods_behind_a_service_show_up_with_their_readiness(cluster: Cluster):
    nodes = sorted(n["metadata"]["name"]
                   for n in cluster.kubectl_json("get", "nodes")["items"])
    cluster.kubectl("label", "node", nodes[1], "topology.kubernetes.io/zone=zone-b")
    cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"selector": {"app": "web"},
                            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    cluster.apply(pod("a", nodes[0]))
    cluster.apply(pod("b", nodes[1]))
    cluster.apply(pod("unready", nodes[0], readinessProbe={
        "exec": {"command": ["false"]}, "periodSeconds": 1}))
    wait_for(lambda: endpoints(cluster) == {"a": True, "b": True, "unready": False},
             timeout=60, what="slice endpoints")

    slices = cluster.kubectl_json("get", "endpointslices",
                                  "-l", "kubernetes.io/service-name=web")["items"]
    assert len(slices) == 1
    s = slices[0]
    assert s["metadata"]["name"].startswith("web-")
    assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
        "endpointslice-controller.k8s.io"
    assert s["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    ips = {p["metadata"]["name"]: p["status"]["podIP"]
           for p in cluster.kubectl_json("get", "pods")["items"]}
    by_pod = {e["targetRef"]["name"]: e for e in s["endpoints"]}
    assert {n: e["addresses"] for n, e in by_pod.items()} == \
        {n: [ip] for n, ip in ips.items()}
    assert (by_pod["b"]["nodeName"], by_pod["b"]["zone"]) == (nodes[1], "zone-b")
    assert "zone" not in by_pod["a"]

    ep = cluster.kubectl_json("get", "endpoints", "web")
    [subset] = ep["subsets"]
    assert sorted(a["ip"] for a in subset["addresses"]) == sorted([ips["a"], ips["b"]])
    assert [a["ip"] for a in subset["notReadyAddresses"]] == [ips["unready"]]
    assert ips["a"] in cluster.kubectl("get", "endpoints", "web").stdout

    cluster.kubectl("delete", "pod", "a", "--wait=false")
    wait_for(lambda: "a" not in endpoints(cluster), timeout=10, what="a gone from the slice")
    wait_for(lambda: ips["a"] not in cluster.kubectl("get", "endpoints", "web").stdout,
             timeout=10, what="a gone from the Endpoints")

    cluster.kubectl("delete", "service", "web")
    wait_for(lambda: endpoints(cluster) == {} and cluster.kubectl(
        "get", "endpoints", "web", check=False).returncode != 0,
        timeout=15, what="slices and Endpoints of the deleted Service gone")
