"""The service load-balancer controller (upstream's service controller, with a pool of
addresses as MetalLB's layer-2 mode has instead of a cloud): every Service of type
LoadBalancer without spec.loadBalancerClass gets an address of the cluster's
load-balancer pool in status.loadBalancer.ingress, which `kubectl get svc` shows as
EXTERNAL-IP. The route controller routes that address from the host via a node, whose
service proxy takes it from there.

`assign` is the pure part: Services in, one address (or why none) per Service out. It
is computed from the informer cache on every sync, so a restart hands out nothing in
use; an address two Services claim stays with the older one. As upstream, the
controller puts the finalizer service.kubernetes.io/load-balancer-cleanup on a Service
before giving it an address and takes it off, with the address, when the Service is
deleted or stops being a LoadBalancer.
"""
from __future__ import annotations

import ipaddress
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from kwire.client import ApiError, Client, Informers, WorkQueue, object_key, run_controller
from kwire.client.events import EventRecorder

log = logging.getLogger("kwire.controllers.loadbalancer")

FINALIZER = "service.kubernetes.io/load-balancer-cleanup"
KEY = "pool"
"""The work queue's only key: every sync assigns every address."""


@dataclass(frozen=True)
class Assignment:
    """A Service's address, or why it has none."""

    ip: str | None = None
    problem: str | None = None


def wants_address(service: dict) -> bool:
    """A LoadBalancer Service this controller serves (upstream's wantsLoadBalancer, for
    the default class), not being deleted."""
    spec = service.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass") \
        and not service["metadata"].get("deletionTimestamp")


def ingress(service: dict) -> list[dict]:
    return ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []


def _age(service: dict) -> tuple[str, str]:
    """Older first: creation time, then namespace/name for Services made in one second."""
    return service["metadata"].get("creationTimestamp") or "", object_key(service)


def assign(services: Iterable[dict], pool: str | None,
           reserved: Collection[str] = ()) -> dict[str, Assignment]:
    """namespace/name -> Assignment for every Service that wants an address.

    Oldest first, a Service gets its spec.loadBalancerIP if that is a free address of the
    pool (else none, and why), or keeps the pool address it has; then those still without
    one get the lowest free address. `reserved` addresses (the underlay's own) are never
    given."""
    wanting = sorted((s for s in services if wants_address(s)), key=_age)
    if pool is None:
        return {object_key(s): Assignment(problem="this cluster has no load-balancer pool")
                for s in wanting}
    net = ipaddress.ip_network(pool)
    unusable = {ipaddress.ip_address(a) for a in reserved}
    holder: dict[ipaddress.IPv4Address, str] = {}
    out: dict[str, Assignment] = {}

    def usable(address: str) -> ipaddress.IPv4Address | None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        return ip if ip in net and ip not in unusable else None

    for service in wanting:
        key = object_key(service)
        requested = (service.get("spec") or {}).get("loadBalancerIP")
        if requested:
            ip = usable(requested)
            if ip is None:
                out[key] = Assignment(problem=f"requested loadBalancerIP {requested} is not an "
                                              f"address of the pool {pool}")
            elif ip in holder:
                out[key] = Assignment(problem=f"requested loadBalancerIP {requested} is in use "
                                              f"by service {holder[ip]}")
            else:
                holder[ip], out[key] = key, Assignment(str(ip))
            continue
        for entry in ingress(service):
            ip = usable(entry.get("ip") or "")
            if ip is not None and ip not in holder:
                holder[ip], out[key] = key, Assignment(str(ip))
                break
    free = (ip for ip in (net.hosts() if net.prefixlen < 31 else net)
            if ip not in unusable and ip not in holder)
    for service in wanting:
        key = object_key(service)
        if key not in out:
            ip = next(free, None)
            out[key] = Assignment(str(ip)) if ip is not None else \
                Assignment(problem=f"no free address in pool {pool}")
    return out


def _inputs(service: dict) -> tuple:
    spec, meta = service.get("spec") or {}, service["metadata"]
    return (spec.get("type"), spec.get("loadBalancerClass"), spec.get("loadBalancerIP"),
            meta.get("deletionTimestamp"), meta.get("finalizers"), ingress(service))


class LoadBalancerController:
    def __init__(self, client: Client, informers: Informers, *, pool: str | None,
                 reserved: Collection[str] = ()):
        self.client, self.pool, self.reserved = client, pool, reserved
        self.services = informers.get("v1", "services")
        self.queue: WorkQueue[str] = WorkQueue(base_delay=0.2, max_delay=10.0)
        self.recorder = EventRecorder(client, "service-controller")
        self.written: dict[str, dict] = {}
        """Services as this controller last wrote them, until the cache has caught up:
        a sync in between must not give their addresses again."""
        self.failed: dict[str, str] = {}
        """The problem last reported per Service, so a sync does not repeat the event."""

    async def run(self) -> None:
        await run_controller(self.queue, self.sync, 1, "service-lb",
                             ((self.services, self._on_service),), wait_synced=True)

    def _on_service(self, etype: str, obj: dict, old: dict | None) -> None:
        if etype != "MODIFIED" or old is None or _inputs(obj) != _inputs(old):
            self.queue.add(KEY)

    def _view(self) -> list[dict]:
        """The cached Services, each replaced by what this controller wrote if newer."""
        out, newer = [], {}
        for service in self.services.store.list():
            key, meta = object_key(service), service["metadata"]
            mine = self.written.get(key)
            if mine is not None and mine["metadata"].get("uid") == meta.get("uid") and \
                    int(mine["metadata"]["resourceVersion"]) > int(meta["resourceVersion"]):
                service = newer[key] = mine
            out.append(service)
        self.written = newer
        return out

    async def sync(self, key: str) -> bool:
        services = self._view()
        assignments = assign(services, self.pool, self.reserved)
        done = True
        for service in services:
            try:
                if wants_address(service):
                    await self._ensure(service, assignments[object_key(service)])
                elif FINALIZER in (service["metadata"].get("finalizers") or ()):
                    await self._clean_up(service)
            except ApiError as e:
                if e.code != 404:  # deleted meanwhile: nothing left to do
                    log.warning("service %s: %s", object_key(service), e)
                    done = False
        live = {object_key(s) for s in services}
        self.failed = {k: v for k, v in self.failed.items() if k in live}
        return done

    async def _ensure(self, service: dict, assignment: Assignment) -> None:
        key = object_key(service)
        want = [{"ip": assignment.ip, "ipMode": "VIP"}] if assignment.ip else []
        if assignment.problem and self.failed.get(key) != assignment.problem:
            await self.recorder.event(service, "Warning", "SyncLoadBalancerFailed",
                                      f"Error syncing load balancer: {assignment.problem}")
        if assignment.problem:
            self.failed[key] = assignment.problem
        else:
            self.failed.pop(key, None)
        if assignment.ip:
            service = await self._set_finalizer(service, True)
        if [{"ip": i.get("ip"), "ipMode": i.get("ipMode")} for i in ingress(service)] == want:
            return
        if assignment.ip:
            await self.recorder.event(service, "Normal", "EnsuringLoadBalancer",
                                      "Ensuring load balancer")
        await self._set_ingress(service, want)
        if assignment.ip:
            log.info("service %s: load-balancer address %s", key, assignment.ip)
            await self.recorder.event(service, "Normal", "EnsuredLoadBalancer",
                                      "Ensured load balancer")

    async def _clean_up(self, service: dict) -> None:
        """Release the Service's address: empty its status, then drop the finalizer
        (which lets a deleted Service go)."""
        await self.recorder.event(service, "Normal", "DeletingLoadBalancer",
                                  "Deleting load balancer")
        if ingress(service):
            service = await self._set_ingress(service, [])
        await self._set_finalizer(service, False)
        await self.recorder.event(service, "Normal", "DeletedLoadBalancer",
                                  "Deleted load balancer")
        log.info("service %s: load-balancer address released", object_key(service))

    async def _set_finalizer(self, service: dict, present: bool) -> dict:
        meta = service["metadata"]
        finalizers = [f for f in meta.get("finalizers") or () if f != FINALIZER]
        if present:
            finalizers.append(FINALIZER)
        if finalizers == (meta.get("finalizers") or []):
            return service
        # The resourceVersion makes the merge patch of the whole list conditional.
        return self._wrote(await self.client.patch(
            "v1", "services", meta["name"],
            {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}},
            meta["namespace"]))

    async def _set_ingress(self, service: dict, want: list[dict]) -> dict:
        meta = service["metadata"]
        return self._wrote(await self.client.patch(
            "v1", "services", meta["name"],
            {"status": {"loadBalancer": {"ingress": want or None}}}, meta["namespace"],
            subresource="status"))

    def _wrote(self, service: dict) -> dict:
        self.written[object_key(service)] = service
        return service


def load_balancer_controller(pool: str | None, underlay_cidr: str):
    """The controller for a cluster whose pool is `pool`; the underlay's network, host
    and broadcast addresses are never handed out (the default pool holds the last)."""
    underlay = ipaddress.ip_network(underlay_cidr)
    reserved = [str(underlay.network_address), str(underlay.network_address + 1),
                str(underlay.broadcast_address)]

    def factory(client: Client, informers: Informers) -> LoadBalancerController:
        return LoadBalancerController(client, informers, pool=pool, reserved=reserved)
    return factory
