"""The overlay between nodes as flannel builds it: the pure part (overlay_apply.py makes
the kernel match it).

Every node publishes on its Node, as flannel does on its subnet lease, how its pod
subnet is reached: the backend, its underlay ("public") IP and, for VXLAN, the MAC of
its VTEP. From the Nodes alone each node computes what its kernel must hold:

vxlan (flannel's vxlan backend):
  - one VXLAN device ``kwire.1`` (flannel.1): VNI 1, UDP 8472, local = the underlay IP,
    over the underlay interface, learning off, MTU = underlay MTU - 50, address = the
    network address of the node's pod subnet as a /32 (``10.244.1.0/32``);
  - per other node: ``10.244.2.0/24 via 10.244.2.0 dev kwire.1 onlink``, a permanent
    neighbour ``10.244.2.0 lladdr <its VTEP MAC>`` and an FDB entry ``<its VTEP MAC> dst
    <its underlay IP>``. The route picks the device, the neighbour the inner MAC, the
    FDB the outer IP: the kernel never floods nor learns.
host-gw (flannel's host-gw backend, nodes on one L2 segment):
  - per other node ``10.244.2.0/24 via <its underlay IP> dev <underlay>``; no device.

Every route carries ROUTE_PROTOCOL, so the applier reads back and deletes only routes
it added, never a foreign one, and a switch of backend replaces one mode's routes by
the other's.
"""
from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field, replace

VXLAN = "vxlan"
HOST_GW = "host-gw"
BACKENDS = (VXLAN, HOST_GW)

VXLAN_DEVICE = "kwire.1"
VXLAN_VNI = 1
VXLAN_PORT = 8472
"""The Linux kernel's VXLAN port and flannel's default (IANA's is 4789)."""
VXLAN_OVERHEAD = 50
"""Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers."""
ROUTE_PROTOCOL = 107
"""The routing protocol number on kwire's routes (0x6b, unused in /etc/iproute2/rt_protos)."""

ANNOTATION_BACKEND_TYPE = "kwire.io/backend-type"
ANNOTATION_BACKEND_DATA = "kwire.io/backend-data"
ANNOTATION_PUBLIC_IP = "kwire.io/public-ip"
ANNOTATIONS = (ANNOTATION_BACKEND_TYPE, ANNOTATION_BACKEND_DATA, ANNOTATION_PUBLIC_IP)

ADD, UPDATE, DELETE = "add", "update", "delete"

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class LocalNode:
    """This node: its Node's name and pod subnet, and the underlay the agent found."""

    name: str
    pod_cidr: str
    public_ip: str
    underlay_dev: str
    underlay_mtu: int
    backend: str = VXLAN


@dataclass(frozen=True)
class Peer:
    """Another node, as its Node's spec.podCIDR and annotations describe it."""

    name: str
    pod_cidr: str
    public_ip: str
    vtep_mac: str | None
    """None in host-gw mode."""

    @property
    def gateway(self) -> str:
        """Its VTEP's address: the network address of its pod subnet."""
        return str(ipaddress.ip_network(self.pod_cidr).network_address)


@dataclass(frozen=True, order=True)
class VxlanDevice:
    name: str
    vni: int
    port: int
    local: str
    dev: str
    """The underlay interface the encapsulated packets leave by."""
    learning: bool
    mtu: int
    address: str
    """With prefix length: ``10.244.1.0/32``."""
    up: bool = True
    mac: str | None = field(default=None, compare=False)
    """Chosen by the kernel at creation; read back, never desired."""

    def compatible(self, other: VxlanDevice) -> bool:
        """Whether `other` differs only in what can change in place (MTU, address,
        up); anything else is fixed when the device is created."""
        return self._fixed() == other._fixed()

    def _fixed(self) -> tuple:
        return self.name, self.vni, self.port, self.local, self.dev, self.learning


@dataclass(frozen=True, order=True)
class Route:
    dst: str
    gateway: str
    dev: str
    onlink: bool = False


@dataclass(frozen=True, order=True)
class Neighbour:
    address: str
    lladdr: str
    dev: str = VXLAN_DEVICE


@dataclass(frozen=True, order=True)
class FdbEntry:
    lladdr: str
    dst: str
    dev: str = VXLAN_DEVICE


Entry = VxlanDevice | Route | Neighbour | FdbEntry


@dataclass(frozen=True)
class OverlayState:
    """What the overlay owns in one node's kernel, desired or read back."""

    device: VxlanDevice | None = None
    routes: frozenset[Route] = frozenset()
    neighbours: frozenset[Neighbour] = frozenset()
    fdb: frozenset[FdbEntry] = frozenset()


@dataclass(frozen=True)
class Operation:
    action: str
    """ADD, UPDATE (`old` is what it replaces) or DELETE."""
    obj: Entry
    old: Entry | None = None

    def __str__(self) -> str:
        return f"{self.action} {self.obj}"


def pod_mtu(backend: str, underlay_mtu: int) -> int:
    """The MTU pods get: the VXLAN device's under vxlan, the underlay's under host-gw."""
    _check_backend(backend)
    return underlay_mtu - VXLAN_OVERHEAD if backend == VXLAN else underlay_mtu


def node_annotations(backend: str, public_ip: str, vtep_mac: str | None) -> dict[str, str]:
    """What this node publishes on its Node (flannel's backend-data is JSON too)."""
    _check_backend(backend)
    data = {"VNI": VXLAN_VNI, "VtepMAC": vtep_mac} if backend == VXLAN else None
    return {ANNOTATION_BACKEND_TYPE: backend,
            ANNOTATION_BACKEND_DATA: json.dumps(data, separators=(",", ":")),
            ANNOTATION_PUBLIC_IP: public_ip}


def annotations_patch(node: dict, wanted: dict[str, str]) -> dict | None:
    """The merge patch that puts `wanted` on `node`, or None when it carries them."""
    have = (node.get("metadata") or {}).get("annotations") or {}
    if all(have.get(k) == v for k, v in wanted.items()):
        return None
    return {"metadata": {"annotations": wanted}}


def overlay_fields(node: dict) -> tuple:
    """What of a Node the overlay depends on: a change elsewhere (a status heartbeat)
    needs no reconcile."""
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    return ((node.get("metadata") or {}).get("name"), (node.get("spec") or {}).get("podCIDR"),
            *(annotations.get(k) for k in ANNOTATIONS))


def parse_peer(node: dict, backend: str) -> Peer | None:
    """The Node as a peer of a node running `backend`, or None when it has no pod
    subnet yet, has not published (or published garbage), or runs another backend."""
    meta = node.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    cidr = (node.get("spec") or {}).get("podCIDR")
    public_ip = annotations.get(ANNOTATION_PUBLIC_IP)
    if annotations.get(ANNOTATION_BACKEND_TYPE) != backend or not cidr or not public_ip:
        return None
    try:
        net = ipaddress.ip_network(cidr)
        ip = ipaddress.ip_address(public_ip)
    except ValueError:
        return None
    if net.version != 4 or ip.version != 4:
        return None
    mac = None
    if backend == VXLAN:
        try:
            data = json.loads(annotations.get(ANNOTATION_BACKEND_DATA) or "null")
        except ValueError:
            return None
        mac = str(data.get("VtepMAC") or "").lower() if isinstance(data, dict) else ""
        if not _MAC.match(mac) or data.get("VNI") != VXLAN_VNI:
            return None
    return Peer(meta.get("name", ""), str(net), str(ip), mac)


def peers(local: LocalNode, nodes: Iterable[dict]) -> list[Peer]:
    """Every other node this one routes to, by name; of two claiming overlapping
    subnets (or one overlapping ours) only the first is kept."""
    taken = [ipaddress.ip_network(local.pod_cidr)]
    found = []
    for peer in sorted(filter(None, (parse_peer(n, local.backend) for n in nodes)),
                       key=lambda p: p.name):
        net = ipaddress.ip_network(peer.pod_cidr)
        if peer.name == local.name or peer.public_ip == local.public_ip or any(
                net.overlaps(t) for t in taken):
            continue
        taken.append(net)
        found.append(peer)
    return found


def vxlan_device(local: LocalNode) -> VxlanDevice:
    net = ipaddress.ip_network(local.pod_cidr)
    return VxlanDevice(name=VXLAN_DEVICE, vni=VXLAN_VNI, port=VXLAN_PORT, local=local.public_ip,
                       dev=local.underlay_dev, learning=False,
                       mtu=pod_mtu(VXLAN, local.underlay_mtu), address=f"{net.network_address}/32")


def desired_state(local: LocalNode, nodes: Iterable[dict]) -> OverlayState:
    """What this node's kernel must hold for the pods of every other node in `nodes`."""
    _check_backend(local.backend)
    others = peers(local, nodes)
    if local.backend == HOST_GW:
        return OverlayState(routes=frozenset(
            Route(p.pod_cidr, p.public_ip, local.underlay_dev) for p in others))
    return OverlayState(
        device=vxlan_device(local),
        routes=frozenset(Route(p.pod_cidr, p.gateway, VXLAN_DEVICE, onlink=True) for p in others),
        neighbours=frozenset(Neighbour(p.gateway, p.vtep_mac) for p in others),
        fdb=frozenset(FdbEntry(p.vtep_mac, p.public_ip) for p in others))


def diff(current: OverlayState, desired: OverlayState) -> list[Operation]:
    """The operations that turn `current` into `desired`, in an order that never leaves
    a route without its neighbour and FDB entry: the device first, then deletions
    (routes first), then additions (routes last). Converged states give []."""
    ops = _device_ops(current.device, desired.device)
    if any(op.action != UPDATE for op in ops):
        # A deleted or recreated device takes its routes, neighbours and FDB entries along.
        current = replace(current, neighbours=frozenset(), fdb=frozenset(),
                          routes=frozenset(r for r in current.routes if r.dev != VXLAN_DEVICE))
    routes = _entry_ops(current.routes, desired.routes, lambda r: r.dst)
    neighbours = _entry_ops(current.neighbours, desired.neighbours,
                            lambda n: (n.dev, n.address))
    fdb = _entry_ops(current.fdb, desired.fdb, lambda f: (f.dev, f.lladdr))
    return ops + routes[0] + neighbours[0] + fdb[0] + fdb[1] + neighbours[1] + routes[1]


def _device_ops(current: VxlanDevice | None, desired: VxlanDevice | None) -> list[Operation]:
    if current == desired:
        return []
    if current is None:
        return [Operation(ADD, desired)]
    if desired is None:
        return [Operation(DELETE, current)]
    if not current.compatible(desired):
        return [Operation(DELETE, current), Operation(ADD, desired)]
    return [Operation(UPDATE, desired, current)]


def _entry_ops(current: Iterable[Entry], desired: Iterable[Entry],
               key: Callable[[Entry], Hashable]) -> tuple[list[Operation], list[Operation]]:
    """(deletions, additions and updates) keyed by `key`; of two current entries with
    one key (added by hand) the extra one is deleted."""
    want = {key(e): e for e in desired}
    have: dict[Hashable, Entry] = {}
    deletions = []
    for entry in sorted(current):
        k = key(entry)
        if k in want and k not in have:
            have[k] = entry
        else:
            deletions.append(Operation(DELETE, entry))
    puts = [Operation(UPDATE, e, have[k]) if k in have else Operation(ADD, e)
            for k, e in sorted(want.items(), key=lambda item: item[1]) if have.get(k) != e]
    return deletions, puts


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown overlay backend {backend!r}: use one of {', '.join(BACKENDS)}")
