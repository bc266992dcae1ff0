"""SPDY/3.1, server side: what ``kubectl port-forward`` speaks to a kubelet.

client-go (moby/spdystream) uses SPDY as a stream multiplexer: the client opens
streams with SYN_STREAM, the server answers each with SYN_REPLY, and both send
DATA frames until each side's FIN. Header blocks are zlib streams primed with
the SPDY/3 dictionary, one compression context per direction for the whole
connection, so the frames must be encoded in the order they are written.

Two layers:

- Codec: bytes in, frames out and frames in, bytes out, with no I/O (frames may
  be split across reads or several may come in one);
- Session: runs a Codec over any byte stream (the raw socket after an HTTP
  upgrade, or the binary messages of a WebSocket), answers PINGs and hands
  each new Stream to a callback.

Flow control (WINDOW_UPDATE) is read and ignored, as spdystream does; the
backpressure is the transport's: a stream whose reader is slow holds the
session's reader, as spdystream's unbuffered channels do.
"""
from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger("kwire.node.spdy")

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = \
    1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL = 1, 2, 3, 5
# GOAWAY status codes
GOAWAY_OK, GOAWAY_PROTOCOL_ERROR = 0, 1
MAX_DATA = 32 * 1024
"""Bytes per DATA frame written."""
STREAM_BUFFER = 16
"""DATA frames held for a stream before the session's reader waits for its reader."""

_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding "
    "accept-language accept-ranges age allow authorization cache-control connection "
    "content-base content-encoding content-language content-length content-location "
    "content-md5 content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
    "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
    "server te trailer transfer-encoding upgrade user-agent vary via warning "
    "www-authenticate method get status").split() + ["200 OK", "version", "HTTP/1.1", "url",
                                                      "public", "set-cookie", "keep-alive",
                                                      "origin"]
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
    "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
    "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()
"""The zlib dictionary of SPDY/3 header blocks (draft-mbelshe-httpbis-spdy-00 2.6.10.1)."""


class ProtocolError(Exception):
    """The peer broke SPDY/3.1; the session ends with GOAWAY."""


# ---------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes
    fin: bool = False


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: dict[str, str]
    associated_id: int = 0
    priority: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: dict[str, str]
    fin: bool = False


@dataclass(frozen=True)
class Headers:
    stream_id: int
    headers: dict[str, str]
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...] = ()
    """(flags, id, value) each."""


@dataclass(frozen=True)
class Ping:
    id: int


@dataclass(frozen=True)
class GoAway:
    last_stream_id: int
    status: int = GOAWAY_OK


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


Frame = Data | SynStream | SynReply | Headers | RstStream | Settings | Ping | GoAway | WindowUpdate


class Codec:
    """Frames to bytes and bytes to frames for one side of one connection."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(9, zdict=DICTIONARY)

    # -- reading

    def feed(self, data: bytes) -> list[Frame]:
        """The frames completed by `data` (the rest is kept for the next call).
        Control frames of unknown types are skipped, as the spec asks."""
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            word, flags_length = struct.unpack_from(">II", self._buf)
            length = flags_length & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            flags = flags_length >> 24
            if not word & 0x80000000:
                frames.append(Data(word & 0x7FFFFFFF, payload, bool(flags & FLAG_FIN)))
                continue
            version, ftype = (word >> 16) & 0x7FFF, word & 0xFFFF
            if version != VERSION:
                raise ProtocolError(f"unsupported SPDY version {version}")
            frame = self._control(ftype, flags, payload)
            if frame is not None:
                frames.append(frame)
        return frames

    def _control(self, ftype: int, flags: int, p: bytes) -> Frame | None:
        fin = bool(flags & FLAG_FIN)
        try:
            if ftype == SYN_STREAM:
                sid, assoc, pri = struct.unpack_from(">IIB", p)
                return SynStream(sid & 0x7FFFFFFF, self._headers(p[10:]), assoc & 0x7FFFFFFF,
                                 pri >> 5, fin, bool(flags & FLAG_UNIDIRECTIONAL))
            if ftype in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", p)
                cls = SynReply if ftype == SYN_REPLY else Headers
                return cls(sid & 0x7FFFFFFF, self._headers(p[4:]), fin)
            if ftype == RST_STREAM:
                sid, status = struct.unpack_from(">II", p)
                return RstStream(sid & 0x7FFFFFFF, status)
            if ftype == SETTINGS:
                (n,) = struct.unpack_from(">I", p)
                entries = []
                for i in range(n):
                    fid, value = struct.unpack_from(">II", p, 4 + 8 * i)
                    entries.append((fid >> 24, fid & 0xFFFFFF, value))
                return Settings(tuple(entries))
            if ftype == PING:
                return Ping(struct.unpack_from(">I", p)[0])
            if ftype == GOAWAY:
                last, status = struct.unpack_from(">II", p)
                return GoAway(last & 0x7FFFFFFF, status)
            if ftype == WINDOW_UPDATE:
                sid, delta = struct.unpack_from(">II", p)
                return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error:
            raise ProtocolError(f"control frame {ftype} too short ({len(p)} bytes)") from None
        return None

    def _headers(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._inflate.decompress(block)
        except zlib.error as e:
            raise ProtocolError(f"header block: {e}") from None
        try:
            (n,) = struct.unpack_from(">I", raw)
            pos, out = 4, {}
            for _ in range(n):
                (ln,) = struct.unpack_from(">I", raw, pos)
                name = raw[pos + 4:pos + 4 + ln].decode("latin-1")
                pos += 4 + ln
                (lv,) = struct.unpack_from(">I", raw, pos)
                value = raw[pos + 4:pos + 4 + lv].decode("latin-1")
                pos += 4 + lv
                if pos > len(raw):
                    raise struct.error
                out[name.lower()] = value
        except struct.error:
            raise ProtocolError("truncated header block") from None
        return out

    # -- writing

    def encode(self, frame: Frame) -> bytes:
        """One frame's bytes. Frames carrying headers advance the compression
        context: encode them in the order they are sent."""
        if isinstance(frame, Data):
            return struct.pack(">II", frame.stream_id & 0x7FFFFFFF,
                               (FLAG_FIN if frame.fin else 0) << 24 | len(frame.data)) + frame.data
        if isinstance(frame, SynStream):
            flags = (FLAG_FIN if frame.fin else 0) | (FLAG_UNIDIRECTIONAL if frame.unidirectional else 0)
            return _control(SYN_STREAM, flags, struct.pack(
                ">IIBB", frame.stream_id, frame.associated_id, frame.priority << 5, 0)
                + self._block(frame.headers))
        if isinstance(frame, (SynReply, Headers)):
            ftype = SYN_REPLY if isinstance(frame, SynReply) else HEADERS
            return _control(ftype, FLAG_FIN if frame.fin else 0,
                            struct.pack(">I", frame.stream_id) + self._block(frame.headers))
        if isinstance(frame, RstStream):
            return _control(RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status))
        if isinstance(frame, Settings):
            return _control(SETTINGS, 0, struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">II", f << 24 | i, v) for f, i, v in frame.entries))
        if isinstance(frame, Ping):
            return _control(PING, 0, struct.pack(">I", frame.id))
        if isinstance(frame, GoAway):
            return _control(GOAWAY, 0, struct.pack(">II", frame.last_stream_id, frame.status))
        if isinstance(frame, WindowUpdate):
            return _control(WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta))
        raise TypeError(f"not a SPDY frame: {frame!r}")

    def _block(self, headers: Mapping[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers))
        for name, value in headers.items():
            n, v = name.lower().encode("latin-1"), value.encode("latin-1")
            raw += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)


def _control(ftype: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, flags << 24 | len(payload)) + payload


# ---------------------------------------------------------------------- session


@dataclass(eq=False)
class Stream:
    """One stream the peer opened. read() gives its data and b"" once the peer
    has finished (FIN, reset or the connection gone); write() and close() send."""

    session: Session
    id: int
    headers: dict[str, str]
    remote_done: bool = False
    local_done: bool = False
    reset: bool = False
    discarding: bool = False
    _queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(STREAM_BUFFER))

    async def read(self) -> bytes:
        if self.remote_done and self._queue.empty():
            return b""
        chunk = await self._queue.get()
        if not chunk:
            self._queue.put_nowait(b"")  # later reads see the end too
        return chunk

    async def write(self, data: bytes) -> None:
        """Send data; ConnectionResetError once the stream or connection is gone."""
        if self.reset or self.local_done or self.session.closed:
            raise ConnectionResetError(f"SPDY stream {self.id} is closed")
        for i in range(0, len(data), MAX_DATA):
            await self.session.send(Data(self.id, data[i:i + MAX_DATA]))

    async def close(self) -> None:
        """Send FIN (once); nothing more is written."""
        if self.local_done or self.reset or self.session.closed:
            return
        self.local_done = True
        await self.session.send(Data(self.id, b"", fin=True))
        self.session.forget_if_done(self)

    def discard(self) -> None:
        """Drop what the peer still sends: nobody reads this stream any more, and
        its unread data must not hold the session's reader."""
        self.discarding = True
        while not self._queue.empty():
            self._queue.get_nowait()
        if self.remote_done:
            self._queue.put_nowait(b"")

    async def refuse(self, status: int = CANCEL) -> None:
        """Reset the stream (RST_STREAM)."""
        if not (self.reset or self.session.closed):
            await self.session.send(RstStream(self.id, status))
        self._end()

    async def _finish(self) -> None:
        """The peer's FIN: after the data before it."""
        if not self.remote_done:
            self.remote_done = True
            await self._queue.put(b"")
        self.session.forget_if_done(self)

    def _end(self) -> None:
        """The stream is gone (reset, or the connection): unread data is dropped."""
        self.reset = True
        self.local_done = True
        if not self.remote_done:
            self.remote_done = True
            while self._queue.full():
                self._queue.get_nowait()
            self._queue.put_nowait(b"")
        self.session.forget_if_done(self)


StreamHandler = Callable[[Stream], Awaitable[None] | None]


class Session:
    """A SPDY/3.1 server connection over `read` (next bytes, b"" at the end) and
    `write`. run() serves it until the peer goes away; on_stream is called with
    each Stream the peer opens, after its SYN_REPLY is sent (as the kubelet
    accepts every stream at once)."""

    def __init__(self, read: Callable[[], Awaitable[bytes]],
                 write: Callable[[bytes], Awaitable[None]], on_stream: StreamHandler):
        self._read, self._write, self.on_stream = read, write, on_stream
        self.codec = Codec()
        self.streams: dict[int, Stream] = {}
        self.closed = False
        self.going_away = False
        self._lock = asyncio.Lock()
        self._last_id = 0

    async def send(self, frame: Frame) -> None:
        """Encode and write under one lock: header compression follows write order."""
        async with self._lock:
            if self.closed:
                raise ConnectionResetError("SPDY connection closed")
            await self._write(self.codec.encode(frame))

    async def run(self) -> None:
        try:
            while True:
                data = await self._read()
                if not data:
                    break
                for frame in self.codec.feed(data):
                    await self._dispatch(frame)
        except ProtocolError as e:
            log.info("SPDY protocol error: %s", e)
            try:
                await self.send(GoAway(self._last_id, GOAWAY_PROTOCOL_ERROR))
            except (ConnectionError, OSError):
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed = True
            for stream in list(self.streams.values()):
                stream._end()

    async def _dispatch(self, frame: Frame) -> None:
        if isinstance(frame, Data):
            stream = self.streams.get(frame.stream_id)
            if stream is None or stream.remote_done:
                return
            if frame.data and not stream.discarding:
                await stream._queue.put(frame.data)
            if frame.fin:
                await stream._finish()
        elif isinstance(frame, SynStream):
            await self._open(frame)
        elif isinstance(frame, RstStream):
            stream = self.streams.get(frame.stream_id)
            if stream is not None:
                stream._end()
        elif isinstance(frame, Headers):
            stream = self.streams.get(frame.stream_id)
            if stream is not None and frame.fin:
                await stream._finish()
        elif isinstance(frame, Ping):
            if frame.id % 2:  # the client's (odd); an even one would be our own answered
                await self.send(frame)
        elif isinstance(frame, GoAway):
            self.going_away = True
        # SETTINGS, WINDOW_UPDATE and SYN_REPLY (we open no streams) need nothing

    async def _open(self, frame: SynStream) -> None:
        sid = frame.stream_id
        if sid % 2 == 0 or sid <= self._last_id:
            await self.send(RstStream(sid, PROTOCOL_ERROR))
            return
        self._last_id = sid
        if self.going_away:
            await self.send(RstStream(sid, REFUSED_STREAM))
            return
        stream = Stream(self, sid, frame.headers)
        self.streams[sid] = stream
        await self.send(SynReply(sid, {}))
        if frame.fin:
            await stream._finish()
        if frame.unidirectional:
            stream.local_done = True
        result = self.on_stream(stream)
        if asyncio.iscoroutine(result):
            await result

    def forget_if_done(self, stream: Stream) -> None:
        if stream.local_done and stream.remote_done:
            self.streams.pop(stream.id, None)
