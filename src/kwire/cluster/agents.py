"""Node agents: one `kwire agent` per node, running in the node's network namespace.

`kwire up` starts each agent detached, in a session of its own, so that it outlives
`kwire up` and the API server alike: as a kubelet does, an agent keeps its pods running
while the control plane is away, and picks up again when it is back. It enters only the
node's network namespace (nsenter --net): `ip netns exec` would also give it a private
mount namespace, hiding the container root filesystems it mounts from the host and from
`kwire down`.

An agent is found through the pid file in its node's state folder, trusted only while
/proc/<pid>/cmdline still names `kwire agent` for that cluster and node (pids get reused).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kwire.cluster.config import ClusterConfig, ClusterError
from kwire.cluster.nodes import NodeLink
from kwire.node.paths import NodePaths

NETNS_DIR = Path("/run/netns")
"""Where `ip netns add` keeps the namespaces it names."""


def node_paths(config: ClusterConfig, node: str) -> NodePaths:
    return NodePaths.for_node(config.name, config.state_dir, node)


def agent_command(cluster: str, link: NodeLink) -> list[str]:
    return ["nsenter", f"--net={NETNS_DIR / link.netns}", "--",
            sys.executable, "-m", "kwire.cli.main", "agent", "--name", cluster,
            "--node", link.node]


def agent_pid(config: ClusterConfig, node: str) -> int | None:
    """The pid of `node`'s running agent, or None."""
    try:
        pid = int(node_paths(config, node).agent_pid.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_agent_of(pid, config.name, node) else None


def agents_in(config: ClusterConfig, netns: str) -> list[int]:
    """The cluster's agents running in network namespace `netns`, pid file or not."""
    return [pid for pid in namespace_pids(netns) if _is_agent_of(pid, config.name)]


def _is_agent_of(pid: int, cluster: str, node: str | None = None) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # nsenter execs the agent, so the pid names the agent itself (a zombie names nothing).
    want = [b"agent", b"--name", cluster.encode()]
    if node is not None:
        want += [b"--node", node.encode()]
    return (any(b"kwire" in a for a in args)
            and any(args[i:i + len(want)] == want for i in range(len(args))))


def start_agent(config: ClusterConfig, link: NodeLink) -> subprocess.Popen:
    """Launch `link.node`'s agent detached, output appended to its agent.log."""
    paths = node_paths(config, link.node)
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        with open(paths.agent_log, "ab") as log:
            proc = subprocess.Popen(agent_command(config.name, link), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=paths.state_dir, close_fds=True)
    except FileNotFoundError:
        raise ClusterError("`nsenter` is missing: apt-get install util-linux") from None
    paths.agent_pid.write_text(f"{proc.pid}\n")
    return proc


def namespace_pids(netns: str) -> list[int]:
    """Every process whose network namespace is `netns` (what `ip netns pids` prints)."""
    try:
        target = os.stat(NETNS_DIR / netns)
    except OSError:
        return []
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            pids.append(int(entry.name))
    return pids


def terminate(pids: list[int], grace: float) -> None:
    """SIGTERM every pid, SIGKILL those left after `grace` seconds, and wait until all are
    gone. A pid that leads its process group is signalled with its group, so whatever it
    spawned goes with it."""
    pending = set(pids)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in pending:
            _signal(pid, sig)
        deadline = time.monotonic() + wait
        while pending and time.monotonic() < deadline:
            pending = {pid for pid in pending if _alive(pid)}
            if pending:
                time.sleep(0.05)
        pending = {pid for pid in pending if _alive(pid)}
        if not pending:
            return
    raise ClusterError(f"processes {sorted(pending)} did not exit after SIGKILL")


def _signal(pid: int, sig: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    """False once `pid` has exited, zombie or not (reaping it if it is our own child, as
    when `kwire up` and `kwire down` run in one process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
