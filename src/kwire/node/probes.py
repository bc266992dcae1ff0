"""The kubelet's prober and lifecycle handlers: upstream's pkg/probe (exec, httpGet,
tcpSocket), pkg/kubelet/prober (a worker per container and probe type, results,
Unhealthy events) and pkg/kubelet/lifecycle (postStart and preStop hooks).

The agent runs inside the node's network namespace, so pod IPs are dialled
directly. Exec in a container is an injected async callable (`ExecFn`;
`runtime_exec` adapts Runc), so this module does not depend on the runtime.

Three layers, each testable alone:

- `run_probe` and `run_handler`: one probe or hook, with upstream's messages.
- `ProbeState`: worker.go's bookkeeping (initial results, thresholds, hold after a
  failed liveness or startup probe), pure.
- `Prober`: the probe manager; asyncio workers feed ProbeState, report result
  changes through ``on_change`` and upstream's events through ``on_event``.

Where kwire differs from upstream, on purpose:

- A new container also resets the success/failure run, so a restarted container
  has to earn successThreshold again.
- A container that is not running gets readiness Failure; its liveness and startup
  results stay as they were (upstream sets them to Failure too, which only
  triggers a sync there but would read as "kill it" to the agent).
- grpc probes are not implemented: they report Unknown, which counts as an error
  (the result is discarded and an Unhealthy event says why).
- The lifecycle httpGet HTTPS-to-HTTP fallback (LifecycleHTTPFallback) is not
  implemented: it exists upstream for hooks written before 1.26 honoured scheme.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import random
import re
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import aiohttp
import yarl
from multidict import CIMultiDict

from kwire.node.runtime.spec import expand

log = logging.getLogger("kwire.node.probes")

KUBE_VERSION = "1.32"
"""The minor version in the User-Agent (kube-probe/1.32, kube-lifecycle/1.32)."""
MAX_BODY = 10 * 1024
"""Bytes of a response body read (upstream's maxRespBodyLength)."""
MAX_EXEC_OUTPUT = 10 * 1024
"""Bytes of an exec probe's output kept (upstream's maxReadLength)."""
MAX_PROBE_RETRIES = 3
"""Attempts when a probe errors (Unknown) before the error is reported."""
MAX_REDIRECTS = 10
EXEC_GRACE = 5.0
"""Seconds past a probe's timeout after which an exec that ignores its timeout is
abandoned and counted as timed out."""
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})

ExecFn = Callable[[list[str], "float | None"], Awaitable[tuple[int, bytes]]]
"""Runs argv in a container with a timeout in seconds (None: none) and returns
(exit code, stdout + stderr); raises TimeoutError when the timeout expires."""


class ProbeResult(str, Enum):
    """pkg/probe's results. The Prober only ever reports Success, Failure and
    Unknown: a Warning (a redirect to another host) counts as Success."""

    Success = "success"
    Warning = "warning"
    Failure = "failure"
    Unknown = "unknown"


class ProbeType(str, Enum):
    liveness = "liveness"
    readiness = "readiness"
    startup = "startup"

    @property
    def label(self) -> str:
        """As events print it: Liveness, Readiness, Startup."""
        return self.value.capitalize()

    @property
    def field(self) -> str:
        """The container's field: livenessProbe, readinessProbe, startupProbe."""
        return f"{self.value}Probe"


INITIAL_RESULT = {ProbeType.liveness: ProbeResult.Success,
                  ProbeType.readiness: ProbeResult.Failure,
                  ProbeType.startup: ProbeResult.Unknown}
"""A worker's result for a container it has not judged yet (worker.go's initialValue)."""


# ------------------------------------------------------------------ Go's spellings

_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f",
               "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def go_quote(text: str) -> str:
    """Go's %q of a string, which upstream's messages use."""
    def one(c: str) -> str:
        if c in _GO_ESCAPES:
            return _GO_ESCAPES[c]
        if c.isprintable():
            return c
        return f"\\x{ord(c):02x}" if ord(c) < 0x80 else f"\\u{ord(c):04x}"
    return '"' + "".join(one(c) for c in text) + '"'


def join_host_port(host: str, port: int) -> str:
    """Go's net.JoinHostPort: IPv6 addresses in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def canonical_header(name: str) -> str:
    """Go's CanonicalMIMEHeaderKey (x-custom-thing -> X-Custom-Thing): upstream adds
    httpHeaders with Header.Add, so their names are canonical before the defaults
    (User-Agent, Accept) are checked."""
    if not _TOKEN.fullmatch(name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def format_pod(pod: Mapping[str, Any]) -> str:
    """Upstream's format.Pod: name_namespace(uid)."""
    meta = pod.get("metadata") or {}
    return f"{meta.get('name', '')}_{meta.get('namespace', '')}({meta.get('uid', '')})"


def _errno_text(exc: OSError) -> str:
    """An errno as Go prints it ("connection refused")."""
    if exc.errno:
        text = os.strerror(exc.errno)
        return text[:1].lower() + text[1:]
    return str(exc)


# ------------------------------------------------------------------ ports and commands


class PortError(ValueError):
    """A probe's or hook's port does not resolve; the text is upstream's."""


def resolve_port(port: int | str | None, container: Mapping[str, Any]) -> int:
    """A port number, or the containerPort of the container's port with that name
    (upstream's ResolveContainerPort, including its last try of a number written as
    a string and its strconv error when that fails too)."""
    if isinstance(port, int) and not isinstance(port, bool):
        value = port
    elif isinstance(port, str):
        named = [p for p in container.get("ports") or () if p.get("name") == port]
        if named:
            value = int(named[0].get("containerPort") or 0)
        elif re.fullmatch(r"[+-]?[0-9]+", port):
            value = int(port)
        else:
            raise PortError(f"strconv.Atoi: parsing {go_quote(port)}: invalid syntax")
    else:
        raise PortError(f"intOrString had no kind: {port!r}")
    if 0 < value < 65536:
        return value
    raise PortError(f"invalid port number: {value}")


def expand_command(command: list[str], container: Mapping[str, Any]) -> list[str]:
    """$(VAR) in an exec probe's command, from the container's literal env values
    only (upstream's ExpandContainerCommandOnlyStatic: no valueFrom, no service
    variables)."""
    env = {e["name"]: e.get("value") or "" for e in container.get("env") or ()}
    return [expand(arg, env) for arg in command]


# ------------------------------------------------------------------ HTTP


class HTTPGetError(Exception):
    """The request got no response; the text is Go's url.Error (Get "url": ...)."""


class BodyReadError(Exception):
    """The response came but its body could not be read."""


@dataclass(frozen=True)
class HTTPGetRequest:
    """An httpGet action made concrete (upstream's NewRequestForHTTPGetAction)."""

    scheme: str
    host: str
    port: int
    target: str
    """Path and query, percent-encoded."""
    headers: tuple[tuple[str, str], ...]
    """Everything sent besides Host (unless overridden here) and Connection."""

    @property
    def url(self) -> str:
        return f"{self.scheme}://{join_host_port(self.host, self.port)}{self.target}"


def http_get_request(action: Mapping[str, Any], container: Mapping[str, Any], pod_ip: str,
                     purpose: str = "probe") -> HTTPGetRequest:
    """The request for an httpGet probe ("probe") or hook ("lifecycle"). The host
    defaults to the pod IP and the path to "/" (the API's default); httpHeaders may
    override Host, User-Agent and Accept, and an empty Accept removes it. Raises
    PortError."""
    port = resolve_port(action.get("port"), container)
    path = action.get("path") or "/"
    parsed = yarl.URL(path if path.startswith("/") else "/" + path)
    headers = [(canonical_header(h.get("name", "")), h.get("value") or "")
               for h in action.get("httpHeaders") or ()]
    values = {}
    for name, value in headers:
        values.setdefault(name, value)
    if "User-Agent" not in values:
        headers.append(("User-Agent", f"kube-{purpose}/{KUBE_VERSION}"))
    elif values["User-Agent"] == "":
        headers = [h for h in headers if h[0] != "User-Agent"]
    if "Accept" not in values:
        headers.append(("Accept", "*/*"))
    elif values["Accept"] == "":
        headers = [h for h in headers if h[0] != "Accept"]
    return HTTPGetRequest(scheme=(action.get("scheme") or "HTTP").lower(),
                          host=action.get("host") or pod_ip, port=port,
                          target=parsed.raw_path_qs, headers=tuple(headers))


async def _read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    data = bytearray()
    while len(data) < limit:
        chunk = await stream.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


class _Get:
    """One Go http.Client.Do of a GET the way the kubelet's client is set up: no
    proxy, no keep-alive, no compression, TLS without verification, redirects
    followed only to the same host (a redirect elsewhere is returned as it is),
    and one deadline over connecting, redirects and reading the body."""

    def __init__(self, request: HTTPGetRequest):
        self.request = request
        self.url = request.url
        self.addr = join_host_port(request.host, request.port)
        self.phase = "dial"

    async def __call__(self, timeout: float | None) -> tuple[int, bytes]:
        trace = aiohttp.TraceConfig()
        trace.on_connection_create_start.append(self._dialling)
        trace.on_connection_create_end.append(self._connected)
        skip = {"Accept-Encoding"} | ({"User-Agent", "Accept"} - {n for n, _ in self.request.headers})
        try:
            async with asyncio.timeout(timeout) as deadline:
                async with aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(force_close=True, ssl=False),
                        timeout=aiohttp.ClientTimeout(), auto_decompress=False,
                        trace_configs=[trace], skip_auto_headers=skip) as session:
                    return await self._follow(session)
        except TimeoutError as e:
            if not deadline.expired():
                raise self._error(_errno_text(e)) from None
            if self.phase == "body":
                raise BodyReadError("context deadline exceeded "
                                    "(Client.Timeout or context cancellation while reading body)") from None
            cause = (f"dial tcp {self.addr}: i/o timeout" if self.phase == "dial"
                     else "context deadline exceeded")
            raise self._error(f"{cause} (Client.Timeout exceeded while awaiting headers)") from None
        except aiohttp.ClientConnectorError as e:
            raise self._error(self._dial_error(e)) from None
        except aiohttp.ServerDisconnectedError:
            if self.phase == "body":
                raise BodyReadError("unexpected EOF") from None
            raise self._error("EOF") from None
        except aiohttp.ClientError as e:
            if self.phase == "body":
                raise BodyReadError(str(e)) from None
            raise self._error(_errno_text(e) if isinstance(e, OSError) else str(e)) from None

    async def _dialling(self, *_: Any) -> None:
        self.phase = "dial"

    async def _connected(self, *_: Any) -> None:
        self.phase = "headers"

    def _error(self, cause: str) -> HTTPGetError:
        return HTTPGetError(f'Get "{self.url}": {cause}')

    def _dial_error(self, e: aiohttp.ClientConnectorError) -> str:
        cause = e.os_error
        if isinstance(cause, ssl.SSLError):
            if cause.reason == "WRONG_VERSION_NUMBER":
                return "http: server gave HTTP response to HTTPS client"
            return f"tls: {(cause.reason or str(cause)).lower().replace('_', ' ')}"
        if isinstance(cause, socket.gaierror):
            return f"dial tcp: lookup {e.host}: no such host"
        return f"dial tcp {self.addr}: connect: {_errno_text(cause)}"

    async def _follow(self, session: aiohttp.ClientSession) -> tuple[int, bytes]:
        headers = list(self.request.headers)
        url = yarl.URL(self.url, encoded=True)
        first_host = url.host
        requests = 0
        while True:
            async with session.get(url, headers=CIMultiDict(headers), allow_redirects=False) as resp:
                requests += 1
                location = resp.headers.get("Location")
                if resp.status in REDIRECT_CODES and location:
                    relative = yarl.URL(location)
                    target = url.join(relative)
                    if target.host == first_host:
                        if requests >= MAX_REDIRECTS:
                            self.url = str(target)
                            raise self._error(f"stopped after {MAX_REDIRECTS} redirects")
                        if relative.scheme:
                            # Go keeps a Host override only through relative redirects
                            headers = [h for h in headers if h[0] != "Host"]
                        url = target
                        self.url = str(target)
                        self.addr = join_host_port(target.host or "", target.port or 0)
                        continue
                self.phase = "body"
                return resp.status, await _read_at_most(resp.content, MAX_BODY)


async def http_get(request: HTTPGetRequest, timeout: float | None) -> tuple[int, bytes]:
    """(status, first MAX_BODY bytes of the body) of the final response. Raises
    HTTPGetError when no response came and BodyReadError when its body broke off."""
    return await _Get(request)(timeout)


def _http_result(status: int, body: bytes) -> tuple[ProbeResult, str]:
    """Upstream's DoHTTPProbe verdict. The failure message leaves the body out on
    purpose (upstream keeps it out of events, kubernetes#99425)."""
    if 200 <= status < 400:
        text = body.decode(errors="replace")
        if status >= 300:
            return ProbeResult.Warning, f"Probe terminated redirects, Response body: {text}"
        return ProbeResult.Success, text
    return ProbeResult.Failure, f"HTTP probe failed with statuscode: {status}"


# ------------------------------------------------------------------ TCP and exec


async def tcp_probe(host: str, port: int, timeout: float) -> tuple[ProbeResult, str]:
    """Success when a connection opens within the timeout. The socket is closed
    with a reset (SO_LINGER 0, as upstream's probe dialer) so probes leave no
    TIME_WAIT behind."""
    addr = join_host_port(host, port)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return ProbeResult.Failure, f"dial tcp {addr}: i/o timeout"
    except socket.gaierror:
        return ProbeResult.Failure, f"dial tcp: lookup {host}: no such host"
    except OSError as e:
        return ProbeResult.Failure, f"dial tcp {addr}: connect: {_errno_text(e)}"
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
    writer.close()
    return ProbeResult.Success, ""


async def exec_probe(command: list[str], timeout: float, exec_fn: ExecFn) -> tuple[ProbeResult, str]:
    """Exit code 0 is Success; the combined output, cut to MAX_EXEC_OUTPUT, is the
    message. An exec that could not run at all is Unknown (an error)."""
    try:
        async with asyncio.timeout(timeout + EXEC_GRACE):
            code, output = await exec_fn(command, timeout)
    except TimeoutError:
        return ProbeResult.Failure, f"command {go_quote(' '.join(command))} timed out"
    except Exception as e:  # noqa: BLE001 - any runtime failure is the probe's error
        return ProbeResult.Unknown, str(e) or type(e).__name__
    text = output[:MAX_EXEC_OUTPUT].decode(errors="replace")
    return (ProbeResult.Success if code == 0 else ProbeResult.Failure), text


def runtime_exec(runtime: Any, container_id: str) -> ExecFn:
    """An ExecFn for one container of a runtime with Runc's
    ``exec(cid, args, timeout=)`` -> ExecResult; the blocking call runs in a thread.
    ``Prober(on_change, functools.partial(runtime_exec, runc))`` wires it up."""
    async def run(argv: list[str], timeout: float | None) -> tuple[int, bytes]:
        result = await asyncio.to_thread(runtime.exec, container_id, argv, timeout=timeout)
        if result.timed_out:
            raise TimeoutError(f"exec in {container_id} timed out")
        return result.exit_code, result.stdout + result.stderr
    return run


# ------------------------------------------------------------------ one probe, one hook


async def run_probe(probe: Mapping[str, Any], *, pod_ip: str, container: Mapping[str, Any],
                    exec_fn: ExecFn) -> tuple[ProbeResult, str]:
    """Run a Probe once (upstream's runProbe): (result, output or message).
    Unknown means the probe could not be run (a port name that does not resolve,
    an exec the runtime refused); the Prober retries and then discards it."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    if probe.get("exec") is not None:
        command = expand_command(list(probe["exec"].get("command") or ()), container)
        return await exec_probe(command, timeout, exec_fn)
    if probe.get("httpGet") is not None:
        try:
            request = http_get_request(probe["httpGet"], container, pod_ip)
            return _http_result(*await http_get(request, timeout))
        except PortError as e:
            return ProbeResult.Unknown, str(e)
        except HTTPGetError as e:
            return ProbeResult.Failure, str(e)
        except BodyReadError as e:
            return ProbeResult.Unknown, str(e)
    if probe.get("tcpSocket") is not None:
        action = probe["tcpSocket"]
        try:
            port = resolve_port(action.get("port"), container)
        except PortError as e:
            return ProbeResult.Unknown, str(e)
        return await tcp_probe(action.get("host") or pod_ip, port, timeout)
    if probe.get("grpc") is not None:
        return ProbeResult.Unknown, "grpc probes are not supported"
    return ProbeResult.Unknown, f"missing probe handler for container {container.get('name')}"


async def run_handler(handler: Mapping[str, Any], *, pod_ip: str, container: Mapping[str, Any],
                      exec_fn: ExecFn, pod: Mapping[str, Any] | None = None) -> str | None:
    """Run a postStart or preStop LifecycleHandler: None on success, else
    upstream's message (the agent reports a failed postStart as
    FailedPostStartHook and kills the container). As upstream: exec has no
    timeout, httpGet fails only when no response comes (any status code will
    do), sleep sleeps (cancel the call to cut it short), and tcpSocket cannot be
    run."""
    where = f"for Container {go_quote(container.get('name', ''))}"
    if pod is not None:
        where += f" in Pod {go_quote(format_pod(pod))}"
    if handler.get("exec") is not None:
        command = list(handler["exec"].get("command") or ())
        output = b""
        try:
            code, output = await exec_fn(command, None)
        except Exception as e:  # noqa: BLE001 - the hook's failure, reported to the agent
            error = str(e) or type(e).__name__
        else:
            if code == 0:
                return None
            error = f"command '{' '.join(command)}' exited with {code}: {output.decode(errors='replace')}"
        return (f"Exec lifecycle hook ([{' '.join(command)}]) {where} failed - error: {error}, "
                f"message: {go_quote(output.decode(errors='replace'))}")
    if handler.get("httpGet") is not None:
        action = handler["httpGet"]
        error = await _http_hook_error(action, container, pod_ip)
        if error is None:
            return None
        return f"HTTP lifecycle hook ({action.get('path', '')}) {where} failed - error: {error}"
    if handler.get("sleep") is not None:
        await asyncio.sleep(int(handler["sleep"].get("seconds") or 0))
        return None
    return f"Cannot run handler: invalid handler: {json.dumps(handler, sort_keys=True)}"


async def _http_hook_error(action: Mapping[str, Any], container: Mapping[str, Any],
                           pod_ip: str) -> str | None:
    """Why an httpGet hook got no response, or None when one came (a body that
    breaks off does not matter: upstream only discards it)."""
    if not (action.get("host") or pod_ip):
        return "failed to find networking container: the pod has no IP"
    try:
        await http_get(http_get_request(action, container, pod_ip, "lifecycle"), None)
    except (PortError, HTTPGetError) as e:
        return str(e)
    except BodyReadError:
        return None
    return None


# ------------------------------------------------------------------ worker state


@dataclass
class ProbeState:
    """One worker's bookkeeping, without timers or I/O (upstream's worker.go): the
    reported result, the run of equal outcomes counted against the thresholds,
    and the hold after a failed liveness or startup probe (no more probing until
    a new container)."""

    probe_type: ProbeType
    success_threshold: int = 1
    failure_threshold: int = 3
    container_id: str | None = None
    result: ProbeResult | None = None
    """None until the worker has seen a container."""
    last: ProbeResult | None = None
    run: int = 0
    on_hold: bool = False

    @classmethod
    def for_probe(cls, probe_type: ProbeType, probe: Mapping[str, Any]) -> ProbeState:
        """Thresholds with the API's defaults; successThreshold is 1 for liveness
        and startup whatever the spec says (validation demands it)."""
        success = int(probe.get("successThreshold") or 1) if probe_type is ProbeType.readiness else 1
        return cls(probe_type, success, int(probe.get("failureThreshold") or 3))

    def set(self, result: ProbeResult) -> ProbeResult | None:
        """Report `result`; returns it if that changed the reported result."""
        if result == self.result:
            return None
        self.result = result
        return result

    def observe(self, container_id: str) -> ProbeResult | None:
        """The worker sees `container_id` running. A new container starts over from
        the initial result, with no run counted and no hold."""
        if container_id == self.container_id:
            return None
        self.container_id = container_id
        self.last, self.run, self.on_hold = None, 0, False
        return self.set(INITIAL_RESULT[self.probe_type])

    def due(self, *, running_for: float, initial_delay: int, started: bool) -> bool:
        """Whether to probe now: not on hold, initialDelaySeconds over (whole
        seconds since the container started, as upstream truncates), and a
        startup probe only until the container has started, the others only
        after."""
        if self.on_hold or int(running_for) < initial_delay:
            return False
        return not started if self.probe_type is ProbeType.startup else started

    def record(self, outcome: ProbeResult) -> ProbeResult | None:
        """Count a probe's Success or Failure; once the run reaches its threshold
        the outcome is reported. Returns the reported result if it changed."""
        if outcome == self.last:
            self.run += 1
        else:
            self.last, self.run = outcome, 1
        threshold = self.failure_threshold if outcome is ProbeResult.Failure else self.success_threshold
        if self.run < threshold:
            return None
        changed = self.set(outcome)
        if outcome is ProbeResult.Failure and self.probe_type is not ProbeType.readiness:
            # the container will be killed: stop probing it (kubernetes#21751)
            self.on_hold, self.run = True, 0
        return changed


# ------------------------------------------------------------------ the manager

OnChange = Callable[[str, str, ProbeType, ProbeResult], Any]
"""on_change(pod_uid, container_name, probe_type, result); may be async."""
OnEvent = Callable[[str, str, str, str], Any]
"""on_event(pod_uid, container_name, reason, message): a Warning event about the
container; may be async."""
ExecFactory = Callable[[str], ExecFn]
"""exec_factory(container_id) -> ExecFn for that container."""


@dataclass
class _PodEntry:
    pod: Mapping[str, Any]
    running: dict[str, tuple[str, float]]
    pod_ip: str


async def _notify(callback: Callable[..., Any] | None, *args: Any) -> None:
    if callback is None:
        return
    try:
        outcome = callback(*args)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:
        log.exception("probe callback %s failed", getattr(callback, "__name__", callback))


def _probed_containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Containers that get probe workers: the regular ones and sidecars
    (restartable init containers)."""
    spec = pod.get("spec") or {}
    sidecars = [c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"]
    return [*(spec.get("containers") or ()), *sidecars]


class _Worker:
    """One probe of one container, run every periodSeconds (upstream's worker)."""

    def __init__(self, prober: Prober, uid: str, container: Mapping[str, Any], probe_type: ProbeType):
        self.prober = prober
        self.uid = uid
        self.container = container
        self.name = container["name"]
        self.probe_type = probe_type
        self.spec = container[probe_type.field]
        self.state = ProbeState.for_probe(probe_type, self.spec)
        self.trigger = asyncio.Event()
        self.done = False
        self.task: asyncio.Task | None = None

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds") or 10) * self.prober.time_scale

    def stop(self) -> None:
        self.done = True
        if self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if time.monotonic() - self.prober.started_at < self.period:
                # an agent that just (re)started would otherwise probe everything at once
                await asyncio.sleep(random.random() * self.period)
            next_tick = loop.time()
            while await self._step():
                next_tick = max(next_tick + self.period, loop.time())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(next_tick):
                        await self.trigger.wait()
                self.trigger.clear()
        finally:
            self.done = True

    async def _step(self) -> bool:
        """One tick (upstream's doProbe); False ends the worker."""
        try:
            return await self._do_probe()
        except Exception:  # as upstream: log and keep going
            log.exception("probe worker %s/%s %s", self.uid, self.name, self.probe_type.value)
            return True

    async def _do_probe(self) -> bool:
        entry = self.prober.pod_entry(self.uid)
        running = entry.running.get(self.name) if entry else None
        if entry is None or running is None:
            if self.probe_type is ProbeType.readiness and self.state.container_id is not None:
                await self._publish(self.state.set(ProbeResult.Failure))
            return True
        container_id, started_at = running
        await self._publish(self.state.observe(container_id))
        deleting = (entry.pod.get("metadata") or {}).get("deletionTimestamp")
        if deleting and self.probe_type is not ProbeType.readiness:
            # a pod shutting down is not restarted by its probes: end quietly
            await self._publish(self.state.set(ProbeResult.Success))
            return False
        running_for = (time.time() - started_at) / self.prober.time_scale
        if not self.state.due(running_for=running_for,
                              initial_delay=int(self.spec.get("initialDelaySeconds") or 0),
                              started=self.prober.started(self.uid, self.name)):
            return True
        outcome = await self._probe(entry, container_id)
        if outcome is not None and self.state.container_id == container_id and not self.done:
            await self._publish(self.state.record(outcome))
        return True

    async def _probe(self, entry: _PodEntry, container_id: str) -> ProbeResult | None:
        """Run the probe with retries on error and post upstream's events; None
        when it errored (the outcome is thrown away)."""
        exec_fn = self.prober.exec_factory(container_id)
        for _ in range(MAX_PROBE_RETRIES):
            result, output = await run_probe(self.spec, pod_ip=entry.pod_ip, container=self.container,
                                             exec_fn=exec_fn)
            if result is not ProbeResult.Unknown:
                break
        label = self.probe_type.label
        if result is ProbeResult.Failure:
            await self.prober.event(self.uid, self.name, "Unhealthy", f"{label} probe failed: {output}")
        elif result is ProbeResult.Warning:
            await self.prober.event(self.uid, self.name, "ProbeWarning", f"{label} probe warning: {output}")
            return ProbeResult.Success
        elif result is ProbeResult.Unknown:
            await self.prober.event(self.uid, self.name, "Unhealthy",
                                    f"{label} probe errored and resulted in unknown state: {output}")
            return None
        return result

    async def _publish(self, changed: ProbeResult | None) -> None:
        if changed is None:
            return
        await _notify(self.prober.on_change, self.uid, self.name, self.probe_type, changed)
        if self.probe_type is ProbeType.startup and changed is ProbeResult.Success:
            self.prober.trigger(self.uid, self.name, ProbeType.readiness)


class Prober:
    """The probe manager (upstream's prober_manager): a worker per (pod uid,
    container name, probe type) for every probe in the spec, started by
    update_pod and stopped by remove_pod.

    ``on_change`` hears every change of what result() returns, including the
    initial result when a worker first sees a container (liveness Success,
    readiness Failure, startup Unknown); a Failure of liveness or startup means
    "kill and restart this container". ``on_event`` gets upstream's Unhealthy
    and ProbeWarning events, one per failed probe. Seconds in the probe specs
    are multiplied by ``time_scale`` (tests), except timeoutSeconds. Every method
    runs on the event loop.
    """

    def __init__(self, on_change: OnChange, exec_factory: ExecFactory, *,
                 on_event: OnEvent | None = None, time_scale: float = 1.0):
        self.on_change = on_change
        self.exec_factory = exec_factory
        self.on_event = on_event
        self.time_scale = time_scale
        self.started_at = time.monotonic()
        self._pods: dict[str, _PodEntry] = {}
        self._workers: dict[tuple[str, str, ProbeType], _Worker] = {}
        self._tasks: set[asyncio.Task] = set()

    def update_pod(self, pod: Mapping[str, Any], running: Mapping[str, tuple[str, float]],
                   pod_ip: str) -> None:
        """The pod as last synced: ``running`` maps each running container's name
        to (container ID, startedAt as Unix seconds); a new ID is a new container.
        Starts the workers a container's probes need, and runs at once every
        readiness probe that has not succeeded (as upstream's UpdatePodStatus)."""
        uid = pod["metadata"]["uid"]
        self._pods[uid] = _PodEntry(pod, dict(running), pod_ip)
        for container in _probed_containers(pod):
            for probe_type in ProbeType:
                if not container.get(probe_type.field):
                    continue
                key = (uid, container["name"], probe_type)
                worker = self._workers.get(key)
                if worker is None:
                    self._start(_Worker(self, uid, container, probe_type))
                elif probe_type is ProbeType.readiness and worker.state.result is not ProbeResult.Success:
                    worker.trigger.set()

    def stop_liveness_and_startup(self, uid: str) -> None:
        """The pod is terminating: its containers must not be restarted by a probe
        any more. Readiness goes on (an endpoint drains as the pod stops)."""
        for (pod_uid, _, probe_type), worker in self._workers.items():
            if pod_uid == uid and probe_type is not ProbeType.readiness:
                worker.stop()

    def remove_pod(self, uid: str) -> None:
        """Stop and forget the pod's workers and results."""
        self._pods.pop(uid, None)
        for key in [k for k in self._workers if k[0] == uid]:
            self._workers.pop(key).stop()

    def result(self, uid: str, name: str, probe_type: ProbeType | str) -> ProbeResult | None:
        """The worker's reported result; None without a (live) worker or before it
        has seen a container."""
        worker = self._workers.get((uid, name, ProbeType(probe_type)))
        return None if worker is None or worker.done else worker.state.result

    def started(self, uid: str, name: str) -> bool:
        """containerStatuses[].started: running, and its startup probe (if any) has
        succeeded for this very container."""
        entry = self._pods.get(uid)
        if entry is None or name not in entry.running:
            return False
        worker = self._workers.get((uid, name, ProbeType.startup))
        if worker is None or worker.done:
            return True
        return (worker.state.container_id == entry.running[name][0]
                and worker.state.result is ProbeResult.Success)

    def ready(self, uid: str, name: str) -> bool:
        """containerStatuses[].ready: started, and its readiness probe (if any) has
        succeeded for this very container. A container not ready yet has its
        readiness probe run at once, as upstream's UpdatePodStatus does."""
        if not self.started(uid, name):
            return False
        worker = self._workers.get((uid, name, ProbeType.readiness))
        if worker is None or worker.done:
            return True
        if (worker.state.container_id == self._pods[uid].running[name][0]
                and worker.state.result is ProbeResult.Success):
            return True
        worker.trigger.set()
        return False

    def trigger(self, uid: str, name: str, probe_type: ProbeType) -> None:
        """Run that probe now instead of at its next period."""
        worker = self._workers.get((uid, name, probe_type))
        if worker is not None:
            worker.trigger.set()

    def pod_entry(self, uid: str) -> _PodEntry | None:
        return self._pods.get(uid)

    async def event(self, uid: str, name: str, reason: str, message: str) -> None:
        await _notify(self.on_event, uid, name, reason, message)

    async def close(self) -> None:
        """Stop every worker and wait for them."""
        for worker in self._workers.values():
            worker.stop()
        self._workers.clear()
        self._pods.clear()
        tasks = list(self._tasks)
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, worker: _Worker) -> None:
        self._workers[(worker.uid, worker.name, worker.probe_type)] = worker
        worker.task = asyncio.get_running_loop().create_task(
            worker.run(), name=f"probe {worker.uid}/{worker.name} {worker.probe_type.value}")
        self._tasks.add(worker.task)
        worker.task.add_done_callback(self._tasks.discard)
