"""The remote-command stream protocol, server side: ``kubectl exec`` and ``kubectl
attach`` over a WebSocket, as the kubelet serves them.

Negotiation: the client lists subprotocols in Sec-WebSocket-Protocol; the first
of them served here wins (the kubelet's rule). kubectl 1.32 offers only
``v5.channel.k8s.io``; the Python client offers v5 then v4. The older
``channel.k8s.io`` and the base64 variants cost a few lines, so they are served too.

Framing: every message is one channel byte and a payload. 0 stdin (client to
server), 1 stdout, 2 stderr, 3 error, 4 resize (``{"Width":W,"Height":H}``),
255 close (v5 only: ``[255, 0]`` closes the command's stdin). Text frames are
read like binary ones (the Python client sends stdin as text). The base64
protocols carry the channel as an ASCII digit and the payload in base64.

End: once the command has exited and its output is flushed, one message on
channel 3 says how it ended (a metav1.Status in JSON from v4 on, field for field
what the kubelet marshals), then a close frame with code 1000. kubectl takes
its exit code from that Status only.

A Session drives one Process:

- PipeProcess: the command with stdin/stdout/stderr pipes (exec without -t);
- PtyProcess: the command on a terminal made here (exec -t). runc wants a
  terminal on its own stdin for ``exec --tty`` and copies between it and the
  container's; a resize sets this terminal's size and sends runc SIGWINCH;
- AttachProcess: a container's main process through conmon's attach socket.

A Launch says what to run. For ``runc exec`` it names runc's pid file, which
runc writes once the command runs in the container: until then the output is
held back, because when the command cannot start (not found, not executable)
what comes out is runc's error, which ends the session as an InternalError
Status as it does upstream, not as output and exit code 255.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import fcntl
import json
import os
import signal
import socket
import struct
import termios
import tty
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from kwire.node.logs import flag
from kwire.node.runtime.runc import read_pid

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
V1 = "channel.k8s.io"
V1_BASE64 = "base64.channel.k8s.io"
PROTOCOLS = (V5, V4, V4_BASE64, V1, V1_BASE64)

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
CONMON_CHANNELS = {2: STDOUT, 3: STDERR}
"""The first byte of what conmon's attach socket sends, as channels."""

READ_SIZE = 64 * 1024
DEFAULT_SIZE = (24, 80)
FIRST_RESIZE_WAIT = 0.25
"""Seconds a terminal session waits for the client's size before starting the
command (kubectl sends it first), so the command starts at the right size."""
DRAIN_TIMEOUT = 2.0
"""Seconds to wait, after the command exits, for output still in flight; a
background process that keeps the pipes open does not hold the session."""
START_POLL = 0.01
"""Seconds between looks for runc's pid file while output is held back."""


class ProtocolError(ValueError):
    """A request the stream protocol cannot serve (answered with HTTP 400)."""


def offered_protocols(headers: Any) -> list[str]:
    """The subprotocols a client offers, from every Sec-WebSocket-Protocol header."""
    return [p.strip() for h in headers.getall("Sec-WebSocket-Protocol", ())
            for p in h.split(",") if p.strip()]


def negotiate(offered: Iterable[str]) -> str:
    """The subprotocol to answer with: the client's first that is served here, or
    "" (the original channel protocol, as the kubelet reads a missing header)."""
    offered = list(offered)
    if not offered:
        return ""
    for protocol in offered:
        if protocol in PROTOCOLS:
            return protocol
    raise ProtocolError(f"requested protocol(s) are not supported: [{' '.join(offered)}]; "
                        f"supports [{' '.join(PROTOCOLS)}]")


@dataclass(frozen=True)
class Codec:
    """Messages of one subprotocol."""

    protocol: str

    @property
    def base64(self) -> bool:
        return self.protocol in (V4_BASE64, V1_BASE64)

    @property
    def status_json(self) -> bool:
        """v4 and v5 send a Status on channel 3; older protocols the error text."""
        return self.protocol in (V5, V4, V4_BASE64)

    @property
    def half_close(self) -> bool:
        return self.protocol == V5

    def encode(self, channel: int, data: bytes) -> bytes | str:
        if self.base64:
            return chr(ord("0") + channel) + base64.b64encode(data).decode()
        return bytes([channel]) + data

    def decode(self, message: bytes | str) -> tuple[int, bytes]:
        """(channel, payload); ValueError for an empty or undecodable message."""
        if not message:
            raise ValueError("empty message")
        if self.base64:
            text = message.decode() if isinstance(message, bytes) else message
            try:
                return ord(text[0]) - ord("0"), base64.b64decode(text[1:], validate=True)
            except binascii.Error as e:
                raise ValueError(str(e)) from None
        if isinstance(message, str):
            return ord(message[0]), message[1:].encode()
        return message[0], bytes(message[1:])


@dataclass(frozen=True)
class StreamOptions:
    """Which streams a client wants (the stdin, stdout, stderr and tty parameters)."""

    stdin: bool = False
    stdout: bool = False
    stderr: bool = False
    tty: bool = False

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> StreamOptions:
        tty = flag(query, "tty")
        opts = cls(stdin=flag(query, "stdin"), stdout=flag(query, "stdout"),
                   stderr=flag(query, "stderr") and not tty, tty=tty)  # a terminal has one output
        if not (opts.stdin or opts.stdout or opts.stderr):
            raise ProtocolError("you must specify at least 1 of stdin, stdout, stderr")
        return opts


def parse_resize(data: bytes) -> tuple[int, int] | None:
    """(rows, cols) from a resize message, keys matched without case as Go's JSON
    decoder does; None when it is not one."""
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    size = {k.lower(): v for k, v in obj.items()}
    rows, cols = size.get("height"), size.get("width")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 65536
               for v in (rows, cols)):
        return None
    return rows, cols


# ----------------------------------------------------------------------- statuses


def status_success() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def status_exit_code(command: list[str], code: int) -> dict[str, Any]:
    """The kubelet's NonZeroExitCode Status; kubectl exits with causes[0].message."""
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"[{' '.join(command)}], exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def status_internal_error(error: str) -> dict[str, Any]:
    """apierrors.NewInternalError(error)."""
    return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {error}",
            "reason": "InternalError", "details": {"causes": [{"message": error}]},
            "code": 500}


def go_json(obj: Any) -> bytes:
    """JSON as Go's encoding/json writes it: compact, UTF-8, HTML characters escaped."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode()


def status_payload(codec: Codec, status: dict[str, Any]) -> bytes:
    """What channel 3 carries for `status`: the Status itself from v4 on, the
    error text before (nothing on success)."""
    if codec.status_json:
        return go_json(status)
    return status.get("message", "").encode() if status["status"] != "Success" else b""


# ----------------------------------------------------------------------- processes


def _text(output: bytes) -> str:
    return output.decode(errors="replace").strip()


@dataclass(frozen=True)
class Launch:
    """How to start a command: the argv to run here and, for runc exec, the pid
    file runc writes once the command runs; `explain` turns what was printed by
    a command that never started into an error message."""

    argv: list[str]
    pid_file: Path | None = None
    explain: Callable[[bytes], str] = field(default=_text)


class Process:
    """What a Session drives: a command's (or a container's) output, stdin,
    terminal size and end."""

    def output(self) -> AsyncIterator[tuple[int, bytes]]:
        """(channel, bytes) as they come, until every output has ended."""
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close_stdin(self) -> None:
        raise NotImplementedError

    def resize(self, rows: int, cols: int) -> None:
        """Only a terminal has a size: others ignore this."""

    async def wait(self) -> int | None:
        """The exit code; None when there is none to give (attach)."""
        raise NotImplementedError

    def failure(self) -> str | None:
        """Why the command never ran, once it has ended; None if it did run."""
        return None

    def kill(self) -> None:
        """End it now (the client has gone); nothing once it has ended."""

    def close(self) -> None:
        """Release what it holds (after the session)."""


class _Command(Process):
    """A started subprocess whose outputs readers put on a queue (None: one ended),
    held back until the Launch's pid file appears."""

    def __init__(self, proc: asyncio.subprocess.Process, launch: Launch, outputs: int):
        self.proc = proc
        self.launch = launch
        self.queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self.open_outputs = outputs
        self.held: list[tuple[int, bytes]] = []

    def started(self) -> bool:
        return self.launch.pid_file is None or self.launch.pid_file.exists()

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        running = self.started()
        while self.open_outputs:
            if not running and self.started():
                running = True
                for item in self.held:
                    yield item
                self.held.clear()
            try:
                item = await (self.queue.get() if running else
                              asyncio.wait_for(self.queue.get(), START_POLL))
            except asyncio.TimeoutError:
                continue
            if item is None:
                self.open_outputs -= 1
            elif running:
                yield item
            else:
                self.held.append(item)
        if self.held and self.started():
            for item in self.held:
                yield item
            self.held.clear()

    async def wait(self) -> int:
        code = await self.proc.wait()
        return code if code >= 0 else 128 - code  # killed by a signal, as a shell reports it

    def failure(self) -> str | None:
        if self.started():
            return None
        return self.launch.explain(b"".join(data for _, data in self.held)) or \
            f"the command exited with {self.proc.returncode} before it started"

    def kill(self) -> None:
        if self.proc.returncode is not None:
            return
        # runc exec's command lives in the container, not in runc's process group
        pid = read_pid(self.launch.pid_file) if self.launch.pid_file else None
        if pid:
            _signal(pid, signal.SIGKILL)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            _signal(self.proc.pid, signal.SIGKILL)


class PipeProcess(_Command):
    """A command with pipes. stdout and stderr are always read, even when not
    asked for, so that runc's own error can explain a command that never started."""

    @classmethod
    async def spawn(cls, launch: Launch, stdin: bool) -> PipeProcess:
        proc = await asyncio.create_subprocess_exec(
            *launch.argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)
        self = cls(proc, launch, 2)
        self.readers = [asyncio.create_task(self._read(proc.stdout, STDOUT)),
                        asyncio.create_task(self._read(proc.stderr, STDERR))]
        return self

    async def _read(self, stream: asyncio.StreamReader, channel: int) -> None:
        try:
            while data := await stream.read(READ_SIZE):
                self.queue.put_nowait((channel, data))
        finally:
            self.queue.put_nowait(None)

    async def write(self, data: bytes) -> None:
        if self.proc.stdin is None or self.proc.stdin.is_closing():
            return
        try:
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()
        except ConnectionError:
            pass  # the command has closed its stdin or ended

    def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()

    def close(self) -> None:
        for reader in self.readers:
            reader.cancel()
        if self.proc.stdin is not None:
            self.proc.stdin.close()


class PtyProcess(_Command):
    """A command on a terminal: its slave side is the command's stdin, stdout and
    stderr; this side reads and writes the master. Everything comes out on stdout.

    The command is runc exec --tty, which makes the container's own terminal and
    copies between it and this one. runc makes this one raw but for output
    processing (the host's terminal turns \\n into \\r\\n; the container's does not),
    only once it is ready: too late for keys typed ahead, which the terminal would
    echo and mangle. So it is put in that state before runc starts."""

    @classmethod
    async def spawn(cls, launch: Launch, size: tuple[int, int]) -> PtyProcess:
        master, slave = os.openpty()
        try:
            _set_winsize(slave, *size)
            _set_raw(slave)
            proc = await asyncio.create_subprocess_exec(
                *launch.argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self = cls(proc, launch, 1)
        self.master = master
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(master, self._readable)
        return self

    def _readable(self) -> None:
        try:
            data = os.read(self.master, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO: every holder of the slave side has gone
            data = b""
        if data:
            self.queue.put_nowait((STDOUT, data))
        else:
            self.loop.remove_reader(self.master)
            self.queue.put_nowait(None)

    async def write(self, data: bytes) -> None:
        while data:
            try:
                data = data[os.write(self.master, data):]
            except BlockingIOError:
                writable = self.loop.create_future()
                self.loop.add_writer(self.master, writable.set_result, None)
                try:
                    await writable
                finally:
                    self.loop.remove_writer(self.master)
            except OSError:
                return

    def close_stdin(self) -> None:
        """A terminal cannot be half-closed: type the end-of-file character instead."""
        try:
            os.write(self.master, b"\x04")
        except OSError:
            pass

    def resize(self, rows: int, cols: int) -> None:
        _set_winsize(self.master, rows, cols)
        if self.proc.returncode is None:
            _signal(self.proc.pid, signal.SIGWINCH)

    def close(self) -> None:
        self.loop.remove_reader(self.master)
        os.close(self.master)


class AttachProcess(Process):
    """A container's main process through conmon's attach socket (SOCK_SEQPACKET):
    each packet conmon sends is one byte (2 stdout, 3 stderr) and the output;
    what is sent to it goes to the container's stdin, if conmon was given one.
    The session ends when conmon closes the socket, with the container."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.ended = asyncio.Event()

    @classmethod
    async def connect(cls, bundle: Path) -> AttachProcess:
        """Attach through ``<bundle>/attach``. A unix socket address holds 108
        bytes, so the path goes through an O_PATH descriptor of the directory."""
        dirfd = os.open(bundle, os.O_PATH | os.O_DIRECTORY)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{dirfd}/attach")
        except BaseException:
            sock.close()
            raise
        finally:
            os.close(dirfd)
        return cls(sock)

    async def output(self) -> AsyncIterator[tuple[int, bytes]]:
        try:
            while packet := await self.loop.sock_recv(self.sock, READ_SIZE + 1):
                channel = CONMON_CHANNELS.get(packet[0])
                if channel is not None and len(packet) > 1:
                    yield channel, packet[1:]
        except OSError:
            pass
        finally:
            self.ended.set()

    async def write(self, data: bytes) -> None:
        try:
            await self.loop.sock_sendall(self.sock, data)
        except OSError:
            pass

    def close_stdin(self) -> None:
        """conmon drops a connection that sends EOF, output and all: leave it open."""

    async def wait(self) -> None:
        await self.ended.wait()

    def close(self) -> None:
        self.sock.close()


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _set_raw(fd: int) -> None:
    """Raw mode as runc sets it (containerd's console.SetRaw): raw input, no echo,
    but output processing on (\\n becomes \\r\\n)."""
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[1] |= termios.OPOST | termios.ONLCR
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# ----------------------------------------------------------------------- the session


Starter = Callable[[tuple[int, int] | None], Awaitable[Process]]
"""Starts the Process, given the terminal size (None without a terminal)."""


class Session:
    """One exec or attach over an accepted WebSocket: start the process, copy
    stdin in and output out, apply resizes, and end with the Status on channel 3
    and a close frame (1000). If the client goes first, the process is killed."""

    def __init__(self, ws: web.WebSocketResponse, codec: Codec, opts: StreamOptions):
        self.ws = ws
        self.codec = codec
        self.opts = opts
        self.early: list[Any] = []
        self.gone = False

    async def exec(self, start: Starter, command: list[str]) -> None:
        """Run a command; its exit code becomes the Status."""
        await self._run(start, lambda code: status_success() if not code
                        else status_exit_code(command, code),
                        "error executing command in container")

    async def attach(self, start: Starter) -> None:
        """Attach to a container until it ends (Success) or the client leaves."""
        await self._run(start, lambda _: status_success(), "error attaching to container")

    async def _run(self, start: Starter, ended: Callable[[int | None], dict],
                   failed: str) -> None:
        size = None
        if self.opts.tty:
            size = await self._first_resize()
            if self.gone:
                return
        try:
            proc = await start((size or DEFAULT_SIZE) if self.opts.tty else None)
        except OSError as e:
            await self._finish(status_internal_error(f"{failed}: {e}"))
            return
        try:
            if await self._drive(proc):
                failure = proc.failure()
                await self._finish(status_internal_error(f"{failed}: {failure}") if failure
                                   else ended(await proc.wait()))
        finally:
            proc.kill()
            proc.close()

    async def _first_resize(self) -> tuple[int, int] | None:
        """The size the client sends first; other early messages are kept for later."""
        try:
            msg = await self.ws.receive(timeout=FIRST_RESIZE_WAIT)
        except asyncio.TimeoutError:
            return None
        if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
            self.gone = True
            return None
        try:
            channel, data = self.codec.decode(msg.data)
        except ValueError:
            return None
        if channel == RESIZE:
            return parse_resize(data)
        self.early.append(msg)
        return None

    async def _drive(self, proc: Process) -> bool:
        """Copy until the process ends (True) or the client goes away (False)."""
        output = asyncio.create_task(self._copy_output(proc))
        inputs = asyncio.create_task(self._copy_input(proc))
        waiter = asyncio.create_task(proc.wait())
        try:
            await asyncio.wait({inputs, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                return False
            try:
                await asyncio.wait_for(asyncio.shield(output), DRAIN_TIMEOUT)
            except asyncio.TimeoutError:
                pass
            return True
        finally:
            for task in (output, inputs, waiter):
                task.cancel()
            await asyncio.gather(output, inputs, waiter, return_exceptions=True)

    async def _copy_output(self, proc: Process) -> None:
        wanted = {ch for ch, on in ((STDOUT, self.opts.stdout), (STDERR, self.opts.stderr)) if on}
        async for channel, data in proc.output():
            if channel in wanted:
                await self._send(channel, data)

    async def _copy_input(self, proc: Process) -> None:
        for msg in self.early:
            await self._handle(proc, msg.data)
        async for msg in self.ws:
            if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                await self._handle(proc, msg.data)

    async def _handle(self, proc: Process, message: bytes | str) -> None:
        try:
            channel, data = self.codec.decode(message)
        except ValueError:
            return
        if channel == STDIN and self.opts.stdin:
            await proc.write(data)
        elif channel == RESIZE:
            size = parse_resize(data)
            if size is not None:
                proc.resize(*size)
        elif channel == CLOSE and self.codec.half_close and data[:1] == bytes([STDIN]) \
                and self.opts.stdin:
            proc.close_stdin()

    async def _send(self, channel: int, data: bytes) -> None:
        message = self.codec.encode(channel, data)
        try:
            if isinstance(message, str):
                await self.ws.send_str(message)
            else:
                await self.ws.send_bytes(message)
        except ConnectionError:
            pass  # the client has gone; the input side sees it and ends the session

    async def _finish(self, status: dict[str, Any]) -> None:
        payload = status_payload(self.codec, status)
        if payload:
            await self._send(ERROR, payload)
        try:
            await self.ws.close(code=WSCloseCode.OK)
        except ConnectionError:
            pass
