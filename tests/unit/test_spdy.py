"""SPDY/3.1 framing and sessions (kwire.node.spdy), and the port-forward protocol
over it (kwire.node.portforward) with a client built from the same Codec."""
from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import zlib

import pytest

from kwire.node import portforward, spdy
from kwire.node.portforward import PodTarget, PortForwardError, SpdyPortForward
from kwire.node.spdy import (
    Codec,
    Data,
    GoAway,
    Headers,
    Ping,
    RstStream,
    Settings,
    SynReply,
    SynStream,
    WindowUpdate,
)

# sha256 of the 1423 bytes found in kubectl 1.32's binary (moby/spdystream's dictionary)
DICTIONARY_SHA256 = "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


def test_dictionary_is_spdy3s():
    assert len(spdy.DICTIONARY) == 1423
    assert hashlib.sha256(spdy.DICTIONARY).hexdigest() == DICTIONARY_SHA256
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")


FRAMES = [
    Data(1, b"hello"), Data(3, b"", fin=True), Data(0x7FFFFFFF, b"x" * 70000),
    SynStream(1, {"streamtype": "error", "port": "80", "requestid": "0"}, priority=2),
    SynStream(3, {"streamtype": "data"}, associated_id=1, fin=True, unidirectional=True),
    SynReply(1, {}), SynReply(3, {"status": "200"}, fin=True), Headers(5, {"a": "b"}, fin=True),
    RstStream(5, spdy.CANCEL), Settings(((0, 4, 100), (1, 7, 65536))), Ping(7),
    GoAway(9, spdy.GOAWAY_OK), WindowUpdate(1, 4096),
]


def test_every_frame_round_trips():
    writer, reader = Codec(), Codec()
    wire = b"".join(writer.encode(f) for f in FRAMES)
    assert reader.feed(wire) == FRAMES


def test_frames_split_across_reads():
    writer, reader = Codec(), Codec()
    wire = b"".join(writer.encode(f) for f in FRAMES)
    out = []
    for i in range(0, len(wire), 7):
        out += reader.feed(wire[i:i + 7])
    assert out == FRAMES


def test_header_blocks_share_one_context_per_direction():
    """The second block refers back to the first: decoding it alone fails."""
    writer = Codec()
    first = writer.encode(SynStream(1, {"streamtype": "error", "port": "8080"}))
    second = writer.encode(SynStream(3, {"streamtype": "error", "port": "8080"}))
    assert len(second) < len(first)
    reader = Codec()
    assert [f.stream_id for f in reader.feed(first + second)] == [1, 3]
    with pytest.raises(spdy.ProtocolError):
        Codec().feed(second)


def test_header_block_layout_is_spdy3s():
    """Decompressed with the dictionary by plain zlib: 32-bit counts and lengths."""
    frame = Codec().encode(SynReply(1, {"port": "80"}))
    assert frame[:4] == b"\x80\x03\x00\x02"
    block = zlib.decompressobj(zdict=spdy.DICTIONARY).decompress(frame[12:])
    assert block == struct.pack(">I", 1) + struct.pack(">I", 4) + b"port" + \
        struct.pack(">I", 2) + b"80"


def test_unknown_control_frames_are_skipped_and_bad_versions_refused():
    codec = Codec()
    unknown = struct.pack(">HHI", 0x8003, 0x42, 3) + b"abc"
    assert codec.feed(unknown + codec.encode(Ping(1))) == [Ping(1)]
    with pytest.raises(spdy.ProtocolError):
        Codec().feed(struct.pack(">HHI", 0x8002, spdy.PING, 4) + b"\0\0\0\1")


# ---------------------------------------------------------------------- sessions


class Pipe:
    """Both ends of a session's byte stream, in memory."""

    def __init__(self):
        self.to_server: asyncio.Queue[bytes] = asyncio.Queue()
        self.to_client: asyncio.Queue[bytes] = asyncio.Queue()
        self.client = Codec()
        self.frames: list = []
        self.buffered: list = []

    async def server_read(self) -> bytes:
        return await self.to_server.get()

    async def server_write(self, data: bytes) -> None:
        self.to_client.put_nowait(data)

    def send(self, *frames) -> None:
        for f in frames:
            self.to_server.put_nowait(self.client.encode(f))

    async def next_frame(self, timeout: float = 5.0):
        while not self.buffered:
            self.buffered += self.client.feed(await asyncio.wait_for(self.to_client.get(), timeout))
        return self.buffered.pop(0)

    async def read_streams(self, *ids: int, timeout: float = 10.0) -> tuple[dict[int, bytes], list]:
        """Data on each stream up to its FIN, and the other frames seen meanwhile."""
        data, other, open_ = {i: b"" for i in ids}, [], set(ids)
        while open_:
            f = await self.next_frame(timeout)
            if isinstance(f, Data) and f.stream_id in data:
                data[f.stream_id] += f.data
                if f.fin:
                    open_.discard(f.stream_id)
            else:
                other.append(f)
        return data, other


def test_session_replies_answers_pings_and_ends_streams_at_eof():
    async def main():
        pipe, opened = Pipe(), []
        session = spdy.Session(pipe.server_read, pipe.server_write, opened.append)
        task = asyncio.create_task(session.run())
        pipe.send(SynStream(1, {"x": "y"}), Ping(1), Data(1, b"abc"), Data(1, b"", fin=True),
                  Settings(), WindowUpdate(1, 10))
        assert await pipe.next_frame() == SynReply(1, {})
        assert await pipe.next_frame() == Ping(1)
        stream = opened[0]
        assert stream.headers == {"x": "y"}
        assert await stream.read() == b"abc"
        assert await stream.read() == b""
        await stream.write(b"out")
        await stream.close()
        assert await pipe.next_frame() == Data(1, b"out")
        assert await pipe.next_frame() == Data(1, b"", fin=True)
        assert 1 not in session.streams
        pipe.send(SynStream(2, {}))  # even: a server's id
        assert await pipe.next_frame() == RstStream(2, spdy.PROTOCOL_ERROR)
        pipe.send(SynStream(5, {}))
        await pipe.next_frame()
        pipe.to_server.put_nowait(b"")
        await asyncio.wait_for(task, 5)
        assert session.closed and opened[1].reset
        assert await opened[1].read() == b""
        with pytest.raises(ConnectionResetError):
            await opened[1].write(b"late")

    asyncio.run(main())


def test_session_answers_garbage_with_goaway():
    async def main():
        pipe = Pipe()
        session = spdy.Session(pipe.server_read, pipe.server_write, lambda s: None)
        task = asyncio.create_task(session.run())
        pipe.to_server.put_nowait(struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, 12)
                                  + b"\0\0\0\1\0\0\0\0\0\0\xff\xff")
        assert await pipe.next_frame() == GoAway(0, spdy.GOAWAY_PROTOCOL_ERROR)
        await asyncio.wait_for(task, 5)

    asyncio.run(main())


# ---------------------------------------------------------------------- port-forward


TARGET = PodTarget("sb123", "/nonexistent")


async def echo_server():
    """An echo server on loopback that sends everything back, then closes on EOF."""
    async def handle(reader, writer):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def run_forward(body):
    async def main():
        server, port = await echo_server()

        async def dial(p: int):
            if p != 7:
                raise PortForwardError(f"dial tcp4 127.0.0.1:{p}: connect: connection refused")
            return await asyncio.open_connection("127.0.0.1", port)

        pipe = Pipe()
        task = asyncio.create_task(SpdyPortForward(TARGET, dial).serve(pipe.server_read,
                                                                       pipe.server_write))
        try:
            await body(pipe)
        finally:
            pipe.to_server.put_nowait(b"")
            await asyncio.wait_for(task, 5)
            server.close()

    asyncio.run(main())


def open_pair(pipe: Pipe, error_id: int, port: int, request: str) -> None:
    """What kubectl sends per local connection: the error stream, half-closed,
    then the data stream."""
    headers = {"port": str(port), "requestid": request}
    pipe.send(SynStream(error_id, {"streamtype": "error", **headers}),
              Data(error_id, b"", fin=True),
              SynStream(error_id + 2, {"streamtype": "data", **headers}))


def test_port_forward_pipes_megabytes_with_half_close():
    payload = os.urandom(3 * 1024 * 1024)

    async def body(pipe: Pipe):
        open_pair(pipe, 1, 7, "0")
        for i in range(0, len(payload), 100_000):
            pipe.send(Data(3, payload[i:i + 100_000]))
        pipe.send(Data(3, b"", fin=True))
        data, other = await pipe.read_streams(1, 3)
        assert data[3] == payload
        assert data[1] == b""  # the error stream ends empty
        assert SynReply(1, {}) in other and SynReply(3, {}) in other

    run_forward(body)


def test_port_forward_reports_a_refused_port_on_the_error_stream():
    async def body(pipe: Pipe):
        open_pair(pipe, 1, 81, "0")
        data, _ = await pipe.read_streams(1, 3)
        assert data[1].decode() == ("error forwarding port 81 to pod sb123, uid : "
                                    "dial tcp4 127.0.0.1:81: connect: connection refused")
        assert data[3] == b""

    run_forward(body)


def test_port_forward_serves_concurrent_requests():
    async def body(pipe: Pipe):
        for n in range(5):
            open_pair(pipe, 1 + 4 * n, 7, str(n))
        for n in range(5):
            pipe.send(Data(3 + 4 * n, f"request {n}".encode(), fin=True))
        got: dict[int, bytes] = {}
        finished: set[int] = set()
        while len(finished) < 10:
            f = await pipe.next_frame()
            if isinstance(f, Data):
                got[f.stream_id] = got.get(f.stream_id, b"") + f.data
                if f.fin:
                    finished.add(f.stream_id)
        assert {sid: got[sid] for sid in range(3, 23, 4)} == {
            3 + 4 * n: f"request {n}".encode() for n in range(5)}

    run_forward(body)


def test_port_forward_refuses_streams_without_a_type_or_request():
    async def body(pipe: Pipe):
        pipe.send(SynStream(1, {"streamtype": "nonsense", "port": "80", "requestid": "1"}))
        assert await pipe.next_frame() == SynReply(1, {})
        assert await pipe.next_frame() == RstStream(1, spdy.PROTOCOL_ERROR)

    run_forward(body)


def test_ports_query():
    assert portforward.parse_ports(["80,443", "8080"]) == [80, 443, 8080]
    for bad in (["0"], ["70000"], ["http"]):
        with pytest.raises(ValueError):
            portforward.parse_ports(bad)
    assert portforward.negotiate(["v5.channel.k8s.io", "v4.channel.k8s.io"]) == "v4.channel.k8s.io"
    assert portforward.negotiate(["SPDY/3.1+portforward.k8s.io"]) == portforward.PROTOCOL_SPDY_WS
    assert portforward.negotiate(["v5.channel.k8s.io"]) is None


def test_a_stream_whose_pair_never_comes_is_ended(monkeypatch):
    monkeypatch.setattr(portforward, "STREAM_CREATION_TIMEOUT", 0.1)

    async def body(pipe: Pipe):
        pipe.send(SynStream(1, {"streamtype": "error", "port": "80", "requestid": "4"}))
        assert await pipe.next_frame() == SynReply(1, {})
        frame = await pipe.next_frame()
        assert frame == Data(1, b"timed out waiting for the other stream of request 4")
        assert await pipe.next_frame() == RstStream(1, spdy.CANCEL)

    run_forward(body)
