"""Container logs as the kubelet serves them (``kubectl logs``), read from CRI log files.

conmon writes each container's stdout and stderr to a file in the CRI format, one
record per line::

    2026-01-02T03:04:05.123456789+00:00 stdout F a whole line
    2026-01-02T03:04:05.223456789+00:00 stderr P the start of a long line,
    2026-01-02T03:04:05.223457000+00:00 stderr F  and its end

``F`` ends a line; ``P`` is a fragment whose line continues in the next record.
read_logs() turns such a file back into the bytes the container wrote, with the
options of PodLogOptions, the way the kubelet's ReadLogs does:

- ``tailLines``: start at the last N lines (a line = its P fragments and the F
  that ends it; the kubelet counts records, which differs only for long lines);
- ``sinceSeconds`` / ``sinceTime``: skip records older than that;
- ``timestamps``: prefix each line with its time in Go's RFC3339Nano (trailing
  zeros dropped, ``Z`` for UTC), once per line, not per fragment;
- ``limitBytes``: stop after that many bytes of output;
- ``follow``: keep reading as the file grows until the container is no longer
  running and the file is drained. A file replaced at the same path (rotation)
  is reopened; a restart writes to a new file, and the old container is then not
  running, so following ends, as it does upstream.

Everything but the reading of the file is pure, and the reading only needs a
path and a "still running?" callable, so the tests drive it with temporary files.
"""
from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

READ_SIZE = 64 * 1024
FOLLOW_POLL = 0.2
"""Seconds between looks at a followed file that has stopped growing."""

_TIMESTAMP = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class LogOptionsError(ValueError):
    """A query parameter the kubelet cannot use; the message says which and why."""


@dataclass(frozen=True)
class LogOptions:
    """What a log request asks for (PodLogOptions, minus the container and previous)."""

    follow: bool = False
    tail_lines: int | None = None
    since_ns: int | None = None
    """Skip records written before this time (epoch nanoseconds)."""
    timestamps: bool = False
    limit_bytes: int | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str], now: float | None = None) -> LogOptions:
        """The options of a /containerLogs query (sinceSeconds counts back from `now`)."""
        since_seconds = _int(query, "sinceSeconds")
        since_time = query.get("sinceTime") or None
        if since_seconds is not None and since_time is not None:
            raise LogOptionsError("at most one of `sinceTime` or `sinceSeconds` may be specified")
        since_ns = None
        if since_seconds is not None:
            if since_seconds < 1:
                raise LogOptionsError(f"sinceSeconds: Invalid value: {since_seconds}: "
                                      "must be greater than 0")
            since_ns = int(((time.time() if now is None else now) - since_seconds) * 1e9)
        elif since_time is not None:
            since_ns = parse_rfc3339(since_time)
            if since_ns is None:
                raise LogOptionsError(f'sinceTime: "{since_time}" is not an RFC 3339 time')
        tail = _int(query, "tailLines")
        if tail is not None and tail < 0:
            raise LogOptionsError(f"tailLines: Invalid value: {tail}: "
                                  "must be greater than or equal to 0")
        limit = _int(query, "limitBytes")
        if limit is not None and limit < 1:
            raise LogOptionsError(f"limitBytes: Invalid value: {limit}: must be greater than 0")
        return cls(follow=flag(query, "follow"), tail_lines=tail, since_ns=since_ns,
                   timestamps=flag(query, "timestamps"), limit_bytes=limit)


def flag(query: Mapping[str, str], name: str) -> bool:
    """A boolean query parameter as Go's strconv.ParseBool reads it ("1", "true", ...);
    absent or empty is false."""
    value = query.get(name) or ""
    if value in _TRUE:
        return True
    if value in _FALSE or value == "":
        return False
    raise LogOptionsError(f'{name}: invalid boolean value "{value}"')


def _int(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise LogOptionsError(f'{name}: invalid integer value "{value}"') from None


# --------------------------------------------------------------------- CRI records


@dataclass(frozen=True)
class Record:
    """One line of a CRI log file."""

    timestamp: bytes
    """As written, e.g. b"2026-01-02T03:04:05.123456789+00:00"."""
    stream: str
    """"stdout" or "stderr"."""
    partial: bool
    content: bytes
    """The bytes the container wrote: with the newline for F, without it for P."""


def parse_record(line: bytes) -> Record | None:
    """A CRI record from one file line (with or without its newline); None when the
    line is not one (the kubelet skips those too)."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr"):
        return None
    tag = parts[2].rstrip(b"\n").split(b":", 1)[0]
    partial = tag == b"P"
    content = parts[3] if len(parts) == 4 else b""
    if partial:
        content = content.removesuffix(b"\n")
    elif not content.endswith(b"\n"):
        content += b"\n"
    return Record(parts[0], parts[1].decode(), partial, content)


def parse_rfc3339(text: str | bytes) -> int | None:
    """An RFC 3339 time (any fraction, Z or an offset) as epoch nanoseconds."""
    raw = text.encode() if isinstance(text, str) else text
    m = _TIMESTAMP.match(raw)
    if m is None:
        return None
    base, frac, zone = (g.decode() if g else "" for g in m.groups())
    try:
        seconds = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).timestamp()
    except ValueError:
        return None
    return int(seconds) * 1_000_000_000 + int(frac.ljust(9, "0") or 0)


def format_timestamp(timestamp: bytes) -> bytes:
    """A record's timestamp as Go prints time.RFC3339Nano: the fraction without
    trailing zeros (and without its dot when nothing is left), Z for a zero offset."""
    m = _TIMESTAMP.match(timestamp)
    if m is None:
        return timestamp
    base, frac, zone = m.groups()
    frac = (frac or b"").rstrip(b"0")
    if zone in (b"+00:00", b"-00:00"):
        zone = b"Z"
    return base + (b"." + frac if frac else b"") + zone


class _Formatter:
    """Records in, output bytes out: the since filter, timestamp prefixes at line
    starts, and the byte limit (after which `done` is set)."""

    def __init__(self, opts: LogOptions):
        self.opts = opts
        self.remaining = opts.limit_bytes
        self.at_line_start = True
        self.done = False

    def feed(self, record: Record) -> bytes:
        if self.done:
            return b""
        if self.opts.since_ns is not None:
            ns = parse_rfc3339(record.timestamp)
            if ns is not None and ns < self.opts.since_ns:
                return b""
        out = record.content
        if self.opts.timestamps and self.at_line_start:
            out = format_timestamp(record.timestamp) + b" " + out
        self.at_line_start = not record.partial
        if self.remaining is not None:
            out = out[:self.remaining]
            self.remaining -= len(out)
            self.done = self.remaining <= 0
        return out


def _format_lines(lines: list[bytes], formatter: _Formatter) -> bytes:
    out = bytearray()
    for line in lines:
        record = parse_record(line)
        if record is not None:
            out += formatter.feed(record)
            if formatter.done:
                break
    return bytes(out)


# --------------------------------------------------------------------- the tail


def _records_backwards(f: BinaryIO, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for each newline-terminated line before `end`, last first."""
    pos = end
    buf = b""
    while pos > 0:
        step = min(READ_SIZE, pos)
        pos -= step
        f.seek(pos)
        buf = f.read(step) + buf
        while True:
            cut = buf.rfind(b"\n", 0, len(buf) - 1)
            if cut < 0:
                break
            yield pos + cut + 1, buf[cut + 1:]
            buf = buf[:cut + 1]
    if buf:
        yield 0, buf


def _complete_end(f: BinaryIO) -> int:
    """The end of the file's last newline-terminated line (0 when there is none)."""
    end = f.seek(0, os.SEEK_END)
    while end > 0:
        start = max(0, end - READ_SIZE)
        f.seek(start)
        cut = f.read(end - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


def tail_offset(f: BinaryIO, lines: int) -> int:
    """Where the last `lines` lines of a CRI log file start (a line being its P
    fragments and the F record that ends it; an unterminated run of P records at
    the end is a line too). A half-written last record is left for the reader."""
    end = _complete_end(f)
    if lines == 0:
        return end
    wanted: int | None = None
    for offset, line in _records_backwards(f, end):
        record = parse_record(line)
        ends_line = record is None or not record.partial
        if wanted is None:
            # a trailing run of fragments is a line of its own
            wanted = lines if not ends_line else lines + 1
        if ends_line:
            wanted -= 1
            if wanted == 0:
                return offset + len(line)
    return 0


# --------------------------------------------------------------------- reading


async def read_logs(path: Path, opts: LogOptions,
                    still_running: Callable[[], bool] = lambda: False, *,
                    poll: float = FOLLOW_POLL) -> AsyncIterator[bytes]:
    """The container's output from its CRI log file, chunk by chunk, as `opts` asks.

    With opts.follow, waits for more while still_running() says the container
    runs, and ends once it has stopped and everything it wrote has been read.
    A missing file is an empty log (the container has not written one yet).
    """
    formatter = _Formatter(opts)
    f = _open(path)
    try:
        while f is None:
            if not (opts.follow and still_running()):
                return
            await asyncio.sleep(poll)
            f = _open(path)
        if opts.tail_lines is not None:
            f.seek(tail_offset(f, opts.tail_lines))
        else:
            f.seek(0)
        pending = b""
        last_look = False
        while True:
            chunk = f.read(READ_SIZE)
            if chunk:
                *lines, pending = (pending + chunk).split(b"\n")
                out = _format_lines(lines, formatter)
                if out:
                    yield out
                if formatter.done:
                    return
                continue
            # at the end of what is written so far
            if not opts.follow or last_look:
                if pending:
                    out = _format_lines([pending], formatter)
                    if out:
                        yield out
                return
            replaced = _open_if_replaced(path, f)
            if replaced is not None:
                f.close()
                f, pending = replaced, b""
                continue
            if not still_running():
                last_look = True  # one more read: what it wrote before it stopped
                continue
            await asyncio.sleep(poll)
    finally:
        if f is not None:
            f.close()


def _open(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _open_if_replaced(path: Path, f: BinaryIO) -> BinaryIO | None:
    """The new file when `path` now names another file than `f` (log rotation)."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return None
    opened = os.fstat(f.fileno())
    if (current.st_ino, current.st_dev) == (opened.st_ino, opened.st_dev):
        return None
    return _open(path)
