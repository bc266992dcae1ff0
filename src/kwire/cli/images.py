"""`kwire images`: the machine's image store, as crictl shows a node's images.

Every verb works on the store at kwire.node.paths.image_root() ($KWIRE_IMAGE_ROOT
or /var/lib/kwire/images), the one the node agents on this machine run from, so an
image pulled or imported here is there for pods at once.
"""
from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from kwire.cli import CLIError
from kwire.cli.printing import TabWriter
from kwire.cluster.config import ClusterConfig, cluster_dir
from kwire.node.images import ImageError, ImageStore, parse_reference
from kwire.node.paths import image_root

SHORT_ID = 13
"""Hex digits of an image ID that crictl shows."""
SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


@click.group()
def images() -> None:
    """List, pull, import and remove the images pods on this machine run from."""


@images.command("ls")
def list_images() -> None:
    """List images: IMAGE, TAG, IMAGE ID, SIZE (as `crictl images`)."""
    writer = TabWriter(20, 3)
    writer.write("IMAGE\tTAG\tIMAGE ID\tSIZE\n")
    # Listing must not create a store where there is none.
    for info in _store().list() if (image_root() / "index.json").exists() else []:
        writer.write(f"{info.repository}\t{info.tag}\t{short_id(info.image_id)}\t"
                     f"{human_size(info.size)}\n")
    click.echo(writer.flush().rstrip("\n"))


@images.command("import")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_images(files: tuple[Path, ...]) -> None:
    """Load `docker save` tarballs or OCI image archives."""
    store = _store()
    for path in files:
        try:
            imported = store.import_archive(path)
        except ImageError as e:
            raise CLIError(str(e)) from None
        for image in imported:
            click.echo(f"imported {image.reference} ({short_id(image.id)})")


@images.command("pull")
@click.argument("ref")
@click.option("--name", default=ClusterConfig.name, show_default=True,
              help="Cluster whose registries.yaml (mirrors, credentials) to use.")
@click.option("--registries", "registries_file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Use this registries.yaml instead of the cluster's or the machine's.")
def pull_image(ref: str, name: str, registries_file: Path | None) -> None:
    """Pull an image from its registry (or the mirrors configured for it).

    Registries are configured in <cluster state dir>/registries.yaml, else in
    /etc/kwire/registries.yaml, in k3s's format (mirrors, configs).
    """
    # Imported here: aiohttp is only needed by this verb.
    from kwire.node.images.registry import load_registries, pull_sync, registries_for

    try:
        registries = (load_registries(registries_file) if registries_file
                      else registries_for(cluster_dir(name)))
        store = _store()
        with Console(stderr=True).status(f"Pulling {escape(ref)} ..."):
            image = pull_sync(store, ref, registries=registries)
    except ImageError as e:
        raise CLIError(str(e)) from None
    click.echo(f"Image is up to date for {image.id}")


@images.command("rm")
@click.argument("refs", nargs=-1, required=True)
def remove_images(refs: tuple[str, ...]) -> None:
    """Forget images by reference (their blobs stay until the store's gc)."""
    store = _store()
    missing = []
    for text in refs:
        try:
            ref = parse_reference(text)
        except ImageError as e:
            raise CLIError(str(e)) from None
        if store.remove(ref):
            click.echo(f"Deleted: {ref}")
        else:
            missing.append(text)
    if missing:
        raise CLIError(f"no such image: {', '.join(missing)}")


def short_id(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:SHORT_ID]


def human_size(size: int) -> str:
    """go-units' HumanSize, which crictl prints: decimal units, 4 significant digits."""
    value, unit = float(size), 0
    while value >= 1000 and unit < len(SIZE_UNITS) - 1:
        value /= 1000
        unit += 1
    return f"{value:.4g}{SIZE_UNITS[unit]}"


def _store() -> ImageStore:
    root = image_root()
    try:
        return ImageStore(root)
    except OSError as e:
        raise CLIError(f"cannot open the image store at {root}: {e.strerror}") from None
