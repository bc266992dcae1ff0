"""The scheduler end to end: a cluster of its own started with `kwire up`, fake
Nodes made through the API (no agent runs on them, so bound pods just stay
bound), and the real kubectl looking at what the scheduler did.

Each test makes its own nodes, labelled with a tag its pods select, so nodes of
other tests (or real ones `kwire up` may start) never change the outcome."""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from conftest import Cluster, running_cluster, wait_for

GROUP = "kwire.test/scheduler"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    with running_cluster("sched", tmp_path_factory.mktemp("sched")) as c:
        yield c


@pytest.fixture
def ns(cluster: Cluster):
    """A namespace whose pods are force-deleted afterwards: no kubelet confirms them."""
    name = f"s-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "pods", "--all", "-n", name, "--grace-period=0", "--force",
                        check=False)
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def make_nodes(cluster: Cluster):
    """make_nodes(n) -> (tag, names): Ready nodes that take 10 pods, removed afterwards."""
    made: list[str] = []

    def make(n: int) -> tuple[str, list[str]]:
        tag = f"n{uuid.uuid4().hex[:6]}"  # a letter first: "1e5432" would read as a number
        names = [f"{tag}-{chr(ord('a') + i)}" for i in range(n)]
        for name in names:
            cluster.apply({"apiVersion": "v1", "kind": "Node",
                           "metadata": {"name": name, "labels": {GROUP: tag}}})
            made.append(name)
            # No agent heartbeats here: a heartbeat an hour ahead keeps the node
            # lifecycle controller from marking these nodes unreachable mid-test.
            beat = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
            status = {"status": {
                "allocatable": {"pods": "10", "cpu": "2", "memory": "4Gi"},
                "capacity": {"pods": "10", "cpu": "2", "memory": "4Gi"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status",
                                "lastHeartbeatTime": beat, "lastTransitionTime": beat}]}}
            cluster.kubectl("patch", "node", name, "--subresource=status", "--type=merge",
                            "-p", json.dumps(status))
        return tag, names

    try:
        yield make
    finally:
        for name in made:
            cluster.kubectl("delete", "node", name, "--wait=false", check=False)


def run_pod(cluster: Cluster, ns: str, name: str, selector: dict) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": ns},
                   "spec": {"nodeSelector": selector,
                            "containers": [{"name": "c", "image": "busybox",
                                            "command": ["sleep", "3600"]}]}})


def node_of(cluster: Cluster, ns: str, name: str) -> str:
    return cluster.kubectl_json("get", "pod", name, "-n", ns)["spec"].get("nodeName", "")


def bound(cluster: Cluster, ns: str, name: str) -> str:
    return wait_for(lambda: node_of(cluster, ns, name), what=f"pod {name} bound")


def scheduled_condition(cluster: Cluster, ns: str, name: str) -> dict:
    pod = cluster.kubectl_json("get", "pod", name, "-n", ns)
    return next((c for c in pod.get("status", {}).get("conditions") or ()
                 if c["type"] == "PodScheduled"), {})


def events(cluster: Cluster, ns: str, pod: str, reason: str) -> list[dict]:
    return cluster.kubectl_json("get", "events", "-n", ns, "--field-selector",
                                f"involvedObject.name={pod},reason={reason}")["items"]


def test_least_loaded_node_first(cluster: Cluster, ns: str, make_nodes):
    tag, (a, b, c) = make_nodes(3)
    placed = []
    for i in range(4):
        run_pod(cluster, ns, f"p{i}", {GROUP: tag})
        placed.append(bound(cluster, ns, f"p{i}"))
    assert placed == [a, b, c, a]
    wide = cluster.kubectl("get", "pod", "p1", "-n", ns, "-o", "wide").stdout
    header, row = wide.splitlines()
    assert row.split()[header.split().index("NODE")] == b
    assert scheduled_condition(cluster, ns, "p1")["status"] == "True"
    [ev] = events(cluster, ns, "p1", "Scheduled")
    assert ev["type"] == "Normal" and ev["source"]["component"] == "default-scheduler"
    assert ev["message"] == f"Successfully assigned {ns}/p1 to {b}"


def test_pods_created_together_spread(cluster: Cluster, ns: str, make_nodes):
    tag, names = make_nodes(2)
    for i in range(4):
        run_pod(cluster, ns, f"q{i}", {GROUP: tag})
    placed = sorted(bound(cluster, ns, f"q{i}") for i in range(4))
    assert placed == sorted(names * 2)


def test_node_selector_and_cordon(cluster: Cluster, ns: str, make_nodes):
    tag, (a, b, c) = make_nodes(3)
    cluster.kubectl("label", "node", c, "disk=ssd")
    run_pod(cluster, ns, "ssd", {GROUP: tag, "disk": "ssd"})
    assert bound(cluster, ns, "ssd") == c
    cluster.kubectl("cordon", a)
    run_pod(cluster, ns, "any", {GROUP: tag})
    assert bound(cluster, ns, "any") == b


def test_unschedulable_pod_waits_then_binds(cluster: Cluster, ns: str, make_nodes):
    tag, (a, b) = make_nodes(2)
    run_pod(cluster, ns, "blue", {GROUP: tag, "color": "blue"})
    cond = wait_for(lambda: scheduled_condition(cluster, ns, "blue").get("status") == "False"
                    and scheduled_condition(cluster, ns, "blue"), what="PodScheduled=False")
    assert cond["reason"] == "Unschedulable"
    assert re.fullmatch(r"0/(\d+) nodes are available: .*\d node\(s\) didn't match Pod's node "
                        r"affinity/selector.*\. preemption: 0/\1 nodes are available: .*\.",
                        cond["message"]), cond["message"]
    assert cluster.kubectl_json("get", "pod", "blue", "-n", ns)["status"]["phase"] == "Pending"
    described = cluster.kubectl("describe", "pod", "blue", "-n", ns).stdout
    assert re.search(r"Warning\s+FailedScheduling\s+.*default-scheduler\s+0/\d+ nodes are "
                     r"available", described), described

    # A node change that does not help: tried again, the same event counted again.
    cluster.kubectl("label", "node", a, "color=red")
    [ev] = wait_for(lambda: [e for e in events(cluster, ns, "blue", "FailedScheduling")
                             if e.get("count", 1) >= 2], what="FailedScheduling counted twice")
    assert ev["type"] == "Warning" and ev["source"]["component"] == "default-scheduler"
    assert ev["involvedObject"]["uid"] == cluster.kubectl_json(
        "get", "pod", "blue", "-n", ns)["metadata"]["uid"]
    assert ev["firstTimestamp"] and ev["lastTimestamp"]

    cluster.kubectl("label", "node", b, "color=blue")
    assert bound(cluster, ns, "blue") == b
    assert scheduled_condition(cluster, ns, "blue")["status"] == "True"


def test_pod_with_node_name_is_left_alone(cluster: Cluster, ns: str, make_nodes):
    tag, (a, b) = make_nodes(2)
    cluster.apply({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "pinned", "namespace": ns},
                   "spec": {"nodeName": b,
                            "containers": [{"name": "c", "image": "busybox"}]}})
    run_pod(cluster, ns, "other", {GROUP: tag})
    # The pinned pod counts as load on b, so the next pod goes to a.
    assert bound(cluster, ns, "other") == a
    assert node_of(cluster, ns, "pinned") == b
    assert events(cluster, ns, "pinned", "Scheduled") == []
