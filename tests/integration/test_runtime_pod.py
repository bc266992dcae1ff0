"""A pod for real: a sandbox (netns, UTS, IPC), the built-in nginx:alpine and busybox
images on overlay roots, runc under conmon in a private runc root. busybox reaches
nginx on localhost through the shared network namespace; logs come out in the CRI
format; stopping and removing everything leaves no container, mount, namespace or
process behind. Every test cleans up in a finally, pass or fail."""
import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from kwire.node.images import BUSYBOX_REF, NGINX_REF, ImageStore, MissingPackages, build_builtin_images
from kwire.node.runtime import host, rootfs, sandbox
from kwire.node.runtime.runc import ContainerRuntimeError, Runc
from kwire.node.runtime.spec import build_spec, pod_hostname

MISSING = [tool for tool in ("runc", "conmon", "ip", "unshare") if shutil.which(tool) is None]
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, mounts, runc"),
    pytest.mark.skipif(bool(MISSING), reason=f"missing {', '.join(MISSING)}: "
                                            "apt-get install runc conmon iproute2 util-linux"),
]

CRI_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+[+-]\d\d:\d\d (stdout|stderr) [FP] .*$")


@pytest.fixture(scope="module")
def store():
    work = Path(tempfile.mkdtemp(prefix="kwire-rt-images-"))
    try:
        s = ImageStore(work / "store")
        try:
            build_builtin_images(s)
        except MissingPackages as e:
            pytest.skip(str(e))
        yield s
    finally:
        shutil.rmtree(work)


class Pod:
    """One test pod and everything it made, torn down by cleanup() whatever happened."""

    def __init__(self, store: ImageStore, work: Path, name: str):
        self.store, self.work, self.name = store, work, name
        self.uid = sandbox.new_id()
        self.rt = Runc(work / "runc", work / "state")
        self.sandbox = sandbox.create(name, root=work / "sandboxes", pod_uid=self.uid,
                                      pod_name=name, pod_namespace="default")
        self.pod = {"metadata": {"name": name, "namespace": "default", "uid": self.uid},
                    "spec": {}}
        self.ids: list[str] = []
        self.pids: list[int] = []

    def run(self, container: dict, image: str) -> str:
        cid = f"{self.uid}-{container['name']}"
        cdir = self.work / "containers" / cid
        self.ids.append(cid)
        root = rootfs.mount_rootfs(self.store.layer_dirs(image), cdir)
        spec = build_spec(self.pod, container, self.store.resolve(image).run_config,
                          rootfs=str(root), sandbox=self.sandbox.paths(),
                          user_files=rootfs.user_files(root), nofile=host.nofile_limit(),
                          all_capabilities=host.capabilities())
        pid = self.rt.create(cid, cdir / "bundle", spec, self.log(container["name"]))
        self.pids.append(pid)
        conmon = self.rt.conmon_pid(cid)
        assert conmon
        self.pids.append(conmon)
        self.rt.start(cid)
        return cid

    def log(self, name: str) -> Path:
        return self.work / "logs" / f"{name}.log"

    def cleanup(self) -> None:
        errors = []
        for cid in self.ids:
            try:
                self.rt.stop(cid, 2)
                self.rt.delete(cid, force=True)
            except Exception as e:  # noqa: BLE001 - keep cleaning, report at the end
                errors.append(e)
            try:
                rootfs.remove_rootfs(self.work / "containers" / cid)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        try:
            sandbox.teardown(self.sandbox)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        if errors:
            raise errors[0]


@pytest.fixture
def pod(store):
    work = Path(tempfile.mkdtemp(prefix="kwire-rt-"))
    p = None
    try:
        p = Pod(store, work, "multi-container-pod")
        yield p
    finally:
        try:
            if p is not None:
                p.cleanup()
        finally:
            shutil.rmtree(work, ignore_errors=True)


def assert_nothing_left(p: Pod) -> None:
    assert p.rt.list() == []
    assert not [m for m in rootfs.mount_points() if m.startswith(str(p.work))]
    assert not rootfs.is_mounted(p.sandbox.netns)
    assert not Path(p.sandbox.netns).exists()
    assert p.sandbox.netns_name not in os.popen("ip netns list").read()
    for pid in p.pids:
        assert not _alive(pid), f"process {pid} is still there"
    assert not _processes_mentioning(str(p.work))


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _processes_mentioning(text: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_nginx_and_busybox_share_the_pod_network(pod):
    assert pod_hostname(pod.pod) == "multi-container-pod"
    web = pod.run({"name": "container-1"}, NGINX_REF)

    # exec, as a probe would: until nginx answers on the pod's loopback
    def nginx_answers():
        r = pod.rt.exec(web, ["wget", "-qO-", "http://localhost"], timeout=5)
        return r if r.exit_code == 0 else None
    page = wait_for(nginx_answers, 15, "nginx to answer")
    assert b"Welcome to nginx!" in page.stdout

    bb = pod.run({"name": "container-2", "command": ["wget", "-qO-", "http://localhost"]},
                 BUSYBOX_REF)
    assert pod.rt.wait(bb, 15) == 0
    assert pod.rt.state(bb).status == "stopped"

    bb_log = pod.log("container-2").read_text()
    assert "Welcome to nginx!" in bb_log
    lines = bb_log.splitlines()
    assert lines and all(CRI_LINE.match(line) for line in lines), lines[:3]
    assert any(" stdout F <h1>Welcome to nginx!</h1>" in line for line in lines)

    web_log = wait_for(lambda: (t := pod.log("container-1").read_text()).count('"GET / HTTP/1.1" 200')
                       >= 2 and t, 5, "access-log lines")
    access = [line for line in web_log.splitlines() if '"GET / HTTP/1.1" 200' in line]
    assert all(CRI_LINE.match(line) and " stdout F 127.0.0.1 - - [" in line for line in access)
    assert any(" stderr F " in line and "start worker process" in line
               for line in web_log.splitlines())

    # the pod's UTS namespace, each container's own PID namespace and root
    r = pod.rt.exec(web, ["sh", "-c", "hostname; echo $$; cat /etc/hostname; ls /proc | grep -c '^[0-9]'"])
    hostname, _, etc_hostname, _ = r.stdout.decode().split("\n", 3)
    assert (hostname, etc_hostname) == ("multi-container-pod", "multi-container-pod")
    st = pod.rt.state(web)
    assert st.status == "running" and st.annotations["io.kubernetes.container.name"] == "container-1"

    # the default capability set, seen from inside: CapBnd is 0x00000000a80425fb
    status = pod.rt.exec(web, ["cat", "/proc/self/status"]).stdout.decode()
    assert "CapBnd:\t00000000a80425fb" in status and "NoNewPrivs:\t0" in status

    # a failing and a timed-out exec
    assert pod.rt.exec(web, ["sh", "-c", "echo out; echo err >&2; exit 3"]) == \
        type(r)(3, b"out\n", b"err\n")
    slow = pod.rt.exec(web, ["sleep", "30"], timeout=0.5)
    assert slow.timed_out and slow.exit_code == 137
    assert b"sleep" not in pod.rt.exec(web, ["ps"]).stdout

    # a second Runc on the same root (an agent restart) finds what runs
    again = Runc(pod.rt.root, pod.rt.state_dir)
    found = {c.id: c for c in again.list()}
    assert set(found) == {web, bb}
    assert found[web].status == "running" and found[bb].status == "stopped"
    assert again.exit_code(bb) == 0 and again.exit_code(web) is None
    assert found[web].annotations["io.kubernetes.pod.uid"] == pod.uid

    # graceful stop: nginx ends on SIGTERM
    assert pod.rt.stop(web, 10) == 0
    web_pid = pod.pids[0]
    assert not _alive(web_pid)
    pod.cleanup()
    assert_nothing_left(pod)


def test_sigterm_ignored_then_sigkill(pod):
    # sleep as PID 1 of its namespace ignores SIGTERM: the grace period ends in SIGKILL
    cid = pod.run({"name": "stubborn", "command": ["sleep", "1000"]}, BUSYBOX_REF)
    assert pod.rt.state(cid).status == "running"
    start = time.monotonic()
    assert pod.rt.stop(cid, 1, signal.SIGTERM) == 137
    assert 0.9 < time.monotonic() - start < 10
    pod.cleanup()
    assert_nothing_left(pod)


def test_containers_outlive_their_creator_and_exit_codes_are_kept(pod):
    cid = pod.run({"name": "exits", "command": ["sh", "-c", "echo bye >&2; exit 7"]}, BUSYBOX_REF)
    assert pod.rt.wait(cid, 10) == 7
    assert pod.rt.conmon_pid(cid) is None  # conmon ends with its container
    assert " stderr F bye" in pod.log("exits").read_text()
    # the conmon that watched it was not our child: it was in its own session
    pod.cleanup()
    assert_nothing_left(pod)


def test_create_failure_reports_runc_error_and_leaves_nothing(pod):
    with pytest.raises(ContainerRuntimeError, match="nonexistent"):
        pod.run({"name": "broken", "command": ["/nonexistent"]}, BUSYBOX_REF)
    assert pod.rt.list() == []
    pod.cleanup()
    assert_nothing_left(pod)


def test_rootfs_is_idempotent_and_private(pod):
    layers = pod.store.layer_dirs(BUSYBOX_REF)
    cdir = pod.work / "containers" / "fs"
    try:
        a = rootfs.mount_rootfs(layers, cdir)
        assert rootfs.mount_rootfs(layers, cdir) == a
        assert [m for m in rootfs.mount_points() if m == str(a)] == [str(a)]
        (a / "tmp" / "written").write_text("x")
        assert (cdir / "upper" / "tmp" / "written").exists()
        assert not any((d / "tmp" / "written").exists() for d in layers)
    finally:
        rootfs.remove_rootfs(cdir)
        rootfs.remove_rootfs(cdir)
    assert not cdir.exists() and not rootfs.is_mounted(cdir / "rootfs")


def test_sandbox_namespaces_and_teardown(pod):
    sb = pod.sandbox
    assert rootfs.is_mounted(sb.netns) and rootfs.is_mounted(sb.utsns)
    assert rootfs.is_mounted(sb.ipcns) and rootfs.is_mounted(sb.shm)
    out = os.popen(f"nsenter --uts={sb.utsns} hostname").read().strip()
    assert out == "multi-container-pod"
    links = os.popen(f"ip -n {sb.netns_name} -o link show").read()
    assert "lo:" in links and "UP" in links.split("lo:")[1].split("\n")[0]
    assert [s.id for s in sandbox.list_sandboxes(Path(sb.dir).parent)] == [sb.id]
    sandbox.teardown(sb)
    sandbox.teardown(sb)
    assert not Path(sb.dir).exists()
    assert not [m for m in rootfs.mount_points() if m.startswith(sb.dir) or m == sb.netns]


def _read_until(master: int, needle: bytes, timeout: float) -> bytes:
    """What the terminal printed, up to ``needle`` (or the end of the session)."""
    import select
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the other side has closed
                break
            if not chunk:
                break
            buf += chunk
    return buf


def test_exec_on_a_terminal_with_resize(pod):
    from kwire.node.runtime.runc import resize_pty
    cid = pod.run({"name": "shell", "command": ["sleep", "1000"]}, BUSYBOX_REF)
    proc, master = pod.rt.exec_pty(cid, ["/bin/sh"], rows=30, cols=100)
    try:
        os.write(master, b"stty size; echo A$((40+2))B\n")
        out = _read_until(master, b"A42B", 10)
        assert b"30 100" in out and b"A42B" in out
        resize_pty(proc, master, 50, 132)
        time.sleep(0.2)  # runc passes SIGWINCH on asynchronously
        os.write(master, b"stty size; tty; exit 5\n")
        out = _read_until(master, b"\x00never", 10)
        assert b"50 132" in out and b"/dev/pts/" in out
        assert proc.wait(10) == 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    pod.cleanup()
    assert_nothing_left(pod)
