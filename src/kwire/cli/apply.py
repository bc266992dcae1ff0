"""`kwire apply -f`: create or update objects from manifests.

Updates go through server-side apply (field manager "kwire", conflicts
forced), so the server merges and no last-applied annotation is needed; the
output is still kubectl's client-side one: created when the object was absent,
configured when its resourceVersion moved, unchanged otherwise."""
from __future__ import annotations

import click

from kwire.cli.manifests import Manifest, placed, read_manifests
from kwire.cli.printing import server_error
from kwire.cli.resources import Resource
from kwire.cli.session import Session, cluster_options, fail, run
from kwire.client import ApiError, Client

FIELD_MANAGER = "kwire"


@click.command()
@click.option("-f", "--filename", "files", multiple=True, required=True,
              metavar="FILE|DIR|-", help="Manifests: YAML or JSON files, directories of "
                                         "them, or - for stdin.")
@cluster_options
def apply(files: tuple[str, ...], kubeconfig: str | None, context: str | None,
          namespace: str | None) -> None:
    """Create objects, or update them in place, from manifests."""
    stdin = click.get_text_stream("stdin")

    async def verb(session: Session) -> None:
        manifests = read_manifests(files, stdin, "apply")
        catalog = await session.catalog()
        errors: list[str] = []
        for m, resource, ns in placed(catalog, manifests, session.namespace,
                                      session.explicit_namespace, errors):
            if not m.name:
                errors.append(f"error: error when retrieving current configuration of "
                              f'{resource.label} from server for: "{m.source}": resource '
                              "name may not be empty")
                continue
            try:
                click.echo(f"{resource.label}/{m.name} "
                           f"{await _apply_one(session.client, resource, m, ns)}")
            except _Failed as e:
                errors.append(e.args[0])
        fail(errors)

    run(verb, kubeconfig, context, namespace)


class _Failed(Exception):
    """One object failed; the others are still applied."""


async def _apply_one(client: Client, resource: Resource, m: Manifest,
                     namespace: str | None) -> str:
    """Server-side apply one object; "created", "configured" or "unchanged"."""
    try:
        before = await client.get(resource.api_version, resource.plural, m.name, namespace)
    except ApiError as e:
        if e.code != 404:
            raise _Failed(server_error(e.status)) from None
        before = None
    try:
        after = await client.patch(resource.api_version, resource.plural, m.name,
                                   m.body(namespace), namespace, patch_type="apply",
                                   field_manager=FIELD_MANAGER, force=True)
    except ApiError as e:
        action = "creating" if before is None else "patching"
        raise _Failed(server_error(e.status, action, m.source)) from None
    if before is None:
        return "created"
    changed = after["metadata"].get("resourceVersion") != \
        before["metadata"].get("resourceVersion")
    return "configured" if changed else "unchanged"
