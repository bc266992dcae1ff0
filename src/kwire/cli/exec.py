"""`kwire exec`: kubectl exec, over WebSocket with the v5.channel.k8s.io protocol
(see kwire.node.remotecommand for the server side).

Like kubectl: the pod is fetched first (a completed pod is refused), the
container defaulted; -t puts the local terminal in raw mode, sends its size first
and again on every SIGWINCH; the end of local stdin is sent as a v5 close of
stdin; the exit code comes from the Status on channel 3 ("command terminated with
exit code N", and kwire exits N)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import termios
import threading
import tty as termtty
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import click

from kwire.cli import CLIError
from kwire.cli.logs import pick_container, pod_name
from kwire.cli.session import Session, cluster_options, run
from kwire.client import Client, resource_path
from kwire.client.rest import api_error

PROTOCOL = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
READ_SIZE = 32 * 1024


@click.command("exec")
@click.argument("pod", metavar="POD")
@click.argument("command", nargs=-1, required=True, metavar="-- COMMAND [ARG...]")
@cluster_options
@click.option("-c", "--container", help="The container [default: the pod's default one].")
@click.option("-i", "--stdin", "stdin", is_flag=True, help="Pass stdin to the command.")
@click.option("-t", "--tty", "tty", is_flag=True, help="Run the command on a terminal.")
def exec_command(pod: str, command: tuple[str, ...], kubeconfig: str | None,
                 context: str | None, namespace: str | None, container: str | None, stdin: bool,
                 tty: bool) -> None:
    """Run a command in a container of a pod."""
    name = pod_name(pod)
    if tty and not stdin:
        tty = False  # as kubectl: a terminal needs the input too
    elif tty and not os.isatty(sys.stdin.fileno()):
        click.echo("Unable to use a TTY - input is not a terminal or the right kind of file",
                   err=True)
        tty = False
    result: dict = {}

    async def verb(session: Session) -> None:
        obj = await session.client.get("v1", "pods", name, session.namespace)
        phase = (obj.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise CLIError(f"cannot exec into a container in a completed pod; current phase "
                           f"is {phase}")
        params = [("command", c) for c in command]
        params += [("container", pick_container(obj, container)), ("stdout", "true")]
        params += [("stdin", "true")] if stdin else []
        params += [("tty", "true")] if tty else [("stderr", "true")]
        path = resource_path("v1", "pods", session.namespace, name, "exec")
        result["status"] = await exec_session(session.client, path, params, stdin, tty)

    run(verb, kubeconfig, context, namespace)
    code, message = exit_of(result["status"])
    if message:
        click.echo(message, err=True)
    if code:
        sys.exit(code)


def exit_of(status: dict | None) -> tuple[int, str]:
    """(exit code, what to print) from the channel 3 Status, as kubectl reads it."""
    if not status or status.get("status") == "Success":
        return 0, ""
    if status.get("status") != "Failure":
        return 1, "error: error stream protocol error: unknown error"
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or ():
            if cause.get("reason") == "ExitCode":
                try:
                    code = int(cause.get("message", ""))
                except ValueError:
                    break
                return code, f"command terminated with exit code {code}"
    return 1, f"error: {status.get('message') or 'unknown error'}"


async def exec_session(client: Client, path: str, params: list[tuple[str, str]], stdin: bool,
                       tty: bool) -> dict | None:
    """Run the session; the Status from channel 3 (None when none came)."""
    http = client.session()
    try:
        ws = await http.ws_connect(client.server + path, params=params, protocols=[PROTOCOL],
                                   autoping=True, max_msg_size=0)
    except aiohttp.WSServerHandshakeError:
        # refused before upgrading; kubectl then tries SPDY with a POST, which gets the
        # same checks and answers why
        async with http.post(client.server + path, params=params) as resp:
            raise api_error(resp.status, resp.reason, await resp.read())
    status = bytearray()
    with _raw_terminal(tty):
        sender = asyncio.create_task(_send_input(ws, stdin, tty))
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                    continue
                channel, data = msg.data[0], msg.data[1:]
                if channel in (STDOUT, STDERR):
                    out = sys.stdout.buffer if channel == STDOUT else sys.stderr.buffer
                    out.write(data)
                    out.flush()
                elif channel == ERROR:
                    status += data
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            if tty:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGWINCH)
            await ws.close()
    if ws.close_code not in (None, 1000) and not status:
        raise CLIError(f"error reading from error stream: websocket: close {ws.close_code}")
    if not status:
        return None
    try:
        return json.loads(status)
    except ValueError:
        raise CLIError("error stream protocol error: " + status.decode(errors="replace")) \
            from None


async def _send_input(ws: aiohttp.ClientWebSocketResponse, stdin: bool, tty: bool) -> None:
    """The terminal's size (first, then on SIGWINCH) and stdin until its end."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    if tty:
        def resized() -> None:
            queue.put_nowait((RESIZE, _terminal_size()))
        resized()
        loop.add_signal_handler(signal.SIGWINCH, resized)
    if stdin:
        threading.Thread(target=_read_stdin, args=(loop, queue), daemon=True).start()
    while True:
        channel, data = await queue.get()
        if channel == STDIN and not data:
            await ws.send_bytes(bytes([CLOSE, STDIN]))
        else:
            await ws.send_bytes(bytes([channel]) + data)


def _read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
    """In a thread (stdin may be a file, a pipe or a terminal): read until the end."""
    fd = sys.stdin.fileno()
    while True:
        try:
            data = os.read(fd, READ_SIZE)
        except OSError:
            data = b""
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (STDIN, data))
        except RuntimeError:  # the session is over
            return
        if not data:
            return


def _terminal_size() -> bytes:
    size = os.get_terminal_size(sys.stdin.fileno())
    return json.dumps({"Width": size.columns, "Height": size.lines}).encode() + b"\n"


@contextmanager
def _raw_terminal(on: bool) -> Iterator[None]:
    """Local stdin in raw mode (keys go to the remote terminal as typed), restored after."""
    if not on:
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    termtty.setraw(fd, termios.TCSANOW)  # keeping keys typed ahead (TCSAFLUSH drops them)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
