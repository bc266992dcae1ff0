"""The Endpoints controller (upstream's pkg/controller/endpoint).

For every Service with a selector it keeps the core/v1 Endpoints of the same
name: the selected pods' addresses (ready ones under `addresses`, the rest under
`notReadyAddresses`) with nodeName, hostname and targetRef, grouped into subsets
of addresses that share a port list (upstream's RepackSubsets), since named
targetPorts may resolve differently per pod. Terminating pods are left out unless
the Service publishes not-ready addresses, which also counts every pod as ready.

`desired_subsets` is the pure part; `EndpointsController` writes its result when
it differs. Services without a selector (the `kubernetes` Service, user-managed
Endpoints) are left alone; Endpoints of a deleted Service are deleted.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from kwire.client import ApiError, Client, Informers, WorkQueue, object_key, run_controller
from kwire.controllers.endpointslice import (HEADLESS_LABEL, endpoint_ports, is_pod_ready,
                                             pod_ipv4, selects, should_pod_be_in_endpoints,
                                             should_set_hostname, target_ref)

log = logging.getLogger("kwire.controllers.endpoints")


def pod_address(service: Mapping, pod: Mapping) -> dict:
    address: dict = {"ip": pod_ipv4(pod)}
    if should_set_hostname(pod, service):
        address["hostname"] = pod["spec"]["hostname"]
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        address["nodeName"] = node_name
    address["targetRef"] = target_ref(pod)
    return address


def desired_subsets(service: Mapping, pods: Iterable[Mapping]) -> list[dict]:
    """The Endpoints subsets for service: one per distinct port list, addresses
    sorted by IP and ports by name, so equal inputs give equal output."""
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    groups: dict[tuple, dict] = {}
    for pod in pods:
        if not selects(service, pod) or not should_pod_be_in_endpoints(pod, publish) \
                or pod_ipv4(pod) is None:
            continue
        ports = sorted(endpoint_ports(service, pod), key=lambda p: (p["name"], p["port"]))
        key = tuple((p["name"], p["port"], p["protocol"]) for p in ports)
        subset = groups.setdefault(key, {"addresses": [], "notReadyAddresses": [],
                                         "ports": ports})
        ready = publish or is_pod_ready(pod)
        subset["addresses" if ready else "notReadyAddresses"].append(
            pod_address(service, pod))
    subsets = []
    for key in sorted(groups):
        subset = {k: v for k, v in groups[key].items() if v}
        for field in ("addresses", "notReadyAddresses"):
            if field in subset:
                subset[field].sort(key=lambda a: tuple(int(x) for x in a["ip"].split(".")))
        subsets.append(subset)
    return subsets


def endpoints_labels(service: Mapping) -> dict[str, str]:
    """The Service's labels, plus the headless mark for clusterIP None (as upstream)."""
    labels = {k: v for k, v in (service["metadata"].get("labels") or {}).items()
              if k != HEADLESS_LABEL}
    if (service.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


class EndpointsController:
    """Writes each selector Service's Endpoints from the shared informers."""

    def __init__(self, client: Client, informers: Informers):
        self.client = client
        self.queue: WorkQueue[str] = WorkQueue(base_delay=0.1, max_delay=10.0)
        self.services = informers.get("v1", "services")
        self.pods = informers.get("v1", "pods")
        self.endpoints = informers.get("v1", "endpoints")

    async def run(self) -> None:
        await run_controller(self.queue, self.sync, 2, "endpoints",
                             ((self.services, self._on_service), (self.pods, self._on_pod),
                              (self.endpoints, self._on_service)))

    def _on_service(self, etype: str, obj: dict, old: dict | None) -> None:
        """A Service, or the Endpoints named after it, changed."""
        self.queue.add(object_key(obj))

    def _on_pod(self, etype: str, obj: dict, old: dict | None) -> None:
        for service in self.services.store.list(obj["metadata"].get("namespace")):
            if selects(service, obj) or (old is not None and selects(service, old)):
                self.queue.add(object_key(service))

    async def sync(self, key: str) -> bool:
        for informer in (self.services, self.pods, self.endpoints):
            await informer.wait_synced()
        namespace, name = key.split("/", 1)
        service = self.services.store.get(key)
        have = self.endpoints.store.get(key)
        try:
            if service is None:
                if have is not None:
                    await self.client.delete("v1", "endpoints", name, namespace)
                return True
            if not (service.get("spec") or {}).get("selector"):
                return True
            subsets = desired_subsets(service, self.pods.store.list(namespace))
            labels = endpoints_labels(service)
            if have is None:
                await self.client.create("v1", "endpoints", {
                    "apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": namespace,
                                 **({"labels": labels} if labels else {})},
                    "subsets": subsets}, namespace)
            elif (have.get("subsets") or []) != subsets \
                    or (have["metadata"].get("labels") or {}) != labels:
                await self.client.update("v1", "endpoints", {
                    **have, "metadata": {**have["metadata"], "labels": labels},
                    "subsets": subsets})
        except ApiError as e:
            if e.code == 404:
                return True
            if e.code == 409:  # stale cache: the Endpoints event will bring us back
                return False
            raise
        return True
