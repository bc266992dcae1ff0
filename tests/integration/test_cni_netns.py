"""The CNI invoker and kwire-cni against the real reference plugins, in network
namespaces this test creates: a "node" namespace (where the plugins run, as the
agent runs inside its node's namespace, so cni0 and the host veths land there)
and pod namespaces. The invoker runs in a fresh process per operation, so every
DEL/CHECK/GC also shows that the result cache survives an agent restart.

Traffic goes only between these namespaces (bounded TCP connects); every test
deletes its namespaces and state dir in a finally, and checks they are gone."""
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from kwire.cni import netconf
from kwire.cni.invoke import default_bin_dirs

KWIRE_CNI = Path(sys.executable).parent / "kwire-cni"
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="missing ip: apt-get install iproute2"),
    pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists() and not Path("/opt/cni/bin/bridge").exists(),
                       reason="missing CNI plugins: apt-get install containernetworking-plugins"),
]
SUBNET = "10.244.250.0/24"
GATEWAY = "10.244.250.1"
MTU = 1450

INVOKE = r"""
import json, sys
from kwire.cni.invoke import Attachment, CniError, CniNetwork, default_bin_dirs
req = json.loads(sys.argv[1])
try:
    net = CniNetwork.load(req["conf_dir"], default_bin_dirs(), req["cache_dir"])
    att = Attachment(**req["att"]) if req.get("att") else None
    op, out = req["op"], None
    if op == "add":
        result = net.add(att, req.get("runtime_config"))
        out = {"data": result.data, "pod_ips": result.pod_ips(att.ifname)}
    elif op == "del":
        net.delete(att)
    elif op == "check":
        net.check(att)
    elif op == "status":
        net.status()
    elif op == "gc":
        out = [c.container_id for c in net.gc([Attachment(**a) for a in req["valid"]])]
    print(json.dumps({"network": net.name, "out": out}))
except CniError as e:
    print(json.dumps({"error": str(e), "code": e.code}))
"""

SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
s.settimeout(20)
conn, peer = s.accept()
conn.sendall(b"hello from the server")
conn.close()
print(peer[0], flush=True)
"""

CLIENT = r"""
import socket, sys, time
for attempt in range(20):
    try:
        with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
            print(s.recv(64).decode())
            break
    except OSError:
        time.sleep(0.25)
else:
    sys.exit("no connection")
"""


def run(*cmd: str, input: str | None = None, env: dict | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, input=input, env=env, timeout=timeout,
                          check=False)


def netns_names() -> set[str]:
    return {line.split()[0] for line in run("ip", "netns", "list").stdout.splitlines() if line}


class Node:
    """A node namespace with kwire's CNI config, and pod namespaces on it."""

    def __init__(self, prefix: str, state: Path):
        self.prefix, self.state = prefix, state
        self.netns = f"{prefix}-node"
        self.cni_dir = state / "cni"
        self.cache_dir = self.cni_dir / netconf.CACHE_DIR
        self.pods: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def configure(self, delegate: str = "bridge") -> Path:
        return netconf.write_node_config(self.cni_dir, SUBNET, MTU, delegate)

    @property
    def conf_dir(self) -> Path:
        return self.cni_dir / netconf.CONF_DIR

    def pod(self, index: int) -> dict:
        """A fresh pod namespace; returns its Attachment's fields."""
        name = f"{self.prefix}-p{index}"
        assert run("ip", "netns", "add", name).returncode == 0
        self.pods.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        return {"container_id": f"{self.prefix[-6:]}p{index}", "netns": f"/run/netns/{name}",
                "ifname": "eth0", "pod_namespace": "default", "pod_name": f"pod{index}", "pod_uid": f"uid-{index}"}

    def invoke(self, op: str, att: dict | None = None, **req) -> dict:
        """One invoker operation in a new process in the node namespace."""
        req = {"op": op, "att": att, "conf_dir": str(self.conf_dir), "cache_dir": str(self.cache_dir), **req}
        proc = run("ip", "netns", "exec", self.netns, sys.executable, "-c", INVOKE, json.dumps(req))
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def ok(self, op: str, att: dict | None = None, **req):
        answer = self.invoke(op, att, **req)
        assert "error" not in answer, answer["error"]
        return answer["out"]

    def plugin(self, command: str, conf: dict, att: dict | None = None) -> tuple[int, dict | None]:
        """kwire-cni itself, executed in the node namespace as a runtime would."""
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin"), "CNI_COMMAND": command,
               "CNI_PATH": os.pathsep.join(default_bin_dirs())}
        if att:
            env.update(CNI_CONTAINERID=att["container_id"], CNI_NETNS=att["netns"], CNI_IFNAME=att["ifname"])
        proc = run("ip", "netns", "exec", self.netns, str(KWIRE_CNI), input=json.dumps(conf), env=env)
        return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None

    def exec(self, netns: str, *cmd: str) -> subprocess.CompletedProcess:
        return run("ip", "netns", "exec", netns, *cmd, timeout=30)

    def link(self, netns: str, name: str) -> dict | None:
        proc = run("ip", "-n", netns, "-j", "addr", "show", "dev", name)
        return json.loads(proc.stdout)[0] if proc.returncode == 0 else None

    def serve(self, pod_netns: str, port: int) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", pod_netns, sys.executable, "-c", SERVER, str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout.readline().strip() == "listening", proc.stderr.read()
        return proc

    def connect(self, netns: str, address: str, port: int) -> str:
        proc = self.exec(netns, sys.executable, "-c", CLIENT, address, str(port))
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def leases(self, network: str = netconf.NETWORK_NAME) -> set[str]:
        d = self.cni_dir / netconf.DATA_DIR / "ipam" / network
        return {p.name for p in d.iterdir() if p.name[0].isdigit()} if d.is_dir() else set()

    def cleanup(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)
        for name in [*self.pods, self.netns]:
            if name in netns_names():
                run("ip", "netns", "delete", name)
        shutil.rmtree(self.state, ignore_errors=True)


@pytest.fixture
def node():
    prefix = f"kwire-cnit-{uuid.uuid4().hex[:6]}"
    n = Node(prefix, Path(tempfile.mkdtemp(prefix="kwire-cnit-")))
    try:
        assert run("ip", "netns", "add", n.netns).returncode == 0
        run("ip", "-n", n.netns, "link", "set", "lo", "up")
        n.configure()
        yield n
    finally:
        n.cleanup()
        assert not {ns for ns in netns_names() if ns.startswith(prefix)}
        assert not n.state.exists()


def kwire_cni_conf(node: Node) -> dict:
    """kwire-cni's stdin for the default network, as the invoker would pass it."""
    conflist = json.loads((node.conf_dir / netconf.CONFLIST).read_text())
    return {**conflist["plugins"][0], "name": conflist["name"], "cniVersion": conflist["cniVersion"]}


@pytest.mark.skipif(not KWIRE_CNI.exists(), reason=f"{KWIRE_CNI} missing: pip install -e . (make venv)")
def test_kwire_cni_follows_the_spec_contract(node):
    conf = kwire_cni_conf(node)
    pod = node.pod(1)

    status, version = node.plugin("VERSION", {"cniVersion": "1.0.0"})
    assert status == 0 and version["supportedVersions"] == ["0.4.0", "1.0.0", "1.1.0"]

    status, result = node.plugin("ADD", conf, pod)
    assert status == 0, result
    (address,) = [ip["address"] for ip in result["ips"]]
    assert ipaddress.ip_interface(address) in ipaddress.ip_network(SUBNET)
    eth0 = node.link(pod["netns"].rsplit("/", 1)[1], "eth0")
    assert eth0 and eth0["mtu"] == MTU and address in {f"{a['local']}/{a['prefixlen']}" for a in eth0["addr_info"]}
    assert node.link(node.netns, netconf.BRIDGE)["addr_info"][0]["local"] == GATEWAY

    assert node.plugin("CHECK", {**conf, "prevResult": result}, pod) == (0, None)
    assert node.plugin("DEL", {**conf, "prevResult": result}, pod) == (0, None)
    assert node.link(pod["netns"].rsplit("/", 1)[1], "eth0") is None
    assert node.leases() == set()
    assert node.plugin("DEL", {**conf, "prevResult": result}, pod) == (0, None)
    never = {**pod, "container_id": "neveradded"}
    assert node.plugin("DEL", conf, never) == (0, None)
    status, error = node.plugin("CHECK", {**conf, "prevResult": result}, pod)
    assert status == 1 and error["code"] == 3


@pytest.mark.skipif(not KWIRE_CNI.exists(), reason=f"{KWIRE_CNI} missing: pip install -e . (make venv)")
@pytest.mark.parametrize("delegate", ["bridge", "ptp"])
def test_two_pods_reach_each_other_with_their_own_source_ip(node, delegate):
    node.configure(delegate)
    a, b = node.pod(1), node.pod(2)
    ip_a = node.ok("add", a)["pod_ips"][0]
    ip_b = node.ok("add", b)["pod_ips"][0]
    assert ip_a != ip_b
    assert {ipaddress.ip_address(ip_a), ipaddress.ip_address(ip_b)} <= set(ipaddress.ip_network(SUBNET).hosts())
    for pod in (a, b):
        assert node.link(pod["netns"].rsplit("/", 1)[1], "eth0")["mtu"] == MTU

    server = node.serve(a["netns"].rsplit("/", 1)[1], 8080)
    assert node.connect(b["netns"].rsplit("/", 1)[1], ip_a, 8080) == "hello from the server"
    assert server.stdout.readline().strip() == ip_b, "the server sees the client's pod IP: no NAT"

    node.ok("check", {"container_id": a["container_id"], "netns": a["netns"]})
    node.ok("del", a)
    node.ok("del", b)
    assert node.leases() == set()
    assert not list((node.cache_dir / "results").iterdir())


def test_a_lexically_earlier_conflist_replaces_kwires(node):
    other = {"cniVersion": "0.4.0", "name": "plainbridge",
             "plugins": [{"type": "bridge", "bridge": "kwbr0", "isGateway": True,
                          "ipam": {"type": "host-local", "dataDir": str(node.state / "ipam2"),
                                   "ranges": [[{"subnet": "10.99.250.0/24"}]]}}]}
    (node.conf_dir / "05-bridge.conflist").write_text(json.dumps(other))
    pod = node.pod(1)
    answer = node.invoke("add", pod)
    assert answer["network"] == "plainbridge"
    assert answer["out"]["data"]["cniVersion"] == "1.0.0", "the 0.4.0 result reaches the caller as 1.x"
    assert all("version" not in ip for ip in answer["out"]["data"]["ips"])
    assert ipaddress.ip_address(answer["out"]["pod_ips"][0]) in ipaddress.ip_network("10.99.250.0/24")
    assert node.link(node.netns, "kwbr0") is not None and node.link(node.netns, netconf.BRIDGE) is None
    cached = json.loads((node.cache_dir / "results" / f"plainbridge-{pod['container_id']}-eth0").read_text())
    assert cached["result"]["cniVersion"] == "0.4.0"
    node.ok("check", pod)
    node.ok("del", pod)
    assert node.link(pod["netns"].rsplit("/", 1)[1], "eth0") is None
    assert not (node.cache_dir / "results" / f"plainbridge-{pod['container_id']}-eth0").exists()


@pytest.mark.skipif(not KWIRE_CNI.exists(), reason=f"{KWIRE_CNI} missing: pip install -e . (make venv)")
@pytest.mark.skipif(shutil.which("iptables") is None, reason="portmap needs iptables: apt-get install iptables")
def test_host_port_and_a_del_after_a_restart_with_the_cached_port_mappings(node):
    pod = node.pod(1)
    mapping = {"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}
    ip = node.ok("add", pod, runtime_config={"portMappings": [mapping]})["pod_ips"][0]
    nat = node.exec(node.netns, "iptables", "-t", "nat", "-S").stdout
    assert "--dport 18080" in nat and f"{ip}:8080" in nat

    server = node.serve(pod["netns"].rsplit("/", 1)[1], 8080)
    assert node.connect(node.netns, GATEWAY, 18080) == "hello from the server"
    assert server.stdout.readline().strip() == GATEWAY

    # No CHECK here: portmap v1.1.1 checks an IPv6 chain for IPv4-only pods and fails.
    node.ok("del", {"container_id": pod["container_id"]})
    nat = node.exec(node.netns, "iptables", "-t", "nat", "-S").stdout
    assert "--dport 18080" not in nat, "DEL passed portmap the cached portMappings"
    assert node.link(pod["netns"].rsplit("/", 1)[1], "eth0") is None
    assert node.leases() == set() and not list((node.cache_dir / "results").iterdir())


@pytest.mark.skipif(not KWIRE_CNI.exists(), reason=f"{KWIRE_CNI} missing: pip install -e . (make venv)")
def test_gc_removes_attachments_that_are_not_valid(node):
    a, b = node.pod(1), node.pod(2)
    ip_a = node.ok("add", a)["pod_ips"][0]
    node.ok("add", b)
    assert len(node.leases()) == 2

    assert node.ok("gc", valid=[{"container_id": a["container_id"]}]) == [b["container_id"]]
    assert node.link(b["netns"].rsplit("/", 1)[1], "eth0") is None
    assert node.link(a["netns"].rsplit("/", 1)[1], "eth0") is not None
    assert node.leases() == {ip_a}
    assert [p.name for p in (node.cache_dir / "results").iterdir()] == [f"kwire-{a['container_id']}-eth0"]
    node.ok("del", a)


@pytest.mark.skipif(not KWIRE_CNI.exists(), reason=f"{KWIRE_CNI} missing: pip install -e . (make venv)")
def test_a_1_1_0_network_has_status_and_plugin_gc(node):
    kwire_cni = json.loads((node.conf_dir / netconf.CONFLIST).read_text())["plugins"][0]
    (node.conf_dir / "05-kwire11.conflist").write_text(
        json.dumps({"cniVersion": "1.1.0", "name": "kwire11", "plugins": [kwire_cni]}))
    node.ok("status")
    pod = node.pod(1)
    answer = node.invoke("add", pod)
    assert answer["network"] == "kwire11" and answer["out"]["data"]["cniVersion"] == "1.1.0"
    assert len(node.leases("kwire11")) == 1

    (node.cache_dir / "results" / f"kwire11-{pod['container_id']}-eth0").unlink()  # a lost cache
    assert node.ok("gc", valid=[]) == []
    assert node.leases("kwire11") == set(), "kwire-cni's GC released the address"
    assert node.link(pod["netns"].rsplit("/", 1)[1], "eth0") is None

    (node.cni_dir / netconf.SUBNET_FILE).unlink()
    answer = node.invoke("status")
    assert answer["code"] == 50 and "no subnet file" in answer["error"]
