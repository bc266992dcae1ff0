"""Pods for real on a 2-node cluster, driven the way a user drives them: the seed
example with the real kubectl (apply, get, logs, exec, exec -it through a
pseudo-terminal), the shared-emptyDir variant from examples/, restart policies
and CrashLoopBackOff, init containers, probes, volumes, graceful deletion, and
an agent killed with SIGKILL while its pod runs."""
from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
import uuid

import pytest
from conftest import KUBECTL, ROOT, running_cluster, wait_for

SEED = ROOT.parent / "shared" / "seed" / "multi-container-pod.yaml"
SHARED = ROOT / "examples" / "multi-container-pod-shared.yaml"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, runc")


@pytest.fixture(scope="module")
def kw(tmp_path_factory):
    with running_cluster("pods", tmp_path_factory.mktemp("pods"), nodes=2) as c:
        yield c


@pytest.fixture
def ns(kw):
    name = f"p-{uuid.uuid4().hex[:6]}"
    kw.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kw.kubectl("delete", "namespace", name, "--wait=false", check=False)



def pod_json(kw, ns: str, name: str) -> dict:
    return json.loads(kw.kubectl("get", "pod", name, "-n", ns, "-o", "json").stdout)


def statuses(pod: dict) -> dict[str, dict]:
    st = pod.get("status") or {}
    return {s["name"]: s for s in (st.get("initContainerStatuses") or []) +
            (st.get("containerStatuses") or [])}


def pod(name: str, containers: list[dict], **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": containers, **spec}}


def busybox(name: str, script: str, **extra) -> dict:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **extra}


def test_seed_pod_runs_as_in_kubernetes(kw, ns):
    kw.kubectl("apply", "-n", ns, "-f", str(SEED))
    wait_for(lambda: re.search(r"multi-container-pod\s+2/2\s+Running\s+0",
                               kw.kubectl("get", "pods", "-n", ns).stdout), 20, "2/2 Running")
    p = pod_json(kw, ns, "multi-container-pod")
    node = json.loads(kw.kubectl("get", "node", p["spec"]["nodeName"], "-o", "json").stdout)
    assert ipaddress.ip_address(p["status"]["podIP"]) in ipaddress.ip_network(node["spec"]["podCIDR"])
    assert p["status"]["hostIP"].startswith("172.")
    assert {c["type"]: c["status"] for c in p["status"]["conditions"]} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True",
        "ContainersReady": "True", "PodScheduled": "True"}
    c1 = statuses(p)["container-1"]
    assert c1["image"] == "docker.io/library/nginx:alpine"
    assert c1["imageID"].startswith("docker.io/library/nginx@sha256:")
    assert c1["ready"] and c1["started"] and "running" in c1["state"]

    # the default page: container-2 writes into its own filesystem, not nginx's
    page = kw.kubectl("exec", "multi-container-pod", "-n", ns, "-c", "container-2", "--",
                      "wget", "-qO-", "http://localhost").stdout
    assert "Welcome to nginx!" in page
    assert "Hello from Container 2" not in page
    own = kw.kubectl("exec", "multi-container-pod", "-n", ns, "-c", "container-2", "--",
                     "cat", "/usr/share/nginx/html/index.html").stdout
    assert "Hello from Container 2" in own

    logs = kw.kubectl("logs", "multi-container-pod", "-n", ns, "-c", "container-1").stdout
    assert "Configuration complete; ready for start up" in logs
    assert re.search(r'127\.0\.0\.1 - - \[.*\] "GET / HTTP/1\.1" 200 \d+ "-" "Wget"', logs)
    tail = kw.kubectl("logs", "multi-container-pod", "-n", ns, "-c", "container-1",
                      "--tail=1", "--timestamps").stdout
    assert len(tail.splitlines()) == 1
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z .*GET / HTTP/1\.1", tail)
    assert kw.kubectl("logs", "multi-container-pod", "-n", ns, "-c", "container-2").stdout == ""

    # the command's exit code is kubectl's exit code
    r = kw.kubectl("exec", "multi-container-pod", "-n", ns, "-c", "container-2", "--",
                   "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert r.returncode == 3
    assert r.stdout == "out\n" and "err" in r.stderr
    assert "command terminated with exit code 3" in r.stderr


def test_seed_pod_interactive_shell_through_a_terminal(kw, ns):
    kw.kubectl("apply", "-n", ns, "-f", str(SEED))
    wait_for(lambda: re.search(r"2/2\s+Running", kw.kubectl("get", "pods", "-n", ns).stdout), 20,
             "running containers")
    pid, fd = pty.fork()
    if pid == 0:
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        os.environ.update(kw.env)
        os.execv(KUBECTL, [KUBECTL, f"--cache-dir={kw.cache}", "exec", "-it", "-n", ns,
                           "multi-container-pod", "-c", "container-2", "--", "/bin/sh"])
    out = b""
    try:
        def read_until(pattern: bytes, timeout: float = 20) -> bytes:
            nonlocal out
            deadline = time.monotonic() + timeout
            while pattern not in out and time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 0.2)
                if ready:
                    try:
                        out += os.read(fd, 65536)
                    except OSError:
                        break
            assert pattern in out, out.decode(errors="replace")
            return out

        read_until(b"# ")
        os.write(fd, b"wget -qO- http://localhost | grep -o 'Welcome to nginx!'\r")
        read_until(b"\nWelcome to nginx!")
        os.write(fd, b"stty size\r")
        read_until(b"30 100")
        os.write(fd, b"exit 5\r")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.WEXITSTATUS(status) == 5
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)


def test_shared_empty_dir_example_serves_container_2_lines(kw, ns):
    kw.kubectl("apply", "-n", ns, "-f", str(SHARED))
    wait_for(lambda: "Hello from Container 2" in kw.kubectl(
        "exec", "multi-container-pod-shared", "-n", ns, "-c", "container-2", "--",
        "wget", "-qO-", "http://localhost", check=False).stdout, 30, "the shared page")


def test_crash_loop_back_off_grows(kw, ns):
    kw.apply(pod("crash", [busybox("c", "echo crashing; exit 1")]), "-n", ns)
    p = wait_for(lambda: (lambda p: p if (statuses(p).get("c", {}).get("state", {}).get("waiting", {})
                                          .get("reason") == "CrashLoopBackOff") else None)(
        pod_json(kw, ns, "crash")), 30, "CrashLoopBackOff")
    c = statuses(p)["c"]
    assert c["restartCount"] >= 1
    assert c["lastState"]["terminated"]["exitCode"] == 1
    assert c["lastState"]["terminated"]["reason"] == "Error"
    assert "back-off 10s restarting failed container=c pod=crash_" in c["state"]["waiting"]["message"]
    assert p["status"]["phase"] == "Running"
    assert re.search(r"crash\s+0/1\s+CrashLoopBackOff", kw.kubectl("get", "pod", "crash", "-n", ns).stdout)
    # the next restart comes after the 10 s back-off, the one after that waits 20 s
    wait_for(lambda: "back-off 20s" in (statuses(pod_json(kw, ns, "crash"))["c"]["state"]
                                         .get("waiting", {}).get("message", "")), 40, "back-off 20s")
    assert kw.kubectl("logs", "crash", "-n", ns, "--previous").stdout == "crashing\n"
    events = kw.kubectl("get", "events", "-n", ns, "--field-selector",
                        "involvedObject.name=crash").stdout
    assert "BackOff" in events or "Started" in events


def test_restart_policies_and_init_containers(kw, ns):
    kw.apply(pod("done", [busybox("a", "echo ok")], restartPolicy="Never"), "-n", ns)
    kw.apply(pod("failed", [busybox("a", "exit 7")], restartPolicy="Never"), "-n", ns)
    work = [{"name": "w", "mountPath": "/work"}]
    kw.apply(pod("init", [busybox("main", "cat /work/msg; sleep 3600", volumeMounts=work)],
                 initContainers=[busybox("first", "echo from-init > /work/msg", volumeMounts=work)],
                 volumes=[{"name": "w", "emptyDir": {}}]), "-n", ns)
    wait_for(lambda: pod_json(kw, ns, "done")["status"].get("phase") == "Succeeded", 30, "Succeeded")
    done = statuses(pod_json(kw, ns, "done"))["a"]["state"]["terminated"]
    assert done["exitCode"] == 0 and done["reason"] == "Completed"
    wait_for(lambda: pod_json(kw, ns, "failed")["status"].get("phase") == "Failed", 30, "Failed")
    failed = statuses(pod_json(kw, ns, "failed"))["a"]
    assert failed["state"]["terminated"]["exitCode"] == 7 and failed["restartCount"] == 0
    wait_for(lambda: pod_json(kw, ns, "init")["status"].get("phase") == "Running", 30, "init pod running")
    p = pod_json(kw, ns, "init")
    assert statuses(p)["first"]["state"]["terminated"]["reason"] == "Completed"
    wait_for(lambda: kw.kubectl("logs", "init", "-n", ns, "-c", "main").stdout == "from-init\n", 10,
             "the init container's file")


def test_failing_readiness_keeps_pod_unready_and_liveness_restarts(kw, ns):
    kw.apply(pod("unready", [busybox("c", "sleep 3600", readinessProbe={
        "exec": {"command": ["false"]}, "periodSeconds": 1})]), "-n", ns)
    kw.apply(pod("unhealthy", [busybox("c", "sleep 3600", livenessProbe={
        "exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1})]), "-n", ns)
    kw.apply(pod("web", [{"name": "nginx", "image": "nginx:alpine", "readinessProbe": {
        "httpGet": {"path": "/", "port": 80}, "periodSeconds": 1}}]), "-n", ns)
    wait_for(lambda: {c["type"]: c["status"] for c in pod_json(kw, ns, "web")["status"].get(
        "conditions") or []}.get("Ready") == "True", 30, "web Ready through its httpGet probe")
    wait_for(lambda: "running" in statuses(pod_json(kw, ns, "unready")).get("c", {}).get("state", {}),
             30, "unready running")
    time.sleep(3)
    p = pod_json(kw, ns, "unready")
    cond = {c["type"]: c for c in p["status"]["conditions"]}
    assert cond["Ready"]["status"] == "False" and cond["Ready"]["reason"] == "ContainersNotReady"
    assert statuses(p)["c"]["ready"] is False
    assert re.search(r"unready\s+0/1\s+Running", kw.kubectl("get", "pod", "unready", "-n", ns).stdout)
    assert "Readiness probe failed" in kw.kubectl("describe", "pod", "unready", "-n", ns).stdout
    wait_for(lambda: statuses(pod_json(kw, ns, "unhealthy")).get("c", {}).get("restartCount", 0) >= 1,
             30, "a liveness restart")
    assert "failed liveness probe, will be restarted" in kw.kubectl(
        "describe", "pod", "unhealthy", "-n", ns).stdout


def test_config_map_secret_volumes_and_env(kw, ns):
    kw.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=greeting=hello")
    kw.kubectl("create", "secret", "generic", "sec", "-n", ns, "--from-literal=password=s3cret")
    kw.apply(pod("vols", [busybox(
        "c", "cat /cfg/greeting; echo; cat /sec/password; echo; echo $GREETING $POD_NAME $POD_IP; "
             "sleep 3600",
        env=[{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
             {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
             {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}, {"name": "sec", "mountPath": "/sec"}])],
        volumes=[{"name": "cfg", "configMap": {"name": "cfg"}},
                 {"name": "sec", "secret": {"secretName": "sec"}}]), "-n", ns)
    wait_for(lambda: pod_json(kw, ns, "vols")["status"].get("phase") == "Running", 30, "running")
    ip = pod_json(kw, ns, "vols")["status"]["podIP"]
    logs = wait_for(lambda: kw.kubectl("logs", "vols", "-n", ns).stdout.count("\n") >= 3 and
                    kw.kubectl("logs", "vols", "-n", ns).stdout, 10, "output")
    assert logs.splitlines()[:3] == ["hello", "s3cret", f"hello vols {ip}"]
    resolv = kw.kubectl("exec", "vols", "-n", ns, "--", "cat", "/etc/resolv.conf").stdout
    assert resolv == (f"search {ns}.svc.cluster.local svc.cluster.local cluster.local\n"
                      f"nameserver {kw.config['cluster_dns']}\noptions ndots:5\n")
    hosts = kw.kubectl("exec", "vols", "-n", ns, "--", "cat", "/etc/hosts").stdout
    assert f"{ip}\tvols" in hosts
    assert kw.kubectl("exec", "vols", "-n", ns, "--", "hostname").stdout == "vols\n"


def test_missing_image_gives_err_image_pull_then_back_off(kw, ns):
    kw.apply(pod("noimg", [{"name": "c", "image": "127.0.0.1:1/nope:1"}]), "-n", ns)
    reasons = set()

    def seen() -> bool:
        w = statuses(pod_json(kw, ns, "noimg")).get("c", {}).get("state", {}).get("waiting", {})
        reasons.add(w.get("reason"))
        return {"ErrImagePull", "ImagePullBackOff"} <= reasons

    wait_for(seen, 40, "ErrImagePull then ImagePullBackOff", interval=0.1)
    assert "Failed to pull image" in kw.kubectl("describe", "pod", "noimg", "-n", ns).stdout


def test_graceful_deletion_waits_for_the_grace_period(kw, ns):
    kw.apply(pod("polite", [busybox("c", "trap 'exit 0' TERM; while true; do sleep 0.2; done")]), "-n", ns)
    kw.apply(pod("stubborn", [busybox("c", "trap '' TERM; while true; do sleep 0.2; done")],
                 terminationGracePeriodSeconds=4), "-n", ns)
    for name in ("polite", "stubborn"):
        wait_for(lambda: pod_json(kw, ns, name)["status"].get("phase") == "Running", 30, name)
    t0 = time.monotonic()
    kw.kubectl("delete", "pod", "polite", "-n", ns, timeout=60)
    polite = time.monotonic() - t0
    t0 = time.monotonic()
    kw.kubectl("delete", "pod", "stubborn", "-n", ns, timeout=60)
    stubborn = time.monotonic() - t0
    assert polite < 3.5, polite
    assert 3.5 <= stubborn < 15, stubborn


def test_agent_sigkill_keeps_pod_running_and_readopts(kw, ns):
    kw.kubectl("apply", "-n", ns, "-f", str(SEED))
    wait_for(lambda: re.search(r"2/2\s+Running", kw.kubectl("get", "pods", "-n", ns).stdout), 20,
             "running")
    before = pod_json(kw, ns, "multi-container-pod")
    node = before["spec"]["nodeName"]
    pidfile = kw.state_dir / "nodes" / node / "agent.pid"
    os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
    kw.kwire("up", "--name", kw.name, "--nodes", "2")
    wait_for(lambda: "Ready" in kw.kubectl("get", "node", node).stdout, 20, "node Ready again")
    time.sleep(2)
    after = pod_json(kw, ns, "multi-container-pod")
    for name, s in statuses(before).items():
        now = statuses(after)[name]
        assert now["containerID"] == s["containerID"], name
        assert now["restartCount"] == 0 and "running" in now["state"]
        assert now["state"]["running"]["startedAt"] == s["state"]["running"]["startedAt"]
    assert "Welcome to nginx!" in kw.kubectl("exec", "multi-container-pod", "-n", ns, "-c",
                                             "container-2", "--", "wget", "-qO-", "http://localhost").stdout
    assert "Configuration complete" in kw.kubectl("logs", "multi-container-pod", "-n", ns,
                                                  "-c", "container-1").stdout


def test_python_client_logs_and_exec(kw, ns):
    from kubernetes import client
    from kubernetes.stream import stream

    kw.apply(pod("py", [busybox("c", "echo one; echo two; sleep 3600")]), "-n", ns)
    wait_for(lambda: pod_json(kw, ns, "py")["status"].get("phase") == "Running", 30, "running")
    api = client.CoreV1Api(kw.client())
    wait_for(lambda: api.read_namespaced_pod_log("py", ns) == "one\ntwo\n", 10, "logs")
    assert api.read_namespaced_pod_log("py", ns, tail_lines=1) == "two\n"
    out = stream(api.connect_get_namespaced_pod_exec, "py", ns, command=["sh", "-c", "echo hi"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out == "hi\n"
    resp = stream(api.connect_get_namespaced_pod_exec, "py", ns, command=["sh", "-c", "exit 4"],
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    resp.run_forever(timeout=10)
    assert resp.returncode == 4


def test_logs_follow_since_and_cli_verbs(kw, ns):
    kw.apply(pod("ticker", [busybox("c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.3; done")]),
             "-n", ns)
    wait_for(lambda: pod_json(kw, ns, "ticker")["status"].get("phase") == "Running", 30, "running")
    proc = subprocess.Popen(
        [KUBECTL, f"--cache-dir={kw.cache}", "logs", "-f", "ticker", "-n", ns, "--tail=1"],
        env=kw.env, stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
    finally:
        proc.kill()
        proc.wait()
    numbers = [int(line.split()[1]) for line in lines]
    assert numbers == list(range(numbers[0], numbers[0] + 4)), lines
    time.sleep(2.5)
    recent = kw.kubectl("logs", "ticker", "-n", ns, "--since=1s").stdout.splitlines()
    everything = kw.kubectl("logs", "ticker", "-n", ns).stdout.splitlines()
    assert 1 <= len(recent) <= 6 < len(everything)
    # the same through the kwire CLI
    mine = kw.kwire("logs", "ticker", "-n", ns, "--tail", "2").stdout.splitlines()
    assert len(mine) == 2 and all(line.startswith("tick ") for line in mine)
    r = kw.kwire("exec", "ticker", "-n", ns, "--", "sh", "-c", "echo via-kwire; exit 2", check=False)
    assert r.stdout == "via-kwire\n" and r.returncode == 2


def test_missing_executable_is_a_start_error(kw, ns):
    kw.apply(pod("nope", [{"name": "c", "image": "busybox", "command": ["/nope"]}],
                 restartPolicy="Never"), "-n", ns)
    p = wait_for(lambda: (lambda p: p if p["status"].get("phase") == "Failed" else None)(
        pod_json(kw, ns, "nope")), 30, "Failed")
    term = statuses(p)["c"]["state"]["terminated"]
    assert term["exitCode"] == 128 and term["reason"] == "StartError"
    assert "/nope" in term["message"]
    assert re.search(r"nope\s+0/1\s+StartError", kw.kubectl("get", "pod", "nope", "-n", ns).stdout)
