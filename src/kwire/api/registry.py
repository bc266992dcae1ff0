"""Kinds as data: one Kind entry per resource, looked up by the REST layer.

Everything the server needs to know about a kind (names, scope, defaults,
validation, table columns, strategic-merge keys) lives in its entry, so adding a
kind means adding one entry in one module under ``kwire.api.kinds``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from kwire.api.validation import Cause

Obj = dict[str, Any]


def _no_default(obj: Obj) -> None:
    return None


def _no_prepare(new: Obj, old: Obj) -> None:
    return None


def _no_causes(*_: Any) -> list[Cause]:
    return []


@dataclass(frozen=True)
class Column:
    """A meta.k8s.io/v1 Table column definition."""

    name: str
    type: str = "string"
    format: str = ""
    description: str = ""
    priority: int = 0

    def to_json(self) -> Obj:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description, "priority": self.priority}


NAME_COLUMN = Column("Name", format="name", description="Name must be unique within a namespace.")
AGE_COLUMN = Column("Age", description="CreationTimestamp is a timestamp representing the server time when this object was created.")


def _name_age_row(obj: Obj, now: datetime) -> list:
    from kwire.api.tables import age

    return [obj["metadata"]["name"], age(obj, now)]


@dataclass(frozen=True)
class Kind:
    """One API resource.

    default(obj): fills defaults in place, as the real API server's defaulting does;
        runs on create and on every update of the main resource.
    prepare_update(new, old): the kind's strategy before an update is validated
        (upstream PrepareForUpdate), in place.
    validate(obj): causes for a create (and for every update, on the new object).
    validate_update(new, old): extra causes for an update (immutable fields...).
    row(obj, now): the Table cells, one per entry of columns.
    merge_schema: strategic-merge-patch schema (see kwire.api.smp).
    field_labels: field selector name -> getter, beyond metadata.name/namespace.
    status_subresource: the main resource ignores status changes and /status
        ignores everything else, as in Kubernetes.
    keep_status_on_create: the status a client creates the object with is kept
        (Nodes register with theirs); otherwise it is reset.
    return_deleted_object: a DELETE answers with the deleted object (Pods, Services,
        ServiceAccounts upstream); otherwise with a Status.
    review(obj, user): for review kinds (access reviews), the answer to a create;
        nothing is stored and no other verb is served.
    spec_paths: fields (dotted paths) whose change bumps metadata.generation.
    """

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    status_subresource: bool = False
    keep_status_on_create: bool = False
    return_deleted_object: bool = False
    spec_paths: tuple[str, ...] = ("spec",)
    default: Callable[[Obj], None] = _no_default
    prepare_update: Callable[[Obj, Obj], None] = _no_prepare
    validate: Callable[[Obj], list[Cause]] = _no_causes
    validate_update: Callable[[Obj, Obj], list[Cause]] = _no_causes
    columns: tuple[Column, ...] = (NAME_COLUMN, AGE_COLUMN)
    row: Callable[[Obj, datetime], list] = _name_age_row
    merge_schema: Obj = field(default_factory=dict)
    field_labels: dict[str, Callable[[Obj], str]] = field(default_factory=dict)
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list",
                              "patch", "update", "watch")
    review: Callable[[Obj, Any], Obj] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


class Registry:
    """Every served kind, indexed the ways the REST layer asks for them."""

    def __init__(self) -> None:
        self._kinds: list[Kind] = []
        self._by_resource: dict[tuple[str, str, str], Kind] = {}
        self._by_kind: dict[tuple[str, str], Kind] = {}

    def add(self, kind: Kind) -> Kind:
        key = (kind.group, kind.version, kind.plural)
        if key in self._by_resource:
            raise ValueError(f"kind {kind.kind} registered twice")
        self._kinds.append(kind)
        self._by_resource[key] = kind
        self._by_kind[(kind.api_version, kind.kind)] = kind
        return kind

    def resource(self, group: str, version: str, plural: str) -> Kind | None:
        return self._by_resource.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> Kind | None:
        return self._by_kind.get((api_version, kind))

    def kinds(self) -> list[Kind]:
        return list(self._kinds)

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> versions served, in registration order ("" is core)."""
        out: dict[str, list[str]] = {}
        for k in self._kinds:
            vs = out.setdefault(k.group, [])
            if k.version not in vs:
                vs.append(k.version)
        return out


REGISTRY = Registry()


def load() -> Registry:
    """Import every kinds module once so their entries are in REGISTRY."""
    import kwire.api.kinds  # noqa: F401  (registers on import)

    return REGISTRY
