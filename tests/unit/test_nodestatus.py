from kwire import KUBE_VERSION
from kwire.node.nodestatus import MachineInfo, new_node, node_status

INFO = MachineInfo(cpus=2, memory_kib=24_000_000, ephemeral_storage_bytes=100 << 30,
                   machine_id="m", boot_id="b", kernel_version="6.1", os_image="Debian",
                   runtime_version="runc://1.1.5", architecture="amd64")


def cond(status, t):
    return next(c for c in status["conditions"] if c["type"] == t)


def test_registered_node_describes_the_machine():
    node = new_node("kw-worker", "172.30.0.2", INFO, "2026-01-01T00:00:00Z")
    st = node["status"]
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "kw-worker"
    assert st["addresses"] == [{"type": "InternalIP", "address": "172.30.0.2"},
                               {"type": "Hostname", "address": "kw-worker"}]
    assert st["capacity"] == {"cpu": "2", "ephemeral-storage": f"{100 << 20}Ki", "hugepages-1Gi": "0",
                              "hugepages-2Mi": "0", "memory": "24000000Ki", "pods": "110"}
    assert st["nodeInfo"]["kubeletVersion"] == KUBE_VERSION
    assert st["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    assert cond(st, "Ready")["status"] == "True"
    assert cond(st, "Ready")["reason"] == "KubeletReady"


def test_not_ready_without_pod_cidr_and_transition_time_kept():
    first = node_status("n", "172.30.0.2", INFO, "2026-01-01T00:00:00Z", network_ready=False)
    assert cond(first, "Ready")["status"] == "False"
    assert "NetworkPluginNotReady" in cond(first, "Ready")["message"]
    later = node_status("n", "172.30.0.2", INFO, "2026-01-01T00:00:10Z", first["conditions"],
                        network_ready=False)
    assert cond(later, "Ready")["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert cond(later, "Ready")["lastHeartbeatTime"] == "2026-01-01T00:00:10Z"
    ready = node_status("n", "172.30.0.2", INFO, "2026-01-01T00:00:20Z", later["conditions"])
    assert cond(ready, "Ready")["lastTransitionTime"] == "2026-01-01T00:00:20Z"
