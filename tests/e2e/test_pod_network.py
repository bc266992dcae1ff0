"""Pod networking across nodes, end to end, with real packets on one 3-node cluster: every
busybox pod fetches every nginx pod by pod IP and nginx sees the client's own pod IP (no
NAT between pods), a 1400-byte don't-fragment ping crosses the VXLAN overlay and a bigger
one does not fit, the host reaches pods by IP, a hostPort answers at its node's address, a
hostNetwork pod has its node's IP and reaches the other nodes' pods, and `kwire node rm`
takes the removed node's route, neighbour and FDB entries off the others and its route
off the host.

Traffic goes only to pods and nodes of the cluster this module started; the host fetches
an address only once `ip route get` says it goes into that cluster's bridge."""
from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml

from conftest import Cluster, running_cluster, wait_for
from kwire.cluster.nodes import bridge_name
from kwire.net.overlay import ANNOTATION_BACKEND_DATA, VXLAN_DEVICE

pytestmark = [
    pytest.mark.root, pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: node and pod namespaces"),
]

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
POD_MTU = 1450
"""The underlay's 1500 less VXLAN's 50 bytes of headers."""
ICMP_IP_HEADERS = 28
HOST_PORT = 8080



def pod(name: str, node: str, image: str, ports: list[dict] | None = None, **spec) -> dict:
    """A pod pinned to `node`: busybox sleeps, nginx serves its default page. nginx is
    Ready once it answers: its container runs a moment before nginx listens."""
    container = {"name": "c", "image": image}
    if image == "busybox":
        container["command"] = ["sleep", "3600"]
    else:
        container["readinessProbe"] = {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 1}
    if ports:
        container["ports"] = ports
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [container], **spec}}


def pod_netns(p: dict) -> str:
    """The pod's network namespace: `kwire-<sandbox id>`, the sandbox id leading its
    container IDs (runc://<sandbox id>-<attempt>-<name>)."""
    cid = p["status"]["containerStatuses"][0]["containerID"]
    return "kwire-" + cid.removeprefix("runc://").split("-")[0]


def internal_ip(node: dict) -> str:
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


def ip_json(*args: str) -> list[dict]:
    out = subprocess.run(list(args), capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


def host_fetch(c: Cluster, url_host: str, port: int = 80) -> str:
    """GET / from the host, once the host's route to `url_host` is into c's bridge."""
    route = ip_json("ip", "-j", "route", "get", url_host)
    assert route[0]["dev"] == bridge_name(c.name), \
        f"{url_host} would leave through {route[0]['dev']}"
    with NO_PROXY.open(f"http://{url_host}:{port}/", timeout=5) as resp:
        assert resp.status == 200
        return resp.read().decode()


def pod_fetch(c: Cluster, client: str, url: str) -> str:
    """GET `url` from inside pod `client` with busybox wget (its -T crashes: timeout instead)."""
    return c.kubectl("exec", client, "--", "sh", "-c", f"timeout 5 wget -qO- '{url}'",
                     timeout=20).stdout


@dataclass
class Mesh:
    c: Cluster
    nodes: list[dict]
    """The three Nodes, by name."""
    pods: dict[str, dict]
    """bb1..3 (busybox) and web1..3 (nginx); the digit is the node's place in `nodes`."""

    def ip(self, name: str) -> str:
        return self.pods[name]["status"]["podIP"]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory) -> Iterator[Mesh]:
    with running_cluster("net", tmp_path_factory.mktemp("net"), nodes=3) as c:
        nodes = sorted(c.kubectl_json("get", "nodes")["items"], key=lambda n: n["metadata"]["name"])
        assert len(nodes) == 3
        manifests = []
        for i, node in enumerate(nodes, 1):
            name = node["metadata"]["name"]
            manifests += [pod(f"bb{i}", name, "busybox"),
                          pod(f"web{i}", name, "nginx:alpine", ports=[{"containerPort": 80}])]
        c.apply(yaml.safe_dump_all(manifests))
        names = [m["metadata"]["name"] for m in manifests]
        c.kubectl("wait", "--for=condition=Ready", *(f"pod/{n}" for n in names),
                  "--timeout=90s", timeout=100)
        pods = {p["metadata"]["name"]: p for p in c.kubectl_json("get", "pods")["items"]}
        yield Mesh(c, nodes, pods)


def test_every_pod_fetches_every_nginx_and_nginx_sees_its_pod_ip(mesh):
    clients = [f"bb{i}" for i in (1, 2, 3)]
    servers = [f"web{i}" for i in (1, 2, 3)]
    for client in clients:
        for server in servers:
            page = pod_fetch(mesh.c, client, f"http://{mesh.ip(server)}/?from={client}")
            assert "Welcome to nginx" in page, f"{client} -> {server}: {page!r}"
    for server in servers:
        # The query names the client, so each access log line is checked against it.
        seen = {}
        for line in mesh.c.kubectl("logs", server).stdout.splitlines():
            if '"GET /?from=' in line:
                client = line.split("from=", 1)[1].split()[0]
                seen[client] = line.split()[0]
        assert seen == {client: mesh.ip(client) for client in clients}, server


def test_1400_byte_packets_cross_nodes_unfragmented_and_1451_do_not(mesh):
    for i in (1, 2, 3):
        assert mesh.c.kubectl("exec", f"bb{i}", "--", "cat", "/sys/class/net/eth0/mtu"
                              ).stdout.strip() == str(POD_MTU)
    netns = pod_netns(mesh.pods["bb1"])
    assert netns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                   check=True).stdout.split()
    target = mesh.ip("bb2")

    def ping(size: int) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", netns, "ping", "-M", "do", "-s", str(size),
                               "-c", "1", "-W", "2", target],
                              capture_output=True, text=True, check=False, timeout=10)

    fits = ping(1400 - ICMP_IP_HEADERS)
    assert fits.returncode == 0, fits.stdout + fits.stderr
    too_big = ping(POD_MTU + 1 - ICMP_IP_HEADERS)
    assert too_big.returncode != 0 and str(POD_MTU) in too_big.stdout + too_big.stderr, \
        too_big.stdout + too_big.stderr


def test_host_fetches_a_pod_by_its_ip(mesh):
    for server in ("web1", "web3"):
        assert "Welcome to nginx" in host_fetch(mesh.c, mesh.ip(server))


def test_host_port_answers_at_the_node_address(mesh):
    node = mesh.nodes[1]
    mesh.c.apply(pod("hostport", node["metadata"]["name"], "nginx:alpine",
                     ports=[{"containerPort": 80, "hostPort": HOST_PORT}]))
    mesh.c.kubectl("wait", "--for=condition=Ready", "pod/hostport", "--timeout=60s", timeout=70)
    assert "Welcome to nginx" in host_fetch(mesh.c, internal_ip(node), HOST_PORT)


def test_host_network_pod_has_the_node_ip_and_reaches_other_nodes_pods(mesh):
    node = mesh.nodes[0]
    mesh.c.apply(pod("hostnet", node["metadata"]["name"], "busybox", hostNetwork=True))
    mesh.c.kubectl("wait", "--for=condition=Ready", "pod/hostnet", "--timeout=60s", timeout=70)
    status = mesh.c.kubectl_json("get", "pod", "hostnet")["status"]
    assert status["podIP"] == status["hostIP"] == internal_ip(node)
    for server in ("web2", "web3"):
        assert "Welcome to nginx" in pod_fetch(mesh.c, "hostnet", f"http://{mesh.ip(server)}/")


def test_a_conflist_dropped_in_serves_the_next_pods(mesh):
    """The reference bridge plugin alone, in a file that sorts first in the node's net.d,
    as a network-plugin author would try theirs: the next pod on that node gets its
    address from it (its own subnet, on a bridge of its own name)."""
    c = mesh.c
    node = mesh.nodes[1]["metadata"]["name"]
    net_d = c.state_dir / "nodes" / node / "cni" / "net.d"
    subnet = "10.99.0.0/24"
    mine = net_d / "00-mine.conflist"
    mine.write_text(json.dumps({"cniVersion": "1.0.0", "name": "mine", "plugins": [
        {"type": "bridge", "bridge": "mine0", "isGateway": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                  "dataDir": str(c.state_dir / "nodes" / node / "cni" / "mine-ipam")}}]}))
    try:
        c.apply(pod("swapped", node, "busybox"))
        c.kubectl("wait", "--for=condition=Ready", "pod/swapped", "--timeout=60s", timeout=70)
        p = c.kubectl_json("get", "pod", "swapped")
        assert ipaddress.ip_address(p["status"]["podIP"]) in ipaddress.ip_network(subnet)
        netns = f"kwire-{c.name}_{node}"
        assert ip_json("ip", "-n", netns, "-j", "link", "show", "mine0")
    finally:
        c.kubectl("delete", "pod", "swapped", "--wait=true", "--timeout=60s", check=False, timeout=70)
        mine.unlink()


def overlay_of(c: Cluster, node: str) -> dict[str, list[dict]]:
    """The routes, VXLAN neighbours and FDB entries in node `node`'s namespace."""
    netns = f"kwire-{c.name}_{node}"
    return {"route": ip_json("ip", "-n", netns, "-j", "route"),
            "neigh": ip_json("ip", "-n", netns, "-j", "neigh", "show", "dev", VXLAN_DEVICE),
            "fdb": ip_json("bridge", "-n", netns, "-j", "fdb", "show", "dev", VXLAN_DEVICE)}


def test_node_rm_takes_its_overlay_entries_and_host_route_away(mesh):
    """Last in the module: the cluster has two nodes afterwards."""
    c = mesh.c
    gone = mesh.nodes[2]
    name, cidr, address = gone["metadata"]["name"], gone["spec"]["podCIDR"], internal_ip(gone)
    mac = json.loads(gone["metadata"]["annotations"][ANNOTATION_BACKEND_DATA])["VtepMAC"]
    vtep = cidr.split("/")[0]
    others = [n["metadata"]["name"] for n in mesh.nodes[:2]]

    def entries_for_gone(node: str) -> list[dict]:
        state = overlay_of(c, node)
        return ([r for r in state["route"] if r["dst"] == cidr]
                + [n for n in state["neigh"] if n["dst"] == vtep or n.get("lladdr") == mac]
                + [f for f in state["fdb"] if f["mac"] == mac or f.get("dst") == address])

    def host_route() -> list[dict]:
        return [r for r in ip_json("ip", "-j", "-4", "route", "show", "table", "main")
                if r["dst"] == cidr and r.get("dev") == bridge_name(c.name)]

    for node in others:  # they are there before, so their absence afterwards means something
        assert len(entries_for_gone(node)) == 3, overlay_of(c, node)
    assert host_route()

    c.kwire("node", "rm", name, "--name", c.name, timeout=90)
    for node in others:
        wait_for(lambda node=node: not entries_for_gone(node), 20,
                 f"{name}'s overlay entries off {node}")
    wait_for(lambda: not host_route(), 20, f"the host route to {name}'s pods gone")
    # The two nodes left still reach each other's pods.
    assert "Welcome to nginx" in pod_fetch(c, "bb1", f"http://{mesh.ip('web2')}/")
