"""The node's kubelet API (kwire.node.server) with a fake locator and commands run
on this host in place of runc exec: authentication, how refusals read, and what
stopping the server does to open sessions. Plain HTTP on 127.0.0.1."""
import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from kwire.node.server import ContainerHandle, ContainerUnavailable, KubeletServer

TOKEN = "t0ken"


class HostRunc:
    """Runc's exec_args on this host: the shell writes runc's pid file, then execs."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.attach_dir = state_dir / "attach"

    def exec_args(self, cid, args, *, tty=False, pid_file=None, **_):
        return ["sh", "-c", 'echo $$ > "$0"; exec "$@"', str(pid_file), *args]


def locate(namespace, pod, container, previous):
    if pod == "gone":
        raise ContainerUnavailable(404, f'pod "{pod}" is not on this node')
    return ContainerHandle(f"{pod}-{container}", Path("/nonexistent.log"), container != "stopped")


def with_server(body):
    def test(tmp_path):
        async def main():
            server = KubeletServer(locate, HostRunc(tmp_path), TOKEN)
            await server.start("127.0.0.1", 0)
            try:
                async with aiohttp.ClientSession(
                        headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                    await asyncio.wait_for(
                        body(server, http, f"http://127.0.0.1:{server.port}"), 30)
            finally:
                await server.stop()
        asyncio.run(main())
    test.__name__ = body.__name__
    return test


async def status_of(resp) -> tuple[int, str]:
    body = await resp.json()
    assert body["kind"] == "Status" and body["code"] == resp.status
    return resp.status, body["message"]


@with_server
async def test_authentication(server, http, base):
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(base + "/healthz") as r:
            assert (r.status, await r.text()) == (200, "ok")
        async with anonymous.get(base + "/containerLogs/default/p/c") as r:
            assert await status_of(r) == (401, "Unauthorized")
        async with anonymous.get(base + "/exec/default/p/c?command=true&stdout=1",
                                 headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401


@with_server
async def test_refusals(server, http, base):
    cases = {
        "/containerLogs/default/gone/c": (404, 'pod "gone" is not on this node'),
        "/containerLogs/default/p/c?tailLines=-2": (
            400, "tailLines: Invalid value: -2: must be greater than or equal to 0"),
        "/exec/default/p/c?stdout=1": (
            400, "you must specify at least one command for the container"),
        "/exec/default/p/c?command=true": (
            400, "you must specify at least 1 of stdin, stdout, stderr"),
        "/exec/default/p/stopped?command=true&stdout=1": (
            400, 'container "stopped" in pod "p" is not running'),
        "/exec/default/p/c?command=true&stdout=1": (
            400, "kwire's node agent serves exec over WebSocket (v5.channel.k8s.io) only; "
                 "SPDY is not supported"),
    }
    for path, expected in cases.items():
        async with http.get(base + path) as r:
            assert await status_of(r) == expected, path
    # kubectl's SPDY fallback
    async with http.post(base + "/attach/default/p/c?stdout=1",
                         headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}) as r:
        assert (await status_of(r))[1].startswith("kwire's node agent serves attach over")
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await http.ws_connect(base + "/exec/default/p/c?command=true&stdout=1",
                              protocols=["v9.channel.k8s.io"])
    assert e.value.status == 400


@with_server
async def test_stopping_ends_sessions_and_their_commands(server, http, base):
    ws = await http.ws_connect(base + "/exec/default/p/c",
                               params=[("command", "sh"), ("command", "-c"),
                                       ("command", "echo $$; exec sleep 300"), ("stdout", "1")],
                               protocols=["v5.channel.k8s.io"])
    pid = int((await ws.receive()).data[1:])
    await server.stop()
    msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone"
    return stat[stat.rindex(")") + 2]
