"""The route controller: the pure plan (Nodes -> host routes, diffed against `ip -N -j
route` output), then the controller against the in-process fake API with a fake table."""
import asyncio
import json

from fake_api import FakeAPI, eventually

from kwire.client import Client, Informers
from kwire.cluster.nodes import ROUTE_PROTOCOL
from kwire.controllers.routes import (HostRoute, Route, RouteController, RoutePlan,
                                      desired_routes, ours, parse_routes, plan)

BRIDGE = "kw-0123456789ab"
POD_CIDR = "10.244.0.0/16"
UNDERLAY = "172.30.5.0/24"
PROTO = str(ROUTE_PROTOCOL)


def node(name: str, cidr: str | None = None, ip: str | None = None, *,
         cidrs: list[str] | None = None) -> dict:
    n = {"metadata": {"name": name}, "spec": {}, "status": {}}
    if cidr:
        n["spec"]["podCIDR"] = cidr
    if cidrs is not None:
        n["spec"]["podCIDRs"] = cidrs
    if ip:
        n["status"]["addresses"] = [{"type": "Hostname", "address": name},
                                    {"type": "InternalIP", "address": ip}]
    return n


def kernel(*routes: HostRoute) -> list[HostRoute]:
    """The host's default and uplink routes, the bridge's connected route and the pod
    range on the bridge (kwire.cluster.nodes), and `routes`."""
    return [HostRoute("default", "eth0", "192.0.2.1"),
            HostRoute("192.0.2.0/24", "eth0", None, "2"),
            HostRoute(UNDERLAY, BRIDGE, None, "2"),
            HostRoute(POD_CIDR, BRIDGE, None, str(ROUTE_PROTOCOL)), *routes]


def mine(dst: str, gateway: str) -> HostRoute:
    return HostRoute(dst, BRIDGE, gateway, PROTO)


# -- desired_routes ---------------------------------------------------------------------

def test_each_node_pod_range_via_its_internal_ip():
    nodes = [node("b", "10.244.1.0/24", "172.30.5.3"), node("a", "10.244.0.0/24", "172.30.5.2")]
    assert desired_routes(nodes, POD_CIDR, UNDERLAY) == (
        [Route("10.244.0.0/24", "172.30.5.2"), Route("10.244.1.0/24", "172.30.5.3")], [])


def test_nodes_not_ready_for_a_route_are_skipped_quietly():
    nodes = [node("no-cidr", ip="172.30.5.2"), node("no-ip", "10.244.1.0/24")]
    assert desired_routes(nodes, POD_CIDR, UNDERLAY) == ([], [])


def test_pod_cidrs_list_and_ipv6_ranges():
    n = node("a", ip="172.30.5.2", cidrs=["10.244.4.0/24", "fd00:10:244:4::/64"])
    assert desired_routes([n], POD_CIDR, UNDERLAY) == ([Route("10.244.4.0/24", "172.30.5.2")], [])


def test_nothing_is_routed_outside_the_pod_range_or_off_the_underlay():
    nodes = [
        node("outside", "0.0.0.0/1", "172.30.5.2"),
        node("remote", "10.244.2.0/24", "192.0.2.50"),
        node("host", "10.244.3.0/24", "172.30.5.1"),
        node("broadcast", "10.244.4.0/24", "172.30.5.255"),
        node("garbage", "10.244.5.0/24", "not-an-ip"),
        node("bad-cidr", "10.244.6.0/33", "172.30.5.6"),
    ]
    routes, problems = desired_routes(nodes, POD_CIDR, UNDERLAY)
    assert routes == []
    assert problems == [
        "node bad-cidr: pod CIDR '10.244.6.0/33' is not a network",
        "node broadcast: InternalIP 172.30.5.255 is not a node address of the underlay "
        "172.30.5.0/24; no host route to its pods",
        "node garbage: InternalIP 'not-an-ip' is not an IP address",
        "node host: InternalIP 172.30.5.1 is not a node address of the underlay "
        "172.30.5.0/24; no host route to its pods",
        "node outside: pod CIDR 0.0.0.0/1 is outside the cluster's pod range 10.244.0.0/16; "
        "not routed",
        "node remote: InternalIP 192.0.2.50 is not a node address of the underlay "
        "172.30.5.0/24; no host route to its pods",
    ]


def test_two_nodes_claiming_one_range_leave_it_to_the_first_by_name():
    nodes = [node("b", "10.244.1.0/24", "172.30.5.3"), node("a", "10.244.0.0/23", "172.30.5.2")]
    routes, problems = desired_routes(nodes, POD_CIDR, UNDERLAY)
    assert routes == [Route("10.244.0.0/23", "172.30.5.2")]
    assert problems == ["node b: pod CIDR 10.244.1.0/24 overlaps 10.244.0.0/23, already routed "
                        "via 172.30.5.2; not routed"]


# -- parsing and plan ---------------------------------------------------------------------

def test_parse_routes_of_ip_json_and_ours():
    text = json.dumps([
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0", "flags": []},
        {"dst": UNDERLAY, "dev": BRIDGE, "protocol": "2", "scope": "253",
         "prefsrc": "172.30.5.1", "flags": []},
        {"dst": "10.244.0.0/24", "gateway": "172.30.5.2", "dev": BRIDGE, "protocol": PROTO,
         "flags": []},
        {"dst": "10.244.1.0/24", "gateway": "172.30.5.3", "dev": BRIDGE, "protocol": "4",
         "flags": []},
        {"type": "blackhole", "dst": "10.9.0.0/16", "protocol": "4", "flags": []},
        {"dst": POD_CIDR, "dev": BRIDGE, "protocol": PROTO, "scope": "253", "flags": []},
    ])
    routes = parse_routes(text)
    assert routes[2] == mine("10.244.0.0/24", "172.30.5.2")
    assert routes[4] == HostRoute("10.9.0.0/16", None, None, "4")
    # Only kwire's protocol via a node on the bridge counts as ours: not a static route
    # there, nor the pod range's own route onto the bridge.
    assert ours(routes, BRIDGE) == [Route("10.244.0.0/24", "172.30.5.2")]
    assert ours(routes, "kw-other") == []
    assert parse_routes("") == []


def test_plan_adds_missing_keeps_present_and_deletes_stale_routes():
    existing = kernel(mine("10.244.0.0/24", "172.30.5.2"), mine("10.244.9.0/24", "172.30.5.9"))
    desired = [Route("10.244.0.0/24", "172.30.5.2"), Route("10.244.1.0/24", "172.30.5.3")]
    assert plan(desired, existing, BRIDGE) == RoutePlan(
        replace=(Route("10.244.1.0/24", "172.30.5.3"),),
        delete=(Route("10.244.9.0/24", "172.30.5.9"),))
    assert plan(desired, kernel(*(mine(r.dst, r.gateway) for r in desired)), BRIDGE) == \
        RoutePlan()
    assert plan([], existing, BRIDGE).delete == (Route("10.244.0.0/24", "172.30.5.2"),
                                                 Route("10.244.9.0/24", "172.30.5.9"))


def test_a_range_moving_to_another_gateway_is_replaced_not_deleted():
    existing = kernel(mine("10.244.0.0/24", "172.30.5.2"))
    assert plan([Route("10.244.0.0/24", "172.30.5.7")], existing, BRIDGE) == RoutePlan(
        replace=(Route("10.244.0.0/24", "172.30.5.7"),))


def test_routes_overlapping_a_host_route_off_the_bridge_are_refused():
    existing = kernel(
        HostRoute("10.244.0.0/16", "kw-otherclustr", "172.30.9.2", PROTO),  # another cluster
        HostRoute("10.244.128.0/17", None, None, "4"),  # a blackhole
        mine("10.244.0.0/24", "172.30.5.2"),  # already there: stays
    )
    desired = [Route("10.244.0.0/24", "172.30.5.2"), Route("10.244.1.0/24", "172.30.5.3")]
    p = plan(desired, existing, BRIDGE)
    assert (p.replace, p.delete) == ((), ())
    assert p.refused == ("not routing 10.244.1.0/24 via 172.30.5.3: it overlaps the host route "
                         "to 10.244.0.0/16 on kw-otherclustr, which does not go through "
                         f"{BRIDGE}",)
    p = plan([Route("10.244.200.0/24", "172.30.5.3")], existing, BRIDGE)
    assert p.refused == ("not routing 10.244.200.0/24 via 172.30.5.3: it overlaps the host "
                         "route to 10.244.0.0/16 on kw-otherclustr, which does not go through "
                         f"{BRIDGE}",)
    # The default route is no clash, nor is the bridge's own connected route.
    assert plan([Route("10.244.1.0/24", "172.30.5.3")], kernel(), BRIDGE).refused == ()


def test_a_refused_range_does_not_keep_a_stale_gateway():
    existing = kernel(HostRoute("10.244.0.0/16", "tun0", None, "4"),
                      mine("10.244.0.0/24", "172.30.5.2"))
    p = plan([Route("10.244.0.0/24", "172.30.5.7")], existing, BRIDGE)
    assert p.replace == () and len(p.refused) == 1
    assert p.delete == (Route("10.244.0.0/24", "172.30.5.2"),)


# -- the controller ----------------------------------------------------------------------

class FakeTable:
    """A host main table in memory; records what the controller applied."""

    def __init__(self, routes: list[HostRoute], bridge_exists: bool = True):
        self.table = list(routes)
        self.bridge_exists = bridge_exists
        self.applied: list[RoutePlan] = []

    def has_link(self, name: str) -> bool:
        return self.bridge_exists and name == BRIDGE

    def routes(self) -> list[HostRoute]:
        return list(self.table)

    def apply(self, route_plan: RoutePlan, bridge: str) -> None:
        self.applied.append(route_plan)
        gone = {r.dst for r in route_plan.delete} | {r.dst for r in route_plan.replace}
        self.table = [r for r in self.table if not (r.dev == bridge and r.dst in gone)]
        self.table += [mine(r.dst, r.gateway) for r in route_plan.replace]

    def mine(self) -> list[Route]:
        return ours(self.table, BRIDGE)


def run_controller(body, table: FakeTable):
    async def main():
        async with FakeAPI() as fake:
            async with Client(str(fake.server.make_url("")).rstrip("/")) as client:
                informers = Informers(client)
                controller = RouteController(client, informers, bridge=BRIDGE,
                                             pod_cidr=POD_CIDR, underlay_cidr=UNDERLAY,
                                             table=table)
                task = asyncio.create_task(controller.run())
                try:
                    await body(fake)
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                    await informers.stop()
    asyncio.run(main())


def test_controller_follows_nodes_and_repairs_deleted_routes(monkeypatch):
    monkeypatch.setattr("kwire.controllers.routes.RESYNC_PERIOD", 0.2)
    # A route left by an earlier run for a Node that is gone now.
    table = FakeTable(kernel(mine("10.244.7.0/24", "172.30.5.8")))

    async def body(fake):
        fake.put("v1", "nodes", node("a", "10.244.0.0/24", "172.30.5.2"))
        await eventually(lambda: table.mine() == [Route("10.244.0.0/24", "172.30.5.2")])
        fake.put("v1", "nodes", node("b", ip="172.30.5.3"))
        await asyncio.sleep(0.1)
        assert table.mine() == [Route("10.244.0.0/24", "172.30.5.2")]
        fake.put("v1", "nodes", node("b", "10.244.1.0/24", "172.30.5.3"))  # IPAM's patch
        await eventually(lambda: len(table.mine()) == 2)
        fake.remove("v1", "nodes", "a")
        await eventually(lambda: table.mine() == [Route("10.244.1.0/24", "172.30.5.3")])
        table.table = [r for r in table.table if r.dev != BRIDGE or r.protocol != PROTO]
        await eventually(lambda: table.mine() == [Route("10.244.1.0/24", "172.30.5.3")])

    run_controller(body, table)


def test_controller_without_its_bridge_changes_nothing(monkeypatch):
    monkeypatch.setattr("kwire.controllers.routes.RESYNC_PERIOD", 0.05)
    table = FakeTable(kernel(), bridge_exists=False)

    async def body(fake):
        fake.put("v1", "nodes", node("a", "10.244.0.0/24", "172.30.5.2"))
        await asyncio.sleep(0.3)
        assert table.applied == [] and table.mine() == []
        table.bridge_exists = True
        await eventually(lambda: table.mine() == [Route("10.244.0.0/24", "172.30.5.2")])

    run_controller(body, table)
