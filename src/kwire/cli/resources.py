"""Resource types as the user names them, resolved through the server's discovery.

kubectl accepts a plural (pods), a singular (pod), a short name (po), a kind
(Pod), any of these qualified by group or version.group (deploy.apps,
deployments.v1.apps), and categories (all); manifests name a kind and an
apiVersion instead. The Catalog answers both from the discovery documents, so
kinds the server adds later need nothing here.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

from kwire.cli.printing import kind_label
from kwire.client import Client


class ResourceError(Exception):
    """A type, kind or argument that names nothing the server serves."""


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    preferred: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def label(self) -> str:
        """"pod", "deployment.apps": the name in "pod/web created"."""
        return kind_label(self.kind, self.group)

    @property
    def qualified(self) -> str:
        """"pods", "deployments.apps": the resource as kubectl's messages name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def names(self) -> set[str]:
        return {self.plural, self.singular, self.kind.lower()}


class Catalog:
    """Every resource the server serves, in discovery order (core group first)."""

    def __init__(self, resources: list[Resource]):
        self.resources = resources

    @classmethod
    def from_discovery(cls, documents: list[tuple[dict, bool]]) -> "Catalog":
        """From APIResourceList documents, each with whether its version is its
        group's preferred one. Subresources (pods/log) are left out."""
        out = []
        for doc, preferred in documents:
            group, _, version = doc.get("groupVersion", "").rpartition("/")
            for r in doc.get("resources") or ():
                if "/" in r["name"]:
                    continue
                out.append(Resource(
                    group, version, r["name"], r.get("singularName") or r["kind"].lower(),
                    r["kind"], bool(r.get("namespaced")), tuple(r.get("shortNames") or ()),
                    tuple(r.get("categories") or ()), preferred))
        return cls(out)

    def resolve(self, token: str) -> list[Resource]:
        """The resources a type argument names: one, or a category's members."""
        name = token.lower()
        preferred = [r for r in self.resources if r.preferred]
        members = [r for r in preferred if name in r.categories]
        if members:
            return members
        for candidates, bare in self._qualified(name, preferred):
            found = [r for r in candidates if bare in r.short_names] or \
                [r for r in candidates if bare in r.names()]
            if found:
                return found[:1]
        raise ResourceError(f'the server doesn\'t have a resource type "{token}"')

    def _qualified(self, name: str,
                   preferred: list[Resource]) -> Iterator[tuple[list[Resource], str]]:
        """(candidates, bare name) for each reading of `name`: unqualified, then
        resource.group and resource.version.group, in that order."""
        yield preferred, name
        head, _, rest = name.partition(".")
        if rest:
            yield [r for r in preferred if r.group == rest], head
            version, _, group = rest.partition(".")
            yield [r for r in self.resources if r.group == group and r.version == version], head

    def for_kind(self, api_version: str, kind: str) -> Resource:
        """The resource a manifest's apiVersion and kind name."""
        for r in self.resources:
            if r.api_version == api_version and r.kind == kind:
                return r
        raise ResourceError(f'no matches for kind "{kind}" in version "{api_version}"')


async def discover(client: Client) -> Catalog:
    """Read the server's discovery: /api, /apis and every group version's list."""
    core, groups = await asyncio.gather(client.request("GET", "/api"),
                                        client.request("GET", "/apis"))
    paths = [(f"/api/{v}", True) for v in core.get("versions") or ()]
    for g in groups.get("groups") or ():
        preferred = (g.get("preferredVersion") or {}).get("groupVersion")
        for v in g.get("versions") or ():
            paths.append((f"/apis/{v['groupVersion']}", v["groupVersion"] == preferred))
    docs = await asyncio.gather(*(client.request("GET", p) for p, _ in paths))
    return Catalog.from_discovery([(d, pref) for d, (_, pref) in zip(docs, paths)])


def parse_targets(args: tuple[str, ...] | list[str]) -> list[tuple[str, list[str]]]:
    """kubectl's argument forms, as (type, names) pairs in the order given:
    `TYPE[,TYPE...] [NAME...]` (the names apply to every type) or
    `TYPE/NAME...`."""
    if not args:
        return []
    if any("/" in a for a in args):
        if "/" not in args[0]:
            raise ResourceError(
                "there is no need to specify a resource type as a separate argument when "
                "passing arguments in resource/name form (e.g. 'kwire get resource/<name>' "
                "instead of 'kwire get resource resource/<name>'")
        out: list[tuple[str, list[str]]] = []
        for arg in args:
            kind, _, name = arg.partition("/")
            if not kind or not name or "/" in name:
                raise ResourceError(f"arguments in resource/name form must have a single "
                                    f"resource and name, not {arg!r}")
            if out and out[-1][0] == kind:
                out[-1][1].append(name)
            else:
                out.append((kind, [name]))
        return out
    types = [t for t in args[0].split(",") if t]
    if not types:
        raise ResourceError(f"no resource type given in {args[0]!r}")
    return [(t, list(args[1:])) for t in types]
