"""The thin applier: containers through runc, each watched by conmon.

All of kwire's containers live under one runc state root (``runc --root``), apart
from anything else on the machine. Each container is started as CRI-O does it:

1. ``conmon`` runs ``runc create`` for the bundle and stays as the container's
   parent (it double-forks into its own session, so the container outlives the
   agent); it writes the container's stdout/stderr to a log file in the CRI format
   (``<RFC3339Nano> stdout|stderr F|P <line>``, its ``k8s-file`` driver) and the
   exit code to ``<exit dir>/<id>`` when the container ends. conmon reports the
   container's pid (or runc's error) on a sync pipe; create() waits for it.
2. ``runc start`` runs the user process.

Per-container files live under ``state_dir``::

    exits/<id>          exit code, written by conmon
    conmon/<id>.pid     conmon's pid
    attach/<id>         conmon's link to the bundle, where its attach socket and
                        ctl/winsz fifos are (unused by kwire for now)

After an agent restart, ``list()`` (``runc list``) gives every container in the
root with its status and annotations, and exit codes stay in exits/ until the
container is deleted: that is all re-adoption needs.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ROOT = Path("/run/kwire/runc")
DEFAULT_STATE = Path("/run/kwire/containers")
CREATE_TIMEOUT = 30.0
_CID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


class ContainerRuntimeError(Exception):
    """runc or conmon failed; the message is theirs."""


@dataclass(frozen=True)
class ContainerState:
    """What runc knows of a container (``runc state`` / ``runc list``)."""

    id: str
    pid: int
    status: str
    """creating, created, running, paused or stopped."""
    bundle: str
    created: str
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ContainerState:
        return cls(obj["id"], int(obj.get("pid") or 0), obj.get("status", ""),
                   obj.get("bundle", ""), obj.get("created", ""),
                   dict(obj.get("annotations") or {}))


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


class Runc:
    """runc under a dedicated root, with conmon as each container's monitor."""

    def __init__(self, root: Path = DEFAULT_ROOT, state_dir: Path = DEFAULT_STATE, *,
                 runc: str | None = None, conmon: str | None = None):
        self.root = Path(root)
        self.state_dir = Path(state_dir)
        self.runc = runc or shutil.which("runc") or "/usr/sbin/runc"
        self.conmon = conmon or shutil.which("conmon") or "/usr/bin/conmon"
        for d in (self.root, self.exit_dir, self.state_dir / "conmon", self.attach_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)

    @property
    def exit_dir(self) -> Path:
        return self.state_dir / "exits"

    @property
    def attach_dir(self) -> Path:
        return self.state_dir / "attach"

    def conmon_pidfile(self, cid: str) -> Path:
        return self.state_dir / "conmon" / f"{cid}.pid"

    # ------------------------------------------------------------ runc itself

    def _runc(self, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.runc, "--root", str(self.root), *args], capture_output=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise ContainerRuntimeError(runc_error(proc.stderr) or f"runc {args[0]} failed")
        return proc

    # ------------------------------------------------------------ lifecycle

    def create(self, cid: str, bundle: Path, spec: dict[str, Any] | None, log_path: Path, *,
               timeout: float = CREATE_TIMEOUT) -> int:
        """Write ``spec`` as the bundle's config.json (unless None: already there)
        and create the container under conmon; returns the container's pid. The
        process waits in runc's "created" state until start()."""
        if not _CID.match(cid):
            raise ContainerRuntimeError(f"bad container id {cid!r}")
        bundle = Path(bundle)
        bundle.mkdir(parents=True, exist_ok=True)
        if spec is not None:
            tmp = bundle / "config.json.tmp"
            tmp.write_text(json.dumps(spec, indent=1))
            os.rename(tmp, bundle / "config.json")
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (self.exit_dir / cid, self.conmon_pidfile(cid)):
            stale.unlink(missing_ok=True)
        read_fd, write_fd = os.pipe()
        args = [
            self.conmon, "--api-version", "1", "-c", cid, "-u", cid, "-n", cid,
            "-r", self.runc, "--runtime-arg", f"--root={self.root}",
            "-b", str(bundle), "-p", str(bundle / "pidfile"),
            "-P", str(self.conmon_pidfile(cid)), "--exit-dir", str(self.exit_dir),
            "-l", f"k8s-file:{log_path}", "--socket-dir-path", str(self.attach_dir),
            "--log-level", "error",
        ]
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "_OCI_SYNCPIPE": str(write_fd)}
        # conmon's own complaints (before it forks) go to a file: a pipe could be
        # held open by the monitor it leaves running
        with tempfile.TemporaryFile() as errfile:
            try:
                proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=errfile, pass_fds=(write_fd,), env=env,
                                        start_new_session=True)
            except BaseException:
                os.close(read_fd)
                os.close(write_fd)
                raise
            os.close(write_fd)
            try:
                message = _read_sync(read_fd, timeout)
            finally:
                os.close(read_fd)
                # conmon's first process exits as soon as it has forked the monitor
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            errfile.seek(0)
            err = errfile.read(65536)
        if message is None:
            detail = err.decode(errors="replace").strip()
            self._cleanup_failed(cid)
            raise ContainerRuntimeError(f"conmon gave no pid for {cid}" + (f": {detail}" if detail else ""))
        pid = int(message.get("data", -1))
        if pid <= 0:
            self._cleanup_failed(cid)
            raise ContainerRuntimeError(runc_error(str(message.get("message", "")).encode())
                                        or f"runc create {cid} failed")
        return pid

    def _cleanup_failed(self, cid: str) -> None:
        try:
            self.delete(cid, force=True)
        except Exception:  # noqa: BLE001 - the create error is the one to report
            pass

    def start(self, cid: str) -> None:
        self._runc("start", cid)

    def state(self, cid: str) -> ContainerState | None:
        """The container's state, or None when runc does not know it."""
        proc = self._runc("state", cid, check=False)
        if proc.returncode != 0:
            if b"does not exist" in proc.stderr or b"not exist" in proc.stderr:
                return None
            raise ContainerRuntimeError(runc_error(proc.stderr) or f"runc state {cid} failed")
        return ContainerState.from_json(json.loads(proc.stdout))

    def list(self) -> list[ContainerState]:
        """Every container in this root, for re-adoption after a restart."""
        proc = self._runc("list", "--format", "json")
        return [ContainerState.from_json(c) for c in json.loads(proc.stdout or b"null") or []]

    def kill(self, cid: str, sig: int | str = signal.SIGTERM, *, all_processes: bool = False) -> bool:
        """Signal the container's init (or all its processes); False if it had
        already stopped or does not exist."""
        name = sig if isinstance(sig, str) else signal.Signals(sig).name
        args = ["kill", *(["--all"] if all_processes else []), cid, name.removeprefix("SIG")]
        proc = self._runc(*args, check=False)
        if proc.returncode == 0:
            return True
        err = proc.stderr
        if b"not running" in err or b"does not exist" in err or b"process already finished" in err:
            return False
        raise ContainerRuntimeError(runc_error(err) or f"runc kill {cid} failed")

    def exit_code(self, cid: str) -> int | None:
        """The exit code conmon recorded, or None while the container runs."""
        try:
            text = (self.exit_dir / cid).read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.lstrip("-").isdigit() else None

    def finished_at(self, cid: str) -> float | None:
        """When the container ended (the exit file's mtime, as epoch seconds)."""
        try:
            return (self.exit_dir / cid).stat().st_mtime
        except FileNotFoundError:
            return None

    def wait(self, cid: str, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the exit code; None if still running."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            code = self.exit_code(cid)
            if code is not None:
                return code
            if time.monotonic() >= deadline:
                return None
            st = self.state(cid)
            if st is None:
                return self.exit_code(cid)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def stop(self, cid: str, grace: float, sig: int | str = signal.SIGTERM) -> int | None:
        """Graceful stop: ``sig`` (the image's StopSignal or SIGTERM), up to ``grace``
        seconds, then SIGKILL. Returns the exit code (None if unknown)."""
        st = self.state(cid)
        if st is None:
            return self.exit_code(cid)
        if st.status == "created":
            # never started: nothing to be graceful with
            self.kill(cid, signal.SIGKILL)
            return self.wait(cid, 10)
        if st.status in ("running", "paused"):
            self.kill(cid, sig)
            code = self.wait(cid, grace)
            if code is not None:
                return code
            self.kill(cid, signal.SIGKILL, all_processes=True)
        return self.wait(cid, 10)

    def delete(self, cid: str, *, force: bool = False) -> None:
        """Remove the container from runc (``force`` kills it first), wait for its
        conmon to go, and drop its state files; a missing container is fine."""
        proc = self._runc("delete", *(["--force"] if force else []), cid, check=False)
        if proc.returncode != 0 and b"does not exist" not in proc.stderr:
            raise ContainerRuntimeError(runc_error(proc.stderr) or f"runc delete {cid} failed")
        pidfile = self.conmon_pidfile(cid)
        pid = read_pid(pidfile)
        if pid and _is_conmon(pid):
            deadline = time.monotonic() + 5
            while _is_conmon(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            if _is_conmon(pid):
                os.kill(pid, signal.SIGKILL)
        pidfile.unlink(missing_ok=True)
        (self.exit_dir / cid).unlink(missing_ok=True)
        attach = self.attach_dir / cid  # conmon's symlink to the bundle
        if attach.is_symlink() or attach.is_file():
            attach.unlink()
        elif attach.is_dir():
            shutil.rmtree(attach)

    def conmon_pid(self, cid: str) -> int | None:
        """conmon's pid if it is still watching the container."""
        pid = read_pid(self.conmon_pidfile(cid))
        return pid if pid and _is_conmon(pid) else None

    # ------------------------------------------------------------ exec

    def exec_args(self, cid: str, args: list[str], *, env: list[str] | None = None,
                  cwd: str | None = None, user: tuple[int, int] | None = None,
                  tty: bool = False, pid_file: Path | None = None) -> list[str]:
        """The ``runc exec`` command line; the process gets the container's own
        env, cwd, user and capabilities unless overridden."""
        cmd = [self.runc, "--root", str(self.root), "exec"]
        for e in env or []:
            cmd += ["--env", e]
        if cwd:
            cmd += ["--cwd", cwd]
        if user is not None:
            cmd += ["--user", f"{user[0]}:{user[1]}"]
        if tty:
            cmd.append("--tty")
        if pid_file is not None:
            cmd += ["--pid-file", str(pid_file)]
        return [*cmd, cid, *args]

    def exec(self, cid: str, args: list[str], *, timeout: float | None = None,
             stdin: bytes | None = None, env: list[str] | None = None,
             cwd: str | None = None) -> ExecResult:
        """Run ``args`` in the running container and collect its exit code and
        output (probes, ``kubectl exec`` without a terminal). On timeout the
        process is killed and ``timed_out`` is set, with exit code 137 as a
        signal-killed process would have."""
        with tempfile.TemporaryDirectory(prefix="exec-", dir=self.state_dir) as tmp:
            pid_file = Path(tmp) / "pid"
            proc = subprocess.Popen(self.exec_args(cid, args, env=env, cwd=cwd, pid_file=pid_file),
                                    stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
            try:
                out, err = proc.communicate(stdin, timeout=timeout)
            except subprocess.TimeoutExpired:
                pid = read_pid(pid_file)
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    out, err = proc.communicate(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, err = proc.communicate()
                return ExecResult(137, out, err, timed_out=True)
        code = proc.returncode
        return ExecResult(code if code >= 0 else 128 - code, out, err)

    def exec_pty(self, cid: str, args: list[str], *, rows: int = 24, cols: int = 80,
                 env: list[str] | None = None, cwd: str | None = None
                 ) -> tuple[subprocess.Popen, int]:
        """Start ``args`` in the container on a terminal (``kubectl exec -it``).

        runc wants a terminal on its own stdin for ``exec --tty``: it makes the
        container's pty and copies between the two. So runc gets the slave side of
        a pty made here, and the caller the master fd: write keystrokes to it, read
        the output (EIO once the process has ended), resize with resize_pty(), and
        reap the Popen for the exit code. The caller closes the fd.
        """
        master, slave = os.openpty()
        try:
            _set_winsize(slave, rows, cols)
            proc = subprocess.Popen(self.exec_args(cid, args, env=env, cwd=cwd, tty=True),
                                    stdin=slave, stdout=slave, stderr=slave,
                                    start_new_session=True)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return proc, master

    def exec_popen(self, cid: str, args: list[str], **kw: Any) -> subprocess.Popen:
        """Start ``args`` in the container with stdin/stdout/stderr as pipes, for
        streaming (``kubectl exec`` without ``-t``); the caller owns the Popen."""
        return subprocess.Popen(self.exec_args(cid, args, **kw), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)


# ------------------------------------------------------------------ helpers


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def resize_pty(proc: subprocess.Popen, master: int, rows: int, cols: int) -> None:
    """Resize an exec_pty() terminal: set the size, then tell runc, which passes it
    on to the container's terminal on SIGWINCH."""
    _set_winsize(master, rows, cols)
    if proc.poll() is None:
        proc.send_signal(signal.SIGWINCH)


def _read_sync(fd: int, timeout: float) -> dict[str, Any] | None:
    """conmon's first sync-pipe message: {"data": pid} or {"data": -1, "message": ...}."""
    deadline = time.monotonic() + timeout
    buf = b""
    decoder = json.JSONDecoder()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        try:
            obj, _ = decoder.raw_decode(buf.decode().lstrip())
            return obj
        except ValueError:
            continue
    try:
        return json.loads(buf) if buf.strip() else None
    except ValueError:
        return None


def runc_error(stderr: bytes) -> str:
    """runc's message from its logrus line (``level=error msg="..."``), else the text."""
    text = stderr.decode(errors="replace").strip()
    for line in reversed(text.splitlines()):
        if 'msg="' in line:
            return line.split('msg="', 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
    return text


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def _is_conmon(pid: int) -> bool:
    """Whether ``pid`` is a live conmon (not a zombie, not a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    state = stat[stat.rindex(")") + 2:].split(" ", 1)[0]
    return comm == "conmon" and state != "Z"
