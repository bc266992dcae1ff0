"""pods/log and pods/exec through the API server's proxy (kwire.api.proxy) to a
node's kubelet API (kwire.node.server), driven by the real kubectl, the kwire CLI
and the official Python client.

Everything runs in this process on 127.0.0.1: the API server (HTTPS, token auth,
SQLite in a temp dir) and one node's KubeletServer, on an event loop in a
background thread. The "containers" are this host's `sh` (a stand-in for runc
exec) and log files written by the test, so no root is needed.
"""
import asyncio
import dataclasses
import fcntl
import gc
import json
import os
import pty
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import warnings
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from kwire.api.allocators import ServiceAllocator
from kwire.api.auth import Authenticator, User
from kwire.api.registry import load
from kwire.api.resources import Resources, WriteOptions
from kwire.api.server import build_app
from kwire.cluster import kubeconfig
from kwire.cluster.config import ClusterConfig
from kwire.cluster.pki import (
    ensure_pki,
    ensure_tokens,
    read_token_file,
    server_ssl_context,
)
from kwire.node.server import ContainerHandle, ContainerUnavailable, KubeletServer
from kwire.store import SQLiteStore

KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")
ROOT = Path(__file__).resolve().parents[2]
T0 = "2026-01-02T03:04:05.000000000+00:00"


class HostRunc:
    """What the kubelet API needs of Runc, running commands on this host: the
    command's shell writes runc's pid file just before it execs the command, and
    with a terminal `script` plays runc's part, making the command's own terminal
    and copying between it and the one it is given."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.attach_dir = state_dir / "attach"
        state_dir.mkdir(parents=True)

    def exec_args(self, cid, args, *, tty=False, pid_file=None, **_):
        if tty:  # script copies the raw settings it is given; runc's terminal starts sane
            args = ["script", "-qefc", "stty sane; exec " + shlex.join(args), "/dev/null"]
        return ["sh", "-c", 'echo $$ > "$0"; exec "$@"', str(pid_file), *args]


def pod(name, containers, node="node-a", annotations=None):
    meta = {"name": name, "annotations": annotations or {}}
    spec = {"containers": [{"name": c, "image": "busybox"} for c in containers]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


class Cluster:
    """The API server and node-a's kubelet API on a loop in a background thread."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.running = {"side": True}
        self.store = self.runner = self.kubelet = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def locate(self, namespace, pod_name, container, previous):
        if (namespace, pod_name) not in (("default", "web"), ("default", "solo"),
                                         ("default", "starting")):
            raise ContainerUnavailable(404, f'pod "{pod_name}" is not on this node')
        if pod_name == "starting":
            raise ContainerUnavailable(400, f'container "{container}" in pod "{pod_name}" is '
                                            "waiting to start: ContainerCreating")
        path = self.logs / f"{pod_name}_{container}{'.previous' if previous else ''}.log"
        if previous and not path.exists():
            raise ContainerUnavailable(400, f'previous terminated container "{container}" in '
                                            f'pod "{pod_name}" not found')
        running = not previous and self.running.get(container, True)
        return ContainerHandle(f"{pod_name}-{container}", path, running)

    async def start(self) -> None:
        config = ClusterConfig(name="proxytest", state_dir=self.tmp / "state")
        ensure_pki(config)
        tokens = ensure_tokens(config)
        self.store = SQLiteStore(self.tmp / "state.db")
        res = Resources(self.store, load(), ServiceAllocator(config.service_cidr,
                                                             config.node_port_range))
        namespaces = res.registry.resource("", "v1", "namespaces")
        await res.create(namespaces, None, {"metadata": {"name": "default"}}, WriteOptions())
        users = {t: User(u.name, u.groups) for t, u in read_token_file(config.tokens_file).items()}
        app, _ = build_app(res, Authenticator(users), "127.0.0.1:0", tokens.node_agent)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=server_ssl_context(config)).start()
        port = self.runner.addresses[0][1]
        self.config = dataclasses.replace(config, api_port=port)
        self.url = f"https://127.0.0.1:{port}"
        self.kubeconfig = self.tmp / "kubeconfig"
        kubeconfig.write(self.kubeconfig, kubeconfig.build(self.config, tokens.admin))
        self.admin_token = tokens.admin
        self.kubelet = KubeletServer(self.locate, HostRunc(self.tmp / "runc"), tokens.node_agent)
        await self.kubelet.start("127.0.0.1", 0, self.tmp / "kubelet-pki")

        w = WriteOptions()
        nodes, pods = res.registry.resource("", "v1", "nodes"), res.registry.resource("", "v1", "pods")
        with socket.socket() as s:  # a port nothing listens on, for a node that is down
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        for name, port in (("node-a", self.kubelet.port), ("node-down", closed_port)):
            node = await res.create(nodes, None, {"apiVersion": "v1", "kind": "Node",
                                                  "metadata": {"name": name}}, w)
            node["status"] = {"addresses": [{"type": "Hostname", "address": name},
                                            {"type": "InternalIP", "address": "127.0.0.1"}],
                              "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}
            await res.update(nodes, None, name, node, w, "status")
        for body in (pod("web", ["nginx", "side"]), pod("solo", ["app"]),
                     pod("starting", ["app"]), pod("pending", ["app"], node=None),
                     pod("faraway", ["app"], node="node-down"),
                     pod("annotated", ["a", "b"],
                         annotations={"kubectl.kubernetes.io/default-container": "b"})):
            await res.create(pods, "default", body, w)

    async def stop(self) -> None:
        if self.kubelet is not None:
            await self.kubelet.stop()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.store is not None:
            await self.store.close()

    def write_log(self, name: str, *lines: tuple[str, str, str]) -> None:
        with open(self.logs / name, "a") as f:
            for stream, tag, text in lines:
                f.write(f"{T0} {stream} {tag} {text}\n")

    def kubectl(self, *args, input=None, timeout=30):
        return subprocess.run([KUBECTL, f"--kubeconfig={self.kubeconfig}",
                               f"--cache-dir={self.tmp / 'cache'}", *args],
                              capture_output=True, text=True, input=input, timeout=timeout)

    def kwire(self, verb, *args, input=None, timeout=30):
        return subprocess.run([sys.executable, "-m", "kwire.cli.main", verb,
                               f"--kubeconfig={self.kubeconfig}", *args],
                              capture_output=True, text=True, input=input, timeout=timeout,
                              cwd=ROOT)


@pytest.fixture(scope="module")
def cluster():
    tmp = Path(tempfile.mkdtemp(prefix="kwire-proxy-"))
    c = Cluster(tmp)
    try:
        c.call(c.start())
        c.write_log("web_nginx.log", ("stdout", "F", "GET / 200"), ("stderr", "F", "warn: x"),
                    ("stdout", "P", "par"), ("stdout", "F", "tial"))
        c.write_log("web_nginx.previous.log", ("stdout", "F", "from before the restart"))
        c.write_log("solo_app.log", ("stdout", "F", "solo says hi"))
        yield c
    finally:
        try:
            c.call(c.stop())
        finally:
            c.loop.call_soon_threadsafe(c.loop.stop)
            c.thread.join(10)
            shutil.rmtree(tmp, ignore_errors=True)


needs_kubectl = pytest.mark.skipif(not Path(KUBECTL).exists(), reason=f"no kubectl at {KUBECTL}")


# --- kubectl logs ----------------------------------------------------------------------


@needs_kubectl
def test_kubectl_logs(cluster):
    r = cluster.kubectl("logs", "web", "-c", "nginx")
    assert (r.returncode, r.stdout) == (0, "GET / 200\nwarn: x\npartial\n"), r.stderr
    r = cluster.kubectl("logs", "web", "-c", "nginx", "--tail=1", "--timestamps")
    assert r.stdout == "2026-01-02T03:04:05Z partial\n"
    r = cluster.kubectl("logs", "web", "-c", "nginx", "--limit-bytes=5")
    assert r.stdout == "GET /"
    r = cluster.kubectl("logs", "web", "-c", "nginx", "-p")
    assert r.stdout == "from before the restart\n"
    r = cluster.kubectl("logs", "solo")
    assert r.stdout == "solo says hi\n" and r.stderr == ""


@needs_kubectl
def test_kubectl_logs_errors(cluster):
    r = cluster.kubectl("logs", "solo", "-p")
    assert r.returncode == 1
    assert r.stderr.strip() == ('Error from server (BadRequest): previous terminated container '
                                '"app" in pod "solo" not found')
    r = cluster.kubectl("logs", "starting")
    assert r.stderr.strip() == ('Error from server (BadRequest): container "app" in pod '
                                '"starting" is waiting to start: ContainerCreating')
    r = cluster.kubectl("logs", "nope")
    assert r.stderr.strip() == ('error: error from server (NotFound): pods "nope" not found in '
                                'namespace "default"')
    r = cluster.kubectl("logs", "solo", "--tail=-5", "--since=1h", "--since-time=2026-01-01T00:00:00Z")
    assert r.returncode != 0


@needs_kubectl
def test_kubectl_logs_follow(cluster):
    cluster.write_log("web_side.log", ("stdout", "F", "line 1"))
    proc = subprocess.Popen([KUBECTL, f"--kubeconfig={cluster.kubeconfig}",
                             f"--cache-dir={cluster.tmp / 'cache'}", "logs", "-f", "web", "-c",
                             "side"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert _read_until(proc.stdout, b"line 1\n", 15).endswith(b"line 1\n")
        cluster.write_log("web_side.log", ("stdout", "F", "line 2"))
        assert _read_until(proc.stdout, b"line 2\n", 15).endswith(b"line 2\n")
        assert proc.poll() is None
        cluster.write_log("web_side.log", ("stderr", "F", "last words"))
        cluster.running["side"] = False  # the container ends: so does the stream
        assert proc.wait(15) == 0
        assert proc.stdout.read() == b"last words\n"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        cluster.running["side"] = True


# --- kubectl exec ------------------------------------------------------------------------


@needs_kubectl
def test_kubectl_exec(cluster):
    r = cluster.kubectl("exec", "web", "-c", "nginx", "--", "sh", "-c",
                        "echo out; echo err >&2; exit 3")
    assert r.returncode == 3
    assert r.stdout == "out\n"
    assert r.stderr == "err\ncommand terminated with exit code 3\n"
    r = cluster.kubectl("exec", "solo", "--", "echo", "hi")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")


@needs_kubectl
def test_kubectl_exec_stdin_half_close(cluster):
    r = cluster.kubectl("exec", "-i", "solo", "--", "sh", "-c", "wc -l; cat >/dev/null; echo eof",
                        input="a\nb\nc\n")
    assert (r.returncode, r.stdout.split()) == (0, ["3", "eof"]), r.stderr


@needs_kubectl
def test_kubectl_exec_errors(cluster):
    r = cluster.kubectl("exec", "web", "-c", "nope", "--", "true")
    assert r.stderr.strip() == "Error from server (BadRequest): container nope is not valid for pod web"
    r = cluster.kubectl("exec", "pending", "--", "true")
    assert r.stderr.strip() == ("Error from server (BadRequest): pod pending does not have a "
                                "host assigned")
    r = cluster.kubectl("exec", "starting", "--", "true")
    assert r.stderr.strip() == ('Error from server (BadRequest): container "app" in pod '
                                '"starting" is waiting to start: ContainerCreating')
    r = cluster.kubectl("exec", "faraway", "--", "true")
    assert r.returncode == 1 and "error dialing backend" in r.stderr


@needs_kubectl
def test_kubectl_exec_on_a_terminal(cluster):
    """kubectl exec -it under a real terminal 30x100: raw mode, the size sent first, the
    exit code of the shell."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen([KUBECTL, f"--kubeconfig={cluster.kubeconfig}",
                             f"--cache-dir={cluster.tmp / 'cache'}", "exec", "-it", "solo", "--",
                             "sh"], stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        os.write(master, b"stty size; echo A$((40+2))B\r")
        out = _read_fd_until(master, b"A42B", 15)
        assert b"30 100" in out
        os.write(master, b"exit 7\r")
        assert proc.wait(15) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


# --- the kwire CLI ---------------------------------------------------------------------


def test_kwire_exec_on_a_terminal_with_resize(cluster):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "kwire.cli.main", "exec",
                             f"--kubeconfig={cluster.kubeconfig}", "-it", "solo", "--", "sh"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            cwd=ROOT)
    os.close(slave)
    try:
        _read_fd_until(master, b"# ", 15)
        os.write(master, b"stty size; echo A$((40+2))B\r")
        out = _read_fd_until(master, b"A42B", 15)
        assert b"30 100\r\n" in out
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 132, 0, 0))
        proc.send_signal(signal.SIGWINCH)  # the terminal is not kwire's controlling one
        time.sleep(0.5)
        os.write(master, b"stty size; exit 3\r")
        out = _read_fd_until(master, b"exit code 3", 15)
        assert b"50 132\r\n" in out
        assert proc.wait(15) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)



def test_kwire_logs_and_exec(cluster):
    r = cluster.kwire("logs", "web", "--tail", "2")
    assert r.stdout == "warn: x\npartial\n"
    assert r.stderr == 'Defaulted container "nginx" out of: nginx, side\n'
    r = cluster.kwire("logs", "pod/web", "-c", "nginx", "--timestamps", "--since", "1h")
    assert (r.returncode, r.stdout) == (0, "")  # 2026-01-02 is more than an hour ago here
    r = cluster.kwire("exec", "solo", "--", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (r.returncode, r.stdout) == (4, "out\n")
    assert r.stderr == "err\ncommand terminated with exit code 4\n"
    r = cluster.kwire("exec", "-i", "solo", "--", "tr", "a-z", "A-Z", input="shout\n")
    assert (r.returncode, r.stdout) == (0, "SHOUT\n")
    r = cluster.kwire("exec", "pending", "--", "true")
    assert r.returncode == 1
    assert r.stderr.strip() == ("Error from server (BadRequest): pod pending does not have a "
                                "host assigned")
    r = cluster.kwire("logs", "solo", "-c", "nope")
    assert r.returncode == 1 and "container nope is not valid for pod solo" in r.stderr


# --- the Python client -------------------------------------------------------------------


def test_python_client(cluster):
    kubernetes = pytest.importorskip("kubernetes")
    from kubernetes.stream import stream
    api_client = kubernetes.config.new_client_from_config(str(cluster.kubeconfig))
    try:
        api = kubernetes.client.CoreV1Api(api_client)
        assert api.read_namespaced_pod_log("web", "default", container="nginx", tail_lines=1) == \
            "partial\n"
        out = stream(api.connect_get_namespaced_pod_exec, "solo", "default",
                     command=["sh", "-c", "echo py"], stderr=True, stdin=False, stdout=True,
                     tty=False)
        assert out == "py\n"
        resp = stream(api.connect_get_namespaced_pod_exec, "solo", "default",
                      command=["sh", "-c", "exit 9"], stderr=True, stdin=False, stdout=True,
                      tty=False, _preload_content=False)
        resp.run_forever(timeout=10)
        assert resp.returncode == 9
        resp.close()
    finally:
        api_client.close()
        with warnings.catch_warnings():  # the client leaves its exec sockets to the collector
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


# --- the API side with a plain HTTP client -------------------------------------------------


def api_session(cluster):
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False),
                                 headers={"Authorization": f"Bearer {cluster.admin_token}"})


def test_server_side_container_defaults_and_errors(cluster):
    async def main():
        async with api_session(cluster) as http:
            base = cluster.url + "/api/v1/namespaces/default/pods"
            results = {}
            for name, query in (("web", ""), ("solo", ""), ("annotated", ""),
                                ("pending", ""), ("web", "?tailLines=-1&limitBytes=0"),
                                ("web", "?sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z"),
                                ("web", "?container=nope"), ("faraway", "")):
                async with http.get(f"{base}/{name}/log{query}") as r:
                    results[name + query] = (r.status, r.content_type, await r.read())
            return results

    r = cluster.call(main())
    status, _, body = r["web"]
    assert status == 400 and json.loads(body)["message"] == (
        "a container name must be specified for pod web, choose one of: [nginx side]")
    assert r["solo"] == (200, "text/plain", b"solo says hi\n")
    # "annotated" defaults to its annotated container "b": the kubelet has no such log
    assert r["annotated"][0] == 404
    assert r["pending"] == (200, "text/plain", b"")  # not scheduled: nothing written yet
    invalid = json.loads(r["web?tailLines=-1&limitBytes=0"][2])
    assert (invalid["code"], invalid["reason"]) == (422, "Invalid")
    assert invalid["message"] == ('PodLogOptions "web" is invalid: [tailLines: Invalid value: -1: '
                                  'must be greater than or equal to 0, limitBytes: Invalid value: '
                                  '0: must be greater than 0]')
    both = json.loads(r["web?sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z"][2])
    assert both["code"] == 422 and "at most one of `sinceTime` or `sinceSeconds`" in both["message"]
    assert json.loads(r["web?container=nope"][2])["message"] == "container nope is not valid for pod web"
    down = json.loads(r["faraway"][2])
    assert down["code"] == 500 and "containerLogs/default/faraway/app" in down["message"]


def test_spdy_fallback_gets_a_status(cluster):
    async def main():
        async with api_session(cluster) as http:
            url = cluster.url + "/api/v1/namespaces/default/pods/solo/exec"
            async with http.post(url, params=[("command", "true"), ("stdout", "true")],
                                 headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1",
                                          "X-Stream-Protocol-Version": "v4.channel.k8s.io"}) as r:
                return r.status, await r.json()

    code, status = cluster.call(main())
    assert code == 400 and status["kind"] == "Status" and status["reason"] == "BadRequest"
    assert "SPDY is not supported" in status["message"]


def test_relay_of_text_frames_pings_and_close(cluster):
    async def main():
        async with api_session(cluster) as http:
            url = cluster.url + "/api/v1/namespaces/default/pods/solo/exec"
            params = [("command", "cat"), ("stdin", "true"), ("stdout", "true")]
            async with http.ws_connect(url, params=params, protocols=["v4.channel.k8s.io"],
                                       autoping=False) as ws:
                assert ws.protocol == "v4.channel.k8s.io"
                await ws.ping(b"are you there")
                pong = await ws.receive(5)
                await ws.send_str("\x00as text\n")
                echoed = await ws.receive(5)
            # the client closed first: the command (cat) is killed, nothing is left
            return pong, echoed

    pong, echoed = cluster.call(main())
    assert (pong.type, pong.data) == (aiohttp.WSMsgType.PONG, b"are you there")
    assert echoed.data == b"\x01as text\n"
    deadline = time.monotonic() + 5
    while _cats() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _cats()


def _cats() -> list[int]:
    """`cat` processes started by this test process's kubelet."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if stat[stat.index("(") + 1:stat.rindex(")")] == "cat" and \
                        stat[stat.rindex(")") + 2] != "Z" and \
                        int(stat[stat.rindex(")") + 2:].split()[1]) == os.getpid():
                    out.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                pass
    return out


def _read_until(stream, needle: bytes, timeout: float) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    while needle not in buf and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    return buf


def _read_fd_until(fd: int, needle: bytes, timeout: float) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf

