"""`kwire port-forward`: kubectl port-forward for people without kubectl.

It speaks the Python client's protocol (v4.channel.k8s.io, see
kwire.node.portforward), one WebSocket per local connection: simpler than
kubectl's SPDY, at one cost: v4 cannot half-close. Once a local connection's
input ends, what the pod sends is still passed on until it has been quiet for
LINGER seconds; then the connection ends.

Like kubectl, a Service is resolved here to one of its running pods and its
port to the targetPort (a named one looked up in the pod's containers).
"""
from __future__ import annotations

import asyncio
import struct

import aiohttp
import click

from kwire.cli import CLIError
from kwire.cli.session import Session, cluster_options, run
from kwire.client import resource_path
from kwire.client.rest import api_error

PROTOCOL = "v4.channel.k8s.io"
READ_SIZE = 64 * 1024
LINGER = 1.0
POD_KINDS = ("pod", "pods", "po")
SERVICE_KINDS = ("service", "services", "svc")


@click.command("port-forward")
@click.argument("target", metavar="POD|TYPE/NAME")
@click.argument("ports", nargs=-1, required=True, metavar="[LOCAL_PORT:]REMOTE_PORT...")
@cluster_options
@click.option("--address", default="127.0.0.1", show_default=True,
              help="The local address to listen on.")
def port_forward(target: str, ports: tuple[str, ...], kubeconfig: str | None,
                 context: str | None, namespace: str | None, address: str) -> None:
    """Forward local ports to a pod, or to a pod of a Service."""
    specs = [parse_port_spec(p) for p in ports]

    async def verb(session: Session) -> None:
        pod, remotes = await resolve(session, target, [r for _, r in specs])
        path = resource_path("v1", "pods", session.namespace, pod, "portforward")
        servers = []
        for (local, _), remote in zip(specs, remotes):
            server = await asyncio.start_server(
                lambda r, w, remote=remote: _connection(session, path, remote, r, w),
                address, local)
            bound = server.sockets[0].getsockname()[1]
            click.echo(f"Forwarding from {address}:{bound} -> {remote}")
            servers.append(server)
        try:
            await asyncio.gather(*(s.serve_forever() for s in servers))
        finally:
            for server in servers:
                server.close()

    run(verb, kubeconfig, context, namespace)


def parse_port_spec(spec: str) -> tuple[int, str]:
    """(local port, 0 for any, and the remote port as given) from [LOCAL:]REMOTE."""
    local, sep, remote = spec.rpartition(":")
    if not sep:
        local = remote
    try:
        local_port = int(local) if local else 0
    except ValueError:
        raise CLIError(f"error: Error parsing local port '{local}': invalid syntax") from None
    if not remote or not 0 <= local_port < 65536:
        raise CLIError(f"error: invalid port specification '{spec}'")
    return local_port, remote


async def resolve(session: Session, target: str, remotes: list[str]) -> tuple[str, list[int]]:
    """The pod to forward to and the pod's ports, as kubectl finds them."""
    kind, sep, name = target.partition("/")
    if not sep:
        kind, name = "pod", target
    kind = kind.lower()
    client, ns = session.client, session.namespace
    if kind in POD_KINDS:
        pod = await client.get("v1", "pods", name, ns)
        ports = [_number(r) for r in remotes]
    elif kind in SERVICE_KINDS:
        service = await client.get("v1", "services", name, ns)
        selector = (service.get("spec") or {}).get("selector") or {}
        if not selector:
            raise CLIError(f"error: cannot attach to *v1.Service: invalid service '{name}': "
                           "Service is defined without a selector")
        listed, _ = await client.list("v1", "pods", ns, label_selector=",".join(
            f"{k}={v}" for k, v in sorted(selector.items())))
        pods = [p for p in listed if not p["metadata"].get("deletionTimestamp")]
        pods.sort(key=lambda p: ((p.get("status") or {}).get("phase") != "Running",
                                 p["metadata"]["name"]))
        if not pods:
            raise CLIError("error: timed out waiting for the condition")
        pod = pods[0]
        ports = [_target_port(service, pod, r) for r in remotes]
    else:
        raise CLIError(f"error: cannot forward to {kind!r}: give POD, pod/NAME or svc/NAME")
    phase = (pod.get("status") or {}).get("phase")
    if phase != "Running":
        raise CLIError(f"error: unable to forward port because pod is not running. "
                       f"Current status={phase}")
    return pod["metadata"]["name"], ports


def _number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise CLIError(f"error: Error parsing remote port '{text}': invalid syntax") from None
    if not 0 < port < 65536:
        raise CLIError(f"error: invalid port '{text}'")
    return port


def _target_port(service: dict, pod: dict, remote: str) -> int:
    """A Service port (by number or name) as the pod's port its targetPort names."""
    for sp in (service.get("spec") or {}).get("ports") or ():
        if str(sp.get("port")) == remote or sp.get("name") == remote:
            target = sp.get("targetPort", sp.get("port"))
            if isinstance(target, int) or str(target).isdigit():
                return int(target)
            for c in (pod.get("spec") or {}).get("containers") or ():
                for cp in c.get("ports") or ():
                    if cp.get("name") == target:
                        return int(cp["containerPort"])
            raise CLIError(f"error: pod {pod['metadata']['name']} does not have a named "
                           f"port '{target}'")
    raise CLIError(f"error: Service {service['metadata']['name']} does not have a service "
                   f"port {remote}")


async def _connection(session: Session, path: str, remote: int, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
    """One local connection over its own WebSocket (data channel 0, error 1)."""
    click.echo(f"Handling connection for {writer.get_extra_info('sockname')[1]}")
    client = session.client
    http = client.session()
    try:
        ws = await http.ws_connect(client.server + path, params={"ports": str(remote)},
                                   protocols=[PROTOCOL], autoping=True, max_msg_size=0)
    except aiohttp.WSServerHandshakeError:
        async with http.get(client.server + path, params={"ports": str(remote)}) as resp:
            error = api_error(resp.status, resp.reason, await resp.read())
            click.echo(f"error: {error.message}", err=True)
        writer.close()
        return
    except (aiohttp.ClientError, OSError) as e:
        click.echo(f"error: {e}", err=True)
        writer.close()
        return

    last_down = [0.0]
    loop = asyncio.get_running_loop()

    async def up() -> None:
        while data := await reader.read(READ_SIZE):
            await ws.send_bytes(b"\x00" + data)
        while (quiet := loop.time() - last_down[0]) < LINGER:
            await asyncio.sleep(LINGER - quiet)

    async def down() -> None:
        announced = set()
        async for msg in ws:
            last_down[0] = loop.time()
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                continue
            channel, data = msg.data[0], msg.data[1:]
            if channel not in announced:  # the port, first on each channel
                announced.add(channel)
                if struct.unpack("<H", data[:2])[0] != remote:
                    raise CLIError(f"unexpected port {data!r} on channel {channel}")
            elif channel == 0:
                writer.write(data)
                await writer.drain()
            elif channel == 1:
                click.echo(f"error: an error occurred forwarding -> {remote}: "
                           f"{data.decode(errors='replace')}", err=True)

    tasks = {asyncio.create_task(up()), asyncio.create_task(down())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ws.close()
        writer.close()
