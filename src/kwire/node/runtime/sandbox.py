"""The pod sandbox: the namespaces and files a pod's containers share.

A sandbox is, for one pod:

- a network namespace made by ``ip netns add kwire-<id>`` (so ``ip netns`` and the
  CNI plugins see it at /run/netns/kwire-<id>), loopback up;
- a UTS namespace with hostname = the pod's hostname and an IPC namespace, kept
  alive by bind mounts of their namespace files (``unshare --uts=FILE --ipc=FILE``,
  what ``ip netns`` does for networks and CRI-O's pinns for all three) rather
  than by a pause process: nothing to reap, restart or re-adopt, and nothing dies
  with the agent;
- a 64 MiB tmpfs bound on each container's /dev/shm, so the containers that share
  the IPC namespace share POSIX shared memory too (as containerd does);
- the files Kubernetes writes for a pod: ``hosts``, ``hostname`` and
  ``resolv.conf``, bound by each container on /etc/...;
- ``sandbox.json``: what it is, so a restarted agent finds its sandboxes again.

Layout, under ``root`` (``/run/kwire/sandboxes`` by default)::

    <id>/ns/uts  <id>/ns/ipc   pinned namespaces (bind mounts)
    <id>/shm/                  tmpfs
    <id>/hosts  <id>/hostname  <id>/resolv.conf  <id>/sandbox.json

teardown() undoes all of it and is idempotent. The containers must be gone first
(a process still in the netns keeps it alive after the name is removed).

Mounts made here live in the caller's mount namespace: the agent must run in the
host's mount namespace (or one whose mounts propagate to it), not under
``ip netns exec``, which makes a private one, for ``kwire down`` to see them.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from kwire.node.runtime import rootfs
from kwire.node.runtime.spec import SHM_SIZE, SandboxPaths, hosts_file

DEFAULT_ROOT = Path("/run/kwire/sandboxes")
NETNS_DIR = Path("/run/netns")
NETNS_PREFIX = "kwire-"
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND = 2, 4, 8, 4096
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")


class SandboxError(RuntimeError):
    pass


@dataclass(frozen=True)
class Sandbox:
    id: str
    hostname: str
    dir: str
    netns_name: str
    pod_uid: str = ""
    pod_name: str = ""
    pod_namespace: str = ""

    @property
    def host_network(self) -> bool:
        return not self.netns_name

    @property
    def netns(self) -> str:
        """The pod's own named netns, or (hostNetwork) the agent's, pinned in the sandbox."""
        if self.host_network:
            return str(Path(self.dir) / "ns" / "net")
        return str(NETNS_DIR / self.netns_name)

    @property
    def utsns(self) -> str:
        return str(Path(self.dir) / "ns" / "uts")

    @property
    def ipcns(self) -> str:
        return str(Path(self.dir) / "ns" / "ipc")

    @property
    def shm(self) -> str:
        return str(Path(self.dir) / "shm")

    def paths(self) -> SandboxPaths:
        """What build_spec needs to put a container in this sandbox."""
        d = Path(self.dir)
        return SandboxPaths(netns=self.netns, utsns=self.utsns, ipcns=self.ipcns,
                            hostname=self.hostname, hosts_file=str(d / "hosts"),
                            hostname_file=str(d / "hostname"),
                            resolv_conf=str(d / "resolv.conf"), shm=self.shm)

    def write_files(self, *, hosts: str | None = None, resolv_conf: str | None = None) -> None:
        """(Re)write /etc/hosts and /etc/resolv.conf for the pod; containers bind the
        files, so an in-place rewrite shows through (e.g. once the pod has its IP)."""
        d = Path(self.dir)
        if hosts is not None:
            _write_in_place(d / "hosts", hosts)
        if resolv_conf is not None:
            _write_in_place(d / "resolv.conf", resolv_conf)


def new_id() -> str:
    return secrets.token_hex(6)


def _run(*args: str) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SandboxError(f"{' '.join(args)}: {proc.stderr.strip() or proc.returncode}")


def _write_in_place(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def create(hostname: str, *, root: Path = DEFAULT_ROOT, sandbox_id: str | None = None,
           pod_uid: str = "", pod_name: str = "", pod_namespace: str = "",
           hosts: str | None = None, resolv_conf: str = "", host_network: bool = False) -> Sandbox:
    """Make a pod's sandbox (see the module doc). With host_network the pod shares the
    caller's network namespace (the node's, for hostNetwork pods) instead of getting
    its own. On failure whatever was made is removed again before the error is raised."""
    sandbox_id = new_id() if sandbox_id is None else sandbox_id
    if not _ID.match(sandbox_id):
        raise SandboxError(f"bad sandbox id {sandbox_id!r}")
    d = Path(root) / sandbox_id
    sb = Sandbox(id=sandbox_id, hostname=hostname, dir=str(d),
                 netns_name="" if host_network else NETNS_PREFIX + sandbox_id,
                 pod_uid=pod_uid, pod_name=pod_name,
                 pod_namespace=pod_namespace)
    if d.exists():
        raise SandboxError(f"sandbox {sandbox_id} exists")
    try:
        (d / "ns").mkdir(parents=True, mode=0o711)
        (d / "sandbox.json").write_text(json.dumps(asdict(sb), indent=1))
        if host_network:
            Path(sb.netns).touch()
            rootfs.mount("/proc/self/ns/net", sb.netns, "", MS_BIND)
        else:
            _run("ip", "netns", "add", sb.netns_name)
            _run("ip", "-n", sb.netns_name, "link", "set", "lo", "up")
        for f in (sb.utsns, sb.ipcns):
            Path(f).touch()
        _run("unshare", f"--uts={sb.utsns}", f"--ipc={sb.ipcns}", "hostname", hostname)
        Path(sb.shm).mkdir(mode=0o1777)
        rootfs.mount("shm", sb.shm, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                     f"mode=1777,size={SHM_SIZE}")
        _write_in_place(d / "hostname", hostname + "\n")
        _write_in_place(d / "hosts", hosts if hosts is not None else hosts_file(hostname))
        _write_in_place(d / "resolv.conf", resolv_conf)
    except BaseException:
        teardown(sb)
        raise
    return sb


def load(root: Path, sandbox_id: str) -> Sandbox | None:
    try:
        return Sandbox(**json.loads((Path(root) / sandbox_id / "sandbox.json").read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def list_sandboxes(root: Path = DEFAULT_ROOT) -> list[Sandbox]:
    """The sandboxes under ``root``, for an agent that restarts."""
    if not Path(root).is_dir():
        return []
    out = []
    for entry in sorted(Path(root).iterdir()):
        sb = load(root, entry.name)
        if sb is not None:
            out.append(sb)
    return out


def netns_exists(sb: Sandbox) -> bool:
    """The namespace lives while an nsfs is mounted on its file, which then shows another
    device than its folder: two stats, not a read of every mount (the kubelet asks this
    on every pod sync)."""
    try:
        return os.stat(sb.netns).st_dev != os.stat(os.path.dirname(sb.netns)).st_dev
    except FileNotFoundError:
        return False


def teardown(sb: Sandbox) -> None:
    """Remove the netns, the pinned namespaces, the shm tmpfs and the files;
    idempotent, and fine on a half-made sandbox."""
    if not sb.host_network and (NETNS_DIR / sb.netns_name).exists():
        _run("ip", "netns", "delete", sb.netns_name)
    for path in (sb.utsns, sb.ipcns, sb.shm):
        rootfs.unmount(path)
    d = Path(sb.dir)
    if d.exists():
        prefix = os.path.realpath(d) + "/"
        leftover = [p for p in rootfs.mount_points() if p.startswith(prefix)]
        for p in sorted(leftover, key=len, reverse=True):
            rootfs.unmount(p)
        shutil.rmtree(d)
