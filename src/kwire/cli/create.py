"""`kwire create`: create objects from manifests (failing on those that exist,
unlike apply), or from a name alone (`kwire create namespace NAME`)."""
from __future__ import annotations

import click

from kwire.cli import CLIError
from kwire.cli.manifests import placed, read_manifests
from kwire.cli.printing import server_error
from kwire.cli.session import Session, cluster_options, fail, run
from kwire.client import ApiError

NAMESPACE_WORDS = ("namespace", "ns")


@click.command()
@click.argument("args", nargs=-1, metavar="[namespace NAME]")
@click.option("-f", "--filename", "files", multiple=True, metavar="FILE|DIR|-",
              help="Manifests: YAML or JSON files, directories of them, or - for stdin.")
@cluster_options
def create(args: tuple[str, ...], files: tuple[str, ...], kubeconfig: str | None,
           context: str | None, namespace: str | None) -> None:
    """Create objects from manifests, or a namespace by name."""
    if args and files:
        raise CLIError("give either -f or namespace NAME, not both")
    if args:
        if len(args) != 2 or args[0] not in NAMESPACE_WORDS:
            raise CLIError(f"unknown form {' '.join(args)!r}: use -f FILE or namespace NAME")
        run(lambda session: _create_namespace(session, args[1]), kubeconfig, context,
            namespace)
        return
    if not files:
        raise CLIError("must specify one of -f and namespace NAME")
    stdin = click.get_text_stream("stdin")

    async def verb(session: Session) -> None:
        manifests = read_manifests(files, stdin, "create")
        catalog = await session.catalog()
        errors: list[str] = []
        for m, resource, ns in placed(catalog, manifests, session.namespace,
                                      session.explicit_namespace, errors):
            try:
                obj = await session.client.create(resource.api_version, resource.plural,
                                                  m.body(ns), ns)
            except ApiError as e:
                errors.append(server_error(e.status, "creating", m.source))
                continue
            click.echo(f"{resource.label}/{obj['metadata']['name']} created")
        fail(errors)

    run(verb, kubeconfig, context, namespace)


async def _create_namespace(session: Session, name: str) -> None:
    obj = await session.client.create("v1", "namespaces", {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    click.echo(f"namespace/{obj['metadata']['name']} created")
