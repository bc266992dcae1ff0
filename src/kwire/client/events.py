"""core/v1 Events as upstream's event recorder writes them: named
``<object>.<hex nanoseconds>``, and a repeat of the same (object, reason,
message) bumps the first one's count and lastTimestamp instead of adding
another, so `kubectl describe` shows "(x4 over 2m)"."""
from __future__ import annotations

import logging
import time

from kwire.client.rest import TRANSPORT_ERRORS, ApiError, Client
from kwire.timestamps import format_time

log = logging.getLogger("kwire.client.events")

MAX_REMEMBERED = 4096


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str = ""):
        self.client, self.component, self.host = client, component, host
        self._seen: dict[tuple[str, str, str], dict] = {}

    async def event(self, obj: dict, etype: str, reason: str, message: str) -> None:
        """Record; failures are logged, never raised (events are best effort)."""
        meta = obj["metadata"]
        key = (meta.get("uid", ""), reason, message)
        now = format_time()
        try:
            old = self._seen.get(key)
            if old is not None:
                patch = {"count": old.get("count", 1) + 1, "lastTimestamp": now}
                try:
                    self._seen[key] = await self.client.patch(
                        "v1", "events", old["metadata"]["name"], patch, meta.get("namespace") or "default")
                    return
                except ApiError as e:
                    if e.code != 404:
                        raise
            self._seen[key] = await self.client.create("v1", "events", self._new(obj, etype, reason,
                                                                                  message, now),
                                                       meta.get("namespace") or "default")
            if len(self._seen) > MAX_REMEMBERED:
                self._seen.pop(next(iter(self._seen)))
        except (ApiError, *TRANSPORT_ERRORS) as e:
            log.warning("event %s %s: %s", reason, meta.get("name"), e)

    def forget(self, uid: str) -> None:
        for key in [k for k in self._seen if k[0] == uid]:
            del self._seen[key]

    def _new(self, obj: dict, etype: str, reason: str, message: str, now: str) -> dict:
        meta = obj["metadata"]
        source = {"component": self.component, **({"host": self.host} if self.host else {})}
        return {"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": f"{meta['name']}.{time.time_ns():x}",
                             "namespace": meta.get("namespace") or "default"},
                "involvedObject": {"apiVersion": obj.get("apiVersion", "v1"),
                                   "kind": obj.get("kind", "Pod"), "name": meta["name"],
                                   "namespace": meta.get("namespace", ""), "uid": meta.get("uid", ""),
                                   "resourceVersion": meta.get("resourceVersion", "")},
                "type": etype, "reason": reason, "message": message, "source": source,
                "reportingComponent": self.component, "reportingInstance": self.host,
                "count": 1, "firstTimestamp": now, "lastTimestamp": now}
