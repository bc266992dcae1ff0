"""Namespace lifecycle and ownerReference garbage collection, end to end: the
real kubectl against a cluster started with `kwire up`, whose embedded
controllers (kwire.controllers.manager) do the work."""
from __future__ import annotations

import uuid

import pytest
import yaml

from conftest import Cluster, wait_for

TIMEOUT = 30.0



def exists(cluster: Cluster, *args: str) -> bool:
    r = cluster.kubectl("get", *args, "-o", "name", check=False)
    if r.returncode != 0 and "NotFound" not in r.stderr:
        raise AssertionError(r.stderr)
    return r.returncode == 0


def configmap(name: str, ns: str, owner: dict | None = None, block: bool = True,
              finalizers: list[str] | None = None) -> dict:
    meta: dict = {"name": name, "namespace": ns}
    if owner is not None:
        meta["ownerReferences"] = [{
            "apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "blockOwnerDeletion": block}]
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def owner_and_dependents(cluster: Cluster, ns: str, n: int = 3) -> dict:
    cluster.apply(configmap("owner", ns))
    owner = cluster.kubectl_json("get", "configmap", "owner", "-n", ns)
    for i in range(n):
        cluster.apply(configmap(f"dep-{i}", ns, owner))
    return owner


@pytest.fixture
def doomed(cluster: Cluster):
    """A namespace the test itself deletes (removed in the end if it did not)."""
    name = f"lc-{uuid.uuid4().hex[:8]}"
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found",
                        check=False)


def test_namespace_deletion_removes_its_content(cluster, doomed):
    cluster.apply(configmap("c1", doomed))
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1",
                                                                  "namespace": doomed},
                   "stringData": {"a": "1"}})
    cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web",
                                                                   "namespace": doomed},
                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    cluster.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "d1", "namespace": doomed},
                   "spec": {"selector": {"matchLabels": {"app": "d1"}},
                            "template": {"metadata": {"labels": {"app": "d1"}},
                                         "spec": {"containers": [{"name": "main",
                                                                  "image": "nginx:alpine"}]}}}})
    cluster.kubectl("delete", "namespace", doomed, f"--timeout={TIMEOUT:.0f}s",
                    timeout=TIMEOUT + 10)
    assert not exists(cluster, "namespace", doomed)
    leftover = cluster.kubectl("get", "configmaps,secrets,services,deployments", "-A",
                               "-o", "jsonpath={.items[*].metadata.namespace}").stdout.split()
    assert doomed not in leftover


def test_terminating_namespace_waits_for_finalizers_and_says_why(cluster, doomed):
    cluster.apply(configmap("held", doomed, finalizers=["example.com/hold"]))
    cluster.kubectl("delete", "namespace", doomed, "--wait=false")

    def conditions() -> dict:
        ns = cluster.kubectl_json("get", "namespace", doomed)
        return {c["type"]: c for c in ns.get("status", {}).get("conditions", [])}
    wait_for(lambda: conditions().get("NamespaceFinalizersRemaining", {}).get("status") == "True",
             what="NamespaceFinalizersRemaining=True")
    conds = conditions()
    assert "example.com/hold in 1 resource instances" in \
        conds["NamespaceFinalizersRemaining"]["message"]
    assert conds["NamespaceContentRemaining"]["status"] == "True"
    ns = cluster.kubectl_json("get", "namespace", doomed)
    assert ns["status"]["phase"] == "Terminating"
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    refused = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(configmap("late", doomed)),
                              check=False)
    assert refused.returncode != 0 and "being terminated" in refused.stderr
    cluster.kubectl("patch", "configmap", "held", "-n", doomed, "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}')
    wait_for(lambda: not exists(cluster, "namespace", doomed), what="namespace gone")


def test_background_cascade_deletes_dependents(cluster, ns):
    owner_and_dependents(cluster, ns)
    cluster.apply(configmap("other-owner", ns))
    other = cluster.kubectl_json("get", "configmap", "other-owner", "-n", ns)
    shared = configmap("shared", ns, other)
    shared["metadata"]["ownerReferences"].append(
        cluster.kubectl_json("get", "configmap", "dep-0", "-n", ns)["metadata"]
        ["ownerReferences"][0])
    cluster.apply(shared)
    cluster.kubectl("delete", "configmap", "owner", "-n", ns)
    wait_for(lambda: not any(exists(cluster, "configmap", f"dep-{i}", "-n", ns)
                             for i in range(3)), what="dependents gone")
    kept = cluster.kubectl_json("get", "configmap", "shared", "-n", ns)
    assert [r["name"] for r in kept["metadata"]["ownerReferences"]] == ["other-owner"]


def test_foreground_cascade_deletes_dependents_before_the_owner(cluster, ns):
    owner_and_dependents(cluster, ns)
    cluster.kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=foreground",
                    f"--timeout={TIMEOUT:.0f}s", timeout=TIMEOUT + 10)
    assert not exists(cluster, "configmap", "owner", "-n", ns)
    for i in range(3):
        assert not exists(cluster, "configmap", f"dep-{i}", "-n", ns)


def test_orphan_cascade_keeps_dependents_without_the_reference(cluster, ns):
    owner_and_dependents(cluster, ns)
    cluster.kubectl("delete", "configmap", "owner", "-n", ns, "--cascade=orphan",
                    f"--timeout={TIMEOUT:.0f}s", timeout=TIMEOUT + 10)
    assert not exists(cluster, "configmap", "owner", "-n", ns)
    for i in range(3):
        dep = cluster.kubectl_json("get", "configmap", f"dep-{i}", "-n", ns)
        assert "ownerReferences" not in dep["metadata"]


def test_python_client_foreground_delete(cluster, ns):
    from kubernetes import client

    v1 = client.CoreV1Api(cluster.client())
    owner_and_dependents(cluster, ns, n=2)
    v1.delete_namespaced_config_map("owner", ns, body=client.V1DeleteOptions(
        propagation_policy="Foreground"))
    wait_for(lambda: not exists(cluster, "configmap", "owner", "-n", ns), what="owner gone")
    assert [c.metadata.name for c in v1.list_namespaced_config_map(ns).items
            if c.metadata.name.startswith("dep-")] == []
