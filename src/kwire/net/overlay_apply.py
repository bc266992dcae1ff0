"""Makes the kernel of the network namespace the agent runs in hold the overlay that
overlay.py computes, with iproute2's `ip` and `bridge` (argument lists and JSON output,
never a shell).

It reads back only what it owns: the kwire.1 device with its permanent neighbours and
FDB entries, and the routes carrying ROUTE_PROTOCOL; nothing else on the node is
touched. The device survives agent restarts and is reused, so its MAC (the VTEP MAC the
other nodes hold) stays the same; it is recreated only when an attribute fixed at
creation (VNI, port, local address, underlay interface) has to change.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass

from kwire.net.overlay import (BACKENDS, DELETE, ROUTE_PROTOCOL, VXLAN, VXLAN_DEVICE,
                               FdbEntry, LocalNode, Neighbour, Operation, OverlayState, Route,
                               VxlanDevice, desired_state, diff, node_annotations, pod_mtu)

PROTO = str(ROUTE_PROTOCOL)


class OverlayError(Exception):
    """The overlay cannot be read or applied (no underlay, a foreign kwire.1, `ip` failed)."""


@dataclass(frozen=True)
class Underlay:
    """The interface holding the node's underlay address."""

    dev: str
    mtu: int


@dataclass(frozen=True)
class Reconciled:
    commands: list[list[str]]
    """The commands that changed something ([] when converged)."""
    annotations: dict[str, str] | None
    """What this node's Node must carry; None until its pod subnet is known."""


# -- reading `ip -j` output (pure) -----------------------------------------------------


def find_underlay(links: list[dict], address: str) -> Underlay:
    """The link holding `address` in `ip -j -4 addr show` output. A loopback underlay
    (an agent whose server is on 127.0.0.1) is refused: no overlay rides on lo."""
    for link in links:
        if any(a.get("local") == address for a in link.get("addr_info", [])):
            if "LOOPBACK" in link.get("flags", []) or ipaddress.ip_address(address).is_loopback:
                raise OverlayError(f"the node address {address} is on the loopback interface; "
                                   "the overlay needs a real underlay")
            return Underlay(link["ifname"], int(link["mtu"]))
    raise OverlayError(f"no interface holds the node address {address}")


def parse_device(links: list[dict]) -> VxlanDevice | None:
    """kwire.1 from `ip -d -j addr show dev kwire.1` output (None if it is absent)."""
    if not links:
        return None
    link = links[0]
    info = link.get("linkinfo") or {}
    if info.get("info_kind") != "vxlan":
        raise OverlayError(f"{VXLAN_DEVICE} exists but is a {info.get('info_kind') or 'plain'} "
                           f"device, not kwire's VXLAN device; refusing to touch it")
    data = info.get("info_data") or {}
    addresses = sorted(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                       if a.get("family") == "inet")
    return VxlanDevice(name=link["ifname"], vni=data.get("id"), port=data.get("port"),
                       local=data.get("local"), dev=data.get("link"),
                       learning=bool(data.get("learning")), mtu=link.get("mtu"),
                       address=",".join(addresses), up="UP" in link.get("flags", []),
                       mac=link.get("address"))


def parse_routes(routes: list[dict]) -> frozenset[Route]:
    """Routes from `ip -j -4 route show proto ROUTE_PROTOCOL` output."""
    return frozenset(Route(r["dst"], r.get("gateway", ""), r.get("dev", ""),
                           "onlink" in r.get("flags", [])) for r in routes)


def parse_neighbours(neighbours: list[dict]) -> frozenset[Neighbour]:
    """From `ip -j -4 neigh show dev kwire.1 nud permanent` output."""
    return frozenset(Neighbour(n["dst"], n["lladdr"]) for n in neighbours if n.get("lladdr"))


def parse_fdb(entries: list[dict]) -> frozenset[FdbEntry]:
    """From `bridge -j fdb show dev kwire.1` output: the entries that send to a remote."""
    return frozenset(FdbEntry(f["mac"], f["dst"]) for f in entries if f.get("dst"))


# -- operations as commands (pure) -----------------------------------------------------


def commands(op: Operation) -> list[list[str]]:
    """The `ip` / `bridge` argument lists carrying out `op`."""
    obj, delete = op.obj, op.action == DELETE
    if isinstance(obj, VxlanDevice):
        return _device_commands(op)
    if isinstance(obj, Route):
        if delete:
            return [["ip", "-4", "route", "del", obj.dst, "via", obj.gateway, "dev", obj.dev,
                     "proto", PROTO]]
        return [["ip", "-4", "route", "replace", obj.dst, "via", obj.gateway, "dev", obj.dev,
                 *(["onlink"] if obj.onlink else []), "proto", PROTO]]
    if isinstance(obj, Neighbour):
        if delete:
            return [["ip", "-4", "neigh", "del", obj.address, "dev", obj.dev]]
        return [["ip", "-4", "neigh", "replace", obj.address, "lladdr", obj.lladdr, "dev", obj.dev,
                 "nud", "permanent"]]
    if delete:
        return [["bridge", "fdb", "del", obj.lladdr, "dev", obj.dev, "dst", obj.dst, "self"]]
    return [["bridge", "fdb", "replace", obj.lladdr, "dev", obj.dev, "dst", obj.dst, "self",
             "permanent"]]


def _device_commands(op: Operation) -> list[list[str]]:
    dev: VxlanDevice = op.obj
    if op.action == DELETE:
        return [["ip", "link", "del", "dev", dev.name]]
    old = op.old
    cmds = []
    if old is None:
        cmds.append(["ip", "link", "add", dev.name, "mtu", str(dev.mtu), "type", "vxlan",
                     "id", str(dev.vni), "local", dev.local, "dev", dev.dev,
                     "dstport", str(dev.port), "learning" if dev.learning else "nolearning"])
    elif old.mtu != dev.mtu:
        cmds.append(["ip", "link", "set", "dev", dev.name, "mtu", str(dev.mtu)])
    if old is None or old.address != dev.address:
        if old is not None and old.address:
            cmds.append(["ip", "-4", "addr", "flush", "dev", dev.name])
        cmds.append(["ip", "addr", "add", dev.address, "dev", dev.name])
    if old is None or old.up != dev.up:
        cmds.append(["ip", "link", "set", "dev", dev.name, "up" if dev.up else "down"])
    return cmds


# -- the applier -----------------------------------------------------------------------


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=10)
    except FileNotFoundError:
        raise OverlayError(f"`{cmd[0]}` is missing: apt-get install iproute2") from None
    except subprocess.TimeoutExpired:
        raise OverlayError(f"{' '.join(cmd)} hung for 10s") from None


def _read(*cmd: str) -> list[dict]:
    """`cmd` (with -j) parsed; [] when the device it asks about does not exist."""
    out = _run(list(cmd))
    if out.returncode != 0:
        if "does not exist" in out.stderr or "Cannot find device" in out.stderr:
            return []
        raise OverlayError(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout or "[]")


class Overlay:
    """The overlay of the node whose network namespace this process runs in."""

    def __init__(self, backend: str, public_ip: str):
        if backend not in BACKENDS:
            raise OverlayError(f"unknown overlay backend {backend!r}: use one of "
                               f"{', '.join(BACKENDS)}")
        self.backend, self.public_ip = backend, public_ip

    def underlay(self) -> Underlay:
        return find_underlay(_read("ip", "-j", "-4", "addr", "show"), self.public_ip)

    @property
    def pod_mtu(self) -> int:
        """The MTU pods on this node must get (read fresh: the underlay's may change)."""
        return pod_mtu(self.backend, self.underlay().mtu)

    def read(self) -> OverlayState:
        device = parse_device(_read("ip", "-d", "-j", "addr", "show", "dev", VXLAN_DEVICE))
        routes = parse_routes(_read("ip", "-j", "-4", "route", "show", "table", "main",
                                    "proto", PROTO))
        if device is None:
            return OverlayState(routes=routes)
        return OverlayState(
            device=device, routes=routes,
            neighbours=parse_neighbours(_read("ip", "-j", "-4", "neigh", "show", "dev",
                                              VXLAN_DEVICE, "nud", "permanent")),
            fdb=parse_fdb(_read("bridge", "-j", "fdb", "show", "dev", VXLAN_DEVICE)))

    def reconcile(self, node: str, nodes: list[dict]) -> Reconciled:
        """Make the kernel hold the overlay to every other node in `nodes` (the Nodes of
        the cluster, this one included: its spec.podCIDR is the device's address).

        Every operation is tried even when one fails (one peer with a bad address must
        not cut off the others); the failures are raised together at the end."""
        me = next((n for n in nodes if (n.get("metadata") or {}).get("name") == node), None)
        cidr = ((me or {}).get("spec") or {}).get("podCIDR")
        if not cidr:
            return Reconciled([], None)
        underlay = self.underlay()
        local = LocalNode(node, cidr, self.public_ip, underlay.dev, underlay.mtu, self.backend)
        done: list[list[str]] = []
        errors = []
        for op in diff(self.read(), desired_state(local, nodes)):
            for cmd in commands(op):
                out = _run(cmd)
                if out.returncode != 0:
                    errors.append(f"{' '.join(cmd)}: {out.stderr.strip()}")
                    if isinstance(op.obj, VxlanDevice):
                        raise OverlayError("; ".join(errors))
                    break
                done.append(cmd)
        if errors:
            raise OverlayError("; ".join(errors))
        mac = None
        if self.backend == VXLAN:
            device = parse_device(_read("ip", "-d", "-j", "addr", "show", "dev", VXLAN_DEVICE))
            mac = device.mac if device else None
        return Reconciled(done, node_annotations(self.backend, self.public_ip, mac))
