"""The embedded store: an etcd-style revision log in one SQLite file.

Design (after kine, which serves etcd's API from SQL): the table `log` holds one
row per write, keyed by its global revision. A key's current value is its newest
row unless that row is a deletion; the state at an older revision R is each key's
newest row at or below R. So a write is a single INSERT, a list at a fixed
revision is a consistent snapshot, and watchers can replay history from the log.

Compaction follows etcd: for every key it keeps the newest row at or below the
compaction point (dropping it too when it is a deletion) and everything after it.
Snapshots at or above the compaction point therefore stay exact, and the row a
later event's `prev` points at is never removed.

All SQLite calls run on the event-loop thread: each one takes tens of
microseconds, and without awaits inside a write, a check-then-insert is atomic
with respect to every other coroutine, so no locks are needed. The file is opened
in exclusive locking mode because revisions are assigned and watchers fed in this
process; a second process opening the same file fails instead of interleaving.
"""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections import deque

from kwire.store.base import (AlreadyExists, Conflict, Event, Expired, NotFound, StoreError,
                              Watch)

ADDED, MODIFIED, DELETED = 0, 1, 2
_EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED")

_SCHEMA = """
BEGIN IMMEDIATE;  -- takes the exclusive lock now, not at the first write
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    type INTEGER NOT NULL,     -- 0 ADDED, 1 MODIFIED, 2 DELETED
    prev_revision INTEGER,     -- the key's previous row; NULL for ADDED
    value TEXT NOT NULL        -- JSON with resourceVersion = revision; for a
                               -- deletion, the last state
);
CREATE INDEX IF NOT EXISTS log_key ON log (key, revision, type);  -- covers existence checks
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
COMMIT;
"""

# The existence check runs inside the INSERT, so a create is one statement.
_CREATE = """
INSERT INTO log (revision, key, type, prev_revision, value)
SELECT :rev, :key, 0, NULL, :value
WHERE coalesce((SELECT type FROM log WHERE key = :key ORDER BY revision DESC LIMIT 1), 2) = 2
"""
_APPEND = "INSERT INTO log (revision, key, type, prev_revision, value) VALUES (?, ?, ?, ?, ?)"
_NEWEST = "SELECT revision, type, value FROM log WHERE key = ? ORDER BY revision DESC LIMIT 1"

_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode

_CATCH_UP_BATCH = 500
_COMPACT_CHUNK = 10_000


def _key_range(column: str, prefix: str) -> tuple[str, str | None]:
    """SQL matching `column` values that start with prefix literally, and the
    :end parameter for it (:start is the prefix).

    The upper bound is the prefix with its last character incremented: every key
    that starts with the prefix sorts below it, and nothing else between the two
    does (SQLite compares TEXT as UTF-8 bytes, which orders like code points).
    """
    head = prefix.rstrip("\U0010ffff")
    if not head:
        return f"{column} >= :start", None
    last = ord(head[-1]) + 1
    if 0xD800 <= last < 0xE000:  # surrogates cannot be encoded; skip past them
        last = 0xE000
    return f"{column} >= :start AND {column} < :end", head[:-1] + chr(last)


def _with_revision(value: dict, revision: int) -> dict:
    """A shallow copy of value whose metadata.resourceVersion is revision."""
    meta = value.get("metadata") or {}
    return {**value, "metadata": {**meta, "resourceVersion": str(revision)}}


class SQLiteStore:
    """The Store protocol over SQLite in WAL mode.

    SQLiteStore(path, watch_buffer=10000) opens (creating if needed) the file and
    continues from its newest revision. watch_buffer is how many unread live events
    a watcher may hold; beyond that it drops them and rereads the log from where
    it is, so a slow consumer never blocks writers or grows memory without bound.
    """

    def __init__(self, path: str | os.PathLike[str], *, watch_buffer: int = 10_000):
        if watch_buffer < 1:
            raise ValueError("watch_buffer must be at least 1")
        self._watch_buffer = watch_buffer
        self._watchers: dict[str, set[_Watch]] = {}
        # Autocommit: each statement is a transaction. No busy wait: the file is
        # either ours or another process's, and waiting would not change that.
        db = None
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=0)
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"journal mode is {mode}, not wal")
            # In WAL mode, NORMAL writes every commit to the WAL with write(2) before
            # returning, so a commit survives the process being killed; only power
            # loss can take back the last commits, which is not what we defend against.
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA cache_size = -32768")  # 32 MiB
            db.executescript(_SCHEMA)
            rows = db.execute("SELECT (SELECT max(revision) FROM log),"
                              " (SELECT value FROM meta WHERE name = 'compacted')").fetchone()
        except (sqlite3.DatabaseError, StoreError) as e:
            if db is not None:
                db.close()
            raise StoreError(f"cannot open {path}: {e}") from e
        self._db = db
        self._compacted = rows[1] or 0
        # Compaction may remove the newest rows (deletions), never past its own point.
        self._rev = max(rows[0] or 0, self._compacted)

    @property
    def revision(self) -> int:
        return self._rev

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    async def create(self, key: str, value: dict) -> dict:
        rev = self._rev + 1
        obj = _with_revision(value, rev)
        text = _encode(obj)
        if self._db.execute(_CREATE, {"rev": rev, "key": key, "value": text}).rowcount == 0:
            raise AlreadyExists(key)
        self._rev = rev
        self._notify(key, ADDED, rev, text, None)
        return obj

    async def get(self, key: str) -> dict | None:
        row = self._db.execute(_NEWEST, (key,)).fetchone()
        if row is None or row[1] == DELETED:
            return None
        return json.loads(row[2])

    async def list(self, prefix: str, limit: int = 0, continue_from: str | None = None,
                   revision: int = 0) -> tuple[list[dict], int, str | None]:
        """See Store.list; continue_from is inclusive (it is the next page's first key)."""
        if revision:
            if revision < self._compacted:
                raise Expired(revision, self._compacted)
            if revision > self._rev:
                raise ValueError(f"revision {revision} is newer than the store ({self._rev})")
        rev = revision or self._rev
        cond, end = _key_range("key", prefix)
        start = max(prefix, continue_from or "")
        # Each key's newest row at rev, found walking the key index in order, so
        # LIMIT stops the scan; deletions and superseded rows are skipped on the
        # (covering) index alone.
        sql = ("SELECT key, value FROM log AS l"
               f" WHERE {cond} AND revision <= :rev AND type != 2 AND NOT EXISTS"
               " (SELECT 1 FROM log AS n WHERE n.key = l.key"
               "  AND n.revision > l.revision AND n.revision <= :rev)"
               " ORDER BY key LIMIT :limit")
        rows = self._db.execute(sql, {"start": start, "end": end, "rev": rev,
                                      "limit": limit + 1 if limit > 0 else -1}).fetchall()
        next_key = None
        if 0 < limit < len(rows):
            next_key = rows[limit][0]
            del rows[limit:]
        return [json.loads(v) for _, v in rows], rev, next_key

    async def update(self, key: str, value: dict, expected_revision: int | None = None) -> dict:
        prev_rev, prev_text = self._current(key, expected_revision)
        rev = self._rev + 1
        obj = _with_revision(value, rev)
        text = _encode(obj)
        self._db.execute(_APPEND, (rev, key, MODIFIED, prev_rev, text))
        self._rev = rev
        self._notify(key, MODIFIED, rev, text, prev_text)
        return obj

    async def delete(self, key: str, expected_revision: int | None = None) -> dict:
        prev_rev, prev_text = self._current(key, expected_revision)
        rev = self._rev + 1
        obj = _with_revision(json.loads(prev_text), rev)
        text = _encode(obj)
        self._db.execute(_APPEND, (rev, key, DELETED, prev_rev, text))
        self._rev = rev
        self._notify(key, DELETED, rev, text, prev_text)
        return obj

    def watch(self, prefix: str, from_revision: int) -> Watch:
        """See Store.watch. Events after the log's head come from writes in this
        process; the values in them are shared by all watchers: don't mutate them."""
        if from_revision < self._compacted:
            raise Expired(from_revision, self._compacted)
        w = _Watch(self, prefix, max(from_revision, 0), self._watch_buffer)
        self._watchers.setdefault(prefix, set()).add(w)
        return w

    async def compact(self, revision: int) -> None:
        """See Store.compact. The point is recorded first, so readers see Expired
        rather than partial history while old rows go in chunks between which
        other coroutines run; rows a crash leaves behind go at the next compaction."""
        if revision <= self._compacted:
            return
        if revision > self._rev:
            raise ValueError(f"cannot compact at {revision}, newer than the store ({self._rev})")
        self._db.execute("INSERT INTO meta (name, value) VALUES ('compacted', ?)"
                         " ON CONFLICT (name) DO UPDATE SET value = excluded.value", (revision,))
        self._compacted = revision
        lo = self._db.execute("SELECT min(revision) FROM log").fetchone()[0]
        if lo is None:
            return
        for start in range(lo - 1, revision, _COMPACT_CHUNK):
            self._db.execute(
                "DELETE FROM log WHERE revision > :lo AND revision <= :hi AND (type = 2 OR EXISTS"
                " (SELECT 1 FROM log AS n WHERE n.key = log.key"
                "  AND n.revision > log.revision AND n.revision <= :point))",
                {"lo": start, "hi": min(start + _COMPACT_CHUNK, revision), "point": revision})
            await asyncio.sleep(0)

    async def close(self) -> None:
        for watchers in list(self._watchers.values()):
            for w in list(watchers):
                w.close()
        self._db.close()

    def _current(self, key: str, expected_revision: int | None) -> tuple[int, str]:
        """The key's live row (revision, JSON), checking a write's precondition."""
        row = self._db.execute(_NEWEST, (key,)).fetchone()
        if row is None or row[1] == DELETED:
            raise NotFound(key)
        if expected_revision is not None and expected_revision != row[0]:
            raise Conflict(f"{key}: revision is {row[0]}, not {expected_revision}")
        return row[0], row[2]

    def _notify(self, key: str, type_: int, rev: int, text: str, prev_text: str | None) -> None:
        """Hand a committed write to the watchers whose prefix covers its key.

        Watchers get their own decoded copy, not the object returned to the writer.
        """
        targets = [w for prefix, ws in self._watchers.items() if key.startswith(prefix) for w in ws]
        if not targets:
            return
        event = Event(_EVENT_TYPES[type_], key, rev, json.loads(text),
                      None if prev_text is None else json.loads(prev_text))
        for w in targets:
            w._push(event)

    def _unwatch(self, w: _Watch) -> None:
        ws = self._watchers.get(w.prefix)
        if ws is not None:
            ws.discard(w)
            if not ws:
                del self._watchers[w.prefix]

    def _events_after(self, prefix: str, revision: int, limit: int) -> list[Event]:
        """Up to limit logged events under prefix with revisions above revision."""
        cond, end = _key_range("l.key", prefix)
        # NOT INDEXED: walk the log in revision order from `revision` rather than
        # collecting and sorting the prefix's whole history via the key index.
        sql = ("SELECT l.revision, l.key, l.type, l.value, p.value"
               " FROM log AS l NOT INDEXED LEFT JOIN log AS p ON p.revision = l.prev_revision"
               f" WHERE l.revision > :rev AND {cond}"
               " ORDER BY l.revision LIMIT :limit")
        rows = self._db.execute(sql, {"rev": revision, "start": prefix, "end": end,
                                      "limit": limit})
        return [Event(_EVENT_TYPES[t], k, r, json.loads(v), None if p is None else json.loads(p))
                for r, k, t, v, p in rows]


class _Watch:
    """A cursor over the log that switches to events pushed by writers once caught up.

    It starts by reading logged events after its position in batches; a short batch
    means it has reached the log's head, and from then on (no await in between)
    writers push events into its buffer. If the buffer overflows it is dropped and
    the watcher goes back to reading the log from the last event it delivered, so
    nothing is lost or repeated either way. Compaction past that position ends it
    with Expired.
    """

    def __init__(self, store: SQLiteStore, prefix: str, from_revision: int, buffer: int):
        self.prefix = prefix
        self._store = store
        self._buffer = buffer
        self._pos = from_revision  # everything up to here has been delivered
        self._pending: deque[Event] = deque()
        self._live = False
        self._closed = False
        self._wake = asyncio.Event()

    def __aiter__(self) -> _Watch:
        return self

    async def __anext__(self) -> Event:
        while not self._closed:
            if self._pending:
                event = self._pending.popleft()
                if event.revision > self._pos:  # live events may precede a future from_revision
                    self._pos = event.revision
                    return event
            elif not self._live:
                self._catch_up()
                await asyncio.sleep(0)  # a long replay must not hold the loop
            else:
                self._wake.clear()
                await self._wake.wait()
        raise StopAsyncIteration

    def close(self) -> None:
        self._closed = True
        self._pending.clear()
        self._store._unwatch(self)
        self._wake.set()

    def _catch_up(self) -> None:
        compacted = self._store.compacted_revision
        if self._pos < compacted:
            self.close()
            raise Expired(self._pos, compacted)
        events = self._store._events_after(self.prefix, self._pos, _CATCH_UP_BATCH)
        self._pending.extend(events)
        self._live = len(events) < _CATCH_UP_BATCH

    def _push(self, event: Event) -> None:
        if not self._live:
            return
        if len(self._pending) >= self._buffer:
            self._pending.clear()
            self._live = False
        else:
            self._pending.append(event)
        self._wake.set()
