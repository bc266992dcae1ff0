"""The route controller (upstream's, in cloud-controller-manager): the host reaches every
pod IP, as a real node does, through one route per Node, ``<podCIDR> via <InternalIP> dev
<the cluster's bridge> proto ROUTE_PROTOCOL``.

It runs in the controller manager, on the host. Each sync is pure planning and a thin
apply: `desired_routes` turns the Nodes into routes, `plan` diffs them against
`ip -N -j -4 route show table main`, and `HostRouteTable` runs the `ip route` commands.
The protocol number marks kwire's routes, so a sync only ever removes routes it made on
its own cluster's bridge; routes go with their Node, and all of them with the bridge at
`kwire down` (the kernel drops a route when its device goes). Under them, the cluster's
whole pod range is routed onto the bridge (kwire.cluster.nodes), so a pod address no node
has stays off the real interfaces too.

Cluster traffic must never leave the machine, so a route is planned only for a pod range
inside the cluster's pod_cidr, via a node address on the cluster's underlay, and never
added where it would shadow part of a host route that does not go through the bridge
(another cluster's, a VPN's, ...): those are refused and logged instead.
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

from kwire.client import Client, Informers, WorkQueue, run_workers
from kwire.cluster.nodes import ROUTE_PROTOCOL
from kwire.controllers.nodeipam import node_cidrs

log = logging.getLogger("kwire.controllers.routes")

RESYNC_PERIOD = 10.0
"""Seconds between syncs without a Node change, so a route someone deleted comes back
(upstream's routeReconciliationPeriod)."""
KEY = "routes"
"""The work queue's only key: every sync plans every route."""


class RouteError(Exception):
    """`ip` failed."""


@dataclass(frozen=True, order=True)
class Route:
    """One of kwire's host routes: the pod range `dst` via node address `gateway`."""

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


def internal_ip(node: dict) -> str | None:
    for address in (node.get("status") or {}).get("addresses") or ():
        if address.get("type") == "InternalIP":
            return address.get("address")
    return None


def desired_routes(nodes: Iterable[dict], pod_cidr: str, underlay_cidr: str
                   ) -> tuple[list[Route], list[str]]:
    """The host routes the Nodes call for, and why some Nodes get none.

    A Node gets a route per IPv4 pod range inside `pod_cidr`, via its InternalIP when
    that is a node address of `underlay_cidr` (an agent on another machine is reached
    some other way). Nodes without a pod range or address yet are skipped quietly; two
    Nodes claiming one range leave it to the first by name."""
    cluster = ipaddress.ip_network(pod_cidr)
    underlay = ipaddress.ip_network(underlay_cidr)
    not_nodes = {underlay.network_address, underlay.network_address + 1,
                 underlay.broadcast_address}
    routes: dict[ipaddress.IPv4Network, Route] = {}
    problems: list[str] = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        cidrs, address = node_cidrs(node), internal_ip(node)
        if not cidrs or not address:
            continue
        try:
            gateway = ipaddress.ip_address(address)
        except ValueError:
            problems.append(f"node {name}: InternalIP {address!r} is not an IP address")
            continue
        if gateway.version != 4 or gateway not in underlay or gateway in not_nodes:
            problems.append(f"node {name}: InternalIP {address} is not a node address of the "
                            f"underlay {underlay}; no host route to its pods")
            continue
        for cidr in cidrs:
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
                routes[dst] = Route(str(dst), str(gateway))
    return sorted(routes.values()), problems


def parse_routes(text: str) -> list[HostRoute]:
    """`ip -N -j -4 route show table main` output (-N: protocols as numbers)."""
    return [HostRoute(dst=r["dst"], dev=r.get("dev"), gateway=r.get("gateway"),
                      protocol=r.get("protocol"))
            for r in json.loads(text or "[]") if r.get("dst")]


def ours(routes: Iterable[HostRoute], bridge: str) -> list[Route]:
    """The routes this controller made on `bridge`: kwire's protocol, via a node. (The
    cluster's whole pod range, routed onto the bridge by kwire.cluster.nodes, has no
    gateway and is not the controller's.)"""
    return sorted(Route(r.dst, r.gateway) for r in routes
                  if r.dev == bridge and r.protocol == str(ROUTE_PROTOCOL) and r.gateway)


def plan(desired: Iterable[Route], existing: Iterable[HostRoute], bridge: str) -> RoutePlan:
    """What turns the host's main table (`existing`) into one with exactly `desired` as
    kwire's routes on `bridge`. A missing route whose range overlaps a host route that
    does not go through `bridge` is refused; the default route overlaps everything and
    is not counted."""
    existing = list(existing)
    have = set(ours(existing, bridge))
    foreign = [(ipaddress.ip_network(r.dst), r) for r in existing
               if r.dev != bridge and r.dst != "default"]
    replace, refused = [], []
    for route in sorted(set(desired) - have):
        dst = ipaddress.ip_network(route.dst)
        clash = next((r for net, r in foreign if net.overlaps(dst)), None)
        if clash is None:
            replace.append(route)
        else:
            refused.append(f"not routing {route.dst} via {route.gateway}: it overlaps the host "
                           f"route to {clash.dst}"
                           + (f" on {clash.dev}" if clash.dev else "")
                           + f", which does not go through {bridge}")
    replaced = {r.dst for r in replace}
    delete = [r for r in sorted(have - set(desired)) if r.dst not in replaced]
    return RoutePlan(replace=tuple(replace), delete=tuple(delete), refused=tuple(refused))


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
        for r in route_plan.replace:
            self._ip("route", "replace", r.dst, "via", r.gateway, "dev", bridge,
                     "proto", str(ROUTE_PROTOCOL))


class RouteController:
    def __init__(self, client: Client, informers: Informers, *, bridge: str, pod_cidr: str,
                 underlay_cidr: str, table: HostRouteTable | None = None):
        self.client, self.informers = client, informers
        self.bridge, self.pod_cidr, self.underlay_cidr = bridge, pod_cidr, underlay_cidr
        self.table = table or HostRouteTable()
        self.queue: WorkQueue[str] = WorkQueue(base_delay=0.5, max_delay=RESYNC_PERIOD)
        self.reported: set[str] = set()
        """Problems already logged, so a resync does not log them again."""

    async def run(self) -> None:
        nodes = self.informers.get("v1", "nodes")
        nodes.add_handler(self._on_node)
        self.queue.add(KEY)
        try:
            await run_workers(self.queue, self.sync, 1, "routes")
        finally:
            nodes.remove_handler(self._on_node)

    def _on_node(self, etype: str, obj: dict, old: dict | None) -> None:
        if etype != "MODIFIED" or old is None or \
                (node_cidrs(obj), internal_ip(obj)) != (node_cidrs(old), internal_ip(old)):
            self.queue.add(KEY)

    async def sync(self, key: str) -> bool:
        nodes = self.informers.get("v1", "nodes")
        if not nodes.has_synced:
            return False  # an empty cache would plan every route away
        desired, problems = desired_routes(nodes.store.list(), self.pod_cidr,
                                           self.underlay_cidr)
        self.queue.add_after(KEY, RESYNC_PERIOD)
        try:
            await asyncio.to_thread(self._apply, desired, problems)
        except RouteError as e:
            log.warning("%s", e)
            return False
        return True

    def _apply(self, desired: list[Route], problems: list[str]) -> None:
        if not self.table.has_link(self.bridge):
            self._report([f"bridge {self.bridge} is missing; no host routes to the pods"])
            return
        route_plan = plan(desired, self.table.routes(), self.bridge)
        self._report(problems + list(route_plan.refused))
        self.table.apply(route_plan, self.bridge)
        for r in route_plan.delete:
            log.info("removed host route %s via %s", r.dst, r.gateway)
        for r in route_plan.replace:
            log.info("host route %s via %s dev %s", r.dst, r.gateway, self.bridge)

    def _report(self, problems: list[str]) -> None:
        for problem in problems:
            if problem not in self.reported:
                log.warning("%s", problem)
        self.reported = set(problems)


def route_controller(bridge: str, pod_cidr: str, underlay_cidr: str):
    def factory(client: Client, informers: Informers) -> RouteController:
        return RouteController(client, informers, bridge=bridge, pod_cidr=pod_cidr,
                               underlay_cidr=underlay_cidr)
    return factory
