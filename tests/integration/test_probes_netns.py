"""Probes for real, the way the agent runs them: from inside a network namespace,
against a pod-like address in it. The test makes its own namespace with that
address on its loopback interface, serves files there with ``python -m http.server``,
and probes it from a second process in the same namespace; no packet leaves the
namespace. The namespace and every process in it go in a finally, pass or fail."""
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="missing ip: apt-get install iproute2"),
]

ADDRESS = "10.244.254.10"
PORT = 8080

# Runs inside the namespace; prints one JSON object.
PROBER = """
import asyncio, json, sys, time
from kwire.node.probes import Prober, run_probe

ADDRESS, PORT = sys.argv[1], int(sys.argv[2])
CONTAINER = {"name": "web", "ports": [{"name": "http", "containerPort": PORT}]}

async def no_exec(argv, timeout):
    raise RuntimeError("no exec here")

async def probe(spec):
    return list(await run_probe(spec, pod_ip=ADDRESS, container=CONTAINER, exec_fn=no_exec))

async def main():
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (await probe({"tcpSocket": {"port": PORT}}))[0] != "success":  # the server is starting
        assert loop.time() < deadline, "server never listened"
        await asyncio.sleep(0.05)
    out = {"healthz": await probe({"httpGet": {"port": "http", "path": "/healthz"}}),
           "missing": await probe({"httpGet": {"port": PORT, "path": "/missing"}}),
           "closed": await probe({"tcpSocket": {"port": PORT + 1}})}
    changes, events = [], []
    prober = Prober(lambda uid, name, kind, result: changes.append([kind.value, result.value]),
                    lambda cid: no_exec, on_event=lambda uid, name, reason, msg: events.append(msg),
                    time_scale=0.01)
    container = {**CONTAINER,
                 "readinessProbe": {"httpGet": {"port": "http", "path": "/healthz"}, "periodSeconds": 1},
                 "livenessProbe": {"httpGet": {"port": PORT, "path": "/missing"}, "periodSeconds": 1,
                                   "failureThreshold": 2}}
    pod = {"metadata": {"uid": "u1"}, "spec": {"containers": [container]}}
    prober.update_pod(pod, {"web": ("c1", time.time())}, ADDRESS)
    while not (prober.ready("u1", "web") and ["liveness", "failure"] in changes):
        assert loop.time() < deadline, (changes, events)
        await asyncio.sleep(0.01)
    await prober.close()
    out["changes"], out["events"] = changes, events
    print(json.dumps(out))

asyncio.run(main())
"""


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)


def netns_list() -> set[str]:
    return {line.split()[0] for line in run("ip", "netns", "list").stdout.splitlines() if line}


@pytest.fixture
def netns():
    """A namespace with lo up and holding ADDRESS (a dummy link needs a kernel
    module these machines may lack; lo does the same job here)."""
    name = f"kwire-probe-{uuid.uuid4().hex[:8]}"
    created = run("ip", "netns", "add", name)
    assert created.returncode == 0, created.stderr
    try:
        for step in (["link", "set", "lo", "up"], ["addr", "add", f"{ADDRESS}/32", "dev", "lo"]):
            done = run("ip", "-n", name, *step)
            assert done.returncode == 0, done.stderr
        yield name
    finally:
        # anything still running in the namespace was started by this test
        for pid in run("ip", "netns", "pids", name).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        run("ip", "netns", "del", name)
    assert name not in netns_list()


def test_probes_reach_a_server_by_its_namespace_address(netns, tmp_path: Path):
    (tmp_path / "healthz").write_text("ok")
    server = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "http.server",
                               "--bind", ADDRESS, "--directory", str(tmp_path), str(PORT)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        prober = run("ip", "netns", "exec", netns, sys.executable, "-c", PROBER, ADDRESS, str(PORT))
    finally:
        server.kill()
        server.wait(timeout=5)
    assert prober.returncode == 0, prober.stderr
    out = json.loads(prober.stdout)
    assert out["healthz"] == ["success", "ok"]
    assert out["missing"] == ["failure", "HTTP probe failed with statuscode: 404"]
    assert out["closed"] == ["failure", f"dial tcp {ADDRESS}:{PORT + 1}: connect: connection refused"]
    assert ["readiness", "success"] in out["changes"] and ["liveness", "failure"] in out["changes"]
    assert "Liveness probe failed: HTTP probe failed with statuscode: 404" in out["events"]
