"""Starting, stopping and inspecting clusters: what `kwire up`, `down` and `status` do.

A cluster is its state folder, ``$KWIRE_STATE_ROOT/<name>`` (see ClusterConfig for the
files in it), plus one detached API server process, `kwire server --config
<state_dir>/config.yaml`, that leads its own session so that `kwire up` can exit and
`kwire down` can stop it with everything it started. The pid file is trusted only
when /proc/<pid>/cmdline still names kwire and this cluster's config file, since pids
get reused after a reboot or crash.
"""
from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

from kwire.cluster import kubeconfig, pki
from kwire.cluster.config import (ClusterConfig, ClusterError, check_host_routes, check_name,
                                  cluster_dir, host_routes, state_root)

LOG_TAIL_LINES = 25


@dataclass(frozen=True)
class ClusterStatus:
    """What runs for one cluster. pid is None when no server of this cluster runs."""

    name: str
    state_dir: Path
    url: str
    pid: int | None
    ready: bool
    kubeconfig_path: Path

    @property
    def running(self) -> bool:
        return self.pid is not None


@dataclass(frozen=True)
class UpResult:
    status: ClusterStatus
    started: bool
    """False when the cluster was already running (only its kubeconfig entries were renewed)."""
    user_kubeconfig: Path
    """The user's kubeconfig the context was merged into."""
    context: str
    """The kubeconfig context, now current there."""


def list_clusters() -> list[str]:
    """Names of the clusters with a state folder under the state root, sorted."""
    root = state_root()
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if (d / "config.yaml").is_file())


def saved_config(name: str) -> ClusterConfig | None:
    """The configuration cluster `name` was created with, or None if it does not exist."""
    check_name(name)
    path = ClusterConfig(name=name).config_path
    return ClusterConfig.load(path) if path.is_file() else None


def server_pid(config: ClusterConfig) -> int | None:
    """The pid of this cluster's running API server, or None."""
    try:
        pid = int(config.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_server_of(pid, config) else None


def _is_server_of(pid: int, config: ClusterConfig) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # A zombie has an empty cmdline, so an exited server no longer matches.
    return any(b"kwire" in a for a in args) and str(config.config_path).encode() in args


def up(config: ClusterConfig, *, timeout: float = 30.0) -> UpResult:
    """Start cluster `config.name` (creating it if new) and merge its kubeconfig context.

    An existing cluster keeps its saved settings: api_port 0 means "the saved port", and
    any other difference is refused, since certificates, data and the nodes' addresses
    were made for the saved ranges.
    """
    config.validate()
    if config.state_dir != cluster_dir(config.name):
        raise ClusterError(f"state_dir must be {cluster_dir(config.name)} for `kwire down` and "
                           f"`kwire status` to find the cluster; set $KWIRE_STATE_ROOT instead")
    saved = saved_config(config.name)
    if saved is not None:
        if config.api_port == 0:
            config = replace(config, api_port=saved.api_port)
        _refuse_changes(saved, config)
    else:
        # New cluster: its ranges must not clash with what the host routes. (An existing
        # one is not checked again: its own bridge and routes may still be there.)
        check_host_routes(config, host_routes())

    if server_pid(config) is not None:
        tokens = pki.load_tokens(config)
        path = kubeconfig.merge_into_user(kubeconfig.write_cluster_kubeconfig(config, tokens.admin))
        return UpResult(status=status(config.name), started=False, user_kubeconfig=path,
                        context=config.context_name)

    config.state_dir.mkdir(parents=True, exist_ok=True)
    config.state_dir.chmod(0o700)
    pki.ensure_pki(config)
    tokens = pki.ensure_tokens(config)
    config = replace(config, api_port=_claim_port(config))
    config.save()

    pid = _start_server(config, tokens.admin, timeout)
    path = kubeconfig.merge_into_user(kubeconfig.write_cluster_kubeconfig(config, tokens.admin))
    return UpResult(status=ClusterStatus(name=config.name, state_dir=config.state_dir,
                                         url=config.api_url, pid=pid, ready=True,
                                         kubeconfig_path=config.kubeconfig_path),
                    started=True, user_kubeconfig=path, context=config.context_name)


def _refuse_changes(saved: ClusterConfig, wanted: ClusterConfig) -> None:
    changed = [f"{f.name}: {getattr(saved, f.name)} (asked: {getattr(wanted, f.name)})"
               for f in fields(ClusterConfig) if getattr(saved, f.name) != getattr(wanted, f.name)]
    if changed:
        raise ClusterError(f"cluster {saved.name!r} exists with other settings:\n  "
                           + "\n  ".join(changed)
                           + f"\nrun `kwire down --name {saved.name}` first to recreate it")


def _claim_port(config: ClusterConfig) -> int:
    """config.api_port if it is free, or a free port chosen by the kernel if it is 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the server will: a port in TIME_WAIT from a previous run is usable.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((config.api_host, config.api_port))
        except OSError as e:
            raise ClusterError(f"cannot use {config.api_host}:{config.api_port} "
                               f"for the API server: {e.strerror}") from None
        return s.getsockname()[1]


def _start_server(config: ClusterConfig, admin_token: str, timeout: float) -> int:
    """Launch the detached server and wait for /readyz; on failure stop it and explain."""
    cmd = [sys.executable, "-m", "kwire.cli.main", "server", "--config", str(config.config_path)]
    with open(config.server_log, "ab") as log:
        log_start = log.tell()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=config.state_dir, close_fds=True)
    config.pid_file.write_text(f"{proc.pid}\n")
    try:
        ctx = pki.admin_ssl_context(config)
        deadline = time.monotonic() + timeout
        while (problem := _readyz_problem(config, ctx, admin_token)) is not None:
            if proc.poll() is not None:
                raise ClusterError(f"the API server exited with code {proc.returncode} before "
                                   f"it was ready.\n{_log_tail(config.server_log, log_start)}")
            if time.monotonic() >= deadline:
                raise ClusterError(f"the API server was not ready after {timeout:g}s "
                                   f"({problem}), so it was stopped.\n"
                                   f"{_log_tail(config.server_log, log_start)}")
            time.sleep(0.1)
    except BaseException:
        _stop_server(proc.pid, grace=5.0)
        config.pid_file.unlink(missing_ok=True)
        raise
    return proc.pid


def _readyz_problem(config: ClusterConfig, ctx: ssl.SSLContext, admin_token: str,
                    timeout: float = 2.0) -> str | None:
    """None if GET /readyz answers 200 (server verified with the cluster CA), else why not."""
    conn = http.client.HTTPSConnection(config.api_host, config.api_port, timeout=timeout,
                                       context=ctx)
    try:
        conn.request("GET", "/readyz", headers={"Authorization": f"Bearer {admin_token}"})
        resp = conn.getresponse()
        resp.read()
        return None if resp.status == 200 else f"/readyz answered {resp.status}"
    except (OSError, ssl.SSLError, http.client.HTTPException) as e:
        return str(e) or type(e).__name__
    finally:
        conn.close()


def _log_tail(path: Path, offset: int = 0) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        lines = []
    if not lines:
        return f"{path} is empty."
    return f"Last lines of {path}:\n" + "\n".join(f"  | {line}" for line in lines)


def _stop_server(pid: int, grace: float) -> None:
    """SIGTERM the server, SIGKILL after `grace` seconds. The server leads its own process
    group, so the group is signalled: whatever it spawned goes with it."""
    try:
        send = os.killpg if os.getpgid(pid) == pid else os.kill
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            send(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            try:
                send(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
    raise ClusterError(f"the API server (pid {pid}) did not exit after SIGKILL")


def _reap(pid: int) -> None:
    """Collect the exit status if the server is our own child (when up and down run in
    one process), or it would linger as a zombie that still counts as running."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def down(name: str, *, grace: float = 10.0) -> bool:
    """Stop cluster `name`, drop its kubeconfig entries and delete its state folder (all
    its data: as `kind delete cluster`). Returns whether there was anything to remove."""
    check_name(name)
    config = ClusterConfig(name=name)
    pid = server_pid(config)
    if pid is not None:
        _stop_server(pid, grace)
    removed_context = kubeconfig.remove_from_user(config.context_name) is not None
    existed = config.state_dir.exists()
    if existed:
        shutil.rmtree(config.state_dir)
    return existed or removed_context or pid is not None


def status(name: str) -> ClusterStatus:
    """What runs for cluster `name`; ClusterError if there is no such cluster."""
    config = saved_config(name)
    if config is None:
        raise ClusterError(f"no cluster named {name!r} (see `kwire status`)")
    pid = server_pid(config)
    ready = False
    if pid is not None:
        ready = _readyz_problem(config, pki.admin_ssl_context(config),
                                pki.load_tokens(config).admin) is None
    return ClusterStatus(name=config.name, state_dir=config.state_dir, url=config.api_url,
                         pid=pid, ready=ready, kubeconfig_path=config.kubeconfig_path)
