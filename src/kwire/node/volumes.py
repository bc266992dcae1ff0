"""A pod's volumes on the node, laid out and filled as the kubelet's volume plugins
do, and each container's bind mounts of them.

Under the pod's directory (``NodePaths.pod_dir``)::

    volumes/kubernetes.io~empty-dir/<name>      emptyDir: a directory, or a tmpfs (Memory)
    volumes/kubernetes.io~configmap/<name>      configMap: a directory
    volumes/kubernetes.io~secret/<name>         secret: a tmpfs
    volumes/kubernetes.io~projected/<name>      projected: a tmpfs
    volumes/kubernetes.io~downward-api/<name>   downwardAPI: a tmpfs

hostPath volumes are the host path itself. configMap, secret, projected and
downwardAPI volumes are written with the kubelet's AtomicWriter layout: the files
live in a timestamped ``..<ts>`` directory, ``..data`` links to it and is swapped
by one rename, and each top-level name is a link ``name -> ..data/name``. So
``setup_volumes`` can run again at any time (the agent re-syncs periodically) and a
changed ConfigMap reaches running containers all at once, as upstream's eventual
update does; a subPath mount of such a file keeps the old one, as upstream.

tmpfs volumes are mounts in the mount namespace of the process that set them up:
the agent's, which runc inherits. ``teardown_volumes`` must run there too, when
the pod goes and at ``kwire down``, or the tmpfs stays.

Pure: ``volume_kind``, ``volume_path``, ``referenced_objects``, ``volume_files``
(the files of a volume from the pod and the objects it names) and ``tmpfs_size``.
The rest is the thin part that touches the machine.

Not here: persistentVolumeClaim and the other network or cloud volumes (a clear
FailedMount), serviceAccountToken projections (skipped: there is no token issuer
yet), eviction for an emptyDir over its sizeLimit on disk, fsGroupChangePolicy
(ownership is always applied) and recursiveReadOnly.
"""
from __future__ import annotations

import asyncio
import base64
import errno
import os
import posixpath
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kwire.api import validation as v
from kwire.node.envvars import (FieldError, Getter, ceil_int, field_value, find_container,
                                resource_value, secret_bytes)
from kwire.node.runtime import rootfs
from kwire.node.runtime.spec import Mount, SpecError, container_env, expand

PLUGIN_DIRS = {
    "emptyDir": "kubernetes.io~empty-dir",
    "configMap": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
    "projected": "kubernetes.io~projected",
    "downwardAPI": "kubernetes.io~downward-api",
}
READ_ONLY_KINDS = ("configMap", "secret", "projected", "downwardAPI")
"""Volumes every container mounts read-only, whatever its volumeMount says."""
MEMORY_BACKED = ("secret", "projected", "downwardAPI")
"""Volumes upstream keeps on a tmpfs, so secrets never reach a disk."""
DEFAULT_MODE = 0o644
DATA_DIR = "..data"
DATA_DIR_TMP = "..data_tmp"
MAX_FILE_NAME = 255
MAX_PATH = 4096
PROPAGATION = {None: "rprivate", "None": "rprivate", "HostToContainer": "rslave",
               "Bidirectional": "rshared"}

Objects = Mapping[tuple[str, str], "dict | None"]
"""ConfigMaps and Secrets by (plural, name); None for one that does not exist."""
Payload = dict[str, tuple[bytes, int]]
"""A volume's files: relative path -> (content, mode)."""


class VolumeError(Exception):
    """Volumes could not be set up. ``messages`` holds one message per failed volume,
    shaped as upstream's FailedMount events: ``MountVolume.SetUp failed for volume
    "cfg" : configmap "x" not found``."""

    def __init__(self, *messages: str):
        super().__init__("; ".join(messages))
        self.messages = list(messages)


class MountError(SpecError):
    """A container's volumeMounts cannot be made; the message is the kubelet's. A
    SpecError: like one, the agent shows it as CreateContainerConfigError."""


class _Failure(Exception):
    """Why one volume failed (upstream's messages, aggregated as utilerrors does)."""

    def __init__(self, *messages: str):
        super().__init__(*messages)
        self.messages = list(messages)

    def __str__(self) -> str:
        unique = list(dict.fromkeys(self.messages))
        return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _failed(volume: Mapping[str, Any], detail: str) -> VolumeError:
    return VolumeError(f'MountVolume.SetUp failed for volume "{volume["name"]}" : {detail}')


# ------------------------------------------------------------------ pure


def volume_kind(volume: Mapping[str, Any]) -> str:
    """The volume's source field ("emptyDir", "configMap", ...); none means emptyDir,
    as the API's defaulting gives."""
    for key, value in volume.items():
        if key != "name" and value is not None:
            return key
    return "emptyDir"


def volume_path(pod_dir: Path, volume: Mapping[str, Any]) -> Path:
    """Where the volume lives on the host; VolumeError for a kind kwire does not have."""
    kind = volume_kind(volume)
    if kind == "hostPath":
        return Path(volume["hostPath"]["path"])
    if kind not in PLUGIN_DIRS:
        raise _failed(volume, f"no volume plugin matched: {kind} volumes are not supported "
                              "by kwire")
    return Path(pod_dir) / "volumes" / PLUGIN_DIRS[kind] / volume["name"]


def referenced_objects(volume: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (plural, name) of the ConfigMaps and Secrets the volume's files come from."""
    kind = volume_kind(volume)
    source = volume.get(kind) or {}
    if kind == "configMap":
        return [("configmaps", source["name"])]
    if kind == "secret":
        return [("secrets", source["secretName"])]
    if kind != "projected":
        return []
    out = []
    for projection in source.get("sources") or []:
        if projection.get("configMap"):
            out.append(("configmaps", projection["configMap"]["name"]))
        elif projection.get("secret"):
            out.append(("secrets", projection["secret"]["name"]))
    return out


def _mode(item: Mapping[str, Any], default: int) -> int:
    mode = item.get("mode")
    return default if mode is None else mode


def _project(values: Mapping[str, bytes], items: Sequence[Mapping[str, Any]] | None,
             mode: int, optional: bool, missing: str) -> Payload:
    """MakePayload: every key at ``mode``, or the ``items`` (key -> path, own mode)."""
    if not items:
        return {key: (data, mode) for key, data in values.items()}
    out: Payload = {}
    for item in items:
        if item["key"] not in values:
            if optional:
                continue
            raise _Failure(f"{missing}: {item['key']}")
        out[item["path"]] = (values[item["key"]], _mode(item, mode))
    return out


def _configmap_files(source: Mapping[str, Any], objects: Objects, mode: int) -> Payload:
    optional = bool(source.get("optional"))
    cm = objects.get(("configmaps", source["name"]))
    if cm is None and not optional:
        raise _Failure(f'configmap "{source["name"]}" not found')
    values = {key: text.encode() for key, text in ((cm or {}).get("data") or {}).items()}
    values.update({key: base64.b64decode(data)
                   for key, data in ((cm or {}).get("binaryData") or {}).items()})
    return _project(values, source.get("items"), mode, optional,
                    "configmap references non-existent config key")


def _secret_files(name: str, source: Mapping[str, Any], objects: Objects, mode: int) -> Payload:
    optional = bool(source.get("optional"))
    secret = objects.get(("secrets", name))
    if secret is None and not optional:
        raise _Failure(f'secret "{name}" not found')
    values = {key: secret_bytes(secret, key) for key in ((secret or {}).get("data") or {})}
    return _project(values, source.get("items"), mode, optional,
                    "references non-existent secret key")


def _downward_files(pod: Mapping[str, Any], items: Iterable[Mapping[str, Any]] | None,
                    mode: int, allocatable: Mapping[str, Any] | None) -> Payload:
    """downwardapi.CollectData: every item, the errors of all of them together."""
    out: Payload = {}
    errors = []
    for item in items or []:
        data = b""
        try:
            if item.get("fieldRef"):
                data = field_value(pod, item["fieldRef"].get("fieldPath") or "").encode()
            elif item.get("resourceFieldRef"):
                ref = item["resourceFieldRef"]
                container = find_container(pod, ref.get("containerName") or "")
                data = resource_value(container, ref, allocatable).encode()
        except FieldError as e:
            errors.append(str(e))
        out[posixpath.normpath(item["path"])] = (data, _mode(item, mode))
    if errors:
        raise _Failure(*errors)
    return out


def _projected_files(pod: Mapping[str, Any], source: Mapping[str, Any], objects: Objects,
                     mode: int, allocatable: Mapping[str, Any] | None) -> Payload:
    out: Payload = {}
    errors: list[str] = []
    for projection in source.get("sources") or []:
        try:
            if projection.get("configMap"):
                out.update(_configmap_files(projection["configMap"], objects, mode))
            elif projection.get("secret"):
                secret = projection["secret"]
                out.update(_secret_files(secret["name"], secret, objects, mode))
            elif projection.get("downwardAPI"):
                out.update(_downward_files(pod, projection["downwardAPI"].get("items"), mode,
                                           allocatable))
            elif not projection.get("serviceAccountToken"):
                kinds = ", ".join(k for k, val in projection.items() if val is not None)
                errors.append(f"projected source {kinds} is not supported by kwire")
        except _Failure as e:
            errors += e.messages
    if errors:
        raise _Failure(*errors)
    return out


def volume_files(pod: Mapping[str, Any], volume: Mapping[str, Any], objects: Objects,
                 allocatable: Mapping[str, Any] | None = None) -> Payload:
    """The files of a configMap, secret, downwardAPI or projected volume, given the
    objects it names (``referenced_objects``). ``allocatable`` (the Node's
    status.allocatable) stands in for limits a resourceFieldRef's container leaves
    unset. A serviceAccountToken projection gives no file and no error: there is no
    token issuer yet. VolumeError with upstream's message when the files cannot be
    made (a missing object or key that is not optional, a bad fieldPath)."""
    kind = volume_kind(volume)
    source = volume.get(kind) or {}
    mode = DEFAULT_MODE if source.get("defaultMode") is None else source["defaultMode"]
    try:
        if kind == "configMap":
            return _configmap_files(source, objects, mode)
        if kind == "secret":
            return _secret_files(source["secretName"], source, objects, mode)
        if kind == "downwardAPI":
            return _downward_files(pod, source.get("items"), mode, allocatable)
        if kind == "projected":
            return _projected_files(pod, source, objects, mode, allocatable)
    except _Failure as e:
        raise _failed(volume, str(e)) from None
    raise ValueError(f"a {kind} volume has no projected files")


def _bytes(quantity: Any) -> int:
    return ceil_int(v.quantity(quantity).amount)


def _pod_memory_limit(pod: Mapping[str, Any]) -> int | None:
    """The pod's memory limit as its cgroup gets it: declared only when every container
    has one; the sum of the app containers and sidecars, or the largest init
    container when that is more, plus the pod overhead."""
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    inits = spec.get("initContainers") or []
    limits = [((c.get("resources") or {}).get("limits") or {}).get("memory")
              for c in [*containers, *inits]]
    if not limits or any(limit is None for limit in limits):
        return None
    running = sum(_bytes(c["resources"]["limits"]["memory"]) for c in
                  [*containers, *(i for i in inits if i.get("restartPolicy") == "Always")])
    one_off = [_bytes(i["resources"]["limits"]["memory"]) for i in inits
               if i.get("restartPolicy") != "Always"]
    overhead = (spec.get("overhead") or {}).get("memory")
    return max([running, *one_off]) + (_bytes(overhead) if overhead is not None else 0)


def tmpfs_size(pod: Mapping[str, Any], size_limit: Any = None,
               allocatable: Mapping[str, Any] | None = None) -> int | None:
    """calculateEmptyDirMemorySize: the node's allocatable memory, lowered to the pod's
    memory limit and then the volume's sizeLimit (each when set and above zero), in
    bytes; None (no allocatable, no limits) leaves the kernel's default, half the RAM."""
    size = _bytes(allocatable["memory"]) if allocatable and allocatable.get("memory") else None
    for candidate in (_pod_memory_limit(pod), None if size_limit is None else _bytes(size_limit)):
        if candidate and candidate > 0 and (size is None or candidate <= size):
            size = candidate
    return size


def propagation(mode: str | None) -> str:
    """translateMountPropagation, as OCI propagation."""
    if mode not in PROPAGATION:
        raise MountError(f'invalid MountPropagation mode: "{mode}"')
    return PROPAGATION[mode]


# ------------------------------------------------------------------ the atomic writer


def _clean_payload(payload: Mapping[str, tuple[bytes, int]]) -> Payload:
    """validatePayload: relative paths, no '..' element, none starting with '..' (the
    writer's own names), within the kernel's lengths; cleaned."""
    out: Payload = {}
    for rel, content in payload.items():
        if not rel:
            raise ValueError('invalid path: must not be empty: ""')
        if rel.startswith("/"):
            raise ValueError(f"invalid path: must be relative path: {rel}")
        if len(rel) > MAX_PATH:
            raise ValueError(f"invalid path: must be less than or equal to {MAX_PATH} characters")
        for item in rel.split("/"):
            if item == "..":
                raise ValueError(f"invalid path: must not contain '..': {rel}")
            if len(item) > MAX_FILE_NAME:
                raise ValueError("invalid path: filenames must be less than or equal to "
                                 f"{MAX_FILE_NAME} characters")
        clean = posixpath.normpath(rel)
        if clean.startswith("..") or clean == ".":
            raise ValueError(f"invalid path: must not start with '..': {rel}")
        out[clean] = content
    return out


def _mkdirs(path: Path, mode: int) -> None:
    """mkdir -p, every directory it creates at exactly ``mode`` whatever the umask."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        os.chmod(d, mode)


def _stale_paths(payload: Payload, old_dir: Path) -> set[str]:
    """pathsToRemove: what the old version has and the new one no longer does."""
    old = {str(p.relative_to(old_dir)) for p in old_dir.rglob("*")}
    keep = set()
    for rel in payload:
        while rel:
            keep.add(rel)
            rel = posixpath.dirname(rel)
    return old - keep


def _changed(payload: Payload, old_dir: Path) -> bool:
    """shouldWritePayload: a file is new or its content differs."""
    for rel, (data, _) in payload.items():
        path = old_dir / rel
        if not path.is_file() or path.is_symlink() or path.read_bytes() != data:
            return True
    return False


def set_ownership(root: Path, gid: int, readonly: bool) -> None:
    """SetVolumeOwnership for the pod's fsGroup: everything group-owned by ``gid``,
    group-readable (and writable unless ``readonly``), directories setgid; a symlink
    is re-owned but never chmodded (that would change its target)."""
    mask = 0o440 if readonly else 0o660
    paths = [str(root)]
    for dirpath, dirnames, filenames in os.walk(root):
        paths += [os.path.join(dirpath, n) for n in [*dirnames, *filenames]]
    for path in paths:
        os.lchown(path, -1, gid)
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            continue
        bits = mask | (stat.S_ISGID | 0o110 if stat.S_ISDIR(st.st_mode) else 0)
        os.chmod(path, stat.S_IMODE(st.st_mode) | bits)


def write_atomic(target: Path, payload: Mapping[str, tuple[bytes, int]],
                 fs_group: int | None = None) -> bool:
    """The kubelet's AtomicWriter.Write into the existing directory ``target``: nothing
    when the files are already there, else a new ``..<ts>`` directory, ``..data``
    swapped to it by rename, the ``name -> ..data/name`` links of new names made and
    those of removed names dropped. True if it wrote.

    Unlike upstream, the version just replaced stays until the next write (older ones
    go): a reader whose open() had already followed ``..data`` to it would otherwise
    get ENOENT, a window upstream leaves open."""
    files = _clean_payload(payload)
    data_link = target / DATA_DIR
    try:
        old_name = os.readlink(data_link)
    except FileNotFoundError:
        old_name = ""
    stale: set[str] = set()
    if old_name:
        stale = _stale_paths(files, target / old_name)
        if not stale and not _changed(files, target / old_name):
            return False
    new_dir = Path(tempfile.mkdtemp(prefix=time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()),
                                    dir=target))
    tmp_link = target / DATA_DIR_TMP
    try:
        os.chmod(new_dir, 0o755)
        for rel, (data, mode) in files.items():
            path = new_dir / rel
            _mkdirs(path.parent, 0o755)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            try:
                os.write(fd, data)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        if fs_group is not None:
            set_ownership(target, fs_group, readonly=True)
        if os.path.lexists(tmp_link):  # left by a writer that died half-way
            os.unlink(tmp_link)
        os.symlink(new_dir.name, tmp_link)
        os.rename(tmp_link, data_link)
    except BaseException:
        if os.path.lexists(tmp_link):
            os.unlink(tmp_link)
        shutil.rmtree(new_dir, ignore_errors=True)
        raise
    for name in {rel.split("/")[0] for rel in files}:
        if not os.path.lexists(target / name):
            os.symlink(f"{DATA_DIR}/{name}", target / name)
    for rel in stale:
        if "/" not in rel and os.path.lexists(target / rel):
            os.unlink(target / rel)
    for entry in os.scandir(target):
        if entry.name.startswith("..") and entry.name not in (new_dir.name, old_name) \
                and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
    return True


# ------------------------------------------------------------------ setting up


def _volume_dir(path: Path) -> bool:
    """An emptyDir's directory (0777, as the kubelet's setupDir); True if it was new."""
    if path.is_dir():
        return False
    _mkdirs(path.parent, 0o750)
    path.mkdir()
    os.chmod(path, 0o777)
    return True


def _tmpfs(path: Path, size: int | None) -> bool:
    """A tmpfs on ``path`` unless one is there; True if it mounted one."""
    if rootfs.is_mounted(path):
        return False
    rootfs.mount("tmpfs", path, "tmpfs", 0, f"size={size}" if size else "")
    return True


_HOST_PATH_TYPES = {
    "DirectoryOrCreate": (stat.S_ISDIR, "a directory"),
    "Directory": (stat.S_ISDIR, "a directory"),
    "FileOrCreate": (stat.S_ISREG, "a file"),
    "File": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket file"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}


def check_host_path(volume: Mapping[str, Any]) -> None:
    """The hostPath plugin's SetUp: the type check (creating the directory or the file
    for the *OrCreate types, not the file's parents) with upstream's messages; the
    type "" checks nothing. VolumeError when it fails."""
    path = volume["hostPath"]["path"]
    path_type = volume["hostPath"].get("type") or ""
    if ".." in path.split("/"):
        raise _failed(volume, f"invalid HostPath `{path}`: must not contain '..'")
    if path_type == "":
        return
    if path_type not in _HOST_PATH_TYPES:
        raise _failed(volume, f"{path_type} is an invalid volume type")
    if path_type == "DirectoryOrCreate" and not os.path.exists(path):
        os.makedirs(path, 0o755, exist_ok=True)
    if path_type == "FileOrCreate" and not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_RDONLY, 0o644))
    test, what = _HOST_PATH_TYPES[path_type]
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    if not test(mode):
        raise _failed(volume, f"hostPath type check failed: {path} is not {what}")


def _set_up(pod: Mapping[str, Any], pod_dir: Path, volume: Mapping[str, Any],
            objects: Objects, allocatable: Mapping[str, Any] | None) -> Path:
    kind = volume_kind(volume)
    path = volume_path(pod_dir, volume)
    source = volume.get(kind) or {}
    fs_group = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
    try:
        if kind == "hostPath":
            check_host_path(volume)
            return path
        if kind == "emptyDir":
            medium = source.get("medium") or ""
            if medium not in ("", "Memory"):
                raise _Failure(f'storage medium "{medium}" is not supported by kwire')
            fresh = _volume_dir(path)
            if medium == "Memory":
                fresh = _tmpfs(path, tmpfs_size(pod, source.get("sizeLimit"), allocatable)) or fresh
            if fresh and fs_group is not None:
                set_ownership(path, fs_group, readonly=False)
            return path
        files = volume_files(pod, volume, objects, allocatable)
        _volume_dir(path)
        if kind in MEMORY_BACKED:
            _tmpfs(path, tmpfs_size(pod, None, allocatable))
        write_atomic(path, files, fs_group)
        return path
    except (_Failure, OSError, ValueError) as e:
        raise _failed(volume, str(e)) from None


async def setup_volumes(pod: Mapping[str, Any], pod_dir: Path, get: Getter, *,
                        allocatable: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Make every volume of the pod ready under ``pod_dir`` (creating it if need be)
    and return volume name -> host path. Idempotent, and it brings configMap,
    secret, downwardAPI and projected contents up to date, so the agent calls it on
    every sync of the pod. ``get(plural, namespace, name)`` reads ConfigMaps and
    Secrets (None when missing); ``allocatable`` is the Node's status.allocatable.
    VolumeError (one message per failed volume) after trying them all. The disk work
    runs in a thread; calls for one pod must not overlap (the AtomicWriter's rule)."""
    spec = pod.get("spec") or {}
    namespace = (pod.get("metadata") or {}).get("namespace") or "default"
    objects: dict[tuple[str, str], dict | None] = {}
    paths: dict[str, str] = {}
    failures: list[str] = []
    for volume in spec.get("volumes") or []:
        try:
            for key in referenced_objects(volume):
                if key not in objects:
                    objects[key] = await get(key[0], namespace, key[1])
            path = await asyncio.to_thread(_set_up, pod, Path(pod_dir), volume, objects,
                                           allocatable)
            paths[volume["name"]] = str(path)
        except VolumeError as e:
            failures += e.messages
    if failures:
        raise VolumeError(*failures)
    return paths


def teardown_volumes(pod_dir: Path) -> None:
    """Unmount every mount under ``<pod_dir>/volumes`` (tmpfs volumes, and anything a
    Bidirectional mount propagated back), deepest first, then delete the tree.
    Idempotent. hostPath sources live elsewhere and the removal follows no symlink
    nor enters a mount, so nothing outside the pod's directory is touched."""
    root = Path(os.path.realpath(pod_dir)) / "volumes"
    if not os.path.lexists(root):
        return
    prefix = str(root) + "/"
    for point in sorted((p for p in rootfs.mount_points() if p.startswith(prefix)),
                        key=len, reverse=True):
        rootfs.unmount(point)
    left = [p for p in rootfs.mount_points() if p.startswith(prefix) or p == str(root)]
    if left:
        raise OSError(errno.EBUSY, f"still mounted under {root}: {', '.join(left)}")
    shutil.rmtree(root)


# ------------------------------------------------------------------ container mounts


class _Lookup(Mapping):
    """For expand(): every name resolves, to "" when unset, and unset or empty names
    are recorded (ExpandContainerVolumeMounts wants them all set)."""

    def __init__(self, env: Mapping[str, str]):
        self.env, self.missing = env, set()

    def __getitem__(self, name: str) -> str:
        value = self.env.get(name, "")
        if not value:
            self.missing.add(name)
        return value

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self):
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


def expand_sub_path(expr: str, env: Mapping[str, str]) -> str:
    """A subPathExpr with the container's env; MountError naming every unset variable."""
    lookup = _Lookup(env)
    out = expand(expr, lookup)
    if lookup.missing:
        raise MountError(f"missing value for {', '.join(sorted(lookup.missing))}")
    return out


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _safe_make_dir(root: str, sub: str, mode: int) -> None:
    """SafeMakeDir: create the missing directories of ``sub`` inside ``root``; what
    already exists may be a symlink only if it resolves inside ``root``, and the new
    ones are made and entered without following any."""
    parts = [p for p in sub.split("/") if p not in ("", ".")]
    have = 0
    while have < len(parts) and os.path.lexists(os.path.join(root, *parts[:have + 1])):
        have += 1
    base = os.path.realpath(os.path.join(root, *parts[:have]))
    if not _inside(base, root):
        raise OSError(errno.EXDEV, f"subpath {sub!r} not within volume path {root!r}")
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[have:]:
            os.mkdir(part, mode, dir_fd=fd)
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.fchmod(child, mode)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def sub_path_source(volume_path: str, sub: str, volume: str, container: str) -> str:
    """The host path to bind for a subPath: created (at the volume's mode) when
    missing, and resolved now, so a symlink swapped in later cannot point the bind
    out of the volume (upstream binds the opened path for the same reason)."""
    if sub.startswith("/"):
        raise MountError(f"error SubPath `{sub}` must not be an absolute path")
    if ".." in sub.split("/"):
        raise MountError(f"unable to provision SubPath `{sub}`: must not contain '..'")
    root = os.path.realpath(volume_path)
    if not os.path.exists(os.path.join(root, sub)):
        try:
            _safe_make_dir(root, sub, stat.S_IMODE(os.stat(root).st_mode) & 0o777)
        except OSError:
            raise MountError(f'failed to create subPath directory for volumeMount "{volume}" '
                             f'of container "{container}"') from None
    source = os.path.realpath(os.path.join(root, sub))
    if not _inside(source, root) or not os.path.exists(source):
        raise MountError(f'failed to prepare subPath for volumeMount "{volume}" of container '
                         f'"{container}"')
    return source


def container_mounts(pod: Mapping[str, Any], container: Mapping[str, Any],
                     volume_paths: Mapping[str, str],
                     env: Sequence[tuple[str, str]] = ()) -> list[Mount]:
    """The container's volume bind mounts (makeMounts): readOnly (forced for configMap,
    secret, downwardAPI and projected volumes), subPath or subPathExpr (expanded with
    ``env``, the list resolve_env gave, which this expands as build_spec will) and
    mountPropagation. A missing source is created as a directory, as containerd does
    for a hostPath that does not exist. MountError with the kubelet's messages."""
    kinds = {vol["name"]: volume_kind(vol) for vol in (pod.get("spec") or {}).get("volumes") or []}
    name = container["name"]
    values: dict[str, str] | None = None
    mounts = []
    for vm in container.get("volumeMounts") or []:
        volume = vm["name"]
        if volume not in volume_paths:
            raise MountError(f'cannot find volume "{volume}" to mount into container "{name}"')
        sub = vm.get("subPath") or ""
        if vm.get("subPathExpr"):
            if values is None:
                values = dict(container_env(container, env))
            sub = expand_sub_path(vm["subPathExpr"], values)
        source = volume_paths[volume]
        if sub:
            source = sub_path_source(source, sub, volume, name)
        elif not os.path.exists(source):
            os.makedirs(source, 0o755, exist_ok=True)
        destination = vm["mountPath"]
        if not destination.startswith("/"):
            destination = posixpath.normpath("/" + destination)
        mounts.append(Mount(destination, source,
                            readonly=bool(vm.get("readOnly")) or kinds.get(volume) in READ_ONLY_KINDS,
                            propagation=propagation(vm.get("mountPropagation"))))
    return mounts
