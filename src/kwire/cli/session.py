"""How a kubectl-shaped verb reaches the cluster: the --kubeconfig, --context and
-n options, a client that also asks for server-side Tables, the discovery
catalog, and failures reported the way kubectl reports them."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import aiohttp
import click
import yaml

from kwire.cli import CLIError
from kwire.cli.printing import server_error
from kwire.cli.resources import Catalog, ResourceError, discover
from kwire.client import ApiError, Client, KubeconfigError
from kwire.cluster.kubeconfig import user_kubeconfig_path

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
F = TypeVar("F", bound=Callable[..., Any])


class KubeError(click.ClickException):
    """Failures already worded as kubectl words them ("Error from server
    (NotFound): ..."), one per line on stderr, exit code 1."""

    def show(self, file: IO[str] | None = None) -> None:
        click.echo(self.format_message(), err=file is None, file=file)


def fail(errors: list[str]) -> None:
    """End the verb with the errors collected on the way, if any."""
    if errors:
        raise KubeError("\n".join(errors))


class TableClient(Client):
    """The REST client, plus the meta.k8s.io/v1 Table form of gets, lists and watches."""

    async def table(self, path: str, params: dict | None = None) -> dict:
        return await self.request("GET", path, params=params, accept=TABLE)

    def watch_table(self, path: str,
                    params: dict | None = None) -> AsyncIterator[tuple[str, dict]]:
        """(event type, Table of the one object) until the server ends the
        stream; only the first Table carries column definitions."""
        return self.watch_path(path, params, accept=TABLE)


@dataclass
class Session:
    """One verb's connection. `namespace` is -n, else the context's, else
    "default"; `explicit_namespace` says it came from -n."""

    client: TableClient
    namespace: str
    explicit_namespace: bool
    _catalog: Catalog | None = field(default=None, repr=False)

    async def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = await discover(self.client)
        return self._catalog


def cluster_options(command: F) -> F:
    """--kubeconfig, --context and -n/--namespace, as kubectl spells them."""
    for decorator in reversed((
        click.option("--kubeconfig", metavar="PATH",
                     help="Kubeconfig file [default: $KUBECONFIG, else ~/.kube/config]."),
        click.option("--context", help="Kubeconfig context [default: the current one]."),
        click.option("-n", "--namespace", help="Namespace [default: the context's, "
                                               "else default]."),
    )):
        command = decorator(command)
    return command


def run(verb: Callable[[Session], Awaitable[None]], kubeconfig: str | None,
        context: str | None, namespace: str | None) -> None:
    """Run an async verb with a Session; expected failures become CLI errors."""
    try:
        asyncio.run(_session_run(verb, kubeconfig, context, namespace))
    except ApiError as e:
        raise KubeError(server_error(e.status)) from None
    except (ResourceError, KubeconfigError) as e:
        raise CLIError(str(e)) from None
    except aiohttp.ClientConnectorCertificateError as e:
        raise KubeError(f"Unable to connect to the server: {e.certificate_error}") from None
    except aiohttp.ClientConnectorError as e:
        raise KubeError(f"The connection to the server {e.host}:{e.port} was refused - "
                        "did you specify the right host or port?") from None
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
        raise KubeError(f"Unable to connect to the server: {e or type(e).__name__}") from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


async def _session_run(verb: Callable[[Session], Awaitable[None]], kubeconfig: str | None,
                       context: str | None, namespace: str | None) -> None:
    client = TableClient.from_kubeconfig(kubeconfig, context)
    try:
        default = _context_namespace(kubeconfig, context)
        await verb(Session(client, namespace or default, bool(namespace)))
    finally:
        await client.close()


def _context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace the kubeconfig context names, else "default" (the file has
    already been read once by Client.from_kubeconfig, so it is valid)."""
    path = kubeconfig or user_kubeconfig_path()
    config = yaml.safe_load(Path(path).read_text()) or {}
    context = context or config.get("current-context")
    for entry in config.get("contexts") or ():
        if entry.get("name") == context:
            return (entry.get("context") or {}).get("namespace") or "default"
    return "default"
