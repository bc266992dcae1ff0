"""The OCI image-layout store: references, images, listing, unpacking, layer
sharing, garbage collection, and importing `docker save` and OCI archives."""
import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

import pytest

from kwire.node.images import ImageError, ImageNotFound, ImageStore
from kwire.node.images.store import host_platform

OS, ARCH = host_platform()


@pytest.fixture
def tmp_path():
    """A temporary directory removed after the test, pass or fail (pytest keeps its own)."""
    with tempfile.TemporaryDirectory(prefix="kwire-images-") as d:
        yield Path(d)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, str]) -> bytes:
    """An uncompressed layer; names ending in / are directories."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, text in files.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            else:
                data = text.encode()
                info.size, info.mode = len(data), 0o644
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tree_of(tmp: Path, name: str, files: dict[str, str]) -> Path:
    root = tmp / name
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def image_config(diff_ids: list[str], **run) -> bytes:
    return json.dumps({"architecture": ARCH, "os": OS, "config": run,
                       "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()


def write_archive(path: Path, members: dict[str, bytes], links: dict[str, str] = ()) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in dict(links).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)


@pytest.fixture
def store(tmp_path):
    return ImageStore(tmp_path / "store")


# ---------------------------------------------------------------- store


def test_layout_is_oci(store):
    assert json.loads((store.root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((store.root / "index.json").read_text())
    assert index["schemaVersion"] == 2 and index["manifests"] == []


def test_write_resolve_list_remove(store, tmp_path):
    base = store.add_layer(tree_of(tmp_path, "base", {"etc/os": "base\n"}))
    top = store.add_layer(tree_of(tmp_path, "top", {"srv/app": "app\n"}))
    image = store.write_image("app:1", [base, top], {
        "Entrypoint": ["/srv/app"], "Cmd": ["--serve"], "Env": ["A=1"], "WorkingDir": "/srv",
        "ExposedPorts": {"8080/tcp": {}}, "StopSignal": "SIGTERM", "User": "101"},
        history=["base", "app"])
    assert str(image.reference) == "docker.io/library/app:1"
    assert (image.entrypoint, image.cmd, image.env, image.working_dir, image.user,
            image.exposed_ports, image.stop_signal) == (
        ["/srv/app"], ["--serve"], ["A=1"], "/srv", "101", ["8080/tcp"], "SIGTERM")
    assert [la.diff_id for la in image.layers] == image.config["rootfs"]["diff_ids"]
    assert image.config["os"] == OS and image.config["architecture"] == ARCH

    manifest = json.loads(store.blob_path(image.digest).read_bytes())
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["digest"] == image.id
    for spelling in ("app:1", "docker.io/library/app:1", "library/app:1",
                     f"app@{image.digest}", f"app:other@{image.digest}"):
        assert store.resolve(spelling).digest == image.digest
    with pytest.raises(ImageNotFound):
        store.resolve("app")  # :latest was never written
    with pytest.raises(ImageNotFound):
        store.resolve(f"other@{image.digest}")

    assert store.tag("app:latest", image.digest) is True
    assert store.tag("app:latest", image.digest) is False
    infos = store.list()
    assert [(i.repository, i.tag) for i in infos] == [("docker.io/library/app", "1"),
                                                      ("docker.io/library/app", "latest")]
    assert infos[0].image_id == image.id and infos[0].digest == image.digest
    assert infos[0].size == image.size == (base.descriptor.size + top.descriptor.size
                                           + image.config_size)

    assert store.remove("app:1") is True
    assert store.remove("app:1") is False
    assert [i.tag for i in ImageStore(store.root).list()] == ["latest"]  # on disk


def test_same_inputs_same_digests(store, tmp_path):
    layer = store.add_layer(tree_of(tmp_path, "t", {"f": "x"}))
    first = store.write_image("a", [layer], {"Cmd": ["sh"]})
    again = store.write_image("a", [layer], {"Cmd": ["sh"]})
    assert (first.digest, first.id) == (again.digest, again.id)
    other = ImageStore(tmp_path / "other")
    elsewhere = other.write_image("a", [other.add_layer(tmp_path / "t")], {"Cmd": ["sh"]})
    assert elsewhere.digest == first.digest


def test_tag_refuses_incomplete_images(store, tmp_path):
    layer = store.add_layer(tree_of(tmp_path, "t", {"f": "x"}))
    image = store.write_image("a", [layer], {})
    store.blob_path(layer.descriptor.digest).unlink()
    with pytest.raises(ImageError, match="lacks layers"):
        store.tag("b", image.digest)
    config_digest, _ = store.put_blob(b"{}")
    with pytest.raises(ImageError):
        store.tag("b", config_digest)  # not a manifest


def test_put_blob_checks_digest(store):
    digest, size = store.put_blob(io.BytesIO(b"hello"))
    assert (digest, size) == (sha(b"hello"), 5)
    with pytest.raises(ImageError, match="does not match"):
        store.put_blob(b"other", expected=digest)
    assert list((store.root / "tmp").iterdir()) == []


def test_unpack_and_shared_layer_dirs(store, tmp_path):
    base = store.add_layer(tree_of(tmp_path, "base", {"etc/os": "base\n", "bin/sh": "sh"}))
    one = store.add_layer(tree_of(tmp_path, "one", {"srv/one": "1"}))
    two = store.add_layer(tree_of(tmp_path, "two", {"srv/two": "2"}))
    store.write_image("one", [base, one], {})
    store.write_image("two", [base, two], {})
    store.write_image("swapped", [one, base], {})

    dest = tmp_path / "rootfs"
    store.unpack("one", dest)
    assert (dest / "etc" / "os").read_text() == "base\n"
    assert (dest / "srv" / "one").read_text() == "1"

    dirs_one, dirs_two = store.layer_dirs("one"), store.layer_dirs("two")
    assert dirs_one[0] == dirs_two[0]  # the base layer is unpacked once
    assert dirs_one[1] != dirs_two[1]
    assert (dirs_one[0] / "etc" / "os").read_text() == "base\n"
    assert [p.name for p in (dirs_two[1] / "srv").iterdir()] == ["two"]
    assert store.layer_dirs("one") == dirs_one  # not unpacked again
    swapped = store.layer_dirs("swapped")  # same layers, other stack: other chain ids
    assert set(swapped).isdisjoint(dirs_one)
    assert len(list((store.root / "layers" / "sha256").iterdir())) == 5


def test_gc_keeps_what_references_need(store, tmp_path):
    keep = store.write_image("keep", [store.add_layer(tree_of(tmp_path, "k", {"k": "k"}))], {})
    drop = store.write_image("drop", [store.add_layer(tree_of(tmp_path, "d", {"d": "d"}))], {})
    store.layer_dirs("keep")
    store.layer_dirs("drop")
    store.remove("drop")
    assert store.gc() == []  # too new: another writer may be about to name it
    removed = store.gc(min_age=0)
    assert set(removed) == {drop.digest, drop.id, drop.layers[0].descriptor.digest,
                            drop.layers[0].diff_id}
    assert store.resolve("keep").digest == keep.digest
    assert store.layer_dirs("keep")[0].exists()
    store.unpack("keep", tmp_path / "out")
    assert store.gc(min_age=0) == []


# ---------------------------------------------------------------- docker save


def docker_save_archive(path: Path, layers: list[bytes], tags, run=None,
                        gzip_layers=False) -> tuple[str, list[str]]:
    """A `docker save` tarball in the classic layout: <id>/layer.tar, <config>.json."""
    diff_ids = [sha(data) for data in layers]
    config = image_config(diff_ids, **(run or {"Cmd": ["sh"]}))
    members = {f"{sha(config)[7:]}.json": config}
    names = []
    for i, data in enumerate(layers):
        name = f"{i + 1:064x}/layer.tar"
        members[name] = gzip.compress(data, mtime=0) if gzip_layers else data
        members[f"{i + 1:064x}/VERSION"] = b"1.0"
        names.append(name)
    members["manifest.json"] = json.dumps([{"Config": f"{sha(config)[7:]}.json",
                                            "RepoTags": tags, "Layers": names}]).encode()
    if tags:
        repo, _, tag = tags[0].rpartition(":")
        members["repositories"] = json.dumps({repo: {tag: f"{len(layers):064x}"}}).encode()
    write_archive(path, members)
    return sha(config), diff_ids


def test_import_docker_save(store, tmp_path):
    base = layer_tar({"bin/": "", "bin/sh": "shell", "etc/": "", "etc/gone": "x"})
    top = layer_tar({"etc/.wh.gone": "", "etc/motd": "hi"})
    archive = tmp_path / "save.tar"
    config_digest, diff_ids = docker_save_archive(archive, [base, top],
                                                  ["myapp:1.0", "registry.local:5000/x/myapp:1.0"])
    images = store.import_archive(archive)
    assert [str(i.reference) for i in images] == ["docker.io/library/myapp:1.0",
                                                  "registry.local:5000/x/myapp:1.0"]
    image = store.resolve("myapp:1.0")
    assert image.id == config_digest  # the same image ID docker shows
    assert [la.diff_id for la in image.layers] == diff_ids
    assert image.cmd == ["sh"]
    store.unpack("myapp:1.0", tmp_path / "root")
    assert sorted(os.listdir(tmp_path / "root" / "etc")) == ["motd"]
    assert (tmp_path / "root" / "bin" / "sh").read_text() == "shell"
    assert store.import_archive(archive)[0].digest == image.digest  # again: same image


def test_import_docker_save_new_layout_and_gzip(store, tmp_path):
    """Docker 25 names members by digest; other tools gzip layers or link duplicates."""
    data = layer_tar({"f": "one"})
    gz = gzip.compress(data, mtime=0)
    config = image_config([sha(data), sha(data)])
    members = {f"blobs/sha256/{sha(config)[7:]}": config, f"blobs/sha256/{sha(gz)[7:]}": gz,
               "manifest.json": json.dumps([{
                   "Config": f"blobs/sha256/{sha(config)[7:]}", "RepoTags": ["two:layers"],
                   "Layers": [f"blobs/sha256/{sha(gz)[7:]}", "dup/layer.tar"]}]).encode()}
    write_archive(tmp_path / "a.tar", members, links={"dup/layer.tar": f"../blobs/sha256/"
                                                                       f"{sha(gz)[7:]}"})
    [image] = store.import_archive(tmp_path / "a.tar")
    assert [la.descriptor.media_type for la in image.layers] == [
        "application/vnd.oci.image.layer.v1.tar+gzip"] * 2
    assert image.layers[0].descriptor.digest == sha(gz)


def test_import_rejects_corrupt_layers(store, tmp_path):
    archive = tmp_path / "bad.tar"
    docker_save_archive(archive, [layer_tar({"f": "x"})], ["bad:1"])
    with tarfile.open(archive) as tf:
        members = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
    members[f"{1:064x}/layer.tar"] = layer_tar({"f": "tampered"})
    write_archive(archive, members)
    with pytest.raises(ImageError, match="unpacks to"):
        store.import_archive(archive)
    assert store.list() == []


def test_import_errors(store, tmp_path):
    untagged = tmp_path / "untagged.tar"
    docker_save_archive(untagged, [layer_tar({"f": "x"})], None)
    with pytest.raises(ImageError, match="no image in the archive has a name"):
        store.import_archive(untagged)
    other = tmp_path / "other.tar"
    write_archive(other, {"hello.txt": b"hi"})
    with pytest.raises(ImageError, match="neither"):
        store.import_archive(other)
    (tmp_path / "junk").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ImageError, match="not a readable tar"):
        store.import_archive(tmp_path / "junk")


# ---------------------------------------------------------------- OCI archives


def oci_archive(path: Path, entries: list[tuple[dict, bytes]], blobs: dict[str, bytes]) -> None:
    """An OCI image layout: index.json entries (annotations, manifest or index body)."""
    members = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}'}
    index = []
    for annotations, body in entries:
        blobs[sha(body)] = body
        media = json.loads(body)["mediaType"]
        index.append({"mediaType": media, "digest": sha(body), "size": len(body),
                      "annotations": annotations})
    members["index.json"] = json.dumps({"schemaVersion": 2, "manifests": index}).encode()
    for digest, data in blobs.items():
        members[f"blobs/sha256/{digest[7:]}"] = data
    write_archive(path, members)


def oci_manifest(blobs: dict[str, bytes], layers: list[bytes], **run) -> bytes:
    gz = [gzip.compress(data, mtime=0) for data in layers]
    config = image_config([sha(data) for data in layers], **run)
    blobs[sha(config)] = config
    for g in gz:
        blobs[sha(g)] = g
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha(g), "size": len(g)} for g in gz]}).encode()


def test_import_oci_archive(store, tmp_path):
    blobs: dict[str, bytes] = {}
    plain = oci_manifest(blobs, [layer_tar({"etc/": "", "etc/a": "a"})], Cmd=["a"])
    host = oci_manifest(blobs, [layer_tar({"etc/": "", "etc/b": "b"})], Cmd=["b"])
    foreign = json.dumps({"mediaType": "application/vnd.oci.image.manifest.v1+json"}).encode()
    blobs[sha(host)] = host
    other_arch = "s390x" if ARCH != "s390x" else "amd64"
    multi = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [  # the other platform's blobs are not in the archive
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(foreign),
             "size": len(foreign), "platform": {"os": "linux", "architecture": other_arch}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(host),
             "size": len(host), "platform": {"os": OS, "architecture": ARCH}}]}).encode()
    archive = tmp_path / "oci.tar"
    oci_archive(archive, [
        ({"org.opencontainers.image.ref.name": "quay.io/team/plain:v1"}, plain),
        ({"io.containerd.image.name": "docker.io/library/multi:2",
          "org.opencontainers.image.ref.name": "2"}, multi),
        ({}, plain),  # unnamed: skipped
    ], blobs)
    images = store.import_archive(archive)
    assert [str(i.reference) for i in images] == ["quay.io/team/plain:v1",
                                                  "docker.io/library/multi:2"]
    assert images[0].digest == sha(plain)  # manifests are kept byte for byte
    assert images[1].digest == sha(host)
    assert store.resolve("multi:2").cmd == ["b"]
    store.unpack("quay.io/team/plain:v1", tmp_path / "root")
    assert (tmp_path / "root" / "etc" / "a").read_text() == "a"


def test_import_oci_checks_blob_digests(store, tmp_path):
    blobs: dict[str, bytes] = {}
    manifest = oci_manifest(blobs, [layer_tar({"f": "x"})])
    layer_digest = json.loads(manifest)["layers"][0]["digest"]
    blobs[layer_digest] = gzip.compress(layer_tar({"f": "evil"}), mtime=0)
    archive = tmp_path / "oci.tar"
    oci_archive(archive, [({"org.opencontainers.image.ref.name": "x:1"}, manifest)], blobs)
    with pytest.raises(ImageError, match="does not match"):
        store.import_archive(archive)
    assert store.list() == []


def test_import_oci_without_host_platform(store, tmp_path):
    blobs: dict[str, bytes] = {}
    manifest = oci_manifest(blobs, [layer_tar({"f": "x"})])
    index = json.dumps({"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest),
         "size": len(manifest), "platform": {"os": "windows", "architecture": ARCH}}]}).encode()
    blobs[sha(manifest)] = manifest
    archive = tmp_path / "oci.tar"
    oci_archive(archive, [({"io.containerd.image.name": "win:1"}, index)], blobs)
    with pytest.raises(ImageError, match=f"no {OS}/{ARCH} image"):
        store.import_archive(archive)
