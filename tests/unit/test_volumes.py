"""Pod volumes: the files of configMap, secret, downwardAPI and projected volumes
(items, modes, optional, upstream's errors), the AtomicWriter layout and updates,
hostPath type checks, emptyDir directories, container mounts (readOnly, subPath,
subPathExpr, propagation) and teardown, all in temporary directories. tmpfs
volumes are in tests/integration/test_volumes_mounts.py."""
import asyncio
import base64
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import pytest

from kwire.node.runtime.spec import Mount, SpecError
from kwire.node.volumes import (DATA_DIR, MountError, VolumeError, check_host_path,
                                container_mounts, expand_sub_path, propagation,
                                referenced_objects, setup_volumes, teardown_volumes, tmpfs_size,
                                volume_files, volume_kind, volume_path, write_atomic)


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


CM = {"metadata": {"name": "cfg"}, "data": {"app.conf": "port=80\n", "mode": "prod"},
      "binaryData": {"logo.bin": b64(b"\x00\xff")}}
SECRET = {"metadata": {"name": "creds"}, "data": {"user": b64("admin"), "pass": b64("pw")}}
OBJECTS = {("configmaps", "cfg"): CM, ("secrets", "creds"): SECRET,
           ("configmaps", "gone"): None, ("secrets", "gone"): None}

POD = {
    "metadata": {"name": "web-0", "namespace": "default", "uid": "u-1",
                 "labels": {"app": "web"}, "annotations": {"a": "1"}},
    "spec": {"containers": [{"name": "web", "resources": {"limits": {"memory": "64Mi",
                                                                     "cpu": "250m"}}}]},
}


class FakeGet:
    def __init__(self, objects):
        self.objects = objects
        self.calls = []

    async def __call__(self, plural, namespace, name):
        self.calls.append((plural, namespace, name))
        return self.objects.get((plural, namespace, name))


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to an fsGroup needs root")


@pytest.fixture
def work():
    """A temporary directory, removed pass or fail."""
    path = Path(tempfile.mkdtemp(prefix="kwire-volumes-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


def files(volume, objects=OBJECTS, pod=POD, **kw):
    return volume_files(pod, volume, objects, **kw)


# ------------------------------------------------------------------ pure: kinds and paths


def test_kinds_paths_and_references(work):
    assert volume_kind({"name": "x"}) == "emptyDir"
    assert volume_kind({"name": "x", "configMap": {"name": "cfg"}}) == "configMap"
    cases = {"emptyDir": "kubernetes.io~empty-dir", "configMap": "kubernetes.io~configmap",
             "secret": "kubernetes.io~secret", "projected": "kubernetes.io~projected",
             "downwardAPI": "kubernetes.io~downward-api"}
    for kind, plugin in cases.items():
        assert volume_path(work, {"name": "v", kind: {}}) == work / "volumes" / plugin / "v"
    assert volume_path(work, {"name": "h", "hostPath": {"path": "/srv/data"}}) == Path("/srv/data")
    projected = {"name": "p", "projected": {"sources": [
        {"configMap": {"name": "cfg"}}, {"secret": {"name": "creds"}},
        {"downwardAPI": {"items": []}}, {"serviceAccountToken": {"path": "token"}}]}}
    assert referenced_objects(projected) == [("configmaps", "cfg"), ("secrets", "creds")]
    assert referenced_objects({"name": "s", "secret": {"secretName": "creds"}}) == [("secrets", "creds")]
    assert referenced_objects({"name": "e", "emptyDir": {}}) == []


def test_unsupported_volume_kind_is_a_clear_failed_mount(work):
    with pytest.raises(VolumeError) as e:
        volume_path(work, {"name": "data", "persistentVolumeClaim": {"claimName": "c"}})
    assert e.value.messages == [('MountVolume.SetUp failed for volume "data" : no volume plugin '
                                 'matched: persistentVolumeClaim volumes are not supported by kwire')]


# ------------------------------------------------------------------ pure: files


def test_configmap_all_keys_default_mode_and_binary_data():
    assert files({"name": "c", "configMap": {"name": "cfg"}}) == {
        "app.conf": (b"port=80\n", 0o644), "mode": (b"prod", 0o644), "logo.bin": (b"\x00\xff", 0o644)}


def test_configmap_items_paths_and_modes():
    vol = {"name": "c", "configMap": {"name": "cfg", "defaultMode": 0o600, "items": [
        {"key": "app.conf", "path": "etc/app.conf"},
        {"key": "logo.bin", "path": "logo", "mode": 0o444}]}}
    assert files(vol) == {"etc/app.conf": (b"port=80\n", 0o600), "logo": (b"\x00\xff", 0o444)}


def test_secret_decoded_with_default_mode_0644():
    assert files({"name": "s", "secret": {"secretName": "creds"}}) == {
        "user": (b"admin", 0o644), "pass": (b"pw", 0o644)}


@pytest.mark.parametrize("volume, message", [
    ({"configMap": {"name": "gone"}}, 'configmap "gone" not found'),
    ({"secret": {"secretName": "gone"}}, 'secret "gone" not found'),
    ({"configMap": {"name": "cfg", "items": [{"key": "nope", "path": "x"}]}},
     "configmap references non-existent config key: nope"),
    ({"secret": {"secretName": "creds", "items": [{"key": "nope", "path": "x"}]}},
     "references non-existent secret key: nope"),
    ({"downwardAPI": {"items": [{"path": "x", "fieldRef": {"fieldPath": "spec.nodeName"}}]}},
     "unsupported fieldPath: spec.nodeName"),
    ({"projected": {"sources": [{"configMap": {"name": "gone"}}, {"secret": {"name": "gone"}}]}},
     '[configmap "gone" not found, secret "gone" not found]'),
])
def test_errors_are_failed_mount_messages(volume, message):
    with pytest.raises(VolumeError) as e:
        files({"name": "vol", **volume})
    assert str(e.value) == f'MountVolume.SetUp failed for volume "vol" : {message}'


def test_optional_missing_object_or_key_gives_no_file():
    assert files({"name": "c", "configMap": {"name": "gone", "optional": True}}) == {}
    assert files({"name": "s", "secret": {"secretName": "gone", "optional": True,
                                          "items": [{"key": "k", "path": "k"}]}}) == {}
    vol = {"name": "c", "configMap": {"name": "cfg", "optional": True, "items": [
        {"key": "nope", "path": "x"}, {"key": "mode", "path": "m"}]}}
    assert files(vol) == {"m": (b"prod", 0o644)}


def test_downward_api_volume():
    vol = {"name": "d", "downwardAPI": {"defaultMode": 0o640, "items": [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "meta/labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "./ns", "fieldRef": {"fieldPath": "metadata.namespace"}, "mode": 0o400},
        {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "web", "resource": "limits.memory",
                                             "divisor": "1Mi"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "web", "resource": "requests.cpu",
                                             "divisor": "1m"}}]}}
    assert files(vol) == {"name": (b"web-0", 0o640), "meta/labels": (b'app="web"', 0o640),
                          "ns": (b"default", 0o400), "app": (b"web", 0o640),
                          "mem": (b"64", 0o640), "cpu": (b"0", 0o640)}


def test_downward_api_unset_limit_is_node_allocatable():
    vol = {"name": "d", "downwardAPI": {"items": [
        {"path": "cpu", "resourceFieldRef": {"containerName": "web", "resource": "limits.cpu"}}]}}
    pod = {**POD, "spec": {"containers": [{"name": "web"}]}}
    assert files(vol, pod=pod, allocatable={"cpu": "3"}) == {"cpu": (b"3", 0o644)}


def test_projected_merges_sources_and_skips_service_account_token():
    vol = {"name": "p", "projected": {"defaultMode": 0o440, "sources": [
        {"configMap": {"name": "cfg", "items": [{"key": "mode", "path": "cfg/mode"}]}},
        {"secret": {"name": "creds", "items": [{"key": "user", "path": "creds/user",
                                                "mode": 0o400}]}},
        {"downwardAPI": {"items": [{"path": "pod", "fieldRef": {"fieldPath": "metadata.name"}}]}},
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}}]}}
    assert files(vol) == {"cfg/mode": (b"prod", 0o440), "creds/user": (b"admin", 0o400),
                          "pod": (b"web-0", 0o440)}


def test_tmpfs_size_is_the_smallest_of_allocatable_pod_limit_and_size_limit():
    assert tmpfs_size(POD) == 64 << 20  # the pod's memory limit
    assert tmpfs_size(POD, "1Mi") == 1 << 20
    assert tmpfs_size(POD, "1Gi") == 64 << 20  # a sizeLimit above the pod limit is ignored
    assert tmpfs_size(POD, None, {"memory": "32Mi"}) == 32 << 20
    unlimited = {**POD, "spec": {"containers": [{"name": "a"}]}}
    assert tmpfs_size(unlimited) is None
    assert tmpfs_size(unlimited, "10M") == 10_000_000
    two = {"spec": {"containers": [{"name": n, "resources": {"limits": {"memory": "10Mi"}}}
                                   for n in "ab"],
                    "initContainers": [{"name": "i", "resources": {"limits": {"memory": "50Mi"}}}]}}
    assert tmpfs_size(two) == 50 << 20


# ------------------------------------------------------------------ the atomic writer


def visible(target: Path) -> dict:
    """What a container reads: every non-hidden file, through the symlinks."""
    out = {}
    for entry in sorted(target.iterdir()):
        if entry.name.startswith(".."):
            continue
        if entry.is_dir():
            for sub in sorted(entry.rglob("*")):
                if sub.is_file():
                    out[str(sub.relative_to(target))] = sub.read_bytes()
        else:
            out[entry.name] = entry.read_bytes()
    return out


def ts_dirs(target: Path) -> list[str]:
    return sorted(p.name for p in target.iterdir()
                  if p.name.startswith("..") and p.is_dir() and not p.is_symlink())


def test_atomic_writer_layout(work):
    assert write_atomic(work, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    data = os.readlink(work / DATA_DIR)
    assert data.startswith("..") and ts_dirs(work) == [data]
    assert os.readlink(work / "a") == "..data/a"
    assert os.readlink(work / "dir") == "..data/dir"
    assert visible(work) == {"a": b"1", "dir/b": b"2"}
    assert stat.S_IMODE(os.stat(work / "dir/b").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(work / data).st_mode) == 0o755
    assert not os.path.lexists(work / "..data_tmp")


def test_atomic_writer_update_replaces_and_removes(work):
    write_atomic(work, {"a": (b"1", 0o644), "b": (b"2", 0o644), "d/x": (b"3", 0o644)})
    first = os.readlink(work / DATA_DIR)
    assert not write_atomic(work, {"a": (b"1", 0o644), "b": (b"2", 0o644),
                                       "d/x": (b"3", 0o644)})
    assert os.readlink(work / DATA_DIR) == first  # same content: nothing written
    assert write_atomic(work, {"a": (b"new", 0o644), "c": (b"4", 0o644)})
    second = os.readlink(work / DATA_DIR)
    assert second != first
    assert visible(work) == {"a": b"new", "c": b"4"}
    assert not os.path.lexists(work / "b") and not os.path.lexists(work / "d")
    assert sorted(ts_dirs(work)) == sorted([first, second])  # the previous version stays
    assert write_atomic(work, {"a": (b"new", 0o644)})  # only a removal also writes
    assert visible(work) == {"a": b"new"}
    assert sorted(ts_dirs(work)) == sorted([second, os.readlink(work / DATA_DIR)])  # older go


def test_atomic_writer_open_file_keeps_old_content(work):
    """A reader holding the old file sees the old bytes; a new open sees the new."""
    write_atomic(work, {"a": (b"old", 0o644)})
    with open(work / "a", "rb") as held:
        write_atomic(work, {"a": (b"new", 0o644)})
        assert held.read() == b"old"
    assert (work / "a").read_bytes() == b"new"


def test_atomic_writer_empty_payload(work):
    write_atomic(work, {})
    assert os.path.islink(work / DATA_DIR) and visible(work) == {}


@pytest.mark.parametrize("path, message", [
    ("", 'invalid path: must not be empty: ""'),
    ("/etc/passwd", "invalid path: must be relative path: /etc/passwd"),
    ("a/../../b", "invalid path: must not contain '..': a/../../b"),
    ("..data", "invalid path: must not start with '..': ..data"),
    ("./..data", "invalid path: must not start with '..': ./..data"),
    ("x" * 256, "invalid path: filenames must be less than or equal to 255 characters"),
])
def test_atomic_writer_rejects_bad_paths(work, path, message):
    with pytest.raises(ValueError) as e:
        write_atomic(work, {path: (b"x", 0o644)})
    assert str(e.value) == message
    assert list(work.iterdir()) == []


@needs_root
def test_atomic_writer_fs_group(work):
    write_atomic(work, {"s": (b"x", 0o400)}, fs_group=4242)
    target = work / "s"
    st = os.stat(target)
    assert st.st_gid == 4242 and stat.S_IMODE(st.st_mode) == 0o440
    ts = os.stat(work / os.readlink(work / DATA_DIR))
    assert ts.st_gid == 4242 and ts.st_mode & stat.S_ISGID


# ------------------------------------------------------------------ hostPath


def host_path(path, kind):
    return {"name": "h", "hostPath": {"path": str(path), "type": kind}}


def test_host_path_types(work):
    d, f = work / "d", work / "f"
    d.mkdir()
    f.write_text("x")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(work / "s"))
        check_host_path(host_path(work / "s", "Socket"))
    finally:
        sock.close()
    check_host_path(host_path(d, "Directory"))
    check_host_path(host_path(f, "File"))
    check_host_path(host_path(work / "missing", ""))
    check_host_path(host_path("/dev/null", "CharDevice"))
    check_host_path(host_path(work / "new/deep", "DirectoryOrCreate"))
    assert (work / "new/deep").is_dir()
    check_host_path(host_path(work / "new/file", "FileOrCreate"))
    assert (work / "new/file").is_file()
    assert not (work / "missing").exists()


@pytest.mark.parametrize("name, kind, what", [
    ("f", "Directory", "a directory"), ("f", "DirectoryOrCreate", "a directory"),
    ("d", "File", "a file"), ("d", "FileOrCreate", "a file"), ("missing", "File", "a file"),
    ("f", "Socket", "a socket file"), ("f", "CharDevice", "a character device"),
    ("f", "BlockDevice", "a block device"),
])
def test_host_path_type_check_failures(work, name, kind, what):
    (work / "d").mkdir()
    (work / "f").write_text("x")
    path = work / name
    pod = {"metadata": {}, "spec": {"volumes": [host_path(path, kind)]}}
    with pytest.raises(VolumeError) as e:
        asyncio.run(setup_volumes(pod, work / "pod", FakeGet({})))
    assert str(e.value) == (f'MountVolume.SetUp failed for volume "h" : hostPath type check '
                            f'failed: {path} is not {what}')


def test_host_path_dotdot_bad_type_and_missing_parent(work):
    for path, kind, message in (
            ("/a/../etc", "", "invalid HostPath `/a/../etc`: must not contain '..'"),
            (str(work), "Bogus", "Bogus is an invalid volume type"),
            (str(work / "no/file"), "FileOrCreate", "No such file or directory")):
        with pytest.raises(VolumeError) as e:
            asyncio.run(setup_volumes({"metadata": {}, "spec": {"volumes": [host_path(path, kind)]}},
                                      work / "pod", FakeGet({})))
        assert message in str(e.value)


# ------------------------------------------------------------------ setup and teardown


def test_setup_volumes_on_disk(work):
    pod_dir = work / "pod"
    host = work / "host"
    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u"},
           "spec": {"volumes": [{"name": "scratch", "emptyDir": {}},
                                {"name": "cfg", "configMap": {"name": "cfg"}},
                                {"name": "again", "configMap": {"name": "cfg", "items": [
                                    {"key": "mode", "path": "m"}]}},
                                {"name": "host", "hostPath": {"path": str(host),
                                                              "type": "DirectoryOrCreate"}}]}}
    get = FakeGet({("configmaps", "default", "cfg"): CM})
    paths = asyncio.run(setup_volumes(pod, pod_dir, get))
    assert paths == {"scratch": str(pod_dir / "volumes/kubernetes.io~empty-dir/scratch"),
                     "cfg": str(pod_dir / "volumes/kubernetes.io~configmap/cfg"),
                     "again": str(pod_dir / "volumes/kubernetes.io~configmap/again"),
                     "host": str(host)}
    assert get.calls == [("configmaps", "default", "cfg")]  # read once for both volumes
    assert stat.S_IMODE(os.stat(paths["scratch"]).st_mode) == 0o777
    assert stat.S_IMODE(os.stat(paths["cfg"]).st_mode) == 0o777
    assert visible(Path(paths["cfg"])) == {"app.conf": b"port=80\n", "logo.bin": b"\x00\xff",
                                           "mode": b"prod"}
    assert visible(Path(paths["again"])) == {"m": b"prod"}
    assert host.is_dir()

    (Path(paths["scratch"]) / "keep").write_text("mine")
    CM2 = {**CM, "data": {"mode": "dev"}, "binaryData": {}}
    get.objects[("configmaps", "default", "cfg")] = CM2
    assert asyncio.run(setup_volumes(pod, pod_dir, get)) == paths  # idempotent, updates
    assert visible(Path(paths["cfg"])) == {"mode": b"dev"}
    assert visible(Path(paths["again"])) == {"m": b"dev"}
    assert (Path(paths["scratch"]) / "keep").read_text() == "mine"

    (host / "precious").write_text("host data")
    teardown_volumes(pod_dir)
    assert not (pod_dir / "volumes").exists()
    assert (host / "precious").read_text() == "host data"
    teardown_volumes(pod_dir)  # idempotent


def test_setup_reports_every_failed_volume_and_keeps_old_content(work):
    pod = {"metadata": {"namespace": "ns"},
           "spec": {"volumes": [{"name": "a", "configMap": {"name": "x"}},
                                {"name": "b", "secret": {"secretName": "y"}},
                                {"name": "c", "nfs": {"server": "s", "path": "/"}}]}}
    with pytest.raises(VolumeError) as e:
        asyncio.run(setup_volumes(pod, work, FakeGet({})))
    assert e.value.messages == [
        'MountVolume.SetUp failed for volume "a" : configmap "x" not found',
        'MountVolume.SetUp failed for volume "b" : secret "y" not found',
        ('MountVolume.SetUp failed for volume "c" : no volume plugin matched: nfs volumes are '
         'not supported by kwire')]
    assert not (work / "volumes").exists()  # nothing made for volumes that failed

    pod = {"metadata": {"namespace": "ns"},
           "spec": {"volumes": [{"name": "a", "configMap": {"name": "x"}}]}}
    get = FakeGet({("configmaps", "ns", "x"): {"data": {"k": "v"}}})
    path = Path(asyncio.run(setup_volumes(pod, work, get))["a"])
    get.objects.clear()
    with pytest.raises(VolumeError):
        asyncio.run(setup_volumes(pod, work, get))
    assert visible(path) == {"k": b"v"}  # a deleted ConfigMap leaves the files as they were


@needs_root
def test_empty_dir_fs_group_and_unknown_medium(work):
    pod = {"metadata": {}, "spec": {"securityContext": {"fsGroup": 3000},
                                    "volumes": [{"name": "e", "emptyDir": {}}]}}
    path = asyncio.run(setup_volumes(pod, work, FakeGet({})))["e"]
    st = os.stat(path)
    assert st.st_gid == 3000 and stat.S_IMODE(st.st_mode) == 0o2777
    pod["spec"]["volumes"] = [{"name": "h", "emptyDir": {"medium": "HugePages"}}]
    with pytest.raises(VolumeError, match='storage medium "HugePages" is not supported'):
        asyncio.run(setup_volumes(pod, work, FakeGet({})))


# ------------------------------------------------------------------ container mounts


def test_mounts_read_only_and_propagation(work):
    pod = {"spec": {"volumes": [{"name": "e", "emptyDir": {}},
                                {"name": "c", "configMap": {"name": "cfg"}},
                                {"name": "h", "hostPath": {"path": str(work)}}]}}
    paths = {"e": str(work / "e"), "c": str(work / "c"), "h": str(work)}
    for p in ("e", "c"):
        (work / p).mkdir()
    container = {"name": "web", "volumeMounts": [
        {"name": "e", "mountPath": "/data"},
        {"name": "c", "mountPath": "/etc/app"},
        {"name": "h", "mountPath": "host", "readOnly": True, "mountPropagation": "HostToContainer"},
        {"name": "e", "mountPath": "/shared", "mountPropagation": "Bidirectional"}]}
    assert container_mounts(pod, container, paths) == [
        Mount("/data", paths["e"]),
        Mount("/etc/app", paths["c"], readonly=True),
        Mount("/host", paths["h"], readonly=True, propagation="rslave"),
        Mount("/shared", paths["e"], propagation="rshared")]


def test_mount_errors(work):
    assert issubclass(MountError, SpecError)  # the agent's CreateContainerConfigError
    pod = {"spec": {"volumes": [{"name": "e", "emptyDir": {}}]}}
    with pytest.raises(MountError, match='cannot find volume "x" to mount into container "web"'):
        container_mounts(pod, {"name": "web", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}, {})
    with pytest.raises(MountError, match='invalid MountPropagation mode: "Sideways"'):
        propagation("Sideways")
    paths = {"e": str(work)}
    for sub, message in (("/abs", "error SubPath `/abs` must not be an absolute path"),
                         ("a/../..", "unable to provision SubPath `a/../..`: must not contain '..'")):
        with pytest.raises(MountError) as e:
            container_mounts(pod, {"name": "web", "volumeMounts": [
                {"name": "e", "mountPath": "/x", "subPath": sub}]}, paths)
        assert str(e.value) == message


def test_sub_path_created_inside_volume_with_its_mode(work):
    vol = work / "vol"
    vol.mkdir()
    os.chmod(vol, 0o777)
    pod = {"spec": {"volumes": [{"name": "e", "emptyDir": {}}]}}
    container = {"name": "web", "volumeMounts": [{"name": "e", "mountPath": "/html",
                                                  "subPath": "sites/a"}]}
    [mount] = container_mounts(pod, container, {"e": str(vol)})
    assert mount == Mount("/html", str(vol / "sites/a"))
    assert stat.S_IMODE(os.stat(vol / "sites").st_mode) == 0o777
    assert stat.S_IMODE(os.stat(vol / "sites/a").st_mode) == 0o777


def test_sub_path_symlink_out_of_volume_refused(work):
    vol, outside = work / "vol", work / "outside"
    vol.mkdir()
    outside.mkdir()
    (vol / "escape").symlink_to(outside)
    (vol / "inner").symlink_to("real")
    (vol / "real").mkdir()
    pod = {"spec": {"volumes": [{"name": "e", "emptyDir": {}}]}}

    def mount(sub):
        return container_mounts(pod, {"name": "web", "volumeMounts": [
            {"name": "e", "mountPath": "/x", "subPath": sub}]}, {"e": str(vol)})

    with pytest.raises(MountError, match='failed to prepare subPath for volumeMount "e" of '
                                         'container "web"'):
        mount("escape")
    with pytest.raises(MountError, match='failed to create subPath directory for volumeMount "e"'):
        mount("escape/new")
    assert list(outside.iterdir()) == []
    assert mount("inner/new")[0].source == str(vol / "real/new")  # a link inside is fine


def test_sub_path_of_configmap_key_binds_the_current_file(work):
    write_atomic(work, {"nginx.conf": (b"v1", 0o644)})
    pod = {"spec": {"volumes": [{"name": "c", "configMap": {"name": "cfg"}}]}}
    container = {"name": "web", "volumeMounts": [{"name": "c", "mountPath": "/etc/nginx/nginx.conf",
                                                  "subPath": "nginx.conf"}]}
    [mount] = container_mounts(pod, container, {"c": str(work)})
    assert mount.readonly and Path(mount.source).read_bytes() == b"v1"
    assert mount.source.startswith(str(work / os.readlink(work / DATA_DIR)))


def test_sub_path_expr_uses_the_resolved_env(work):
    pod = {"spec": {"volumes": [{"name": "logs", "emptyDir": {}}]}}
    container = {"name": "web", "volumeMounts": [{"name": "logs", "mountPath": "/logs",
                                                  "subPathExpr": "$(POD)/$(SUB)"}]}
    env = [("NAME", "web-0"), ("POD", "pods-$(NAME)"), ("SUB", "x$$y")]
    [mount] = container_mounts(pod, container, {"logs": str(work)}, env)
    assert mount.source == str(work / "pods-web-0" / "x$y")
    with pytest.raises(MountError, match="missing value for A, B"):
        container_mounts(pod, {**container, "volumeMounts": [
            {"name": "logs", "mountPath": "/l", "subPathExpr": "$(B)/$(A)/$(POD)"}]},
            {"logs": str(work)}, [("A", ""), ("POD", "p")])


def test_expand_sub_path():
    assert expand_sub_path("a/$(X)", {"X": "1"}) == "a/1"
    with pytest.raises(MountError, match="missing value for X"):
        expand_sub_path("$(X)", {})


def test_missing_host_path_source_is_created_as_directory(work):
    pod = {"spec": {"volumes": [{"name": "h", "hostPath": {"path": str(work / "new")}}]}}
    container = {"name": "web", "volumeMounts": [{"name": "h", "mountPath": "/h"}]}
    container_mounts(pod, container, {"h": str(work / "new")})
    assert (work / "new").is_dir()
