"""pods/log, pods/exec, pods/attach and pods/portforward, served as kube-apiserver
serves them: check the pod and the container here, then proxy to the kubelet API
of the pod's node (kwire.node.server, in that node's agent).

The node is found from the Pod's spec.nodeName and the Node's status: its
InternalIP (else ExternalIP, else Hostname: kubeadm's preferred order) and
status.daemonEndpoints.kubeletEndpoint.Port. The API server authenticates with
the node-agent token and, like kube-apiserver without
--kubelet-certificate-authority, does not verify the kubelet's certificate.

- log: the kubelet's text/plain answer is streamed on as it comes; a followed log
  ends when the client goes away.
- exec/attach over WebSocket: the kubelet's WebSocket is opened first, offering
  the client's subprotocols, and the client's is then accepted with the one the
  kubelet chose; messages (binary and text) and the close code are relayed.
  Pings are answered on each side by aiohttp.
- portforward: the same WebSocket relay (kubectl's SPDY tunnelled in binary
  messages, or the Python client's v4 channels: the kubelet speaks both). Its
  SPDY fallback (POST, ``Upgrade: SPDY/3.1``) is passed through as
  kube-apiserver does: the same upgrade asked of the kubelet on a connection
  of its own, and once both have switched, bytes copied both ways.
- anything else on exec/attach (kubectl's SPDY fallback is a POST with
  ``Upgrade: SPDY/3.1``) is passed to the kubelet as a plain request: it answers
  with the reason the WebSocket attempt failed, or that SPDY is not served.
"""
from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from kwire.api import errors
from kwire.api.errors import APIError
from kwire.api.resources import Resources
from kwire.api.validation import Cause, forbidden, invalid
from kwire.node.portforward import end_take_over, parse_ports, take_over, wants_spdy

DEFAULT_KUBELET_PORT = 10250
ADDRESS_TYPES = ("InternalIP", "ExternalIP", "Hostname")
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
CLIENT_CHECK = 1.0
"""Seconds between checks that a followed log's reader is still there."""
CONNECT_TIMEOUT = 10.0
"""Seconds to reach a kubelet and get its answer to an upgrade."""
COPY_SIZE = 64 * 1024
CLOSE_WAIT = 5.0
"""Seconds to wait for the other side's close once one side has closed."""
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False", "")


class KubeletProxy:
    def __init__(self, resources: Resources, token: str | None):
        self.res = resources
        self.token = token

    # ------------------------------------------------------------------ pods/log

    async def log(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        params = log_params(request.query, name)
        pod = await self._pod(namespace, name)
        container = container_for(pod, request.query.get("container") or None)
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            # not scheduled: no container has written anything yet
            return web.Response(body=b"", content_type="text/plain")
        url = await self._url(node, "containerLogs", namespace, name, container)
        session = self._session()
        try:
            try:
                upstream = await session.get(url, params=params)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                raise APIError(500, f'Get "{url}": {e}', "InternalError")
            try:
                if upstream.status >= 300:
                    raise _kubelet_error(upstream.status, await upstream.read())
                return await _stream_body(request, upstream)
            finally:
                upstream.release()
        finally:
            await session.close()

    # ------------------------------------------------------------------ exec, attach

    async def stream(self, request: web.Request, namespace: str, name: str,
                     subresource: str) -> web.StreamResponse:
        """pods/exec or pods/attach (GET with a WebSocket upgrade, or kubectl's POST)."""
        pod = await self._pod(namespace, name)
        container = container_for(pod, request.query.get("container") or None)
        params = stream_params(request.query, with_command=subresource == "exec")
        node = _node_of(pod, name)
        return await self._forward(request, await self._url(node, subresource, namespace,
                                                            name, container), params)

    async def port_forward(self, request: web.Request, namespace: str,
                           name: str) -> web.StreamResponse:
        """pods/portforward: the ports (PodPortForwardOptions) are checked here, the
        rest is the kubelet's."""
        pod = await self._pod(namespace, name)
        ports = request.query.getall("ports", [])
        try:
            parse_ports(ports)
        except ValueError as e:
            raise errors.bad_request(str(e)) from None
        params = [("ports", p) for p in ports]
        node = _node_of(pod, name)
        if wants_spdy(request):
            return await self._tunnel(request, node, f"/portForward/{quote(namespace, safe='')}/"
                                                     f"{quote(name, safe='')}", params)
        return await self._forward(request, await self._url(node, "portForward", namespace,
                                                            name), params)

    async def _forward(self, request: web.Request, url: str,
                       params: list[tuple[str, str]]) -> web.StreamResponse:
        """A WebSocket upgrade relayed as one, anything else passed on as a plain request."""
        session = self._session()
        try:
            if request.method == "GET" and \
                    request.headers.get("Upgrade", "").lower() == "websocket":
                return await self._relay(request, session, url, params)
            return await _plain(session, request.method, url, params)
        finally:
            await session.close()

    async def _relay(self, request: web.Request, session: aiohttp.ClientSession, url: str,
                     params: list[tuple[str, str]]) -> web.WebSocketResponse:
        offered = [p.strip() for h in request.headers.getall("Sec-WebSocket-Protocol", ())
                   for p in h.split(",") if p.strip()]
        try:
            upstream = await session.ws_connect(url, params=params, protocols=offered,
                                                autoping=True, max_msg_size=0)
        except aiohttp.WSServerHandshakeError:
            # refused before upgrading: the same request without the upgrade starts
            # nothing and gets the reason
            raise await _refusal(session, url, params)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise APIError(500, f"error dialing backend: {e}", "InternalError")
        try:
            client = web.WebSocketResponse(
                protocols=[upstream.protocol] if upstream.protocol else (), autoping=True,
                max_msg_size=0)
            await client.prepare(request)
            await relay(client, upstream)
            return client
        finally:
            await upstream.close()

    async def _tunnel(self, request: web.Request, node_name: str, path: str,
                      params: list[tuple[str, str]]) -> web.StreamResponse:
        node = await self.res.get(self.res.registry.resource("", "v1", "nodes"), None, node_name)
        host, port = kubelet_endpoint(node)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=context), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            raise APIError(500, f"error dialing backend: {e}", "InternalError")
        try:
            lines = [f"POST {path}{'?' + urlencode(params) if params else ''} HTTP/1.1",
                     f"Host: {f'[{host}]' if ':' in host else host}:{port}",
                     "Connection: Upgrade",
                     f"Upgrade: {request.headers.get('Upgrade', '')}", "Content-Length: 0"]
            lines += [f"X-Stream-Protocol-Version: {v}"
                      for v in request.headers.getall("X-Stream-Protocol-Version", ())]
            if self.token:
                lines.append(f"Authorization: Bearer {self.token}")
            up_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            try:
                status, headers = await asyncio.wait_for(_read_head(up_reader), CONNECT_TIMEOUT)
                if status != 101:
                    raise _kubelet_error(status, await up_reader.readexactly(
                        int(headers.get("content-length") or 0)))
            except (OSError, ValueError, asyncio.TimeoutError,
                    asyncio.IncompleteReadError) as e:
                raise APIError(500, f"error upgrading the kubelet connection: {e!r}",
                               "InternalError")
            answer = {k: v for k, v in headers.items()
                      if k in ("upgrade", "x-stream-protocol-version")}
            resp, reader, writer = await take_over(request, answer)
            try:
                await splice((reader, writer), (up_reader, up_writer))
            finally:
                await end_take_over(request, writer)
            return resp
        finally:
            up_writer.close()

    # ------------------------------------------------------------------ helpers

    async def _pod(self, namespace: str, name: str) -> dict:
        return await self.res.get(self.res.registry.resource("", "v1", "pods"), namespace, name)

    async def _url(self, node_name: str, path: str, *names: str) -> str:
        node = await self.res.get(self.res.registry.resource("", "v1", "nodes"), None, node_name)
        host, port = kubelet_endpoint(node)
        host = f"[{host}]" if ":" in host else host
        return (f"https://{host}:{port}/{path}/"
                + "/".join(quote(p, safe="") for p in names))

    def _session(self) -> aiohttp.ClientSession:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=False), headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))


def _node_of(pod: dict, name: str) -> str:
    """The node a pod runs on; exec, attach and port-forward need one."""
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    return node


def kubelet_endpoint(node: dict) -> tuple[str, int]:
    """(address, port) of a Node's kubelet API."""
    status = node.get("status") or {}
    by_type: dict[str, str] = {}
    for a in status.get("addresses") or ():
        by_type.setdefault(a.get("type", ""), a.get("address", ""))
    host = next((by_type[t] for t in ADDRESS_TYPES if by_type.get(t)), None)
    if host is None:
        known = ", ".join(f"{a.get('type')}:{a.get('address')}"
                          for a in status.get("addresses") or ())
        raise APIError(500, f"Internal error occurred: no preferred addresses found; "
                            f"known addresses: [{known}]", "InternalError")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    return host, int(port) if port else DEFAULT_KUBELET_PORT


def container_for(pod: dict, requested: str | None) -> str:
    """The container a request is about: the one named (it must exist), else the
    default-container annotation's, else the only one; upstream's wording otherwise."""
    spec = pod.get("spec") or {}
    name = pod["metadata"]["name"]
    names = [c["name"] for c in spec.get("containers") or ()]
    init = [c["name"] for c in spec.get("initContainers") or ()]
    every = names + init + [c["name"] for c in spec.get("ephemeralContainers") or ()]
    if requested:
        if requested not in every:
            raise errors.bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    default = (pod["metadata"].get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    if default in every:
        return default
    if len(names) == 1:
        return names[0]
    if not names:
        raise errors.bad_request(f"a container name must be specified for pod {name}")
    message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
    if init:
        message += f" or one of the init containers: [{' '.join(init)}]"
    raise errors.bad_request(message)


def log_params(query: Mapping[str, str], pod: str) -> dict[str, str]:
    """The PodLogOptions of a query, checked as kube-apiserver checks them, as the
    query the kubelet gets."""
    out: dict[str, str] = {}
    for name in ("follow", "previous", "timestamps"):
        if _bool(query, name):
            out[name] = "true"
    numbers = {name: _int(query, name) for name in ("sinceSeconds", "tailLines", "limitBytes")}
    since_time = query.get("sinceTime") or None
    if since_time is not None and _rfc3339(since_time) is None:
        raise errors.bad_request(f'parsing time "{since_time}" as "2006-01-02T15:04:05Z07:00": '
                                 "cannot parse it as an RFC 3339 time")
    causes: list[Cause] = []
    if numbers["tailLines"] is not None and numbers["tailLines"] < 0:
        causes.append(invalid("tailLines", numbers["tailLines"],
                              "must be greater than or equal to 0"))
    if numbers["limitBytes"] is not None and numbers["limitBytes"] < 1:
        causes.append(invalid("limitBytes", numbers["limitBytes"], "must be greater than 0"))
    if numbers["sinceSeconds"] is not None and since_time is not None:
        causes.append(forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be "
                                    "specified"))
    elif numbers["sinceSeconds"] is not None and numbers["sinceSeconds"] < 1:
        causes.append(invalid("sinceSeconds", numbers["sinceSeconds"], "must be greater than 0"))
    if causes:
        raise errors.invalid("PodLogOptions", pod, causes)
    out.update({k: str(v) for k, v in numbers.items() if v is not None})
    if since_time is not None:
        out["sinceTime"] = since_time
    return out


def stream_params(query: Mapping[str, str], *, with_command: bool) -> list[tuple[str, str]]:
    """The PodExecOptions / PodAttachOptions of a query as the kubelet gets them
    (each command word in order, "1" for each stream asked for)."""
    params = [("command", c) for c in query.getall("command", [])] if with_command else []
    params += [(name, "1") for name in ("stdin", "stdout", "stderr", "tty")
               if _bool(query, name)]
    return params


async def relay(client: web.WebSocketResponse,
                upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Copy messages both ways until one side closes; pass its close on to the other."""
    down = asyncio.create_task(_copy(upstream, client))
    up = asyncio.create_task(_copy(client, upstream))
    try:
        done, _ = await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        if down in done:
            if upstream.close_code in (None, 1005, 1006):  # no close frame: the agent went away
                await client.close(code=WSCloseCode.INTERNAL_ERROR,
                                   message=b"the node agent dropped the stream")
            else:
                await client.close(code=upstream.close_code)
        else:
            await upstream.close(code=_sendable(client.close_code))
            await asyncio.wait({down}, timeout=CLOSE_WAIT)
    finally:
        for task in (down, up):
            task.cancel()
        await asyncio.gather(down, up, return_exceptions=True)


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """An HTTP response's status and headers (lower-cased names)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {}
    for line in head[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def splice(a: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 b: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    """Copy bytes both ways until either side ends (TLS has no half-close, and
    SPDY ends its streams itself)."""
    async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while chunk := await src.read(COPY_SIZE):
            dst.write(chunk)
            await dst.drain()

    tasks = {asyncio.create_task(copy(a[0], b[1])), asyncio.create_task(copy(b[0], a[1]))}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _copy(src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
    try:
        async for msg in src:
            if msg.type == WSMsgType.BINARY:
                await dst.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await dst.send_str(msg.data)
            # let a lost connection be noticed: with messages queued neither call
            # yields, and writes to a dead socket would go on (asyncio warns of them)
            await asyncio.sleep(0)
    except ConnectionError:
        pass


def _sendable(code: int | None) -> int:
    """A close code that may go in a close frame (1005 and 1006 only describe one)."""
    return WSCloseCode.OK if code in (None, 1005, 1006) else code


async def _stream_body(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    out = web.StreamResponse(headers={"Content-Type": "text/plain"})
    out.enable_chunked_encoding()
    await out.prepare(request)
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(upstream.content.readany(), CLIENT_CHECK)
            except asyncio.TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    return out
                continue
            if not chunk:
                break
            await out.write(chunk)
        await out.write_eof()
    except (ConnectionError, aiohttp.ClientError):
        pass  # one side went away: the stream ends
    return out


async def _plain(session: aiohttp.ClientSession, method: str, url: str,
                 params: list[tuple[str, str]]) -> web.Response:
    """The kubelet's answer to a request that does not upgrade (always an error)."""
    try:
        async with session.request(method, url, params=params) as resp:
            body = await resp.read()
            status, content_type = resp.status, resp.content_type
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
        raise APIError(500, f"error dialing backend: {e}", "InternalError")
    if status >= 300:
        raise _kubelet_error(status, body)
    return web.Response(body=body, status=status, content_type=content_type)


async def _refusal(session: aiohttp.ClientSession, url: str,
                   params: list[tuple[str, str]]) -> APIError:
    try:
        await _plain(session, "GET", url, params)
    except APIError as e:
        return e
    return APIError(500, "Internal error occurred: the node agent refused the upgrade",
                    "InternalError")


def _kubelet_error(status: int, body: bytes) -> APIError:
    """The kubelet's error as the API server's: its Status as it is, or its text."""
    if status == 401:
        return APIError(500, "Internal error occurred: the node agent refused the API "
                             "server's credentials", "InternalError")
    try:
        obj = json.loads(body)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and obj.get("kind") == "Status":
        return APIError(int(obj.get("code") or status), obj.get("message") or "",
                        obj.get("reason") or None, obj.get("details"))
    text = body.decode(errors="replace").strip()
    if status >= 500:
        return APIError(status, f"Internal error occurred: {text}", "InternalError")
    return APIError(status, text)


def _bool(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name, "")
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise errors.bad_request(f'invalid value for {name}: "{value}" is not a boolean')


def _int(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f'invalid value for {name}: "{value}" is not an integer') \
            from None


def _rfc3339(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
