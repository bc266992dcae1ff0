"""The garbage collector: its pure graph and decisions, then the whole
controller against the in-process fake API (Background, Foreground, Orphan)."""
import asyncio

from fake_api import eventually, with_fake

from kwire.client import ApiResource, Backoff, Informers
from kwire.controllers.garbagecollector import (
    Delete, GarbageCollector, Graph, Keep, OwnerState, RemoveOwnerRefs, plan_dependent, tracked,
    without_finalizer, without_owner_refs)

VERBS = frozenset({"list", "watch", "delete", "get"})
RS = ApiResource("apps", "v1", "replicasets", "ReplicaSet", True, VERBS)
POD = ApiResource("", "v1", "pods", "Pod", True, VERBS)


def ref(uid, name=None, kind="ReplicaSet", block=False):
    r = {"apiVersion": "apps/v1", "kind": kind, "name": name or uid, "uid": uid}
    if block:
        r["blockOwnerDeletion"] = True
    return r


def obj(name, uid, owners=(), finalizers=(), deleting=False, ns="default", rv="1"):
    meta = {"name": name, "namespace": ns, "uid": uid, "resourceVersion": rv}
    if owners:
        meta["ownerReferences"] = list(owners)
    if finalizers:
        meta["finalizers"] = list(finalizers)
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


S, D, W = OwnerState.SOLID, OwnerState.DANGLING, OwnerState.WAITING


# --- decisions ---------------------------------------------------------------------------

def test_plan_dependent():
    two = obj("p", "p1", owners=[ref("a"), ref("b")])
    assert plan_dependent(two, {"a": S, "b": S}, False) == Keep()
    assert plan_dependent(two, {"a": S, "b": D}, False) == RemoveOwnerRefs(frozenset({"b"}))
    assert plan_dependent(two, {"a": S, "b": W}, False) == RemoveOwnerRefs(frozenset({"b"}))
    assert plan_dependent(two, {"a": D, "b": D}, False) == Delete("Background")
    assert plan_dependent(two, {"a": D, "b": W}, False) == Delete("Background")
    assert plan_dependent(two, {"a": D, "b": W}, True) == Delete("Foreground")
    assert plan_dependent(obj("p", "p1"), {}, False) == Keep()
    orphaning = obj("p", "p1", owners=[ref("a")], finalizers=["orphan"])
    assert plan_dependent(orphaning, {"a": D}, True) == Delete("Orphan")
    foreground = obj("p", "p1", owners=[ref("a")], finalizers=["foregroundDeletion"])
    assert plan_dependent(foreground, {"a": D}, False) == Delete("Foreground")


def test_patches_are_guarded_by_resource_version():
    p = obj("p", "p1", owners=[ref("a"), ref("b")], finalizers=["x", "orphan"], rv="7")
    assert without_owner_refs(p, {"a"}) == {
        "metadata": {"resourceVersion": "7", "ownerReferences": [ref("b")]}}
    assert without_owner_refs(p, {"a", "b"}) == {
        "metadata": {"resourceVersion": "7", "ownerReferences": None}}
    assert without_finalizer(p, "orphan") == {"metadata": {"resourceVersion": "7",
                                                           "finalizers": ["x"]}}
    assert without_finalizer(obj("o", "o1", finalizers=["orphan"], rv="8"), "orphan") == {
        "metadata": {"resourceVersion": "8", "finalizers": None}}


def test_tracked_resources():
    assert tracked(POD)
    assert not tracked(ApiResource("", "v1", "events", "Event", True, VERBS))
    assert not tracked(ApiResource("", "v1", "bindings", "Binding", True,
                                   frozenset({"create"})))


# --- graph -------------------------------------------------------------------------------

def test_graph_dependents_seen_before_owners():
    g = Graph()
    work = g.observe(POD, obj("p", "p1", owners=[ref("rs1")]))
    assert work.delete == {"p1"}  # the owner is unknown yet: check it
    assert not g.nodes["rs1"].observed and g.nodes["rs1"].dependents == {"p1"}
    work = g.observe(RS, obj("rs1", "rs1"))
    assert work.delete == set() and g.nodes["rs1"].observed
    assert g.nodes["rs1"].dependents == {"p1"}


def test_graph_owner_deleted_wakes_dependents():
    g = Graph()
    g.observe(RS, obj("rs1", "rs1"))
    g.observe(POD, obj("p", "p1", owners=[ref("rs1")]))
    g.observe(POD, obj("q", "q1", owners=[ref("rs1")]))
    work = g.forget("rs1")
    assert work.delete == {"p1", "q1"}
    assert not g.nodes["rs1"].observed  # virtual while dependents name it
    g.observe(POD, obj("p", "p1"))  # released
    g.forget("q1")
    assert "rs1" not in g.nodes


def test_graph_foreground_and_blocking():
    g = Graph()
    g.observe(RS, obj("rs1", "rs1"))
    g.observe(POD, obj("p", "p1", owners=[ref("rs1", block=True)]))
    g.observe(POD, obj("q", "q1", owners=[ref("rs1")]))
    assert g.blocking_dependents("rs1") == ["p1"]
    work = g.observe(RS, obj("rs1", "rs1", finalizers=["foregroundDeletion"], deleting=True))
    assert work.delete == {"rs1", "p1", "q1"}
    work = g.observe(RS, obj("rs1", "rs1", finalizers=["foregroundDeletion"], deleting=True,
                             rv="2"))
    assert work.delete == {"rs1"}  # dependents are enqueued on the transition only
    work = g.forget("p1")
    assert work.delete == {"rs1"}  # a blocker went: the owner may finish
    assert g.blocking_dependents("rs1") == []


def test_graph_orphan_and_ref_changes():
    g = Graph()
    g.observe(RS, obj("rs1", "rs1"))
    g.observe(POD, obj("p", "p1", owners=[ref("rs1")]))
    work = g.observe(RS, obj("rs1", "rs1", finalizers=["orphan"], deleting=True))
    assert work.orphan == {"rs1"} and work.delete == set()
    g.observe(POD, obj("p", "p1"))
    assert g.nodes["rs1"].dependents == set()


# --- the controller against the fake API -------------------------------------------------

def rs_obj(name):
    return {"metadata": {"name": name, "namespace": "default"}}


def pod_obj(name, *owners, block=False):
    refs = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": o["metadata"]["name"],
             "uid": o["metadata"]["uid"], **({"blockOwnerDeletion": True} if block else {})}
            for o in owners]
    return {"metadata": {"name": name, "namespace": "default", "ownerReferences": refs}}


def with_gc(body):
    @with_fake
    async def test(fake, client):
        informers = Informers(client, backoff=Backoff(0.01, 0.05))
        gc = GarbageCollector(client, informers, workers=4)
        task = asyncio.create_task(gc.run())
        try:
            await body(fake, client, gc)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await informers.stop()
    return test


async def gc_synced(fake, gc):
    await eventually(lambda: len(fake.watchers) == 5)  # every resource of the fake


@with_gc
async def test_background_deletes_dependents_without_live_owners(fake, client, gc):
    rs1 = fake.put("apps/v1", "replicasets", rs_obj("rs1"))
    rs2 = fake.put("apps/v1", "replicasets", rs_obj("rs2"))
    fake.put("v1", "pods", pod_obj("only-rs1", rs1))
    fake.put("v1", "pods", pod_obj("both", rs1, rs2))
    fake.put("v1", "pods", pod_obj("only-rs2", rs2))
    fake.put("v1", "pods", {"metadata": {"name": "unowned", "namespace": "default"}})
    await gc_synced(fake, gc)
    await client.delete("apps/v1", "replicasets", "rs1", "default")
    await eventually(lambda: fake.names("v1", "pods", "default") == [
        "both", "only-rs2", "unowned"])
    await eventually(lambda: [r["uid"] for r in fake.get("v1", "pods", "both", "default")
                              ["metadata"]["ownerReferences"]] == [rs2["metadata"]["uid"]])


@with_gc
async def test_dependents_of_owners_missing_at_start_are_collected(fake, client, gc):
    ghost = {"metadata": {"name": "ghost", "uid": "gone-uid"}}
    fake.put("v1", "pods", pod_obj("orphaned", ghost))
    rs = fake.put("apps/v1", "replicasets", rs_obj("alive"))
    fake.put("v1", "pods", pod_obj("kept", rs))
    await eventually(lambda: fake.names("v1", "pods", "default") == ["kept"])


@with_gc
async def test_foreground_deletes_dependents_then_the_owner(fake, client, gc):
    rs = fake.put("apps/v1", "replicasets", rs_obj("rs"))
    fake.put("v1", "pods", pod_obj("blocker", rs, block=True))
    fake.put("v1", "pods", pod_obj("plain", rs))
    blocker = fake.get("v1", "pods", "blocker", "default")
    blocker["metadata"]["finalizers"] = ["test/hold"]  # keeps it around while deleted
    fake.put("v1", "pods", blocker)
    await gc_synced(fake, gc)
    await client.delete("apps/v1", "replicasets", "rs", "default",
                        propagation_policy="Foreground")
    await eventually(lambda: fake.names("v1", "pods", "default") == ["blocker"])
    await eventually(lambda: fake.get("v1", "pods", "blocker", "default")["metadata"].get(
        "deletionTimestamp"))
    await asyncio.sleep(0.2)
    owner = fake.get("apps/v1", "replicasets", "rs", "default")
    assert owner["metadata"]["finalizers"] == ["foregroundDeletion"]  # still waiting
    await client.patch("v1", "pods", "blocker", {"metadata": {"finalizers": None}}, "default")
    await eventually(lambda: fake.get("apps/v1", "replicasets", "rs", "default") is None)
    assert fake.names("v1", "pods", "default") == []


@with_gc
async def test_orphan_releases_dependents_then_the_owner(fake, client, gc):
    rs = fake.put("apps/v1", "replicasets", rs_obj("rs"))
    for i in range(20):
        fake.put("v1", "pods", pod_obj(f"p{i:02}", rs, block=True))
    await gc_synced(fake, gc)
    await client.delete("apps/v1", "replicasets", "rs", "default", propagation_policy="Orphan")
    await eventually(lambda: fake.get("apps/v1", "replicasets", "rs", "default") is None)
    pods = [fake.get("v1", "pods", f"p{i:02}", "default") for i in range(20)]
    assert all(p is not None and "ownerReferences" not in p["metadata"] for p in pods)
    await asyncio.sleep(0.2)
    assert len(fake.names("v1", "pods", "default")) == 20
