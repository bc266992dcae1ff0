"""Layer tarballs: writing them reproducibly and applying them with whiteouts.

A layer is a tar of the files one build step changed; a file removed by a later
layer is recorded as an empty ``.wh.<name>`` entry, and a directory whose lower
contents are all hidden carries ``.wh..wh..opq`` (the OCI image-spec's whiteouts).

Layers are applied in two ways:
- *merged*: every layer of an image in order into one directory, whiteouts deleting
  what lower layers wrote (``ImageStore.unpack``);
- *overlay*: each layer into its own directory, to be stacked as overlayfs lower dirs
  (``ImageStore.layer_dirs``); whiteouts then become what overlayfs reads: a 0/0
  character device for a removed name and the ``trusted.overlay.opaque`` xattr for an
  opaque directory. Paths are resolved through the lower layers, as containerd does
  when it applies a layer over its parent snapshot, so a symlinked parent
  (``lib -> usr/lib``) sends a file where the merged view would, a hardlink to a lower
  file becomes a copy and a new directory over a lower one keeps its mode and owner.

Names in a tar are never trusted: ``..`` is refused and symlinks are followed only
inside the root being written, as filepath-securejoin does for runc.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from kwire.node.images.errors import ImageError

LAYER_MTIME = 0
"""Every entry of a built layer gets this mtime, so the same tree gives the same digest."""
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_MAX_SYMLINKS = 40
CHUNK = 1 << 20


# ---------------------------------------------------------------- writing


def write_layer_tar(src: Path, out: BinaryIO) -> None:
    """Write the tree under ``src`` as an uncompressed layer tar to ``out``.

    Entries come in sorted order with owner root:root, no user or group names and
    mtime LAYER_MTIME, so only names, modes and contents reach the digest; files
    with several links in the tree become hardlink entries. The root itself is
    not an entry: the root directory's attributes belong to the image, not a step.
    """
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for path, arcname in _walk_sorted(src):
            info = tf.gettarinfo(str(path), arcname)
            if info is None:  # a socket: tar(1) skips those too
                continue
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = LAYER_MTIME
            info.mode &= 0o7777
            if info.isreg():
                with open(path, "rb") as f:
                    tf.addfile(info, f)
            else:
                tf.addfile(info)


def _walk_sorted(root: Path, prefix: str = "") -> Iterator[tuple[Path, str]]:
    for name in sorted(os.listdir(root)):
        path = root / name
        arcname = f"{prefix}{name}"
        yield path, arcname
        if path.is_dir() and not path.is_symlink():
            yield from _walk_sorted(path, f"{arcname}/")


# ---------------------------------------------------------------- reading


class DigestReader:
    """Reads through to a stream while hashing what passed, so that a layer's diff
    id is checked in the same pass that applies or copies it."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self._hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self._hash.update(data)
        return data

    def drain(self) -> str:
        """Read what is left (a tar's trailing blocks) and return the digest of all."""
        while self.read(CHUNK):
            pass
        return "sha256:" + self._hash.hexdigest()


@contextmanager
def layer_stream(blob: Path) -> Iterator[DigestReader]:
    """The uncompressed tar stream of a layer blob, whatever its compression.

    Compression is read from the first bytes rather than from the media type,
    because `docker save` archives and some registries label layers loosely.
    """
    with open(blob, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=f, mode="rb") as g:
                yield DigestReader(g)
        elif magic == b"\x28\xb5\x2f\xfd":
            raise ImageError(f"layer {blob.name} is zstd-compressed, which kwire cannot read")
        else:
            yield DigestReader(f)


def diff_id_of(blob: Path) -> str:
    """The digest of a layer's uncompressed tar, which image configs list."""
    with layer_stream(blob) as stream:
        return stream.drain()


# ---------------------------------------------------------------- applying


def apply_layer(blob: Path, dest: Path, lowers: Sequence[Path] | None = None,
                diff_id: str | None = None) -> None:
    """Apply one layer blob to ``dest``.

    With ``lowers`` None, ``dest`` is a whole root file system and whiteouts delete
    (merged). With ``lowers`` (the layer dirs below, top first; empty for a base
    layer), ``dest`` is a fresh directory for this layer alone, in overlayfs form.
    With ``diff_id``, the uncompressed stream must hash to it, else ImageError.
    """
    with layer_stream(blob) as stream:
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            _Applier(dest, lowers).apply(tf)
        got = stream.drain()
    if diff_id is not None and got != diff_id:
        raise ImageError(f"layer {blob.name} unpacks to {got}, the image says {diff_id}")


class _Applier:
    def __init__(self, dest: Path, lowers: Sequence[Path] | None):
        self.dest = dest
        self.overlay = lowers is not None
        self.stack = [dest, *(lowers or ())]
        self.root_owner = os.geteuid() == 0
        self.written: set[Path] = {dest}
        """Paths this layer wrote, with their parents: what an opaque marker keeps."""
        self.dir_times: list[tuple[Path, int]] = []

    def apply(self, tf: tarfile.TarFile) -> None:
        for member in tf:
            parts = _clean_name(member.name)
            if not parts:  # the root entry "./"
                if member.isdir():
                    self._set_attrs(self.dest, member)
                continue
            parent = self._resolve(parts[:-1], create=True)
            base = parts[-1]
            if base == OPAQUE_MARKER:
                self._opaque(parent)
            elif base.startswith(WHITEOUT_PREFIX):
                hidden = base[len(WHITEOUT_PREFIX):]
                if hidden in ("", ".", ".."):
                    raise ImageError(f"layer entry {member.name!r} is not a valid whiteout")
                self._whiteout(parent / hidden)
            else:
                self._create(tf, member, parent / base)
        for path, mtime in reversed(self.dir_times):  # after their children were written
            os.utime(path, (mtime, mtime), follow_symlinks=False)

    # ---- path resolution

    def _lookup(self, rel: tuple[str, ...], depth: int) -> tuple[int, Path, os.stat_result] | None:
        """The topmost of the first ``depth`` layers that has ``rel``; None if hidden."""
        for i, top in enumerate(self.stack[:depth]):
            path = top.joinpath(*rel)
            try:
                st = path.lstat()
            except (FileNotFoundError, NotADirectoryError):
                continue
            if self.overlay and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return None  # an overlay whiteout: hidden from here down
            return i, path, st
        return None

    def _resolve(self, parts: Sequence[str], create: bool) -> Path:
        """The directory (create=True) or entry (create=False, last symlink not
        followed) that ``parts`` names in ``dest``, following symlinks within the root.

        With create, missing directories are made in ``dest``, copying mode and
        owner from a lower layer's directory of the same path when there is one.
        """
        todo = list(parts)
        done: list[str] = []
        depth = len(self.stack)
        links = 0
        while todo:
            name = todo.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if done:
                    done.pop()
                continue
            rel = (*done, name)
            found = self._lookup(rel, depth)
            if found and stat.S_ISLNK(found[2].st_mode) and (create or todo):
                links += 1
                if links > _MAX_SYMLINKS:
                    raise ImageError(f"too many levels of symbolic links in {'/'.join(parts)}")
                target = os.readlink(found[1])
                base = [] if target.startswith("/") else done
                todo = [*base, *target.split("/"), *todo]  # walk again from the root
                done, depth = [], len(self.stack)
                continue
            done.append(name)
            if not create:
                continue
            here = self.dest.joinpath(*rel)
            if found and stat.S_ISDIR(found[2].st_mode):
                if found[0] > 0:
                    here.mkdir()
                    self._copy_dir_attrs(found[2], here)
                if self.overlay and _is_opaque(found[1]):
                    depth = found[0] + 1  # layers below an opaque dir are hidden
            else:
                _remove(here)  # a file in the way, or this layer's own whiteout
                here.mkdir(mode=0o755)
                os.chmod(here, 0o755)
                depth = 1  # a new directory hides whatever lies below it
            self.written.add(here)
        return self.dest.joinpath(*done)

    def _copy_dir_attrs(self, st: os.stat_result, path: Path) -> None:
        if self.root_owner:
            os.lchown(path, st.st_uid, st.st_gid)
        os.chmod(path, stat.S_IMODE(st.st_mode))

    # ---- whiteouts

    def _whiteout(self, path: Path) -> None:
        _remove(path)
        if self.overlay:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))

    def _opaque(self, directory: Path) -> None:
        if self.overlay:
            os.setxattr(directory, OPAQUE_XATTR, b"y")
            return
        for child in list(directory.iterdir()):
            if child not in self.written:
                _remove(child)

    # ---- entries

    def _create(self, tf: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
        if member.isdir():
            if not (path.is_dir() and not path.is_symlink()):
                _remove(path)
                path.mkdir()
            self._set_attrs(path, member)
            self.dir_times.append((path, int(member.mtime)))
        else:
            _remove(path)
            if member.isreg():
                self._write_file(tf, member, path)
            elif member.issym():
                os.symlink(member.linkname, path)
            elif member.islnk():
                self._hardlink(member, path)
            elif member.isfifo():
                os.mkfifo(path)
            elif member.ischr() or member.isblk():
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
            else:
                raise ImageError(f"unsupported tar entry type {member.type!r} for {member.name}")
            if not member.islnk():
                self._set_attrs(path, member)
                os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)
        self.written.add(path)

    def _write_file(self, tf: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
        src = tf.extractfile(member)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)

    def _hardlink(self, member: tarfile.TarInfo, path: Path) -> None:
        target = self._resolve(_clean_name(member.linkname), create=False)
        found = self._lookup(target.relative_to(self.dest).parts, len(self.stack))
        if not found or stat.S_ISDIR(found[2].st_mode):
            raise ImageError(f"hardlink {member.name} -> {member.linkname}: no such file")
        if found[0] == 0:
            os.link(found[1], path, follow_symlinks=False)
            return
        shutil.copy2(found[1], path, follow_symlinks=False)  # a lower file: copy it up
        if self.root_owner:
            os.lchown(path, found[2].st_uid, found[2].st_gid)

    def _set_attrs(self, path: Path, member: tarfile.TarInfo) -> None:
        """Owner (when root), then mode (chown clears set-id bits), then xattrs."""
        if self.root_owner:
            os.lchown(path, member.uid, member.gid)
            for key, value in member.pax_headers.items():
                if key.startswith("SCHILY.xattr."):
                    os.setxattr(path, key[len("SCHILY.xattr."):],
                                value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        if not member.issym():
            os.chmod(path, member.mode & 0o7777)


def _clean_name(name: str) -> tuple[str, ...]:
    """A tar member name as path parts under the root; refuses to climb out of it."""
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ImageError(f"layer entry {name!r} climbs out of the root")
    return parts


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()
