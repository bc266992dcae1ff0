"""Objects every namespace has: the `default` ServiceAccount (upstream's
serviceaccounts controller) and the `kube-root-ca.crt` ConfigMap that lets pods
trust the API server (upstream's root-ca-cert-publisher).

Both are the same loop: when a namespace is active and its object is missing or
differs from what it should be, write it. Deleting the object makes it come back.
"""
from __future__ import annotations

import logging
from typing import Callable

from kwire.client import ApiError, Client, Informers, WorkQueue, run_workers

log = logging.getLogger("kwire.controllers.perns")

Desired = Callable[[str], dict]


class PerNamespaceObject:
    def __init__(self, client: Client, informers: Informers, api_version: str, plural: str,
                 name: str, desired: Desired, owned_fields: tuple[str, ...] = ()):
        self.client, self.informers = client, informers
        self.api_version, self.plural, self.name = api_version, plural, name
        self.desired = desired
        self.owned_fields = owned_fields
        self.queue: WorkQueue[str] = WorkQueue(base_delay=0.1, max_delay=10.0)

    async def run(self) -> None:
        namespaces = self.informers.get("v1", "namespaces")
        objects = self.informers.get(self.api_version, self.plural,
                                     field_selector=f"metadata.name={self.name}")
        namespaces.add_handler(self._on_namespace)
        objects.add_handler(self._on_object)
        try:
            await run_workers(self.queue, self.sync, 2, self.plural)
        finally:
            namespaces.remove_handler(self._on_namespace)
            objects.remove_handler(self._on_object)

    def _on_namespace(self, etype: str, obj: dict, old: dict | None) -> None:
        if etype != "DELETED":
            self.queue.add(obj["metadata"]["name"])

    def _on_object(self, etype: str, obj: dict, old: dict | None) -> None:
        self.queue.add(obj["metadata"]["namespace"])

    async def sync(self, namespace: str) -> bool:
        ns = self.informers.get("v1", "namespaces").store.get_object(namespace)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return True
        want = self.desired(namespace)
        have = self.informers.get(self.api_version, self.plural,
                                  field_selector=f"metadata.name={self.name}"
                                  ).store.get_object(self.name, namespace)
        try:
            if have is None:
                await self.client.create(self.api_version, self.plural, want, namespace)
            elif any(have.get(f) != want.get(f) for f in self.owned_fields):
                await self.client.patch(self.api_version, self.plural, self.name,
                                        {f: want.get(f) for f in self.owned_fields}, namespace)
        except ApiError as e:
            if e.code in (403, 404, 409):
                return e.code != 409
            raise
        return True


def service_accounts(client: Client, informers: Informers) -> PerNamespaceObject:
    return PerNamespaceObject(client, informers, "v1", "serviceaccounts", "default",
                              lambda ns: {"apiVersion": "v1", "kind": "ServiceAccount",
                                          "metadata": {"name": "default", "namespace": ns}})


def root_ca_publisher(ca_pem: str) -> Callable[[Client, Informers], PerNamespaceObject]:
    def factory(client: Client, informers: Informers) -> PerNamespaceObject:
        return PerNamespaceObject(
            client, informers, "v1", "configmaps", "kube-root-ca.crt",
            lambda ns: {"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "kube-root-ca.crt", "namespace": ns,
                                     "annotations": {"kubernetes.io/description": (
                                         "Contains a CA bundle that can be used to verify "
                                         "the kube-apiserver when using internal endpoints "
                                         "such as the internal service IP or "
                                         "kubernetes.default.svc. No other usage is "
                                         "guaranteed across distributions of Kubernetes "
                                         "clusters.")}},
                        "data": {"ca.crt": ca_pem}},
            owned_fields=("data",))
    return factory
