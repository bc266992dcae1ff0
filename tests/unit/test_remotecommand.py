"""The remote-command stream protocol, server side (kwire.node.remotecommand):
negotiation, framing, the Status on channel 3 byte for byte, stdin half-close,
terminals and resizes. Sessions run `sh` on this host where runc exec would run
in a container, served by an aiohttp test server on 127.0.0.1."""
import asyncio
import base64
import json
import os
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from kwire.node.remotecommand import (
    V1,
    V1_BASE64,
    V4,
    V4_BASE64,
    V5,
    Codec,
    Launch,
    PipeProcess,
    ProtocolError,
    PtyProcess,
    Session,
    StreamOptions,
    go_json,
    negotiate,
    offered_protocols,
    parse_resize,
    status_exit_code,
    status_internal_error,
    status_payload,
    status_success,
)

# --- negotiation and framing -------------------------------------------------------------


def test_offered_protocols_and_negotiation():
    headers = CIMultiDict([("Sec-WebSocket-Protocol", "v5.channel.k8s.io, v4.channel.k8s.io"),
                           ("Sec-WebSocket-Protocol", "channel.k8s.io")])
    assert offered_protocols(headers) == [V5, V4, V1]
    assert negotiate([V5]) == V5
    assert negotiate([V4, V5]) == V4  # the client's order, as the kubelet picks
    assert negotiate(["SPDY/3.1+portforward.k8s.io", V4]) == V4
    assert negotiate([]) == ""
    with pytest.raises(ProtocolError, match=r"requested protocol\(s\) are not supported: "
                                            r"\[v9.channel.k8s.io\]; supports \[v5"):
        negotiate(["v9.channel.k8s.io"])


def test_codecs():
    v5 = Codec(V5)
    assert v5.encode(1, b"out") == b"\x01out"
    assert v5.decode(b"\x00in") == (0, b"in")
    assert v5.decode("\x00typed") == (0, b"typed")  # the Python client's text frames
    assert v5.decode(b"\xff\x00") == (255, b"\x00")
    assert v5.half_close and v5.status_json and not Codec(V4).half_close
    b64 = Codec(V4_BASE64)
    assert b64.encode(2, b"err") == "2ZXJy"
    assert b64.decode("0aGk=") == (0, b"hi")
    with pytest.raises(ValueError):
        b64.decode("0***")
    with pytest.raises(ValueError):
        v5.decode(b"")
    assert not Codec(V1).status_json and not Codec(V1_BASE64).status_json


def test_stream_options():
    assert StreamOptions.from_query({"stdout": "1", "stderr": "true"}) == StreamOptions(
        stdout=True, stderr=True)
    # a terminal has one output: stderr is dropped, as the kubelet does
    assert StreamOptions.from_query({"stdin": "1", "stdout": "1", "stderr": "1", "tty": "1"}) == \
        StreamOptions(stdin=True, stdout=True, tty=True)
    with pytest.raises(ProtocolError, match="you must specify at least 1 of stdin, stdout, stderr"):
        StreamOptions.from_query({"tty": "true", "stderr": "true"})


def test_parse_resize():
    assert parse_resize(b'{"Width":100,"Height":30}\n') == (30, 100)
    assert parse_resize(b'{"width":80,"height":24}') == (24, 80)  # Go matches keys without case
    for bad in (b"", b"[]", b'{"Width":-1,"Height":3}', b'{"Width":"80","Height":24}',
                b'{"Width":1}', b"{"):
        assert parse_resize(bad) is None


# --- the Status on channel 3 -------------------------------------------------------------


def test_status_bytes_are_the_kubelets():
    assert go_json(status_success()) == b'{"metadata":{},"status":"Success"}'
    assert go_json(status_exit_code(["sh", "-c", "exit 3"], 3)) == (
        b'{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit '
        b'code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode",'
        b'"details":{"causes":[{"reason":"ExitCode","message":"3"}]}}')
    assert go_json(status_internal_error("error executing command in container: boom")) == (
        b'{"metadata":{},"status":"Failure","message":"Internal error occurred: error executing '
        b'command in container: boom","reason":"InternalError","details":{"causes":[{"message":'
        b'"error executing command in container: boom"}]},"code":500}')
    # Go escapes HTML characters and keeps other text as UTF-8
    assert go_json({"m": "a<b>&c é"}) == '{"m":"a\\u003cb\\u003e\\u0026c é"}'.encode()


def test_status_payload_by_protocol():
    failure = status_exit_code(["false"], 1)
    assert json.loads(status_payload(Codec(V4), failure)) == failure
    assert status_payload(Codec(V1), failure) == failure["message"].encode()
    assert status_payload(Codec(V1), status_success()) == b""


# --- sessions ------------------------------------------------------------------------------


def sh_launch(command, _tmp_path):
    return Launch(list(command))


def serve(launch_for):
    """An app serving exec sessions; launch_for(command) says what to run."""
    async def handler(request):
        protocol = negotiate(offered_protocols(request.headers))
        opts = StreamOptions.from_query(request.query)
        ws = web.WebSocketResponse(protocols=[protocol] if protocol else ())
        await ws.prepare(request)
        command = request.query.getall("command")
        launch = launch_for(command)

        async def start(size):
            if size is not None:
                return await PtyProcess.spawn(launch, size)
            return await PipeProcess.spawn(launch, opts.stdin)

        await Session(ws, Codec(protocol), opts).exec(start, command)
        return ws

    app = web.Application()
    app.router.add_get("/exec", handler)
    return app


class Result:
    def __init__(self):
        self.frames: list[tuple[int, bytes]] = []
        self.close_code = None
        self.protocol = None

    def channel(self, n: int) -> bytes:
        return b"".join(data for ch, data in self.frames if ch == n)

    @property
    def status(self) -> dict:
        return json.loads(self.channel(3))


async def session(url, command, *, streams=("stdout", "stderr"), protocol=V5, send=(),
                  text=False, tty=False):
    params = [("command", c) for c in command] + [(s, "1") for s in streams]
    if tty:
        params.append(("tty", "1"))
    result = Result()
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url, params=params, protocols=[protocol]) as ws:
            result.protocol = ws.protocol
            for message in send:
                if callable(message):
                    await message(ws, result)
                elif text:
                    await ws.send_str(message.decode("latin-1"))
                else:
                    await ws.send_bytes(message)
            async for msg in ws:
                assert msg.type == aiohttp.WSMsgType.BINARY
                result.frames.append((msg.data[0], msg.data[1:]))
        result.close_code = ws.close_code
    return result


def with_server(launch_for=sh_launch):
    def wrap(body):
        def test(tmp_path):
            async def main():
                async with TestServer(serve(lambda command: launch_for(command, tmp_path)),
                                      host="127.0.0.1") as server:
                    await asyncio.wait_for(body(str(server.make_url("/exec")), tmp_path), 30)
            asyncio.run(main())
        test.__name__ = body.__name__
        return test
    return wrap


@with_server()
async def test_stdout_stderr_and_exit_code(url, _tmp):
    r = await session(url, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert r.protocol == V5
    assert r.channel(1) == b"out\n" and r.channel(2) == b"err\n"
    assert r.channel(3) == go_json(status_exit_code(["sh", "-c", "echo out; echo err >&2; exit 3"], 3))
    assert r.frames[-1][0] == 3  # the Status comes last, then the close
    assert r.close_code == 1000


@with_server()
async def test_success_and_streams_not_asked_for(url, _tmp):
    r = await session(url, ["sh", "-c", "echo out; echo err >&2"], streams=("stdout",))
    assert r.channel(1) == b"out\n" and r.channel(2) == b""
    assert r.channel(3) == b'{"metadata":{},"status":"Success"}'


@with_server()
async def test_signal_exit_code(url, _tmp):
    r = await session(url, ["sh", "-c", "kill -9 $$"])
    assert r.status["details"]["causes"] == [{"reason": "ExitCode", "message": "137"}]


@with_server()
async def test_v5_stdin_and_half_close(url, _tmp):
    r = await session(url, ["sh", "-c", "cat; echo done"], streams=("stdin", "stdout"),
                      send=[b"\x00hello ", b"\x00world\n", b"\xff\x00"])
    assert r.channel(1) == b"hello world\ndone\n"
    assert r.status == {"metadata": {}, "status": "Success"}


@with_server()
async def test_text_frames_are_read_too(url, _tmp):
    r = await session(url, ["cat"], streams=("stdin", "stdout"), send=[b"\x00typed\n", b"\xff\x00"],
                      text=True)
    assert r.channel(1) == b"typed\n"


@with_server()
async def test_v4_has_no_half_close_but_works(url, _tmp):
    r = await session(url, ["sh", "-c", "head -n1; exit 2"], streams=("stdin", "stdout"),
                      protocol=V4, send=[b"\x00line\n", b"\xff\x00"])
    assert r.protocol == V4
    assert r.channel(1) == b"line\n" and r.status["details"]["causes"][0]["message"] == "2"


@with_server()
async def test_old_protocols(url, _tmp):
    r = await session(url, ["sh", "-c", "exit 4"], protocol=V1)
    assert r.protocol == V1
    assert r.channel(3) == status_exit_code(["sh", "-c", "exit 4"], 4)["message"].encode()

    params = [("command", "sh"), ("command", "-c"), ("command", "echo hi"), ("stdout", "1")]
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url, params=params, protocols=[V4_BASE64]) as ws:
            frames = [msg.data async for msg in ws]
    assert frames == ["1aGkK", "3" + base64.b64encode(b'{"metadata":{},"status":"Success"}').decode()]


@with_server()
async def test_terminal_with_first_size_and_resize(url, _tmp):
    async def resize_and_type(ws, result):
        await ws.send_bytes(b"\x04" + b'{"Width":100,"Height":30}\n')
        await ws.send_bytes(b"\x00stty size\n")
        while b"30 100" not in result.channel(1):
            msg = await ws.receive()
            result.frames.append((msg.data[0], msg.data[1:]))
        await ws.send_bytes(b"\x04" + b'{"Width":132,"Height":50}\n')
        await ws.send_bytes(b"\x00stty size; echo $((6*7)); exit 5\n")

    r = await session(url, ["sh"], streams=("stdin", "stdout", "stderr"), tty=True,
                      send=[resize_and_type])
    # the terminal is raw as runc makes it (the container's own terminal echoes): no
    # echo here, and output lines end in CRLF
    out = r.channel(1)
    assert b"30 100\r\n" in out and b"50 132\r\n" in out and b"42\r\n" in out
    assert b"stty" not in out
    assert r.channel(2) == b""
    assert r.status["details"]["causes"][0]["message"] == "5"


@with_server()
async def test_terminal_without_a_size_starts_at_24x80(url, _tmp):
    r = await session(url, ["stty", "size"], streams=("stdout",), tty=True)
    assert r.channel(1) == b"24 80\r\n"


@with_server()
async def test_client_leaving_kills_the_command(url, _tmp):
    params = [("command", "sh"), ("command", "-c"), ("command", "echo $$; exec sleep 300"),
              ("stdout", "1")]
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url, params=params, protocols=[V5]) as ws:
            msg = await ws.receive()
            pid = int(msg.data[1:])
            assert _alive(pid)
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not _alive(pid)


def pid_file_launch(command, tmp_path):
    """Like runc exec: the pid file is written only once the command has started;
    the test's commands say whether they "start"."""
    return Launch(list(command), tmp_path / "pid", explain=lambda out: "runc: " + out.decode().strip())


@with_server(pid_file_launch)
async def test_a_command_that_never_started_is_an_internal_error(url, tmp_path):
    r = await session(url, ["sh", "-c", "echo 'exec: nope: not found' >&2; exit 255"])
    assert r.channel(1) == r.channel(2) == b""
    assert r.status == status_internal_error(
        "error executing command in container: runc: exec: nope: not found")
    assert r.close_code == 1000


@with_server(pid_file_launch)
async def test_held_output_is_released_once_started(url, tmp_path):
    pid = tmp_path / "pid"
    script = f'echo early; echo $$ > {pid}; sleep 0.2; echo late >&2; exit 255'
    r = await session(url, ["sh", "-c", script])
    assert r.channel(1) == b"early\n" and r.channel(2) == b"late\n"
    assert r.status["details"]["causes"][0]["message"] == "255"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_no_process_left(tmp_path):
    """Every `sh` these tests started has been reaped."""
    mine = [p for p in os.listdir("/proc") if p.isdigit()
            and Path(f"/proc/{p}/status").exists()
            and f"PPid:\t{os.getpid()}\n" in Path(f"/proc/{p}/status").read_text()]
    assert mine == []
