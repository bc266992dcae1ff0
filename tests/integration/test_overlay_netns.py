"""The overlay for real, the way the agent applies it: from inside each node's network
namespace (nsenter + the applier), between three throw-away "nodes".

The lab lives entirely in namespaces this test creates, the host's namespace is never
touched: a namespace holding a bridge (the underlay switch), three node namespaces
joined to it by veths (eth0, 172.31.<random>.0/24), and behind each node a pod
namespace on a veth whose node end (cni0) is the pod gateway, as the CNI bridge plugin
leaves it. Traffic goes only between those pods, one bounded connection at a time, and
every namespace (with its links, routes and processes) goes in a finalizer, pass or fail.
"""
import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces, VXLAN"),
    pytest.mark.skipif(shutil.which("ip") is None or shutil.which("bridge") is None,
                       reason="missing ip/bridge: apt-get install iproute2"),
]

IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2
"""From <linux/in.h> (Python's socket module does not export them)."""

# Runs inside a node's namespace, as the agent does; prints one JSON object.
APPLY = """
import json, sys, time
from kwire.net.overlay_apply import Overlay
args = json.load(sys.stdin)
overlay = Overlay(args["backend"], args["address"])
started = time.perf_counter()
result = overlay.reconcile(args["node"], args["nodes"])
seconds = time.perf_counter() - started
json.dump({"commands": result.commands, "annotations": result.annotations,
           "pod_mtu": overlay.pod_mtu, "seconds": seconds}, sys.stdout)
"""

# Runs in a pod: accepts one TCP connection (or one UDP datagram), prints who sent it.
SERVER = """
import socket, sys
address, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
with socket.socket(socket.AF_INET, kind) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port))
    s.settimeout(5)
    if proto == "tcp":
        s.listen(1)
    print("ready", flush=True)
    if proto == "tcp":
        conn, peer = s.accept()
        conn.sendall(b"hello")
        conn.close()
        print(peer[0], flush=True)
    else:
        data, peer = s.recvfrom(65535)
        print(peer[0], len(data), flush=True)
"""

# Runs in a pod: one TCP connection, or one UDP datagram with don't-fragment set.
CLIENT = f"""
import socket, sys
address, port, proto, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
if proto == "tcp":
    with socket.create_connection((address, port), timeout=2) as s:
        print(s.recv(16).decode())
else:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, {IP_MTU_DISCOVER}, {IP_PMTUDISC_DO})
        try:
            s.sendto(b"x" * size, (address, port))
        except OSError as e:
            print("error", e.errno)
        else:
            print("sent")
"""


def run(*cmd: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=20,
                         check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    return out


def in_netns(netns: str, *cmd: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{netns}", "--", *cmd]


def read(netns: str, *cmd: str) -> list[dict]:
    return json.loads(run(*in_netns(netns, *cmd)).stdout or "[]")


@dataclass
class Node:
    name: str
    netns: str
    pod_netns: str
    address: str
    pod_cidr: str
    pod_ip: str
    annotations: dict | None = None

    def as_api_object(self) -> dict:
        meta = {"name": self.name}
        if self.annotations:
            meta["annotations"] = self.annotations
        return {"apiVersion": "v1", "kind": "Node", "metadata": meta,
                "spec": {"podCIDR": self.pod_cidr}}


class Lab:
    def __init__(self, prefix: str, third: int, count: int):
        self.prefix = prefix
        self.switch = f"{prefix}-sw"
        self.gateway = f"172.31.{third}.1"
        self.nodes = [Node(f"node{i}", f"{prefix}-n{i}", f"{prefix}-p{i}",
                           f"172.31.{third}.{i + 1}", f"10.244.{i}.0/24", f"10.244.{i}.2")
                      for i in range(1, count + 1)]

    def namespaces(self) -> list[str]:
        return [self.switch, *(n.netns for n in self.nodes), *(n.pod_netns for n in self.nodes)]

    def build(self) -> None:
        for ns in self.namespaces():
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "dev", "lo", "up")
        run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.switch, "link", "set", "dev", "br0", "up")
        for i, n in enumerate(self.nodes, 1):
            run("ip", "-n", self.switch, "link", "add", f"n{i}", "type", "veth", "peer", "name",
                "eth0", "netns", n.netns)
            run("ip", "-n", self.switch, "link", "set", "dev", f"n{i}", "master", "br0", "up")
            run("ip", "-n", n.netns, "addr", "add", f"{n.address}/24", "dev", "eth0")
            run("ip", "-n", n.netns, "link", "set", "dev", "eth0", "up")
            # The CNI bridge plugin's isGateway does this in a real node.
            run(*in_netns(n.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
            run("ip", "-n", n.netns, "link", "add", "cni0", "type", "veth", "peer", "name",
                "eth0", "netns", n.pod_netns)
            run("ip", "-n", n.netns, "addr", "add", f"{n.pod_ip[:-1]}1/24", "dev", "cni0")
            run("ip", "-n", n.netns, "link", "set", "dev", "cni0", "up")
            run("ip", "-n", n.pod_netns, "addr", "add", f"{n.pod_ip}/24", "dev", "eth0")
            run("ip", "-n", n.pod_netns, "link", "set", "dev", "eth0", "up")
            run("ip", "-n", n.pod_netns, "route", "add", "default", "via", f"{n.pod_ip[:-1]}1")

    def destroy(self) -> None:
        for ns in self.namespaces():
            run("ip", "netns", "del", ns, check=False)

    def reconcile(self, node: Node, backend: str, nodes: list[Node] | None = None) -> dict:
        """The applier inside `node`'s namespace, given `nodes` (default: all) as Nodes."""
        args = {"backend": backend, "address": node.address, "node": node.name,
                "nodes": [n.as_api_object() for n in (self.nodes if nodes is None else nodes)]}
        out = run(*in_netns(node.netns, sys.executable, "-c", APPLY), stdin=json.dumps(args))
        return json.loads(out.stdout)

    def converge(self, backend: str) -> list[dict]:
        """What the agents do: each node publishes its annotations once its device
        exists, then every node reconciles against the published Nodes."""
        for n in self.nodes:
            result = self.reconcile(n, backend)
            n.annotations = result["annotations"]
            set_pod_mtu(n, result["pod_mtu"])
        return [self.reconcile(n, backend) for n in self.nodes]


def set_pod_mtu(node: Node, mtu: int) -> None:
    """What the CNI plugin does with the overlay's pod MTU."""
    run("ip", "-n", node.netns, "link", "set", "dev", "cni0", "mtu", str(mtu))
    run("ip", "-n", node.pod_netns, "link", "set", "dev", "eth0", "mtu", str(mtu))


def exchange(src: Node, dst: Node, proto: str = "tcp", size: int = 0) -> tuple[str, str]:
    """One TCP connection (or UDP datagram of `size` bytes, don't-fragment set) from
    src's pod to dst's pod: (what the client printed, what the server printed)."""
    port = random.randint(20000, 40000)
    server = subprocess.Popen(in_netns(dst.pod_netns, sys.executable, "-c", SERVER, dst.pod_ip,
                                       str(port), proto), stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline() == "ready\n"
        client = run(*in_netns(src.pod_netns, sys.executable, "-c", CLIENT, dst.pod_ip, str(port),
                               proto, str(size)), check=False)
        if client.returncode != 0 or client.stdout.startswith("error"):
            server.kill()
        server_out, _ = server.communicate(timeout=10)
        return client.stdout.strip() or client.stderr.strip(), server_out.strip()
    finally:
        server.kill()
        server.wait()


def overlay_state(node: Node) -> dict:
    """What the kernel holds of the overlay in `node`'s namespace."""
    links = read(node.netns, "ip", "-d", "-j", "addr", "show")
    device = next((link for link in links if link["ifname"] == "kwire.1"), None)
    state = {"device": device,
             "routes": {(r["dst"], r.get("gateway"), r["dev"])
                        for r in read(node.netns, "ip", "-j", "-4", "route", "show", "proto", "107")}}
    if device:
        state["neighbours"] = {(e["dst"], e["lladdr"]) for e in read(
            node.netns, "ip", "-j", "-4", "neigh", "show", "dev", "kwire.1", "nud", "permanent")}
        state["fdb"] = {(e["mac"], e["dst"]) for e in read(
            node.netns, "bridge", "-j", "fdb", "show", "dev", "kwire.1") if e.get("dst")}
    return state


def vtep_mac(node: Node) -> str:
    return json.loads(node.annotations["kwire.io/backend-data"])["VtepMAC"]


def tx_packets(node: Node) -> int:
    link = read(node.netns, "ip", "-s", "-j", "link", "show", "dev", "kwire.1")[0]
    return link["stats64"]["tx"]["packets"]


@pytest.fixture
def lab():
    lab = Lab(f"kwire-ovt-{uuid.uuid4().hex[:6]}", random.randint(200, 254), 3)
    try:
        lab.build()
        yield lab
    finally:
        lab.destroy()
        left = run("ip", "netns", "list").stdout
        assert lab.prefix not in left, left


def assert_mesh(lab: Lab) -> None:
    """Every pod reaches every other pod, and sees the client's pod IP as the source."""
    for src in lab.nodes:
        for dst in lab.nodes:
            if src is not dst:
                assert exchange(src, dst) == ("hello", src.pod_ip), (src.name, dst.name)


def assert_unreachable(src: Node, dst: Node) -> None:
    client, server = exchange(src, dst)
    assert client != "hello" and server == ""


def test_vxlan_overlay_between_three_nodes(lab):
    n1, n2, n3 = lab.nodes
    results = lab.converge("vxlan")
    assert all(r["pod_mtu"] == 1450 for r in results)
    assert n1.annotations["kwire.io/backend-type"] == "vxlan"
    assert n1.annotations["kwire.io/public-ip"] == n1.address
    assert json.loads(n1.annotations["kwire.io/backend-data"])["VNI"] == 1

    state = overlay_state(n1)
    device = state["device"]
    info = device["linkinfo"]["info_data"]
    assert device["linkinfo"]["info_kind"] == "vxlan" and "UP" in device["flags"]
    assert (info["id"], info["port"], info["local"], info["link"], info["learning"]) == (
        1, 8472, n1.address, "eth0", False)
    assert device["mtu"] == 1450 and device["address"] == vtep_mac(n1)
    assert [(a["local"], a["prefixlen"]) for a in device["addr_info"]
            if a["family"] == "inet"] == [("10.244.1.0", 32)]
    assert state["routes"] == {("10.244.2.0/24", "10.244.2.0", "kwire.1"),
                               ("10.244.3.0/24", "10.244.3.0", "kwire.1")}
    assert state["neighbours"] == {("10.244.2.0", vtep_mac(n2)), ("10.244.3.0", vtep_mac(n3))}
    assert state["fdb"] == {(vtep_mac(n2), n2.address), (vtep_mac(n3), n3.address)}

    # Converged: a new applier (an agent restart) changes nothing and keeps the MAC.
    again = lab.reconcile(n1, "vxlan")
    assert again["commands"] == [] and again["annotations"] == n1.annotations

    sent = tx_packets(n1)
    assert_mesh(lab)
    assert tx_packets(n1) > sent  # the packets went through the VXLAN device

    # 1400 bytes with don't-fragment cross; 1451 do not fit the pod MTU.
    assert exchange(n1, n2, "udp", 1372) == ("sent", f"{n1.pod_ip} 1372")
    assert exchange(n1, n2, "udp", 1423)[0] == "error 90"  # EMSGSIZE

    # Foreign routes, even on kwire.1, are never touched.
    run("ip", "-n", n1.netns, "route", "add", "10.98.0.0/24", "dev", "kwire.1")
    run("ip", "-n", n1.netns, "route", "add", "10.99.0.0/24", "via", lab.gateway, "dev", "eth0")

    # node3 leaves: its route, neighbour and FDB entry go from the others.
    for n in (n1, n2):
        lab.reconcile(n, "vxlan", [n1, n2])
    state = overlay_state(n1)
    assert state["routes"] == {("10.244.2.0/24", "10.244.2.0", "kwire.1")}
    assert state["neighbours"] == {("10.244.2.0", vtep_mac(n2))}
    assert state["fdb"] == {(vtep_mac(n2), n2.address)}
    state = overlay_state(n2)
    assert state["routes"] == {("10.244.1.0/24", "10.244.1.0", "kwire.1")}
    assert state["neighbours"] == {("10.244.1.0", vtep_mac(n1))}
    assert state["fdb"] == {(vtep_mac(n1), n1.address)}
    routes = run("ip", "-n", n1.netns, "-4", "route", "show").stdout
    assert "10.98.0.0/24 dev kwire.1" in routes and f"10.99.0.0/24 via {lab.gateway}" in routes
    assert exchange(n1, n2) == ("hello", n1.pod_ip)
    assert_unreachable(n1, n3)

    # A smaller underlay MTU shrinks the device in place: same device, same MAC.
    run("ip", "-n", n1.netns, "link", "set", "dev", "eth0", "mtu", "1400")
    result = lab.reconcile(n1, "vxlan", [n1, n2])
    assert result["commands"] == [["ip", "link", "set", "dev", "kwire.1", "mtu", "1350"]]
    assert result["pod_mtu"] == 1350 and result["annotations"] == n1.annotations


def test_host_gw_between_three_nodes(lab):
    n1, n2, n3 = lab.nodes
    results = lab.converge("host-gw")
    assert all(r["pod_mtu"] == 1500 for r in results)
    assert n1.annotations == {"kwire.io/backend-type": "host-gw",
                              "kwire.io/backend-data": "null", "kwire.io/public-ip": n1.address}
    state = overlay_state(n1)
    assert state == {"device": None,
                     "routes": {("10.244.2.0/24", n2.address, "eth0"),
                                ("10.244.3.0/24", n3.address, "eth0")}}
    assert lab.reconcile(n1, "host-gw")["commands"] == []

    assert_mesh(lab)
    assert exchange(n1, n2, "udp", 1372) == ("sent", f"{n1.pod_ip} 1372")
    assert exchange(n1, n2, "udp", 1472) == ("sent", f"{n1.pod_ip} 1472")

    run("ip", "-n", n1.netns, "route", "add", "10.99.0.0/24", "via", lab.gateway, "dev", "eth0")
    lab.reconcile(n1, "host-gw", [n1, n2])
    assert overlay_state(n1)["routes"] == {("10.244.2.0/24", n2.address, "eth0")}
    assert f"10.99.0.0/24 via {lab.gateway}" in run("ip", "-n", n1.netns, "route").stdout
    assert_unreachable(n1, n3)


def test_switching_backends_replaces_one_mode_by_the_other(lab):
    n1, n2, _ = lab.nodes
    lab.converge("vxlan")
    assert_mesh(lab)
    lab.converge("host-gw")
    state = overlay_state(n1)
    assert state["device"] is None
    assert ("10.244.2.0/24", n2.address, "eth0") in state["routes"]
    assert_mesh(lab)
    lab.converge("vxlan")
    assert overlay_state(n1)["routes"] == {("10.244.2.0/24", "10.244.2.0", "kwire.1"),
                                           ("10.244.3.0/24", "10.244.3.0", "kwire.1")}
    assert_mesh(lab)
