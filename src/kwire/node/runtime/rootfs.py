"""A container's root file system: an overlay mount of its image's layer dirs.

Per container, under its own directory ``D``::

    D/upper/   what the container writes (lost when the container is removed)
    D/work/    overlayfs work space
    D/rootfs/  the mount point, runc's root.path

The lower dirs are the image store's unpacked layers (``ImageStore.layer_dirs``,
base first), shared read-only by every container of every image that has them.
Mounting and unmounting are idempotent, so an agent restarting half-way through
either simply does it again.
"""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from kwire.node.runtime.spec import UserFiles

MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
MAX_OPTIONS = 4095
"""The kernel copies at most one page of mount options."""


class RootfsError(OSError):
    pass


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points(mountinfo: str | None = None) -> list[str]:
    """Every mount point in this mount namespace (from /proc/self/mountinfo)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    return [_unescape(line.split(" ")[4]) for line in mountinfo.splitlines() if line]


def is_mounted(path: Path | str, mountinfo: str | None = None) -> bool:
    return os.path.realpath(path) in mount_points(mountinfo)


def mount(source: str, target: Path | str, fstype: str, flags: int = 0, data: str = "") -> None:
    rc = _libc.mount(source.encode(), str(target).encode(), fstype.encode(), flags,
                     data.encode() if data else None)
    if rc != 0:
        err = ctypes.get_errno()
        raise RootfsError(err, f"mount {fstype} on {target} ({data}): {os.strerror(err)}")


def unmount(target: Path | str) -> bool:
    """Unmount ``target`` if it is mounted (lazily when busy); False if it was not."""
    target = os.path.realpath(target)
    if not is_mounted(target):
        return False
    while is_mounted(target):
        if _libc.umount2(target.encode(), 0) != 0:
            err = ctypes.get_errno()
            if err == errno.EBUSY:
                if _libc.umount2(target.encode(), MNT_DETACH) == 0:
                    continue
                err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                break
            raise RootfsError(err, f"umount {target}: {os.strerror(err)}")
    return True


def overlay_options(layer_dirs: Sequence[Path], upper: Path, work: Path) -> str:
    """overlayfs options: the top layer first in lowerdir, as overlayfs stacks them."""
    lower = ":".join(str(d) for d in reversed(layer_dirs))
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if len(options) > MAX_OPTIONS:
        raise RootfsError(errno.E2BIG, f"overlay options for {len(layer_dirs)} layers exceed a page")
    return options


def mount_rootfs(layer_dirs: Sequence[Path], container_dir: Path) -> Path:
    """Mount the container's overlay (if not mounted yet) and return its rootfs path."""
    container_dir = Path(os.path.realpath(container_dir))
    upper, work, rootfs = container_dir / "upper", container_dir / "work", container_dir / "rootfs"
    if is_mounted(rootfs):
        return rootfs
    for d in (upper, work, rootfs):
        d.mkdir(parents=True, exist_ok=True)
    dirs = list(layer_dirs)
    if not dirs:  # an image with no layers: overlayfs still wants a lower dir
        empty = container_dir / "empty"
        empty.mkdir(exist_ok=True)
        dirs = [empty]
    mount("overlay", rootfs, "overlay", 0, overlay_options(dirs, upper, work))
    return rootfs


def remove_rootfs(container_dir: Path) -> None:
    """Unmount the overlay and delete the container's dir (its writes); idempotent."""
    container_dir = Path(os.path.realpath(container_dir))
    unmount(container_dir / "rootfs")
    if container_dir.exists():
        # anything still mounted below (never expected) must go before the rmtree
        for point in sorted((p for p in mount_points() if p.startswith(str(container_dir) + "/")),
                            key=len, reverse=True):
            unmount(point)
        shutil.rmtree(container_dir)


# ------------------------------------------------------------------ reading the image


MAX_SYMLINKS = 40


def resolve_in_root(root: Path | str, path: str) -> Path:
    """``path`` as seen inside ``root``: every symlink on the way is followed as the
    container would follow it, an absolute target restarting from ``root`` and
    ``..`` never leaving it (a securejoin). The result need not exist."""
    root = Path(os.path.realpath(root))
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if current:
                current.pop()
            continue
        candidate = root.joinpath(*current, part)
        if candidate.is_symlink():
            hops += 1
            if hops > MAX_SYMLINKS:
                raise RootfsError(errno.ELOOP, f"too many symlinks resolving {path} in {root}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        current.append(part)
    return root.joinpath(*current)


def read_in_root(root: Path | str, path: str, limit: int = 1 << 20) -> str | None:
    """A text file of the container's root (at most ``limit`` bytes), or None when
    it is missing or not a regular file."""
    target = resolve_in_root(root, path)
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit).decode(errors="replace")
    finally:
        os.close(fd)


def user_files(root: Path | str) -> UserFiles:
    """The image's /etc/passwd and /etc/group, for build_spec to resolve names."""
    return UserFiles(read_in_root(root, "/etc/passwd") or "", read_in_root(root, "/etc/group") or "")
