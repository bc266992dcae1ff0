"""The Python client's port-forward protocol (v4 channels) as the node serves it,
over a real WebSocket on loopback, with a dialler that reaches a local echo
server instead of a pod."""
from __future__ import annotations

import asyncio
import os
import struct

import aiohttp
from aiohttp import web

from kwire.node.portforward import (
    PROTOCOL_V4,
    PodTarget,
    PortForwardError,
    serve_channels,
)

TARGET = PodTarget("sb9", "/nonexistent")


async def channels_session(ports: list[int], body) -> None:
    async def echo(reader, writer):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    echo_server = await asyncio.start_server(echo, "127.0.0.1", 0)
    echo_port = echo_server.sockets[0].getsockname()[1]

    async def dial(port: int):
        if port != 80:
            raise PortForwardError(f"dial tcp4 127.0.0.1:{port}: connect: connection refused")
        await asyncio.sleep(0.2)  # a slow dial: what the client sends meanwhile must wait
        return await asyncio.open_connection("127.0.0.1", echo_port)

    async def handler(request):
        ws = web.WebSocketResponse(protocols=[PROTOCOL_V4])
        await ws.prepare(request)
        await serve_channels(ws, TARGET, ports, dial)
        return ws

    app = web.Application()
    app.router.add_get("/pf", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{port}/pf",
                                          protocols=["v5.channel.k8s.io", PROTOCOL_V4]) as ws:
                await body(ws)
    finally:
        await runner.cleanup()
        echo_server.close()


def test_channels_announce_ports_echo_and_report_errors():
    payload = os.urandom(300_000)

    async def body(ws):
        first = [(await ws.receive_bytes()) for _ in range(4)]
        assert first == [b"\x00" + struct.pack("<H", 80), b"\x01" + struct.pack("<H", 80),
                         b"\x02" + struct.pack("<H", 81), b"\x03" + struct.pack("<H", 81)]
        for i in range(0, len(payload), 50_000):
            await ws.send_bytes(b"\x00" + payload[i:i + 50_000])
        got, errors = b"", {}
        while len(got) < len(payload) or 3 not in errors:
            msg = await asyncio.wait_for(ws.receive_bytes(), 10)
            if msg[0] == 0:
                got += msg[1:]
            else:
                errors[msg[0]] = msg[1:].decode()
        assert got == payload
        assert errors == {3: "error forwarding port 81 to pod sb9, uid : "
                             "dial tcp4 127.0.0.1:81: connect: connection refused"}

    asyncio.run(channels_session([80, 81], body))


def test_session_ends_when_every_port_has():
    async def body(ws):
        for _ in range(2):
            await ws.receive_bytes()
        assert (await ws.receive_bytes())[0] == 1  # the error
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type == aiohttp.WSMsgType.CLOSE

    asyncio.run(channels_session([81], body))
