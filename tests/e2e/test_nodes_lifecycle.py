"""Worker nodes, end to end: `kwire up` starts node namespaces with their agents, the
Nodes go Ready with their underlay addresses, a killed agent's Node goes NotReady and
comes back with the next `kwire up`, agents outlive the API server, and `kwire down`
leaves nothing behind (nor a pod's container), even when the cluster is half broken."""
from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import Cluster, kwire_bin, wait_for

pytestmark = [
    pytest.mark.root, pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: node namespaces and agents"),
]

NOT_READY_WITHIN = 40.0
"""The node lifecycle controller's 15 s grace, the lease the agent renewed just before it
died, and the controller's own period, with room for a loaded machine."""



def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def agent_pid(c: Cluster, node: str) -> int:
    return int((c.state_dir / "nodes" / node / "agent.pid").read_text())


def ready(c: Cluster) -> dict[str, str]:
    """Node name -> status of its Ready condition."""
    return {n["metadata"]["name"]: next(cond["status"] for cond in n["status"]["conditions"]
                                        if cond["type"] == "Ready")
            for n in c.kubectl_json("get", "nodes")["items"]}


def leftovers(c: Cluster, pids: list[int]) -> list[str]:
    """Whatever of cluster `c` is still on the machine."""
    found = [f"netns {ns}" for ns in
             subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
             if ns.startswith(f"kwire-{c.name}_")]
    links = subprocess.run(["ip", "-d", "-j", "link", "show"], capture_output=True,
                           text=True).stdout
    found += [f"link with alias kwire:{c.name}"] * links.count(f'"ifalias":"kwire:{c.name}')
    found += [f"process {pid}" for pid in pids if alive(pid)]
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [f"mount {line.split()[4]}" for line in mounts.splitlines()
              if str(c.state_dir) in line or f"/run/kwire/{c.name}" in line]
    found += [str(p) for p in (c.state_dir, Path("/run/kwire") / c.name) if p.exists()]
    return found


@pytest.fixture
def cluster_name() -> str:
    return f"nodes-{uuid.uuid4().hex[:6]}"


def test_nodes_come_up_ready_recover_grow_and_go(tmp_path, cluster_name):
    c = Cluster(cluster_name, tmp_path, ("--nodes", "2"))
    workers = [f"{c.name}-worker", f"{c.name}-worker2"]
    pids: list[int] = []
    try:
        out = c.up().stdout
        for node in workers:
            assert re.search(rf"Node {node} is Ready: 172\.30\.\d+\.\d+ \(agent started", out)
        pids += [agent_pid(c, node) for node in workers]
        assert ready(c) == {node: "True" for node in workers}

        underlay = ipaddress.ip_network(yaml.safe_load(
            (c.state_dir / "config.yaml").read_text())["underlay_cidr"])
        nodes = c.kubectl_json("get", "nodes")["items"]
        assert {n["metadata"]["name"]: [a["address"] for a in n["status"]["addresses"]
                                        if a["type"] == "InternalIP"] for n in nodes} == {
            workers[0]: [str(underlay.network_address + 2)],
            workers[1]: [str(underlay.network_address + 3)]}
        # Each agent runs in its node's network namespace, not the host's.
        for node, pid in zip(workers, pids):
            assert os.stat(f"/proc/{pid}/ns/net").st_ino == \
                os.stat(f"/run/netns/kwire-{c.name}_{node}").st_ino

        status = c.kwire("status", "--name", c.name).stdout
        assert re.search(rf"{workers[1]}\s+{underlay.network_address + 3}\s+running\s+{pids[1]}",
                         status)

        os.kill(pids[1], signal.SIGKILL)
        wait_for(lambda: ready(c)[workers[1]] == "Unknown", NOT_READY_WITHIN,
                 f"{workers[1]} NotReady after its agent was killed")
        assert ready(c)[workers[0]] == "True"
        status = c.kwire("status", "--name", c.name).stdout
        assert re.search(rf"{workers[1]}\s+\S+\s+stopped", status)

        refused = c.kwire("up", "--name", c.name, "--nodes", "1", check=False)
        assert refused.returncode == 1 and "only adds nodes" in refused.stderr

        out = c.kwire("up", "--name", c.name, "--nodes", "3").stdout
        workers.append(f"{c.name}-worker3")
        assert f"Node {workers[0]} is Ready" in out and "(agent running" in out
        assert re.search(rf"Node {workers[1]} is Ready: .*\(agent started", out)
        assert f"Node {workers[2]} is Ready: {underlay.network_address + 4} (agent started" in out
        pids += [agent_pid(c, node) for node in workers[1:]]
        assert ready(c) == {node: "True" for node in workers}

        # The agents outlive the API server, and carry on with the next one.
        server = int((c.state_dir / "server.pid").read_text())
        os.kill(server, signal.SIGKILL)
        pids.append(server)
        out = c.kwire("up", "--name", c.name).stdout
        assert f"Cluster {c.name} is up" in out and "agent started" not in out
        assert [agent_pid(c, node) for node in workers] == [pids[0], *pids[2:4]]
        assert ready(c) == {node: "True" for node in workers}
    finally:
        c.down()
    assert leftovers(c, pids) == []


def pids_running(argv: list[str]) -> list[int]:
    """The processes whose command line is exactly `argv`."""
    want = "\0".join(argv).encode() + b"\0"
    pids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and (p / "cmdline").read_bytes() == want:
                pids.append(int(p.name))
        except OSError:
            continue  # it exited meanwhile
    return pids


def test_down_removes_a_half_broken_cluster_and_is_idempotent(tmp_path, cluster_name):
    c = Cluster(cluster_name, tmp_path, ("--nodes", "1"))
    node = f"{c.name}-worker"
    seconds = str(100000 + uuid.uuid4().int % 100000)  # marks the container's process
    pids: list[int] = []
    try:
        c.up()
        c.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
                 "spec": {"containers": [{"name": "c", "image": "busybox",
                                          "command": ["sleep", seconds]}]}})
        c.kubectl("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s", timeout=70)
        pids += pids_running(["sleep", seconds])
        assert pids, "the pod's container process is not running"
        pids.append(agent_pid(c, node))
        server = int((c.state_dir / "server.pid").read_text())
        os.kill(server, signal.SIGKILL)  # the server crashes: the agent and the pod live on
        time.sleep(0.5)
        assert all(alive(pid) for pid in pids) and not alive(server)
        # The node's namespace vanishes from /run/netns while its agent still runs in it.
        subprocess.run(["ip", "netns", "del", f"kwire-{c.name}_{node}"], check=True)
    finally:
        r = c.kwire("down", "--name", c.name, check=False)
    assert r.returncode == 0, r.stderr
    assert f"Deleted cluster {c.name}" in r.stdout
    assert leftovers(c, pids) == []
    again = c.kwire("down", "--name", c.name)
    assert "nothing to delete" in again.stdout


def test_clusters_started_side_by_side_get_their_own_underlays_and_pod_ranges(tmp_path):
    a, b = (Cluster(f"side-{uuid.uuid4().hex[:6]}", tmp_path, ("--nodes", "0")) for _ in "ab")
    try:
        ups = [subprocess.Popen([kwire_bin(), "up", "--name", c.name, "--nodes", "0"],
                                env=c.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for c in (a, b)]
        for p in ups:
            out = p.communicate(timeout=60)[0]
            assert p.returncode == 0, out
        configs = [yaml.safe_load((c.state_dir / "config.yaml").read_text()) for c in (a, b)]
        nets = [config["underlay_cidr"] for config in configs]
        assert nets[0] != nets[1]
        assert all(ipaddress.ip_network(n).subnet_of(ipaddress.ip_network("172.30.0.0/16"))
                   for n in nets)
        pods = [ipaddress.ip_network(config["pod_cidr"]) for config in configs]
        assert pods[0] != pods[1] and all(p.prefixlen == 16 for p in pods)

        clash = Cluster(f"side-{uuid.uuid4().hex[:6]}", tmp_path)
        r = clash.kwire("up", "--name", clash.name, "--nodes", "0", "--underlay-cidr", nets[0],
                        check=False)
        assert r.returncode == 1 and f"underlay_cidr {nets[0]} overlaps" in r.stderr
        r = clash.kwire("up", "--name", clash.name, "--nodes", "0", "--pod-cidr", str(pods[1]),
                        check=False)
        assert r.returncode == 1 and f"pod_cidr {pods[1]} overlaps" in r.stderr
        assert not clash.state_dir.exists()
    finally:
        a.down()
        b.down()
    assert leftovers(a, []) == [] and leftovers(b, []) == []
