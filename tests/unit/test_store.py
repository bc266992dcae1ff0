"""SQLiteStore: etcd semantics for revisions, preconditions, snapshots, watches, compaction."""
import asyncio
import functools

import pytest

from kwire.store import (AlreadyExists, Conflict, Expired, NotFound, SQLiteStore, StoreError,
                         open_store)


def with_store(body):
    """Run an async test body with a fresh store in tmp_path (no asyncio plugin needed)."""
    @functools.wraps(body)
    def test(tmp_path):
        async def main():
            store = SQLiteStore(tmp_path / "kwire.db")
            try:
                await body(store)
            finally:
                await store.close()
        asyncio.run(main())
    del test.__wrapped__  # pytest must see test's signature (tmp_path), not body's
    return test


def obj(name, **fields):
    return {"metadata": {"name": name}, **fields}


def rv(o):
    return int(o["metadata"]["resourceVersion"])


async def next_event(watch, timeout=2.0):
    return await asyncio.wait_for(watch.__anext__(), timeout)


async def no_event(watch):
    """Assert nothing is pending; afterwards the watch is live (caught up with the log)."""
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(watch.__anext__(), 0.05)


@with_store
async def test_revisions_increase_globally(store):
    assert store.revision == 0
    a = await store.create("/r/a", obj("a"))
    b = await store.create("/r/b", obj("b"))
    a2 = await store.update("/r/a", obj("a", x=1))
    gone = await store.delete("/r/b")
    assert [rv(a), rv(b), rv(a2), rv(gone)] == [1, 2, 3, 4]
    assert store.revision == 4
    assert (await store.get("/r/a")) == {"metadata": {"name": "a", "resourceVersion": "3"}, "x": 1}


@with_store
async def test_create_conflict_and_recreate(store):
    await store.create("/r/a", obj("a"))
    with pytest.raises(AlreadyExists):
        await store.create("/r/a", obj("a"))
    assert store.revision == 1  # a failed write takes no revision
    await store.delete("/r/a")
    again = await store.create("/r/a", obj("a", x=2))
    assert rv(again) == 3 and (await store.get("/r/a"))["x"] == 2


@with_store
async def test_update_and_delete_preconditions(store):
    with pytest.raises(NotFound):
        await store.update("/r/a", obj("a"))
    with pytest.raises(NotFound):
        await store.delete("/r/a")
    a = await store.create("/r/a", obj("a"))
    with pytest.raises(Conflict):
        await store.update("/r/a", obj("a", x=1), expected_revision=rv(a) + 5)
    a2 = await store.update("/r/a", obj("a", x=1), expected_revision=rv(a))
    with pytest.raises(Conflict):
        await store.delete("/r/a", expected_revision=rv(a))
    gone = await store.delete("/r/a", expected_revision=rv(a2))
    assert gone == {"metadata": {"name": "a", "resourceVersion": str(rv(a2) + 1)}, "x": 1}
    assert await store.get("/r/a") is None
    with pytest.raises(NotFound):
        await store.update("/r/a", obj("a"))


@with_store
async def test_returned_objects_do_not_alias_input(store):
    value = obj("a", spec={"n": 1})
    created = await store.create("/r/a", value)
    assert "resourceVersion" not in value["metadata"]
    created["metadata"]["name"] = "changed"
    assert (await store.get("/r/a"))["metadata"]["name"] == "a"


@with_store
async def test_get_and_list(store):
    for name in ["c", "a", "b"]:
        await store.create(f"/registry/pods/ns1/{name}", obj(name))
    await store.create("/registry/pods/ns2/z", obj("z"))
    await store.delete("/registry/pods/ns1/b")
    assert await store.get("/registry/pods/ns1/missing") is None
    items, rev, next_key = await store.list("/registry/pods/ns1/")
    assert [i["metadata"]["name"] for i in items] == ["a", "c"]
    assert rev == store.revision == 5 and next_key is None
    items, _, _ = await store.list("/registry/pods/")
    assert [i["metadata"]["name"] for i in items] == ["a", "c", "z"]
    assert (await store.list("/registry/nothing/")) == ([], 5, None)


@with_store
async def test_prefix_is_exact(store):
    await store.create("/registry/pods/default/a", obj("a"))
    await store.create("/registry/pods/default-x/b", obj("b"))
    await store.create("/registry/pods/default0/c", obj("c"))
    await store.create("/registry/pods/d%_/e", obj("e"))  # LIKE wildcards are plain text
    await store.create("/registry/pods/dx_/f", obj("f"))
    items, _, _ = await store.list("/registry/pods/default/")
    assert [i["metadata"]["name"] for i in items] == ["a"]
    items, _, _ = await store.list("/registry/pods/d%_/")
    assert [i["metadata"]["name"] for i in items] == ["e"]
    items, _, _ = await store.list("/registry/pods/default/a")  # a full key
    assert [i["metadata"]["name"] for i in items] == ["a"]
    watch = store.watch("/registry/pods/default/", 0)
    assert (await next_event(watch)).key == "/registry/pods/default/a"
    await store.create("/registry/pods/default-x/g", obj("g"))
    await store.create("/registry/pods/default/h", obj("h"))
    assert (await next_event(watch)).key == "/registry/pods/default/h"
    watch.close()


@with_store
async def test_paging_is_a_consistent_snapshot(store):
    for i in range(10):
        await store.create(f"/r/k{i}", obj(f"k{i}", v=0))
    page, rev, next_key = await store.list("/r/", limit=4)
    names = [i["metadata"]["name"] for i in page]
    assert names == ["k0", "k1", "k2", "k3"] and next_key == "/r/k4" and rev == 10
    # Writes between pages: a deletion, an update, a new key and a recreation.
    await store.delete("/r/k5")
    await store.update("/r/k6", obj("k6", v=1))
    await store.create("/r/k45", obj("k45"))
    await store.delete("/r/k7")
    await store.create("/r/k7", obj("k7", v=2))
    while next_key:
        page, page_rev, next_key = await store.list("/r/", limit=4, continue_from=next_key,
                                                    revision=rev)
        assert page_rev == rev
        names += [i["metadata"]["name"] for i in page]
        assert all(i["v"] == 0 and rv(i) <= rev for i in page)
    assert names == [f"k{i}" for i in range(10)]
    items, now, _ = await store.list("/r/")
    assert now == 15
    assert [i["metadata"]["name"] for i in items] == ["k0", "k1", "k2", "k3", "k4", "k45", "k6",
                                                       "k7", "k8", "k9"]


@with_store
async def test_list_at_past_revision_and_bounds(store):
    await store.create("/r/a", obj("a", v=1))
    await store.update("/r/a", obj("a", v=2))
    items, rev, _ = await store.list("/r/", revision=1)
    assert rev == 1 and items[0]["v"] == 1 and rv(items[0]) == 1
    with pytest.raises(ValueError):
        await store.list("/r/", revision=3)


@with_store
async def test_watch_replays_history_then_goes_live(store):
    await store.create("/r/a", obj("a"))          # 1
    await store.create("/other/x", obj("x"))      # 2
    await store.update("/r/a", obj("a", v=1))     # 3
    await store.create("/r/b", obj("b"))          # 4
    watch = store.watch("/r/", 1)
    first = await next_event(watch)
    assert (first.type, first.key, first.revision) == ("MODIFIED", "/r/a", 3)
    assert first.prev == {"metadata": {"name": "a", "resourceVersion": "1"}}
    assert first.value == {"metadata": {"name": "a", "resourceVersion": "3"}, "v": 1}
    # Writes after watch() but before the history is read must appear exactly once.
    await store.create("/r/c", obj("c"))          # 5
    await store.delete("/r/a")                    # 6
    seen = [(e.type, e.key, e.revision) for e in [await next_event(watch) for _ in range(3)]]
    assert seen == [("ADDED", "/r/b", 4), ("ADDED", "/r/c", 5), ("DELETED", "/r/a", 6)]
    await no_event(watch)
    await store.update("/r/b", obj("b", v=9))     # 7, live
    live = await next_event(watch)
    assert (live.type, live.revision) == ("MODIFIED", 7)
    assert live.prev["metadata"]["resourceVersion"] == "4"
    watch.close()
    with pytest.raises(StopAsyncIteration):
        await next_event(watch)


@with_store
async def test_watch_live_boundary_under_concurrent_writes(store):
    async def writer():
        for i in range(300):
            await store.create(f"/r/k{i:03}", obj(str(i)))
            await asyncio.sleep(0)

    for i in range(50):
        await store.create(f"/r/h{i:03}", obj(str(i)))
    watch = store.watch("/r/", 10)
    task = asyncio.create_task(writer())
    revisions = [(await next_event(watch)).revision for _ in range(340)]
    await task
    assert revisions == list(range(11, 351))
    watch.close()


@with_store
async def test_watch_from_future_revision(store):
    await store.create("/r/a", obj("a"))
    watch = store.watch("/r/", 3)
    await store.create("/r/b", obj("b"))  # 2
    await store.create("/r/c", obj("c"))  # 3
    await store.create("/r/d", obj("d"))  # 4
    assert (await next_event(watch)).revision == 4
    watch.close()


@with_store
async def test_deleted_event_carries_last_state(store):
    await store.create("/r/a", obj("a", spec={"n": 1}))
    await store.update("/r/a", obj("a", spec={"n": 2}, labels={"app": "x"}))
    live = store.watch("/r/", store.revision)
    await no_event(live)
    await store.delete("/r/a")
    for watch in (live, store.watch("/r/", 2)):  # pushed, then read from the log
        event = await next_event(watch)
        assert event.type == "DELETED" and event.revision == 3
        assert event.value == {"metadata": {"name": "a", "resourceVersion": "3"},
                               "spec": {"n": 2}, "labels": {"app": "x"}}
        assert event.prev["metadata"]["resourceVersion"] == "2"
        watch.close()


def test_slow_watcher_falls_back_to_the_log(tmp_path):
    async def main():
        store = SQLiteStore(tmp_path / "kwire.db", watch_buffer=5)
        watch = store.watch("/r/", 0)
        await no_event(watch)
        for i in range(40):  # overflows the live buffer
            await store.create(f"/r/k{i:02}", obj(str(i)))
        assert [(await next_event(watch)).revision for _ in range(40)] == list(range(1, 41))
        await store.create("/r/last", obj("last"))
        assert (await next_event(watch)).revision == 41
        await store.close()
        with pytest.raises(StopAsyncIteration):
            await next_event(watch)

    asyncio.run(main())


@with_store
async def test_compaction(store):
    await store.create("/r/a", obj("a", v=1))  # 1
    await store.create("/r/b", obj("b"))       # 2
    await store.update("/r/a", obj("a", v=2))  # 3
    await store.delete("/r/b")                 # 4
    await store.create("/r/c", obj("c"))       # 5
    await store.update("/r/c", obj("c", v=2))  # 6
    await store.compact(5)
    assert store.compacted_revision == 5
    kept = store._db.execute("SELECT revision FROM log ORDER BY revision").fetchall()
    assert kept == [(3,), (5,), (6,)]
    with pytest.raises(Expired) as info:
        await store.list("/r/", revision=4)
    assert (info.value.requested, info.value.compacted) == (4, 5)
    with pytest.raises(Expired):
        store.watch("/r/", 4)
    # The compaction point itself is still an exact snapshot, as in etcd.
    items, _, _ = await store.list("/r/", revision=5)
    assert [(i["metadata"]["name"], rv(i)) for i in items] == [("a", 3), ("c", 5)]
    watch = store.watch("/r/", 5)
    event = await next_event(watch)
    assert (event.revision, event.prev["metadata"]["resourceVersion"]) == (6, "5")
    watch.close()
    assert (await store.get("/r/a"))["v"] == 2 and await store.get("/r/b") is None
    await store.compact(3)  # older than the point: nothing to do
    assert store.compacted_revision == 5
    with pytest.raises(ValueError):
        await store.compact(7)


@with_store
async def test_compaction_expires_a_watcher_still_replaying(store):
    for i in range(1200):
        await store.create(f"/r/k{i}", obj(str(i)))
    for i in range(1200):
        await store.delete(f"/r/k{i}")
    watch = store.watch("/r/", 0)
    await next_event(watch)  # reads one batch of history
    await store.compact(store.revision)
    with pytest.raises(Expired):
        async for _ in watch:
            pass
    with pytest.raises(StopAsyncIteration):
        await next_event(watch)
    assert (await store.list("/r/")) == ([], 2400, None)
    assert store._db.execute("SELECT count(*) FROM log").fetchone()[0] == 0


def test_restart_continues(tmp_path):
    path = tmp_path / "kwire.db"

    async def first():
        store = open_store(path)
        await store.create("/r/a", obj("a"))
        await store.create("/r/b", obj("b"))
        await store.update("/r/a", obj("a", v=1))
        await store.delete("/r/b")
        await store.compact(2)
        await store.close()

    async def second():
        store = open_store(path)
        try:
            assert (store.revision, store.compacted_revision) == (4, 2)
            assert rv(await store.create("/r/c", obj("c"))) == 5
            watch = store.watch("/r/", 2)
            assert [(await next_event(watch)).revision for _ in range(3)] == [3, 4, 5]
            watch.close()
            with pytest.raises(Expired):
                store.watch("/r/", 1)
        finally:
            await store.close()

    async def third():  # compaction removed the newest row; its revision is not reused
        store = open_store(path)
        await store.delete("/r/c")
        await store.compact(store.revision)
        await store.close()
        store = open_store(path)
        try:
            assert store.revision == 6
            assert rv(await store.create("/r/d", obj("d"))) == 7
        finally:
            await store.close()

    asyncio.run(first())
    asyncio.run(second())
    asyncio.run(third())


def test_open_errors_are_store_errors(tmp_path):
    (tmp_path / "junk").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError):
        SQLiteStore(tmp_path / "junk")
    with pytest.raises(StoreError):
        SQLiteStore(tmp_path / "missing-dir" / "kwire.db")


def test_one_process_owns_the_file(tmp_path):
    async def main():
        store = SQLiteStore(tmp_path / "kwire.db")
        try:
            with pytest.raises(StoreError):
                SQLiteStore(tmp_path / "kwire.db")
        finally:
            await store.close()
        await SQLiteStore(tmp_path / "kwire.db").close()

    asyncio.run(main())
