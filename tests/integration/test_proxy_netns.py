"""The service proxy's rules with real packets: a node namespace routing between a
client namespace and two server namespaces, its ``kwire-proxy`` table written by
ProxyApplier from Services and EndpointSlices through proxy.Tracker, as the agent does.
Every namespace and server process goes in the fixture's finally, pass or fail."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest

from kwire.net.proxy import Tracker
from kwire.net.proxy_apply import ProxyApplier, ProxyError

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="missing nft: apt-get install nftables"),
]

NODE = "n1"
CLIENT = "10.244.1.2"
SERVERS = {"a": "10.244.2.2", "b": "10.244.3.2"}
WEB_IP, DNS_IP, EMPTY_IP = "10.96.0.80", "10.96.0.53", "10.96.0.99"

# Runs in a server namespace: answers TCP :8080 and UDP :5353 with its name and the peer.
SERVER = """
import socket, sys, threading
name = sys.argv[1]
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 5353))
    while True:
        data, peer = u.recvfrom(100)
        u.sendto(name.encode(), peer)
threading.Thread(target=udp, daemon=True).start()
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 8080))
t.listen(64)
print("ready", flush=True)
while True:
    c, peer = t.accept()
    c.sendall(f"{name} {peer[0]}".encode())
    c.close()
"""

# Runs in a namespace: one TCP or UDP exchange; prints the answer or the error's name.
CLIENT_SCRIPT = """
import socket, sys
proto, ip, port, sport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
try:
    if proto == "tcp":
        s = socket.create_connection((ip, port), timeout=3)
        print(s.recv(100).decode())
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", sport))
        s.settimeout(3)
        s.connect((ip, port))  # connected, so an ICMP error reaches recv
        s.send(b"q")
        print(s.recv(100).decode())
except OSError as e:
    print(type(e).__name__ if type(e) is not OSError else f"OSError {e}")
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Lab:
    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.node = f"kwpx-{tag}-node"
        self.ns = {"client": f"kwpx-{tag}-c", **{k: f"kwpx-{tag}-{k}" for k in SERVERS}}
        self.procs: list[subprocess.Popen] = []
        self.tracker = Tracker(NODE, ["172.30.250.2"], "10.244.0.0/16")
        self.applier = ProxyApplier(run=self.run_in_node)

    def run_in_node(self, cmd, **kw):
        return subprocess.run(["ip", "netns", "exec", self.node, *cmd], **kw)

    def up(self) -> None:
        ip("netns", "add", self.node)
        ip("-n", self.node, "link", "set", "lo", "up")
        subprocess.run(["ip", "netns", "exec", self.node, "sysctl", "-qw",
                        "net.ipv4.ip_forward=1"], check=True)
        # the node's underlay: a veth whose peer stays in the node, holding its address
        # and default route as a real node has (a Service address must route somewhere
        # before the filter hooks reject it)
        ip("-n", self.node, "link", "add", "uplink", "type", "veth", "peer", "name", "uplink1")
        ip("-n", self.node, "addr", "add", "172.30.250.2/24", "dev", "uplink")
        ip("-n", self.node, "link", "set", "uplink", "up")
        ip("-n", self.node, "link", "set", "uplink1", "up")
        ip("-n", self.node, "route", "add", "default", "via", "172.30.250.1")
        addresses = {"client": CLIENT, **SERVERS}
        for i, (role, ns) in enumerate(self.ns.items()):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"v{i}",
               "netns", self.node)
            gateway = addresses[role].rsplit(".", 1)[0] + ".1"
            ip("-n", ns, "addr", "add", f"{addresses[role]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "route", "add", "default", "via", gateway)
            ip("-n", self.node, "addr", "add", f"{gateway}/24", "dev", f"v{i}")
            ip("-n", self.node, "link", "set", f"v{i}", "up")
        for name in SERVERS:
            p = subprocess.Popen(["ip", "netns", "exec", self.ns[name], sys.executable, "-c",
                                  SERVER, name], stdout=subprocess.PIPE, text=True)
            self.procs.append(p)
            assert p.stdout.readline().strip() == "ready"

    def down(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        for ns in [*self.ns.values(), self.node]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def ask(self, proto: str, ip_: str, port: int, sport: int = 0, frm: str = "client") -> str:
        r = subprocess.run(["ip", "netns", "exec", self.ns[frm], sys.executable, "-c",
                            CLIENT_SCRIPT, proto, ip_, str(port), str(sport)],
                           capture_output=True, text=True, timeout=20, check=True)
        return r.stdout.strip()

    def set_services(self, services: dict[str, tuple[str, list[str]]], patch: bool = True):
        """name -> (clusterIP, endpoint server names); replaces the named Services."""
        changes = {("default", name): _objects(name, cip, eps)
                   for name, (cip, eps) in services.items()}
        before, after = self.tracker.update(changes)
        if patch and self.applier.in_sync:
            return self.applier.patch(before, after)
        return self.applier.replace(self.tracker.state())


def _objects(name: str, cluster_ip: str, servers: list[str]):
    svc = {"metadata": {"name": name, "namespace": "default"},
           "spec": {"clusterIP": cluster_ip, "type": "ClusterIP",
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                              {"name": "dns", "port": 53, "protocol": "UDP",
                               "targetPort": 5353}]}}
    sl = {"metadata": {"name": f"{name}-1", "namespace": "default",
                       "labels": {"kubernetes.io/service-name": name}},
          "addressType": "IPv4",
          "endpoints": [{"addresses": [SERVERS[s]], "conditions": {"ready": True},
                         "nodeName": NODE} for s in servers],
          "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                    {"name": "dns", "port": 5353, "protocol": "UDP"}]}
    return svc, [sl]


@pytest.fixture
def lab():
    lab = Lab()
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def test_clusterip_spreads_over_endpoints_and_keeps_the_client_address(lab: Lab):
    first = lab.set_services({"web": (WEB_IP, ["a", "b"]), "empty": (EMPTY_IP, [])})
    assert first.full
    answers = Counter(lab.ask("tcp", WEB_IP, 80) for _ in range(24))
    assert set(answers) == {f"a {CLIENT}", f"b {CLIENT}"}, answers  # both; no SNAT
    assert lab.ask("udp", WEB_IP, 53, sport=40001) in ("a", "b")


def test_a_service_without_endpoints_refuses_at_once(lab: Lab):
    lab.set_services({"empty": (EMPTY_IP, [])})
    start = time.monotonic()
    assert lab.ask("tcp", EMPTY_IP, 80) == "ConnectionRefusedError"  # TCP reset
    assert lab.ask("udp", EMPTY_IP, 53, sport=40002) == "ConnectionRefusedError"  # ICMP
    assert time.monotonic() - start < 5


def test_a_partial_sync_moves_a_udp_flow_to_the_new_endpoint(lab: Lab):
    lab.set_services({"dns": (DNS_IP, ["a"])})
    assert lab.ask("udp", DNS_IP, 53, sport=40003) == "a"
    synced = lab.set_services({"dns": (DNS_IP, ["b"])})
    assert not synced.full and synced.flushed >= 1  # the flow to a was deleted
    assert lab.ask("udp", DNS_IP, 53, sport=40003) == "b"  # same 5-tuple, new endpoint
    assert lab.ask("tcp", DNS_IP, 80) == f"b {CLIENT}"


def test_partial_syncs_add_and_remove_services_of_every_size(lab: Lab):
    """Each change goes in as a patch against the table the kernel holds (new
    random-<n> and pick-<i> chains, endpoints-<i> maps coming and going)."""
    assert lab.set_services({"web": (WEB_IP, ["a"])}).full
    for change in ({"web": (WEB_IP, ["a", "b"])}, {"dns": (DNS_IP, ["b"])},
                   {"empty": (EMPTY_IP, [])}, {"web": (WEB_IP, ["b"])},
                   {"empty": (EMPTY_IP, ["a", "b"])}, {"dns": (DNS_IP, [])}):
        assert not lab.set_services(change).full  # a patch, accepted by nft
    assert lab.ask("tcp", WEB_IP, 80) == f"b {CLIENT}"
    assert {lab.ask("tcp", EMPTY_IP, 80) for _ in range(16)} == {f"a {CLIENT}", f"b {CLIENT}"}
    assert lab.ask("tcp", DNS_IP, 80) == "ConnectionRefusedError"
    before, after = lab.tracker.update({("default", "empty"): (None, []),
                                        ("default", "web"): (None, [])})
    lab.applier.patch(before, after)  # no Service with endpoints is left
    listing = lab.run_in_node(["nft", "list", "table", "ip", "kwire-proxy"],
                              capture_output=True, text=True, check=True).stdout
    assert "map endpoints-" not in listing and "chain pick-" not in listing
    assert "10.96.0.53 . tcp . 80 : goto reject-chain" in listing


def test_a_pod_reaches_itself_through_its_service(lab: Lab):
    lab.set_services({"web": (WEB_IP, ["a"])})
    # hairpin: masqueraded, so a's answer goes back through the node, which un-NATs it
    assert lab.ask("tcp", WEB_IP, 80, frm="a") == "a 10.244.2.1"


def test_a_failed_patch_leaves_the_applier_out_of_sync_and_replace_recovers(lab: Lab):
    lab.set_services({"web": (WEB_IP, ["a"])})
    lab.run_in_node(["nft", "delete", "table", "ip", "kwire-proxy"], check=True)
    with pytest.raises(ProxyError):
        lab.set_services({"web": (WEB_IP, ["a", "b"])})
    assert not lab.applier.in_sync
    assert lab.set_services({"web": (WEB_IP, ["b"])}).full
    assert lab.ask("tcp", WEB_IP, 80) == f"b {CLIENT}"
