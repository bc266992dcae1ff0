"""`kwire describe`: kubectl describe. Fetches each object with what its
description shows (its events; a Service's EndpointSlices) and hands them to the
pure describers."""
from __future__ import annotations

import click

from kwire.cli.describers import describe as describe_object
from kwire.cli.lookup import Query, fetch_objects, no_resources, resolve_targets
from kwire.cli.session import Session, cluster_options, fail, run
from kwire.client import ApiError, Client

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="TYPE [NAME...] | TYPE/NAME...")
@cluster_options
@click.option("-l", "--selector", help="Describe the objects with these labels.")
def describe(args: tuple[str, ...], kubeconfig: str | None, context: str | None,
             namespace: str | None, selector: str | None) -> None:
    """Show objects in detail, with their recent events.

    With no NAME, every object of TYPE in the namespace (or matching -l)."""

    async def verb(session: Session) -> None:
        query = Query(session.namespace, selector)
        targets = resolve_targets(await session.catalog(), args, query)
        found, errors = await fetch_objects(session.client, targets, query)
        if not found and not errors:
            click.echo(no_resources(targets, query), err=True)
        texts = [await _description(session.client, obj) for _, obj in found]
        click.echo("\n\n".join(texts), nl=False)
        fail(errors)

    run(verb, kubeconfig, context, namespace)


async def _description(client: Client, obj: dict) -> str:
    meta = obj["metadata"]
    ns = meta.get("namespace")
    events = await _related(client, "v1", "events", ns, field_selector=",".join((
        f"involvedObject.name={meta['name']}", f"involvedObject.namespace={ns or ''}",
        f"involvedObject.uid={meta.get('uid', '')}")))
    slices: list[dict] = []
    if (obj.get("kind"), obj.get("apiVersion")) == ("Service", "v1"):
        slices = await _related(client, "discovery.k8s.io/v1", "endpointslices", ns,
                                label_selector=f"{SERVICE_NAME_LABEL}={meta['name']}")
    return describe_object(obj, events, slices)


async def _related(client: Client, api_version: str, plural: str, namespace: str | None,
                   **selectors: str) -> list[dict]:
    """Objects a description shows besides the object itself; as with kubectl, a
    description without them beats none at all when they cannot be listed."""
    try:
        items, _ = await client.list(api_version, plural, namespace, **selectors)
    except ApiError:
        return []
    return items
