"""The store interface: a revision log with compare-and-swap writes and watches.

Shaped after etcd (and kine, which puts etcd's API on SQL): every write gets the
next global revision, which the API layer exposes as metadata.resourceVersion.
Keys look like "/registry/<group>/<plural>/<namespace>/<name>" (no namespace part
for cluster-scoped kinds). Values are JSON-able dicts; the store sets
metadata.resourceVersion on what it returns, and never keeps it inside the stored
value's meaning (it is always the revision of the write).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Protocol


class StoreError(Exception):
    pass


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class Conflict(StoreError):
    """The object's current revision is not the one the write expected."""


class Expired(StoreError):
    """The revision asked for has been compacted away (HTTP 410 Gone)."""

    def __init__(self, requested: int, compacted: int):
        super().__init__(f"too old resource version: {requested} ({compacted})")
        self.requested = requested
        self.compacted = compacted


@dataclass(frozen=True)
class Event:
    """One committed write. type is ADDED, MODIFIED or DELETED.

    value is the object after the write (for DELETED: its last state, with the
    deletion's revision as resourceVersion); prev is the state before it (None for
    ADDED), which watchers need to tell when an object leaves a selector.
    """

    type: str
    key: str
    revision: int
    value: dict
    prev: dict | None


class Watch(Protocol):
    def __aiter__(self) -> AsyncIterator[Event]: ...
    async def __anext__(self) -> Event: ...
    def close(self) -> None: ...


class Store(Protocol):
    async def create(self, key: str, value: dict) -> dict:
        """Write a new key; AlreadyExists if it exists. Returns the stored object."""

    async def get(self, key: str) -> dict | None:
        """Current value (with resourceVersion) or None."""

    async def list(self, prefix: str, limit: int = 0, continue_from: str | None = None,
                   revision: int = 0) -> tuple[list[dict], int, str | None]:
        """Objects under prefix in key order, at one consistent revision.

        Returns (items, revision, next_key). With limit > 0, at most limit items and,
        when more remain, the key to continue from; pass it back with the same
        revision for the next page. A revision older than the compaction point
        raises Expired.
        """

    async def update(self, key: str, value: dict, expected_revision: int | None = None) -> dict:
        """Replace a key's value. NotFound if missing; Conflict if expected_revision
        is given and is not the key's current revision."""

    async def delete(self, key: str, expected_revision: int | None = None) -> dict:
        """Remove a key; returns its last value with the deletion's revision."""

    def watch(self, prefix: str, from_revision: int) -> Watch:
        """Events for keys under prefix with revision > from_revision, in order, then
        live ones. Raises Expired when from_revision is older than the compaction point."""

    @property
    def revision(self) -> int:
        """The newest committed revision."""

    @property
    def compacted_revision(self) -> int:
        """Events at or below this revision are gone."""

    async def compact(self, revision: int) -> None:
        """Forget history at or below revision (current values are kept)."""

    async def close(self) -> None: ...
