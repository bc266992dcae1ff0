"""`kwire logs`: kubectl logs for one pod. Like kubectl it fetches the pod first,
checks -c itself, picks the default container (the kubectl.kubernetes.io/
default-container annotation, else the first) and says so when there was a choice,
then streams GET .../pods/NAME/log to stdout as it arrives."""
from __future__ import annotations

import math
import re
import sys

import aiohttp
import click

from kwire.cli import CLIError
from kwire.cli.session import Session, cluster_options, run
from kwire.client import Client, resource_path
from kwire.client.rest import api_error

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
POD_PREFIXES = ("pod/", "pods/", "po/")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)


@click.command()
@click.argument("pod", metavar="POD")
@cluster_options
@click.option("-c", "--container", help="The container [default: the pod's default one].")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming as the container writes.")
@click.option("--tail", type=int, default=-1, show_default=True,
              help="Show only the last N lines (-1: all).")
@click.option("--since", metavar="DURATION",
              help="Only lines newer than this, e.g. 30s, 5m, 1h30m.")
@click.option("--timestamps", is_flag=True, help="Prefix each line with its time.")
@click.option("-p", "--previous", is_flag=True,
              help="The previous, terminated instance of the container.")
def logs(pod: str, kubeconfig: str | None, context: str | None, namespace: str | None,
         container: str | None, follow: bool, tail: int, since: str | None, timestamps: bool,
         previous: bool) -> None:
    """Print the logs of a container in a pod."""
    name = pod_name(pod)
    params = {"follow": follow, "tailLines": tail if tail >= 0 else None,
              "sinceSeconds": (since_seconds(since) or None) if since else None,
              "timestamps": timestamps, "previous": previous}

    async def verb(session: Session) -> None:
        obj = await session.client.get("v1", "pods", name, session.namespace)
        params["container"] = pick_container(obj, container)
        path = resource_path("v1", "pods", session.namespace, name, "log")
        await stream_to(session.client, path, params, sys.stdout.buffer)

    run(verb, kubeconfig, context, namespace)


def pod_name(arg: str) -> str:
    """NAME from NAME or pod/NAME (logs and exec are about one pod)."""
    kind, sep, name = arg.partition("/")
    if not sep:
        return arg
    if arg.startswith(POD_PREFIXES) and name:
        return name
    raise CLIError(f"only pods are supported here, not {kind!r}: give POD or pod/POD")


def pick_container(pod: dict, requested: str | None) -> str:
    """The container kubectl would use: -c (which must exist), else the
    default-container annotation's, else the first; 'Defaulted container' goes to
    stderr when there was a choice."""
    spec = pod.get("spec") or {}
    meta = pod["metadata"]
    names = [c["name"] for c in spec.get("containers") or ()]
    init = [c["name"] for c in spec.get("initContainers") or ()]
    every = names + init + [c["name"] for c in spec.get("ephemeralContainers") or ()]
    if requested:
        if requested not in every:
            raise CLIError(f"container {requested} is not valid for pod {meta['name']}")
        return requested
    annotated = (meta.get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    if annotated in every:
        return annotated
    if not names:
        raise CLIError(f"pod {meta['name']} has no containers")
    if len(names) + len(init) > 1:
        choices = ", ".join(names + [f"{c} (init)" for c in init])
        click.echo(f'Defaulted container "{names[0]}" out of: {choices}', err=True)
    return names[0]


def since_seconds(duration: str) -> int:
    """A Go duration ("90s", "5m", "1h30m") in whole seconds, rounded up as kubectl
    does (0 means no limit)."""
    text = duration.strip()
    if not text or _DURATION.sub("", text):
        raise CLIError(f'invalid argument "{duration}" for "--since" flag: time: invalid '
                       f'duration "{duration}"')
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(text))
    return math.ceil(seconds)


async def stream_to(client: Client, path: str, params: dict, out) -> None:
    """GET a text stream (a log) and copy it to `out` as it comes."""
    query = {k: ("true" if v is True else str(v)) for k, v in params.items()
             if v is not None and v is not False}
    async with client.session().get(client.server + path, params=query,
                                         headers={"Accept": "*/*"},
                                         timeout=STREAM_TIMEOUT) as resp:
        if resp.status >= 400:
            raise api_error(resp.status, resp.reason, await resp.read())
        async for chunk in resp.content.iter_any():
            out.write(chunk)
            out.flush()

