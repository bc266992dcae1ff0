"""The revision log every piece of cluster state lives in."""
from kwire.store.base import (AlreadyExists, Conflict, Event, Expired, NotFound, Store,
                              StoreError)

__all__ = ["AlreadyExists", "Conflict", "Event", "Expired", "NotFound", "Store", "StoreError"]
