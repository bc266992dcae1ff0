"""kubectl port-forward and the Python client's portforward against a real cluster:
to a pod (WebSocket-tunnelled SPDY, and kubectl's plain SPDY fallback), to a
Service (kubectl picks the pod), many connections at once, megabytes both
ways with half-close, a server bound to the pod's 127.0.0.1, and a port with
nothing listening. Traffic goes only to loopback on this host."""
from __future__ import annotations

import hashlib
import os
import re
import select
import socket
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from conftest import KUBECTL, kwire_bin, running_cluster

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, runc")

BIG_MB = 4

WEB = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "initContainers": [{
            "name": "make-big-file", "image": "busybox",
            "command": ["sh", "-c", (f"head -c {BIG_MB}m /dev/urandom > /files/big && "
                                     "cd /files && sha256sum big > big.sha256")],
            "volumeMounts": [{"name": "files", "mountPath": "/files"}]}],
        "containers": [{
            "name": "nginx", "image": "nginx:alpine", "ports": [{"containerPort": 80}],
            "volumeMounts": [{"name": "files", "mountPath": "/usr/share/nginx/html/files"}]}],
        "volumes": [{"name": "files", "emptyDir": {}}]}}

ECHO = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "echo"},
    "spec": {"containers": [{
        "name": "echo", "image": "busybox",
        # an echo server per connection on 9000, and a web server on the pod's loopback only
        "command": ["sh", "-c", ("mkdir -p /tmp/www && echo local-only > /tmp/www/index.html && "
                                 "httpd -p 127.0.0.1:8081 -h /tmp/www && "
                                 "exec nc -ll -p 9000 -e cat")]}]}}

SERVICE = {
    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
    "spec": {"selector": {"app": "web"},
             "ports": [{"name": "http", "port": 8000, "targetPort": 80}]}}


@pytest.fixture(scope="module")
def kw(tmp_path_factory):
    with running_cluster("pf", tmp_path_factory.mktemp("pf"), nodes=1) as c:
        for manifest in (WEB, ECHO, SERVICE):
            c.apply(manifest)
        c.kubectl("wait", "--for=condition=Ready", "pod/web", "pod/echo", "--timeout=90s",
                  timeout=100)
        yield c


@contextmanager
def forward(kw, *args: str, env: dict | None = None, kwire: bool = False):
    """`kubectl port-forward ARGS` (or kwire's) in the background: yields (process,
    the local port of the first forward); the process is ended however the block ends."""
    command = [kwire_bin()] if kwire else [KUBECTL, f"--cache-dir={kw.cache}"]
    proc = subprocess.Popen([*command, "port-forward", "--address", "127.0.0.1", *args],
                            env={**kw.env, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line)
        if not m:
            proc.kill()
            raise AssertionError(f"kubectl port-forward did not start: {line!r} "
                                 f"{proc.communicate(timeout=10)}")
        yield proc, int(m.group(1))
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def fetch(port: int, path: str = "/") -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as r:
        return r.read()


def echo(port: int, payload: bytes) -> bytes:
    """Send payload, half-close, and read all that comes back, both at once."""
    got = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        def read():
            while chunk := s.recv(65536):
                got.extend(chunk)
        reader = threading.Thread(target=read)
        reader.start()
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        reader.join(60)
    return bytes(got)


def check_big_file(port: int) -> None:
    big = fetch(port, "/files/big")
    assert len(big) == BIG_MB * 1024 * 1024
    assert fetch(port, "/files/big.sha256").split()[0].decode() == hashlib.sha256(big).hexdigest()


@pytest.mark.parametrize("websockets", ["true", "false"], ids=["websocket", "spdy"])
def test_pod_forward_serves_nginx(kw, websockets):
    with forward(kw, "pod/web", ":80", env={"KUBECTL_PORT_FORWARD_WEBSOCKETS": websockets}) \
            as (_, port):
        assert b"Welcome to nginx!" in fetch(port)
        with ThreadPoolExecutor(10) as pool:
            pages = list(pool.map(lambda _: fetch(port), range(30)))
        assert all(b"Welcome to nginx!" in p for p in pages)
        check_big_file(port)


def test_megabytes_both_ways_with_half_close_and_a_loopback_server(kw):
    with forward(kw, "pod/echo", ":9000", ":8081") as (proc, port):
        payloads = [os.urandom(6 * 1024 * 1024) for _ in range(3)]
        with ThreadPoolExecutor(3) as pool:
            assert list(pool.map(lambda p: echo(port, p), payloads)) == payloads
        # the second forward: httpd listens on the pod's 127.0.0.1 only
        out = proc.stdout.readline()
        local = int(re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> 8081", out).group(1))
        assert fetch(local) == b"local-only\n"


def test_port_with_nothing_listening(kw):
    """The kubelet's error reaches kubectl, which (as 1.32 does against any
    cluster) prints it and gives up the forward; the next forward works."""
    with forward(kw, "pod/web", ":81") as (proc, port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                assert s.recv(100) == b""
        except ConnectionResetError:
            pass
        proc.wait(timeout=20)
        err = proc.stderr.read()
    assert re.search(r"error forwarding port 81 to pod \w+, uid : failed to connect to "
                     r"localhost:81 inside namespace .*connection refused", err), err
    assert "lost connection to pod" in err
    with forward(kw, "pod/web", ":80") as (_, port):
        assert b"Welcome to nginx!" in fetch(port)


def test_service_forward(kw):
    """kubectl resolves the Service to a pod and its port 8000 to targetPort 80."""
    with forward(kw, "svc/web", ":8000") as (_, port):
        assert b"Welcome to nginx!" in fetch(port)


def test_python_client_portforward(kw):
    from kubernetes import client
    from kubernetes.stream import portforward

    api = client.CoreV1Api(kw.client())
    pf = portforward(api.connect_get_namespaced_pod_portforward, "web", "default",
                     ports="80,81")
    try:
        s = pf.socket(80)
        s.setblocking(True)
        s.sendall(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        page = b""
        deadline = time.monotonic() + 20
        while b"</html>" not in page and time.monotonic() < deadline:
            page += s.recv(65536)
        assert b"Welcome to nginx!" in page
        closed = pf.socket(81)
        closed.setblocking(True)
        assert closed.recv(10) == b""  # the error closes the port's socket
        deadline = time.monotonic() + 10
        while pf.error(81) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "error forwarding port 81 to pod" in (pf.error(81) or "")
        assert pf.error(80) is None
    finally:
        pf.close()

    pf = portforward(api.connect_get_namespaced_pod_portforward, "echo", "default",
                     ports="9000")
    try:
        payload = os.urandom(2 * 1024 * 1024)
        s = pf.socket(9000)
        s.setblocking(True)
        got = bytearray()

        def read():
            while len(got) < len(payload) and (chunk := s.recv(65536)):
                got.extend(chunk)
        reader = threading.Thread(target=read)
        reader.start()
        s.sendall(payload)
        reader.join(60)
        assert bytes(got) == payload
    finally:
        pf.close()


def test_kwire_port_forward(kw):
    """kwire's own verb (v4 channels, one WebSocket per connection)."""
    with forward(kw, "svc/web", ":http", kwire=True) as (_, port):
        assert b"Welcome to nginx!" in fetch(port)
        with ThreadPoolExecutor(5) as pool:
            assert all(b"Welcome to nginx!" in p for p in pool.map(lambda _: fetch(port), range(10)))
    with forward(kw, "pod/echo", ":9000", kwire=True) as (_, port):
        payload = os.urandom(2 * 1024 * 1024)
        assert echo(port, payload) == payload
