"""Informer, Store, Informers and WorkQueue against the in-process fake API:
list then watch from the list's resourceVersion, re-watch after a normal end,
re-list after 410 Expired or a broken stream, synthetic events, clean stop."""
import asyncio

import pytest
from fake_api import eventually, with_fake

from kwire.client import Backoff, Informer, Informers, Store, WorkQueue, object_key, run_workers

PATH = "/api/v1/namespaces/default/configmaps"


def cm(name, ns="default", uid=None, labels=None, **data):
    meta = {"name": name, "namespace": ns}
    if uid:
        meta["uid"] = uid
    if labels:
        meta["labels"] = labels
    return {"metadata": meta, "data": data}


class Recorder:
    """A handler that records (type, name, old data)."""

    def __init__(self):
        self.events = []

    def __call__(self, etype, obj, old):
        self.events.append((etype, obj["metadata"]["name"],
                            None if old is None else old.get("data")))

    def names(self, etype):
        return [n for t, n, _ in self.events if t == etype]


def informer(client, **kw):
    kw.setdefault("backoff", Backoff(0.01, 0.05))
    return Informer(client, "v1", "configmaps", "default", **kw)


async def started(inf):
    rec = Recorder()
    inf.add_handler(rec)
    inf.start()
    await asyncio.wait_for(inf.wait_synced(), 5)
    return rec


@with_fake
async def test_list_then_watch_from_the_list_resource_version(fake, client):
    fake.put("v1", "configmaps", cm("a", k="1"))
    fake.put("v1", "configmaps", cm("b"))
    fake.put("v1", "configmaps", cm("elsewhere", ns="other"))
    inf = informer(client, page_size=1)
    rec = await started(inf)
    try:
        assert inf.has_synced
        assert sorted(inf.store.keys()) == ["default/a", "default/b"]
        assert rec.events == [("ADDED", "a", None), ("ADDED", "b", None)]
        assert fake.count("GET", PATH, watch=False) == 2  # paged: limit=1
        await eventually(lambda: fake.watch_rvs(PATH))
        assert fake.watch_rvs(PATH) == [str(fake.revision)]
        fake.put("v1", "configmaps", cm("a", k="2"))
        fake.put("v1", "configmaps", cm("c"))
        fake.remove("v1", "configmaps", "b", "default")
        await eventually(lambda: len(rec.events) == 5)
        assert rec.events[2:] == [("MODIFIED", "a", {"k": "1"}), ("ADDED", "c", None),
                                  ("DELETED", "b", {})]
        assert inf.store.get("default/a")["data"] == {"k": "2"}
        assert inf.store.get_object("b", "default") is None
        assert inf.resource_version == str(fake.revision)
    finally:
        await inf.stop()


@with_fake
async def test_normal_stream_end_rewatches_from_last_rv_without_relisting(fake, client):
    inf = informer(client)
    rec = await started(inf)
    try:
        await eventually(lambda: len(fake.watchers) == 1)
        fake.put("v1", "configmaps", cm("a"))
        await eventually(lambda: rec.names("ADDED") == ["a"])
        seen_rv = inf.resource_version
        fake.end_watches()
        await eventually(lambda: len(fake.watch_rvs(PATH)) == 2)
        assert fake.watch_rvs(PATH)[1] == seen_rv
        fake.put("v1", "configmaps", cm("b"))
        await eventually(lambda: rec.names("ADDED") == ["a", "b"])
        assert fake.count("GET", PATH, watch=False) == 1
    finally:
        await inf.stop()


@with_fake
async def test_bookmarks_advance_the_resource_version(fake, client):
    inf = informer(client)
    rec = await started(inf)
    try:
        await eventually(lambda: len(fake.watchers) == 1)
        fake.put("v1", "configmaps", cm("x", ns="other"))  # changes RV, not seen here
        fake.bookmark()
        await eventually(lambda: inf.resource_version == str(fake.revision))
        fake.end_watches()
        await eventually(lambda: len(fake.watch_rvs(PATH)) == 2)
        assert fake.watch_rvs(PATH)[1] == str(fake.revision)
        assert rec.events == []
        assert fake.requests[-1][2]["allowWatchBookmarks"] == "true"
    finally:
        await inf.stop()


@pytest.mark.parametrize("http_expired", [False, True])
def test_expired_watch_relists_with_synthetic_events(http_expired):
    @with_fake
    async def body(fake, client):
        fake.http_expired = http_expired
        fake.put("v1", "configmaps", cm("stays", k="1"))
        fake.put("v1", "configmaps", cm("changes", k="1"))
        fake.put("v1", "configmaps", cm("goes"))
        fake.put("v1", "configmaps", cm("replaced", uid="uid-1"))
        inf = informer(client)
        rec = await started(inf)
        try:
            await eventually(lambda: len(fake.watchers) == 1)
            # One event on this watch, so that its end is a normal one (an
            # immediate, empty end would count as a failure and re-list anyway).
            fake.bookmark()
            await eventually(lambda: inf.resource_version == str(fake.revision))
            fake.hold()  # the informer is partitioned from here on
            fake.put("v1", "configmaps", cm("changes", k="2"))
            fake.remove("v1", "configmaps", "goes", "default")
            fake.remove("v1", "configmaps", "replaced", "default")
            fake.put("v1", "configmaps", cm("replaced", uid="uid-2"))
            fake.put("v1", "configmaps", cm("new"))
            fake.expire()
            fake.end_watches()
            fake.release()
            await eventually(lambda: fake.count("GET", PATH, watch=False) == 2)
            await eventually(lambda: len(rec.events) == 9)
            assert sorted(rec.events[4:]) == sorted([
                ("DELETED", "goes", {}), ("MODIFIED", "changes", {"k": "1"}),
                ("DELETED", "replaced", {}), ("ADDED", "replaced", None), ("ADDED", "new", None)])
            assert inf.store.get("default/replaced")["metadata"]["uid"] == "uid-2"
            assert sorted(inf.store.keys()) == ["default/changes", "default/new",
                                                "default/replaced", "default/stays"]
            await eventually(lambda: len(fake.watch_rvs(PATH)) == 3)
            assert fake.watch_rvs(PATH)[2] == str(fake.revision)
        finally:
            await inf.stop()
    body()


@with_fake
async def test_broken_stream_relists_after_backoff(fake, client):
    fake.put("v1", "configmaps", cm("a"))
    inf = informer(client)
    rec = await started(inf)
    try:
        await eventually(lambda: len(fake.watchers) == 1)
        fake.hold()
        fake.remove("v1", "configmaps", "a", "default")
        fake.break_watches()
        fake.release()
        await eventually(lambda: fake.count("GET", PATH, watch=False) == 2)
        await eventually(lambda: rec.names("DELETED") == ["a"])
        assert len(inf.store) == 0
    finally:
        await inf.stop()


@with_fake
async def test_a_watch_ending_at_once_counts_as_a_failure(fake, client):
    inf = informer(client)
    await started(inf)
    try:
        await eventually(lambda: len(fake.watchers) == 1)
        fake.end_watches()  # no event, well under a second: not a normal end
        await eventually(lambda: fake.count("GET", PATH, watch=False) == 2)
    finally:
        await inf.stop()


@with_fake
async def test_late_handler_gets_the_cache_replayed(fake, client):
    fake.put("v1", "configmaps", cm("a"))
    inf = informer(client)
    await started(inf)
    try:
        late = Recorder()
        inf.add_handler(late)
        assert late.events == [("ADDED", "a", None)]
        inf.remove_handler(late)
        fake.put("v1", "configmaps", cm("b"))
        await eventually(lambda: "default/b" in inf.store)
        assert late.events == [("ADDED", "a", None)]
    finally:
        await inf.stop()


@with_fake
async def test_a_failing_handler_does_not_stop_the_informer(fake, client):
    def bad(etype, obj, old):
        raise RuntimeError("boom")
    inf = informer(client)
    inf.add_handler(bad)
    rec = await started(inf)
    try:
        fake.put("v1", "configmaps", cm("a"))
        await eventually(lambda: rec.names("ADDED") == ["a"])
    finally:
        await inf.stop()


@with_fake
async def test_shared_informers_and_clean_stop(fake, client):
    informers = Informers(client, backoff=Backoff(0.01, 0.05))
    pods = informers.get("v1", "pods")
    assert informers.get("v1", "pods") is pods
    assert informers.get("v1", "pods", "default") is not pods
    await asyncio.wait_for(pods.wait_synced(), 5)
    await eventually(lambda: len(fake.watchers) == 2)
    await informers.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("<Informer")]
    await eventually(lambda: not fake.watchers)  # the server saw the watches go


@with_fake
async def test_retries_while_the_server_refuses(fake, client):
    inf = Informer(client, "v1", "nosuchthings", backoff=Backoff(0.01, 0.02))
    inf.start()
    try:
        await eventually(lambda: fake.count("GET", "/api/v1/nosuchthings") >= 3)
        assert not inf.has_synced
    finally:
        await inf.stop()


def test_store_indexes_and_selectors():
    s = Store()
    s.add_index("node", lambda o: [o.get("spec", {}).get("nodeName", "")])
    a = {"metadata": {"name": "a", "namespace": "n1", "labels": {"app": "web"}},
         "spec": {"nodeName": "w1"}}
    b = {"metadata": {"name": "b", "namespace": "n2"}, "spec": {"nodeName": "w1"}}
    node = {"metadata": {"name": "w1"}}
    for o in (a, b, node):
        s._put(object_key(o), o)
    assert object_key(a) == "n1/a" and object_key(node) == "w1"
    assert s.list("n1") == [a] and s.list(selector={"app": "web"}) == [a]
    assert len(s.list()) == 3 and s.get_object("w1") is node
    assert sorted(o["metadata"]["name"] for o in s.by_index("node", "w1")) == ["a", "b"]
    moved = {**b, "spec": {"nodeName": "w2"}}
    s._put("n2/b", moved)
    assert s.by_index("node", "w1") == [a] and s.by_index("node", "w2") == [moved]
    s._delete("n1/a")
    assert s.by_index("node", "w1") == [] and s.list("n1") == []


def test_work_queue_semantics():
    async def main():
        q = WorkQueue()
        q.add("a")
        q.add("b")
        q.add("a")
        assert len(q) == 2
        key = await q.get()
        assert key == "a"
        q.add("a")  # while processing: queued again only after done()
        assert await q.get() == "b"
        assert len(q) == 0
        q.done("a")
        assert await q.get() == "a"
        q.done("a")
        q.done("b")
        q.add_after("c", 0.05)
        q.add_after("c", 0.01)  # the earlier wins
        assert await asyncio.wait_for(q.get(), 1) == "c"
        q.done("c")
        q.base_delay = 0.01
        q.add_rate_limited("d")
        q.add_rate_limited("d")
        assert q._failures["d"] == 2
        q.forget("d")
        assert "d" not in q._failures
        q.shut_down()
    asyncio.run(main())


def test_run_workers_retries_failures_and_unfinished_keys():
    async def main():
        q = WorkQueue(base_delay=0.001)
        calls = []

        async def sync(key):
            calls.append(key)
            if key == "flaky" and calls.count(key) < 3:
                raise RuntimeError("transient")
            return not (key == "slow" and calls.count(key) < 2)
        task = asyncio.create_task(run_workers(q, sync, workers=2))
        for key in ("flaky", "slow", "ok"):
            q.add(key)
        await eventually(lambda: sorted(set(calls)) == ["flaky", "ok", "slow"]
                         and calls.count("flaky") == 3 and calls.count("slow") == 2)
        await asyncio.sleep(0.05)
        assert calls.count("ok") == 1 and not q._failures
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(main())
