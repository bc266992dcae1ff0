"""The objects a verb's arguments name: `TYPE[,TYPE] [NAME...]` or `TYPE/NAME...`
resolved through discovery, a Query (namespace, selectors), and fetching them
with every failure collected, worded as kubectl words it, so one missing name
does not hide the others."""
from __future__ import annotations

from dataclasses import dataclass

from kwire.cli import CLIError
from kwire.cli.printing import list_error, no_resources_message, server_error
from kwire.cli.resources import Catalog, Resource, parse_targets
from kwire.client import ApiError, Client

Target = tuple[Resource, list[str]]


@dataclass
class Query:
    """Where and what to list: one namespace or all (None), and the selectors."""

    namespace: str | None
    label_selector: str | None = None
    field_selector: str | None = None

    def namespace_for(self, resource: Resource) -> str | None:
        return self.namespace if resource.namespaced else None

    def params(self) -> dict:
        return {"labelSelector": self.label_selector, "fieldSelector": self.field_selector}


def resolve_targets(catalog: Catalog, args: tuple[str, ...] | list[str],
                    query: Query) -> list[Target]:
    targets = [(r, names) for token, names in parse_targets(args)
               for r in catalog.resolve(token)]
    if (query.label_selector or query.field_selector) and any(n for _, n in targets):
        raise CLIError("name cannot be provided when a selector is specified")
    return targets


async def fetch_objects(client: Client, targets: list[Target],
                        query: Query) -> tuple[list[tuple[Resource, dict]], list[str]]:
    """The named objects, or every object of a type the query matches; and the
    errors met on the way."""
    found: list[tuple[Resource, dict]] = []
    errors: list[str] = []
    for resource, names in targets:
        ns = query.namespace_for(resource)
        for name in names:
            try:
                found.append((resource, await client.get(resource.api_version,
                                                         resource.plural, name, ns)))
            except ApiError as e:
                errors.append(request_error(e, resource, names, query))
        if not names:
            try:
                items, _ = await client.list(resource.api_version, resource.plural, ns,
                                             label_selector=query.label_selector,
                                             field_selector=query.field_selector)
                found.extend((resource, item) for item in items)
            except ApiError as e:
                errors.append(request_error(e, resource, names, query))
    return found, errors


def request_error(e: ApiError, resource: Resource, names: list[str], query: Query) -> str:
    """A failed get as the server said it; a failed list with the resource and
    selectors named, as kubectl's resource builder does."""
    if names:
        return server_error(e.status)
    gvr = f"{resource.group}/{resource.version}, Resource={resource.plural}"
    return list_error(e.status, gvr, query.label_selector, query.field_selector)


def no_resources(targets: list[Target], query: Query) -> str:
    """What to say when nothing matched: the namespace is named unless listing
    all namespaces or any type asked for is cluster-scoped."""
    namespaced = query.namespace is not None and all(r.namespaced for r, _ in targets)
    return no_resources_message(query.namespace if namespaced else None)
