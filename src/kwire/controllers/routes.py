"""The route controller (upstream's, in cloud-controller-manager, with the routing half of
a cloud load balancer): the host reaches every pod IP, as a real node does, through one
route per Node, ``<podCIDR> via <InternalIP> dev <the cluster's bridge> proto
ROUTE_PROTOCOL``; the cluster's Services through its service range routed via the first
Ready node (by name); and each LoadBalancer ingress IP and externalIP of the cluster's
own addresses through a /32 via a Ready node, for externalTrafficPolicy Local one that
has a ready endpoint of the Service, as a cloud load balancer steers by health check.
Those nodes' service proxies take it from there.

It runs in the controller manager, on the host. Each sync is pure planning and a thin
apply: `desired_routes` turns Nodes, Services and EndpointSlices into routes, `plan`
diffs them against `ip -N -j -4 route show table main`, and `HostRouteTable` runs the
`ip route` commands. The protocol number marks kwire's routes, so a sync only ever
removes routes it made on its own cluster's bridge, and all of them go with the bridge at
`kwire down` (the kernel drops a route when its device goes). Under them the whole pod
range, the service range and a load-balancer pool outside the underlay are routed onto
the bridge itself, without a gateway (kwire.cluster.nodes, at `kwire up`; kept here as
"claims"): an address no node answers for stays off the real interfaces, and the service
range falls back to that claim when no node is Ready.

Cluster traffic must never leave the machine, so a route is planned only for a pod range
inside the cluster's pod_cidr, the service range, and addresses of the underlay or the
load-balancer pool (a user's externalIP 8.8.8.8 must not take the host's traffic to it),
always via a node address on the cluster's underlay, and never added where it would
shadow part of a host route that does not go through the bridge (another cluster's, a
VPN's, ...): those are refused and logged instead.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kwire.client import Client, Informers, WorkQueue, object_key, run_controller
from kwire.cluster.config import ClusterConfig
from kwire.cluster.nodes import ROUTE_PROTOCOL
from kwire.controllers.endpointslice import API_VERSION as SLICE_API, SERVICE_NAME_LABEL
from kwire.controllers.nodeipam import node_cidrs

log = logging.getLogger("kwire.controllers.routes")

RESYNC_PERIOD = 10.0
"""Seconds between syncs without a change, so a route someone deleted comes back
(upstream's routeReconciliationPeriod)."""
KEY = "routes"
"""The work queue's only key: every sync plans every route."""


class RouteError(Exception):
    """`ip` failed."""


@dataclass(frozen=True, order=True)
class Route:
    """One of kwire's host routes: `dst` (a pod range, the service range, a Service's
    address) via node address `gateway`."""

    dst: str
    gateway: str


@dataclass(frozen=True)
class HostRoute:
    """A route of the host's main table, as `ip -N -j route` lists it."""

    dst: str
    dev: str | None = None
    gateway: str | None = None
    protocol: str | None = None


@dataclass(frozen=True)
class RoutePlan:
    replace: tuple[Route, ...] = ()
    """Routes to add (`ip route replace`: also moves a pod range to another gateway)."""
    delete: tuple[Route, ...] = ()
    refused: tuple[str, ...] = ()
    """Why wanted routes were not added."""
    claim: tuple[str, ...] = ()
    """Ranges to route onto the bridge itself, without a gateway (`ip route replace`:
    also takes the service range back from a node)."""


@dataclass(frozen=True)
class ClusterRanges:
    """The cluster's ranges the host routes into its bridge (from its ClusterConfig)."""

    pod_cidr: str
    underlay_cidr: str
    service_cidr: str | None = None
    load_balancer_pool: str | None = None

    @classmethod
    def of(cls, config: ClusterConfig) -> ClusterRanges:
        return cls(config.pod_cidr, config.underlay_cidr, config.service_cidr,
                   config.load_balancer_cidr)

    def claims(self) -> list[str]:
        """What stays routed onto the bridge under the routes via nodes: the pod range,
        the service range, and a load-balancer pool outside the underlay."""
        underlay = ipaddress.ip_network(self.underlay_cidr)
        pool = self.load_balancer_pool
        return [self.pod_cidr, *([self.service_cidr] if self.service_cidr else []),
                *([pool] if pool and not ipaddress.ip_network(pool).subnet_of(underlay)
                  else [])]


def internal_ip(node: dict) -> str | None:
    for address in (node.get("status") or {}).get("addresses") or ():
        if address.get("type") == "InternalIP":
            return address.get("address")
    return None


def is_ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or ())


def _gateways(nodes: list[dict], underlay: ipaddress.IPv4Network
              ) -> tuple[dict[str, str], list[str]]:
    """node name -> InternalIP, for the Nodes (sorted by name) whose InternalIP is a node
    address of `underlay`, and why the others have none. Nodes without one yet are
    skipped quietly."""
    not_nodes = {underlay.network_address, underlay.network_address + 1,
                 underlay.broadcast_address}
    gateways, problems = {}, []
    for node in nodes:
        name, address = node["metadata"]["name"], internal_ip(node)
        if not address:
            continue
        try:
            gateway = ipaddress.ip_address(address)
        except ValueError:
            problems.append(f"node {name}: InternalIP {address!r} is not an IP address")
            continue
        if gateway.version != 4 or gateway not in underlay or gateway in not_nodes:
            problems.append(f"node {name}: InternalIP {address} is not a node address of the "
                            f"underlay {underlay}; no host route through it")
            continue
        gateways[name] = str(gateway)
    return gateways, problems


def desired_routes(nodes: Iterable[dict], ranges: ClusterRanges, services: Iterable[dict] = (),
                   slices: Iterable[dict] = ()) -> tuple[list[Route], list[str]]:
    """The host routes the Nodes, Services and EndpointSlices call for, and why some
    wanted ones are not.

    A Node gets a route per IPv4 pod range inside the pod range, via its InternalIP when
    that is a node address of the underlay (an agent on another machine is reached some
    other way); two Nodes claiming one range leave it to the first by name. The service
    range goes via the first Ready node by name, and Services' addresses as
    service_address_routes says."""
    nodes = sorted(nodes, key=lambda n: n["metadata"]["name"])
    cluster = ipaddress.ip_network(ranges.pod_cidr)
    gateways, problems = _gateways(nodes, ipaddress.ip_network(ranges.underlay_cidr))
    routes: dict[ipaddress.IPv4Network, Route] = {}
    for node in nodes:
        name = node["metadata"]["name"]
        if name not in gateways:
            continue
        for cidr in node_cidrs(node):
            try:
                dst = ipaddress.ip_network(cidr)
            except ValueError:
                problems.append(f"node {name}: pod CIDR {cidr!r} is not a network")
                continue
            if dst.version != 4:
                continue
            if not dst.subnet_of(cluster):
                problems.append(f"node {name}: pod CIDR {dst} is outside the cluster's "
                                f"pod range {cluster}; not routed")
            elif clash := next((r for net, r in routes.items() if net.overlaps(dst)), None):
                problems.append(f"node {name}: pod CIDR {dst} overlaps {clash.dst}, already "
                                f"routed via {clash.gateway}; not routed")
            else:
                routes[dst] = Route(str(dst), gateways[name])
    ready_names = {n["metadata"]["name"] for n in nodes if is_ready(n)}
    ready = {name: ip for name, ip in gateways.items() if name in ready_names}
    out = sorted(routes.values())
    if ranges.service_cidr and ready:
        out.append(Route(ranges.service_cidr, next(iter(ready.values()))))
    extra, more = service_address_routes(services, slices, ranges, ready, set(gateways.values()))
    return sorted(out + extra), problems + more


def _ready_endpoint_nodes(slices: Iterable[dict]) -> dict[str, set[str]]:
    """"namespace/service" -> the nodes with a ready endpoint of it (ready unset counts
    as ready, as the EndpointSlice API says)."""
    nodes: dict[str, set[str]] = {}
    for s in slices:
        meta = s["metadata"]
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not service:
            continue
        for endpoint in s.get("endpoints") or ():
            if endpoint.get("nodeName") and \
                    (endpoint.get("conditions") or {}).get("ready") is not False:
                nodes.setdefault(f"{meta.get('namespace')}/{service}", set()).add(
                    endpoint["nodeName"])
    return nodes


def service_addresses(service: dict) -> list[tuple[str, str]]:
    """(address, what) for the addresses a Service is reached at from outside: its
    externalIPs, and its load-balancer ingress IPs while it is of type LoadBalancer."""
    spec = service.get("spec") or {}
    out = [(ip, "externalIP") for ip in spec.get("externalIPs") or ()]
    if spec.get("type") == "LoadBalancer":
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress")
        out += [(i["ip"], "load-balancer IP") for i in ingress or () if i.get("ip")]
    return out


def service_address_routes(services: Iterable[dict], slices: Iterable[dict],
                           ranges: ClusterRanges, ready: dict[str, str],
                           node_ips: set[str]) -> tuple[list[Route], list[str]]:
    """A /32 per Service address that is the cluster's own to route (inside the underlay
    or the load-balancer pool, and no node's or the host's), via the first of the Ready
    nodes (`ready`: name -> InternalIP, by name) or, for externalTrafficPolicy Local, the
    first of them with a ready endpoint of the Service. No such node: no route, and the
    address stays on the bridge, unanswered (a load balancer with no healthy backend).
    An address two Services use goes to the older (first by namespace/name)."""
    underlay = ipaddress.ip_network(ranges.underlay_cidr)
    pool = ipaddress.ip_network(ranges.load_balancer_pool) if ranges.load_balancer_pool \
        else None
    reserved = {underlay.network_address, underlay.network_address + 1,
                underlay.broadcast_address, *map(ipaddress.ip_address, node_ips)}
    endpoints = _ready_endpoint_nodes(slices)
    routes: dict[str, tuple[Route, str]] = {}
    problems = []
    for service in sorted(services, key=object_key):
        key = object_key(service)
        local = (service.get("spec") or {}).get("externalTrafficPolicy") == "Local"
        via = [ip for name, ip in ready.items() if not local or name in endpoints.get(key, ())]
        for address, what in service_addresses(service):
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                continue  # validation refuses it
            if ip.version != 4:
                continue
            if ip in reserved or not (ip in underlay or (pool is not None and ip in pool)):
                problems.append(f"service {key}: {what} {ip} is outside the cluster's "
                                f"underlay {underlay}"
                                + (f" and load-balancer pool {pool}" if pool else "")
                                + ", or a node's or the host's address; not routed from "
                                  "the host")
                continue
            dst = f"{ip}/32"
            if dst in routes:
                if routes[dst][1] != key:
                    problems.append(f"service {key}: {what} {ip} is routed for service "
                                    f"{routes[dst][1]} already")
            elif via:
                routes[dst] = (Route(dst, via[0]), key)
    return sorted(r for r, _ in routes.values()), problems


def parse_routes(text: str) -> list[HostRoute]:
    """`ip -N -j -4 route show table main` output (-N: protocols as numbers), each
    destination with its prefix length (`ip` leaves out a /32's)."""
    return [HostRoute(dst=r["dst"] if r["dst"] == "default"
                      else ipaddress.ip_network(r["dst"]).with_prefixlen,
                      dev=r.get("dev"), gateway=r.get("gateway"), protocol=r.get("protocol"))
            for r in json.loads(text or "[]") if r.get("dst")]


def ours(routes: Iterable[HostRoute], bridge: str) -> list[Route]:
    """The routes this controller made on `bridge`: kwire's protocol, via a node. (The
    cluster's whole pod range, routed onto the bridge by kwire.cluster.nodes, has no
    gateway and is not the controller's.)"""
    return sorted(Route(r.dst, r.gateway) for r in routes
                  if r.dev == bridge and r.protocol == str(ROUTE_PROTOCOL) and r.gateway)


def plan(desired: Iterable[Route], existing: Iterable[HostRoute], bridge: str,
         claims: Iterable[str] = ()) -> RoutePlan:
    """What turns the host's main table (`existing`) into one with exactly `desired` as
    kwire's routes via nodes on `bridge`, and each of `claims` not among them routed onto
    `bridge` itself. A missing route or claim whose range overlaps a host route that does
    not go through `bridge` is refused; the default route overlaps everything and is not
    counted."""
    existing, desired = list(existing), set(desired)
    have = set(ours(existing, bridge))
    foreign = [(ipaddress.ip_network(r.dst), r) for r in existing
               if r.dev != bridge and r.dst != "default"]
    refused: list[str] = []

    def safe(dst: str, how: str) -> bool:
        clash = next((r for net, r in foreign if net.overlaps(ipaddress.ip_network(dst))), None)
        if clash is not None:
            refused.append(f"not routing {dst} {how}: it overlaps the host route to {clash.dst}"
                           + (f" on {clash.dev}" if clash.dev else "")
                           + f", which does not go through {bridge}")
        return clash is None

    replace = [r for r in sorted(desired - have) if safe(r.dst, f"via {r.gateway}")]
    claimed = {r.dst for r in existing if r.dev == bridge and not r.gateway
               and r.protocol == str(ROUTE_PROTOCOL)}
    routed = {r.dst for r in desired}
    missing = [c for c in claims if c not in routed and c not in claimed]
    claim = [c for c in missing if safe(c, f"onto {bridge}")]
    # A range's route via a node goes only for its claim: the service range is never
    # left without a route on the bridge, even when the claim is refused.
    replaced = {r.dst for r in replace} | set(missing)
    delete = [r for r in sorted(have - desired) if r.dst not in replaced]
    return RoutePlan(replace=tuple(replace), delete=tuple(delete), refused=tuple(refused),
                     claim=tuple(claim))


class HostRouteTable:
    """The applier: `ip` with argument lists, on the host's main table."""

    @staticmethod
    def _ip(*args: str) -> str:
        cmd = ["ip", *args]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RouteError(f"{' '.join(cmd)}: {e}") from None
        if out.returncode != 0:
            raise RouteError(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
        return out.stdout

    def has_link(self, name: str) -> bool:
        return Path("/sys/class/net", name).exists()

    def routes(self) -> list[HostRoute]:
        return parse_routes(self._ip("-N", "-j", "-4", "route", "show", "table", "main"))

    def apply(self, route_plan: RoutePlan, bridge: str) -> None:
        for r in route_plan.delete:
            self._ip("route", "del", r.dst, "via", r.gateway, "dev", bridge,
                     "proto", str(ROUTE_PROTOCOL))
        for dst in route_plan.claim:
            self._ip("route", "replace", dst, "dev", bridge, "proto", str(ROUTE_PROTOCOL))
        for r in route_plan.replace:
            self._ip("route", "replace", r.dst, "via", r.gateway, "dev", bridge,
                     "proto", str(ROUTE_PROTOCOL))


def _node_inputs(node: dict) -> tuple:
    return node_cidrs(node), internal_ip(node), is_ready(node)


def _service_inputs(service: dict) -> tuple:
    return service_addresses(service), (service.get("spec") or {}).get("externalTrafficPolicy")


def _slice_inputs(endpoint_slice: dict) -> tuple:
    return sorted(_ready_endpoint_nodes([endpoint_slice]).items())


class RouteController:
    def __init__(self, client: Client, informers: Informers, *, bridge: str,
                 ranges: ClusterRanges, table: HostRouteTable | None = None):
        self.client, self.informers = client, informers
        self.bridge, self.ranges = bridge, ranges
        self.table = table or HostRouteTable()
        self.queue: WorkQueue[str] = WorkQueue(base_delay=0.5, max_delay=RESYNC_PERIOD)
        self.reported: set[str] = set()
        """Problems already logged, so a resync does not log them again."""
        self.nodes = informers.get("v1", "nodes")
        self.services = informers.get("v1", "services")
        self.slices = informers.get(SLICE_API, "endpointslices")

    async def run(self) -> None:
        self.queue.add(KEY)
        await run_controller(self.queue, self.sync, 1, "routes", (
            (self.nodes, self._when(_node_inputs)),
            (self.services, self._when(_service_inputs)),
            (self.slices, self._when(_slice_inputs))))

    def _when(self, inputs):
        """A handler that queues a sync when what the routes depend on changed (Node
        heartbeats and most Service edits do not count)."""
        def handler(etype: str, obj: dict, old: dict | None) -> None:
            if etype != "MODIFIED" or old is None or inputs(obj) != inputs(old):
                self.queue.add(KEY)
        return handler

    async def sync(self, key: str) -> bool:
        if not all(i.has_synced for i in (self.nodes, self.services, self.slices)):
            return False  # an empty cache would plan every route away
        desired, problems = desired_routes(self.nodes.store.list(), self.ranges,
                                           self.services.store.list(), self.slices.store.list())
        self.queue.add_after(KEY, RESYNC_PERIOD)
        try:
            await asyncio.to_thread(self._apply, desired, problems)
        except RouteError as e:
            log.warning("%s", e)
            return False
        return True

    def _apply(self, desired: list[Route], problems: list[str]) -> None:
        if not self.table.has_link(self.bridge):
            self._report([f"bridge {self.bridge} is missing; no host routes into the cluster"])
            return
        route_plan = plan(desired, self.table.routes(), self.bridge, self.ranges.claims())
        self._report(problems + list(route_plan.refused))
        self.table.apply(route_plan, self.bridge)
        for r in route_plan.delete:
            log.info("removed host route %s via %s", r.dst, r.gateway)
        for dst in route_plan.claim:
            log.info("host route %s dev %s", dst, self.bridge)
        for r in route_plan.replace:
            log.info("host route %s via %s dev %s", r.dst, r.gateway, self.bridge)

    def _report(self, problems: list[str]) -> None:
        for problem in problems:
            if problem not in self.reported:
                log.warning("%s", problem)
        self.reported = set(problems)


def route_controller(bridge: str, ranges: ClusterRanges):
    def factory(client: Client, informers: Informers) -> RouteController:
        return RouteController(client, informers, bridge=bridge, ranges=ranges)
    return factory
