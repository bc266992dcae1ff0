"""The runtime's small pure parts: mountinfo parsing, overlay options, runc and
conmon output parsing, host capability sets, sandbox records. No root needed."""
import json
import os
import threading
from pathlib import Path

import pytest

from kwire.node.runtime import host, rootfs, sandbox
from kwire.node.runtime.runc import ContainerState, Runc, _read_sync, runc_error
from kwire.node.runtime.spec import ALL_CAPABILITIES

MOUNTINFO = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/root rw\n"
    "40 22 0:35 / /tmp/with\\040space/rootfs rw - overlay overlay rw,lowerdir=/a\n"
    "41 22 0:36 / /run/netns/kwire-abc rw shared:5 - nsfs nsfs rw\n"
    "42 22 0:37 / /back\\134slash rw - tmpfs tmpfs rw\n"
)


def test_mount_points_unescape():
    assert rootfs.mount_points(MOUNTINFO) == ["/", "/tmp/with space/rootfs",
                                              "/run/netns/kwire-abc", "/back\\slash"]
    assert rootfs.is_mounted("/run/netns/kwire-abc", MOUNTINFO)
    assert not rootfs.is_mounted("/run/netns/kwire-abd", MOUNTINFO)


def test_mount_points_of_this_process():
    assert "/" in rootfs.mount_points()


def test_overlay_options_top_layer_first():
    opts = rootfs.overlay_options([Path("/l/base"), Path("/l/mid"), Path("/l/top")],
                                  Path("/c/upper"), Path("/c/work"))
    assert opts == "lowerdir=/l/top:/l/mid:/l/base,upperdir=/c/upper,workdir=/c/work"


def test_overlay_options_too_long():
    with pytest.raises(rootfs.RootfsError):
        rootfs.overlay_options([Path("/x" * 100)] * 30, Path("/u"), Path("/w"))


def test_unmount_of_a_path_that_is_not_mounted(tmp_path):
    assert rootfs.unmount(tmp_path) is False


def test_runc_error_message():
    err = b'time="2026-11-26T11:23:46Z" level=error msg="container \\"x\\" does not exist"\n'
    assert runc_error(err) == 'container "x" does not exist'
    assert runc_error(b"plain failure\n") == "plain failure"


def test_container_state_from_runc_json():
    obj = {"ociVersion": "1.0.2-dev", "id": "c1", "pid": 42, "status": "running",
           "bundle": "/b", "rootfs": "/b/rootfs", "created": "2026-11-26T11:23:46.9Z",
           "annotations": {"io.kubernetes.container.name": "web"}, "owner": ""}
    st = ContainerState.from_json(obj)
    assert st == ContainerState("c1", 42, "running", "/b", "2026-11-26T11:23:46.9Z",
                                {"io.kubernetes.container.name": "web"})
    assert ContainerState.from_json({"id": "c2", "pid": 0, "status": "stopped"}).annotations == {}


def _pipe_with(*chunks, close=True):
    r, w = os.pipe()

    def writer():
        for c in chunks:
            os.write(w, c)
        if close:
            os.close(w)
    t = threading.Thread(target=writer)
    t.start()
    t.join()
    return r, w


def test_read_sync_pid_and_error():
    r, _ = _pipe_with(b'{"data": 1234}\n')
    try:
        assert _read_sync(r, 1) == {"data": 1234}
    finally:
        os.close(r)
    r, _ = _pipe_with(b'{"data": -1, "message": "runc create failed: boom"}')
    try:
        assert _read_sync(r, 1)["message"] == "runc create failed: boom"
    finally:
        os.close(r)


def test_read_sync_split_message_eof_and_timeout():
    r, _ = _pipe_with(b'{"da', b'ta": 7}')
    try:
        assert _read_sync(r, 1) == {"data": 7}
    finally:
        os.close(r)
    r, _ = _pipe_with()
    try:
        assert _read_sync(r, 1) is None
    finally:
        os.close(r)
    r, w = _pipe_with(close=False)
    try:
        assert _read_sync(r, 0.05) is None
    finally:
        os.close(r)
        os.close(w)


def test_exit_code_and_exec_args(tmp_path):
    rt = Runc(tmp_path / "root", tmp_path / "state", runc="/usr/sbin/runc", conmon="/usr/bin/conmon")
    assert rt.exit_code("c1") is None
    (rt.exit_dir / "c1").write_text("137")
    assert rt.exit_code("c1") == 137
    assert rt.exec_args("c1", ["sh", "-c", "true"], env=["A=1"], cwd="/w", user=(1, 2)) == [
        "/usr/sbin/runc", "--root", str(tmp_path / "root"), "exec", "--env", "A=1",
        "--cwd", "/w", "--user", "1:2", "c1", "sh", "-c", "true"]
    assert rt.conmon_pid("c1") is None


def test_host_capabilities():
    full = f"Name:\tx\nCapBnd:\t{(1 << len(ALL_CAPABILITIES)) - 1:016x}\n"
    assert host.capabilities(full) == list(ALL_CAPABILITIES)
    no_sys_resource = "CapBnd:\t000001fffeffffff\n"
    caps = host.capabilities(no_sys_resource)
    assert "CAP_SYS_RESOURCE" not in caps and len(caps) == len(ALL_CAPABILITIES) - 1
    assert host.capabilities("CapBnd:\t0000000000000005\n") == ["CAP_CHOWN", "CAP_DAC_READ_SEARCH"]
    assert 0 < host.nofile_limit() <= 1048576


def test_sandbox_record_and_paths(tmp_path):
    sb = sandbox.Sandbox(id="abc123", hostname="web-0", dir=str(tmp_path / "abc123"),
                         netns_name="kwire-abc123", pod_uid="u", pod_name="web-0",
                         pod_namespace="prod")
    paths = sb.paths()
    assert paths.netns == "/run/netns/kwire-abc123"
    assert paths.utsns == f"{tmp_path}/abc123/ns/uts"
    assert paths.ipcns == f"{tmp_path}/abc123/ns/ipc"
    assert paths.hosts_file == f"{tmp_path}/abc123/hosts"
    assert paths.resolv_conf == f"{tmp_path}/abc123/resolv.conf"
    assert paths.shm == f"{tmp_path}/abc123/shm"
    assert paths.hostname == "web-0"
    (tmp_path / "abc123").mkdir()
    (tmp_path / "abc123" / "sandbox.json").write_text(json.dumps(sb.__dict__))
    (tmp_path / "junk").mkdir()
    assert sandbox.load(tmp_path, "abc123") == sb
    assert sandbox.list_sandboxes(tmp_path) == [sb]
    assert sandbox.list_sandboxes(tmp_path / "missing") == []


@pytest.mark.parametrize("bad", ["", "ABC", "a/b", "-x", "a" * 50])
def test_sandbox_rejects_bad_ids(bad, tmp_path):
    with pytest.raises(sandbox.SandboxError):
        sandbox.create("h", root=tmp_path, sandbox_id=bad)


def test_new_ids_are_unique_and_valid():
    ids = {sandbox.new_id() for _ in range(100)}
    assert len(ids) == 100 and all(sandbox._ID.match(i) for i in ids)


def test_resolve_in_root_stays_inside(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "lib").symlink_to("/etc")                 # absolute: from the container's root
    (root / "up").symlink_to("../../../../../etc")     # climbs: stops at the root
    (root / "etc" / "loop").symlink_to("loop")
    (tmp_path / "secret").write_text("host file")
    (root / "escape").symlink_to(str(tmp_path / "secret"))
    real = root.resolve()
    assert rootfs.resolve_in_root(root, "/lib/passwd") == real / "etc" / "passwd"
    assert rootfs.resolve_in_root(root, "up/passwd") == real / "etc" / "passwd"
    assert rootfs.resolve_in_root(root, "/../../etc/./passwd") == real / "etc" / "passwd"
    assert rootfs.resolve_in_root(root, "/escape") == real / tmp_path.relative_to("/") / "secret"
    assert rootfs.read_in_root(root, "/escape") is None
    assert rootfs.read_in_root(root, "/lib/passwd") == "root:x:0:0::/root:/bin/sh\n"
    assert rootfs.read_in_root(root, "/etc") is None
    with pytest.raises(rootfs.RootfsError):
        rootfs.resolve_in_root(root, "/etc/loop")


def test_user_files_from_a_root(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("nginx:x:101:101::/:/bin/false\n")
    files = rootfs.user_files(tmp_path)
    assert files.passwd == "nginx:x:101:101::/:/bin/false\n" and files.group == ""


def test_finished_at(tmp_path):
    rt = Runc(tmp_path / "root", tmp_path / "state")
    assert rt.finished_at("c") is None
    (rt.exit_dir / "c").write_text("0")
    assert rt.finished_at("c") == (rt.exit_dir / "c").stat().st_mtime


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-a", "a b", "x" * 200])
def test_create_rejects_bad_container_ids(bad, tmp_path):
    from kwire.node.runtime.runc import ContainerRuntimeError
    rt = Runc(tmp_path / "root", tmp_path / "state", runc="/bin/false", conmon="/bin/false")
    with pytest.raises(ContainerRuntimeError, match="bad container id"):
        rt.create(bad, tmp_path / "bundle", {}, tmp_path / "log")
    assert not (tmp_path / "bundle").exists()
