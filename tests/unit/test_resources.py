"""The generic registry (Resources) over a real SQLiteStore and the real kind registry:
create, update, status, patch, delete, finalizers, namespaces, list, watch, binding, scale."""
import asyncio
import copy
import functools
import random
import re
import uuid
from datetime import datetime, timezone

import pytest

from kwire.api.allocators import ServiceAllocator
from kwire.api.errors import APIError
from kwire.api.registry import load
from kwire.api.resources import GENERATE_CHARS, DeleteOptions, Query, Resources, WriteOptions
from kwire.api.selectors import parse_field_selector, parse_label_selector
from kwire.api.tables import parse_time
from kwire.store import SQLiteStore

REGISTRY = load()
NS = REGISTRY.resource("", "v1", "namespaces")
CM = REGISTRY.resource("", "v1", "configmaps")
POD = REGISTRY.resource("", "v1", "pods")
DEPLOY = REGISTRY.resource("apps", "v1", "deployments")
W = WriteOptions


def with_resources(body):
    """Run an async test body against Resources on a fresh store in tmp_path, with the
    `default` namespace created (no asyncio plugin needed)."""
    @functools.wraps(body)
    def test(tmp_path):
        async def main():
            store = SQLiteStore(tmp_path / "kwire.db")
            try:
                res = Resources(store, REGISTRY, ServiceAllocator("10.96.0.0/12", "30000-32767"),
                                random.Random(7))
                await res.create(NS, None, {"metadata": {"name": "default"}}, W())
                await body(res)
            finally:
                await store.close()
        asyncio.run(main())
    del test.__wrapped__  # pytest must see test's signature (tmp_path), not body's
    return test


async def error(coro) -> APIError:
    with pytest.raises(APIError) as e:
        await coro
    return e.value


def cm(name, labels=None, **data):
    meta = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def pod(name, node=None):
    spec = {"containers": [{"name": "c", "image": "nginx"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def deployment(name, *containers):
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": c, "image": "nginx"}
                                                          for c in containers or ("c",)]}}}}


def names(items):
    return [o["metadata"]["name"] for o in items]


def seconds_from_now(ts):
    return (parse_time(ts) - datetime.now(timezone.utc)).total_seconds()


# --- create ---------------------------------------------------------------------------


@with_resources
async def test_create_sets_server_metadata(res):
    body = cm("c", a="1")
    body["metadata"].update(uid="mine", creationTimestamp="2000-01-01T00:00:00Z")
    obj = await res.create(CM, "default", body, W())
    meta = obj["metadata"]
    assert uuid.UUID(meta["uid"]).version == 4
    assert abs(seconds_from_now(meta["creationTimestamp"])) < 5
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert meta["resourceVersion"] == str(res.store.revision)
    assert (meta["name"], meta["namespace"]) == ("c", "default")
    assert "generation" not in meta  # core kinds have none in Kubernetes 1.32
    assert await res.get(CM, "default", "c") == obj


@with_resources
async def test_create_runs_defaults_and_resets_status(res):
    body = pod("p")
    body["status"] = {"phase": "Running"}
    obj = await res.create(POD, "default", body, W())
    spec = obj["spec"]
    assert (spec["restartPolicy"], spec["dnsPolicy"], spec["terminationGracePeriodSeconds"],
            spec["schedulerName"]) == ("Always", "ClusterFirst", 30, "default-scheduler")
    assert spec["containers"][0]["terminationMessagePath"] == "/dev/termination-log"
    assert obj["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


@with_resources
async def test_create_sets_generation_for_kinds_with_a_spec(res):
    obj = await res.create(DEPLOY, "default", deployment("d"), W())
    assert obj["metadata"]["generation"] == 1
    assert obj["spec"]["replicas"] == 1


@with_resources
async def test_create_existing_is_409(res):
    await res.create(CM, "default", cm("c"), W())
    e = await error(res.create(CM, "default", cm("c"), W()))
    assert (e.code, e.reason, e.message, e.details) == (
        409, "AlreadyExists", 'configmaps "c" already exists',
        {"name": "c", "kind": "configmaps"})
    await res.create(DEPLOY, "default", deployment("d"), W())
    e = await error(res.create(DEPLOY, "default", deployment("d"), W()))
    assert e.message == 'deployments.apps "d" already exists'
    assert e.details["group"] == "apps"


@with_resources
async def test_create_in_missing_namespace_is_404(res):
    e = await error(res.create(CM, "nope", cm("c"), W()))
    assert (e.code, e.reason, e.message) == (404, "NotFound", 'namespaces "nope" not found')


@with_resources
async def test_create_with_another_namespace_in_the_body_is_400(res):
    body = cm("c")
    body["metadata"]["namespace"] = "other"
    e = await error(res.create(CM, "default", body, W()))
    assert (e.code, e.message) == (400, "the namespace of the provided object does not match "
                                        "the namespace sent on the request")


@with_resources
async def test_create_in_terminating_namespace_is_403(res):
    await res.create(NS, None, {"metadata": {"name": "t"}}, W())
    await res.delete(NS, None, "t", DeleteOptions())
    e = await error(res.create(CM, "t", cm("c"), W()))
    assert (e.code, e.reason, e.message) == (
        403, "Forbidden",
        "unable to create new content in namespace t because it is being terminated")
    assert e.details["causes"] == [{"reason": "NamespaceTerminating",
                                    "message": "namespace t is being terminated",
                                    "field": "metadata.namespace"}]


@with_resources
async def test_generate_name(res):
    first = await res.create(CM, "default", {"metadata": {"generateName": "web-"}}, W())
    second = await res.create(CM, "default", {"metadata": {"generateName": "web-"}}, W())
    for obj in (first, second):
        assert re.fullmatch(f"web-[{GENERATE_CHARS}]{{5}}", obj["metadata"]["name"])
        assert obj["metadata"]["generateName"] == "web-"
    assert first["metadata"]["name"] != second["metadata"]["name"]


@with_resources
async def test_resource_version_on_create_is_400(res):
    body = cm("c")
    body["metadata"]["resourceVersion"] = "5"
    e = await error(res.create(CM, "default", body, W()))
    assert (e.code, e.reason, e.message) == (
        400, "BadRequest", "resourceVersion should not be set on objects to be created")


@with_resources
async def test_wrong_kind_or_version_is_400(res):
    body = cm("c")
    body["apiVersion"] = "v2"
    e = await error(res.create(CM, "default", body, W()))
    assert (e.code, e.message) == (400, "the API version in the data (v2) does not match the "
                                        "expected API version (v1)")
    body = cm("c")
    body["kind"] = "Secret"
    e = await error(res.create(CM, "default", body, W()))
    assert e.message == ('Secret in version "v1" cannot be handled as a ConfigMap: the kind in '
                         "the data does not match the expected kind")


@with_resources
async def test_unknown_fields_by_field_validation(res):
    body = cm("c")
    body["spec"] = {"x": 1}
    warn = W()
    obj = await res.create(CM, "default", copy.deepcopy(body), warn)
    assert "spec" not in obj and warn.warnings == ['unknown field "spec"']
    ignore = W(field_validation="Ignore")
    await res.create(CM, "default", {**copy.deepcopy(body), "metadata": {"name": "d"}}, ignore)
    assert ignore.warnings == []
    e = await error(res.create(CM, "default", {**body, "metadata": {"name": "e"}},
                               W(field_validation="Strict")))
    assert (e.code, e.message) == (400, 'ConfigMap in version "v1" cannot be handled as a '
                                        'ConfigMap: strict decoding error: unknown field "spec"')


@with_resources
async def test_wrong_json_type_is_400(res):
    e = await error(res.create(CM, "default", {"metadata": {"name": "c"}, "data": {"a": 1}},
                               W()))
    assert (e.code, e.message) == (400, 'ConfigMap in version "v1" cannot be handled as a '
                                        "ConfigMap: json: cannot unmarshal number into Go "
                                        "struct field ConfigMap.data of type string")


@with_resources
async def test_validation_is_422_with_causes(res):
    e = await error(res.create(CM, "default", cm("Bad_"), W()))
    assert (e.code, e.reason) == (422, "Invalid")
    assert e.message.startswith('ConfigMap "Bad_" is invalid: metadata.name: Invalid value: '
                                '"Bad_": a lowercase RFC 1123 subdomain must consist of')
    assert [(c["field"], c["reason"]) for c in e.details["causes"]] == [
        ("metadata.name", "FieldValueInvalid")]
    assert (e.details["name"], e.details["kind"]) == ("Bad_", "ConfigMap")

    body = deployment("d")
    body["spec"]["replicas"] = -1
    e = await error(res.create(DEPLOY, "default", body, W()))
    assert (e.code, e.message) == (422, 'Deployment.apps "d" is invalid: spec.replicas: Invalid '
                                        "value: -1: must be greater than or equal to 0")
    assert e.details == {"name": "d", "kind": "Deployment", "group": "apps", "causes": [
        {"reason": "FieldValueInvalid", "field": "spec.replicas",
         "message": "Invalid value: -1: must be greater than or equal to 0"}]}
    items, _ = await res.list(CM, Query(namespace="default"))
    assert items == []


# --- update ---------------------------------------------------------------------------


@with_resources
async def test_update(res):
    old = await res.create(CM, "default", cm("c", a="1"), W())
    body = copy.deepcopy(old)
    body["data"]["a"] = "2"
    new, created = await res.update(CM, "default", "c", body, W())
    assert created is False
    assert new["data"] == {"a": "2"}
    assert int(new["metadata"]["resourceVersion"]) > int(old["metadata"]["resourceVersion"])
    assert (new["metadata"]["uid"], new["metadata"]["creationTimestamp"]) == (
        old["metadata"]["uid"], old["metadata"]["creationTimestamp"])


@with_resources
async def test_update_keeps_server_set_metadata(res):
    old = await res.create(CM, "default", cm("c"), W())
    body = cm("c", a="1")  # no uid, creationTimestamp or resourceVersion: unconditional
    new, _ = await res.update(CM, "default", "c", body, W())
    assert (new["metadata"]["uid"], new["metadata"]["creationTimestamp"]) == (
        old["metadata"]["uid"], old["metadata"]["creationTimestamp"])
    body["metadata"]["uid"] = "forged"  # a uid is a precondition, as upstream
    e = await error(res.update(CM, "default", "c", body, W()))
    assert e.code == 409 and "Precondition failed: UID in precondition: forged" in e.message


@with_resources
async def test_patch_cannot_rename_or_change_uid(res):
    await res.create(CM, "default", cm("c"), W())
    e = await error(res.patch(CM, "default", "c", "merge", {"metadata": {"name": "d"}}, W()))
    assert (e.code, e.message) == (
        400, "the name of the object (d) does not match the name on the URL (c)")
    e = await error(res.patch(CM, "default", "c", "merge", {"metadata": {"uid": "x"}}, W()))
    assert e.code == 422 and 'metadata.uid: Invalid value: "x": field is immutable' in e.message


@with_resources
async def test_update_with_stale_resource_version_is_409(res):
    old = await res.create(CM, "default", cm("c", a="1"), W())
    first = copy.deepcopy(old)
    first["data"]["a"] = "2"
    await res.update(CM, "default", "c", first, W())
    second = copy.deepcopy(old)
    second["data"]["a"] = "3"
    e = await error(res.update(CM, "default", "c", second, W()))
    assert (e.code, e.reason, e.message) == (
        409, "Conflict", 'Operation cannot be fulfilled on configmaps "c": the object has been '
                         "modified; please apply your changes to the latest version and try "
                         "again")
    assert (await res.get(CM, "default", "c"))["data"] == {"a": "2"}


@with_resources
async def test_noop_update_does_not_bump_resource_version(res):
    old = await res.create(CM, "default", cm("c", a="1"), W())
    revision = res.store.revision
    same, _ = await res.update(CM, "default", "c", copy.deepcopy(old), W())
    assert same == old
    assert res.store.revision == revision


@with_resources
async def test_update_errors(res):
    e = await error(res.update(CM, "default", "zz", cm("zz"), W()))
    assert (e.code, e.message) == (404, 'configmaps "zz" not found')
    await res.create(CM, "default", cm("c"), W())
    e = await error(res.update(CM, "default", "c", cm("other"), W()))
    assert (e.code, e.message) == (400, "the name of the object (other) does not match the "
                                        "name on the URL (c)")


# --- status subresource and generation ------------------------------------------------


@with_resources
async def test_main_resource_ignores_status(res):
    old = await res.create(POD, "default", pod("p"), W())
    body = copy.deepcopy(old)
    body["status"]["phase"] = "Running"
    body["metadata"]["labels"] = {"x": "y"}
    new, _ = await res.update(POD, "default", "p", body, W())
    assert new["status"] == old["status"]
    assert new["metadata"]["labels"] == {"x": "y"}


@with_resources
async def test_status_subresource_ignores_spec(res):
    old = await res.create(POD, "default", pod("p"), W())
    body = copy.deepcopy(old)
    body["status"]["phase"] = "Running"
    body["spec"]["containers"][0]["image"] = "other"
    new, _ = await res.update(POD, "default", "p", body, W(), "status")
    assert new["status"]["phase"] == "Running"
    assert new["spec"] == old["spec"]
    patched, _ = await res.patch(POD, "default", "p", "merge",
                                 {"status": {"podIP": "10.0.0.5"}, "spec": {"nodeName": "n"}},
                                 W(), "status")
    assert (patched["status"]["phase"], patched["status"]["podIP"]) == ("Running", "10.0.0.5")
    assert "nodeName" not in patched["spec"]


@with_resources
async def test_status_update_with_stale_resource_version_is_409(res):
    old = await res.create(POD, "default", pod("p"), W())
    await res.patch(POD, "default", "p", "merge", {"metadata": {"labels": {"a": "b"}}}, W())
    e = await error(res.update(POD, "default", "p", old, W(), "status"))
    assert (e.code, e.reason) == (409, "Conflict")


@with_resources
async def test_generation_bumps_on_spec_changes_only(res):
    await res.create(DEPLOY, "default", deployment("d"), W())
    labelled, _ = await res.patch(DEPLOY, "default", "d", "merge",
                                  {"metadata": {"labels": {"l": "1"}}}, W())
    assert labelled["metadata"]["generation"] == 1
    changed, _ = await res.patch(DEPLOY, "default", "d", "merge", {"spec": {"paused": True}}, W())
    assert changed["metadata"]["generation"] == 2
    status, _ = await res.patch(DEPLOY, "default", "d", "merge", {"status": {"replicas": 3}},
                                W(), "status")
    assert (status["metadata"]["generation"], status["status"]["replicas"]) == (2, 3)
    forged = copy.deepcopy(status)
    forged["metadata"]["generation"] = 10
    kept, _ = await res.update(DEPLOY, "default", "d", forged, W())
    assert kept["metadata"]["generation"] == 2


@with_resources
async def test_deployment_annotation_change_bumps_generation(res):
    await res.create(DEPLOY, "default", deployment("d"), W())
    annotated, _ = await res.patch(DEPLOY, "default", "d", "merge",
                                   {"metadata": {"annotations": {"a": "1"}}}, W())
    assert annotated["metadata"]["generation"] == 2


# --- patch ----------------------------------------------------------------------------


@with_resources
async def test_merge_patch(res):
    await res.create(CM, "default", cm("c", a="1", b="2"), W())
    obj, created = await res.patch(CM, "default", "c", "merge", {"data": {"a": None, "c": "3"}},
                                   W())
    assert (created, obj["data"]) == (False, {"b": "2", "c": "3"})


@with_resources
async def test_strategic_merge_patch_merges_lists_by_key(res):
    await res.create(DEPLOY, "default", deployment("d", "app", "sidecar"), W())
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "v2"}]}}}}
    obj, _ = await res.patch(DEPLOY, "default", "d", "strategic", copy.deepcopy(patch), W())
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("app", "v2"), ("sidecar", "nginx")]
    obj, _ = await res.patch(DEPLOY, "default", "d", "merge", patch, W())
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["app"]


@with_resources
async def test_json_patch(res):
    await res.create(CM, "default", cm("c", a="1"), W())
    obj, _ = await res.patch(CM, "default", "c", "json",
                             [{"op": "add", "path": "/data/b", "value": "2"},
                              {"op": "replace", "path": "/data/a", "value": "0"}], W())
    assert obj["data"] == {"a": "0", "b": "2"}
    e = await error(res.patch(CM, "default", "c", "json",
                              [{"op": "remove", "path": "/data/zz"}], W()))
    assert e.code == 422
    e = await error(res.patch(CM, "default", "c", "json", {"op": "add"}, W()))
    assert (e.code, e.message) == (422, "a JSON patch must be a list of operations")


@with_resources
async def test_apply_creates_when_absent_then_updates(res):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}}
    obj, created = await res.patch(CM, "default", "new", "apply", body, W(field_manager="m"))
    assert created is True
    assert (obj["metadata"]["name"], obj["data"]) == ("new", {"k": "v"})
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"},
            "data": {"k": "w"}}
    obj, created = await res.patch(CM, "default", "new", "apply", body, W(field_manager="m"))
    assert (created, obj["data"]) == (False, {"k": "w"})


@with_resources
async def test_other_patches_of_missing_objects_are_404(res):
    for patch_type, patch in (("merge", {}), ("strategic", {}), ("json", [])):
        e = await error(res.patch(CM, "default", "nope", patch_type, patch, W()))
        assert (e.code, e.message) == (404, 'configmaps "nope" not found')


@with_resources
async def test_patch_with_stale_resource_version_is_409(res):
    await res.create(CM, "default", cm("c", a="1"), W())
    e = await error(res.patch(CM, "default", "c", "merge",
                              {"metadata": {"resourceVersion": "1"}, "data": {"a": "2"}}, W()))
    assert (e.code, e.reason) == (409, "Conflict")


# --- delete ---------------------------------------------------------------------------


@with_resources
async def test_delete_returns_the_last_state_and_removes(res):
    await res.create(CM, "default", cm("c"), W())
    gone = await res.delete(CM, "default", "c", DeleteOptions())
    assert gone["metadata"]["resourceVersion"] == str(res.store.revision)
    e = await error(res.get(CM, "default", "c"))
    assert (e.code, e.message) == (404, 'configmaps "c" not found')
    e = await error(res.delete(CM, "default", "c", DeleteOptions()))
    assert e.code == 404


@with_resources
async def test_graceful_deletion_of_a_pod_on_a_node(res):
    await res.create(POD, "default", pod("p", node="n1"), W())
    marked = await res.delete(POD, "default", "p", DeleteOptions())
    meta = marked["metadata"]
    assert meta["deletionGracePeriodSeconds"] == 30
    assert 25 < seconds_from_now(meta["deletionTimestamp"]) <= 30
    assert (await res.get(POD, "default", "p"))["metadata"]["deletionTimestamp"] == \
        meta["deletionTimestamp"]
    shorter = await res.delete(POD, "default", "p", DeleteOptions(grace_period_seconds=10))
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 10
    assert 5 < seconds_from_now(shorter["metadata"]["deletionTimestamp"]) <= 10
    longer = await res.delete(POD, "default", "p", DeleteOptions(grace_period_seconds=60))
    assert longer["metadata"]["deletionGracePeriodSeconds"] == 10
    await res.delete(POD, "default", "p", DeleteOptions(grace_period_seconds=0))
    assert (await error(res.get(POD, "default", "p"))).code == 404


@with_resources
async def test_pods_not_on_a_node_are_deleted_at_once(res):
    await res.create(POD, "default", pod("p"), W())
    await res.delete(POD, "default", "p", DeleteOptions())
    assert (await error(res.get(POD, "default", "p"))).code == 404


@with_resources
async def test_finalizers_keep_an_object_until_removed(res):
    body = cm("c")
    body["metadata"]["finalizers"] = ["example.com/x"]
    await res.create(CM, "default", body, W())
    marked = await res.delete(CM, "default", "c", DeleteOptions())
    assert marked["metadata"]["finalizers"] == ["example.com/x"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert abs(seconds_from_now(marked["metadata"]["deletionTimestamp"])) < 5
    current = await res.get(CM, "default", "c")
    more = copy.deepcopy(current)
    more["metadata"]["finalizers"].append("example.com/y")
    e = await error(res.update(CM, "default", "c", more, W()))
    assert (e.code, e.message) == (
        422, 'ConfigMap "c" is invalid: metadata.finalizers: Forbidden: no new finalizers can '
             'be added if the object is being deleted, found new finalizers ["example.com/y"]')
    labelled = copy.deepcopy(current)
    labelled["metadata"]["labels"] = {"still": "here"}
    current, _ = await res.update(CM, "default", "c", labelled, W())
    assert current["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    done = copy.deepcopy(current)
    done["metadata"]["finalizers"] = []
    await res.update(CM, "default", "c", done, W())
    assert (await error(res.get(CM, "default", "c"))).code == 404


@with_resources
async def test_foreground_and_orphan_add_their_finalizers(res):
    for policy, finalizer in (("Foreground", "foregroundDeletion"), ("Orphan", "orphan")):
        await res.create(CM, "default", cm(policy.lower()), W())
        marked = await res.delete(CM, "default", policy.lower(),
                                  DeleteOptions(propagation_policy=policy))
        assert marked["metadata"]["finalizers"] == [finalizer]
        assert "deletionTimestamp" in (await res.get(CM, "default", policy.lower()))["metadata"]


@with_resources
async def test_background_and_unknown_propagation_policies(res):
    await res.create(CM, "default", cm("c"), W())
    e = await error(res.delete(CM, "default", "c", DeleteOptions(propagation_policy="Bogus")))
    assert (e.code, e.message) == (
        422, 'DeleteOptions "" is invalid: propagationPolicy: Unsupported value: "Bogus": '
             'supported values: "Foreground", "Background", "Orphan", "nil"')
    await res.delete(CM, "default", "c", DeleteOptions(propagation_policy="Background"))
    assert (await error(res.get(CM, "default", "c"))).code == 404


@with_resources
async def test_delete_preconditions(res):
    obj = await res.create(CM, "default", cm("c"), W())
    uid, rv = obj["metadata"]["uid"], obj["metadata"]["resourceVersion"]
    e = await error(res.delete(CM, "default", "c", DeleteOptions(preconditions={"uid": "x"})))
    assert (e.code, e.reason, e.message) == (
        409, "Conflict", f'Operation cannot be fulfilled on configmaps "c": Precondition failed: '
                         f"UID in precondition: x, UID in object meta: {uid}")
    e = await error(res.delete(CM, "default", "c",
                               DeleteOptions(preconditions={"resourceVersion": "1"})))
    assert (e.code, e.message) == (
        409, f'Operation cannot be fulfilled on configmaps "c": Precondition failed: '
             f"ResourceVersion in precondition: 1, ResourceVersion in object meta: {rv}")
    await res.get(CM, "default", "c")
    await res.delete(CM, "default", "c",
                     DeleteOptions(preconditions={"uid": uid, "resourceVersion": rv}))
    assert (await error(res.get(CM, "default", "c"))).code == 404


@with_resources
async def test_delete_collection(res):
    for name, app in (("a", "x"), ("b", "y"), ("c", "x")):
        await res.create(CM, "default", cm(name, {"app": app}), W())
    deleted = await res.delete_collection(
        CM, Query(namespace="default", label_selector=parse_label_selector("app=x")),
        DeleteOptions())
    assert names(deleted) == ["a", "c"]
    items, _ = await res.list(CM, Query(namespace="default"))
    assert names(items) == ["b"]


# --- namespaces -----------------------------------------------------------------------


@with_resources
async def test_namespace_deletion_and_finalize(res):
    created = await res.create(NS, None, {"metadata": {"name": "t"}}, W())
    assert created["spec"] == {"finalizers": ["kubernetes"]}
    assert created["status"] == {"phase": "Active"}
    marked = await res.delete(NS, None, "t", DeleteOptions())
    assert marked["status"]["phase"] == "Terminating"
    assert "deletionTimestamp" in marked["metadata"]
    assert marked["spec"] == {"finalizers": ["kubernetes"]}
    # The main resource cannot drop spec.finalizers; only /finalize can.
    body = copy.deepcopy(marked)
    body["spec"]["finalizers"] = []
    kept, _ = await res.update(NS, None, "t", body, W())
    assert kept["spec"] == {"finalizers": ["kubernetes"]}
    finalize = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"},
                "spec": {"finalizers": []}}
    await res.update(NS, None, "t", finalize, W(), "finalize")
    e = await error(res.get(NS, None, "t"))
    assert (e.code, e.message) == (404, 'namespaces "t" not found')


@with_resources
async def test_finalize_keeping_a_finalizer_keeps_the_namespace(res):
    await res.create(NS, None, {"metadata": {"name": "t"},
                                "spec": {"finalizers": ["example.com/x"]}}, W())
    await res.delete(NS, None, "t", DeleteOptions())
    finalize = {"metadata": {"name": "t"}, "spec": {"finalizers": ["example.com/x"]}}
    obj, _ = await res.update(NS, None, "t", finalize, W(), "finalize")
    assert obj["spec"]["finalizers"] == ["example.com/x"]
    assert obj["status"]["phase"] == "Terminating"


# --- dry run --------------------------------------------------------------------------


@with_resources
async def test_dry_run_writes_nothing(res):
    await res.create(CM, "default", cm("c", a="1"), W())
    revision = res.store.revision
    dry = await res.create(CM, "default", cm("d"), W(dry_run=True))
    assert dry["metadata"]["resourceVersion"] == "" and dry["metadata"]["uid"]
    patched, _ = await res.patch(CM, "default", "c", "merge", {"data": {"a": "2"}},
                                 W(dry_run=True))
    assert patched["data"] == {"a": "2"}
    current = await res.get(CM, "default", "c")
    body = copy.deepcopy(current)
    body["data"]["a"] = "3"
    updated, _ = await res.update(CM, "default", "c", body, W(dry_run=True))
    assert updated["data"] == {"a": "3"}
    await res.delete(CM, "default", "c", DeleteOptions(dry_run=True))
    assert res.store.revision == revision
    assert (await res.get(CM, "default", "c"))["data"] == {"a": "1"}
    assert (await error(res.get(CM, "default", "d"))).code == 404


# --- list -----------------------------------------------------------------------------


async def some_config_maps(res):
    await res.create(NS, None, {"metadata": {"name": "other"}}, W())
    for i, app in enumerate("babab"):
        await res.create(CM, "default", cm(f"c{i}", {"app": app}), W())
    await res.create(CM, "other", cm("o", {"app": "a"}), W())


@with_resources
async def test_list_with_selectors(res):
    await some_config_maps(res)
    revision = str(res.store.revision)

    async def listed(**query):
        items, meta = await res.list(CM, Query(**query))
        assert meta == {"resourceVersion": revision}
        return names(items)

    assert await listed() == ["c0", "c1", "c2", "c3", "c4", "o"]
    assert await listed(namespace="default") == ["c0", "c1", "c2", "c3", "c4"]
    assert await listed(label_selector=parse_label_selector("app=a")) == ["c1", "c3", "o"]
    assert await listed(namespace="default",
                        label_selector=parse_label_selector("app in (a),app!=b")) == ["c1", "c3"]
    assert await listed(field_selector=parse_field_selector("metadata.name=o")) == ["o"]
    assert await listed(namespace="default",
                        field_selector=parse_field_selector("metadata.name=c2")) == ["c2"]
    assert await listed(namespace="default",
                        field_selector=parse_field_selector("metadata.name=o")) == []
    assert await listed(field_selector=parse_field_selector("metadata.namespace!=default")) == [
        "o"]


@with_resources
async def test_list_pods_by_node(res):
    await res.create(POD, "default", pod("a", node="n1"), W())
    await res.create(POD, "default", pod("b", node="n2"), W())
    await res.create(POD, "default", pod("c"), W())
    items, _ = await res.list(POD, Query(field_selector=parse_field_selector("spec.nodeName=n1")))
    assert names(items) == ["a"]
    items, _ = await res.list(POD, Query(field_selector=parse_field_selector("spec.nodeName=")))
    assert names(items) == ["c"]


@with_resources
async def test_paging_is_a_consistent_snapshot(res):
    await some_config_maps(res)
    first, meta = await res.list(CM, Query(namespace="default", limit=2))
    revision = meta["resourceVersion"]
    assert names(first) == ["c0", "c1"] and meta["continue"]
    await res.create(CM, "default", cm("c0a"), W())
    await res.delete(CM, "default", "c3", DeleteOptions())
    second, meta = await res.list(CM, Query(namespace="default", limit=2,
                                            continue_token=meta["continue"]))
    assert names(second) == ["c2", "c3"]
    assert meta["resourceVersion"] == revision and meta["continue"]
    last, meta = await res.list(CM, Query(namespace="default", limit=2,
                                          continue_token=meta["continue"]))
    assert (names(last), meta) == (["c4"], {"resourceVersion": revision})


@with_resources
async def test_paging_with_a_selector_continues_after_the_last_examined_key(res):
    await some_config_maps(res)
    query = {"namespace": "default", "limit": 2, "label_selector": parse_label_selector("app=b")}
    first, meta = await res.list(CM, Query(**query))
    assert names(first) == ["c0", "c2"]
    rest, meta = await res.list(CM, Query(**query, continue_token=meta["continue"]))
    assert (names(rest), "continue" in meta) == (["c4"], False)


@with_resources
async def test_paging_with_a_selector_never_exceeds_the_limit(res):
    for i, app in enumerate("baaab"):
        await res.create(CM, "default", cm(f"c{i}", {"app": app}), W())
    query = {"namespace": "default", "limit": 2, "label_selector": parse_label_selector("app=a")}
    first, meta = await res.list(CM, Query(**query))
    assert names(first) == ["c1", "c2"]
    rest, _ = await res.list(CM, Query(**query, continue_token=meta["continue"]))
    assert names(rest) == ["c3"]


@with_resources
async def test_bad_and_expired_continue_tokens(res):
    await some_config_maps(res)
    e = await error(res.list(CM, Query(continue_token="not a token")))
    assert (e.code, e.message) == (400, "continue key is not valid: illegal base64 data")
    _, meta = await res.list(CM, Query(namespace="default", limit=2))
    await res.create(CM, "default", cm("z"), W())
    await res.store.compact(res.store.revision)
    e = await error(res.list(CM, Query(namespace="default", limit=2,
                                       continue_token=meta["continue"])))
    assert (e.code, e.reason) == (410, "Expired")
    assert e.message.startswith("The provided continue parameter is too old to display a "
                                "consistent list result.")


# --- watch ----------------------------------------------------------------------------


async def events(stream, count):
    out = []
    for _ in range(count):
        kind, obj = await asyncio.wait_for(stream.next(), 2)
        out.append((kind, obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))
    return out


async def nothing_more(stream):
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(stream.next(), 0.2)


@with_resources
async def test_watch_from_a_resource_version(res):
    await res.create(NS, None, {"metadata": {"name": "other"}}, W())
    await res.create(CM, "default", cm("before"), W())
    stream = await res.watch(CM, Query(namespace="default",
                                       resource_version=str(res.store.revision)))
    try:
        added = await res.create(CM, "default", cm("c"), W())
        modified, _ = await res.patch(CM, "default", "c", "merge", {"data": {"a": "1"}}, W())
        await res.create(CM, "other", cm("elsewhere"), W())
        deleted = await res.delete(CM, "default", "c", DeleteOptions())
        assert await events(stream, 3) == [
            ("ADDED", "c", added["metadata"]["resourceVersion"]),
            ("MODIFIED", "c", modified["metadata"]["resourceVersion"]),
            ("DELETED", "c", deleted["metadata"]["resourceVersion"])]
        await nothing_more(stream)
    finally:
        stream.close()


@with_resources
async def test_watch_without_resource_version_starts_with_the_current_state(res):
    await some_config_maps(res)
    stream = await res.watch(CM, Query(namespace="default",
                                       label_selector=parse_label_selector("app=a")))
    try:
        assert [(k, n) for k, n, _ in await events(stream, 2)] == [("ADDED", "c1"),
                                                                    ("ADDED", "c3")]
        await nothing_more(stream)
    finally:
        stream.close()


@with_resources
async def test_watch_reports_selector_transitions(res):
    await res.create(CM, "default", cm("w", {"app": "a"}), W())
    stream = await res.watch(CM, Query(label_selector=parse_label_selector("app=a"),
                                       resource_version=str(res.store.revision)))
    try:
        rvs = []
        for patch in ({"data": {"x": "1"}}, {"metadata": {"labels": {"app": "b"}}},
                      {"data": {"x": "2"}}, {"metadata": {"labels": {"app": "a"}}}):
            obj, _ = await res.patch(CM, "default", "w", "merge", patch, W())
            rvs.append(obj["metadata"]["resourceVersion"])
        assert await events(stream, 3) == [("MODIFIED", "w", rvs[0]), ("DELETED", "w", rvs[1]),
                                           ("ADDED", "w", rvs[3])]
        await nothing_more(stream)
    finally:
        stream.close()


@with_resources
async def test_watch_deleted_on_leaving_the_selector_carries_the_previous_state(res):
    await res.create(CM, "default", cm("w", {"app": "a"}, x="1"), W())
    stream = await res.watch(CM, Query(label_selector=parse_label_selector("app=a"),
                                       resource_version=str(res.store.revision)))
    try:
        left, _ = await res.patch(CM, "default", "w", "merge",
                                  {"metadata": {"labels": {"app": "b"}}, "data": {"x": "2"}},
                                  W())
        kind, obj = await asyncio.wait_for(stream.next(), 2)
        assert kind == "DELETED"
        assert (obj["metadata"]["labels"], obj["data"]) == ({"app": "a"}, {"x": "1"})
        assert obj["metadata"]["resourceVersion"] == left["metadata"]["resourceVersion"]
    finally:
        stream.close()


@with_resources
async def test_watch_errors(res):
    e = await error(res.watch(CM, Query(resource_version="abc")))
    assert (e.code, e.message) == (400, "invalid resource version: abc")
    await res.create(CM, "default", cm("c"), W())
    await res.create(CM, "default", cm("d"), W())
    await res.store.compact(res.store.revision)
    e = await error(res.watch(CM, Query(resource_version="1")))
    assert (e.code, e.reason, e.message) == (
        410, "Expired", f"too old resource version: 1 ({res.store.revision})")


# --- binding --------------------------------------------------------------------------


@with_resources
async def test_binding(res):
    await res.create(POD, "default", pod("p"), W())
    assert await res.bind(POD, "default", "p", {"target": {"kind": "Node", "name": "n1"}}) is None
    bound = await res.get(POD, "default", "p")
    assert bound["spec"]["nodeName"] == "n1"
    [scheduled] = bound["status"]["conditions"]
    assert scheduled["type"] == "PodScheduled" and scheduled["status"] == "True"
    assert abs(seconds_from_now(scheduled["lastTransitionTime"])) < 5
    e = await error(res.bind(POD, "default", "p", {"target": {"name": "n2"}}))
    assert (e.code, e.reason) == (409, "Conflict")
    assert e.message.endswith(': pod p is already assigned to node "n1"')
    assert (await res.get(POD, "default", "p"))["spec"]["nodeName"] == "n1"


@with_resources
async def test_binding_conflict_names_pods_binding(res):
    await res.create(POD, "default", pod("p", node="n1"), W())
    e = await error(res.bind(POD, "default", "p", {"target": {"name": "n2"}}))
    assert e.message == ('Operation cannot be fulfilled on pods/binding "p": pod p is already '
                         'assigned to node "n1"')
    assert e.details == {"name": "p", "kind": "pods/binding"}


@with_resources
async def test_binding_errors(res):
    e = await error(res.bind(POD, "default", "nope", {"target": {"name": "n1"}}))
    assert (e.code, e.message) == (404, 'pods "nope" not found')
    await res.create(POD, "default", pod("p"), W())
    e = await error(res.bind(POD, "default", "p", {"target": {}}))
    assert (e.code, e.message) == (422, 'Binding "p" is invalid: target.name: Required value')
    body = pod("f")
    body["metadata"]["finalizers"] = ["example.com/x"]
    await res.create(POD, "default", body, W())
    await res.delete(POD, "default", "f", DeleteOptions())
    e = await error(res.bind(POD, "default", "f", {"target": {"name": "n1"}}))
    assert (e.code, e.reason) == (409, "Conflict")
    assert e.message.endswith(": pod is being deleted, cannot be assigned to a host")


# --- scale ----------------------------------------------------------------------------


@with_resources
async def test_scale(res):
    d = await res.create(DEPLOY, "default", deployment("d"), W())
    meta = d["metadata"]
    scale = await res.get_scale(DEPLOY, "default", "d")
    assert scale == {"kind": "Scale", "apiVersion": "autoscaling/v1",
                     "metadata": {"name": "d", "namespace": "default", "uid": meta["uid"],
                                  "resourceVersion": meta["resourceVersion"],
                                  "creationTimestamp": meta["creationTimestamp"]},
                     "spec": {"replicas": 1}, "status": {"replicas": 0, "selector": "app=d"}}
    scaled = await res.update_scale(DEPLOY, "default", "d", None, {"spec": {"replicas": 3}}, W())
    assert scaled["spec"] == {"replicas": 3}
    after = await res.get(DEPLOY, "default", "d")
    assert (after["spec"]["replicas"], after["metadata"]["generation"]) == (3, 2)
    assert scaled["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
    patched = await res.update_scale(DEPLOY, "default", "d", "merge", {"spec": {"replicas": 5}},
                                     W())
    assert patched["spec"] == {"replicas": 5}


@with_resources
async def test_scale_errors(res):
    await res.create(DEPLOY, "default", deployment("d"), W())
    e = await error(res.update_scale(DEPLOY, "default", "d", None, {"spec": {"replicas": -1}},
                                     W()))
    assert (e.code, e.message) == (422, 'Scale.autoscaling "d" is invalid: spec.replicas: '
                                        "Invalid value: -1: must be greater than or equal to 0")
    e = await error(res.update_scale(DEPLOY, "default", "d", None,
                                     {"metadata": {"resourceVersion": "1"},
                                      "spec": {"replicas": 2}}, W()))
    assert (e.code, e.message) == (
        409, 'Operation cannot be fulfilled on deployments.apps "d": the object has been '
             "modified; please apply your changes to the latest version and try again")
    e = await error(res.get_scale(DEPLOY, "default", "nope"))
    assert (e.code, e.message) == (404, 'deployments.apps "nope" not found')
    assert (await res.get(DEPLOY, "default", "d"))["spec"]["replicas"] == 1


SVC = REGISTRY.resource("", "v1", "services")


@with_resources
async def test_service_addresses_follow_creates_updates_and_deletes(res):
    """Allocation reads an index this process keeps by its own writes: an address is
    taken while its Service holds it, and free again once it is gone or changed."""
    def service(name, ip=None, node_port=None):
        port = {"port": 80, **({"nodePort": node_port} if node_port else {})}
        return {"metadata": {"name": name},
                "spec": {"type": "NodePort" if node_port else "ClusterIP",
                         "ports": [port], **({"clusterIP": ip} if ip else {})}}

    await res.create(SVC, "default", service("a", "10.96.0.50", 30050), W())
    e = await error(res.create(SVC, "default", service("b", "10.96.0.50"), W()))
    assert e.code == 422 and "already allocated" in e.message
    e = await error(res.create(SVC, "default", service("b", node_port=30050), W()))
    assert e.code == 422 and "already allocated" in e.message
    a = await res.get(SVC, "default", "a")
    a["spec"]["type"], a["spec"]["ports"] = "ClusterIP", [{"port": 80}]  # frees 30050
    await res.update(SVC, "default", "a", a, W())
    await res.create(SVC, "default", service("b", node_port=30050), W())
    await res.delete(SVC, "default", "a", DeleteOptions())
    c = await res.create(SVC, "default", service("c", "10.96.0.50"), W())
    assert c["spec"]["clusterIP"] == "10.96.0.50"
