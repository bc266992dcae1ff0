"""The service proxy as kube-proxy's nftables mode builds it: the pure part.

Services + EndpointSlices -> a ``State`` (the data model: chains of small typed rules and
the elements of the dispatch maps) -> nftables text. The model is the source of truth:
``render`` writes it as one ``table ip kwire-proxy``, ``diff`` writes only what changed
between two states, and ``evaluate`` walks it to say what a packet gets, so unit tests
check behaviour without a kernel.

Shape (KEP-3866, with two departures for scale, below):
  - ``services`` chain: off-cluster sources to a ClusterIP (set ``cluster-ips``) are
    marked for masquerade; then ``ip daddr . meta l4proto . th dport vmap @service-ips``,
    then ``ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports``;
  - a Service with no ClientIP affinity and Cluster traffic policies (the common case)
    has no chain of its own: its frontends go to the shared ``random-<n>`` chain, which
    picks ``pick-<i>`` by ``numgen random mod n``; ``pick-<i>`` DNATs to
    ``endpoints-<i>[daddr . proto . dport]``, the i-th endpoint of whatever Service the
    packet was sent to. NodePort, externalIPs and LoadBalancer frontends go through
    ``external-random-<n>``, which marks for masquerade first;
  - otherwise ``service-<hash>-<ns>/<svc>/<proto>/<port>`` (cluster policy): ClientIP
    affinity lookups, then the random choice; ``local-<hash>-...`` the same over this
    node's endpoints only (Local policies); ``external-<hash>-...`` for NodePort,
    externalIPs and LoadBalancer ingress: masquerades (policy Cluster) or keeps the
    client IP and goes to the local chain (policy Local); ``endpoint-<hash>-...`` (with
    affinity only): affinity update, DNAT;
  - hairpin (a pod reaching itself through its Service): one set of this node's
    ``ep . ep`` pairs matched in postrouting, not a rule per endpoint chain;
  - filter side: ``no-endpoint-services`` / ``no-endpoint-nodeports`` reject (TCP reset,
    ICMP port unreachable) or drop (a Local policy with no local endpoint) before NAT;
  - ``masquerading`` in postrouting masquerades packets carrying MASQ_MARK.

Why the departures: kube-proxy's chain per service and per endpoint, chosen by
``numgen random mod N vmap { ... }``, puts ~60,000 chains and 10,000 anonymous maps
into the kernel for 10,000 Services of 5 endpoints; loading that took minutes here (each
verdict map into a chain is checked table-wide). Map elements load in about a second.
Where a chain per service remains, the random choice is iptables mode's cascade
(``numgen random mod N-i == 0`` before the i-th endpoint; each gets 1/N).
"""
from __future__ import annotations

import base64
import functools
import gc
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

TABLE = "kwire-proxy"
FAMILY = "ip"
MASQ_MARK = 0x4000
"""kube-proxy's masquerade bit."""
MAX_NAME = 255
"""Kernel limit on chain and set names (NFT_NAME_MAXLEN 256, with the NUL)."""
DEFAULT_AFFINITY_TIMEOUT = 10800
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}

SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
HAIRPIN = "hairpin-endpoints"
CLUSTER_IPS = "cluster-ips"
ENDPOINTS = "endpoints"
"""endpoints-<i>: frontend -> its i-th endpoint."""
RANDOM = "random"
PICK = "pick"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
NODEPORT_IPS = "nodeport-ips"
MARK_CHAIN = "mark-for-masquerade"
REJECT_CHAIN = "reject-chain"
DROP = "drop"
REJECT = f"goto {REJECT_CHAIN}"

# --- the data model ------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """One condition of a rule. kind: daddr-port (ip, proto, port), saddr (ip),
    saddr-in / saddr-not-in (cidr), saddr-local (fib saddr type local), in-set (set),
    random (n: true once in n, drawn afresh by each rule)."""

    kind: str
    args: tuple = ()


@dataclass(frozen=True)
class Rule:
    """Conditions then one action. action: jump/goto (chain), dnat (proto, ip, port),
    dnat-map (i: the packet's frontend looked up in map endpoints-<i>), random (goto
    one of the chains, by numgen), update (set, timeout; not a verdict)."""

    action: str
    args: tuple = ()
    matches: tuple[Match, ...] = ()


@dataclass(frozen=True)
class State:
    """What the Services and EndpointSlices generate; the base chains are constant.

    chains: chain name -> rules (service-/local-/external-/endpoint- chains);
    service_ips / no_endpoint_services: (ip, proto, port) -> verdict ("goto <chain>",
    "goto reject-chain", "drop"); service_nodeports / no_endpoint_nodeports: (proto,
    nodePort) -> verdict, matched on ``node_ips``; affinity_sets: ClientIP sets, one
    per endpoint of a Service with affinity, as kube-proxy does; hairpin: this node's
    endpoint IPs, whose packets to themselves through a Service are masqueraded (only
    a pod's own node sees its hairpin traffic)."""

    chains: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    service_ips: Mapping[tuple[str, str, int], str] = field(default_factory=dict)
    service_nodeports: Mapping[tuple[str, int], str] = field(default_factory=dict)
    no_endpoint_services: Mapping[tuple[str, str, int], str] = field(default_factory=dict)
    no_endpoint_nodeports: Mapping[tuple[str, int], str] = field(default_factory=dict)
    affinity_sets: frozenset[str] = frozenset()
    node_ips: frozenset[str] = frozenset()
    hairpin: frozenset[str] = frozenset()
    cluster_ips: frozenset[tuple[str, str, int]] = frozenset()
    """ClusterIP frontends with endpoints: off-cluster sources to them are masqueraded
    (kube-proxy's rule per service chain, as one set here)."""
    cluster_cidr: str = "10.244.0.0/16"
    endpoints: Mapping[tuple[str, str, int, int], str] = field(default_factory=dict)
    """(frontend ip, proto, port, i) -> "endpoint ip . port": the i-th endpoint of a
    Service without affinity or Local policies, picked by the shared random-<n> chains;
    written as map endpoints-<i>."""
    endpoint_maps: frozenset[int] = frozenset()
    """The i of every endpoints-<i> map (also of the ones no touched element is in)."""


@dataclass(frozen=True)
class Packet:
    """The first packet of a connection, as the evaluator sees it."""

    src: str
    dst: str
    proto: str  # "tcp" | "udp" | "sctp"
    dport: int
    from_local: bool = False
    """Sent by the node itself (``fib saddr type local``)."""


@dataclass(frozen=True)
class Verdict:
    """kind: "dnat", "reject", "drop" or "accept" (no service matched). For dnat, the
    endpoints the random choice may pick and those among them for which the packet is
    masqueraded (hairpin, off-cluster source, external traffic with policy Cluster)."""

    kind: str
    endpoints: frozenset[str] = frozenset()
    masquerade: frozenset[str] = frozenset()

    def __str__(self) -> str:
        if self.kind != "dnat":
            return self.kind
        return "dnat " + ",".join(sorted(self.endpoints))


# --- names ------------------------------------------------------------------------------


def chain_name(prefix: str, ident: str) -> str:
    """kube-proxy's ``<prefix>-<hash>-<ident>``; the hash covers the whole ident, so
    cutting the readable tail to nft's limit keeps names unique."""
    digest = base64.b32encode(hashlib.sha256(ident.encode()).digest()).decode()[:8]
    return f"{prefix}-{digest}-{ident}"[:MAX_NAME]


# --- building from API objects ----------------------------------------------------------


@dataclass(frozen=True)
class _Endpoint:
    ip: str
    port: int
    local: bool
    ident: str

    @property
    def chain(self) -> str:
        """Only Services with ClientIP affinity have endpoint chains."""
        return chain_name("endpoint", f"{self.ident}__{self.ip}/{self.port}")


def _conditions(ep: Mapping) -> tuple[bool, bool, bool]:
    cond = ep.get("conditions") or {}
    ready = cond.get("ready") is not False  # nil means ready (EndpointConditions doc)
    serving = cond["serving"] is not False if "serving" in cond else ready
    return ready, serving, bool(cond.get("terminating"))


def _usable(candidates: list[tuple[_Endpoint, bool, bool, bool]]) -> list[_Endpoint]:
    """Ready endpoints; when none, serving+terminating ones (KEP-1669)."""
    ready = [e for e, r, _, _ in candidates if r]
    return ready or [e for e, r, s, t in candidates if s and t]


def _endpoints(slices: Iterable[Mapping], ident: str, port: Mapping, proto: str,
               node_name: str) -> tuple[list[_Endpoint], list[_Endpoint]]:
    """(all usable, local usable) endpoints of one service port, deduplicated."""
    seen: dict[tuple[str, int], tuple[_Endpoint, bool, bool, bool]] = {}
    for sl in slices:
        if sl.get("addressType", "IPv4") != "IPv4":
            continue
        target = next((p.get("port") for p in sl.get("ports") or []
                       if (p.get("name") or "") == (port.get("name") or "")
                       and p.get("protocol", "TCP") == proto), None)
        if target is None:
            continue
        for ep in sl.get("endpoints") or []:
            flags = _conditions(ep)
            for ip in ep.get("addresses") or []:
                if (ip, target) not in seen or (flags[0] and not seen[(ip, target)][1]):
                    e = _Endpoint(ip, int(target), ep.get("nodeName") == node_name, ident)
                    seen[(ip, target)] = (e, *flags)
    cands = sorted(seen.values(), key=lambda c: (c[0].ip, c[0].port))
    return _usable(cands), _usable([c for c in cands if c[0].local])


def _service_of(sl: Mapping) -> tuple[str, str]:
    meta = sl.get("metadata") or {}
    return meta.get("namespace", "default"), (meta.get("labels") or {}).get(
        "kubernetes.io/service-name", "")


def build(services: Iterable[Mapping], endpoint_slices: Iterable[Mapping], node_name: str,
          node_ips: Iterable[str], cluster_cidr: str = "10.244.0.0/16") -> State:
    """The desired state of this node's proxy: a pure function of its inputs."""
    by_service: dict[tuple[str, str], list[Mapping]] = {}
    for sl in endpoint_slices:
        by_service.setdefault(_service_of(sl), []).append(sl)
    tracker = Tracker(node_name, node_ips, cluster_cidr)
    tracker.update({_key_of(svc): (svc, by_service.get(_key_of(svc), []))
                    for svc in services})
    return tracker.state()


def _key_of(svc: Mapping) -> tuple[str, str]:
    return svc["metadata"].get("namespace", "default"), svc["metadata"]["name"]


_MAP_FIELDS = ("endpoints", "service_ips", "service_nodeports", "no_endpoint_services",
               "no_endpoint_nodeports", "chains")
_SET_FIELDS = ("hairpin", "cluster_ips", "affinity_sets", "endpoint_maps")


class Tracker:
    """The State kept one Service at a time, as kube-proxy's change trackers let its
    partial syncs touch only what changed: ``update`` rebuilds the given Services and
    returns the before and after of just the entries they touch, for ``diff``, so a
    change among 10,000 Services costs what that Service costs.

    Each entry (map element, chain, set element) remembers which Services contribute
    it: shared chains (random-<n>) and set elements (a pod behind two Services) stay
    while anyone needs them; where two Services claim one key (the same external IP
    and port) the last by namespace/name wins, as in a full build."""

    def __init__(self, node_name: str, node_ips: Iterable[str], cluster_cidr: str):
        self.node_name, self.cluster_cidr = node_name, cluster_cidr
        self.node_ips = tuple(sorted(node_ips))
        self.parts: dict[tuple[str, str], _Draft] = {}
        self.entries: dict[str, dict] = {f: {} for f in (*_MAP_FIELDS, *_SET_FIELDS)}
        """field -> key -> {service key: value}."""

    def update(self, changes: Mapping[tuple[str, str], tuple[Mapping | None, list[Mapping]]],
               views: bool = True) -> tuple[State, State] | None:
        """changes: service key -> (Service or None when deleted, its EndpointSlices).
        With views False (a whole table follows anyway) nothing is returned."""
        collecting = gc.isenabled()
        gc.disable()  # 10^5 small objects would make it rescan the callers' caches often
        try:
            fresh = {k: _service_draft(svc, slices, self.node_name, self.node_ips,
                                       self.cluster_cidr) if svc is not None else None
                     for k, (svc, slices) in changes.items()}
            touched: dict[str, set] = {f: set() for f in self.entries}
            for k, part in fresh.items() if views else ():
                for p in (self.parts.get(k), part):
                    if p is not None:
                        for f, items in _fields(p):
                            touched[f].update(items)
            before = self._view(touched) if views else None
            for k, part in fresh.items():
                old = self.parts.pop(k, None)
                if old is not None:
                    for f, items in _fields(old):
                        entries = self.entries[f]
                        for item in items:
                            owners = entries[item]
                            del owners[k]
                            if not owners:
                                del entries[item]
                if part is not None:
                    self.parts[k] = part
                    for f, items in _fields(part):
                        entries = self.entries[f]
                        for item in items:
                            entries.setdefault(item, {})[k] = items[item] \
                                if isinstance(items, dict) else True
            return (before, self._view(touched)) if views else None
        finally:
            if collecting:
                gc.enable()

    def state(self) -> State:
        return self._view(None)

    def _view(self, keys: Mapping[str, set] | None) -> State:
        def pick(f: str) -> dict:
            entries = self.entries[f]
            wanted = entries if keys is None else (k for k in keys[f] if k in entries)
            return {k: _owned(entries[k]) for k in wanted}

        maps = {f: pick(f) for f in _MAP_FIELDS}
        sets = {f: frozenset(pick(f)) for f in _SET_FIELDS}
        return State(**maps, **sets, node_ips=frozenset(self.node_ips),
                     cluster_cidr=self.cluster_cidr)


def _owned(owners: dict):
    """The value of an entry: its one owner's, or the last Service's by namespace/name
    (shared chains and set elements have one value whoever owns them)."""
    if len(owners) == 1:
        return next(iter(owners.values()))
    first = next(iter(owners.values()))
    return first if isinstance(first, (bool, tuple)) else owners[max(owners)]


def _fields(part: _Draft):
    for f in _MAP_FIELDS:
        yield f, getattr(part, f)
    for f in _SET_FIELDS:
        yield f, getattr(part, f)


def _service_draft(svc: Mapping, slices: list[Mapping], node_name: str,
                   node_ips: tuple[str, ...], cluster_cidr: str) -> _Draft:
    ns = svc["metadata"].get("namespace", "default")
    name = svc["metadata"]["name"]
    spec = svc.get("spec") or {}
    acc = _Draft()
    cluster_ip = spec.get("clusterIP")
    if spec.get("type") == "ExternalName" or not cluster_ip or cluster_ip == "None":
        return acc
    external = spec.get("type") in ("NodePort", "LoadBalancer")
    ext_ips = list(spec.get("externalIPs") or [])
    if spec.get("type") == "LoadBalancer":
        ext_ips += [i["ip"] for i in (svc.get("status") or {}).get(
            "loadBalancer", {}).get("ingress") or [] if i.get("ip")]
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        affinity = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
            "timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT
    for port in spec.get("ports") or []:
        _add_port(acc, f"{ns}/{name}", spec, port, slices, node_name, node_ips, ext_ips,
                  external, affinity, cluster_cidr)
    return acc


@dataclass
class _Draft:
    """A State under construction."""

    chains: dict = field(default_factory=dict)
    service_ips: dict = field(default_factory=dict)
    service_nodeports: dict = field(default_factory=dict)
    no_endpoint_services: dict = field(default_factory=dict)
    no_endpoint_nodeports: dict = field(default_factory=dict)
    affinity_sets: set = field(default_factory=set)
    hairpin: set = field(default_factory=set)
    cluster_ips: set = field(default_factory=set)
    endpoints: dict = field(default_factory=dict)
    endpoint_maps: set = field(default_factory=set)


def _add_port(acc: _Draft, svc_id: str, spec: Mapping, port: Mapping, slices: list,
              node_name: str, node_ips: tuple[str, ...], ext_ips: list[str], external: bool,
              affinity: int, cluster_cidr: str) -> None:
    """One service port's chains and map elements, added to ``acc``."""
    chains, cluster_ip = acc.chains, spec["clusterIP"]
    proto_api = port.get("protocol", "TCP")
    proto = PROTOCOLS[proto_api]
    ident = f"{svc_id}/{proto}/{port.get('name') or port['port']}"
    all_eps, local_eps = _endpoints(slices, ident, port, proto_api, node_name)
    itp_local = spec.get("internalTrafficPolicy") == "Local"
    etp_local = external and spec.get("externalTrafficPolicy") == "Local"
    nodeport = port.get("nodePort") if external else None
    svc_port = int(port["port"])
    # no endpoint at all rejects; endpoints but none local under a Local policy drops
    no_endpoint = DROP if all_eps else REJECT
    if all_eps and not (affinity or itp_local or etp_local):
        _add_shared_port(acc, (cluster_ip, proto, svc_port), all_eps, ext_ips,
                         int(nodeport) if nodeport else None, node_ips)
        return

    def policy_chain(prefix: str, eps: list[_Endpoint]) -> str:
        chain = chain_name(prefix, ident)
        rules = []
        if affinity:
            rules += [Rule("goto", (e.chain,), (Match("in-set", (_affinity_set(e),)),))
                      for e in eps]
        for i, e in enumerate(eps):
            pick = (Match("random", (len(eps) - i,)),) if i < len(eps) - 1 else ()
            rules.append(Rule("goto", (e.chain,), pick) if affinity
                         else Rule("dnat", (proto, e.ip, e.port), pick))
            if e.local:
                acc.hairpin.add(e.ip)
            if affinity:
                chains[e.chain] = (Rule("update", (_affinity_set(e), affinity)),
                                   Rule("dnat", (proto, e.ip, e.port)))
                acc.affinity_sets.add(_affinity_set(e))
        chains[chain] = tuple(rules)
        return chain

    cluster_chain = policy_chain("service", all_eps) if all_eps else None
    local_chain = (policy_chain("local", local_eps)
                   if local_eps and (itp_local or etp_local) else None)

    internal = local_chain if itp_local else cluster_chain
    key = (cluster_ip, proto, svc_port)
    if internal:
        acc.service_ips[key] = f"goto {internal}"
        acc.cluster_ips.add(key)
    else:
        acc.no_endpoint_services[key] = no_endpoint

    if not (ext_ips or nodeport):
        return
    ext_target = local_chain if etp_local else cluster_chain
    if ext_target:
        ext_chain = chain_name("external", ident)
        if etp_local:  # pods and the node itself still use every endpoint
            chains[ext_chain] = (
                Rule("goto", (cluster_chain,), (Match("saddr-in", (cluster_cidr,)),)),
                Rule("jump", (MARK_CHAIN,), (Match("saddr-local"),)),
                Rule("goto", (cluster_chain,), (Match("saddr-local"),)),
                Rule("goto", (local_chain,)))
        else:
            chains[ext_chain] = (Rule("jump", (MARK_CHAIN,)), Rule("goto", (cluster_chain,)))
        ext_ips_map, ports_map, verdict = acc.service_ips, acc.service_nodeports, \
            f"goto {ext_chain}"
    else:
        ext_ips_map, ports_map, verdict = acc.no_endpoint_services, \
            acc.no_endpoint_nodeports, no_endpoint
    for ip in ext_ips:
        ext_ips_map[(ip, proto, svc_port)] = verdict
    if nodeport:
        ports_map[(proto, int(nodeport))] = verdict


def _add_shared_port(acc: _Draft, cluster: tuple[str, str, int], eps: list[_Endpoint],
                     ext_ips: list[str], nodeport: int | None,
                     node_ips: tuple[str, ...]) -> None:
    """The common case, with no chain of its own: the frontends map to the shared
    random-<n> chain (external ones through external-random-<n>, which masquerades) and
    their i-th endpoints go into map endpoints-<i>."""
    n = len(eps)
    _, proto, port = cluster
    chain, ext_chain = f"{RANDOM}-{n}", f"external-{RANDOM}-{n}"
    acc.chains.update(_shared_chains(n))
    acc.endpoint_maps.update(range(n))
    acc.service_ips[cluster] = f"goto {chain}"
    acc.cluster_ips.add(cluster)
    external = [(ip, proto, port) for ip in ext_ips]
    if nodeport:
        external += [(ip, proto, nodeport) for ip in node_ips]
        acc.service_nodeports[(proto, nodeport)] = f"goto {ext_chain}"
    if external:
        acc.chains[ext_chain] = _external_chain(n)
    acc.service_ips.update({(ip, proto, port): f"goto {ext_chain}" for ip in ext_ips})
    for frontend in [cluster, *external]:
        for i, e in enumerate(eps):
            acc.endpoints[(*frontend, i)] = f"{e.ip} . {e.port}"
    acc.hairpin.update(e.ip for e in eps if e.local)


@functools.cache
def _shared_chains(n: int) -> dict[str, tuple[Rule, ...]]:
    """random-<n> and the pick-<i> chains it goes to (made once: 10,000 Services share
    them)."""
    picks = tuple(f"{PICK}-{i}" for i in range(n))
    chains = {pick: (Rule("dnat-map", (i,)),) for i, pick in enumerate(picks)}
    chains[f"{RANDOM}-{n}"] = (Rule("random", picks),) if n > 1 else (Rule("goto", picks),)
    return chains


@functools.cache
def _external_chain(n: int) -> tuple[Rule, ...]:
    return Rule("jump", (MARK_CHAIN,)), Rule("goto", (f"{RANDOM}-{n}",))


def _affinity_set(e: _Endpoint) -> str:
    return "affinity-" + e.chain[len("endpoint-"):]


# --- rendering --------------------------------------------------------------------------

_SERVICES = f"""\
  chain services {{{{
    ip daddr . meta l4proto . th dport @{CLUSTER_IPS} ip saddr != {{cidr}} jump {MARK_CHAIN}
    ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}
    ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}
  }}}}
"""

_BASE = f"""\
  chain nat-prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    jump services
  }}
  chain nat-output {{
    type nat hook output priority -100; policy accept;
    jump services
  }}
  chain nat-postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ct status dnat ip saddr . ip daddr @{HAIRPIN} jump {MARK_CHAIN}
    jump masquerading
  }}
  chain {MARK_CHAIN} {{
    meta mark set meta mark | {MASQ_MARK:#x}
  }}
  chain masquerading {{
    meta mark & {MASQ_MARK:#x} == 0 return
    meta mark set meta mark ^ {MASQ_MARK:#x}
    masquerade fully-random
  }}
  chain service-endpoints-check {{
    ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}
    ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}
  }}
  chain {REJECT_CHAIN} {{
    meta l4proto tcp reject with tcp reset
    reject
  }}
  chain filter-input {{
    type filter hook input priority -110; policy accept;
    ct state new jump service-endpoints-check
  }}
  chain filter-forward {{
    type filter hook forward priority -110; policy accept;
    ct state new jump service-endpoints-check
  }}
  chain filter-output {{
    type filter hook output priority -110; policy accept;
    ct state new jump service-endpoints-check
  }}
"""

_ENDPOINTS_TYPE = "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service"
_MAP_TYPES = {
    SERVICE_IPS: "type ipv4_addr . inet_proto . inet_service : verdict",
    NO_ENDPOINT_SERVICES: "type ipv4_addr . inet_proto . inet_service : verdict",
    SERVICE_NODEPORTS: "type inet_proto . inet_service : verdict",
    NO_ENDPOINT_NODEPORTS: "type inet_proto . inet_service : verdict",
}
_SET_TYPE = "type ipv4_addr; flags dynamic,timeout;"


def render_match(m: Match) -> str:
    if m.kind == "daddr-port":
        ip, proto, port = m.args
        return f"ip daddr {ip} meta l4proto {proto} th dport {port}"
    if m.kind == "saddr":
        return f"ip saddr {m.args[0]}"
    if m.kind == "saddr-in":
        return f"ip saddr {m.args[0]}"
    if m.kind == "saddr-not-in":
        return f"ip saddr != {m.args[0]}"
    if m.kind == "saddr-local":
        return "fib saddr type local"
    if m.kind == "in-set":
        return f"ip saddr @{m.args[0]}"
    if m.kind == "random":
        return f"numgen random mod {m.args[0]} == 0"
    raise ValueError(m.kind)


def render_rule(r: Rule) -> str:
    if r.action in ("jump", "goto"):
        action = f"{r.action} {r.args[0]}"
    elif r.action == "dnat":
        proto, ip, port = r.args
        action = f"meta l4proto {proto} dnat to {ip}:{port}"
    elif r.action == "dnat-map":
        action = (f"meta l4proto {{ tcp, udp, sctp }} dnat ip to ip daddr . meta l4proto . "
                  f"th dport map @{ENDPOINTS}-{r.args[0]}")
    elif r.action == "random":
        vmap = ", ".join(f"{i} : goto {c}" for i, c in enumerate(r.args))
        action = f"numgen random mod {len(r.args)} vmap {{ {vmap} }}"
    elif r.action == "update":
        action = f"update @{r.args[0]} {{ ip saddr timeout {r.args[1]}s }}"
    else:
        raise ValueError(r.action)
    return " ".join([*(render_match(m) for m in r.matches), action])


_SET_TYPES = {NODEPORT_IPS: "ipv4_addr", HAIRPIN: "ipv4_addr . ipv4_addr",
              CLUSTER_IPS: "ipv4_addr . inet_proto . inet_service"}


def _sets(state: State) -> dict[str, set[str]]:
    """The element sets' contents, as nft writes them."""
    return {NODEPORT_IPS: set(state.node_ips), HAIRPIN: {f"{ip} . {ip}" for ip in state.hairpin},
            CLUSTER_IPS: {_key(k) for k in state.cluster_ips}}


def _key(k: tuple) -> str:
    return " . ".join(map(str, k))


def _maps(state: State) -> dict[str, Mapping]:
    maps: dict[str, dict] = {f"{ENDPOINTS}-{i}": {} for i in sorted(state.endpoint_maps)}
    for (ip, proto, port, i), target in state.endpoints.items():
        maps.setdefault(f"{ENDPOINTS}-{i}", {})[(ip, proto, port)] = target
    return {**maps, SERVICE_IPS: state.service_ips, SERVICE_NODEPORTS: state.service_nodeports,
            NO_ENDPOINT_SERVICES: state.no_endpoint_services,
            NO_ENDPOINT_NODEPORTS: state.no_endpoint_nodeports}


def _map_type(name: str) -> str:
    return _MAP_TYPES.get(name, _ENDPOINTS_TYPE)


def _elements(items: Iterable[str]) -> str:
    items = list(items)
    return f" elements = {{ {', '.join(items)} }}" if items else ""


def render(state: State) -> str:
    """The whole table, replacing any previous one, as one ``nft -f`` transaction."""
    out = [f"add table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}",
           f"table {FAMILY} {TABLE} {{"]
    out += [f"  set {name} {{ type {_SET_TYPES[name]};{_elements(sorted(elems))} }}"
            for name, elems in _sets(state).items()]
    for name, elems in _maps(state).items():  # element order is nft's business
        body = _elements(f"{_key(k)} : {v}" for k, v in elems.items())
        out.append(f"  map {name} {{ {_map_type(name)};{body} }}")
    out += [f"  set {s} {{ {_SET_TYPE} }}" for s in sorted(state.affinity_sets)]
    out.append(_SERVICES.format(cidr=state.cluster_cidr) + _BASE.rstrip("\n"))
    for name in sorted(state.chains):  # sorted: the same state always reads the same
        out.append(f"  chain {name} {{")
        out += [f"    {render_rule(r)}" for r in state.chains[name]]
        out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


def ruleset(services: Iterable[Mapping], endpoint_slices: Iterable[Mapping], node_name: str,
            node_ips: Iterable[str], cluster_cidr: str = "10.244.0.0/16") -> str:
    return render(build(services, endpoint_slices, node_name, node_ips, cluster_cidr))


def diff(old: State | None, new: State) -> str:
    """Only the changes from ``old`` to ``new``, ordered so one ``nft -f`` transaction
    never references a missing chain or map: map elements out, maps, chains and sets in,
    rules rewritten, chains, sets and maps out, map elements in. ``old`` None is a full
    resync."""
    if old is None or old.cluster_cidr != new.cluster_cidr:
        return render(new)
    t = f"{FAMILY} {TABLE}"
    out: list[str] = []
    maps_old, maps_new = _maps(old), _maps(new)
    adds: list[str] = []
    for name in maps_new:
        o, n = maps_old.get(name, {}), maps_new[name]
        gone = [k for k in sorted(o) if k not in n or n[k] != o[k]]
        if gone:
            out.append(f"delete element {t} {name} {{ {', '.join(_key(k) for k in gone)} }}")
        new_elems = [f"{_key(k)} : {n[k]}" for k in sorted(n) if o.get(k) != n[k]]
        if new_elems:
            adds.append(f"add element {t} {name} {{ {', '.join(new_elems)} }}")
    sets_old, sets_new = _sets(old), _sets(new)
    set_adds = []
    for name, elems in sets_new.items():
        gone, added = sorted(sets_old[name] - elems), sorted(elems - sets_old[name])
        if gone:
            out.append(f"delete element {t} {name} {{ {', '.join(gone)} }}")
        if added:
            set_adds.append(f"add element {t} {name} {{ {', '.join(added)} }}")
    adds = set_adds + adds
    gone_maps = [name for name in maps_old if name not in maps_new]  # with their elements
    out += [f"add map {t} {name} {{ {_map_type(name)}; }}"
            for name in maps_new if name not in maps_old]
    out += [f"add chain {t} {c}" for c in sorted(new.chains) if c not in old.chains]
    out += [f"add set {t} {s} {{ {_SET_TYPE} }}"
            for s in sorted(new.affinity_sets - old.affinity_sets)]
    for c in sorted(new.chains):
        if c in old.chains and old.chains[c] == new.chains[c]:
            continue
        if c in old.chains:
            out.append(f"flush chain {t} {c}")
        out += [f"add rule {t} {c} {render_rule(r)}" for r in new.chains[c]]
    gone_chains = sorted(c for c in old.chains if c not in new.chains)
    out += [f"flush chain {t} {c}" for c in gone_chains]  # drop references among them
    out += [f"delete chain {t} {c}" for c in gone_chains]
    out += [f"delete set {t} {s}" for s in sorted(old.affinity_sets - new.affinity_sets)]
    out += [f"delete map {t} {name}" for name in gone_maps]
    out += adds
    return "\n".join(out) + "\n" if out else ""


# --- evaluating -------------------------------------------------------------------------


def evaluate(state: State, packet: Packet,
             affinity: Mapping[str, Iterable[str]] | None = None) -> Verdict:
    """What the table does to the first packet of a connection. ``affinity`` holds the
    contents of the affinity sets (set name -> client IPs), as the datapath filled them."""
    key = (packet.dst, packet.proto, packet.dport)
    np_key = (packet.proto, packet.dport)
    is_node_ip = packet.dst in state.node_ips
    # filter hooks (priority -110) come before DNAT
    block = state.no_endpoint_services.get(key) or (
        state.no_endpoint_nodeports.get(np_key) if is_node_ip else None)
    if block:
        return Verdict("drop" if block == DROP else "reject")
    target = state.service_ips.get(key) or (
        state.service_nodeports.get(np_key) if is_node_ip else None)
    if not target:
        return Verdict("accept")
    sets = {k: set(v) for k, v in (affinity or {}).items()}
    off_cluster = key in state.cluster_ips and \
        ipaddress.ip_address(packet.src) not in ipaddress.ip_network(state.cluster_cidr)
    verdict = _run(state, target.split(" ", 1)[1], packet, off_cluster, sets) or \
        Verdict("accept")
    hairpin = frozenset(ep for ep in verdict.endpoints if ep.rsplit(":", 1)[0] == packet.src
                        and packet.src in state.hairpin)
    return Verdict(verdict.kind, verdict.endpoints, verdict.masquerade | hairpin)


def _matches(m: Match, p: Packet, sets: Mapping[str, set]) -> bool:
    if m.kind == "daddr-port":
        return (p.dst, p.proto, p.dport) == m.args
    if m.kind == "saddr":
        return p.src == m.args[0]
    if m.kind in ("saddr-in", "saddr-not-in"):
        inside = ipaddress.ip_address(p.src) in ipaddress.ip_network(m.args[0])
        return inside == (m.kind == "saddr-in")
    if m.kind == "saddr-local":
        return p.from_local
    if m.kind == "in-set":
        return p.src in sets.get(m.args[0], ())
    if m.kind == "random":
        return True
    raise ValueError(m.kind)


def _run(state: State, chain: str, p: Packet, marked: bool,
         sets: Mapping[str, set]) -> Verdict | None:
    """Walk ``chain``; None when it falls off the end (return to the caller). A rule
    with a random condition may or may not fire, so its verdict joins the later ones."""
    picks: list[Verdict] = []
    for rule in state.chains.get(chain, ()):
        if not all(_matches(m, p, sets) for m in rule.matches):
            continue
        if rule.action == "jump":  # the model only ever jumps to MARK_CHAIN
            marked = True
            continue
        if rule.action == "goto":
            verdict = _run(state, rule.args[0], p, marked, sets)
        elif rule.action == "dnat":
            ep = f"{rule.args[1]}:{rule.args[2]}"
            verdict = Verdict("dnat", frozenset({ep}), frozenset({ep}) if marked else frozenset())
        elif rule.action == "dnat-map":
            eps = _mapped(state, (p.dst, p.proto, p.dport), rule.args[0])
            verdict = Verdict("dnat", eps, eps if marked else frozenset()) if eps else None
        elif rule.action == "random":
            picks += [v for v in (_run(state, c, p, marked, sets) for c in rule.args) if v]
            break
        else:
            continue
        if verdict is not None:
            picks.append(verdict)
        if not any(m.kind == "random" for m in rule.matches):
            break
    if not picks:
        return None
    return Verdict(picks[0].kind, frozenset().union(*(v.endpoints for v in picks)),
                   frozenset().union(*(v.masquerade for v in picks)))


def _mapped(state: State, frontend: tuple[str, str, int], i: int) -> frozenset[str]:
    """The ``ip:port`` map endpoints-<i> gives a frontend (none or one)."""
    found = state.endpoints.get((*frontend, i))
    return frozenset({found.replace(" . ", ":")} if found else ())


# --- stale UDP conntrack ----------------------------------------------------------------


def _targets(state: State, chain: str, frontend: tuple[str, str, int]) -> frozenset[str]:
    """Every ``ip:port`` a chain may DNAT a packet to ``frontend`` to."""
    found: set[str] = set()
    for rule in state.chains.get(chain, ()):
        if rule.action in ("jump", "goto") and rule.args[0] != MARK_CHAIN:
            found |= _targets(state, rule.args[0], frontend)
        elif rule.action == "dnat":
            found.add(f"{rule.args[1]}:{rule.args[2]}")
        elif rule.action == "dnat-map":
            found |= _mapped(state, frontend, rule.args[0])
        elif rule.action == "random":
            for c in rule.args:
                found |= _targets(state, c, frontend)
    return frozenset(found)


def _udp_frontends(state: State) -> dict[tuple[str, int], frozenset[str]]:
    out = {(ip, port): _targets(state, v.split(" ", 1)[1], (ip, proto, port))
           for (ip, proto, port), v in state.service_ips.items() if proto == "udp"}
    for (proto, port), v in state.service_nodeports.items():
        if proto == "udp":
            out.update({(ip, port): _targets(state, v.split(" ", 1)[1], (ip, proto, port))
                        for ip in state.node_ips})
    return out


def stale_udp(old: State, new: State) -> set[tuple[str, int, str]]:
    """(frontend IP, port, endpoint IP) whose UDP DNAT is gone: conntrack would keep
    sending that flow to the old endpoint, so the applier deletes those entries
    (``conntrack -D -p udp --orig-dst IP --orig-port-dst PORT --reply-src EP``)."""
    now = _udp_frontends(new)
    return {(ip, port, ep.rsplit(":", 1)[0])
            for (ip, port), eps in _udp_frontends(old).items()
            for ep in eps - now.get((ip, port), frozenset())}
