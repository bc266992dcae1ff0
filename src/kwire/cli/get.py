"""`kwire get`: kubectl get, printing the Tables the server renders, so every kind
shows the same columns as under kubectl, with no printing code per kind."""
from __future__ import annotations

from contextlib import aclosing
from dataclasses import replace

import click

from kwire.cli import CLIError
from kwire.cli.lookup import (Query, Target, fetch_objects, no_resources, request_error,
                              resolve_targets)
from kwire.cli.printing import TabWriter, as_list, table_lines, to_json, to_yaml
from kwire.cli.resources import Resource
from kwire.cli.session import Session, cluster_options, fail, run
from kwire.client import ApiError, resource_path

OUTPUTS = ("wide", "yaml", "json", "name")


@click.command()
@click.argument("args", nargs=-1, metavar="TYPE[,TYPE...] [NAME...] | TYPE/NAME...")
@cluster_options
@click.option("-A", "--all-namespaces", is_flag=True, help="List across all namespaces.")
@click.option("-l", "--selector", help="Label selector, e.g. app=web,tier!=db.")
@click.option("--field-selector", help="Field selector, e.g. status.phase=Running.")
@click.option("-o", "--output", type=click.Choice(OUTPUTS),
              help="wide: more columns; yaml, json: the objects; name: TYPE/NAME.")
@click.option("-w", "--watch", is_flag=True, help="After listing, print changes as they "
                                                  "happen (until interrupted).")
def get(args: tuple[str, ...], kubeconfig: str | None, context: str | None,
        namespace: str | None, all_namespaces: bool, selector: str | None,
        field_selector: str | None, output: str | None, watch: bool) -> None:
    """Show resources, by type (pods,svc; all), optionally by name."""
    if not args:
        raise CLIError('you must specify the type of resource to get, e.g. "kwire get pods"')

    async def verb(session: Session) -> None:
        query = Query(None if all_namespaces else session.namespace, selector, field_selector)
        targets = resolve_targets(await session.catalog(), args, query)
        if all_namespaces and any(names for _, names in targets):
            raise CLIError("a resource cannot be retrieved by name across all namespaces")
        if watch:
            await _watch(session, targets, query, output)
        elif output in ("yaml", "json", "name"):
            await _print_objects(session, targets, query, output)
        else:
            await _print_tables(session, targets, query, output == "wide")

    run(verb, kubeconfig, context, namespace)


async def _print_tables(session: Session, targets: list[Target], query: Query,
                        wide: bool) -> None:
    """One table per resource type, blank lines between those with rows; names
    carry their kind ("pod/web") when several kinds are shown."""
    with_kind = len({(r.group, r.kind) for r, _ in targets}) > 1
    writer = TabWriter(6, 3, remember_widths=True)
    errors: list[str] = []
    printed = False
    for resource, names in targets:
        tables = []
        for path in _paths(resource, names, query):
            try:
                tables.append(await session.client.table(path, query.params()))
            except ApiError as e:
                errors.append(request_error(e, resource, names, query))
        rows = [row for t in tables for row in t.get("rows") or ()]
        if not rows:
            continue
        if printed:
            click.echo()
        writer.reset_widths()
        writer.write(table_lines(
            {"columnDefinitions": tables[0].get("columnDefinitions"), "rows": rows},
            wide=wide, with_namespace=query.namespace is None and resource.namespaced,
            kind_prefix=resource.label if with_kind else None))
        click.echo(writer.flush(), nl=False)
        printed = True
    if not printed and not errors:
        click.echo(no_resources(targets, query), err=True)
    fail(errors)


async def _print_objects(session: Session, targets: list[Target], query: Query,
                         output: str) -> None:
    """-o yaml|json print one object when one name was asked for, else a List
    (even an empty one); -o name prints TYPE/NAME lines."""
    found, errors = await fetch_objects(session.client, targets, query)
    if output == "name":
        for resource, obj in found:
            click.echo(f"{resource.label}/{obj['metadata']['name']}")
    else:
        single = len(targets) == 1 and len(targets[0][1]) == 1
        if found or not single:
            doc = found[0][1] if single else as_list(obj for _, obj in found)
            click.echo(to_yaml(doc) if output == "yaml" else to_json(doc), nl=False)
    fail(errors)


async def _watch(session: Session, targets: list[Target], query: Query,
                 output: str | None) -> None:
    """kubectl get -w: the current table (or objects), then a row (or object) for
    every change, until the server ends the watch or the user interrupts."""
    if len(targets) != 1 or len(targets[0][1]) > 1:
        raise CLIError("watch is only supported on individual resources and resource "
                       f"collections, but {sum(max(len(n), 1) for _, n in targets)} "
                       "resources were found")
    resource, names = targets[0]
    path = resource_path(resource.api_version, resource.plural, query.namespace_for(resource))
    if names:
        # As kubectl: watching an object that does not exist is an error, not a wait.
        await session.client.get(resource.api_version, resource.plural, names[0],
                                 query.namespace_for(resource))
        query = replace(query, field_selector=f"metadata.name={names[0]}")
    if output in ("yaml", "json", "name"):
        await _watch_objects(session, resource, query, output)
        return
    first = await session.client.table(path, query.params())
    columns = first.get("columnDefinitions")
    with_namespace = query.namespace is None and resource.namespaced
    writer = TabWriter(6, 3, remember_widths=True)
    header = True

    def show(rows: list[dict]) -> None:
        nonlocal header
        writer.write(table_lines({"columnDefinitions": columns, "rows": rows},
                                 wide=output == "wide", header=header,
                                 with_namespace=with_namespace))
        click.echo(writer.flush(), nl=False)
        header = header and not rows

    show(first.get("rows") or [])
    params = {**query.params(), "resourceVersion": first["metadata"].get("resourceVersion")}
    async with aclosing(session.client.watch_table(path, params)) as events:
        async for _, table in events:
            show(table.get("rows") or [])


async def _watch_objects(session: Session, resource: Resource, query: Query,
                         output: str) -> None:
    ns = query.namespace_for(resource)
    items, rv = await session.client.list(resource.api_version, resource.plural, ns,
                                          label_selector=query.label_selector,
                                          field_selector=query.field_selector)
    count = 0

    def show(obj: dict) -> None:
        nonlocal count
        if output == "name":
            click.echo(f"{resource.label}/{obj['metadata']['name']}")
        elif output == "json":
            click.echo(to_json(obj), nl=False)
        else:
            click.echo(("---\n" if count else "") + to_yaml(obj), nl=False)
        count += 1

    for item in items:
        show(item)
    stream = session.client.watch(resource.api_version, resource.plural, ns,
                                  resource_version=rv, label_selector=query.label_selector,
                                  field_selector=query.field_selector)
    async with aclosing(stream) as events:
        async for etype, obj in events:
            if etype != "BOOKMARK":
                show(obj)


def _paths(resource: Resource, names: list[str], query: Query) -> list[str]:
    """The object paths of the names, or the one collection path."""
    ns = query.namespace_for(resource)
    if not names:
        return [resource_path(resource.api_version, resource.plural, ns)]
    return [resource_path(resource.api_version, resource.plural, ns, n) for n in names]
