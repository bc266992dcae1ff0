"""`kwire describe`: kubectl describe. Fetches each object with what its
description shows (its events; a Service's endpoints) and hands them to the
pure describers."""
from __future__ import annotations

import click

from kwire.cli import CLIError
from kwire.cli.describers import describe as describe_object
from kwire.cli.printing import no_resources_message, server_error
from kwire.cli.resources import Resource, parse_targets
from kwire.cli.session import KubeError, Session, TableClient, cluster_options, run
from kwire.client import ApiError


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="TYPE [NAME...] | TYPE/NAME...")
@cluster_options
@click.option("-l", "--selector", help="Describe the objects with these labels.")
def describe(args: tuple[str, ...], kubeconfig: str | None, context: str | None,
             namespace: str | None, selector: str | None) -> None:
    """Show the details of objects and their recent events (every object of
    the type when no name is given)."""

    async def verb(session: Session) -> None:
        catalog = await session.catalog()
        targets = [(r, names) for token, names in parse_targets(args)
                   for r in catalog.resolve(token)]
        if selector and any(names for _, names in targets):
            raise CLIError("name cannot be provided when a selector is specified")
        objects: list[dict] = []
        errors: list[str] = []
        for resource, names in targets:
            ns = session.namespace if resource.namespaced else None
            try:
                if names:
                    for name in names:
                        try:
                            objects.append(await session.client.get(
                                resource.api_version, resource.plural, name, ns))
                        except ApiError as e:
                            errors.append(server_error(e.status))
                else:
                    items, _ = await session.client.list(resource.api_version, resource.plural,
                                                         ns, label_selector=selector)
                    objects.extend(items)
            except ApiError as e:
                errors.append(server_error(e.status))
        if not objects and not errors:
            namespaced = all(r.namespaced for r, _ in targets)
            click.echo(no_resources_message(session.namespace if namespaced else None),
                       err=True)
        texts = [await _description(session.client, obj) for obj in objects]
        click.echo("\n\n".join(texts), nl=False)
        if errors:
            raise KubeError("\n".join(errors))

    run(verb, kubeconfig, context, namespace)


async def _description(client: TableClient, obj: dict) -> str:
    meta = obj["metadata"]
    ns = meta.get("namespace")
    selector = ",".join((f"involvedObject.name={meta['name']}",
                         f"involvedObject.namespace={ns or ''}",
                         f"involvedObject.uid={meta.get('uid', '')}"))
    try:
        events, _ = await client.list("v1", "events", ns, field_selector=selector)
    except ApiError:
        events = []  # as kubectl: a description without events beats none at all
    endpoints = None
    if (obj.get("kind"), obj.get("apiVersion")) == ("Service", "v1"):
        try:
            endpoints = await client.get("v1", "endpoints", meta["name"], ns)
        except ApiError as e:
            if e.code != 404:
                raise
    return describe_object(obj, events, endpoints)
