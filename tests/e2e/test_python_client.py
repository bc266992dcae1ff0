"""The official `kubernetes` Python client against a cluster started with `kwire up`."""
from __future__ import annotations

import json
import time

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from conftest import running_cluster


def cm(name: str, data: dict | None = None, labels: dict | None = None) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels),
                              data=data or {"k": "v"})


def test_crud(cluster, ns):
    v1 = client.CoreV1Api(cluster.client())
    created = v1.create_namespaced_config_map(ns, cm("one", {"a": "1"}))
    assert created.metadata.uid and created.metadata.resource_version
    got = v1.read_namespaced_config_map("one", ns)
    assert got.data == {"a": "1"}
    got.data["b"] = "2"
    updated = v1.replace_namespaced_config_map("one", ns, got)
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    patched = v1.patch_namespaced_config_map("one", ns, {"data": {"c": "3"}})
    assert patched.data == {"a": "1", "b": "2", "c": "3"}
    v1.delete_namespaced_config_map("one", ns)
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_config_map("one", ns)
    assert e.value.status == 404


def test_conflict_on_stale_resource_version(cluster, ns):
    v1 = client.CoreV1Api(cluster.client())
    first = v1.create_namespaced_config_map(ns, cm("race"))
    stale = v1.read_namespaced_config_map("race", ns)
    fresh = v1.read_namespaced_config_map("race", ns)
    fresh.data = {"k": "fresh"}
    replaced = v1.replace_namespaced_config_map("race", ns, fresh)
    stale.data = {"k": "stale"}
    with pytest.raises(ApiException) as e:
        v1.replace_namespaced_config_map("race", ns, stale)
    assert e.value.status == 409 and "the object has been modified" in e.value.body
    assert v1.read_namespaced_config_map("race", ns).data == {"k": "fresh"}
    assert first.metadata.resource_version != replaced.metadata.resource_version


def test_list_paging(cluster, ns):
    v1 = client.CoreV1Api(cluster.client())
    for i in range(7):
        v1.create_namespaced_config_map(ns, cm(f"page-{i}", labels={"set": "paging"}))
    seen, token, pages = [], None, 0
    while True:
        kwargs = {"limit": 3, "label_selector": "set=paging"}
        if token:
            kwargs["_continue"] = token
        page = v1.list_namespaced_config_map(ns, **kwargs)
        pages += 1
        seen += [i.metadata.name for i in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert pages == 3
    assert seen == sorted(f"page-{i}" for i in range(7))


def test_watch_resumes_from_resource_version(cluster, ns):
    v1 = client.CoreV1Api(cluster.client())
    listed = v1.list_namespaced_config_map(ns)
    rv = listed.metadata.resource_version
    v1.create_namespaced_config_map(ns, cm("w1"))
    v1.patch_namespaced_config_map("w1", ns, {"data": {"k": "2"}})
    v1.delete_namespaced_config_map("w1", ns)
    events = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, ns, resource_version=rv,
                       timeout_seconds=3):
        events.append((ev["type"], ev["object"].metadata.name))
        if len(events) == 3:
            w.stop()
    assert events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_watch_selector_transitions(cluster, ns):
    """An object that stops matching a label selector is reported as DELETED."""
    v1 = client.CoreV1Api(cluster.client())
    rv = v1.list_namespaced_config_map(ns).metadata.resource_version
    v1.create_namespaced_config_map(ns, cm("sel", labels={"pick": "yes"}))
    v1.patch_namespaced_config_map("sel", ns, {"metadata": {"labels": {"pick": "no"}}})
    events = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, ns, resource_version=rv,
                       label_selector="pick=yes", timeout_seconds=3):
        events.append(ev["type"])
        if len(events) == 2:
            w.stop()
    assert events == ["ADDED", "DELETED"]


@pytest.fixture(scope="module")
def compacting(tmp_path_factory):
    with running_cluster("e2e-c", tmp_path_factory.mktemp("compacting"),
                         "--compaction-interval", "1") as c:
        yield c


def test_watch_after_compaction_is_gone(compacting):
    v1 = client.CoreV1Api(compacting.client())
    old = v1.create_namespaced_config_map("default", cm("c0")).metadata.resource_version
    for i in range(3):
        v1.create_namespaced_config_map("default", cm(f"c{i + 1}"))
    time.sleep(3.5)
    with pytest.raises(ApiException) as e:
        for _ in watch.Watch().stream(v1.list_namespaced_config_map, "default",
                                      resource_version=old, timeout_seconds=2):
            pass
    assert e.value.status == 410 and "too old resource version" in e.value.body
    # a fresh list and watch from its resourceVersion work again
    rv = v1.list_namespaced_config_map("default").metadata.resource_version
    v1.create_namespaced_config_map("default", cm("after"))
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, "default", resource_version=rv,
                       timeout_seconds=3):
        assert (ev["type"], ev["object"].metadata.name) == ("ADDED", "after")
        w.stop()


def test_watch_bookmarks_when_asked(cluster, ns):
    v1 = client.CoreV1Api(cluster.client())
    rv = v1.list_namespaced_config_map(ns).metadata.resource_version
    resp = v1.list_namespaced_config_map(ns, watch=True, allow_watch_bookmarks=True,
                                         resource_version=rv, timeout_seconds=7,
                                         _preload_content=False)
    types = []
    try:
        for line in resp:
            ev = json.loads(line)
            types.append(ev["type"])
            if ev["type"] == "BOOKMARK":
                assert int(ev["object"]["metadata"]["resourceVersion"]) >= int(rv)
                assert ev["object"]["kind"] == "ConfigMap"
                break
    finally:
        resp.release_conn()
    assert "BOOKMARK" in types
