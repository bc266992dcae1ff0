"""Manifests given with -f: files, directories or stdin, in YAML or JSON.

A file may hold several YAML documents and List kinds; each object keeps the
name of its source, because kubectl's messages name it ('error when creating
"web.yaml": ...').
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TextIO

import yaml

from kwire.cli.resources import Catalog, Resource, ResourceError

STDIN = "STDIN"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Manifest:
    obj: dict
    source: str

    @property
    def name(self) -> str:
        return (self.obj.get("metadata") or {}).get("name") or ""

    @property
    def namespace(self) -> str:
        return (self.obj.get("metadata") or {}).get("namespace") or ""

    def body(self, namespace: str | None) -> dict:
        """The object to send: as written, in the namespace it goes to."""
        meta = dict(self.obj.get("metadata") or {})
        if namespace:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return {**self.obj, "metadata": meta}


class _Loader(yaml.SafeLoader):
    """YAML as Kubernetes reads it: unquoted timestamps stay strings (they are
    strings in every API object), so every manifest converts to JSON."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def parse_manifests(text: str, source: str) -> list[Manifest]:
    """The objects in one file: every non-empty document, List items in order."""
    try:
        documents = [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.YAMLError as e:
        raise ResourceError(f"error parsing {source}: {e}") from None
    out: list[Manifest] = []
    for doc in documents:
        for obj in _items(doc, source):
            missing = [f for f in ("apiVersion", "kind") if not obj.get(f)]
            if missing:
                raise ResourceError(f'error validating "{source}": error validating data: '
                                    + ", ".join(f"{f} not set" for f in missing))
            out.append(Manifest(obj, source))
    return out


def _items(doc: object, source: str) -> list[dict]:
    if not isinstance(doc, dict):
        raise ResourceError(f"error parsing {source}: a manifest must be a mapping, "
                            f"not {type(doc).__name__}")
    if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
        return [obj for item in doc["items"] for obj in _items(item, source)]
    return [doc]


def read_manifests(paths: tuple[str, ...] | list[str], stdin: TextIO,
                   verb: str) -> list[Manifest]:
    """Every object in the given files ("-" is stdin); a directory contributes its
    .yaml, .yml and .json files in name order, as kubectl reads them."""
    out: list[Manifest] = []
    for p in paths:
        if p == "-":
            out.extend(parse_manifests(stdin.read(), STDIN))
            continue
        path = Path(p)
        if path.is_dir():
            files = sorted(f for f in path.iterdir()
                           if f.is_file() and f.suffix in MANIFEST_SUFFIXES)
        elif path.exists():
            files = [path]
        else:
            raise ResourceError(f'the path "{p}" does not exist')
        for f in files:
            try:
                text = f.read_text()
            except OSError as e:
                raise ResourceError(f"cannot read {f}: {e.strerror}") from None
            out.extend(parse_manifests(text, str(f)))
    if not out:
        raise ResourceError(f"no objects passed to {verb}")
    return out


def place(catalog: Catalog, manifest: Manifest, namespace: str,
          explicit: bool) -> tuple[Resource, str | None]:
    """The resource of a manifest's object and the namespace it goes to: its own,
    else the one given with -n or by the context (None for cluster-scoped
    kinds). An object naming another namespace than an explicit -n is refused,
    as kubectl does."""
    try:
        resource = catalog.for_kind(str(manifest.obj["apiVersion"]), str(manifest.obj["kind"]))
    except ResourceError as e:
        raise ResourceError(f'resource mapping not found for name: "{manifest.name}" '
                            f'namespace: "{manifest.namespace}" from "{manifest.source}": '
                            f"{e}\nensure CRDs are installed first") from None
    if not resource.namespaced:
        return resource, None
    own = manifest.namespace
    if own and explicit and own != namespace:
        raise ResourceError(
            f'the namespace from the provided object "{own}" does not match the namespace '
            f'"{namespace}". You must pass \'--namespace={own}\' to perform this operation.')
    return resource, own or namespace



def placed(catalog: Catalog, manifests: list[Manifest], namespace: str, explicit: bool,
           errors: list[str]) -> Iterator[tuple[Manifest, Resource, str | None]]:
    """Each manifest with its resource and namespace (see place); one that cannot
    be placed adds kubectl's error line to errors and is skipped."""
    for m in manifests:
        try:
            resource, ns = place(catalog, m, namespace, explicit)
        except ResourceError as e:
            errors.append(f"error: {e}")
            continue
        yield m, resource, ns
