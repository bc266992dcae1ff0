"""The informer (list + watch + local cache) and the work queue that every
controller and agent loop is built from (DESIGN rule 3).

Concurrency model: everything runs on one asyncio loop. An Informer is one
task that lists, then watches from the list's resourceVersion; it applies each
event to its Store and then calls the registered handlers synchronously, so a
handler always sees the store already holding the event's state, and no two
handlers ever run at once. Handlers must be quick and must not block: they
record what changed (typically by adding a key to a WorkQueue) and return.
The real work happens in worker tasks that take keys from the queue
(`run_workers`); a key is never processed by two workers at once.

Failure handling follows client-go's reflector: a watch that ends normally
(the server's timeoutSeconds) is resumed from the last resourceVersion seen;
410 Expired and every other failure lead to a fresh list, after a jittered
exponential backoff. A re-list is diffed against the cache, so handlers see
synthetic ADDED / MODIFIED / DELETED events for what changed while the
informer was not watching.
"""
from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from contextlib import aclosing
from typing import Generic, TypeVar

import aiohttp

from kwire.client.rest import ApiError, Client

log = logging.getLogger("kwire.informer")

Handler = Callable[[str, dict, "dict | None"], None]
"""handler(event_type, obj, old): "ADDED" (old None), "MODIFIED" (old = the
cached state before), "DELETED" (obj = the last state known, old = the cached one)."""

IndexFunc = Callable[[dict], Iterable[str]]
K = TypeVar("K", bound=Hashable)

NAMESPACE_INDEX = "namespace"
SHORT_WATCH = 1.0


class ShortWatch(Exception):
    """A watch ended normally but suspiciously fast (treated as a failure)."""


def object_key(obj: dict) -> str:
    """"namespace/name" for namespaced objects, "name" for cluster-scoped ones."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name', '')}" if ns else meta.get("name", "")


def _uid(obj: dict | None) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("uid")


def _rv(obj: dict) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


def labels_match(obj: dict, selector: Mapping[str, str] | None) -> bool:
    """Equality-based label selection (a matchLabels map)."""
    if not selector:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


class Store:
    """An informer's cache: object key -> object, plus named indexes
    (index value -> keys). Only its informer writes it; the objects are shared
    with every reader and handler, so treat them as read-only (copy to modify)."""

    def __init__(self) -> None:
        self._items: dict[str, dict] = {}
        self._index_funcs: dict[str, IndexFunc] = {}
        self._indexes: dict[str, dict[str, set[str]]] = {}
        self.add_index(NAMESPACE_INDEX, lambda o: [(o.get("metadata") or {}).get("namespace")
                                                   or ""])

    def add_index(self, name: str, func: IndexFunc) -> None:
        """Index objects by the values func returns (e.g. pods by spec.nodeName)."""
        if name in self._index_funcs:
            raise ValueError(f"index {name!r} exists")
        self._index_funcs[name] = func
        self._indexes[name] = {}
        for key, obj in self._items.items():
            self._index(name, key, obj)

    def get(self, key: str) -> dict | None:
        return self._items.get(key)

    def get_object(self, name: str, namespace: str | None = None) -> dict | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def list(self, namespace: str | None = None,
             selector: Mapping[str, str] | None = None) -> list[dict]:
        if namespace is None:
            objs: Iterable[dict] = self._items.values()
        else:
            objs = self.by_index(NAMESPACE_INDEX, namespace)
        return [o for o in objs if labels_match(o, selector)]

    def by_index(self, name: str, value: str) -> list[dict]:
        return [self._items[k] for k in self._indexes[name].get(value, ())]

    def keys(self) -> list[str]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def _put(self, key: str, obj: dict) -> None:
        if key in self._items:
            self._delete(key)
        self._items[key] = obj
        for name in self._index_funcs:
            self._index(name, key, obj)

    def _delete(self, key: str) -> None:
        obj = self._items.pop(key, None)
        if obj is None:
            return
        for name, func in self._index_funcs.items():
            index = self._indexes[name]
            for value in func(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]

    def _index(self, name: str, key: str, obj: dict) -> None:
        for value in self._index_funcs[name](obj):
            self._indexes[name].setdefault(value, set()).add(key)


class Backoff:
    """Jittered exponential delays: initial, doubling, up to maximum."""

    def __init__(self, initial: float = 0.1, maximum: float = 30.0):
        self.initial, self.maximum = initial, maximum
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._next = self.initial


class Informer:
    """List + watch + cache of one resource (optionally one namespace, selectors).

    `start()` launches the task (on the running loop), `stop()` ends it. Until
    the first list has been applied, `has_synced` is False; `wait_synced()`
    waits for it.
    """

    def __init__(self, client: Client, api_version: str, plural: str,
                 namespace: str | None = None, *, label_selector: str | None = None,
                 field_selector: str | None = None, page_size: int = 500,
                 min_watch_timeout: int = 300, backoff: Backoff | None = None):
        self.client = client
        self.api_version, self.plural, self.namespace = api_version, plural, namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.page_size = page_size
        self.min_watch_timeout = min_watch_timeout
        self.store = Store()
        self.resource_version = ""
        self._backoff = backoff or Backoff()
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task | None = None

    def __repr__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"<Informer {self.api_version} {self.plural}{where}>"

    # --- handlers ------------------------------------------------------------------

    def add_handler(self, handler: Handler) -> None:
        """Register handler; if the cache is already filled, it first receives an
        ADDED event for every cached object (as client-go does), so late
        subscribers miss nothing."""
        self._handlers.append(handler)
        if self.has_synced:
            for obj in list(self.store.list()):
                self._call(handler, "ADDED", obj, None)

    def remove_handler(self, handler: Handler) -> None:
        self._handlers.remove(handler)

    def _notify(self, etype: str, obj: dict, old: dict | None) -> None:
        for handler in list(self._handlers):
            self._call(handler, etype, obj, old)

    def _call(self, handler: Handler, etype: str, obj: dict, old: dict | None) -> None:
        try:
            handler(etype, obj, old)
        except Exception:  # noqa: BLE001 - one bad handler must not stop the informer
            log.exception("%r: handler %r failed on %s %s", self, handler, etype,
                          object_key(obj))

    # --- lifecycle -----------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=repr(self))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def run(self) -> None:
        """List and watch until cancelled."""
        relist = True
        while True:
            try:
                if relist:
                    items, rv = await self.client.list(
                        self.api_version, self.plural, self.namespace,
                        label_selector=self.label_selector,
                        field_selector=self.field_selector, limit=self.page_size)
                    self._replace(items, rv)
                    relist = False
                await self._watch()
                continue
            except ApiError as e:
                level = logging.DEBUG if e.code == 410 else logging.WARNING
                log.log(level, "%r: %s; listing again", self, e)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError,
                    ShortWatch) as e:
                log.warning("%r: %s: %s; listing again", self, type(e).__name__, e)
            relist = True
            await asyncio.sleep(self._backoff.next())

    async def _watch(self) -> None:
        """One watch request, from the last resourceVersion, until the server ends it."""
        timeout = random.randint(self.min_watch_timeout, 2 * self.min_watch_timeout)
        events = self.client.watch(self.api_version, self.plural, self.namespace,
                                   resource_version=self.resource_version,
                                   timeout_seconds=timeout, allow_bookmarks=True,
                                   label_selector=self.label_selector,
                                   field_selector=self.field_selector)
        started = asyncio.get_running_loop().time()
        seen = False
        async with aclosing(events):
            async for etype, obj in events:
                self._apply(etype, obj)
                seen = True
                self._backoff.reset()
        if not seen and asyncio.get_running_loop().time() - started < SHORT_WATCH:
            # A server that ends every watch at once would otherwise make this spin.
            raise ShortWatch(f"watch ended after less than {SHORT_WATCH}s without events")
        self._backoff.reset()

    # --- applying state ------------------------------------------------------------

    def _apply(self, etype: str, obj: dict) -> None:
        rv = _rv(obj)
        if etype in ("ADDED", "MODIFIED"):
            key = object_key(obj)
            self._upsert(key, obj, self.store.get(key))
        elif etype == "DELETED":
            key = object_key(obj)
            old = self.store.get(key)
            if old is not None:
                self.store._delete(key)
                self._notify("DELETED", obj, old)
        elif etype != "BOOKMARK":
            log.warning("%r: ignoring watch event of type %r", self, etype)
        if rv:
            self.resource_version = rv

    def _upsert(self, key: str, obj: dict, old: dict | None) -> None:
        self.store._put(key, obj)
        if old is None:
            self._notify("ADDED", obj, None)
        elif _uid(old) != _uid(obj):
            # Same name, new object: the old one is gone even if no watch said so.
            self._notify("DELETED", old, old)
            self._notify("ADDED", obj, None)
        elif _rv(old) != _rv(obj):
            self._notify("MODIFIED", obj, old)

    def _replace(self, items: list[dict], rv: str) -> None:
        """Make the cache equal to a fresh list, telling handlers what changed."""
        fresh = {object_key(o): o for o in items}
        for key in self.store.keys():
            if key not in fresh:
                old = self.store.get(key)
                self.store._delete(key)
                self._notify("DELETED", old, old)
        for key, obj in fresh.items():
            self._upsert(key, obj, self.store.get(key))
        self.resource_version = rv
        self._synced.set()


class Informers:
    """Shared informers: one per (resource, namespace, selectors), so every
    controller that needs pods reads the same cache through the same watch."""

    def __init__(self, client: Client, **options):
        self.client = client
        self._options = options
        self._informers: dict[tuple, Informer] = {}

    def get(self, api_version: str, plural: str, namespace: str | None = None, *,
            label_selector: str | None = None,
            field_selector: str | None = None) -> Informer:
        """The shared informer, started on first use (needs a running loop)."""
        key = (api_version, plural, namespace, label_selector, field_selector)
        informer = self._informers.get(key)
        if informer is None:
            informer = Informer(self.client, api_version, plural, namespace,
                                label_selector=label_selector, field_selector=field_selector,
                                **self._options)
            informer.start()
            self._informers[key] = informer
        return informer

    async def stop(self) -> None:
        informers, self._informers = list(self._informers.values()), {}
        await asyncio.gather(*(i.stop() for i in informers))


class WorkQueue(Generic[K]):
    """client-go's work queue: a key waits in the queue at most once; a key added
    while a worker holds it is queued again when the worker calls done(), so no
    key is ever processed twice at once and no change is lost. Failed keys are
    retried with a per-key exponential backoff (add_rate_limited / forget)."""

    def __init__(self, base_delay: float = 0.05, max_delay: float = 30.0):
        self.base_delay, self.max_delay = base_delay, max_delay
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}

    def add(self, key: K) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        """Add key after delay seconds (an earlier pending add for it wins)."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: K) -> None:
        del self._timers[key]
        self.add(key)

    def add_rate_limited(self, key: K) -> None:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        self.add_after(key, min(self.base_delay * 2 ** failures, self.max_delay))

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    async def get(self) -> K:
        key = await self._queue.get()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.put_nowait(key)

    def shut_down(self) -> None:
        """Drop pending delayed adds (the workers are cancelled by their owner)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def __len__(self) -> int:
        return self._queue.qsize()


Sync = Callable[[K], Awaitable[bool]]


async def run_workers(queue: WorkQueue[K], sync: Sync, workers: int = 1,
                      name: str = "worker") -> None:
    """Process keys from queue with `workers` concurrent tasks until cancelled.
    sync(key) returns True when the key is done, False when it should be looked
    at again later (backoff); an exception is logged and retried with backoff."""

    async def worker() -> None:
        while True:
            key = await queue.get()
            try:
                if await sync(key):
                    queue.forget(key)
                else:
                    queue.add_rate_limited(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a failing key must not kill the worker
                log.exception("%s: syncing %r failed; retrying", name, key)
                queue.add_rate_limited(key)
            finally:
                queue.done(key)

    tasks = [asyncio.create_task(worker(), name=f"{name}-{i}") for i in range(workers)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        queue.shut_down()


async def run_controller(queue: WorkQueue[K], sync: Sync, workers: int, name: str,
                         handlers: Iterable[tuple[Informer, Handler]], *,
                         wait_synced: bool = False) -> None:
    """A controller's main loop: subscribe each handler to its informer, wait for
    their caches when asked, run the workers until cancelled, then unsubscribe."""
    handlers = list(handlers)
    for informer, handler in handlers:
        informer.add_handler(handler)
    try:
        if wait_synced:
            await asyncio.gather(*(informer.wait_synced() for informer, _ in handlers))
        await run_workers(queue, sync, workers, name)
    finally:
        for informer, handler in handlers:
            informer.remove_handler(handler)
