"""The node underlay: one bridge in the host's namespace, one network namespace per node.

Split as Mininet splits nodes from links and kube-proxy splits its planner from its
applier: plan_underlay() is pure (names, addresses, MTU; unit-tested byte for byte) and
apply() / remove_node() / teardown() are a thin layer that compares the plan with what
`ip` reports and runs only the missing `ip` commands (argument lists, never a shell).

Names are chosen so that clusters cannot step on each other or on the host:
- interface names are at most 15 bytes (IFNAMSIZ), so the bridge and host-side veths are
  a short prefix plus a hash of the cluster (and node) name;
- every interface we create carries an alias ``kwire:<cluster>[/<node>]``, so a hash
  collision or a foreign interface with the same name is refused, never adopted;
- namespaces are ``kwire-<cluster>_<node>``: cluster names are DNS labels and node names
  DNS subdomains, neither holds ``_``, so the prefix ``kwire-<cluster>_`` names exactly
  one cluster's nodes and teardown() can find them without knowing the node list.

Cluster traffic must never leave the machine: nodes talk to each other through the
bridge (layer 2, no routing), the host reaches them on the bridge's connected route (and
their pods through them: kwire.controllers.routes), and forwarding is switched off on the
bridge alone, so even a host with ip_forward=1 does not route the nodes' packets out of
a real interface. No sysctl of the host is touched; inside its own namespace each node
forwards, since it routes for its pods.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import subprocess
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from kwire.cluster.config import ClusterConfig, ClusterError

IFNAMSIZ = 15
"""Longest interface name the kernel accepts (16 bytes with the terminating NUL)."""
NETNS_PREFIX = "kwire-"
NETNS_MAX = 100
"""Namespace names are files in /run/netns (at most 255 bytes); longer node parts are cut
and hashed, keeping the cluster prefix whole, to stay readable in `ip netns list`."""
NODE_IFNAME = "eth0"
DEFAULT_MTU = 1500
ROUTE_PROTOCOL = 75
"""The `proto` of kwire's host routes (iproute2 names no protocol 75; Calico uses 80):
the pod and service ranges' (here) and the route controller's (kwire.controllers.routes),
all on the cluster's bridge."""

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class UnderlayError(ClusterError):
    """The underlay cannot be planned or applied (bad names, foreign interfaces, `ip` failed)."""


@dataclass(frozen=True)
class NodeLink:
    """One node's namespace and the veth pair that joins it to the bridge."""

    node: str
    netns: str
    host_ifname: str
    node_ifname: str
    address: str
    """With prefix length, e.g. ``172.30.0.2/24``."""
    gateway: str
    """The bridge address: the node's default route."""
    mtu: int
    alias: str


@dataclass(frozen=True)
class UnderlayPlan:
    cluster: str
    bridge: str
    bridge_address: str
    """With prefix length, e.g. ``172.30.0.1/24``."""
    bridge_alias: str
    mtu: int
    netns_prefix: str
    """Every namespace of this cluster, and only those, starts with it."""
    pod_cidr: str
    """Routed onto the bridge as a whole (see _claim_pod_range)."""
    nodes: tuple[NodeLink, ...]

    def node(self, name: str) -> NodeLink:
        for link in self.nodes:
            if link.node == name:
                return link
        raise UnderlayError(f"node {name!r} is not in the underlay plan of cluster "
                            f"{self.cluster!r}")


def _hash(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def bridge_name(cluster: str) -> str:
    """``kw-`` and 12 hex digits of the cluster name's hash (15 bytes)."""
    return "kw-" + _hash(cluster, IFNAMSIZ - 3)


def host_veth_name(cluster: str, node: str) -> str:
    """``kv-`` and 12 hex digits of a hash of cluster and node (15 bytes)."""
    return "kv-" + _hash(f"{cluster}/{node}", IFNAMSIZ - 3)


def netns_name(cluster: str, node: str) -> str:
    """``kwire-<cluster>_<node>``; a node part too long for NETNS_MAX is cut and followed
    by a hash of the whole node name (the prefix stays whole: teardown() relies on it)."""
    prefix = f"{NETNS_PREFIX}{cluster}_"
    if len(prefix) + len(node) <= NETNS_MAX:
        return prefix + node
    return f"{prefix}{node[:NETNS_MAX - len(prefix) - 9]}-{_hash(node, 8)}"


def worker_names(cluster: str, names: list[str] | tuple[str, ...], count: int,
                 removed: Collection[str] = ()) -> list[str]:
    """`names` grown until `count` of them are not `removed`, with kind's names
    (``<cluster>-worker``, ``<cluster>-worker2``, ...); the names already there keep their
    places, and a removed node's name is not given again."""
    grown = list(names)
    index = 1
    while len([n for n in grown if n not in removed]) < count:
        name = f"{cluster}-worker{index if index > 1 else ''}"
        if name not in grown:
            grown.append(name)
        index += 1
    return grown


REMOVED = "removed"
"""What follows a removed node's name in the node list (see parse_node_list)."""


def parse_node_list(text: str) -> tuple[list[str], set[str]]:
    """A cluster's node list (config.nodes_file): every node name it ever had, one a line,
    in the order they were added, and those followed by REMOVED. The list only grows, so
    a node's place, and with it its address, never changes (see plan_underlay)."""
    names, removed = [], set()
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 2 or fields[1:] not in ([], [REMOVED]):
            raise UnderlayError(f"node list line {number}: expected NAME or NAME {REMOVED}, "
                                f"got {line!r}")
        names.append(fields[0])
        if fields[1:]:
            removed.add(fields[0])
    return names, removed


def format_node_list(names: list[str] | tuple[str, ...], removed: Collection[str] = ()) -> str:
    return "".join(f"{n} {REMOVED}\n" if n in removed else f"{n}\n" for n in names)


def plan_underlay(config: ClusterConfig, node_names: list[str] | tuple[str, ...],
                  *, removed: Collection[str] = (), mtu: int = DEFAULT_MTU) -> UnderlayPlan:
    """The bridge and node namespaces of `config`'s cluster, with no side effect.

    Node i (0-based, in the order given) gets the underlay address i + 2 places after the
    network address (the host has the first one), so callers keep the order in which
    nodes were created and append new ones: a node's address never changes. The nodes in
    `removed` keep their places, and so their addresses, but are not planned.
    """
    bad = [n for n in node_names if len(n) > 253 or not _DNS_SUBDOMAIN.match(n)]
    if bad:
        raise UnderlayError(f"invalid node names {bad}: use DNS subdomains "
                            "(lower-case letters, digits, '-' and '.')")
    dup = sorted({n for n in node_names if list(node_names).count(n) > 1})
    if dup:
        raise UnderlayError(f"duplicate node names: {', '.join(dup)}")
    net = ipaddress.ip_network(config.underlay_cidr)
    room, below = net.num_addresses - 3, ""
    pool = config.load_balancer_cidr
    if pool is not None and ipaddress.ip_network(pool).subnet_of(net):
        # Node addresses count up from the bottom and must stop below the pool.
        start = ipaddress.ip_network(pool).network_address
        room, below = min(room, int(start) - int(net.network_address) - 2), \
            f" below the load-balancer pool {pool}"
    if len(node_names) > room:
        raise UnderlayError(f"underlay_cidr {net} has room for {room} nodes{below}, "
                            f"not {len(node_names)}")
    if not 68 <= mtu <= 65535:
        raise UnderlayError(f"mtu {mtu} is out of range (68-65535)")
    gateway = config.underlay_host_address
    nodes = tuple(
        NodeLink(node=name, netns=netns_name(config.name, name),
                 host_ifname=host_veth_name(config.name, name), node_ifname=NODE_IFNAME,
                 address=f"{net.network_address + 2 + i}/{net.prefixlen}", gateway=gateway,
                 mtu=mtu, alias=f"kwire:{config.name}/{name}")
        for i, name in enumerate(node_names) if name not in removed)
    return UnderlayPlan(cluster=config.name, bridge=bridge_name(config.name),
                        bridge_address=f"{gateway}/{net.prefixlen}",
                        bridge_alias=f"kwire:{config.name}", mtu=mtu,
                        netns_prefix=f"{NETNS_PREFIX}{config.name}_",
                        pod_cidr=config.pod_cidr, nodes=nodes)


# -- applier ---------------------------------------------------------------------------


class _Ip:
    """Runs `ip`; read() for queries, change() for commands that alter state (recorded)."""

    def __init__(self) -> None:
        self.changes: list[list[str]] = []

    @staticmethod
    def run(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                                  check=False, timeout=30)
        except FileNotFoundError:
            raise UnderlayError("`ip` is missing: apt-get install iproute2") from None
        except subprocess.TimeoutExpired:
            raise UnderlayError(f"{' '.join(cmd)} hung for 30s") from None

    def read(self, *args: str) -> list[dict] | None:
        """`ip -j ARGS` parsed, or None when the object does not exist."""
        out = self.run(["ip", "-j", *args])
        if out.returncode != 0:
            return None
        return json.loads(out.stdout or "[]")

    def change(self, *args: str, tolerate_missing: bool = False,
               stdin: str | None = None) -> None:
        cmd = ["ip", *args]
        out = self.run(cmd, stdin)
        if out.returncode != 0:
            if tolerate_missing and ("Cannot find" in out.stderr or "No such" in out.stderr):
                return
            raise UnderlayError(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
        self.changes.append(cmd)

    def link(self, name: str, netns: str | None = None) -> dict | None:
        found = self.read(*(["-n", netns] if netns else []), "link", "show", "dev", name)
        return found[0] if found else None

    def must_link(self, name: str, netns: str | None = None) -> dict:
        """The link just created (someone else deleting it meanwhile is an error)."""
        link = self.link(name, netns)
        if link is None:
            raise UnderlayError(f"interface {name} vanished right after it was created")
        return link

    def addresses(self, name: str, netns: str | None = None) -> set[str]:
        found = self.read(*(["-n", netns] if netns else []), "addr", "show", "dev", name) or []
        return {f"{a['local']}/{a['prefixlen']}" for link in found
                for a in link.get("addr_info", []) if a.get("family") == "inet"}

    def namespaces(self) -> set[str]:
        return {ns["name"] for ns in self.read("netns", "list") or []}


def _check_owner(link: dict, alias: str) -> None:
    if link.get("ifalias") != alias:
        raise UnderlayError(f"interface {link['ifname']} exists but is not {alias!r} "
                            f"(its alias is {link.get('ifalias')!r}); refusing to touch it (if "
                            f"an interrupted kwire run left it: ip link del dev {link['ifname']})")


def _converge_link(ip: _Ip, link: dict, mtu: int, netns: str | None = None,
                   master: str | None = None) -> None:
    ns = ["-n", netns] if netns else []
    name = link["ifname"]
    if link.get("mtu") != mtu:
        ip.change(*ns, "link", "set", "dev", name, "mtu", str(mtu))
    if master is not None and link.get("master") != master:
        ip.change(*ns, "link", "set", "dev", name, "master", master)
    if "UP" not in link.get("flags", []):
        ip.change(*ns, "link", "set", "dev", name, "up")


def _converge_address(ip: _Ip, name: str, address: str, netns: str | None = None) -> None:
    ns = ["-n", netns] if netns else []
    have = ip.addresses(name, netns)
    if have == {address}:
        return
    if have:
        ip.change(*ns, "-4", "addr", "flush", "dev", name)
    ip.change(*ns, "addr", "add", address, "dev", name)


def _forwarding_off(knob: str) -> bool:
    """Switch IPv4 forwarding off for packets arriving on the bridge; True if it was on.

    Setting net.ipv4.ip_forward later (as Docker does) turns it back on for every
    interface, so each apply() checks it again."""
    path = Path(knob)
    if path.read_text().strip() == "0":
        return False
    path.write_text("0\n")
    return True


def _forwarding_on(ip: _Ip, netns: str) -> None:
    """Switch IPv4 forwarding on inside a node's namespace: the node routes for its pods
    (the host reaches them through it), as a Kubernetes node must. Its own namespace's
    knob only: /proc/sys/net is the reader's network namespace."""
    knob = "/proc/sys/net/ipv4/ip_forward"
    now = ip.run(["ip", "netns", "exec", netns, "cat", knob])
    if now.returncode != 0 or now.stdout.strip() != "1":
        ip.change("netns", "exec", netns, "tee", knob, stdin="1\n")


def _apply_bridge(ip: _Ip, plan: UnderlayPlan) -> None:
    link = ip.link(plan.bridge)
    if link is None:
        ip.change("link", "add", plan.bridge, "mtu", str(plan.mtu), "type", "bridge")
        ip.change("link", "set", "dev", plan.bridge, "alias", plan.bridge_alias)
        link = ip.must_link(plan.bridge)
    _check_owner(link, plan.bridge_alias)
    _converge_address(ip, plan.bridge, plan.bridge_address)
    _converge_link(ip, link, plan.mtu)
    knob = f"/proc/sys/net/ipv4/conf/{plan.bridge}/forwarding"
    if _forwarding_off(knob):
        ip.changes.append(["write", knob, "0"])
    _claim_pod_range(ip, plan)


def _claim_pod_range(ip: _Ip, plan: UnderlayPlan) -> None:
    """Route the whole pod range onto the bridge. A packet from the host to a pod address
    no node has (yet, or any more) then stays on the bridge instead of taking the default
    route out of a real interface, and the range is a host route that every other
    cluster's `kwire up` sees as taken, whatever its state root. The route controller's
    routes, one per node, are more specific."""
    _claim_range(ip, plan.bridge, plan.pod_cidr, "pod range")


def _claim_range(ip: _Ip, bridge: str, cidr: str, what: str) -> None:
    """Route `cidr` onto `bridge` with kwire's protocol, unless one of kwire's routes
    there has it already (the route controller's route via a node, say). Another
    interface's route to exactly this range is refused, never replaced."""
    found = ip.read("-N", "-4", "route", "show", "exact", cidr, "table", "main") or []
    if other := next((r for r in found if r.get("dev") != bridge), None):
        raise UnderlayError(f"the host has a route to the {what} {cidr} that does not go "
                            f"through {bridge} ({json.dumps(other)}); refusing to replace it")
    if not any(r.get("protocol") == str(ROUTE_PROTOCOL) for r in found):
        ip.change("route", "replace", cidr, "dev", bridge, "proto", str(ROUTE_PROTOCOL))


def claim_ranges(bridge: str, ranges: dict[str, str]) -> list[list[str]]:
    """Route each range (name -> CIDR) onto the existing `bridge` as the pod range is: the
    service range before the route controller moves it to a node, a load-balancer pool
    outside the underlay. They go with the bridge. Returns the commands run."""
    ip = _Ip()
    for what, cidr in ranges.items():
        _claim_range(ip, bridge, cidr, what)
    return ip.changes


def _apply_node(ip: _Ip, plan: UnderlayPlan, node: NodeLink) -> None:
    if node.netns not in ip.namespaces():
        ip.change("netns", "add", node.netns)
    host = ip.link(node.host_ifname)
    if host is not None:
        _check_owner(host, node.alias)
    inner = ip.link(node.node_ifname, node.netns)
    if host is None or inner is None:
        # Half a pair (an interrupted apply): start the pair over.
        if host is not None:
            ip.change("link", "del", "dev", node.host_ifname, tolerate_missing=True)
        if inner is not None:
            ip.change("-n", node.netns, "link", "del", "dev", node.node_ifname,
                      tolerate_missing=True)
        ip.change("link", "add", node.host_ifname, "mtu", str(node.mtu), "type", "veth",
                  "peer", "name", node.node_ifname, "mtu", str(node.mtu), "netns", node.netns)
        ip.change("link", "set", "dev", node.host_ifname, "alias", node.alias)
        host = ip.must_link(node.host_ifname)
        inner = ip.must_link(node.node_ifname, node.netns)
    _converge_link(ip, host, node.mtu, master=plan.bridge)

    lo = ip.link("lo", node.netns)
    if lo is not None and "UP" not in lo.get("flags", []):
        ip.change("-n", node.netns, "link", "set", "dev", "lo", "up")
    _converge_address(ip, node.node_ifname, node.address, node.netns)
    _converge_link(ip, inner, node.mtu, netns=node.netns)
    _forwarding_on(ip, node.netns)
    routes = ip.read("-n", node.netns, "-4", "route", "show", "default") or []
    if [(r.get("gateway"), r.get("dev")) for r in routes] != [(node.gateway, node.node_ifname)]:
        ip.change("-n", node.netns, "-4", "route", "replace", "default", "via", node.gateway,
                  "dev", node.node_ifname)


def apply(plan: UnderlayPlan) -> list[list[str]]:
    """Make the host match `plan`: the bridge, then every node.

    Returns the commands that changed something (``["write", path, value]`` for a
    /proc/sys knob), so a second run with the same plan returns [] and a plan with one
    more node returns only that node's commands. Nodes missing from the plan are left
    alone: remove them with remove_node()."""
    ip = _Ip()
    _apply_bridge(ip, plan)
    for node in plan.nodes:
        _apply_node(ip, plan, node)
    return ip.changes


def _remove_link(ip: _Ip, link: NodeLink) -> None:
    if link.netns in ip.namespaces():
        # Deleting the namespace destroys eth0 and with it the whole veth pair.
        ip.change("netns", "del", link.netns, tolerate_missing=True)
    host = ip.link(link.host_ifname)
    if host is not None and host.get("ifalias") == link.alias:
        ip.change("link", "del", "dev", link.host_ifname, tolerate_missing=True)


def remove_node(plan: UnderlayPlan, node: str) -> list[list[str]]:
    """Remove `node`'s namespace and veth pair (whatever of them exists)."""
    ip = _Ip()
    _remove_link(ip, plan.node(node))
    return ip.changes


def teardown(plan: UnderlayPlan) -> list[list[str]]:
    """Remove the cluster's whole underlay, even nodes the plan does not list: every
    namespace named with the cluster's prefix, every interface carrying the cluster's
    alias, then the bridge. Safe on partial or absent state."""
    ip = _Ip()
    for link in plan.nodes:
        _remove_link(ip, link)
    for ns in sorted(ip.namespaces()):
        if ns.startswith(plan.netns_prefix):
            ip.change("netns", "del", ns, tolerate_missing=True)
    for link in ip.read("link", "show") or []:
        alias = link.get("ifalias", "")
        if alias.startswith(plan.bridge_alias + "/") and link["ifname"] != plan.bridge:
            ip.change("link", "del", "dev", link["ifname"], tolerate_missing=True)
    bridge = ip.link(plan.bridge)
    if bridge is not None and bridge.get("ifalias") == plan.bridge_alias:
        ip.change("link", "del", "dev", plan.bridge, tolerate_missing=True)
    return ip.changes
