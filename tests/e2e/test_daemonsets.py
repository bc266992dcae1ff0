"""The DaemonSet controller end to end, on three real nodes, with the real kubectl:
one pod per node, `rollout status`, a template change rolled out one node at a
time, `rollout history` and `undo` through ControllerRevisions, nodes added and
removed with `kwire node add|rm`, a nodeSelector, a surging update, and
foreground and background deletion."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import Cluster, running_cluster, wait_for

NS = "ds"


def daemonset(name: str, **pod_spec) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"terminationGracePeriodSeconds": 1,
                                       "containers": [{"name": "c", "image": "busybox",
                                                       "imagePullPolicy": "IfNotPresent",
                                                       "command": ["sleep", "3600"]}],
                                       **pod_spec}}}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    with running_cluster("ds", tmp_path_factory.mktemp("ds"), "--timeout", "90",
                         nodes=3) as c:
        c.kubectl("create", "namespace", NS)
        yield c


def pods(cluster: Cluster, app: str) -> list[dict]:
    """The pods of app that are not being deleted."""
    items = cluster.kubectl_json("get", "pods", "-n", NS, "-l", f"app={app}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or ())


def nodes(cluster: Cluster) -> list[str]:
    return sorted(n["metadata"]["name"] for n in cluster.kubectl_json("get", "nodes")["items"])


def rollout_status(cluster: Cluster, name: str) -> str:
    r = cluster.kubectl("rollout", "status", f"ds/{name}", "-n", NS, "--timeout=60s",
                        timeout=70)
    assert f'daemon set "{name}" successfully rolled out' in r.stdout
    return r.stdout


def pods_by_node(cluster: Cluster, app: str) -> dict[str, dict]:
    """node -> its one Ready pod of app; empty when some node has another count."""
    out: dict[str, list[dict]] = {}
    for p in pods(cluster, app):
        out.setdefault(p["spec"].get("nodeName") or "", []).append(p)
    if any(len(ps) != 1 or not ready(ps[0]) for ps in out.values()):
        return {}
    return {n: ps[0] for n, ps in out.items()}


def test_one_pod_per_node_and_a_rolling_update(cluster: Cluster):
    cluster.apply(daemonset("agent"), "-n", NS)
    rollout_status(cluster, "agent")
    by_node = wait_for(lambda: pods_by_node(cluster, "agent"), 30, "a ready pod per node")
    assert sorted(by_node) == nodes(cluster) and len(by_node) == 3
    for node, p in by_node.items():
        labels = p["metadata"]["labels"]
        assert labels["pod-template-generation"] == "1" and labels["controller-revision-hash"]
        assert p["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
        assert p["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]
        assert {"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                "effect": "NoSchedule"} in p["spec"]["tolerations"]
    ds = cluster.kubectl_json("get", "ds", "agent", "-n", NS)
    assert ds["status"]["desiredNumberScheduled"] == ds["status"]["numberAvailable"] == 3
    assert "3         3         3       3            3" in cluster.kubectl(
        "get", "ds", "agent", "-n", NS).stdout
    [rev1] = cluster.kubectl_json("get", "controllerrevisions", "-n", NS)["items"]
    assert rev1["revision"] == 1
    assert "daemonset.apps/agent" in cluster.kubectl("get", "controllerrevisions", "-n", NS).stdout

    cluster.kubectl("set", "env", "ds/agent", "-n", NS, "FOO=bar")
    most_down = 0
    while True:
        r = cluster.kubectl("rollout", "status", "ds/agent", "-n", NS, "--watch=false")
        live = pods(cluster, "agent")
        up = {p["spec"].get("nodeName") for p in live if ready(p)}
        most_down = max(most_down, 3 - len(up))
        if "successfully rolled out" in r.stdout:
            break
    assert most_down <= 1  # maxUnavailable: 1
    by_node = wait_for(lambda: pods_by_node(cluster, "agent"), 30, "a ready pod per node")
    assert len(by_node) == 3
    for p in by_node.values():
        assert p["metadata"]["labels"]["pod-template-generation"] == "2"
        assert p["spec"]["containers"][0]["env"] == [{"name": "FOO", "value": "bar"}]
    history = cluster.kubectl("rollout", "history", "ds/agent", "-n", NS).stdout
    assert "1 " in history and "2 " in history

    cluster.kubectl("rollout", "undo", "ds/agent", "-n", NS)
    rollout_status(cluster, "agent")
    by_node = wait_for(lambda: pods_by_node(cluster, "agent"), 30, "a ready pod per node")
    assert all("env" not in p["spec"]["containers"][0] for p in by_node.values())
    back = cluster.kubectl_json("get", "controllerrevision", rev1["metadata"]["name"], "-n", NS)
    assert back["revision"] == 3


def test_nodes_added_and_removed_get_and_lose_their_pod(cluster: Cluster):
    before = nodes(cluster)
    cluster.kwire("node", "add", "--name", cluster.name, timeout=120)
    [new] = [n for n in nodes(cluster) if n not in before]
    wait_for(lambda: new in pods_by_node(cluster, "agent"), 60, "a daemon pod on the new node")
    rollout_status(cluster, "agent")
    cluster.kwire("node", "rm", new, "--name", cluster.name, timeout=120)
    wait_for(lambda: sorted(pods_by_node(cluster, "agent")) == before, 60,
             "the pod of the removed node gone")
    wait_for(lambda: cluster.kubectl_json("get", "ds", "agent", "-n", NS)["status"][
        "desiredNumberScheduled"] == 3, 30, "three nodes desired again")


def test_node_selector_restricts_the_nodes(cluster: Cluster):
    cluster.apply(daemonset("edge", nodeSelector={"role": "edge"}), "-n", NS)
    wait_for(lambda: (cluster.kubectl_json("get", "ds", "edge", "-n", NS).get("status") or {})
             .get("observedGeneration") == 1, 30, "the DaemonSet seen")
    assert pods(cluster, "edge") == []
    first = nodes(cluster)[0]
    cluster.kubectl("label", "node", first, "role=edge")
    try:
        assert list(wait_for(lambda: pods_by_node(cluster, "edge"), 60, "a pod on the edge node")
                    ) == [first]
        rollout_status(cluster, "edge")
    finally:
        cluster.kubectl("label", "node", first, "role-")
    wait_for(lambda: not pods(cluster, "edge"), 30, "the pod of the unlabelled node gone")


def test_surge_starts_new_pods_before_stopping_old_ones(cluster: Cluster):
    surge = daemonset("surge")
    surge["spec"]["updateStrategy"] = {"type": "RollingUpdate",
                                       "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    cluster.apply(surge, "-n", NS)
    rollout_status(cluster, "surge")
    cluster.kubectl("set", "env", "ds/surge", "-n", NS, "FOO=bar")
    most_pods, fewest_ready = 0, 3
    while "successfully rolled out" not in cluster.kubectl(
            "rollout", "status", "ds/surge", "-n", NS, "--watch=false").stdout:
        live = pods(cluster, "surge")
        most_pods = max(most_pods, len(live))
        fewest_ready = min(fewest_ready, len({p["spec"].get("nodeName") for p in live
                                              if ready(p)}))
    assert fewest_ready == 3 and most_pods <= 4  # never a node without a pod, one extra
    by_node = wait_for(lambda: pods_by_node(cluster, "surge"), 30, "a ready pod per node")
    assert all(p["spec"]["containers"][0]["env"] == [{"name": "FOO", "value": "bar"}]
               for p in by_node.values())
    cluster.kubectl("delete", "ds", "surge", "-n", NS)
    wait_for(lambda: not cluster.kubectl_json("get", "pods", "-n", NS, "-l", "app=surge")[
        "items"], 60, "the surge pods collected")


def history(cluster: Cluster, name: str) -> list[dict]:
    return [r for r in cluster.kubectl_json("get", "controllerrevisions", "-n", NS)["items"]
            if r["metadata"]["name"].startswith(f"{name}-")]


def test_deletion_takes_the_pods_and_history_along(cluster: Cluster):
    assert pods(cluster, "agent")
    cluster.kubectl("delete", "ds", "agent", "-n", NS, "--cascade=foreground", timeout=90)
    # foreground: the DaemonSet went only after its pods were gone
    assert cluster.kubectl_json("get", "pods", "-n", NS, "-l", "app=agent")["items"] == []
    wait_for(lambda: not history(cluster, "agent"), 30, "the history collected")

    cluster.apply(daemonset("bg"), "-n", NS)
    rollout_status(cluster, "bg")
    assert len(pods(cluster, "bg")) == 3 and history(cluster, "bg")
    cluster.kubectl("delete", "ds", "bg", "edge", "-n", NS)
    wait_for(lambda: not cluster.kubectl_json("get", "pods", "-n", NS)["items"], 60,
             "the pods collected in the background")
    wait_for(lambda: not cluster.kubectl_json("get", "controllerrevisions", "-n", NS)["items"],
             30, "the history collected in the background")
