"""The kwire API server process: HTTPS, the store, start-up objects, compaction,
and the controller manager and DNS server it keeps running as child processes.

Everything runs on one asyncio loop. Store writes are synchronous SQLite calls
on that loop, which is what keeps allocation and compare-and-swap simple: no two
requests are ever inside a write at once.
"""
from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import signal
import sys
import traceback

from aiohttp import web

from kwire.api.allocators import ServiceAllocator
from kwire.api.auth import Authenticator, User
from kwire.api.errors import APIError
from kwire.api.handlers import API, MAX_BODY, error_response
from kwire.api.registry import load
from kwire.api.resources import SYSTEM_NAMESPACES, Resources
from kwire.cluster.config import ClusterConfig
from kwire.cluster.pki import load_tokens, read_token_file, server_ssl_context
from kwire.daemon import run_until_signalled
from kwire.store.sqlite import SQLiteStore

log = logging.getLogger("kwire.server")
PR_SET_PDEATHSIG = 1


@web.middleware
async def status_errors(request: web.Request, handler):
    """Every failure leaves as a metav1.Status, never as a traceback."""
    try:
        return await handler(request)
    except APIError as e:
        return error_response(e)
    except web.HTTPRequestEntityTooLarge:
        return error_response(APIError(413, f"Request entity too large: limit is {MAX_BODY}",
                                       "RequestEntityTooLarge"))
    except web.HTTPException as e:
        return error_response(APIError(e.status, e.reason or "error"))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as e:  # noqa: BLE001 - the server must answer, whatever broke
        log.error("internal error on %s %s: %s", request.method, request.path,
                  traceback.format_exc())
        return error_response(APIError(500, f"Internal error occurred: {e}", "InternalError"))


def build_app(resources: Resources, authenticator: Authenticator, address: str,
              kubelet_token: str | None = None) -> tuple[web.Application, API]:
    """The API app; kubelet_token is what it presents to the node agents' kubelet API
    (pods/log, exec, attach)."""
    api = API(resources, resources.registry, address, kubelet_token)
    app = web.Application(middlewares=[status_errors, authenticator.middleware],
                          client_max_size=MAX_BODY + 1)
    app.add_routes(api.routes())
    app.router.add_route("*", "/{tail:.*}", _not_found)

    async def on_shutdown(_app: web.Application) -> None:
        await api.close_watches()

    app.on_shutdown.append(on_shutdown)
    return app, api


async def _not_found(request: web.Request) -> web.Response:
    raise APIError(404, "the server could not find the requested resource", "NotFound", {})


async def bootstrap(res: Resources, config: ClusterConfig) -> None:
    """The objects every cluster has from the start."""
    reg = res.registry
    ns_kind = reg.resource("", "v1", "namespaces")
    for ns in SYSTEM_NAMESPACES:
        await res.ensure(ns_kind, {"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": ns}})
    svc = reg.resource("", "v1", "services")
    await res.ensure(svc, {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": config.api_service_ip,
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                            "targetPort": config.api_port}]}})
    await res.ensure(reg.resource("discovery.k8s.io", "v1", "endpointslices"), {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [config.underlay_host_address],
                       "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": config.api_port, "protocol": "TCP"}]})
    ep = reg.resource("", "v1", "endpoints")
    await res.ensure(ep, {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": config.underlay_host_address}],
                     "ports": [{"name": "https", "port": config.api_port, "protocol": "TCP"}]}]})
    await _bootstrap_kube_dns(res, config)


KUBE_DNS_PORTS = [{"name": "dns", "port": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]


async def _bootstrap_kube_dns(res: Resources, config: ClusterConfig) -> None:
    """kube-system/kube-dns as kubeadm has it, but without a selector: `kwire dns`
    runs on the host, so its EndpointSlice and Endpoints point at the underlay
    host address (the service proxy carries cluster_dns there)."""
    reg = res.registry
    await res.ensure(reg.resource("", "v1", "services"), {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                                "kubernetes.io/name": "CoreDNS"}},
        "spec": {"type": "ClusterIP", "clusterIP": config.cluster_dns,
                 "ports": [{**p, "targetPort": 53} for p in KUBE_DNS_PORTS]}})
    await res.ensure(reg.resource("discovery.k8s.io", "v1", "endpointslices"), {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"kubernetes.io/service-name": "kube-dns",
                                "endpointslice.kubernetes.io/managed-by": "apiserver.kwire.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [config.underlay_host_address],
                       "conditions": {"ready": True}}],
        "ports": [dict(p) for p in KUBE_DNS_PORTS]})
    await res.ensure(reg.resource("", "v1", "endpoints"), {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns",
                                "endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": config.underlay_host_address}],
                     "ports": [dict(p) for p in KUBE_DNS_PORTS]}]})


async def bootstrap_loop(res: Resources, config: ClusterConfig, interval: float = 10) -> None:
    """Put back the start-up objects if someone deletes them, as kube-apiserver's
    system namespace and kubernetes Service reconcilers do."""
    while True:
        await asyncio.sleep(interval)
        try:
            await bootstrap(res, config)
        except APIError as e:
            log.warning("restoring system objects: %s", e.message)


async def compaction_loop(store: SQLiteStore, interval: float) -> None:
    """Compact, every interval, up to the revision seen one interval earlier
    (as kube-apiserver asks etcd to), so history lives between one and two intervals."""
    previous = store.revision
    while True:
        await asyncio.sleep(interval)
        if previous > store.compacted_revision:
            await store.compact(previous)
            log.info("compacted to revision %d", previous)
        previous = store.revision


def _die_with_parent() -> None:
    """Runs in the child: the kernel sends it SIGTERM when the server dies, even by
    SIGKILL, so a crashed server never leaves a controller manager behind."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def supervise(name: str, cmd: list[str], stop: asyncio.Event) -> None:
    """Keep a child process (the controller manager, the DNS server) running beside
    the server, restarted if it dies, and stop it with SIGTERM when the server
    stops. Its output joins the server log."""
    while not stop.is_set():
        proc = await asyncio.create_subprocess_exec(*cmd, preexec_fn=_die_with_parent)
        try:
            await proc.wait()
            log.warning("%s exited with %s; restarting it", name, proc.returncode)
            await asyncio.sleep(1)
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()


def _kwire(verb: str, config: ClusterConfig) -> list[str]:
    return [sys.executable, "-m", "kwire.cli.main", verb, "--config", str(config.config_path)]


async def run(config: ClusterConfig, stop: asyncio.Event) -> None:
    # The controller manager and DNS start first: their imports overlap the server's
    # start-up, and their clients retry until the server answers.
    tasks = [asyncio.create_task(supervise(name, _kwire(verb, config), stop))
             for name, verb in (("controller manager", "controller-manager"), ("dns", "dns"))]
    registry = load()
    store = SQLiteStore(str(config.db_path))
    allocator = ServiceAllocator(config.service_cidr, config.node_port_range)
    res = Resources(store, registry, allocator)
    await bootstrap(res, config)
    gc.freeze()  # start-up objects live forever; keep the collector from rescanning them
    users = {tok: User(u.name, u.groups) for tok, u in read_token_file(config.tokens_file).items()}
    app, api = build_app(res, Authenticator(users), f"{config.api_host}:{config.api_port}",
                         load_tokens(config).node_agent)
    # Selectors can be long (Go allows 1 MiB URLs); malformed HTTP is the client's problem.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2,
                           max_line_size=1 << 20, max_field_size=1 << 20)
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    await runner.setup()
    # The user's address, and the host's underlay address for the node agents (`kwire up`
    # creates the underlay bridge, and with it that address, before starting the server).
    ssl_context = server_ssl_context(config)
    for host in dict.fromkeys([config.api_host, config.underlay_host_address]):
        await web.TCPSite(runner, host, config.api_port, ssl_context=ssl_context,
                          backlog=1024).start()
        log.info("serving on https://%s:%d", host, config.api_port)
    tasks += [asyncio.create_task(compaction_loop(store, config.compaction_interval_seconds)),
              asyncio.create_task(bootstrap_loop(res, config))]
    try:
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        await store.close()


def serve(config: ClusterConfig) -> None:
    """Run until SIGTERM or SIGINT."""
    run_until_signalled(lambda stop: run(config, stop))
