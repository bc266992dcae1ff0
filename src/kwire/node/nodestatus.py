"""The Node object an agent registers and keeps fresh, as the kubelet's node
status setters build it. Pure: the facts about the machine are read once by
`machine_info()` and handed in, so tests build Nodes without a machine."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from kwire import KUBE_VERSION
from kwire.node.images.store import host_platform

KUBELET_PORT = 10250
MAX_PODS = 110


@dataclass(frozen=True)
class MachineInfo:
    cpus: int
    memory_kib: int
    ephemeral_storage_bytes: int
    machine_id: str = ""
    boot_id: str = ""
    kernel_version: str = ""
    os_image: str = ""
    runtime_version: str = "runc://unknown"
    architecture: str = "amd64"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def machine_info(storage_path: Path, runtime_version: str) -> MachineInfo:
    mem = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1])
    st = os.statvfs(storage_path)
    return MachineInfo(cpus=os.cpu_count() or 1, memory_kib=mem,
                       ephemeral_storage_bytes=st.f_blocks * st.f_frsize,
                       machine_id=_read("/etc/machine-id"),
                       boot_id=_read("/proc/sys/kernel/random/boot_id"),
                       kernel_version=platform.release(), os_image=_os_image(),
                       runtime_version=runtime_version, architecture=host_platform()[1])


def labels(node: str, arch: str) -> dict[str, str]:
    return {"beta.kubernetes.io/arch": arch, "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch, "kubernetes.io/hostname": node,
            "kubernetes.io/os": "linux"}


def capacity(info: MachineInfo) -> dict[str, str]:
    return {"cpu": str(info.cpus), "ephemeral-storage": f"{info.ephemeral_storage_bytes // 1024}Ki",
            "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": f"{info.memory_kib}Ki",
            "pods": str(MAX_PODS)}


def condition(type_: str, status: str, reason: str, message: str, now: str,
              previous: list[dict] | None = None) -> dict:
    """A node condition whose lastTransitionTime only moves when status does."""
    old = next((c for c in previous or [] if c.get("type") == type_), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now
    return {"type": type_, "status": status, "lastHeartbeatTime": now,
            "lastTransitionTime": since, "reason": reason, "message": message}


def conditions(now: str, previous: list[dict] | None, network_ready: bool) -> list[dict]:
    ready = (condition("Ready", "True", "KubeletReady", "kubelet is posting ready status", now, previous)
             if network_ready else
             condition("Ready", "False", "KubeletNotReady",
                       "container runtime network not ready: NetworkReady=false "
                       "reason:NetworkPluginNotReady message:Network plugin returns error: "
                       "no pod CIDR assigned to this node yet", now, previous))
    return [
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                  "kubelet has sufficient memory available", now, previous),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                  "kubelet has no disk pressure", now, previous),
        condition("PIDPressure", "False", "KubeletHasSufficientPID",
                  "kubelet has sufficient PID available", now, previous),
        ready,
    ]


def node_status(node: str, address: str, info: MachineInfo, now: str,
                previous: list[dict] | None = None, *, network_ready: bool = True,
                port: int = KUBELET_PORT, images: list[dict] | None = None) -> dict:
    cap = capacity(info)
    return {
        "capacity": cap,
        "allocatable": dict(cap),
        "conditions": conditions(now, previous, network_ready),
        "addresses": [{"type": "InternalIP", "address": address},
                      {"type": "Hostname", "address": node}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "machineID": info.machine_id, "systemUUID": info.machine_id, "bootID": info.boot_id,
            "kernelVersion": info.kernel_version, "osImage": info.os_image,
            "containerRuntimeVersion": info.runtime_version,
            "kubeletVersion": KUBE_VERSION, "kubeProxyVersion": KUBE_VERSION,
            "operatingSystem": "linux", "architecture": info.architecture,
        },
        "images": images or [],
    }


def new_node(node: str, address: str, info: MachineInfo, now: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node, "labels": labels(node, info.architecture),
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                     "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {},
        "status": node_status(node, address, info, now),
    }
