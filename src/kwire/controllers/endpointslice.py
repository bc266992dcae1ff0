"""The EndpointSlice controller (upstream's pkg/controller/endpointslice).

For every Service with a selector it keeps discovery.k8s.io/v1 EndpointSlices
listing the selected pods: one endpoint per pod with an IPv4 address, its
ready/serving/terminating conditions, nodeName, zone, targetRef and hostname.
Pods whose named targetPorts resolve to different numbers need different port
lists, so endpoints are grouped by their resolved ports and each group gets its
own slices of at most MAX_ENDPOINTS_PER_SLICE (upstream's default).

Plan purely, act thinly: `desired_endpoints` turns a Service, its pods and the
nodes into endpoint groups, `reconcile` compares them with the existing slices
and returns what to create, update and delete, keeping endpoints in the slice
they already sit in (minimal churn, as upstream's reconciler). A Service with no
endpoints keeps one empty placeholder slice, as upstream. Services without a
selector are left alone: their slices are the user's.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kwire.client import ApiError, Client, Informers, WorkQueue, object_key, run_controller

log = logging.getLogger("kwire.controllers.endpointslice")

API_VERSION = "discovery.k8s.io/v1"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
ZONE_LABEL = "topology.kubernetes.io/zone"
MAX_ENDPOINTS_PER_SLICE = 100
TERMINAL_PHASES = ("Succeeded", "Failed")
CACHE_WAIT = 5.0

PortKey = tuple[tuple[str, int, str], ...]
"""A resolved port list as a hashable key: (name, port, protocol) in Service order."""


# --- pod helpers shared with the Endpoints controller ------------------------------

def is_pod_ready(pod: Mapping) -> bool:
    """podutil.IsPodReady: the Ready condition is True."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or ())


def should_pod_be_in_endpoints(pod: Mapping, include_terminating: bool) -> bool:
    """endpointslice util ShouldPodBeInEndpoints: a pod with an IP that has not
    finished, and (unless include_terminating) is not being deleted."""
    status = pod.get("status") or {}
    if status.get("phase") in TERMINAL_PHASES or not status.get("podIP"):
        return False
    return include_terminating or not (pod.get("metadata") or {}).get("deletionTimestamp")


def find_port(pod: Mapping, service_port: Mapping) -> int | None:
    """podutil.FindPort: a numeric targetPort is used as is, a named one is looked
    up in the pod's container ports with the same protocol (None if absent)."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or ():
        for port in container.get("ports") or ():
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return port.get("containerPort")
    return None


def should_set_hostname(pod: Mapping, service: Mapping) -> bool:
    """The pod's hostname names the endpoint when its subdomain is this Service."""
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    return bool(spec.get("hostname")) and spec.get("subdomain") == service["metadata"]["name"] \
        and meta.get("namespace") == service["metadata"].get("namespace")


def target_ref(pod: Mapping) -> dict:
    meta = pod["metadata"]
    return {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta["name"],
            "uid": meta.get("uid", "")}


def selects(service: Mapping, pod: Mapping) -> bool:
    """The Service's selector (a map; empty selects nothing) matches the pod's labels."""
    selector = (service.get("spec") or {}).get("selector") or {}
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_ipv4(pod: Mapping) -> str | None:
    status = pod.get("status") or {}
    ips = [p.get("ip") for p in status.get("podIPs") or ()] or [status.get("podIP")]
    return next((ip for ip in ips if ip and ":" not in ip), None)


# --- desired state (pure) --------------------------------------------------------

def endpoint_ports(service: Mapping, pod: Mapping) -> list[dict]:
    """The Service's ports resolved for this pod; a port the pod lacks is left out."""
    ports = []
    for sp in (service.get("spec") or {}).get("ports") or ():
        number = find_port(pod, sp)
        if number is None:
            continue
        port = {"name": sp.get("name") or "", "port": number,
                "protocol": sp.get("protocol") or "TCP"}
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        ports.append(port)
    return ports


def port_key(ports: Iterable[Mapping]) -> PortKey:
    return tuple((p.get("name") or "", p.get("port") or 0, p.get("protocol") or "TCP")
                 for p in ports)


def pod_endpoint(service: Mapping, pod: Mapping, nodes: Mapping[str, Mapping]) -> dict:
    """The slice endpoint for a pod, with upstream's condition rules."""
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    serving = is_pod_ready(pod)
    terminating = bool(pod["metadata"].get("deletionTimestamp"))
    ready = publish or (serving and not terminating)
    endpoint: dict = {"addresses": [pod_ipv4(pod)],
                      "conditions": {"ready": ready, "serving": serving,
                                     "terminating": terminating}}
    if should_set_hostname(pod, service):
        endpoint["hostname"] = pod["spec"]["hostname"]
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        endpoint["nodeName"] = node_name
        zone = _zone(nodes.get(node_name) or {})
        if zone:
            endpoint["zone"] = zone
    endpoint["targetRef"] = target_ref(pod)
    return endpoint


@dataclass
class Group:
    """Endpoints sharing one resolved port list."""

    ports: list[dict]
    endpoints: list[dict] = field(default_factory=list)


def desired_endpoints(service: Mapping, pods: Iterable[Mapping],
                      nodes: Mapping[str, Mapping]) -> dict[PortKey, Group]:
    """The selected pods' endpoints, grouped by resolved port list, sorted by pod
    name within a group so plans are reproducible."""
    groups: dict[PortKey, Group] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        if not selects(service, pod) or not should_pod_be_in_endpoints(pod, True) \
                or pod_ipv4(pod) is None:
            continue
        ports = endpoint_ports(service, pod)
        group = groups.setdefault(port_key(ports), Group(ports))
        group.endpoints.append(pod_endpoint(service, pod, nodes))
    return groups


def slice_labels(service: Mapping) -> dict[str, str]:
    """The Service's own labels plus the ones that mark the slice as this
    controller's (upstream's setEndpointSliceLabels)."""
    meta, spec = service["metadata"], service.get("spec") or {}
    labels = {k: v for k, v in (meta.get("labels") or {}).items()
              if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)}
    if spec.get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    labels[SERVICE_NAME_LABEL] = meta["name"]
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    return labels


def owner_reference(service: Mapping) -> dict:
    meta = service["metadata"]
    return {"apiVersion": "v1", "kind": "Service", "name": meta["name"],
            "uid": meta.get("uid", ""), "controller": True, "blockOwnerDeletion": True}


def new_slice(service: Mapping, ports: list[dict], endpoints: list[dict]) -> dict:
    meta = service["metadata"]
    return {"apiVersion": API_VERSION, "kind": "EndpointSlice",
            "metadata": {"generateName": f"{meta['name']}-", "namespace": meta["namespace"],
                         "labels": slice_labels(service),
                         "ownerReferences": [owner_reference(service)]},
            "addressType": "IPv4", "endpoints": endpoints, "ports": ports}


def _endpoint_id(endpoint: Mapping) -> tuple:
    ref = endpoint.get("targetRef") or {}
    return (ref.get("uid") or ref.get("name"), tuple(endpoint.get("addresses") or ()))


@dataclass
class Plan:
    create: list[dict] = field(default_factory=list)
    update: list[dict] = field(default_factory=list)
    delete: list[dict] = field(default_factory=list)


def reconcile(service: Mapping, groups: Mapping[PortKey, Group],
              existing: Sequence[Mapping]) -> Plan:
    """What to write so the existing slices (this controller's, for this Service)
    hold exactly the desired endpoints: an endpoint stays in the slice it is in,
    new ones fill free room in slices with the same ports before new slices are
    created, and slices left empty or with unwanted ports are deleted."""
    plan = Plan()
    wanted = {key: {_endpoint_id(e): e for e in g.endpoints} for key, g in groups.items()}
    placed: set[tuple] = set()
    kept: dict[PortKey, list[dict]] = {}
    for old in sorted(existing, key=lambda s: s["metadata"]["name"]):
        key = port_key(old.get("ports") or ())
        want = wanted.get(key, {})
        endpoints = []
        for e in old.get("endpoints") or ():
            eid = _endpoint_id(e)
            if eid in want and eid not in placed:
                placed.add(eid)
                endpoints.append(want[eid])
        if not endpoints:
            plan.delete.append(old)
            continue
        new = {**old, "endpoints": endpoints,
               "metadata": {**old["metadata"], "labels": slice_labels(service),
                            "ownerReferences": [owner_reference(service)]}}
        kept.setdefault(key, []).append(new)
    for key, group in groups.items():
        todo = [e for eid, e in wanted[key].items() if eid not in placed]
        for new in kept.get(key, []):
            room = MAX_ENDPOINTS_PER_SLICE - len(new["endpoints"])
            if room > 0 and todo:
                new["endpoints"] = new["endpoints"] + todo[:room]
                todo = todo[room:]
        for i in range(0, len(todo), MAX_ENDPOINTS_PER_SLICE):
            plan.create.append(new_slice(service, group.ports,
                                         todo[i:i + MAX_ENDPOINTS_PER_SLICE]))
    for slices in kept.values():
        for new in slices:
            old = next(s for s in existing if s["metadata"]["name"] == new["metadata"]["name"])
            if _differs(old, new):
                plan.update.append(new)
    if not groups:
        _keep_placeholder(service, plan)
    return plan


def _keep_placeholder(service: Mapping, plan: Plan) -> None:
    """Upstream keeps one empty slice for a Service with no endpoints: reuse a
    slice about to be deleted if there is one, else create it."""
    if not plan.delete:
        plan.create.append(new_slice(service, [], []))
        return
    old = plan.delete.pop(0)
    placeholder = {**old, "endpoints": [], "ports": [],
                   "metadata": {**old["metadata"], "labels": slice_labels(service),
                                "ownerReferences": [owner_reference(service)]}}
    if _differs(old, placeholder):
        plan.update.append(placeholder)


def _differs(old: Mapping, new: Mapping) -> bool:
    return (old.get("endpoints") or []) != (new.get("endpoints") or []) \
        or (old.get("ports") or []) != (new.get("ports") or []) \
        or old["metadata"].get("labels") != new["metadata"].get("labels") \
        or old["metadata"].get("ownerReferences") != new["metadata"].get("ownerReferences")


def _zone(node: Mapping) -> str | None:
    return ((node.get("metadata") or {}).get("labels") or {}).get(ZONE_LABEL)


# --- the controller (thin) -------------------------------------------------------

class EndpointSliceController:
    """Feeds `reconcile` from the shared informers, one Service key at a time."""

    def __init__(self, client: Client, informers: Informers):
        self.client, self.informers = client, informers
        self.queue: WorkQueue[str] = WorkQueue(base_delay=0.1, max_delay=10.0)
        self.services = informers.get("v1", "services")
        self.pods = informers.get("v1", "pods")
        self.nodes = informers.get("v1", "nodes")
        self.slices = informers.get(API_VERSION, "endpointslices",
                                    label_selector=f"{MANAGED_BY_LABEL}={CONTROLLER_NAME}")
        self.written: dict[str, tuple[float, dict[str, str | None]]] = {}
        """Per Service, when and which slices were last written (name ->
        resourceVersion, None when deleted), so a sync waits for the cache to see
        them instead of creating duplicates (upstream's endpointSliceTracker); for
        at most CACHE_WAIT seconds, in case someone else changed them since."""

    async def run(self) -> None:
        await run_controller(self.queue, self.sync, 2, "endpointslice",
                             ((self.services, self._on_service), (self.pods, self._on_pod),
                              (self.nodes, self._on_node), (self.slices, self._on_slice)))

    def _on_service(self, etype: str, obj: dict, old: dict | None) -> None:
        self.queue.add(object_key(obj))

    def _on_pod(self, etype: str, obj: dict, old: dict | None) -> None:
        ns = obj["metadata"].get("namespace")
        for service in self.services.store.list(ns):
            if selects(service, obj) or (old is not None and selects(service, old)):
                self.queue.add(object_key(service))

    def _on_node(self, etype: str, obj: dict, old: dict | None) -> None:
        """Only a zone change matters to slices, and it may touch any Service."""
        if old is not None and _zone(old) == _zone(obj):
            return
        for service in self.services.store.list():
            self.queue.add(object_key(service))

    def _on_slice(self, etype: str, obj: dict, old: dict | None) -> None:
        name = (obj["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
        if name:
            self.queue.add(f"{obj['metadata']['namespace']}/{name}")

    async def sync(self, key: str) -> bool:
        for informer in (self.services, self.pods, self.nodes, self.slices):
            await informer.wait_synced()
        if not self._cache_caught_up(key):
            self.queue.add_after(key, 0.05)
            return True
        namespace, name = key.split("/", 1)
        service = self.services.store.get(key)
        existing = self.slices.store.list(namespace, {SERVICE_NAME_LABEL: name})
        if service is None or not (service.get("spec") or {}).get("selector") \
                or service["spec"].get("type") == "ExternalName":
            plan = Plan(delete=existing if service is None else [])
        else:
            nodes = {n["metadata"]["name"]: n for n in self.nodes.store.list()}
            groups = desired_endpoints(service, self.pods.store.list(namespace), nodes)
            plan = reconcile(service, groups, existing)
        written: dict[str, str | None] = {}
        self.written[key] = (time.monotonic(), written)
        try:
            for obj in plan.delete:
                await self.client.delete(API_VERSION, "endpointslices",
                                         obj["metadata"]["name"], namespace)
                written[obj["metadata"]["name"]] = None
            for obj in plan.update:
                done = await self.client.update(API_VERSION, "endpointslices", obj)
                written[done["metadata"]["name"]] = done["metadata"]["resourceVersion"]
            for obj in plan.create:
                done = await self.client.create(API_VERSION, "endpointslices", obj, namespace)
                written[done["metadata"]["name"]] = done["metadata"]["resourceVersion"]
        except ApiError as e:
            if e.code == 404:  # already gone, or the namespace is going away
                return True
            if e.code == 409:  # our cache was stale: look again once it catches up
                return False
            raise
        return True

    def _cache_caught_up(self, key: str) -> bool:
        namespace = key.split("/", 1)[0]
        when, written = self.written.get(key, (0.0, {}))
        if time.monotonic() - when > CACHE_WAIT:
            written = {}
        for name, rv in list(written.items()):
            seen = self.slices.store.get_object(name, namespace)
            if rv is None and seen is not None:
                return False
            if rv is not None and (seen is None
                                   or int(seen["metadata"]["resourceVersion"]) < int(rv)):
                return False
        self.written.pop(key, None)
        return True
