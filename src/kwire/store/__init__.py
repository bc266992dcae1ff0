"""The revision log every piece of cluster state lives in."""
import os

from kwire.store.base import (AlreadyExists, Conflict, Event, Expired, NotFound, Store,
                              StoreError)
from kwire.store.sqlite import SQLiteStore


def open_store(path: str | os.PathLike[str]) -> Store:
    """The cluster's store, kept in the SQLite file at path."""
    return SQLiteStore(path)


__all__ = ["AlreadyExists", "Conflict", "Event", "Expired", "NotFound", "SQLiteStore", "Store",
           "StoreError", "open_store"]
