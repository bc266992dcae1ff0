"""Pod volumes on real mounts: a Memory emptyDir is a tmpfs of its sizeLimit, secret
and projected volumes sit on a tmpfs, an update swaps content atomically under a
reader, and teardown leaves no mount and no file behind. Each test works in its own
temporary directory, unmounted and removed pass or fail."""
import asyncio
import base64
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from kwire.node.runtime import rootfs
from kwire.node.volumes import DATA_DIR, setup_volumes, teardown_volumes

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: tmpfs mounts"),
]


def mounts_under(path: Path) -> list[tuple[str, str]]:
    """(mount point, fstype) of every mount at or below ``path`` (/proc/self/mountinfo)."""
    root = os.path.realpath(path)
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        point = fields[4].encode().decode("unicode_escape")  # \040 is a space
        fstype = fields[fields.index("-") + 1]
        if point == root or point.startswith(root + "/"):
            out.append((point, fstype))
    return out


@pytest.fixture
def work():
    path = Path(tempfile.mkdtemp(prefix="kwire-volmounts-"))
    try:
        yield path
    finally:
        for point, _ in sorted(mounts_under(path), key=lambda m: len(m[0]), reverse=True):
            rootfs.unmount(point)
        shutil.rmtree(path)


class FakeGet:
    def __init__(self, objects):
        self.objects = objects

    async def __call__(self, plural, namespace, name):
        return self.objects.get((plural, namespace, name))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def pod(*volumes, **spec):
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u-1"},
            "spec": {"containers": [{"name": "c"}], "volumes": list(volumes), **spec}}


def test_memory_empty_dir_is_a_sized_tmpfs_and_teardown_unmounts(work):
    pod_dir = work / "pod"
    p = pod({"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
            {"name": "disk", "emptyDir": {}})
    paths = asyncio.run(setup_volumes(p, pod_dir, FakeGet({})))
    cache = Path(paths["cache"])
    assert mounts_under(work) == [(str(cache), "tmpfs")]
    st = os.statvfs(cache)
    assert st.f_blocks * st.f_frsize == 8 << 20
    (cache / "f").write_text("in memory")
    assert asyncio.run(setup_volumes(p, pod_dir, FakeGet({}))) == paths
    assert mounts_under(work) == [(str(cache), "tmpfs")]  # not mounted twice
    assert (cache / "f").read_text() == "in memory"  # nor emptied

    teardown_volumes(pod_dir)
    assert mounts_under(work) == []
    assert not (pod_dir / "volumes").exists()
    teardown_volumes(pod_dir)


def test_secret_on_tmpfs_updates_atomically_under_a_reader(work):
    pod_dir = work / "pod"
    objects = {("secrets", "default", "creds"): {"data": {"token": b64("A" * 4096),
                                                          "old": b64("x")}},
               ("configmaps", "default", "cfg"): {"data": {"k": "v1"}}}
    p = pod({"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o400}},
            {"name": "c", "configMap": {"name": "cfg"}},
            {"name": "both", "projected": {"sources": [{"secret": {"name": "creds"}},
                                                       {"configMap": {"name": "cfg"}}]}})
    get = FakeGet(objects)
    paths = asyncio.run(setup_volumes(p, pod_dir, get))
    secret, cfg = Path(paths["s"]), Path(paths["c"])
    assert sorted(mounts_under(work)) == [(paths["both"], "tmpfs"), (paths["s"], "tmpfs")]
    assert (secret / "token").read_text() == "A" * 4096
    assert os.stat(secret / "token").st_mode & 0o777 == 0o400

    seen, errors, stop = set(), [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                seen.add((secret / "token").read_text())
            except OSError as e:
                errors.append(e)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(100):
            objects[("secrets", "default", "creds")] = {"data": {"token": b64("AB"[i % 2] * 4096)}}
            asyncio.run(setup_volumes(p, pod_dir, get))
    finally:
        stop.set()
        thread.join(10)
    assert errors == [] and seen <= {"A" * 4096, "B" * 4096}
    assert (secret / "token").read_text() == "B" * 4096
    assert not (secret / "old").exists()
    versions = [n for n in os.listdir(secret) if n.startswith("..") and n != DATA_DIR]
    assert len(versions) == 2 and os.readlink(secret / DATA_DIR) in versions  # and the previous

    objects[("configmaps", "default", "cfg")] = {"data": {"k": "v2"}}
    asyncio.run(setup_volumes(p, pod_dir, get))
    assert (cfg / "k").read_text() == "v2" and (Path(paths["both"]) / "k").read_text() == "v2"

    teardown_volumes(pod_dir)
    assert mounts_under(work) == []
    assert not (pod_dir / "volumes").exists()


def test_teardown_unmounts_nested_mounts_and_spares_host_paths(work):
    """A mount propagated back into an emptyDir (Bidirectional) is unmounted, not
    emptied; the hostPath's own files stay."""
    pod_dir, host = work / "pod", work / "host"
    host.mkdir()
    (host / "keep").write_text("host file")
    p = pod({"name": "e", "emptyDir": {}},
            {"name": "h", "hostPath": {"path": str(host), "type": "Directory"}})
    paths = asyncio.run(setup_volumes(p, pod_dir, FakeGet({})))
    nested = Path(paths["e"]) / "nested"
    nested.mkdir()
    rootfs.mount(str(host), nested, "", 4096 | 16384)  # MS_BIND | MS_REC
    assert [point for point, _ in mounts_under(work)] == [str(nested)]
    teardown_volumes(pod_dir)
    assert mounts_under(work) == []
    assert (host / "keep").read_text() == "host file"
    assert not (pod_dir / "volumes").exists()
