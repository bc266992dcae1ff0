"""ReplicaSet and Deployment controllers end to end, on two real nodes, with the
real kubectl: a Deployment becomes ready, `rollout status` succeeds, `scale`
works, a new image rolls out to a new ReplicaSet, and deleting the Deployment
removes its ReplicaSets and pods."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import Cluster, running_cluster, wait_for

WEB = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"terminationGracePeriodSeconds": 1,
                                   "containers": [{"name": "c", "image": "nginx:alpine",
                                                   "imagePullPolicy": "IfNotPresent"}]}}},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    with running_cluster("wl", tmp_path_factory.mktemp("wl"), nodes=2) as c:
        yield c


def items(cluster: Cluster, kind: str, ns: str, *args: str) -> list[dict]:
    return cluster.kubectl_json("get", kind, "-n", ns, *args)["items"]


def live_pods(cluster: Cluster, ns: str) -> list[dict]:
    return [p for p in items(cluster, "pods", ns, "-l", "app=web")
            if not p["metadata"].get("deletionTimestamp")]


def test_deployment_lifecycle(cluster: Cluster):
    ns = "wl"
    cluster.kubectl("create", "namespace", ns)
    cluster.apply(WEB, "-n", ns)
    r = cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=40s",
                        timeout=50)
    assert 'deployment "web" successfully rolled out' in r.stdout
    d = cluster.kubectl_json("get", "deployment", "web", "-n", ns)
    assert d["status"]["readyReplicas"] == 3 and d["status"]["availableReplicas"] == 3
    [rs1] = items(cluster, "replicasets", ns)
    pod_hash = rs1["metadata"]["labels"]["pod-template-hash"]
    assert rs1["metadata"]["name"] == f"web-{pod_hash}"
    assert rs1["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    pods = live_pods(cluster, ns)
    assert len(pods) == 3
    assert all(p["metadata"]["name"].startswith(f"web-{pod_hash}-") for p in pods)

    cluster.kubectl("scale", "deployment/web", "--replicas=1", "-n", ns)
    wait_for(lambda: len(live_pods(cluster, ns)) == 1, 30, "scaled down to one pod")

    cluster.kubectl("patch", "deployment/web", "-n", ns, "-p",
                    '{"spec": {"template": {"spec": {"containers": [{"name": "c",'
                    ' "image": "busybox", "command": ["sleep", "3600"]}]}}}}')
    r = cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=40s",
                        timeout=50)
    assert 'deployment "web" successfully rolled out' in r.stdout
    rss = {rs["metadata"]["name"]: rs for rs in items(cluster, "replicasets", ns)}
    assert len(rss) == 2 and rss[rs1["metadata"]["name"]]["spec"]["replicas"] == 0
    [rs2] = [rs for name, rs in rss.items() if name != rs1["metadata"]["name"]]
    assert rs2["spec"]["replicas"] == 1
    assert rs2["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    wait_for(lambda: [p["spec"]["containers"][0]["image"] for p in live_pods(cluster, ns)]
             == ["busybox"], 30, "only the new pod left")

    cluster.kubectl("rollout", "undo", "deployment/web", "-n", ns)
    cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=40s", timeout=50)
    back = cluster.kubectl_json("get", "replicaset", rs1["metadata"]["name"], "-n", ns)
    assert back["spec"]["replicas"] == 1
    assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"

    cluster.kubectl("delete", "deployment", "web", "-n", ns)
    wait_for(lambda: not items(cluster, "replicasets", ns), 30, "replicasets collected")
    wait_for(lambda: not items(cluster, "pods", ns), 40, "pods collected")


def test_replicaset_adopts_releases_and_replaces(cluster: Cluster):
    ns = "rs"
    cluster.kubectl("create", "namespace", ns)
    template = WEB["spec"]["template"]
    cluster.apply({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "orphan", "labels": {"app": "web"}},
                   "spec": template["spec"]}, "-n", ns)
    cluster.apply({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
                   "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                            "template": template}}, "-n", ns)

    def owned() -> list[str]:
        return sorted(p["metadata"]["name"] for p in live_pods(cluster, ns)
                      if any(r.get("controller") and r["name"] == "web"
                             for r in p["metadata"].get("ownerReferences") or ()))
    names = wait_for(lambda: len(owned()) == 2 and owned(), 30, "two owned pods")
    assert "orphan" in names
    [made] = [n for n in names if n != "orphan"]
    assert made.startswith("web-") and len(made) == len("web-") + 5

    cluster.kubectl("label", "pod", "orphan", "app-", "-n", ns)
    wait_for(lambda: len(owned()) == 2 and "orphan" not in owned(), 30, "orphan released")
    released = cluster.kubectl_json("get", "pod", "orphan", "-n", ns)
    assert not released["metadata"].get("ownerReferences")
    wait_for(lambda: cluster.kubectl_json("get", "rs", "web", "-n", ns)["status"]
             .get("readyReplicas") == 2, 30, "two ready replicas")


def test_recreate_replaces_every_pod(cluster: Cluster):
    ns = "re"
    cluster.kubectl("create", "namespace", ns)
    cluster.apply({**WEB, "spec": {**WEB["spec"], "replicas": 2,
                                   "strategy": {"type": "Recreate"}}}, "-n", ns)
    cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=40s", timeout=50)
    cluster.kubectl("set", "env", "deployment/web", "GEN=2", "-n", ns)
    cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=40s", timeout=50)
    sizes = sorted((rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
                    rs["spec"]["replicas"]) for rs in items(cluster, "replicasets", ns))
    assert sizes == [("1", 0), ("2", 2)]
    wait_for(lambda: [c["spec"]["containers"][0].get("env") for c in live_pods(cluster, ns)]
             == [[{"name": "GEN", "value": "2"}]] * 2, 30, "only new pods left")
