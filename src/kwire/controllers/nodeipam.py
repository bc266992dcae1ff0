"""Node IPAM (upstream's range allocator in kube-controller-manager): each Node
gets a pod subnet (spec.podCIDR and spec.podCIDRs) out of the cluster's pod
range when it registers; a deleted Node's subnet is free again, because the
used set is always worked out from the Nodes that exist.

The agent waits for its podCIDR before it sets up the pod network, as a kubelet
waits for the network plugin to be ready.
"""
from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from kwire.client import ApiError, Client, Informers, WorkQueue, run_workers

log = logging.getLogger("kwire.controllers.nodeipam")

NODE_MASK = 24


class RangeFull(Exception):
    pass


def allocate(cluster_cidr: str, used: Iterable[str], mask: int = NODE_MASK) -> str:
    """The lowest subnet of size /mask in cluster_cidr that overlaps nothing in used."""
    taken = [ipaddress.ip_network(c, strict=False) for c in used]
    for subnet in ipaddress.ip_network(cluster_cidr).subnets(new_prefix=mask):
        if not any(subnet.overlaps(t) for t in taken):
            return str(subnet)
    raise RangeFull(f"no remaining CIDRs of size /{mask} in {cluster_cidr}")


def node_cidrs(node: dict) -> list[str]:
    spec = node.get("spec") or {}
    return list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))


class NodeIpamController:
    def __init__(self, client: Client, informers: Informers, cluster_cidr: str):
        self.client, self.informers, self.cluster_cidr = client, informers, cluster_cidr
        self.queue: WorkQueue[str] = WorkQueue(base_delay=0.2, max_delay=10.0)
        self.assigned: dict[str, str] = {}
        """Subnets written but maybe not yet seen by the informer, so two Nodes
        registering at once never get the same one."""

    async def run(self) -> None:
        nodes = self.informers.get("v1", "nodes")
        nodes.add_handler(self._on_node)
        try:
            await run_workers(self.queue, self.sync, 1, "nodeipam")
        finally:
            nodes.remove_handler(self._on_node)

    def _on_node(self, etype: str, obj: dict, old: dict | None) -> None:
        name = obj["metadata"]["name"]
        if etype == "DELETED":
            self.assigned.pop(name, None)
        elif not node_cidrs(obj):
            self.queue.add(name)

    async def sync(self, name: str) -> bool:
        store = self.informers.get("v1", "nodes").store
        node = store.get_object(name)
        if node is None or node_cidrs(node):
            return True
        used = [c for n in store.list() for c in node_cidrs(n)]
        used += [c for n, c in self.assigned.items() if n != name and store.get_object(n)]
        try:
            cidr = allocate(self.cluster_cidr, used)
        except RangeFull as e:
            log.warning("node %s: %s", name, e)
            return False
        try:
            await self.client.patch("v1", "nodes", name,
                                    {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                                     "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}},
                                    patch_type="merge")
        except ApiError as e:
            if e.code == 404:
                return True
            if e.code == 409:
                return False
            raise
        self.assigned[name] = cidr
        log.info("node %s: podCIDR %s", name, cidr)
        return True


def node_ipam(cluster_cidr: str):
    def factory(client: Client, informers: Informers) -> NodeIpamController:
        return NodeIpamController(client, informers, cluster_cidr)
    return factory
