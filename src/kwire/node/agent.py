"""The node agent: one process per node (the kubelet and kube-proxy roles; network
policy joins it later). It registers its Node, renews its Lease, keeps the Node's
status fresh, runs the pods bound to it (kubelet.py), serves logs and exec for the
API server (server.py), keeps the overlay to the other nodes and programs the
Services into the node's nftables (net/proxy.py). It talks to the cluster only through the
API server, so it could run on another machine.

Pods outlive the agent: stopping it (SIGTERM, SIGKILL, a crash) leaves their
containers running, and a new agent adopts them.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from kwire.client import TRANSPORT_ERRORS, ApiError, Backoff, Client, Informer
from kwire.net.overlay import VXLAN, annotations_patch, overlay_fields
from kwire.net.overlay_apply import Overlay, OverlayError
from kwire.net.proxy import Tracker
from kwire.net.proxy_apply import ProxyApplier, ProxyError
from kwire.node import nodestatus
from kwire.node.images import ImageStore
from kwire.node.kubelet import Kubelet
from kwire.node.kuberuntime import KubeRuntime
from kwire.node.paths import NodePaths, image_root
from kwire.timestamps import format_time

log = logging.getLogger("kwire.node.agent")

LEASE_API = "coordination.k8s.io/v1"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40
LEASE_RENEW_INTERVAL = 4.0
"""Well inside the node lifecycle controller's 15 s grace (see nodelifecycle.py)."""
STATUS_INTERVAL = 10.0
"""How often the Node's conditions get a fresh heartbeat (upstream's nodeStatusUpdateFrequency)."""
RETRY = (0.1, 2.0)
"""First and longest wait between tries while the API server is not there yet (an agent
starts next to its server) or the pod CIDR not assigned."""
OVERLAY_RESYNC = 30.0
"""How often the overlay is checked against the kernel when no Node changed (flannel's
host-gw checks its routes every 10 s), and the longest wait between failed tries."""
PROXY_RETRY = 30.0
"""The longest wait before retrying a failed service proxy sync."""
SERVICE_SELECTOR = "!service.kubernetes.io/service-proxy-name"
"""Services another proxy implementation claims are not ours (as kube-proxy)."""
SLICE_SELECTOR = "kubernetes.io/service-name,!service.kubernetes.io/headless"
SERVICE_INDEX = "service"


@dataclass(frozen=True)
class AgentConfig:
    node: str
    server: str
    token: str
    ca_file: str
    paths: NodePaths
    cluster_state_dir: Path
    """Where the cluster's registries.yaml is looked for (see images/registry.py)."""
    cluster_dns: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"
    kubelet_port: int = nodestatus.KUBELET_PORT
    backend: str = VXLAN
    """The overlay between nodes: "vxlan" or "host-gw" (net/overlay.py)."""
    cluster_cidr: str = "10.244.0.0/16"
    """The pod range: Service traffic from outside it is masqueraded (kube-proxy's
    --cluster-cidr)."""


def source_address(server: str) -> str:
    """The address this machine (or node namespace) uses to reach the server: the
    node's InternalIP."""
    parts = urlsplit(server)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((parts.hostname, parts.port or 443))
        return s.getsockname()[0]


def micro_time(t: datetime | None = None) -> str:
    return (t or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Agent:
    def __init__(self, config: AgentConfig):
        self.config = config
        self.client = Client(config.server, token=config.token, ca_file=config.ca_file)
        self.address = source_address(config.server)
        for d in (config.paths.run_dir, config.paths.state_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.images = ImageStore(image_root())
        self.runtime = KubeRuntime(config.paths, self.images)
        self.info = nodestatus.machine_info(config.paths.state_dir, _runc_version())
        self.node: dict | None = None
        self.status_now = asyncio.Event()
        self.overlay = Overlay(config.backend, self.address)
        """Its pod_mtu is the MTU this node's pods get."""
        self.overlay_now = asyncio.Event()
        self.nodes = Informer(self.client, "v1", "nodes")
        """One watch of every Node: this node's pod CIDR (status) and its peers (overlay)."""
        self.kubelet = Kubelet(self.client, config, self.address, self.runtime, self.images)
        self.services = Informer(self.client, "v1", "services", label_selector=SERVICE_SELECTOR)
        self.slices = Informer(self.client, "discovery.k8s.io/v1", "endpointslices",
                               label_selector=SLICE_SELECTOR)
        self.slices.store.add_index(SERVICE_INDEX, lambda sl: [_service_key(sl)])
        self.proxy = ProxyApplier()
        self.tracker = Tracker(config.node, [self.address], config.cluster_cidr)
        self.proxy_dirty: set[str] = set()
        """namespace/name of the Services changed since the last sync."""
        self.proxy_now = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.register()
            self.nodes.add_handler(self._on_node)
            self.nodes.add_handler(self._on_any_node)
            self.nodes.start()
            self.services.add_handler(self._on_service)
            self.slices.add_handler(self._on_slice)
            self.services.start()
            self.slices.start()
            tasks = [asyncio.create_task(c) for c in (self.lease_loop(), self.status_loop(),
                                                      self.overlay_loop(), self.proxy_loop(),
                                                      self.kubelet.run())]
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in [stopper, *tasks]:
                t.cancel()
            await asyncio.gather(stopper, *tasks, return_exceptions=True)
            for t in done:
                if t is not stopper and t.exception() is not None:
                    raise t.exception()
        finally:
            for informer in (self.nodes, self.services, self.slices):
                await informer.stop()
            await self.kubelet.close()
            await self.client.close()

    async def register(self) -> None:
        """Create the Node (or find it, on a restart) and post its status once."""
        name = self.config.node
        backoff = Backoff(*RETRY)
        while True:
            try:
                body = nodestatus.new_node(name, self.address, self.info, format_time())
                try:
                    self.node = await self.client.create("v1", "nodes", body)
                    log.info("registered node %s at %s", name, self.address)
                except ApiError as e:
                    if e.code != 409:
                        raise
                    self.node = await self.client.get("v1", "nodes", name)
                await self.post_status()
                return
            except (ApiError, *TRANSPORT_ERRORS) as e:
                log.warning("registering node %s: %s; retrying", name, e)
                await asyncio.sleep(backoff.next())

    async def post_status(self) -> None:
        try:
            node = await self.client.get("v1", "nodes", self.config.node)
        except ApiError as e:
            if e.code != 404:
                raise
            log.warning("node %s was deleted; registering it again", self.config.node)
            await self.register()
            return
        cidr = (node.get("spec") or {}).get("podCIDR")
        if cidr and cidr != self.kubelet.pod_cidr:
            mtu = await asyncio.to_thread(lambda: self.overlay.pod_mtu)
            self.kubelet.set_pod_cidr(cidr, mtu)
        status = nodestatus.node_status(self.config.node, self.address, self.info, format_time(),
                                        (node.get("status") or {}).get("conditions"),
                                        network_ready=bool(cidr), port=self.config.kubelet_port,
                                        images=self.image_list())
        self.kubelet.allocatable = status["allocatable"]
        self.node = await self.client.patch("v1", "nodes", self.config.node, {"status": status},
                                            subresource="status")

    def image_list(self) -> list[dict]:
        names: dict[str, dict] = {}
        for info in self.images.list():
            entry = names.setdefault(info.image_id, {"names": [], "sizeBytes": info.size})
            entry["names"] += [f"{info.reference.name}@{info.digest}", str(info.reference)]
        return list(names.values())

    async def status_loop(self) -> None:
        """Heartbeat the conditions every STATUS_INTERVAL, and at once when the Node's
        pod CIDR arrives (the node is Ready from then on)."""
        while True:
            try:
                await asyncio.wait_for(self.status_now.wait(), STATUS_INTERVAL)
            except asyncio.TimeoutError:
                pass
            self.status_now.clear()
            try:
                await self.post_status()
            except (ApiError, *TRANSPORT_ERRORS) as e:
                log.warning("node status: %s", e)
                await asyncio.sleep(RETRY[0])
                self.status_now.set()
            except Exception:  # noqa: BLE001 - a bug here must not stop the heartbeat
                log.exception("node status")

    def _on_node(self, etype: str, node: dict, old: dict | None) -> None:
        if node["metadata"]["name"] != self.config.node:
            return
        cidr = (node.get("spec") or {}).get("podCIDR")
        if etype != "DELETED" and cidr and cidr != self.kubelet.pod_cidr:
            self.status_now.set()

    async def overlay_loop(self) -> None:
        """Keep the routes, neighbours and FDB entries to every other node in step with
        the Nodes, and publish this node's VTEP in its Node's annotations."""
        backoff = Backoff(RETRY[0], OVERLAY_RESYNC)
        while True:
            try:
                await asyncio.wait_for(self.overlay_now.wait(), OVERLAY_RESYNC)
            except asyncio.TimeoutError:
                pass
            self.overlay_now.clear()
            if not self.nodes.has_synced:
                continue
            try:
                await self.sync_overlay(self.nodes.store.list())
                backoff.reset()
                continue
            except (OverlayError, ApiError, *TRANSPORT_ERRORS) as e:
                log.warning("overlay: %s", e)
            except Exception:  # noqa: BLE001 - a bug here must not stop the agent
                log.exception("overlay")
            await asyncio.sleep(backoff.next())
            self.overlay_now.set()

    def _on_any_node(self, etype: str, node: dict, old: dict | None) -> None:
        if old is None or etype == "DELETED" or overlay_fields(node) != overlay_fields(old):
            self.overlay_now.set()

    async def sync_overlay(self, nodes: list[dict]) -> None:
        result = await asyncio.to_thread(self.overlay.reconcile, self.config.node, nodes)
        if result.commands:
            log.info("overlay: %s", "; ".join(" ".join(cmd) for cmd in result.commands))
        me = next((n for n in nodes if n["metadata"]["name"] == self.config.node), None)
        if me is not None and result.annotations:
            patch = annotations_patch(me, result.annotations)
            if patch:
                await self.client.patch("v1", "nodes", self.config.node, patch)

    def _on_service(self, etype: str, svc: dict, old: dict | None) -> None:
        self.proxy_dirty.add(f"{svc['metadata'].get('namespace')}/{svc['metadata']['name']}")
        self.proxy_now.set()

    def _on_slice(self, etype: str, endpoint_slice: dict, old: dict | None) -> None:
        self.proxy_dirty.update(_service_key(s) for s in (endpoint_slice, old) if s)
        self.proxy_now.set()

    async def proxy_loop(self) -> None:
        """kube-proxy's sync loop: the whole table at start, then only the changes, at
        once after any Service or EndpointSlice change (changes arriving during a sync
        make one more); after a failure, a whole table again, with backoff."""
        await self.services.wait_synced()
        await self.slices.wait_synced()
        backoff = Backoff(RETRY[0], PROXY_RETRY)
        while True:
            self.proxy_now.clear()
            try:
                await self.sync_proxy()
                backoff.reset()
                await self.proxy_now.wait()
                continue
            except ProxyError as e:
                log.warning("service proxy: %s", e)
            except Exception:  # noqa: BLE001 - a bug here must not stop the agent
                log.exception("service proxy")
                self.proxy.applied = None
            try:
                await asyncio.wait_for(self.proxy_now.wait(), backoff.next())
            except asyncio.TimeoutError:
                pass

    async def sync_proxy(self) -> None:
        """The Services marked dirty, from the caches, into the tracker; then the
        tracker's changes into nftables (the whole table when not in sync)."""
        dirty, self.proxy_dirty = self.proxy_dirty, set()
        changes = {}
        for key in dirty:
            ns, _, name = key.partition("/")
            changes[(ns, name)] = (self.services.store.get(key),
                                   self.slices.store.by_index(SERVICE_INDEX, key))

        def sync():
            try:
                if self.proxy.in_sync:
                    return self.proxy.patch(*self.tracker.update(changes))
                self.tracker.update(changes, views=False)
            except ProxyError as e:
                log.warning("partial proxy sync failed (%s); replacing the whole table", e)
            return self.proxy.replace(self.tracker.state())

        try:
            done = await asyncio.to_thread(sync)
        except BaseException:
            self.proxy_dirty |= dirty
            raise
        if done.full or done.flushed:
            log.info("service proxy: %s sync of %d services (%d bytes), %d stale UDP flows "
                     "flushed", "full" if done.full else "partial", len(self.tracker.parts),
                     done.size, done.flushed)

    async def lease_loop(self) -> None:
        name = self.config.node
        while True:
            try:
                await self.renew_lease()
            except (ApiError, *TRANSPORT_ERRORS) as e:
                log.warning("lease %s: %s", name, e)
            except Exception:  # noqa: BLE001 - a bug here must not stop the heartbeat
                log.exception("lease %s", name)
            await asyncio.sleep(LEASE_RENEW_INTERVAL)

    async def renew_lease(self) -> None:
        name = self.config.node
        now = micro_time()
        try:
            await self.client.patch(LEASE_API, "leases", name,
                                    {"spec": {"holderIdentity": name, "renewTime": now,
                                              "leaseDurationSeconds": LEASE_DURATION}},
                                    LEASE_NAMESPACE)
        except ApiError as e:
            if e.code != 404:
                raise
            owner = [{"apiVersion": "v1", "kind": "Node", "name": name,
                      "uid": self.node["metadata"]["uid"]}] if self.node else []
            await self.client.create(LEASE_API, "leases", {
                "apiVersion": LEASE_API, "kind": "Lease",
                "metadata": {"name": name, "namespace": LEASE_NAMESPACE, "ownerReferences": owner},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION,
                         "acquireTime": now, "renewTime": now}}, LEASE_NAMESPACE)


def _service_key(endpoint_slice: dict) -> str:
    meta = endpoint_slice.get("metadata") or {}
    return f"{meta.get('namespace')}/{(meta.get('labels') or {}).get('kubernetes.io/service-name')}"


def _runc_version() -> str:
    try:
        out = subprocess.run(["runc", "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "runc://unknown"
    first = out.splitlines()[0] if out else ""
    return "runc://" + (first.split()[-1] if first else "unknown")
