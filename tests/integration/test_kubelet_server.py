"""The node's kubelet API (kwire.node.server) over real containers: busybox under
runc + conmon in a pod sandbox (as in test_runtime_pod), served on 127.0.0.1 over
HTTPS, exec'd into with WebSocket clients (v5 and v4: stdout and stderr apart,
stdin and its close, exit codes, a command that cannot start, a terminal and its
resizes), attached to, and read logs from (tail, timestamps, partial lines,
follow). Everything is torn down and checked gone, pass or fail."""
import asyncio
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest
import test_runtime_pod as runtime_pod
from test_runtime_pod import MISSING, Pod, assert_nothing_left

from kwire.node.images import BUSYBOX_REF
from kwire.node.server import (
    ContainerHandle,
    ContainerUnavailable,
    KubeletServer,
    ensure_serving_cert,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, runc"),
    pytest.mark.skipif(bool(MISSING), reason=f"missing {', '.join(MISSING)}"),
]

store = runtime_pod.store  # the built-in images in a temporary store, for this module too
TOKEN = "node-agent-token"
V5, V4 = "v5.channel.k8s.io", "v4.channel.k8s.io"
TIMESTAMPED = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z (.*)$")


class Node:
    """A pod with containers and the kubelet API serving them."""

    def __init__(self, pod: Pod):
        self.pod = pod
        self.cids: dict[str, str] = {}
        self.server = KubeletServer(self.locate, pod.rt, TOKEN)

    def locate(self, namespace, name, container, previous):
        if (namespace, name) != ("default", self.pod.name):
            raise ContainerUnavailable(404, f'pod "{name}" is not on this node')
        if container not in self.cids:
            raise ContainerUnavailable(400, f'container "{container}" in pod "{name}" is '
                                            "waiting to start: ContainerCreating")
        if previous:
            raise ContainerUnavailable(400, f'previous terminated container "{container}" in '
                                            f'pod "{name}" not found')
        cid = self.cids[container]
        state = self.pod.rt.state(cid)
        return ContainerHandle(cid, self.pod.log(container),
                               state is not None and state.status == "running")

    def run(self, name: str, command: list[str]) -> str:
        self.cids[name] = self.pod.run({"name": name, "command": command}, BUSYBOX_REF)
        return self.cids[name]

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.server.port}{path}"


@pytest.fixture
def node(store):
    work = Path(tempfile.mkdtemp(prefix="kwire-kubelet-"))
    pod = None
    try:
        pod = Pod(store, work, "kubelet-api")
        yield Node(pod)
    finally:
        try:
            if pod is not None:
                pod.cleanup()
                assert_nothing_left(pod)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Session:
    def __init__(self):
        self.frames: list[tuple[int, bytes]] = []
        self.close_code = None
        self.protocol = None

    def channel(self, n: int) -> bytes:
        return b"".join(d for ch, d in self.frames if ch == n)

    @property
    def status(self) -> dict:
        return json.loads(self.channel(3))


def client():
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False),
                                 headers={"Authorization": f"Bearer {TOKEN}"})


async def exec_ws(node: Node, container: str, command: list[str], *, streams=("stdout", "stderr"),
                  protocol=V5, script=None, path="exec") -> Session:
    """Open an exec (or attach) WebSocket, run `script(ws, session)` if given, then read
    to the end."""
    params = [("command", c) for c in command] + [(s, "1") for s in streams]
    s = Session()
    async with client() as http:
        async with http.ws_connect(node.url(f"/{path}/default/kubelet-api/{container}"),
                                   params=params, protocols=[protocol]) as ws:
            s.protocol = ws.protocol
            if script is not None:
                await script(ws, s)
            async for msg in ws:
                s.frames.append((msg.data[0], msg.data[1:]))
        s.close_code = ws.close_code
    return s


async def until(ws, s: Session, needle: bytes, channel: int = 1) -> None:
    while needle not in s.channel(channel):
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        s.frames.append((msg.data[0], msg.data[1:]))


async def serve_while(node: Node, coro):
    """Serve the node's kubelet API on 127.0.0.1 while a client scenario runs."""
    await node.server.start("127.0.0.1", 0, node.pod.work / "pki")
    try:
        return await coro
    finally:
        await node.server.stop()


def test_exec(node):
    node.run("shell", ["sleep", "1000"])

    async def scenario():
        out = {}
        out["v5"] = await exec_ws(node, "shell", ["sh", "-c", "echo out; echo err >&2; exit 3"])
        out["v4"] = await exec_ws(node, "shell", ["sh", "-c", "echo v4"], protocol=V4)

        async def feed(ws, s):
            await ws.send_bytes(b"\x00hello ")
            await ws.send_bytes(b"\x00container\n")
            await ws.send_bytes(b"\xff\x00")
        out["stdin"] = await exec_ws(node, "shell", ["sh", "-c", "cat; echo closed"],
                                     streams=("stdin", "stdout"), script=feed)
        out["nope"] = await exec_ws(node, "shell", ["nope"])
        out["noexec"] = await exec_ws(node, "shell", ["/etc/passwd"], streams=("stdout",))

        async def leave(ws, s):
            await until(ws, s, b"started")
            await ws.close()
        out["left"] = await exec_ws(node, "shell", ["sh", "-c", "echo started; exec sleep 321"],
                                    script=leave)
        return out

    out = run(serve_while(node, scenario()))
    v5 = out["v5"]
    assert v5.protocol == V5 and v5.close_code == 1000
    assert (v5.channel(1), v5.channel(2)) == (b"out\n", b"err\n")
    assert v5.channel(3) == (
        b'{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit '
        b'code: error executing command [sh -c echo out; echo err \\u003e\\u00262; exit 3], exit '
        b'code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode",'
        b'"message":"3"}]}}')
    assert out["v4"].protocol == V4 and out["v4"].channel(1) == b"v4\n"
    assert out["v4"].channel(3) == b'{"metadata":{},"status":"Success"}'
    assert out["stdin"].channel(1) == b"hello container\nclosed\n"
    nope = out["nope"].status
    assert (nope["reason"], nope["code"]) == ("InternalError", 500)
    assert nope["message"] == ('Internal error occurred: error executing command in container: '
                               'OCI runtime exec failed: exec failed: unable to start container '
                               'process: exec: "nope": executable file not found in $PATH')
    assert out["nope"].channel(2) == b""  # runc's complaint is the Status, not output
    assert "permission denied" in out["noexec"].status["message"]
    # the client left: the command is killed in the container
    ps = node.pod.rt.exec(node.cids["shell"], ["ps", "-o", "args"]).stdout
    assert b"sleep 321" not in ps


def test_exec_on_a_terminal(node):
    node.run("shell", ["sleep", "1000"])

    async def scenario():
        async def typing(ws, s):
            await ws.send_bytes(b"\x04" + json.dumps({"Width": 100, "Height": 30}).encode())
            await until(ws, s, b"/ # ")  # type once the prompt is there, as a person would
            await ws.send_bytes(b"\x00stty size; tty\r")
            await until(ws, s, b"/dev/pts/")
            await ws.send_bytes(b"\x04" + json.dumps({"Width": 132, "Height": 50}).encode())
            await asyncio.sleep(0.3)  # runc passes SIGWINCH on asynchronously
            await ws.send_bytes(b"\x00stty size; echo err >&2; exit 6\r")
        return await exec_ws(node, "shell", ["sh"], streams=("stdin", "stdout", "tty"),
                             script=typing)

    s = run(serve_while(node, scenario()))
    # The container's terminal echoes, and lines end in CRLF. runc clears ONLCR on the
    # container's terminal while the shell starts: a shell that saved its settings
    # first restores ONLCR, and lines end in CR CR LF, which looks the same.
    out = s.channel(1).replace(b"\r\r\n", b"\r\n")
    assert b"stty size; tty\r\n30 100\r\n/dev/pts/0\r\n" in out
    assert b"50 132\r\nerr\r\n" in out
    assert s.channel(2) == b""
    assert s.status["details"]["causes"] == [{"reason": "ExitCode", "message": "6"}]


def test_logs(node):
    # conmon reads stdout and stderr in turn: the pauses fix the order of the records
    node.run("writer", ["sh", "-c", "echo one; sleep 0.1; echo two >&2; sleep 0.1; printf par; "
                                    "sleep 0.3; echo tial; exec sleep 1000"])
    log = node.pod.log("writer")
    deadline = time.monotonic() + 10
    while b"tial" not in (log.read_bytes() if log.exists() else b"") and time.monotonic() < deadline:
        time.sleep(0.05)

    async def get(query: str) -> tuple[int, bytes]:
        async with client() as http:
            async with http.get(node.url(f"/containerLogs/default/kubelet-api/{query}")) as r:
                return r.status, await r.read()

    async def scenario():
        out = {q: await get(q) for q in ("writer", "writer?tailLines=1", "writer?timestamps=1",
                                         "writer?limitBytes=6", "writer?previous=true",
                                         "other", "writer?tailLines=x")}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as http:
            async with http.get(node.url("/containerLogs/default/kubelet-api/writer")) as r:
                out["no token"] = r.status, await r.read()
            async with http.get(node.url("/healthz")) as r:
                out["healthz"] = r.status, await r.read()
        return out

    out = run(serve_while(node, scenario()))
    assert out["writer"] == (200, b"one\ntwo\npartial\n")
    assert out["writer?tailLines=1"] == (200, b"partial\n")
    lines = out["writer?timestamps=1"][1].splitlines()
    assert [TIMESTAMPED.match(line).group(2) for line in lines] == [b"one", b"two", b"partial"]
    assert out["writer?limitBytes=6"] == (200, b"one\ntw")
    status, body = out["writer?previous=true"]
    assert status == 400 and json.loads(body)["message"] == (
        'previous terminated container "writer" in pod "kubelet-api" not found')
    assert json.loads(out["other"][1])["message"].endswith("is waiting to start: ContainerCreating")
    assert out["writer?tailLines=x"][0] == 400
    assert out["no token"][0] == 401
    assert out["healthz"] == (200, b"ok")


def test_follow_and_attach(node):
    cid = node.run("ticker", ["sh", "-c", "echo ready; sleep 1.5; for i in 1 2 3; do "
                                          "echo tick $i; echo tock $i >&2; sleep 0.2; done"])

    async def follow() -> bytes:
        async with client() as http:
            async with http.get(node.url("/containerLogs/default/kubelet-api/ticker"),
                                params={"follow": "true"}) as r:
                assert r.status == 200
                return await r.read()

    async def scenario():
        following = asyncio.create_task(follow())
        attached = asyncio.create_task(exec_ws(node, "ticker", [], path="attach"))
        await asyncio.sleep(0.5)
        assert not following.done() and not attached.done()
        return await following, await attached

    logs, attach = run(serve_while(node, scenario()))
    # the container ended: following stops once its whole log is read
    assert logs == b"ready\ntick 1\ntock 1\ntick 2\ntock 2\ntick 3\ntock 3\n"
    assert node.pod.rt.state(cid).status == "stopped"
    # attached from the first second on: the ticks, stdout and stderr apart, then Success
    assert attach.channel(1) == b"tick 1\ntick 2\ntick 3\n"
    assert attach.channel(2) == b"tock 1\ntock 2\ntock 3\n"
    assert attach.channel(3) == b'{"metadata":{},"status":"Success"}'
    assert attach.close_code == 1000


def test_serving_certificate_is_kept(tmp_path):
    cert, key = ensure_serving_cert(tmp_path, ["10.1.2.3", "node-a"])
    pem = cert.read_bytes()
    assert ensure_serving_cert(tmp_path, ["10.1.2.3"]) == (cert, key)
    assert cert.read_bytes() == pem
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    ensure_serving_cert(tmp_path, ["10.1.2.4"])  # a new address: a new certificate
    assert cert.read_bytes() != pem
