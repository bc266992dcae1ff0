"""The node agent's kubelet API: what the API server proxies pods/log, pods/exec,
pods/attach and pods/portforward to, as kube-apiserver does to a kubelet's port 10250.

    GET  /healthz
    GET  /containerLogs/{namespace}/{pod}/{container}?follow=&tailLines=&...
    GET  /exec/{namespace}/{pod}/{container}?command=..&stdin=&stdout=&stderr=&tty=
    GET  /attach/{namespace}/{pod}/{container}?stdin=&stdout=&stderr=&tty=
    GET  /portForward/{namespace}/{pod}[?ports=80,443]   (kwire.node.portforward)

HTTPS with a self-signed certificate for the node's addresses, made at the first
start and kept in the node's state (kube-apiserver does not verify a kubelet's
certificate unless given --kubelet-certificate-authority, and neither does
kwire's). Every request but /healthz must carry the node-agent bearer token, the
one credential the API server and the agents share.

The agent tells this server where containers are through a Locator: (namespace,
pod, container, previous) to a ContainerHandle, or ContainerUnavailable with the
code and message to answer with. It is called on the event loop, so it must
answer from the agent's memory without blocking.

Errors leave as metav1.Status JSON; the API server passes them on to the client.
exec and attach over anything but a WebSocket (kubectl's SPDY fallback) get a
400 Status once the container has been found, so the reason a WebSocket attempt
failed is also what the fallback reports.
"""
from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import json
import logging
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kwire.cluster.config import write_private_file
from kwire.node import portforward, remotecommand
from kwire.node.logs import LogOptions, flag, read_logs
from kwire.node.portforward import NetnsDialer, PodTarget
from kwire.node.remotecommand import Codec, Launch, Session, StreamOptions
from kwire.node.runtime.runc import Runc, runc_error

log = logging.getLogger("kwire.node.server")

KUBELET_PORT = 10250
CERT_FILE = "kubelet.crt"
KEY_FILE = "kubelet.key"
CERT_VALIDITY = dt.timedelta(days=365)
REASONS = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 500: "InternalError"}


@dataclass(frozen=True)
class ContainerHandle:
    """Where a container of a pod on this node is."""

    cid: str
    """The runc container id (for exec and attach)."""
    log_path: Path
    """Its CRI log file: the current instance's, or with previous the one before."""
    running: bool


class ContainerUnavailable(Exception):
    """The locator's answer when it has no container to give, with the HTTP code
    and the message upstream uses, e.g. 400 ``container "c" in pod "p" is waiting
    to start: ContainerCreating``, 400 ``previous terminated container "c" in pod
    "p" not found``, 404 for a pod that is not on this node."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


Locator = Callable[[str, str, str, bool], ContainerHandle]
"""(namespace, pod, container, previous) -> ContainerHandle, or raise ContainerUnavailable."""
PodLocator = Callable[[str, str], PodTarget]
"""(namespace, pod) -> where its ports are, or raise ContainerUnavailable."""


def status_error(code: int, message: str) -> web.Response:
    """A metav1.Status failure, with the HTTP code its `code` says."""
    reason = REASONS.get(code, "Unknown")
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    return web.Response(body=json.dumps(body).encode(), status=code,
                        content_type="application/json")


class KubeletServer:
    """The kubelet API of one node: ``await start(host, port, cert_dir)``, then
    ``await stop()``. `runc` runs exec; `token` is the node-agent token the API
    server presents; `pods` finds a pod's network namespace for port-forward."""

    def __init__(self, locator: Locator, runc: Runc, token: str,
                 pods: PodLocator | None = None):
        self.locator = locator
        self.pods = pods
        self.dialer: NetnsDialer | None = None
        self.runc = runc
        self.token = token
        self.sessions: set[web.WebSocketResponse] = set()
        self.runner: web.AppRunner | None = None
        self.port = 0
        """The port listened on (useful when started with port 0)."""

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticate])
        app.add_routes([
            web.get("/healthz", self._healthz),
            web.get("/containerLogs/{namespace}/{pod}/{container}", self._logs),
            web.route("*", "/exec/{namespace}/{pod}/{container}", self._exec),
            web.route("*", "/attach/{namespace}/{pod}/{container}", self._attach),
            web.route("*", "/portForward/{namespace}/{pod}", self._port_forward),
        ])
        app.on_shutdown.append(self._close_sessions)
        return app

    async def start(self, host: str, port: int = KUBELET_PORT, cert_dir: Path | None = None,
                    names: Iterable[str] = ()) -> None:
        """Listen on host:port over HTTPS, with the serving certificate in cert_dir
        (made for host and `names` when missing); plain HTTP without cert_dir."""
        context = None
        if cert_dir is not None:
            cert, key = ensure_serving_cert(Path(cert_dir), [host, *names])
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(cert, key)
            context.set_alpn_protocols(["http/1.1"])
        self.dialer = NetnsDialer()
        self.runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, ssl_context=context)
        await site.start()
        self.port = self.runner.addresses[0][1]
        log.info("kubelet API on %s://%s:%d", "https" if context else "http", host, self.port)

    async def stop(self) -> None:
        """Stop listening; open exec and attach sessions end (their commands killed)."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.dialer is not None:
            self.dialer.close()
            self.dialer = None

    async def _close_sessions(self, _app: web.Application) -> None:
        for ws in list(self.sessions):
            await ws.close(code=1001, message=b"node agent stopping")

    # ------------------------------------------------------------------ requests

    @web.middleware
    async def _authenticate(self, request: web.Request, handler):
        if request.path != "/healthz":
            header = request.headers.get("Authorization", "")
            given = header[7:].strip() if header[:7].lower() == "bearer " else ""
            if not (given and hmac.compare_digest(given.encode(), self.token.encode())):
                return status_error(401, "Unauthorized")
        return await handler(request)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def _locate(self, request: web.Request, previous: bool = False) -> ContainerHandle:
        m = request.match_info
        return self.locator(m["namespace"], m["pod"], m["container"], previous)

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        try:
            opts = LogOptions.from_query(request.query)
            handle = self._locate(request, previous=flag(request.query, "previous"))
        except ValueError as e:
            return status_error(400, str(e))
        except ContainerUnavailable as e:
            return status_error(e.code, e.message)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            chunks = read_logs(handle.log_path, opts,
                               lambda: self._still_following(request, handle))
            async with aclosing(chunks):
                async for chunk in chunks:
                    await resp.write(chunk)
            await resp.write_eof()
        except ConnectionError:
            pass  # the reader went away
        return resp

    def _still_following(self, request: web.Request, handle: ContainerHandle) -> bool:
        """Whether to keep following a log: someone still reads it, and its container
        is still the running one (a restart makes another, with its own log file)."""
        if not handle.running or request.transport is None or request.transport.is_closing():
            return False
        try:
            now = self._locate(request)
        except ContainerUnavailable:
            return False
        return now.running and now.cid == handle.cid

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        command = request.query.getall("command", [])
        if not command:
            return status_error(400, "you must specify at least one command for the container")
        return await self._stream(request, command)

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, None)

    async def _stream(self, request: web.Request, command: list[str] | None) -> web.StreamResponse:
        """exec (a command) or attach (None): checks, then the WebSocket session."""
        m = request.match_info
        try:
            opts = StreamOptions.from_query(request.query)
            handle = self._locate(request)
        except ValueError as e:
            return status_error(400, str(e))
        except ContainerUnavailable as e:
            return status_error(e.code, e.message)
        if not handle.running:
            return status_error(400, f'container "{m["container"]}" in pod "{m["pod"]}" '
                                     "is not running")
        if request.method != "GET" or request.headers.get("Upgrade", "").lower() != "websocket":
            verb = "exec" if command is not None else "attach"
            return status_error(400, f"kwire's node agent serves {verb} over WebSocket "
                                     f"({remotecommand.V5}) only; SPDY is not supported")
        try:
            protocol = remotecommand.negotiate(remotecommand.offered_protocols(request.headers))
        except remotecommand.ProtocolError as e:
            return status_error(400, str(e))
        ws = web.WebSocketResponse(protocols=[protocol] if protocol else (), autoping=True)
        await ws.prepare(request)
        self.sessions.add(ws)
        session = Session(ws, Codec(protocol), opts)
        try:
            if command is None:
                await session.attach(lambda _size: remotecommand.AttachProcess.connect(
                    self.runc.attach_dir / handle.cid))
            else:
                with tempfile.TemporaryDirectory(prefix="exec-", dir=self.runc.state_dir) as tmp:
                    launch = runc_launch(self.runc, handle.cid, command, opts.tty,
                                         Path(tmp) / "pid")
                    await session.exec(lambda size: _spawn(launch, opts, size), command)
        finally:
            self.sessions.discard(ws)
        return ws

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        try:
            if self.pods is None:
                raise ContainerUnavailable(404, f'pod "{m["pod"]}" not found')
            target = self.pods(m["namespace"], m["pod"])
            ports = portforward.parse_ports(request.query.getall("ports", []))
        except ValueError as e:
            return status_error(400, str(e))
        except ContainerUnavailable as e:
            return status_error(e.code, e.message)
        if portforward.wants_spdy(request):
            versions = [v.strip() for h in request.headers.getall("X-Stream-Protocol-Version", ())
                        for v in h.split(",")]
            if portforward.PROTOCOL_SPDY not in versions:
                return status_error(400, f"port-forward protocol {versions} is not supported; "
                                         f"supports [{portforward.PROTOCOL_SPDY}]")
            return await portforward.serve_spdy(request, target, self.dialer)
        if request.method != "GET" or request.headers.get("Upgrade", "").lower() != "websocket":
            return status_error(400, "port-forward needs an upgrade to WebSocket "
                                     f"({', '.join(portforward.PROTOCOLS)}) or to SPDY/3.1")
        offered = remotecommand.offered_protocols(request.headers)
        protocol = portforward.negotiate(offered)
        if protocol is None:
            return status_error(400, f"requested protocol(s) are not supported: "
                                     f"[{' '.join(offered)}]; supports "
                                     f"[{' '.join(portforward.PROTOCOLS)}]")
        if protocol == portforward.PROTOCOL_V4 and not ports:
            return status_error(400, "query parameter \"port\" is required")
        ws = web.WebSocketResponse(protocols=[protocol], autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self.sessions.add(ws)
        try:
            await portforward.serve_websocket(ws, target, ports, self.dialer)
        finally:
            self.sessions.discard(ws)
        return ws


def runc_launch(runc: Runc, cid: str, command: list[str], tty: bool, pid_file: Path) -> Launch:
    """``runc exec`` of `command` in container `cid`; a command that cannot start
    is reported with runc's own message, as the CRI runtimes word it."""
    return Launch(runc.exec_args(cid, command, tty=tty, pid_file=pid_file), pid_file,
                  explain=lambda out: f"OCI runtime exec failed: {runc_error(out)}")


async def _spawn(launch: Launch, opts: StreamOptions,
                 size: tuple[int, int] | None) -> remotecommand.Process:
    if size is not None:
        return await remotecommand.PtyProcess.spawn(launch, size)
    return await remotecommand.PipeProcess.spawn(launch, opts.stdin)


# ---------------------------------------------------------------------- TLS


def ensure_serving_cert(cert_dir: Path, names: Iterable[str]) -> tuple[Path, Path]:
    """The kubelet's self-signed serving certificate and key in cert_dir: reused
    while it covers every name (IP addresses and DNS names) and is valid for
    another day, made again otherwise."""
    cert_path, key_path = cert_dir / CERT_FILE, cert_dir / KEY_FILE
    ips, dns = set(), {socket.gethostname()}
    for name in names:
        try:
            ips.add(ipaddress.ip_address(name))
        except ValueError:
            dns.add(name)
    if _covers(cert_path, key_path, ips, dns):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                            f"{socket.gethostname()}@{int(now.timestamp())}")])
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + CERT_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(d) for d in sorted(dns)]
                + [x509.IPAddress(i) for i in sorted(ips, key=str)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private_file(key_path, key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    write_private_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path


def _covers(cert_path: Path, key_path: Path, ips: set, dns: set[str]) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    fresh = cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=1)
    return fresh and ips <= set(san.get_values_for_type(x509.IPAddress)) and \
        dns <= set(san.get_values_for_type(x509.DNSName))

