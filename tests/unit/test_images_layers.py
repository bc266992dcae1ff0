"""Layer tars: reproducible from a tree, and applied with whiteouts, both merged
(ImageStore.unpack) and per layer in overlayfs form (ImageStore.layer_dirs)."""
import io
import os
import stat
import tarfile
import tempfile
from pathlib import Path

import pytest

from kwire.node.images import ImageError, ImageStore
from kwire.node.images.layers import LAYER_MTIME, apply_layer, diff_id_of, write_layer_tar

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="overlay whiteouts are 0/0 devices and trusted xattrs")


@pytest.fixture
def tmp_path():
    """A temporary directory removed after the test, pass or fail (pytest keeps its own)."""
    with tempfile.TemporaryDirectory(prefix="kwire-images-") as d:
        yield Path(d)


def layer_tar(*entries) -> bytes:
    """A tar from (name, kind, arg): kind is file (arg: text), dir (arg: mode or None),
    symlink or hardlink (arg: target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, arg in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_000_000
            if kind == "file":
                data = arg.encode()
                info.size, info.mode = len(data), 0o644
                tf.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, arg or 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, arg
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, arg
            tf.addfile(info)
    return buf.getvalue()


def blob(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def tree(root: Path) -> dict[str, str]:
    """What a directory holds: file text, 'dir', '-> target', or 'whiteout'."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "-> " + os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            elif stat.S_ISCHR(st.st_mode):
                out[rel] = "whiteout" if st.st_rdev == 0 else "chardev"
            else:
                out[rel] = path.read_text()
    return out


# ---------------------------------------------------------------- writing


def make_tree(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "motd").write_text("hello\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    os.chmod(root / "bin" / "tool", 0o755)
    os.symlink("tool", root / "bin" / "alias")
    os.link(root / "bin" / "tool", root / "bin" / "hard")
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)


def test_layer_tar_is_reproducible(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_tree(a)
    make_tree(b)
    os.utime(b / "etc" / "motd", (12345, 12345))  # other times and order of creation
    (b / "zz").mkdir()
    (b / "zz").rmdir()
    out_a, out_b = io.BytesIO(), io.BytesIO()
    write_layer_tar(a, out_a)
    write_layer_tar(b, out_b)
    assert out_a.getvalue() == out_b.getvalue()

    with tarfile.open(fileobj=io.BytesIO(out_a.getvalue())) as tf:
        members = tf.getmembers()
    assert [m.name for m in members] == ["bin", "bin/alias", "bin/hard", "bin/tool",
                                         "etc", "etc/motd", "tmp"]
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "" and m.mtime == LAYER_MTIME
               for m in members)
    by_name = {m.name: m for m in members}
    assert by_name["bin/alias"].issym() and by_name["bin/alias"].linkname == "tool"
    assert by_name["bin/hard"].isreg()  # the first name of an inode carries the data
    assert by_name["bin/tool"].islnk() and by_name["bin/tool"].linkname == "bin/hard"
    assert by_name["bin/hard"].mode == 0o755
    assert by_name["tmp"].mode == 0o1777


def test_add_layer_same_tree_same_blob(tmp_path):
    store = ImageStore(tmp_path / "store")
    make_tree(tmp_path / "a")
    make_tree(tmp_path / "b")
    layer_a = store.add_layer(tmp_path / "a")
    store.write_image("x", [layer_a], {})
    layer_b = store.add_layer(tmp_path / "b")
    assert layer_a == layer_b
    assert layer_a.descriptor.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert diff_id_of(store.blob_path(layer_a.descriptor.digest)) == layer_a.diff_id

    fresh = ImageStore(tmp_path / "fresh")  # compressed again: byte for byte the same
    assert fresh.add_layer(tmp_path / "b") == layer_a
    (tmp_path / "b" / "etc" / "motd").write_text("changed\n")
    assert store.add_layer(tmp_path / "b").diff_id != layer_a.diff_id


# ---------------------------------------------------------------- merged


BASE = layer_tar(
    ("a", "dir", None), ("a/one", "file", "1"), ("a/two", "file", "2"),
    ("b", "dir", None), ("b/x", "file", "x"),
    ("d", "dir", 0o750), ("d/old", "file", "old"), ("d/sub", "dir", None),
    ("d/sub/deep", "file", "deep"),
    ("e", "dir", None), ("e/old", "file", "old"),
    ("keep", "file", "keep"),
)
UPPER = layer_tar(
    ("a/.wh.one", "file", ""),
    (".wh.b", "file", ""),
    ("d", "dir", 0o750), ("d/.wh..wh..opq", "file", ""), ("d/new", "file", "new"),
    ("e/new", "file", "new"), ("e/.wh..wh..opq", "file", ""),  # marker after the entry
    ("keep", "file", "kept"),
)


def test_merged_whiteouts_and_opaque_dirs(tmp_path):
    dest = tmp_path / "root"
    dest.mkdir()
    apply_layer(blob(tmp_path, "base", BASE), dest)
    apply_layer(blob(tmp_path, "upper", UPPER), dest)
    assert tree(dest) == {"a": "dir", "a/two": "2", "d": "dir", "d/new": "new",
                          "e": "dir", "e/new": "new", "keep": "kept"}
    assert stat.S_IMODE((dest / "d").stat().st_mode) == 0o750
    assert (dest / "keep").stat().st_mtime == 1_000_000


def test_entries_replace_other_kinds(tmp_path):
    dest = tmp_path / "root"
    dest.mkdir()
    apply_layer(blob(tmp_path, "1", layer_tar(("x", "dir", None), ("x/f", "file", "f"),
                                              ("y", "file", "y"))), dest)
    apply_layer(blob(tmp_path, "2", layer_tar(("x", "file", "now a file"),
                                              ("y", "symlink", "x"))), dest)
    assert tree(dest) == {"x": "now a file", "y": "-> x"}


def test_paths_stay_inside_the_root(tmp_path):
    dest = tmp_path / "root"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    with pytest.raises(ImageError, match="climbs out"):
        apply_layer(blob(tmp_path, "dots", layer_tar(("../evil", "file", "x"))), dest)
    for name in (".wh.", ".wh..", "sub/.wh..."):  # a whiteout of the root or its parent
        with pytest.raises(ImageError, match="not a valid whiteout"):
            apply_layer(blob(tmp_path, "wh", layer_tar((name, "file", ""))), dest)
    assert dest.is_dir() and outside.is_dir()
    # symlinks, absolute or relative, are followed as if the root were /
    apply_layer(blob(tmp_path, "links", layer_tar(
        ("abs", "symlink", str(outside)), ("abs/f1", "file", "1"),
        ("rel", "symlink", "../../../outside"), ("rel/f2", "file", "2"),
        ("top", "symlink", "/"), ("top/f3", "file", "3"))), dest)
    assert list(outside.iterdir()) == []
    assert (dest / str(outside).lstrip("/") / "f1").read_text() == "1"
    assert (dest / "outside" / "f2").read_text() == "2"
    assert (dest / "f3").read_text() == "3"


def test_symlink_loop_is_an_error(tmp_path):
    dest = tmp_path / "root"
    dest.mkdir()
    with pytest.raises(ImageError, match="symbolic links"):
        apply_layer(blob(tmp_path, "loop", layer_tar(("l1", "symlink", "l2"),
                                                     ("l2", "symlink", "l1"),
                                                     ("l1/f", "file", "x"))), dest)


def test_hardlinks_within_a_layer(tmp_path):
    dest = tmp_path / "root"
    dest.mkdir()
    apply_layer(blob(tmp_path, "h", layer_tar(("bin", "dir", None), ("bin/a", "file", "A"),
                                              ("bin/b", "hardlink", "bin/a"))), dest)
    assert (dest / "bin" / "a").stat().st_ino == (dest / "bin" / "b").stat().st_ino
    with pytest.raises(ImageError, match="no such file"):
        apply_layer(blob(tmp_path, "bad", layer_tar(("c", "hardlink", "missing"))), dest)


def test_diff_id_is_checked(tmp_path):
    dest = tmp_path / "root"
    dest.mkdir()
    with pytest.raises(ImageError, match="unpacks to"):
        apply_layer(blob(tmp_path, "b", BASE), dest, diff_id="sha256:" + "0" * 64)


# ---------------------------------------------------------------- overlay form


@needs_root
def test_overlay_whiteouts_and_opaque_dirs(tmp_path):
    low, up = tmp_path / "low", tmp_path / "up"
    low.mkdir()
    up.mkdir()
    apply_layer(blob(tmp_path, "base", BASE), low, lowers=[])
    apply_layer(blob(tmp_path, "upper", UPPER), up, lowers=[low])
    assert tree(up) == {"a": "dir", "a/one": "whiteout", "b": "whiteout",
                        "d": "dir", "d/new": "new", "e": "dir", "e/new": "new",
                        "keep": "kept"}
    assert os.getxattr(up / "d", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(up / "e", "trusted.overlay.opaque") == b"y"
    assert tree(low)["b/x"] == "x"  # lower layers are never touched


@needs_root
def test_overlay_resolves_through_lower_layers(tmp_path):
    low, up = tmp_path / "low", tmp_path / "up"
    low.mkdir()
    up.mkdir()
    apply_layer(blob(tmp_path, "base", layer_tar(
        ("usr", "dir", None), ("usr/lib", "dir", None), ("lib", "symlink", "usr/lib"),
        ("tmp", "dir", 0o1777), ("bin", "dir", None), ("bin/busybox", "file", "bb"))), low,
        lowers=[])
    apply_layer(blob(tmp_path, "upper", layer_tar(
        ("lib/libx.so", "file", "x"),            # through the lower symlink
        ("tmp/file", "file", "t"),               # into a lower dir, keeping its mode
        ("bin/sh", "hardlink", "bin/busybox"))), up, lowers=[low])
    assert tree(up) == {"usr": "dir", "usr/lib": "dir", "usr/lib/libx.so": "x",
                        "tmp": "dir", "tmp/file": "t", "bin": "dir", "bin/sh": "bb"}
    assert stat.S_IMODE((up / "tmp").stat().st_mode) == 0o1777


@needs_root
def test_overlay_hidden_lower_paths_are_not_followed(tmp_path):
    low, mid, up = tmp_path / "low", tmp_path / "mid", tmp_path / "up"
    for d in (low, mid, up):
        d.mkdir()
    apply_layer(blob(tmp_path, "l", layer_tar(("x", "symlink", "y"), ("d", "dir", None),
                                              ("d/lnk", "symlink", "/y"))), low, lowers=[])
    apply_layer(blob(tmp_path, "m", layer_tar((".wh.x", "file", ""), ("d", "dir", None),
                                              ("d/.wh..wh..opq", "file", ""))), mid,
                lowers=[low])
    apply_layer(blob(tmp_path, "u", layer_tar(("x/f", "file", "1"), ("d/lnk/g", "file", "2"))),
                up, lowers=[mid, low])
    assert tree(up) == {"x": "dir", "x/f": "1", "d": "dir", "d/lnk": "dir", "d/lnk/g": "2"}
