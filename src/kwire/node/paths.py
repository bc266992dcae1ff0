"""Where a node keeps its things on the machine it runs on.

Two roots, as a kubelet has /run (gone at reboot, like the processes it names)
and /var/lib plus /var/log (kept):

- ``run_dir`` (``/run/kwire/<cluster>/<node>``): runc's root, conmon's state and
  the pod sandboxes. Short, because conmon puts unix sockets under it.
- ``state_dir`` (``<cluster state dir>/nodes/<node>``): per-pod directories
  (volumes, container root filesystems), container logs in the kubelet's
  /var/log/pods layout, CNI state, the agent's own log and pid file.

The image store is per machine, shared by every node and cluster on it (as
containerd's is per host): ``$KWIRE_IMAGE_ROOT`` or ``/var/lib/kwire/images``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

RUN_ROOT = Path("/run/kwire")
IMAGE_ROOT_ENV = "KWIRE_IMAGE_ROOT"
DEFAULT_IMAGE_ROOT = Path("/var/lib/kwire/images")


def image_root() -> Path:
    return Path(os.environ.get(IMAGE_ROOT_ENV) or DEFAULT_IMAGE_ROOT)


@dataclass(frozen=True)
class NodePaths:
    run_dir: Path
    state_dir: Path

    @classmethod
    def for_node(cls, cluster: str, cluster_state_dir: Path, node: str) -> NodePaths:
        return cls(run_dir=RUN_ROOT / cluster / node,
                   state_dir=Path(cluster_state_dir) / "nodes" / node)

    @property
    def runc_root(self) -> Path:
        return self.run_dir / "runc"

    @property
    def conmon_state(self) -> Path:
        return self.run_dir / "containers"

    @property
    def sandboxes(self) -> Path:
        return self.run_dir / "sandboxes"

    @property
    def pods(self) -> Path:
        return self.state_dir / "pods"

    def pod_dir(self, uid: str) -> Path:
        return self.pods / uid

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def pod_log_dir(self, namespace: str, name: str, uid: str) -> Path:
        """The kubelet's /var/log/pods/<namespace>_<name>_<uid>."""
        return self.logs / f"{namespace}_{name}_{uid}"

    def container_log(self, namespace: str, name: str, uid: str, container: str,
                      restart_count: int) -> Path:
        return self.pod_log_dir(namespace, name, uid) / container / f"{restart_count}.log"

    @property
    def cni(self) -> Path:
        return self.state_dir / "cni"

    @property
    def agent_log(self) -> Path:
        return self.state_dir / "agent.log"

    @property
    def agent_pid(self) -> Path:
        return self.state_dir / "agent.pid"
