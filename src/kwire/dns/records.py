"""Cluster DNS records as CoreDNS's kubernetes plugin serves them (Kubernetes
DNS-Based Service Discovery, schema 1.0.1): the pure half of kwire's DNS.

`service_records` turns one Service and its EndpointSlices into the records it
owns; a `Zone` holds every Service's records indexed by lowercased name, so a
question is a dict lookup, and answers it with an rcode and the answer,
authority and additional sections. server.py keeps a Zone current from the
informers and puts the answers on the wire.
"""
from __future__ import annotations

import ipaddress
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A, DNSLabel

TTL = 5
SCHEMA_VERSION = "1.0.1"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")
SOA_TIMERS = (7200, 1800, 86400)
"""CoreDNS's SOA refresh, retry and expire; its minimum is the TTL."""
MAX_CNAME_CHAIN = 8

_A, _AAAA, _CNAME, _NS, _PTR, _SOA, _SRV, _TXT, _ANY = (
    QTYPE.A, QTYPE.AAAA, QTYPE.CNAME, QTYPE.NS, QTYPE.PTR, QTYPE.SOA, QTYPE.SRV, QTYPE.TXT,
    QTYPE.ANY)
"""Plain ints: QTYPE's attribute lookups cost more than the rest of a lookup."""

RRSets = dict[int, list[RR]]
Records = dict[str, RRSets]
"""Lowercased absolute name ("web.default.svc.cluster.local.") -> type -> records."""


def fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def endpoint_hostname(endpoint: Mapping, ip: str) -> str:
    """CoreDNS's name for an endpoint: its hostname, else its address with dashes."""
    return endpoint.get("hostname") or ip.replace(".", "-").replace(":", "-")


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


def reverse_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a full reverse name (lowercased, absolute) stands for, or None."""
    try:
        if name.endswith(".in-addr.arpa."):
            parts = name[:-len(".in-addr.arpa.")].split(".")
            return ipaddress.IPv4Address(".".join(reversed(parts))) if len(parts) == 4 else None
        if name.endswith(".ip6.arpa."):
            nibbles = name[:-len(".ip6.arpa.")].split(".")
            if len(nibbles) != 32 or any(len(n) != 1 for n in nibbles):
                return None
            digits = "".join(reversed(nibbles))
            return ipaddress.IPv6Address(":".join(digits[i:i + 4] for i in range(0, 32, 4)))
    except ValueError:
        return None
    return None


def pod_ip(label: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in a pod name label: 10-244-1-5, or 2001-db8--1 for IPv6."""
    for text in (label.replace("-", "."), label.replace("-", ":")):
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            continue
    return None


def _address(name: str, ip: str) -> RR:
    if ":" in ip:
        return RR(name, _AAAA, ttl=TTL, rdata=AAAA(ip))
    return RR(name, _A, ttl=TTL, rdata=A(ip))


class _Builder:
    """Records without duplicates, as CoreDNS drops repeated addresses and targets."""

    def __init__(self) -> None:
        self.records: Records = {}
        self._seen: set[tuple[str, int, str]] = set()

    def add(self, rr: RR) -> None:
        name = str(rr.rname)
        key = (name, rr.rtype, str(rr.rdata))
        if key not in self._seen:
            self._seen.add(key)
            self.records.setdefault(name, {}).setdefault(rr.rtype, []).append(rr)

    def srv(self, name: str, port: int, target: str) -> None:
        self.add(RR(name, _SRV, ttl=TTL, rdata=SRV(0, 100, port, target)))

    def weigh_srv(self) -> None:
        """CoreDNS shares a weight of 100 among the SRV records of one name."""
        for rrsets in self.records.values():
            srvs = rrsets.get(_SRV) or ()
            for rr in srvs:
                rr.rdata.weight = 100 // len(srvs)


def _ready(endpoint: Mapping) -> bool:
    """An unset ready condition means ready (EndpointSlice API); not-ready
    endpoints are left out, and publishNotReadyAddresses reaches DNS through
    the controller marking them ready."""
    return (endpoint.get("conditions") or {}).get("ready") is not False


def service_records(service: Mapping, slices: Iterable[Mapping], domain: str) -> Records:
    """The records of one Service (and its EndpointSlices) in zone `domain`:
    A/AAAA (the ClusterIPs, or every ready endpoint when headless), one name
    per ready endpoint (<hostname or a-b-c-d>.<svc>), SRV per port
    (_<port>._<proto>.<svc> for named ones, and all at <svc>), PTR for
    ClusterIPs and endpoint addresses, and a CNAME for ExternalName."""
    meta, spec = service["metadata"], service.get("spec") or {}
    base = f"{meta['name']}.{meta['namespace']}.svc.{fqdn(domain)}".lower()
    out = _Builder()
    if spec.get("type") == "ExternalName":
        if spec.get("externalName"):
            out.add(RR(base, _CNAME, ttl=TTL, rdata=CNAME(fqdn(spec["externalName"]))))
        return out.records
    cluster_ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip]
    headless = cluster_ips[:1] == ["None"]
    if cluster_ips and not headless:
        for ip in cluster_ips:
            out.add(_address(base, ip))
            out.add(RR(reverse_name(ip), _PTR, ttl=TTL, rdata=PTR(base)))
        for port in spec.get("ports") or ():
            _add_srv(out, base, port, port["port"], base)
    for s in slices:
        if s.get("addressType") not in ("IPv4", "IPv6"):
            continue
        for endpoint in s.get("endpoints") or ():
            if not _ready(endpoint):
                continue
            for ip in endpoint.get("addresses") or ():
                name = f"{endpoint_hostname(endpoint, ip)}.{base}".lower()
                out.add(_address(name, ip))
                out.add(RR(reverse_name(ip), _PTR, ttl=TTL, rdata=PTR(name)))
                if headless:
                    out.add(_address(base, ip))
                    for port in s.get("ports") or ():
                        _add_srv(out, base, port, port.get("port"), name)
    out.weigh_srv()
    return out.records


def _add_srv(out: _Builder, base: str, port: Mapping, number: int | None, target: str) -> None:
    if not number:
        return
    out.srv(base, number, target)
    if port.get("name"):
        proto = (port.get("protocol") or "TCP").lower()
        out.srv(f"_{port['name']}._{proto}.{base}".lower(), number, target)


@dataclass
class Answer:
    """One response's content; `chase` is a CNAME target outside every zone held
    here, for the server to resolve upstream and append."""
    rcode: int = RCODE.NOERROR
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    chase: str | None = None


class Zone:
    """The cluster zone (and the reverse names of the cluster's ranges): every
    Service's records, merged by name, with the fixed ones (SOA, NS,
    dns-version) and pod names answered from the name ("pods insecure")."""

    def __init__(self, domain: str = "cluster.local", reverse_cidrs: Iterable[str] = (),
                 nameservers: Iterable[str] = ()):
        self.domain = fqdn(domain.lower())
        self.networks = [ipaddress.ip_network(c) for c in reverse_cidrs]
        self.serial = int(time.time())
        self._owned: dict[str, Records] = {}
        self._names: dict[str, dict[str, RRSets]] = {}
        """name -> owner key -> records (PTRs of one address may come from several Services)."""
        self._soas: dict[str, RR] = {}
        self._parents: Counter[str] = Counter()
        """Empty non-terminals (ns.svc.<domain>, _tcp.<svc>...): they exist, with no records."""
        fixed = _Builder()
        fixed.add(RR(f"dns-version.{self.domain}", _TXT, ttl=TTL,
                     rdata=TXT(SCHEMA_VERSION)))
        ns = f"ns.dns.{self.domain}"
        for ip in nameservers:
            fixed.add(RR(self.domain, _NS, ttl=TTL, rdata=NS(ns)))
            fixed.add(_address(ns, ip))
        for name in (f"svc.{self.domain}", f"pod.{self.domain}"):
            self._parents[name] += 1
        self.put("", fixed.records)

    # --- keeping it current -------------------------------------------------------

    def put(self, owner: str, records: Records) -> None:
        """Replace what owner (a Service's namespace/name) contributes."""
        self.delete(owner)
        self._owned[owner] = records
        for name, rrsets in records.items():
            self._names.setdefault(name, {})[owner] = rrsets
            for parent in self._parents_of(name):
                self._parents[parent] += 1
        self._touch()

    def delete(self, owner: str) -> None:
        records = self._owned.pop(owner, None)
        if records is None:
            return
        for name in records:
            owners = self._names[name]
            del owners[owner]
            if not owners:
                del self._names[name]
            for parent in self._parents_of(name):
                self._parents[parent] -= 1
                if not self._parents[parent]:
                    del self._parents[parent]
        self._touch()

    def _touch(self) -> None:
        self.serial = max(self.serial + 1, int(time.time()))

    def _parents_of(self, name: str) -> list[str]:
        """The names above name, up to the zone apex."""
        if not name.endswith(self.domain):
            return []
        parents = []
        while name != self.domain:
            name = name.split(".", 1)[1]
            parents.append(name)
        return parents

    # --- answering ----------------------------------------------------------------

    def zone_of(self, name: str) -> str | None:
        """The zone a lowercased absolute name is answered from here, or None when
        it belongs upstream: reverse names only for addresses of the cluster's
        ranges or ones that have a PTR here."""
        if name == self.domain or name.endswith("." + self.domain):
            return self.domain
        if name.endswith(REVERSE_ZONES):
            zone = REVERSE_ZONES[0] if name.endswith(REVERSE_ZONES[0]) else REVERSE_ZONES[1]
            if name in self._names:
                return zone
            ip = reverse_ip(name)
            if ip is not None and any(ip in net for net in self.networks):
                return zone
        return None

    def rrsets(self, name: str) -> RRSets | None:
        """The records of a lowercased absolute name, None if it has none."""
        owners = self._names.get(name)
        if owners is not None:
            if len(owners) == 1:
                return next(iter(owners.values()))
            merged: RRSets = {}
            for rrsets in owners.values():
                for rtype, rrs in rrsets.items():
                    merged.setdefault(rtype, []).extend(rrs)
            return merged
        return self._pod(name)

    def _pod(self, name: str) -> RRSets | None:
        """<a-b-c-d>.<namespace>.pod.<domain>, answered from the name as CoreDNS's
        "pods insecure" does."""
        if not name.endswith(".pod." + self.domain):
            return None
        labels = name[:-len(".pod." + self.domain)].split(".")
        ip = pod_ip(labels[0]) if len(labels) == 2 else None
        if ip is None:
            return None
        rr = _address(name, str(ip))
        return {rr.rtype: [rr]}

    def exists(self, name: str) -> bool:
        return name in self._names or name in self._parents or name == self.domain \
            or (name.endswith(".pod." + self.domain) and name.count(".") ==
                self.domain.count(".") + 2)

    def soa(self, zone: str) -> RR:
        """The zone's SOA (made once per serial: every negative answer carries it)."""
        rr = self._soas.get(zone)
        if rr is None or rr.rdata.times[0] != self.serial:
            rr = self._soas[zone] = RR(zone, _SOA, ttl=TTL, rdata=SOA(
                f"ns.dns.{zone}", f"hostmaster.{zone}", (self.serial, *SOA_TIMERS, TTL)))
        return rr

    def lookup(self, qname: str, qtype: int) -> Answer | None:
        """The answer to (qname, qtype), the answer's owner names in the question's
        case; None when the name is not served here (forward it)."""
        name = fqdn(qname.lower())
        zone = self.zone_of(name)
        if zone is None:
            return None
        ans = Answer()
        owner = None if fqdn(qname) == name else DNSLabel(fqdn(qname))
        nodata = False
        for _ in range(MAX_CNAME_CHAIN):
            rrsets = self.rrsets(name)
            if rrsets is None and not self.exists(name):
                ans.rcode = RCODE.NXDOMAIN
                break
            rrsets = rrsets or {}
            if _CNAME in rrsets and qtype not in (_CNAME, _ANY):
                cname = rrsets[_CNAME][0]
                ans.answer.append(_renamed(cname, owner))
                target = str(cname.rdata.label)
                name = target.lower()
                owner = None if target == name else cname.rdata.label
                if self.zone_of(name) is None:
                    ans.chase = target
                    return ans
                continue
            if qtype == _ANY:
                found = [rr for rrs in rrsets.values() for rr in rrs]
            else:
                found = list(rrsets.get(qtype, ()))
            if name == zone and qtype in (_SOA, _ANY):
                found.insert(0, self.soa(zone))
            ans.answer += [_renamed(rr, owner) for rr in found]
            nodata = not found
            break
        if nodata or ans.rcode != RCODE.NOERROR:
            ans.authority.append(self.soa(zone))
        ans.additional = self._additional(ans.answer)
        return ans

    def _additional(self, answer: list[RR]) -> list[RR]:
        """Addresses of SRV targets and of the nameserver, as CoreDNS adds them."""
        extra: list[RR] = []
        seen: set[str] = set()
        for rr in answer:
            if rr.rtype in (_SRV, _NS):
                target = str(rr.rdata.target if rr.rtype == _SRV else rr.rdata.label).lower()
                if target in seen:
                    continue
                seen.add(target)
                rrsets = self.rrsets(target) or {}
                extra += rrsets.get(_A, []) + rrsets.get(_AAAA, [])
        return extra


def _renamed(rr: RR, owner: DNSLabel | None) -> RR:
    """rr under the question's spelling of its name (None: already spelt so)."""
    return rr if owner is None else RR(owner, rr.rtype, rr.rclass, rr.ttl, rr.rdata)
