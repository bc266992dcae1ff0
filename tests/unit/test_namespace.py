"""The namespace lifecycle controller: its pure parts, then the controller
against the in-process fake API."""
import asyncio
from collections import Counter

from fake_api import eventually, with_fake

from kwire.client import ApiResource, Backoff, Informers
from kwire.controllers.namespace import (ContentStatus, NamespaceController, deletable_resources,
                                         deletion_conditions, finalized, merge_conditions)


def test_deletable_resources():
    all_verbs = frozenset({"list", "delete", "deletecollection", "watch"})
    pods = ApiResource("", "v1", "pods", "Pod", True, all_verbs)
    nodes = ApiResource("", "v1", "nodes", "Node", False, all_verbs)
    bindings = ApiResource("", "v1", "bindings", "Binding", True, frozenset({"create"}))
    assert deletable_resources([pods, nodes, bindings]) == [pods]


def test_deletion_conditions():
    clean = {c["type"]: c for c in deletion_conditions(ContentStatus())}
    assert {t: c["status"] for t, c in clean.items()} == {
        "NamespaceDeletionDiscoveryFailure": "False",
        "NamespaceDeletionGroupVersionParsingFailure": "False",
        "NamespaceDeletionContentFailure": "False",
        "NamespaceContentRemaining": "False",
        "NamespaceFinalizersRemaining": "False"}
    busy = ContentStatus(failures=["pods.: boom"], remaining={"pods.": 2},
                         finalizers=Counter({"example.com/x": 1}))
    conds = {c["type"]: c for c in deletion_conditions(busy)}
    assert conds["NamespaceContentRemaining"] == {
        "type": "NamespaceContentRemaining", "status": "True", "reason": "SomeResourcesRemain",
        "message": "Some resources are remaining: pods. has 2 resource instances"}
    assert conds["NamespaceFinalizersRemaining"]["message"] == (
        "Some content in the namespace has finalizers remaining: example.com/x in 1 resource "
        "instances")
    assert conds["NamespaceDeletionContentFailure"]["message"] == (
        "Failed to delete all resource types, 1 remaining: pods.: boom")
    assert not busy.done and ContentStatus().done


def test_merge_conditions_moves_transition_time_only_on_status_change():
    old = [{"type": "A", "status": "True", "reason": "r", "message": "m",
            "lastTransitionTime": "t0"},
           {"type": "Other", "status": "True", "lastTransitionTime": "t0"}]
    merged = merge_conditions(old, [{"type": "A", "status": "True", "reason": "r2",
                                     "message": "m2"},
                                    {"type": "B", "status": "False", "reason": "x",
                                     "message": "y"}], "t1")
    assert merged == [{"type": "A", "status": "True", "reason": "r2", "message": "m2",
                       "lastTransitionTime": "t0"},
                      {"type": "Other", "status": "True", "lastTransitionTime": "t0"},
                      {"type": "B", "status": "False", "reason": "x", "message": "y",
                       "lastTransitionTime": "t1"}]
    flipped = merge_conditions(merged, [{"type": "A", "status": "False", "reason": "r",
                                         "message": "m"}], "t2")
    assert flipped[0]["lastTransitionTime"] == "t2"


def test_finalized_keeps_other_finalizers():
    ns = {"metadata": {"name": "n"}, "spec": {"finalizers": ["kubernetes", "example.com/x"]}}
    assert finalized(ns)["spec"]["finalizers"] == ["example.com/x"]
    assert ns["spec"]["finalizers"] == ["kubernetes", "example.com/x"]


def with_controller(body):
    @with_fake
    async def test(fake, client):
        informers = Informers(client, backoff=Backoff(0.01, 0.05))
        controller = NamespaceController(client, informers, max_retry_delay=0.2)
        task = asyncio.create_task(controller.run())
        try:
            await body(fake, client)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await informers.stop()
    return test


def cm(name, ns, finalizers=None):
    meta = {"name": name, "namespace": ns}
    if finalizers:
        meta["finalizers"] = finalizers
    return {"metadata": meta}


@with_controller
async def test_deleting_a_namespace_deletes_its_content_then_finalizes(fake, client):
    await client.create("v1", "namespaces", {"metadata": {"name": "doomed"}})
    await client.create("v1", "namespaces", {"metadata": {"name": "kept"}})
    for i in range(3):
        await client.create("v1", "configmaps", cm(f"c{i}", "doomed"))
    await client.create("v1", "pods", cm("p", "doomed"))
    await client.create("v1", "configmaps", cm("c0", "kept"))
    await client.create("v1", "nodes", {"metadata": {"name": "node-1"}})
    await client.delete("v1", "namespaces", "doomed")
    await eventually(lambda: fake.get("v1", "namespaces", "doomed") is None)
    assert fake.names("v1", "configmaps", "doomed") == []
    assert fake.names("v1", "pods", "doomed") == []
    assert fake.names("v1", "configmaps", "kept") == ["c0"]
    assert fake.names("v1", "nodes") == ["node-1"]
    assert fake.get("v1", "namespaces", "kept")["metadata"].get("deletionTimestamp") is None


@with_controller
async def test_waits_for_content_with_finalizers_and_reports_it(fake, client):
    await client.create("v1", "namespaces", {"metadata": {"name": "slow"}})
    await client.create("v1", "configmaps", cm("held", "slow", ["example.com/hold"]))
    await client.delete("v1", "namespaces", "slow")

    def conditions():
        ns = fake.get("v1", "namespaces", "slow")
        return {c["type"]: c for c in (ns.get("status") or {}).get("conditions") or ()}
    await eventually(lambda: conditions().get("NamespaceFinalizersRemaining", {})
                     .get("status") == "True")
    assert conditions()["NamespaceContentRemaining"]["message"] == (
        "Some resources are remaining: configmaps. has 1 resource instances")
    assert fake.get("v1", "configmaps", "held", "slow")["metadata"]["deletionTimestamp"]
    await asyncio.sleep(0.3)
    ns = fake.get("v1", "namespaces", "slow")
    assert ns["spec"]["finalizers"] == ["kubernetes"] and ns["status"]["phase"] == "Terminating"
    await client.patch("v1", "configmaps", "held", {"metadata": {"finalizers": None}}, "slow")
    await eventually(lambda: fake.get("v1", "namespaces", "slow") is None)


@with_controller
async def test_other_spec_finalizers_keep_the_namespace(fake, client):
    await client.create("v1", "namespaces", {"metadata": {"name": "shared"},
                                             "spec": {"finalizers": ["kubernetes",
                                                                     "example.com/x"]}})
    await client.delete("v1", "namespaces", "shared")
    await eventually(lambda: fake.get("v1", "namespaces", "shared")["spec"]["finalizers"]
                     == ["example.com/x"])
