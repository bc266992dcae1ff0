"""The node lifecycle controller end to end: a fake Node whose "agent" is this
test, renewing the node's Lease every second through the official client, seen
through the real kubectl of a cluster started with `kwire up`. The grace period
is kwire's default (kwire.controllers.nodelifecycle.GRACE_PERIOD)."""
from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
from kubernetes import client

from conftest import Cluster, running_cluster
from kwire.controllers.nodelifecycle import GRACE_PERIOD, MONITOR_PERIOD

LEASE_NS = "kube-node-lease"
UNREACHABLE = "node.kubernetes.io/unreachable"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster("e2e-nlc", tmp_path_factory.mktemp("nodelifecycle")) as c:
        yield c


def stamp(micro: bool = False) -> str:
    return datetime.now(timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def kubelet_conditions() -> list[dict]:
    """What an agent posts: Ready=True, no pressure."""
    now = stamp()
    return [{"type": t, "status": s, "reason": r, "message": "posted by the test",
             "lastHeartbeatTime": now, "lastTransitionTime": now}
            for t, s, r in (("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                            ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                            ("PIDPressure", "False", "KubeletHasSufficientPID"),
                            ("Ready", "True", "KubeletReady"))]


class Heartbeat:
    """Renews the node's Lease every second while running, as an agent does."""

    def __init__(self, cluster: Cluster, name: str):
        self.api = client.CoordinationV1Api(cluster.client())
        self.name = name
        self.last = 0.0  # time.monotonic() of the last renewal
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def renew(self) -> None:
        self.api.patch_namespaced_lease(self.name, LEASE_NS,
                                        {"spec": {"renewTime": stamp(micro=True)}})
        self.last = time.monotonic()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.renew()
            self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def shown_status(cluster: Cluster, name: str) -> str:
    return cluster.kubectl("get", "node", name, "--no-headers").stdout.split()[1]


def wait_status(cluster: Cluster, name: str, want: str, timeout: float) -> float:
    """Seconds until `kubectl get node` shows want (fails after timeout)."""
    start = time.monotonic()
    while (shown := shown_status(cluster, name)) != want:
        if time.monotonic() - start > timeout:
            raise AssertionError(f"node {name} still {shown}, not {want}, after {timeout}s")
        time.sleep(0.5)
    return time.monotonic() - start


def test_node_goes_not_ready_when_heartbeats_stop_and_back_when_they_resume(cluster):
    name = f"fake-{uuid.uuid4().hex[:6]}"
    api = cluster.client()
    core = client.CoreV1Api(api)
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                      "status": {"conditions": kubelet_conditions()}})
    client.CoordinationV1Api(api).create_namespaced_lease(LEASE_NS, {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": LEASE_NS},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                 "renewTime": stamp(micro=True)}})
    beat = Heartbeat(cluster, name)
    beat.start()
    try:
        # Older than the grace period by now, the status heartbeat alone would not do.
        time.sleep(GRACE_PERIOD / 3)
        assert shown_status(cluster, name) == "Ready"

        beat.stop()
        silent_from = beat.last
        wait_status(cluster, name, "NotReady", GRACE_PERIOD + MONITOR_PERIOD + 5)
        assert time.monotonic() - silent_from >= GRACE_PERIOD - 1
        node = cluster.kubectl_json("get", "node", name)
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"], ready["message"]) == (
            "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
        assert {c["type"]: c["status"] for c in node["status"]["conditions"]} == {
            "Ready": "Unknown", "MemoryPressure": "Unknown", "DiskPressure": "Unknown",
            "PIDPressure": "Unknown"}
        assert sorted((t["key"], t["effect"]) for t in node["spec"]["taints"]) == [
            (UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")]
        events = cluster.kubectl_json("get", "events", "-n", "default", "--field-selector",
                                      f"involvedObject.name={name}")["items"]
        assert [(e["reason"], e["source"]["component"]) for e in events] == [
            ("NodeNotReady", "node-controller")]

        beat.start()
        time.sleep(MONITOR_PERIOD + 1)
        assert shown_status(cluster, name) == "NotReady"  # only the agent says Ready again
        core.patch_node_status(name, {"status": {"conditions": kubelet_conditions()}})
        wait_status(cluster, name, "Ready", MONITOR_PERIOD + 5)
        deadline = time.monotonic() + MONITOR_PERIOD + 5
        while cluster.kubectl_json("get", "node", name)["spec"].get("taints"):
            assert time.monotonic() < deadline, "unreachable taints not removed"
            time.sleep(0.5)
    finally:
        beat.stop()
        cluster.kubectl("delete", "node", name, "--ignore-not-found", check=False)
        cluster.kubectl("delete", "lease", name, "-n", LEASE_NS, "--ignore-not-found",
                        check=False)
