"""The node underlay for real: a bridge and two node namespaces of a throw-away cluster,
and the processes running in them.

Traffic goes only to addresses inside the namespaces this test creates (and the bridge it
creates), one bounded ping at a time; every test tears its cluster down in a finally and
checks that no namespace, veth or bridge is left."""
import ipaddress
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from kwire.cluster.agents import NETNS_DIR, namespace_pids, terminate
from kwire.cluster.config import (ClusterConfig, ConfigError, check_host_routes,
                                  choose_pod_cidr, host_routes)
from kwire.cluster.nodes import UnderlayError, apply, plan_underlay, remove_node, teardown
from kwire.controllers.routes import HostRouteTable, Route, RoutePlan, ours

PING = (["ping"] if shutil.which("ping")
        else ["busybox", "ping"] if shutil.which("busybox") else None)
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces, veths, bridges"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="missing ip: apt-get install iproute2"),
    pytest.mark.skipif(PING is None,
                       reason="missing ping: apt-get install iputils-ping or busybox-static"),
]


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)


def ping(address: str, netns: str | None = None) -> bool:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return run(*prefix, *PING, "-c1", "-W1", address).returncode == 0


def netns_list() -> set[str]:
    return {line.split()[0] for line in run("ip", "netns", "list").stdout.splitlines() if line}


def link_names() -> set[str]:
    return {line.split()[0].split("@")[0] for line in run("ip", "-br", "link").stdout.splitlines()}


def assert_gone(plan) -> None:
    assert not {ns for ns in netns_list() if ns.startswith(plan.netns_prefix)}
    assert not link_names() & ({plan.bridge} | {n.host_ifname for n in plan.nodes})


@pytest.fixture
def config():
    """A cluster with a unique name on an underlay and a pod range no host route touches."""
    name = f"kwt-{uuid.uuid4().hex[:8]}"
    routes = host_routes()
    for third in range(240, 256):
        config = ClusterConfig(name=name, underlay_cidr=f"172.31.{third}.0/24",
                               state_dir=Path("/nonexistent"))
        try:
            check_host_routes(config, routes, keys=("underlay_cidr",))
            config = replace(config, pod_cidr=choose_pod_cidr(config, routes, [],
                                                              pool=("10.254.0.0/15",)))
        except ConfigError:
            continue
        yield config
        return
    pytest.skip("no free 172.31.240-255.0/24 underlay or 10.254-255.0.0/16 pod range here")


def test_two_nodes_reach_each_other_and_the_host(config):
    plan = plan_underlay(config, ["node1", "node2"])
    try:
        apply(plan)
        n1, n2 = plan.nodes
        assert {n1.netns, n2.netns} <= netns_list()
        bridge = run("ip", "-br", "addr", "show", "dev", plan.bridge).stdout.split()
        assert bridge[1] == "UP" and plan.bridge_address in bridge
        for n in plan.nodes:
            host = run("ip", "-d", "link", "show", "dev", n.host_ifname).stdout
            assert f"master {plan.bridge}" in host and "veth" in host and "mtu 1500" in host
            inner = run("ip", "-n", n.netns, "-br", "addr", "show", "dev", "eth0").stdout.split()
            assert inner[1] == "UP" and n.address in inner
            route = run("ip", "-n", n.netns, "route", "show", "default").stdout
            assert route.startswith(f"default via {n.gateway} dev eth0")
            assert "UP" in run("ip", "-n", n.netns, "-br", "link", "show", "dev", "lo").stdout
        # The whole pod range goes onto the bridge, never out of a real interface.
        assert run("ip", "route", "show", "exact", config.pod_cidr).stdout.split() == [
            config.pod_cidr, "dev", plan.bridge, "proto", "75", "scope", "link"]
        knob = Path(f"/proc/sys/net/ipv4/conf/{plan.bridge}/forwarding")
        assert knob.read_text() == "0\n"
        knob.write_text("1\n")  # as a global ip_forward=1 would do: apply turns it off again
        assert apply(plan) == [["write", str(knob), "0"]] and knob.read_text() == "0\n"

        addr = lambda n: str(ipaddress.ip_interface(n.address).ip)  # noqa: E731
        assert ping(addr(n2), netns=n1.netns)
        assert ping(n1.gateway, netns=n1.netns)
        assert ping(addr(n1), netns=n2.netns)
        assert ping(addr(n1)) and ping(addr(n2))

        assert apply(plan) == []

        bigger = plan_underlay(config, ["node1", "node2", "node3"])
        changes = apply(bigger)
        n3 = bigger.node("node3")
        assert changes and all(n3.netns in c or n3.host_ifname in c for c in changes)
        assert ping(addr(n3), netns=n1.netns)
        assert apply(bigger) == []

        remove_node(bigger, "node3")
        assert n3.netns not in netns_list() and n3.host_ifname not in link_names()
        assert ping(addr(n2), netns=n1.netns)
        assert apply(plan) == []
    finally:
        teardown(plan_underlay(config, ["node1", "node2", "node3"]))
    assert_gone(plan_underlay(config, ["node1", "node2", "node3"]))


def test_apply_repairs_and_teardown_tolerates_partial_state(config):
    plan = plan_underlay(config, ["node1", "node2"])
    n1, n2 = plan.nodes
    try:
        apply(plan)
        run("ip", "netns", "del", n1.netns)  # takes node1's veth pair with it
        changes = apply(plan)
        assert changes and all(n1.netns in c or n1.host_ifname in c for c in changes)
        assert ping(str(ipaddress.ip_interface(n2.address).ip), netns=n1.netns)

        # A plan that no longer lists node2 still tears it down (by prefix and alias).
        run("ip", "link", "del", "dev", plan.bridge)
        teardown(plan_underlay(config, []))
        assert_gone(plan)
        assert teardown(plan) == []
    finally:
        teardown(plan)
    assert_gone(plan)


def test_foreign_interface_with_our_name_is_refused_and_kept(config):
    plan = plan_underlay(config, ["node1"])
    try:
        assert run("ip", "link", "add", plan.bridge, "type", "bridge").returncode == 0  # no alias
        with pytest.raises(UnderlayError, match="refusing to touch it"):
            apply(plan)
        teardown(plan)
        assert plan.bridge in link_names()
    finally:
        run("ip", "link", "del", "dev", plan.bridge)
        teardown(plan)
    assert_gone(plan)


def test_a_foreign_route_to_the_pod_range_is_refused_and_kept(config):
    plan = plan_underlay(config, ["node1"])
    try:
        assert run("ip", "route", "add", "blackhole", config.pod_cidr).returncode == 0
        with pytest.raises(UnderlayError, match=f"route to the pod range {config.pod_cidr} "
                                                f"that does not go through {plan.bridge}"):
            apply(plan)
        assert run("ip", "route", "show", "exact", config.pod_cidr).stdout.split() == [
            "blackhole", config.pod_cidr]
    finally:
        run("ip", "route", "del", "blackhole", config.pod_cidr)
        teardown(plan)
    assert_gone(plan)


def test_processes_in_a_node_namespace_are_found_and_terminated(config):
    """What `kwire down` relies on to stop whatever runs in a node, even a process that
    ignores SIGTERM."""
    plan = plan_underlay(config, ["node1"])
    netns = plan.nodes[0].netns
    stubborn = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)")
    procs: list[subprocess.Popen] = []
    try:
        apply(plan)
        for code in ("import time; print('ready', flush=True); time.sleep(60)", stubborn):
            procs.append(subprocess.Popen(
                ["nsenter", f"--net={NETNS_DIR / netns}", "--", sys.executable, "-c", code],
                stdout=subprocess.PIPE, text=True, start_new_session=True))
            assert procs[-1].stdout.readline() == "ready\n"
        host = subprocess.Popen(["sleep", "60"])
        procs.append(host)
        found = namespace_pids(netns)
        assert sorted(found) == sorted(p.pid for p in procs[:2])
        assert namespace_pids(f"{netns}-missing") == []

        started = time.monotonic()
        terminate(found, grace=0.5)
        # The stubborn one outlived SIGTERM: only SIGKILL after the grace ended it.
        assert 0.5 <= time.monotonic() - started < 5
        assert not any(Path(f"/proc/{pid}").exists() for pid in found)  # and reaped
        assert host.poll() is None
    finally:
        for p in procs:
            p.kill()
            p.wait()
        teardown(plan)
    assert_gone(plan)


def test_host_reaches_a_pod_behind_a_node_through_a_kwire_route(config):
    """What the route controller relies on: a node namespace forwards, and a host route
    via the node's underlay address reaches a pod behind it; the route goes with the
    bridge, as does the pod range's own route onto the bridge."""
    plan = plan_underlay(config, ["node1"])
    node = plan.nodes[0]
    pod_cidr = next(ipaddress.ip_network(config.pod_cidr).subnets(new_prefix=24))
    pod_ns = f"{plan.netns_prefix}pod"  # teardown() removes it with the nodes
    gateway, pod_ip = (str(pod_cidr.network_address + i) for i in (1, 2))
    route = Route(str(pod_cidr), str(ipaddress.ip_interface(node.address).ip))
    table = HostRouteTable()
    try:
        apply(plan)
        forwarding = run("ip", "netns", "exec", node.netns, "cat",
                         "/proc/sys/net/ipv4/ip_forward")
        assert forwarding.stdout == "1\n"
        # A pod: a namespace on a veth into the node, its default route via the node.
        for cmd in (["netns", "add", pod_ns],
                    ["-n", node.netns, "link", "add", "kwpod0", "type", "veth", "peer", "name",
                     "eth0", "netns", pod_ns],
                    ["-n", node.netns, "addr", "add", f"{gateway}/24", "dev", "kwpod0"],
                    ["-n", node.netns, "link", "set", "kwpod0", "up"],
                    ["-n", pod_ns, "addr", "add", f"{pod_ip}/24", "dev", "eth0"],
                    ["-n", pod_ns, "link", "set", "eth0", "up"],
                    ["-n", pod_ns, "route", "add", "default", "via", gateway]):
            assert run("ip", *cmd).returncode == 0, cmd

        table.apply(RoutePlan(replace=(route,)), plan.bridge)
        assert ours(table.routes(), plan.bridge) == [route]
        assert ping(pod_ip)
        table.apply(RoutePlan(delete=(route,)), plan.bridge)
        assert ours(table.routes(), plan.bridge) == []

        table.apply(RoutePlan(replace=(route,)), plan.bridge)
        teardown(plan)
        assert not [r for r in table.routes() if r.dst in (route.dst, config.pod_cidr)]
    finally:
        teardown(plan)
    assert_gone(plan)
