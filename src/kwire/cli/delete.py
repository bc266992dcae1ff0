"""`kwire delete`: delete objects named by TYPE NAME, by label selector or by
manifest, then (unless --no-wait) wait until they are gone, as kubectl does:
finalizers and graceful termination can keep an object for a while after the
DELETE itself succeeded."""
from __future__ import annotations

import asyncio
from typing import NamedTuple, TextIO

import click

from kwire.cli import CLIError
from kwire.cli.lookup import Query, request_error, resolve_targets
from kwire.cli.manifests import placed, read_manifests
from kwire.cli.printing import no_resources_message, server_error
from kwire.cli.resources import Resource
from kwire.cli.session import Session, cluster_options, fail, run
from kwire.client import ApiError, Client

POLL_INTERVAL = 0.25


class Doomed(NamedTuple):
    resource: Resource
    namespace: str | None
    name: str
    source: str | None  # the manifest naming the object, if any


@click.command()
@click.argument("args", nargs=-1, metavar="TYPE[,TYPE...] NAME... | TYPE/NAME...")
@click.option("-f", "--filename", "files", multiple=True, metavar="FILE|DIR|-",
              help="Delete the objects these manifests describe.")
@cluster_options
@click.option("-l", "--selector", help="Delete the objects of TYPE with these labels.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until the objects are gone.")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds to wait for the objects to be gone.")
@click.option("--grace-period", default=-1, show_default=True, type=int,
              help="Seconds the object has to terminate; -1: its own default.")
@click.option("--cascade", default="background", show_default=True,
              type=click.Choice(["background", "foreground", "orphan"]),
              help="What happens to dependents: deleted in the background, deleted "
                   "before the owner, or left behind.")
def delete(args: tuple[str, ...], files: tuple[str, ...], kubeconfig: str | None,
           context: str | None, namespace: str | None, selector: str | None, wait: bool,
           timeout: float, grace_period: int, cascade: str) -> None:
    """Delete objects, by type and name, label or manifest."""
    if args and files:
        raise CLIError("give either TYPE NAME arguments or -f, not both")
    if not args and not files:
        raise CLIError("You must provide one or more resources by argument or filename.")
    stdin = click.get_text_stream("stdin")

    async def verb(session: Session) -> None:
        options = {"propagation_policy": cascade.capitalize(),
                   "grace_period_seconds": None if grace_period < 0 else grace_period}
        if files:
            doomed, errors = await _from_manifests(session, files, stdin)
        else:
            doomed, errors = await _from_args(session, args, selector)
        deleted: list[tuple[Doomed, str | None]] = []
        for d in doomed:
            try:
                obj = await session.client.delete(d.resource.api_version, d.resource.plural,
                                                  d.name, d.namespace, **options)
            except ApiError as e:
                errors.append(server_error(e.status, "deleting", d.source))
                continue
            click.echo(f'{d.resource.label} "{d.name}" deleted')
            uid = (obj.get("metadata") or {}).get("uid") or (obj.get("details") or {}).get("uid")
            deleted.append((d, uid))
        if wait and deleted:
            errors.extend(await _wait_gone(session.client, deleted, timeout))
        fail(errors)

    run(verb, kubeconfig, context, namespace)


async def _from_args(session: Session, args: tuple[str, ...],
                     selector: str | None) -> tuple[list[Doomed], list[str]]:
    """The named objects, or those of each type that the selector matches."""
    query = Query(session.namespace, selector)
    targets = resolve_targets(await session.catalog(), args, query)
    if not selector and not all(names for _, names in targets):
        raise CLIError("resource(s) were provided, but no name was specified")
    doomed: list[Doomed] = []
    errors: list[str] = []
    for resource, names in targets:
        ns = query.namespace_for(resource)
        if not names:
            try:
                items, _ = await session.client.list(resource.api_version, resource.plural,
                                                     ns, label_selector=selector)
            except ApiError as e:
                errors.append(request_error(e, resource, names, query))
                continue
            names = [item["metadata"]["name"] for item in items]
        doomed.extend(Doomed(resource, ns, name, None) for name in names)
    if not doomed and not errors:
        click.echo(no_resources_message(None), err=True)  # kubectl names no namespace here
    return doomed, errors


async def _from_manifests(session: Session, files: tuple[str, ...],
                          stdin: TextIO) -> tuple[list[Doomed], list[str]]:
    catalog = await session.catalog()
    doomed: list[Doomed] = []
    errors: list[str] = []
    for m, resource, ns in placed(catalog, read_manifests(files, stdin, "delete"),
                                  session.namespace, session.explicit_namespace, errors):
        doomed.append(Doomed(resource, ns, m.name, m.source))
    return doomed, errors


async def _wait_gone(client: Client, deleted: list[tuple[Doomed, str | None]],
                     timeout: float) -> list[str]:
    """Wait for every deleted object to be gone; kubectl's message for each that
    is still there after the timeout."""
    tasks = {asyncio.create_task(_gone(client, d, uid)): d for d, uid in deleted}
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    for task in done:
        task.result()  # a failure other than NotFound ends the verb
    return [f"error: timed out waiting for the condition on {d.resource.qualified}/{d.name}"
            for t, d in tasks.items() if t in pending]


async def _gone(client: Client, d: Doomed, uid: str | None) -> None:
    """Until the object is gone (or replaced by a new one of the same name)."""
    while True:
        try:
            obj = await client.get(d.resource.api_version, d.resource.plural, d.name,
                                   d.namespace)
        except ApiError as e:
            if e.code == 404:
                return
            raise
        if uid and obj["metadata"].get("uid") != uid:
            return
        await asyncio.sleep(POLL_INTERVAL)
