"""Host reachability of pod IPs, end to end: the route controller gives the host one route
per Node (its pod /24 via its underlay address, on the cluster's bridge), the host fetches
an nginx pod by its IP, `kwire node rm` takes a node away with its Node, pods, route,
namespace and veth while the other node carries on, `kwire node add` adds a new one, and
clusters started at once get pod and service ranges of their own. The service range, a
LoadBalancer Service's address from the pool and an externalIP of the underlay are routed
into the bridge via a Ready node (and move when it goes); an externalIP elsewhere is not.

Every fetch goes to a pod of a cluster this test started, and only once `ip route get`
says the host sends it into that cluster's bridge. Service addresses get no packets here
(only `ip route get`, which sends none)."""
from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import Cluster, kwire_bin, running_cluster, wait_for
from kwire.cluster.nodes import ROUTE_PROTOCOL, bridge_name, host_veth_name

pytestmark = [
    pytest.mark.root, pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: node namespaces and routes"),
]

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PROTO = str(ROUTE_PROTOCOL)

def host_routes() -> list[dict]:
    """The host's main table, each destination with its prefix length (`ip` leaves out a
    /32's)."""
    out = subprocess.run(["ip", "-N", "-j", "-4", "route", "show", "table", "main"],
                         capture_output=True, text=True, check=True).stdout
    return [{**r, "dst": r["dst"] if r["dst"] == "default" else
             ipaddress.ip_network(r["dst"]).with_prefixlen} for r in json.loads(out)]


def node_routes(bridge: str) -> dict[str, str]:
    """kwire's routes via a node on `bridge` to a node's pod /24: pod range -> node address."""
    return {dst: gw for dst, gw in via_routes(bridge).items() if dst.endswith("/24")}


def via_routes(bridge: str) -> dict[str, str]:
    """kwire's routes via a node on `bridge`: destination -> node address."""
    return {r["dst"]: r["gateway"] for r in host_routes()
            if r.get("dev") == bridge and r.get("protocol") == PROTO and r.get("gateway")}


def kwire_routes(bridge: str, *ranges: str) -> list[dict]:
    """kwire's routes (protocol 75) into any of `ranges` on `bridge` or on no device at
    all (an unreachable route, say)."""
    nets = [ipaddress.ip_network(r) for r in ranges]
    return [r for r in host_routes() if r.get("protocol") == PROTO and r["dst"] != "default"
            and r.get("dev") in (bridge, None)
            and any(ipaddress.ip_network(r["dst"]).overlaps(n) for n in nets)]


def route_get(ip: str) -> dict:
    """Where the host would send a packet to `ip` (`ip route get` sends nothing)."""
    return json.loads(subprocess.run(["ip", "-N", "-j", "route", "get", ip], capture_output=True,
                                     text=True, check=True).stdout)[0]


def wanted_routes(c: Cluster) -> dict[str, str]:
    """What the Nodes call for: podCIDR -> InternalIP."""
    return {n["spec"]["podCIDR"]: next(a["address"] for a in n["status"]["addresses"]
                                       if a["type"] == "InternalIP")
            for n in c.kubectl_json("get", "nodes")["items"] if n["spec"].get("podCIDR")}


def fetch(bridge: str, ip: str) -> str:
    route = json.loads(subprocess.run(["ip", "-j", "route", "get", ip], capture_output=True,
                                      text=True, check=True).stdout)
    assert route[0]["dev"] == bridge, f"{ip} would leave through {route[0]['dev']}"
    with NO_PROXY.open(f"http://{ip}/", timeout=5) as resp:
        assert resp.status == 200
        return resp.read().decode()


def nginx(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "nginx", "image": "nginx:alpine",
                                     "ports": [{"containerPort": 80}]}]}}


def netns_list() -> list[str]:
    return subprocess.run(["ip", "netns", "list"], capture_output=True,
                          text=True).stdout.split()


def test_host_fetches_pods_by_ip_and_node_rm_takes_a_node_away(tmp_path):
    with running_cluster("routes", tmp_path, nodes=2) as c:
        config = yaml.safe_load((c.state_dir / "config.yaml").read_text())
        underlay = ipaddress.ip_network(config["underlay_cidr"])
        bridge = bridge_name(c.name)
        first, second = f"{c.name}-worker", f"{c.name}-worker2"

        wanted = wanted_routes(c)
        assert len(wanted) == 2
        wait_for(lambda: node_routes(bridge) == wanted, 20, "a host route per node")
        assert {"dst": config["pod_cidr"], "dev": bridge, "protocol": str(ROUTE_PROTOCOL)}.items() \
            <= next(r for r in host_routes() if r["dst"] == config["pod_cidr"]).items()
        for node in (first, second):
            forwarding = subprocess.run(["ip", "netns", "exec", f"kwire-{c.name}_{node}", "cat",
                                         "/proc/sys/net/ipv4/ip_forward"],
                                        capture_output=True, text=True, check=True).stdout
            assert forwarding == "1\n", f"{node} does not forward"

        for name, node in (("web1", first), ("web2", second)):
            c.apply(nginx(name, node))
        c.kubectl("wait", "--for=condition=Ready", "pod/web1", "pod/web2", "--timeout=60s",
                  timeout=70)
        pods = {p["metadata"]["name"]: p for p in c.kubectl_json("get", "pods")["items"]}
        cidr_of = {n["metadata"]["name"]: n["spec"]["podCIDR"]
                   for n in c.kubectl_json("get", "nodes")["items"]}
        ips = {}
        for name, node in (("web1", first), ("web2", second)):
            ips[name] = pods[name]["status"]["podIP"]
            assert ipaddress.ip_address(ips[name]) in ipaddress.ip_network(cidr_of[node])
            assert "Welcome to nginx" in fetch(bridge, ips[name])

        node_dir = c.state_dir / "nodes" / second
        assert node_dir.is_dir() and f"kwire-{c.name}_{second}" in netns_list()
        r = c.kwire("node", "rm", second, "--name", c.name)
        assert f"Removed node {second} from cluster {c.name}" in r.stdout
        assert [n["metadata"]["name"] for n in c.kubectl_json("get", "nodes")["items"]] == [first]
        gone = c.kubectl("get", "pod", "web2", check=False)
        assert gone.returncode == 1 and "NotFound" in gone.stderr
        wait_for(lambda: node_routes(bridge) == {cidr_of[first]: wanted_routes(c)[cidr_of[first]]},
                 20, "the removed node's host route gone")
        assert f"kwire-{c.name}_{second}" not in netns_list()
        assert not Path(f"/sys/class/net/{host_veth_name(c.name, second)}").exists()
        assert not node_dir.exists()
        assert (c.state_dir / "nodes.list").read_text() == f"{first}\n{second} removed\n"
        # The other node carries on.
        assert "Welcome to nginx" in fetch(bridge, ips["web1"])
        status = c.kwire("status", "--name", c.name).stdout
        assert first in status and second not in status
        again = c.kwire("node", "rm", second, "--name", c.name)
        assert f"Finished removing node {second}" in again.stdout
        unknown = c.kwire("node", "rm", "nope", "--name", c.name, check=False)
        assert unknown.returncode == 1 and "has no node 'nope'" in unknown.stderr

        # A new node takes a new name and address: the removed one's stay unused.
        r = c.kwire("node", "add", "--name", c.name, timeout=90)
        third = f"{c.name}-worker3"
        assert f"Node {third} is Ready: {underlay.network_address + 4}" in r.stdout
        wait_for(lambda: len(node_routes(bridge)) == 2 and node_routes(bridge) == wanted_routes(c),
                 20, "a host route for the new node")
        refused = c.kwire("up", "--name", c.name, "--nodes", "1", check=False)
        assert refused.returncode == 1 and "kwire node rm" in refused.stderr
    assert not [r for r in host_routes() if r.get("dev") == bridge
                or r["dst"] == config["pod_cidr"]]


def test_clusters_started_at_once_get_their_own_pod_ranges(tmp_path):
    """Even from two state roots, where neither sees the other's saved config: the pod
    range routed onto the bridge under the host-wide lock tells them apart."""
    clusters = [Cluster(f"podr-{uuid.uuid4().hex[:6]}", tmp_path / root) for root in "ab"]
    for c in clusters:
        c.tmp.mkdir()
    try:
        ups = [subprocess.Popen([kwire_bin(), "up", "--name", c.name, "--nodes", "0"],
                                env=c.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for c in clusters]
        for p in ups:
            out = p.communicate(timeout=60)[0]
            assert p.returncode == 0, out
        configs = [yaml.safe_load((c.state_dir / "config.yaml").read_text())
                   for c in clusters]
        ranges = [config["pod_cidr"] for config in configs]
        assert ranges[0] != ranges[1]
        for c, cidr in zip(clusters, ranges):
            net = ipaddress.ip_network(cidr)
            assert net.prefixlen == 16 and net.subnet_of(ipaddress.ip_network("10.240.0.0/12"))
            assert net.network_address >= ipaddress.ip_address("10.244.0.0")
            route = next(r for r in host_routes() if r["dst"] == cidr)
            assert route["dev"] == bridge_name(c.name)
        # Service ranges of their own too, each on its bridge (no node: no gateway).
        services = [config["service_cidr"] for config in configs]
        assert services[0] != services[1]
        for c, config in zip(clusters, configs):
            net = ipaddress.ip_network(config["service_cidr"])
            assert net.prefixlen == 16 and net.subnet_of(ipaddress.ip_network("10.96.0.0/12"))
            assert config["cluster_dns"] == str(net.network_address + 10)
            route = next(r for r in host_routes() if r["dst"] == str(net))
            assert (route["dev"], route.get("gateway"), route["protocol"]) == \
                (bridge_name(c.name), None, PROTO)
    finally:
        for c in clusters:
            c.down()
    for c, config in zip(clusters, configs):
        assert not kwire_routes(bridge_name(c.name), *(config[key] for key in (
            "pod_cidr", "service_cidr", "underlay_cidr")))


def test_service_range_and_service_addresses_are_routed_via_a_ready_node(tmp_path):
    with running_cluster("svcr", tmp_path, nodes=2) as c:
        config = yaml.safe_load((c.state_dir / "config.yaml").read_text())
        service_cidr = ipaddress.ip_network(config["service_cidr"])
        underlay = ipaddress.ip_network(config["underlay_cidr"])
        pool = ipaddress.ip_network(f"{underlay.network_address + 192}/26")
        assert service_cidr.prefixlen == 16 and \
            service_cidr.subnet_of(ipaddress.ip_network("10.96.0.0/12"))
        assert config["cluster_dns"] == str(service_cidr.network_address + 10)
        kubernetes = c.kubectl_json("get", "service", "kubernetes")["spec"]["clusterIP"]
        assert kubernetes == str(service_cidr.network_address + 1)
        bridge = bridge_name(c.name)
        first, second = (str(underlay.network_address + i) for i in (2, 3))
        wait_for(lambda: via_routes(bridge).get(str(service_cidr)) == first, 20,
                 "the service range via the first node")
        assert route_get(kubernetes)["dev"] == bridge

        c.kubectl("create", "service", "loadbalancer", "web", "--tcp=80:80")
        c.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
                 "spec": {"ports": [{"port": 80}],
                          "externalIPs": [str(underlay.network_address + 150), "203.0.113.7"]}})

        def external_ip() -> str:
            row = c.kubectl("get", "svc", "web", "--no-headers").stdout.split()
            return row[3] if row[3] not in ("<pending>", "<none>") else ""
        lb_ip = wait_for(external_ip, 10, "an EXTERNAL-IP for the LoadBalancer Service")
        assert ipaddress.ip_address(lb_ip) in pool
        inside = f"{underlay.network_address + 150}/32"
        wait_for(lambda: {f"{lb_ip}/32", inside} <= set(via_routes(bridge)), 20,
                 "host routes to the Services' addresses")
        assert via_routes(bridge)[f"{lb_ip}/32"] == first
        assert route_get(lb_ip)["dev"] == bridge
        # Not the cluster's address: kwire routes nothing to it, and the warning says why.
        assert not kwire_routes(bridge, "203.0.113.7/32")
        assert route_get("203.0.113.7").get("dev") != bridge
        assert "externalIP 203.0.113.7 is outside the cluster's underlay" in \
            (c.state_dir / "server.log").read_text()
        assert "EnsuredLoadBalancer" in {e["reason"] for e in c.kubectl_json("get", "events")["items"]
                                         if e["involvedObject"]["name"] == "web"}

        # The first node goes: the service range and the addresses move to the second.
        c.kwire("node", "rm", f"{c.name}-worker", "--name", c.name)
        wait_for(lambda: via_routes(bridge).get(str(service_cidr)) == second
                 and via_routes(bridge).get(f"{lb_ip}/32") == second, 20,
                 "the routes via the remaining node")
        # The Service goes (its finalizer does not hold it up), and its route with it.
        c.kubectl("delete", "service", "web", "--timeout=20s", timeout=30)
        wait_for(lambda: f"{lb_ip}/32" not in via_routes(bridge), 20, "the /32 route gone")
    ranges = (config["pod_cidr"], config["service_cidr"], config["underlay_cidr"])
    assert not kwire_routes(bridge, *ranges), "kwire down left routes behind"
