"""ClusterIP and NodePort allocation, done when a Service is written (as the
service REST storage of the real API server does), given what the other Services
hold (the API server keeps that index).

The lower band of the service range (the first addresses: 10.96.0.1 for the
`kubernetes` Service, 10.96.0.10 for kube-dns) is kept for static assignment,
so dynamic allocation picks from the upper band first, as upstream does.
"""
from __future__ import annotations

import ipaddress
import random
from collections.abc import Container

from kwire.api import validation as v
from kwire.api.errors import APIError
from kwire.api.validation import Cause

NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


def parse_port_range(spec: str) -> tuple[int, int]:
    lo, _, hi = spec.partition("-")
    return int(lo), int(hi or lo)


class ServiceAllocator:
    def __init__(self, service_cidr: str, node_port_range: str, rng: random.Random | None = None):
        self.net = ipaddress.ip_network(service_cidr)
        self.ports = parse_port_range(node_port_range)
        self.rng = rng or random.Random()
        # calculateRangeOffset: min(max(16, size/16), 256) addresses, none at all
        # for ranges of 16 addresses or fewer.
        size = self.net.num_addresses
        self.static_band = 0 if size <= 16 else min(max(16, size // 16), 256)

    def allocate(self, svc: dict, old: dict | None, used_ips: Container[str],
                 used_ports: Container[tuple[int, str]]) -> list[Cause]:
        """Fill spec.clusterIP(s) and nodePorts of svc in place; causes when it cannot.
        used_*: what the other Services hold (an index the caller keeps)."""
        spec = svc.setdefault("spec", {})
        causes = self._cluster_ip(spec, old, used_ips)
        causes += self._node_ports(spec, old, used_ports)
        return causes

    def _cluster_ip(self, spec: dict, old: dict | None, used: Container[str]) -> list[Cause]:
        if spec.get("type") == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
            return []
        ip = spec.get("clusterIP") or ((spec.get("clusterIPs") or [None])[0])
        if old is not None:
            old_ip = old.get("spec", {}).get("clusterIP")
            if not ip and old_ip:
                ip = old_ip
            if ip == old_ip and ip:
                spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
                return []
        if ip == "None":
            spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
            return []
        if ip:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return [v.invalid("spec.clusterIPs[0]", ip, "must be a valid IP address")]
            if addr not in self.net or addr in (self.net.network_address,
                                                self.net.broadcast_address):
                return [v.invalid("spec.clusterIPs[0]", ip,
                                  "provided IP is not in the valid range. The range of valid "
                                  f"IPs is {self.net}")]
            if ip in used:
                return [v.invalid("spec.clusterIPs[0]", ip, "provided IP is already allocated")]
        else:
            ip = self._pick_ip(used)
            if ip is None:
                raise APIError(500, "Internal error occurred: failed to allocate a serviceIP: "
                               "range is full", "InternalError")
        spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
        return []

    def _pick_ip(self, used: Container[str]) -> str | None:
        first = int(self.net.network_address) + 1
        last = int(self.net.broadcast_address) - 1
        upper = first + self.static_band
        for lo, hi in ((upper, last), (first, upper - 1)):
            if lo > hi:
                continue
            start = self.rng.randint(lo, hi)
            for n in range(hi - lo + 1):
                cand = str(ipaddress.ip_address(lo + (start - lo + n) % (hi - lo + 1)))
                if cand not in used:
                    return cand
        return None

    def _node_ports(self, spec: dict, old: dict | None,
                    used: Container[tuple[int, str]]) -> list[Cause]:
        ports = spec.get("ports") or []
        if spec.get("type", "ClusterIP") not in NODE_PORT_TYPES:
            causes = []
            for i, p in enumerate(ports):
                if p.get("nodePort"):
                    causes.append(v.forbidden(f"spec.ports[{i}].nodePort",
                                              "may not be used when `type` is 'ClusterIP'"))
            return causes
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                     for p in ((old or {}).get("spec", {}).get("ports") or [])
                     if (old or {}).get("spec", {}).get("type") in NODE_PORT_TYPES}
        causes: list[Cause] = []
        lo, hi = self.ports
        mine: set[tuple[int, str]] = set()
        for i, p in enumerate(ports):
            proto = p.get("protocol", "TCP")
            np = p.get("nodePort") or old_ports.get((p.get("port"), proto))
            if np:
                if not lo <= np <= hi:
                    causes.append(v.invalid(f"spec.ports[{i}].nodePort", np,
                                            f"provided port is not in the valid range. The "
                                            f"range of valid ports is {lo}-{hi}"))
                elif (np, proto) in used:
                    causes.append(v.invalid(f"spec.ports[{i}].nodePort", np,
                                            "provided port is already allocated"))
                p["nodePort"] = np
                mine.add((np, proto))
        for p in ports:
            if p.get("nodePort"):
                continue
            proto = p.get("protocol", "TCP")
            start = self.rng.randint(lo, hi)
            for n in range(hi - lo + 1):
                cand = lo + (start - lo + n) % (hi - lo + 1)
                if (cand, proto) not in used and (cand, proto) not in mine:
                    p["nodePort"] = cand
                    mine.add((cand, proto))
                    break
            else:
                raise APIError(500, "Internal error occurred: failed to allocate a nodePort: "
                               "range is full", "InternalError")
        return causes


def addresses(service: dict) -> tuple[list[str], list[tuple[int, str]]]:
    """The ClusterIPs and (nodePort, protocol) pairs a Service holds."""
    spec = service.get("spec") or {}
    ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None"]
    ports = [(p["nodePort"], p.get("protocol", "TCP")) for p in spec.get("ports") or []
             if p.get("nodePort")]
    return ips, ports
