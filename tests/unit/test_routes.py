"""The route controller: the pure plan (Nodes, Services and EndpointSlices -> host routes,
diffed against `ip -N -j route` output), then the controller against the in-process fake
API with a fake table."""
import asyncio
import json

from fake_api import DEFAULT_RESOURCES, FakeAPI, eventually

from kwire.client import Client, Informers
from kwire.cluster.nodes import ROUTE_PROTOCOL
from kwire.cluster.config import ClusterConfig
from kwire.controllers.routes import (ClusterRanges, HostRoute, Route, RouteController,
                                      RoutePlan, desired_routes, ours, parse_routes, plan)

BRIDGE = "kw-0123456789ab"
POD_CIDR = "10.244.0.0/16"
UNDERLAY = "172.30.5.0/24"
SERVICE_CIDR = "10.96.0.0/16"
POOL = "172.30.5.192/26"
PROTO = str(ROUTE_PROTOCOL)
PODS_ONLY = ClusterRanges(POD_CIDR, UNDERLAY)
RANGES = ClusterRanges(POD_CIDR, UNDERLAY, SERVICE_CIDR, POOL)


def node(name: str, cidr: str | None = None, ip: str | None = None, *,
         cidrs: list[str] | None = None, ready: bool = True) -> dict:
    n = {"metadata": {"name": name}, "spec": {},
         "status": {"conditions": [{"type": "Ready", "status": str(ready)}]}}
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
    and service ranges on the bridge (kwire.cluster.nodes), and `routes`."""
    return [HostRoute("default", "eth0", "192.0.2.1"),
            HostRoute("192.0.2.0/24", "eth0", None, "2"),
            HostRoute(UNDERLAY, BRIDGE, None, "2"),
            HostRoute(POD_CIDR, BRIDGE, None, PROTO),
            HostRoute(SERVICE_CIDR, BRIDGE, None, PROTO), *routes]


def mine(dst: str, gateway: str) -> HostRoute:
    return HostRoute(dst, BRIDGE, gateway, PROTO)


# -- desired_routes ---------------------------------------------------------------------

def test_each_node_pod_range_via_its_internal_ip():
    nodes = [node("b", "10.244.1.0/24", "172.30.5.3"), node("a", "10.244.0.0/24", "172.30.5.2")]
    assert desired_routes(nodes, PODS_ONLY) == (
        [Route("10.244.0.0/24", "172.30.5.2"), Route("10.244.1.0/24", "172.30.5.3")], [])


def test_nodes_not_ready_for_a_route_are_skipped_quietly():
    nodes = [node("no-cidr", ip="172.30.5.2"), node("no-ip", "10.244.1.0/24")]
    assert desired_routes(nodes, PODS_ONLY) == ([], [])


def test_pod_cidrs_list_and_ipv6_ranges():
    n = node("a", ip="172.30.5.2", cidrs=["10.244.4.0/24", "fd00:10:244:4::/64"])
    assert desired_routes([n], PODS_ONLY) == ([Route("10.244.4.0/24", "172.30.5.2")], [])


def test_nothing_is_routed_outside_the_pod_range_or_off_the_underlay():
    nodes = [
        node("outside", "0.0.0.0/1", "172.30.5.2"),
        node("remote", "10.244.2.0/24", "192.0.2.50"),
        node("host", "10.244.3.0/24", "172.30.5.1"),
        node("broadcast", "10.244.4.0/24", "172.30.5.255"),
        node("garbage", "10.244.5.0/24", "not-an-ip"),
        node("bad-cidr", "10.244.6.0/33", "172.30.5.6"),
    ]
    routes, problems = desired_routes(nodes, PODS_ONLY)
    assert routes == []
    assert sorted(problems) == [
        "node bad-cidr: pod CIDR '10.244.6.0/33' is not a network",
        "node broadcast: InternalIP 172.30.5.255 is not a node address of the underlay "
        "172.30.5.0/24; no host route through it",
        "node garbage: InternalIP 'not-an-ip' is not an IP address",
        "node host: InternalIP 172.30.5.1 is not a node address of the underlay "
        "172.30.5.0/24; no host route through it",
        "node outside: pod CIDR 0.0.0.0/1 is outside the cluster's pod range 10.244.0.0/16; "
        "not routed",
        "node remote: InternalIP 192.0.2.50 is not a node address of the underlay "
        "172.30.5.0/24; no host route through it",
    ]


def test_two_nodes_claiming_one_range_leave_it_to_the_first_by_name():
    nodes = [node("b", "10.244.1.0/24", "172.30.5.3"), node("a", "10.244.0.0/23", "172.30.5.2")]
    routes, problems = desired_routes(nodes, PODS_ONLY)
    assert routes == [Route("10.244.0.0/23", "172.30.5.2")]
    assert problems == ["node b: pod CIDR 10.244.1.0/24 overlaps 10.244.0.0/23, already routed "
                        "via 172.30.5.2; not routed"]


def service(name: str, *, external_ips: list[str] = (), lb_ips: list[str] = (),
            type_: str = "ClusterIP", local: bool = False, namespace: str = "default") -> dict:
    spec = {"type": "LoadBalancer" if lb_ips else type_, "externalIPs": list(external_ips)}
    if local:
        spec["externalTrafficPolicy"] = "Local"
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec,
            "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}
                                                    for ip in lb_ips]}}}


def endpoint_slice(service_name: str, *endpoints: tuple[str, bool | None],
                   namespace: str = "default", name: str | None = None) -> dict:
    """(nodeName, ready) per endpoint; ready None leaves the condition unset."""
    return {"metadata": {"name": name or f"{service_name}-abcde", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [f"10.244.9.{i}"], "nodeName": node_name,
                           "conditions": {} if ready is None else {"ready": ready}}
                          for i, (node_name, ready) in enumerate(endpoints, 1)]}


NODES = [node("c", "10.244.2.0/24", "172.30.5.4"), node("b", "10.244.1.0/24", "172.30.5.3"),
         node("a", "10.244.0.0/24", "172.30.5.2", ready=False)]
POD_ROUTES = [Route("10.244.0.0/24", "172.30.5.2"), Route("10.244.1.0/24", "172.30.5.3"),
              Route("10.244.2.0/24", "172.30.5.4")]


def test_service_range_goes_via_the_first_ready_node_by_name():
    routes, problems = desired_routes(NODES, RANGES)
    assert problems == []
    # Node a is NotReady: it keeps its pod route, b takes the service range.
    assert routes == sorted([*POD_ROUTES, Route(SERVICE_CIDR, "172.30.5.3")])
    nodes = [n for n in NODES if n["metadata"]["name"] != "b"]
    assert Route(SERVICE_CIDR, "172.30.5.4") in desired_routes(nodes, RANGES)[0]
    # No Ready node: no route via a node (the plan falls back to the claim on the bridge).
    assert desired_routes(NODES[2:], RANGES)[0] == [Route("10.244.0.0/24", "172.30.5.2")]


def test_load_balancer_and_external_ips_of_the_cluster_get_a_host_route():
    services = [service("lb", lb_ips=["172.30.5.200"]),
                service("ext", external_ips=["172.30.5.50", "172.30.5.201"])]
    routes, problems = desired_routes(NODES, RANGES, services)
    assert problems == []
    assert [r for r in routes if r.dst.endswith("/32")] == [
        Route("172.30.5.200/32", "172.30.5.3"), Route("172.30.5.201/32", "172.30.5.3"),
        Route("172.30.5.50/32", "172.30.5.3")]
    # A pool outside the underlay is the cluster's too.
    outside = ClusterRanges(POD_CIDR, UNDERLAY, SERVICE_CIDR, "192.168.240.0/28")
    routes, _ = desired_routes(NODES, outside, [service("lb", lb_ips=["192.168.240.5"])])
    assert Route("192.168.240.5/32", "172.30.5.3") in routes


def test_addresses_that_are_not_the_clusters_own_are_never_routed():
    services = [service("dns", external_ips=["8.8.8.8", "203.0.113.7"]),
                service("host", external_ips=["172.30.5.1", "172.30.5.255", "172.30.5.0"]),
                service("node", external_ips=["172.30.5.4", "172.30.5.2"]),
                service("v6", external_ips=["fd00::1"]),
                service("gone", lb_ips=["172.30.5.210"], type_="ClusterIP")]
    services[-1]["spec"]["type"] = "ClusterIP"  # the LB status of a former LoadBalancer
    routes, problems = desired_routes(NODES, RANGES, services)
    assert [r for r in routes if r.dst.endswith("/32")] == []
    tail = (f"is outside the cluster's underlay {UNDERLAY} and load-balancer pool {POOL}, "
            "or a node's or the host's address; not routed from the host")
    assert problems == [f"service default/{name}: externalIP {ip} {tail}" for name, ip in (
        ("dns", "8.8.8.8"), ("dns", "203.0.113.7"), ("host", "172.30.5.1"),
        ("host", "172.30.5.255"), ("host", "172.30.5.0"), ("node", "172.30.5.4"),
        ("node", "172.30.5.2"))]


def test_local_policy_goes_via_a_ready_node_with_a_ready_endpoint():
    services = [service("web", lb_ips=["172.30.5.200"], local=True),
                service("idle", lb_ips=["172.30.5.201"], local=True)]
    slices = [endpoint_slice("web", ("b", False), ("c", None), ("a", True)),
              endpoint_slice("web", ("b", True), namespace="other"),
              endpoint_slice("idle", ("b", False))]
    routes, problems = desired_routes(NODES, RANGES, services, slices)
    # a has a ready endpoint but is NotReady; b's is not ready; c's counts as ready.
    assert [r for r in routes if r.dst.endswith("/32")] == [
        Route("172.30.5.200/32", "172.30.5.4")]
    assert problems == []


def test_an_address_two_services_use_goes_to_the_first():
    services = [service("b", external_ips=["172.30.5.60"]),
                service("a", lb_ips=["172.30.5.60"], local=True)]
    routes, problems = desired_routes(NODES, RANGES, services,
                                      [endpoint_slice("a", ("c", True))])
    assert Route("172.30.5.60/32", "172.30.5.4") in routes
    assert problems == ["service default/b: externalIP 172.30.5.60 is routed for service "
                        "default/a already"]


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
        {"dst": "172.30.5.200", "gateway": "172.30.5.2", "dev": BRIDGE, "protocol": PROTO,
         "flags": []},
    ])
    routes = parse_routes(text)
    assert routes[2] == mine("10.244.0.0/24", "172.30.5.2")
    assert routes[4] == HostRoute("10.9.0.0/16", None, None, "4")
    # Only kwire's protocol via a node on the bridge counts as ours: not a static route
    # there, nor the pod range's own route onto the bridge. A /32 gets its prefix length.
    assert ours(routes, BRIDGE) == [Route("10.244.0.0/24", "172.30.5.2"),
                                    Route("172.30.5.200/32", "172.30.5.2")]
    assert ours(routes, "kw-other") == []
    assert parse_routes("") == []


def test_plan_adds_missing_keeps_present_and_deletes_stale_routes():
    existing = kernel(mine("10.244.0.0/24", "172.30.5.2"), mine("10.244.9.0/24", "172.30.5.9"))
    desired = [Route("10.244.0.0/24", "172.30.5.2"), Route("10.244.1.0/24", "172.30.5.3")]
    assert plan(desired, existing, BRIDGE, RANGES.claims()) == RoutePlan(
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
    p = plan(desired, existing, BRIDGE, RANGES.claims())
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


def test_the_service_range_falls_back_to_the_bridge_without_a_ready_node():
    via = kernel(mine(SERVICE_CIDR, "172.30.5.3"))
    via = [r for r in via if (r.dst, r.gateway) != (SERVICE_CIDR, None)]
    # The via route replaces the claim (same destination), and the claim replaces it back.
    assert plan([], via, BRIDGE, RANGES.claims()) == RoutePlan(claim=(SERVICE_CIDR,))
    assert plan([Route(SERVICE_CIDR, "172.30.5.3")], via, BRIDGE, RANGES.claims()) == \
        RoutePlan()
    assert plan([Route(SERVICE_CIDR, "172.30.5.4")], kernel(), BRIDGE, RANGES.claims()) == \
        RoutePlan(replace=(Route(SERVICE_CIDR, "172.30.5.4"),))
    # A claim someone deleted comes back; a pool outside the underlay is claimed too.
    outside = ClusterRanges(POD_CIDR, UNDERLAY, SERVICE_CIDR, "192.168.240.0/28")
    assert outside.claims() == [POD_CIDR, SERVICE_CIDR, "192.168.240.0/28"]
    assert plan([], kernel()[:3], BRIDGE, outside.claims()).claim == tuple(outside.claims())
    assert ClusterRanges.of(ClusterConfig(underlay_cidr=UNDERLAY)) == RANGES
    # A claim that would shadow another interface's route is refused, and the range keeps
    # its route via a node rather than have none on the bridge.
    vpn = [*via, HostRoute("10.96.128.0/17", "tun0", None, "4")]
    assert plan([], vpn, BRIDGE, RANGES.claims()) == RoutePlan(refused=(
        f"not routing {SERVICE_CIDR} onto {BRIDGE}: it overlaps the host route to "
        "10.96.128.0/17 on tun0, which does not go through " + BRIDGE,))


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
        gone = {r.dst for r in (*route_plan.delete, *route_plan.replace)} | \
            set(route_plan.claim)
        self.table = [r for r in self.table if not (r.dev == bridge and r.dst in gone)]
        self.table += [mine(r.dst, r.gateway) for r in route_plan.replace]
        self.table += [HostRoute(dst, bridge, None, PROTO) for dst in route_plan.claim]

    def mine(self) -> list[Route]:
        return ours(self.table, BRIDGE)


RESOURCES = (*DEFAULT_RESOURCES, ("v1", "services", "Service", True),
             ("discovery.k8s.io/v1", "endpointslices", "EndpointSlice", True))


def run_controller(body, table: FakeTable, ranges: ClusterRanges = PODS_ONLY):
    async def main():
        async with FakeAPI(RESOURCES) as fake:
            async with Client(str(fake.server.make_url("")).rstrip("/")) as client:
                informers = Informers(client)
                controller = RouteController(client, informers, bridge=BRIDGE, ranges=ranges,
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
        # The pod range's own route onto the bridge came back too.
        assert HostRoute(POD_CIDR, BRIDGE, None, PROTO) in table.table

    run_controller(body, table)


def test_controller_moves_service_routes_with_readiness_and_endpoints(monkeypatch):
    monkeypatch.setattr("kwire.controllers.routes.RESYNC_PERIOD", 5.0)
    table = FakeTable(kernel())

    def service_routes():
        return {r.dst: r.gateway for r in table.mine() if not r.dst.startswith("10.244.")}

    async def body(fake):
        fake.put("v1", "nodes", node("a", "10.244.0.0/24", "172.30.5.2"))
        fake.put("v1", "nodes", node("b", "10.244.1.0/24", "172.30.5.3"))
        await eventually(lambda: service_routes() == {SERVICE_CIDR: "172.30.5.2"})
        web = service("web", lb_ips=["172.30.5.200"], local=True)
        fake.put("v1", "services", web)
        await asyncio.sleep(0.1)
        assert "172.30.5.200/32" not in service_routes()  # no ready endpoint yet
        fake.put("discovery.k8s.io/v1", "endpointslices", endpoint_slice("web", ("b", True)))
        await eventually(lambda: service_routes().get("172.30.5.200/32") == "172.30.5.3")
        fake.put("v1", "nodes", node("a", "10.244.0.0/24", "172.30.5.2", ready=False))
        await eventually(lambda: service_routes() == {SERVICE_CIDR: "172.30.5.3",
                                                      "172.30.5.200/32": "172.30.5.3"})
        fake.remove("v1", "services", "web", "default")
        fake.remove("v1", "nodes", "b")
        await eventually(lambda: service_routes() == {})
        assert HostRoute(SERVICE_CIDR, BRIDGE, None, PROTO) in table.table

    run_controller(body, table, RANGES)


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
