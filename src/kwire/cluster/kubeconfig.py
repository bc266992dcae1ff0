"""Kubeconfig files: the cluster's own one, and its entries in the user's (as kind does).

The cluster, user and context entries are all called ``kwire-<name>``. The user entry
holds both the admin token and the admin client certificate, so any client picks the
credential it prefers. Merging into the user's file keeps everything else in it as it
was; the file is rewritten atomically, 0600, under a lock on its folder (concurrent
`kwire up`s of different clusters must not lose each other's entries).
"""
from __future__ import annotations

import base64
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from kwire.cluster.config import ClusterConfig, ClusterError, write_private_file

Kubeconfig = dict[str, Any]
_SECTIONS = ("clusters", "users", "contexts")


class KubeconfigError(ClusterError):
    pass


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def build(config: ClusterConfig, admin_token: str) -> Kubeconfig:
    """The cluster's kubeconfig, credentials embedded, current context set to it."""
    name = config.context_name
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": config.api_url,
            "certificate-authority-data": _b64(config.ca_cert.read_bytes())}}],
        "users": [{"name": name, "user": {
            "token": admin_token,
            "client-certificate-data": _b64(config.admin_cert.read_bytes()),
            "client-key-data": _b64(config.admin_key.read_bytes())}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "preferences": {},
    }


def user_kubeconfig_path() -> Path:
    """The file kubectl would use: the first path in $KUBECONFIG, else ~/.kube/config."""
    for entry in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if entry:
            return Path(entry).expanduser()
    return Path.home() / ".kube" / "config"


def merge(existing: Kubeconfig, ours: Kubeconfig) -> Kubeconfig:
    """`existing` with our clusters/users/contexts added (replacing same-named entries)
    and our current-context made current. Pure: returns a new dict."""
    result = dict(existing)
    result.setdefault("apiVersion", "v1")
    result.setdefault("kind", "Config")
    for section in _SECTIONS:
        mine = {entry["name"] for entry in ours[section]}
        kept = [e for e in existing.get(section) or [] if e.get("name") not in mine]
        result[section] = kept + ours[section]
    result["current-context"] = ours["current-context"]
    return result


def remove(existing: Kubeconfig, name: str) -> Kubeconfig:
    """`existing` without the entries called `name`; current-context is cleared if it was
    `name`. Pure: returns a new dict."""
    result = dict(existing)
    for section in _SECTIONS:
        if section in existing:
            result[section] = [e for e in existing[section] or [] if e.get("name") != name]
    if existing.get("current-context") == name:
        result["current-context"] = ""
    return result


def read(path: Path) -> Kubeconfig:
    """A kubeconfig file's content; a missing or empty file reads as an empty config."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError) as e:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise KubeconfigError(f"{path} is not a kubeconfig (expected a mapping)")
    return data


def write(path: Path, kubeconfig: Kubeconfig) -> None:
    # Rewrite the target of a symlinked kubeconfig, not the link.
    target = Path(os.path.realpath(path))
    write_private_file(target, yaml.safe_dump(kubeconfig, sort_keys=False).encode())


@contextmanager
def _locked_dir(directory: Path) -> Iterator[None]:
    # A lock on the folder, not on a lock file: kubectl treats a stray "config.lock"
    # as a concurrent writer and refuses to run.
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_cluster_kubeconfig(config: ClusterConfig, admin_token: str) -> Kubeconfig:
    """Write ``<state_dir>/kubeconfig`` and return its content."""
    ours = build(config, admin_token)
    write(config.kubeconfig_path, ours)
    return ours


def merge_into_user(ours: Kubeconfig, path: Path | None = None) -> Path:
    """Merge `ours` into the user's kubeconfig (see user_kubeconfig_path); return its path."""
    path = path or user_kubeconfig_path()
    with _locked_dir(path.parent):
        write(path, merge(read(path), ours))
    return path


def remove_from_user(name: str, path: Path | None = None) -> Path | None:
    """Drop the entries called `name` from the user's kubeconfig; return the path if it
    held any of them (the file is left untouched otherwise)."""
    path = path or user_kubeconfig_path()
    if not path.exists():
        return None
    with _locked_dir(path.parent):
        existing = read(path)
        updated = remove(existing, name)
        if updated == existing:
            return None
        write(path, updated)
    return path
