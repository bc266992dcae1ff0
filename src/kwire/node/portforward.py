"""pods/portforward on the node, as the kubelet serves it.

Two client protocols, both over the WebSocket the API server relays:

- ``SPDY/3.1+portforward.k8s.io`` (kubectl): SPDY/3.1 over the byte stream the
  binary messages make. For each local connection kubectl opens an error stream
  and a data stream with headers ``streamtype``, ``port`` and ``requestid``;
  the data stream is piped to the pod's port, a failure is written as text on
  the error stream, and both get FIN at the end.
- ``v4.channel.k8s.io`` (the Python client): the ports are in the query
  (``?ports=80,443``); port i has data channel 2i and error channel 2i+1, and
  the first message on each is the port as 2 bytes, little-endian.

The pod's port is dialled inside the pod's network namespace, on localhost, as
the kubelet (through the CRI runtime) does: a server bound to 127.0.0.1 in the
pod is reachable. A socket keeps the namespace it was created in, so only its
creation happens in the namespace, in one thread kept for that (setns(2)
changes the calling thread's namespace only); it is connected from the event loop.
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from kwire.node import spdy

log = logging.getLogger("kwire.node.portforward")

PROTOCOL_SPDY_WS = "SPDY/3.1+portforward.k8s.io"
PROTOCOL_V4 = "v4.channel.k8s.io"
PROTOCOLS = (PROTOCOL_SPDY_WS, PROTOCOL_V4)
STREAM_CREATION_TIMEOUT = 30.0
"""Seconds a stream waits for the other of its pair (upstream's streamCreationTimeout)."""
READ_SIZE = 64 * 1024
CLOSE_WAIT = 1.0
"""Seconds the client's side gets to finish once the pod's side has ended."""
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class PodTarget:
    """Where a pod's ports are: its sandbox (upstream names the pod by it in
    errors) and the network namespace to dial in (the node's for hostNetwork)."""

    sandbox_id: str
    netns: str


class PortForwardError(Exception):
    """A pod port that could not be reached; the text goes to the client."""


class NetnsDialer:
    """Connects to localhost ports inside network namespaces."""

    def __init__(self) -> None:
        self._own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="netns")

    def close(self) -> None:
        self._thread.shutdown(wait=False)
        os.close(self._own)

    def _socket_in(self, netns: str, family: int) -> socket.socket:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd)
            try:
                return socket.socket(family, socket.SOCK_STREAM)
            finally:
                _setns(self._own)
        finally:
            os.close(fd)

    async def dial(self, target: PodTarget, port: int) -> tuple[asyncio.StreamReader,
                                                               asyncio.StreamWriter]:
        """A connection to localhost:port in the pod, IPv4 first then IPv6, as
        containerd tries; PortForwardError with both failures in its wording."""
        loop = asyncio.get_running_loop()
        failures = []
        for family, host, net in ((socket.AF_INET, "127.0.0.1", "tcp4"),
                                  (socket.AF_INET6, "::1", "tcp6")):
            try:
                sock = await loop.run_in_executor(self._thread, self._socket_in, target.netns,
                                                  family)
            except OSError as e:
                raise PortForwardError(f"failed to enter the pod's network namespace "
                                       f"{target.netns}: {e}") from None
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (host, port)), 10)
            except (OSError, asyncio.TimeoutError) as e:
                sock.close()
                shown = f"[{host}]" if ":" in host else host
                why = os.strerror(e.errno).lower() if isinstance(e, OSError) and e.errno \
                    else "i/o timeout"
                failures.append(f"dial {net} {shown}:{port}: connect: {why}")
                continue
            return await asyncio.open_connection(sock=sock, limit=READ_SIZE)
        raise PortForwardError(
            f'failed to connect to localhost:{port} inside namespace "{target.sandbox_id}", '
            f"IPv4: {failures[0]} IPv6 {failures[1]} ")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def forward_error(target: PodTarget, port: int | str, e: Exception) -> str:
    """The kubelet's words for a failed forward (its pod is the sandbox, its uid empty)."""
    return f"error forwarding port {port} to pod {target.sandbox_id}, uid : {e}"


def parse_ports(values: list[str]) -> list[int]:
    """The ``ports`` query (repeated or comma-separated), as PodPortForwardOptions."""
    ports = []
    for value in values:
        for item in value.split(","):
            try:
                port = int(item.strip())
            except ValueError:
                raise ValueError(f'invalid port "{item}"') from None
            if not 0 < port < 65536:
                raise ValueError(f"port {port} must be > 0 and < 65536")
            ports.append(port)
    return ports


Dial = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


# ---------------------------------------------------------------------- SPDY


class SpdyPortForward:
    """One kubectl port-forward connection: pairs streams by requestid and
    forwards each pair."""

    def __init__(self, target: PodTarget, dial: Dial):
        self.target, self.dial = target, dial
        self.pending: dict[str, dict[str, spdy.Stream]] = {}
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.tasks: set[asyncio.Task] = set()

    async def serve(self, read: Callable[[], Awaitable[bytes]],
                    write: Callable[[bytes], Awaitable[None]]) -> None:
        session = spdy.Session(read, write, self.on_stream)
        try:
            await session.run()
        finally:
            for timer in self.timers.values():
                timer.cancel()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def on_stream(self, stream: spdy.Stream) -> None:
        kind = stream.headers.get("streamtype", "")
        request = stream.headers.get("requestid") or ""
        if kind not in ("error", "data") or not request:
            log.info("port-forward: refusing stream %d with headers %s", stream.id, stream.headers)
            await stream.refuse(spdy.PROTOCOL_ERROR)
            return
        pair = self.pending.setdefault(request, {})
        if kind in pair:
            await stream.refuse(spdy.PROTOCOL_ERROR)
            return
        pair[kind] = stream
        if len(pair) == 1:
            self.timers[request] = asyncio.get_running_loop().call_later(
                STREAM_CREATION_TIMEOUT, lambda: self._spawn(self._expire(request)))
        else:
            del self.pending[request]
            self.timers.pop(request).cancel()
            self._spawn(self.forward(pair["data"], pair["error"]))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _expire(self, request: str) -> None:
        """A stream whose pair never came ends."""
        self.timers.pop(request, None)
        pair = self.pending.pop(request, None)
        for stream in (pair or {}).values():
            if stream.headers.get("streamtype") == "error":
                await _say(stream, f"timed out waiting for the other stream of request {request}")
            await stream.refuse()

    async def forward(self, data: spdy.Stream, error: spdy.Stream) -> None:
        port_text = data.headers.get("port", "")
        try:
            try:
                port = parse_ports([port_text])[0]
                reader, writer = await self.dial(port)
            except (ValueError, PortForwardError, OSError) as e:
                await _say(error, forward_error(self.target, port_text, e))
            else:
                await pipe(data, reader, writer)
        finally:
            for stream in (data, error):
                stream.discard()
                try:
                    await stream.close()
                except ConnectionError:
                    pass


async def _say(stream: spdy.Stream, text: str) -> None:
    try:
        await stream.write(text.encode())
    except ConnectionError:
        pass


async def pipe(stream: spdy.Stream, reader: asyncio.StreamReader,
               writer: asyncio.StreamWriter) -> None:
    """Copy both ways between a data stream and the pod's connection. The
    client's FIN half-closes toward the pod; once the pod's side ends the data
    stream gets FIN, and the client's side has CLOSE_WAIT to finish."""
    async def up() -> None:
        while chunk := await stream.read():
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async def down() -> None:
        while chunk := await reader.read(READ_SIZE):
            await stream.write(chunk)
        await stream.close()

    sending, receiving = asyncio.create_task(up()), asyncio.create_task(down())
    try:
        done, _ = await asyncio.wait({sending, receiving}, return_when=asyncio.FIRST_COMPLETED)
        if receiving in done and not receiving.exception():
            await asyncio.wait({sending}, timeout=CLOSE_WAIT)
        elif sending in done and not sending.exception():
            await receiving
    except (ConnectionError, OSError):
        pass
    finally:
        for task in (sending, receiving):
            task.cancel()
        await asyncio.gather(sending, receiving, return_exceptions=True)
        writer.close()


# ---------------------------------------------------------------------- v4 channels


async def serve_channels(ws: web.WebSocketResponse, target: PodTarget, ports: list[int],
                         dial: Dial) -> None:
    """The Python client's protocol: every port dialled at once; the session
    ends when every port's connection has, or when the client goes away. What
    the client sends for a port before its dial is done waits for it."""
    lock = asyncio.Lock()
    loop = asyncio.get_running_loop()
    dialled: list[asyncio.Future] = [loop.create_future() for _ in ports]
    """Per port: its connection's writer, or None when it could not be made."""

    async def send(channel: int, payload: bytes) -> None:
        async with lock:
            await ws.send_bytes(bytes((channel,)) + payload)

    for i, port in enumerate(ports):
        await send(2 * i, struct.pack("<H", port))
        await send(2 * i + 1, struct.pack("<H", port))

    async def one(i: int, port: int) -> None:
        try:
            reader, writer = await dial(port)
        except (PortForwardError, OSError) as e:
            dialled[i].set_result(None)
            await send(2 * i + 1, forward_error(target, port, e).encode())
            return
        dialled[i].set_result(writer)
        try:
            while chunk := await reader.read(READ_SIZE):
                await send(2 * i, chunk)
        except (ConnectionError, OSError):
            pass

    async def incoming() -> None:
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
            if not data or data[0] % 2 or data[0] // 2 >= len(ports):
                continue
            writer = await dialled[data[0] // 2]
            if writer is not None and not writer.is_closing():
                writer.write(data[1:])
                await writer.drain()

    ports_done = asyncio.gather(*(one(i, p) for i, p in enumerate(ports)), return_exceptions=True)
    client = asyncio.create_task(incoming())
    try:
        await asyncio.wait({ports_done, client}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        client.cancel()
        ports_done.cancel()
        await asyncio.gather(client, ports_done, return_exceptions=True)
        for future in dialled:
            if future.done() and future.result() is not None:
                future.result().close()
        await ws.close()


# ---------------------------------------------------------------------- entry


SPDY_UPGRADE = "SPDY/3.1"
PROTOCOL_SPDY = "portforward.k8s.io"


def wants_spdy(request: web.Request) -> bool:
    """kubectl's fallback: POST with ``Upgrade: SPDY/3.1``."""
    return request.method == "POST" and \
        request.headers.get("Upgrade", "").lower() == SPDY_UPGRADE.lower()


async def take_over(request: web.Request, headers: dict[str, str]) -> tuple[
        web.StreamResponse, asyncio.StreamReader, asyncio.StreamWriter]:
    """Answer 101 with `headers` and take the connection from aiohttp (which
    upgrades only to WebSocket): the streams of the raw socket, and the response
    to return from the handler once done. end_take_over() must follow."""
    resp = web.StreamResponse(status=101, headers={"Connection": "Upgrade", **headers})
    await resp.prepare(request)
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=READ_SIZE)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    return resp, reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def end_take_over(request: web.Request, writer: asyncio.StreamWriter) -> None:
    """Close a taken-over connection and tell aiohttp it is gone."""
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass
    request.protocol.connection_lost(None)


async def serve_spdy(request: web.Request, target: PodTarget,
                     dialer: NetnsDialer) -> web.StreamResponse:
    """Plain SPDY/3.1 on the upgraded socket (kubectl's fallback)."""
    async def dial(port: int):
        return await dialer.dial(target, port)

    resp, reader, writer = await take_over(request, {
        "Upgrade": SPDY_UPGRADE, "X-Stream-Protocol-Version": PROTOCOL_SPDY})

    async def write(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    try:
        await SpdyPortForward(target, dial).serve(lambda: reader.read(READ_SIZE), write)
    finally:
        await end_take_over(request, writer)
    return resp


def negotiate(offered: list[str]) -> str | None:
    """The client's first subprotocol served here, or None."""
    return next((p for p in offered if p in PROTOCOLS), None)


async def serve_websocket(ws: web.WebSocketResponse, target: PodTarget, ports: list[int],
                          dialer: NetnsDialer) -> None:
    """Serve a prepared WebSocket in the protocol it was accepted with."""
    async def dial(port: int):
        return await dialer.dial(target, port)

    if ws.ws_protocol == PROTOCOL_V4:
        await serve_channels(ws, target, ports, dial)
        return

    async def read() -> bytes:
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    return msg.data
            elif msg.type == WSMsgType.TEXT:
                return msg.data.encode()
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                              WSMsgType.ERROR):
                return b""

    await SpdyPortForward(target, dial).serve(read, ws.send_bytes)
    await ws.close()
