"""Patch application: strategic merge (kubectl apply), RFC 7386, RFC 6902, server-side apply.

Expected results follow k8s.io/apimachinery/pkg/util/strategicpatch, including its list
ordering rules, and the patch bodies are the ones kubectl 1.32 really sends (reference §5.3).
"""
import copy
import json

import pytest

from kwire.api.smp import (
    PatchError, apply_patch, create_two_way_merge, json_patch, merge_patch, strategic_merge,
)

CONTAINER = {"key": "name", "fields": {
    "ports": {"key": "containerPort"},
    "env": {"key": "name"},
    "volumeMounts": {"key": "mountPath"},
}}
POD = {
    "metadata": {"fields": {"finalizers": {"set": True}, "ownerReferences": {"key": "uid"}}},
    "spec": {"fields": {
        "containers": CONTAINER,
        "initContainers": CONTAINER,
        "volumes": {"key": "name", "retainKeys": True},
        "imagePullSecrets": {"key": "name"},
    }},
}
SERVICE = {
    "metadata": POD["metadata"],
    "spec": {"fields": {"ports": {"key": "port"}}},
}
DEPLOYMENT = {
    "metadata": POD["metadata"],
    "spec": {"fields": {
        "strategy": {"retainKeys": True},
        "template": {"fields": {"metadata": POD["metadata"], "spec": POD["spec"]}},
    }},
}


def pod(**spec):
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default",
                     "labels": {"app": "web", "tier": "fe"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "<old>"}},
        "spec": spec or {"containers": [
            {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
        ]},
    }


def names(items):
    return [item["name"] for item in items]


def smp(original, patch, schema=POD):
    """strategic_merge, also checking that neither input is modified."""
    before = copy.deepcopy((original, patch))
    result = strategic_merge(original, patch, schema)
    assert (original, patch) == before
    return result


# --- the bodies kubectl 1.32 sends on `kubectl apply` (reference §5.3) --------------------

KUBECTL_ADD_SIDE = json.loads("""
{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"<new>"},"labels":{"tier":null}},
 "spec":{"$setElementOrder/containers":[{"name":"nginx"},{"name":"side"}],
         "containers":[{"image":"nginx:1.26","name":"nginx"},{"env":[{"name":"FOO","value":"bar"}],"name":"side"}]}}
""")

KUBECTL_REMOVE_SIDE = json.loads("""
{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"<newer>"}},
 "spec":{"$setElementOrder/containers":[{"name":"nginx"}],
  "containers":[{"image":"nginx:1.27","name":"nginx","ports":null},{"$patch":"delete","name":"side"}]}}
""")


def test_kubectl_apply_changes_image_adds_container_and_drops_label():
    live = pod(containers=[
        {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
        {"name": "side", "image": "busybox", "command": ["sleep", "inf"]},
    ])
    assert smp(live, KUBECTL_ADD_SIDE) == {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "<new>"}},
        "spec": {"containers": [
            {"name": "nginx", "image": "nginx:1.26", "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "busybox", "command": ["sleep", "inf"],
             "env": [{"name": "FOO", "value": "bar"}]},
        ]},
    }


def test_kubectl_apply_adds_a_container_the_live_object_lacks():
    result = smp(pod(), KUBECTL_ADD_SIDE)
    assert result["spec"]["containers"] == [
        {"name": "nginx", "image": "nginx:1.26", "ports": [{"containerPort": 80}]},
        {"env": [{"name": "FOO", "value": "bar"}], "name": "side"},
    ]


def test_kubectl_apply_removes_container_and_ports():
    live = smp(pod(), KUBECTL_ADD_SIDE)
    result = smp(live, KUBECTL_REMOVE_SIDE)
    assert result["spec"] == {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}
    assert result["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/last-applied-configuration": "<newer>"}
    assert result["metadata"]["labels"] == {"app": "web"}


def test_directives_never_reach_the_result():
    result = smp(pod(), KUBECTL_ADD_SIDE)
    assert "$" not in json.dumps(result)
    result = smp(result, KUBECTL_REMOVE_SIDE)
    assert "$" not in json.dumps(result)


# --- maps ---------------------------------------------------------------------------------


def test_maps_merge_recursively_and_null_deletes():
    original = {"metadata": {"labels": {"a": "1", "b": "2"}, "annotations": {"x": "y"}},
                "spec": {"nodeSelector": {"disk": "ssd"}, "hostname": "h"}}
    patch = {"metadata": {"labels": {"a": None, "c": "3"}, "annotations": None},
             "spec": {"nodeSelector": {"zone": "z1"}, "hostname": None, "missing": None}}
    assert smp(original, patch) == {
        "metadata": {"labels": {"b": "2", "c": "3"}},
        "spec": {"nodeSelector": {"disk": "ssd", "zone": "z1"}},
    }


def test_new_map_from_patch_drops_nulls_and_directives():
    patch = {"spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": None,
                                          "seLinuxOptions": {"$patch": "replace", "level": "s0"}}}}
    assert smp({"spec": {}}, patch) == {
        "spec": {"securityContext": {"runAsUser": 1000, "seLinuxOptions": {"level": "s0"}}}}


def test_patch_replace_directive_in_a_map_replaces_it():
    original = {"spec": {"nodeSelector": {"disk": "ssd", "zone": "a"}}}
    patch = {"spec": {"nodeSelector": {"$patch": "replace", "gpu": "yes"}}}
    assert smp(original, patch) == {"spec": {"nodeSelector": {"gpu": "yes"}}}


def test_patch_delete_directive_in_a_map_empties_it():
    original = {"spec": {"nodeSelector": {"disk": "ssd"}, "hostname": "h"}}
    assert smp(original, {"spec": {"nodeSelector": {"$patch": "delete"}}}) == {
        "spec": {"nodeSelector": {}, "hostname": "h"}}


def test_patch_merge_directive_is_the_default():
    original = {"spec": {"nodeSelector": {"disk": "ssd"}}}
    patch = {"spec": {"nodeSelector": {"$patch": "merge", "zone": "a"}}}
    assert smp(original, patch) == {"spec": {"nodeSelector": {"disk": "ssd", "zone": "a"}}}


def test_top_level_replace_replaces_the_whole_object():
    assert smp({"a": 1, "b": {"c": 2}}, {"$patch": "replace", "b": {"d": 3}}) == {"b": {"d": 3}}


def test_type_changes_take_the_patch_value():
    original = {"spec": {"a": [1, 2], "b": "text", "c": {"x": 1}}}
    patch = {"spec": {"a": "now a string", "b": {"k": "v", "n": None}, "c": [3]}}
    assert smp(original, patch) == {"spec": {"a": "now a string", "b": {"k": "v"}, "c": [3]}}


def test_unknown_maps_merge_without_schema_and_their_lists_are_replaced():
    original = {"data": {"cfg": {"list": [1, 2, 3], "keep": True}}}
    patch = {"data": {"cfg": {"list": [4]}}}
    assert smp(original, patch, {}) == {"data": {"cfg": {"list": [4], "keep": True}}}


# --- lists without merge semantics are replaced -----------------------------------------


def test_lists_outside_the_schema_are_replaced_whole():
    original = pod(containers=[{"name": "c", "image": "i", "command": ["a", "b"]}],
                   tolerations=[{"key": "k1", "operator": "Exists"}])
    patch = {"spec": {"tolerations": [{"key": "k2", "operator": "Equal", "value": "v",
                                       "effect": None}],
                      "containers": [{"name": "c", "command": ["z"]}]}}
    result = smp(original, patch)
    assert result["spec"]["tolerations"] == [{"key": "k2", "operator": "Equal", "value": "v"}]
    assert result["spec"]["containers"] == [{"name": "c", "image": "i", "command": ["z"]}]


# --- keyed lists ----------------------------------------------------------------------------


def test_keyed_list_merges_matching_items_recursively():
    original = pod(containers=[
        {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
        {"name": "b", "image": "b:1"},
    ])
    patch = {"spec": {"containers": [
        {"name": "a", "env": [{"name": "Y", "value": None,
                               "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
    ]}}
    assert smp(original, patch)["spec"]["containers"] == [
        {"name": "a", "image": "a:1", "env": [
            {"name": "X", "value": "1"},
            {"name": "Y", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ]},
        {"name": "b", "image": "b:1"},
    ]


def test_new_items_without_an_order_list_go_first_as_upstream():
    # The Kubernetes docs' `kubectl patch` exercise: the patched-in container comes first.
    result = smp(pod(), {"spec": {"containers": [{"name": "side", "image": "redis"}]}})
    assert result["spec"]["containers"] == [
        {"name": "side", "image": "redis"},
        {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
    ]


def test_patched_items_take_the_patch_order_and_the_rest_keep_their_place():
    original = pod(containers=[{"name": n, "image": n} for n in "abcd"])
    patch = {"spec": {"containers": [{"name": "d", "image": "D"}, {"name": "b", "image": "B"}]}}
    result = smp(original, patch)["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in result] == [
        ("a", "a"), ("c", "c"), ("d", "D"), ("b", "B")]


def test_container_ports_merge_on_container_port():
    original = pod(containers=[{"name": "c", "image": "i", "ports": [
        {"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https"}]}])
    patch = {"spec": {
        "containers": [{"name": "c", "ports": [
            {"containerPort": 80, "name": "web", "protocol": "TCP"},
            {"containerPort": 9090, "name": "metrics"},
            {"$patch": "delete", "containerPort": 443},
        ], "$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 9090}]}],
    }}
    assert smp(original, patch)["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "name": "web", "protocol": "TCP"},
        {"containerPort": 9090, "name": "metrics"},
    ]


def test_service_ports_merge_on_port():
    original = {"spec": {"type": "ClusterIP", "ports": [
        {"port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"port": 443, "targetPort": 8443, "protocol": "TCP"}]}}
    patch = {"spec": {"ports": [{"port": 443, "targetPort": 9443}, {"port": 53, "protocol": "UDP"}]}}
    assert smp(original, patch, SERVICE)["spec"]["ports"] == [
        {"port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"port": 443, "targetPort": 9443, "protocol": "TCP"},
        {"port": 53, "protocol": "UDP"},
    ]


def test_delete_directive_removes_every_item_with_the_key_and_ignores_unknown_keys():
    original = pod(containers=[{"name": "a"}, {"name": "b"}, {"name": "a", "image": "dup"}])
    patch = {"spec": {"containers": [{"$patch": "delete", "name": "a"},
                                     {"$patch": "delete", "name": "zzz"}]}}
    assert smp(original, patch)["spec"]["containers"] == [{"name": "b"}]


def test_replace_directive_in_a_list_replaces_it_with_the_other_items():
    original = pod(containers=[{"name": "a", "image": "a"}, {"name": "b", "image": "b"}])
    patch = {"spec": {"containers": [{"name": "c", "image": "c", "tty": None},
                                     {"$patch": "replace"}]}}
    assert smp(original, patch)["spec"]["containers"] == [{"name": "c", "image": "c"}]


def test_empty_keyed_list_in_a_patch_changes_nothing():
    assert smp(pod(), {"spec": {"containers": []}}) == pod()


def test_keyed_list_missing_from_original_is_built_from_the_patch():
    original = pod()
    patch = {"spec": {"imagePullSecrets": [{"name": "reg"}, {"$patch": "delete", "name": "old"}]}}
    assert smp(original, patch)["spec"]["imagePullSecrets"] == [{"name": "reg"}]


def test_owner_references_merge_on_uid():
    original = {"metadata": {"ownerReferences": [{"uid": "1", "kind": "ReplicaSet", "name": "rs"}]}}
    patch = {"metadata": {"ownerReferences": [{"uid": "1", "controller": True},
                                              {"uid": "2", "kind": "Job", "name": "j"}]}}
    assert smp(original, patch)["metadata"]["ownerReferences"] == [
        {"uid": "1", "kind": "ReplicaSet", "name": "rs", "controller": True},
        {"uid": "2", "kind": "Job", "name": "j"},
    ]


def test_deployment_template_containers_merge_through_nested_schema():
    original = {"spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "w"}}, "spec": {
        "containers": [{"name": "w", "image": "w:1", "env": [{"name": "A", "value": "1"}]}]}}}}
    patch = {"spec": {"replicas": 3, "template": {"spec": {
        "containers": [{"name": "w", "env": [{"name": "B", "value": "2"}],
                        "$setElementOrder/env": [{"name": "A"}, {"name": "B"}]}]}}}}
    assert smp(original, patch, DEPLOYMENT)["spec"] == {"replicas": 3, "template": {
        "metadata": {"labels": {"app": "w"}},
        "spec": {"containers": [{"name": "w", "image": "w:1", "env": [
            {"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}}}


# --- $setElementOrder -----------------------------------------------------------------------


def test_set_element_order_alone_reorders_the_live_list():
    original = pod(containers=[{"name": "a"}, {"name": "b"}, {"name": "c"}])
    patch = {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}}
    assert names(smp(original, patch)["spec"]["containers"]) == ["c", "a", "b"]


def test_set_element_order_interleaves_server_only_items_as_upstream():
    # "b" is not in the order list: it keeps its place before "c", which followed it live.
    original = pod(containers=[{"name": "a"}, {"name": "b"}, {"name": "c"}])
    patch = {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                      "containers": [{"name": "c", "image": "new"}]}}
    result = smp(original, patch)["spec"]["containers"]
    assert result == [{"name": "b"}, {"name": "c", "image": "new"}, {"name": "a"}]


def test_set_element_order_puts_server_only_items_last_when_they_were_last():
    original = pod(containers=[{"name": "a"}, {"name": "b"}, {"name": "x"}])
    patch = {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "new"}, {"name": "a"}],
                      "containers": [{"name": "new"}]}}
    assert names(smp(original, patch)["spec"]["containers"]) == ["b", "new", "a", "x"]


def test_set_element_order_on_absent_list_does_nothing():
    original = {"spec": {}}
    assert smp(original, {"spec": {"$setElementOrder/containers": [{"name": "a"}]}}) == original


def test_set_element_order_must_agree_with_the_patch_list():
    original = pod(containers=[{"name": "a"}, {"name": "b"}])
    patch = {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                      "containers": [{"name": "b", "image": "x"}, {"name": "a", "image": "y"}]}}
    with pytest.raises(PatchError, match="does not match \\$setElementOrder/containers"):
        smp(original, patch)
    patch["spec"]["containers"].append({"name": "c"})
    with pytest.raises(PatchError):
        smp(original, patch)


def test_set_element_order_infers_an_unknown_keyed_list():
    # kwire's schema lacks the field but kubectl's order list names the merge key.
    original = {"spec": {"gates": [{"name": "a", "x": 1}, {"name": "b", "x": 2}]}}
    patch = {"spec": {"$setElementOrder/gates": [{"name": "a"}, {"name": "b"}],
                      "gates": [{"name": "b", "x": 3}]}}
    assert smp(original, patch, {}) == {"spec": {"gates": [{"name": "a", "x": 1},
                                                          {"name": "b", "x": 3}]}}


# --- primitive sets: finalizers -------------------------------------------------------------


def test_finalizers_union_keeps_live_items_and_adds_new_ones_first():
    original = {"metadata": {"finalizers": ["a/x", "b/y"]}}
    patch = {"metadata": {"finalizers": ["b/y", "c/z"]}}
    assert smp(original, patch)["metadata"]["finalizers"] == ["a/x", "b/y", "c/z"]
    patch = {"metadata": {"finalizers": ["c/z"]}}
    assert smp(original, patch)["metadata"]["finalizers"] == ["c/z", "a/x", "b/y"]


def test_finalizers_with_set_element_order():
    original = {"metadata": {"finalizers": ["a", "b"]}}
    patch = {"metadata": {"$setElementOrder/finalizers": ["a", "b", "c"], "finalizers": ["c"]}}
    assert smp(original, patch)["metadata"]["finalizers"] == ["a", "b", "c"]


def test_delete_from_primitive_list():
    original = {"metadata": {"finalizers": ["a", "b", "c", "b"]}}
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "nope"]}}
    assert smp(original, patch)["metadata"]["finalizers"] == ["a", "c"]


def test_delete_and_add_with_order_like_kubectl_sends():
    original = {"metadata": {"finalizers": ["a", "b"]}}
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"],
                          "$setElementOrder/finalizers": ["c", "b"], "finalizers": ["c"]}}
    assert smp(original, patch)["metadata"]["finalizers"] == ["c", "b"]


def test_delete_from_absent_primitive_list_leaves_it_absent():
    original = {"metadata": {"name": "x"}}
    assert smp(original, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}) == original


def test_removing_the_last_finalizer_leaves_an_empty_list():
    original = {"metadata": {"finalizers": ["a"]}}
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}
    assert smp(original, patch) == {"metadata": {"finalizers": []}}


def test_null_finalizers_removes_the_field():
    assert smp({"metadata": {"finalizers": ["a"]}}, {"metadata": {"finalizers": None}}) == {
        "metadata": {}}


# --- $retainKeys: volumes -------------------------------------------------------------------


def test_volume_source_switch_with_retain_keys():
    original = pod(containers=[{"name": "c"}], volumes=[
        {"name": "data", "emptyDir": {"medium": "Memory"}},
        {"name": "cfg", "configMap": {"name": "cm"}},
    ])
    patch = {"spec": {"volumes": [
        {"$retainKeys": ["hostPath", "name"], "name": "data", "hostPath": {"path": "/d"}},
    ]}}
    assert smp(original, patch)["spec"]["volumes"] == [
        {"name": "data", "hostPath": {"path": "/d"}},
        {"name": "cfg", "configMap": {"name": "cm"}},
    ]


def test_retain_keys_allows_nulls_for_unlisted_keys():
    original = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate",
                                   "rollingUpdate": None}}}
    assert smp(original, patch, DEPLOYMENT) == {"spec": {"strategy": {"type": "Recreate"}}}


def test_retain_keys_must_list_every_key_the_patch_sets():
    original = {"spec": {"strategy": {"type": "RollingUpdate"}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}}
    with pytest.raises(PatchError, match="rollingUpdate"):
        smp(original, patch, DEPLOYMENT)


# --- invalid patches ------------------------------------------------------------------------


@pytest.mark.parametrize("patch, message", [
    ({"spec": {"containers": [{"image": "x"}]}}, "does not contain the merge key 'name'"),
    ({"spec": {"containers": [{"$patch": "delete"}]}}, "does not contain the merge key 'name'"),
    ({"spec": {"containers": [{"$patch": "remove", "name": "a"}]}}, "invalid \\$patch directive 'remove'"),
    ({"spec": {"containers": ["nginx"]}}, "items must be objects"),
    ({"spec": {"nodeSelector": {"$patch": "drop"}}}, "invalid \\$patch directive 'drop' in a map"),
    ({"spec": {"$setElementOrder/containers": {"name": "a"}}}, "must be a list"),
    ({"spec": {"$setElementOrder/containers": ["a"]}}, "needs the merge key 'name'"),
    ({"spec": {"$deleteFromPrimitiveList/containers": ["a"]}}, "is a list of objects"),
    ({"metadata": {"finalizers": [{"a": 1}]}}, "list of primitives"),
    ({"spec": {"$bogus": 1}}, "unknown patch directive '\\$bogus'"),
    ({"spec": {"$setElementOrder/": []}}, "invalid patch directive"),
    ({"spec": {"volumes": [{"name": "v", "$retainKeys": "name"}]}}, "must be a list of field names"),
])
def test_invalid_patches_raise(patch, message):
    with pytest.raises(PatchError, match=message):
        smp(pod(), patch)


@pytest.mark.parametrize("patch", [[{"op": "add"}], "text", None, 3])
def test_strategic_merge_patch_must_be_an_object(patch):
    with pytest.raises(PatchError, match="must be a JSON object"):
        strategic_merge(pod(), patch, POD)


def test_result_shares_nothing_with_the_inputs():
    original = pod()
    patch = {"metadata": {"labels": {"new": "x"}}, "spec": {"tolerations": [{"key": "k"}]}}
    result = strategic_merge(original, patch, POD)
    result["metadata"]["labels"]["new"] = "changed"
    result["spec"]["tolerations"][0]["key"] = "changed"
    result["spec"]["containers"][0]["ports"].clear()
    assert patch == {"metadata": {"labels": {"new": "x"}}, "spec": {"tolerations": [{"key": "k"}]}}
    assert original == pod()


# --- create_two_way_merge -------------------------------------------------------------------


def test_two_way_merge_reproduces_kubectls_bodies():
    before = pod(containers=[{"image": "nginx:1.25", "name": "nginx"}])
    after = copy.deepcopy(before)
    after["metadata"]["labels"] = {"app": "web"}
    after["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "<new>"
    after["spec"]["containers"] = [{"image": "nginx:1.26", "name": "nginx"},
                                   {"env": [{"name": "FOO", "value": "bar"}], "name": "side"}]
    assert create_two_way_merge(before, after, POD) == {
        "metadata": KUBECTL_ADD_SIDE["metadata"], "spec": KUBECTL_ADD_SIDE["spec"]}

    before = copy.deepcopy(after)
    before["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    after["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "<newer>"
    after["spec"]["containers"] = [{"image": "nginx:1.27", "name": "nginx"}]
    assert create_two_way_merge(before, after, POD) == KUBECTL_REMOVE_SIDE


def test_two_way_merge_of_equal_objects_is_empty():
    assert create_two_way_merge(pod(), pod(), POD) == {}


def test_two_way_merge_sets_and_retain_keys():
    before = {"metadata": {"finalizers": ["a", "b"]}, "spec": {"volumes": [
        {"name": "v", "emptyDir": {}}, {"name": "w", "secret": {"secretName": "s"}}]}}
    after = {"metadata": {"finalizers": ["b", "c"]}, "spec": {"volumes": [
        {"name": "v", "hostPath": {"path": "/x"}}, {"name": "w", "secret": {"secretName": "s"}}]}}
    assert create_two_way_merge(before, after, POD) == {
        "metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"],
                     "$setElementOrder/finalizers": ["b", "c"]},
        "spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x"}, "emptyDir": None,
                              "$retainKeys": ["hostPath", "name"]}],
                 "$setElementOrder/volumes": [{"name": "v"}, {"name": "w"}]},
    }


@pytest.mark.parametrize("before, after", [
    (pod(), {"metadata": {"name": "web"}, "spec": {"containers": []}}),
    (pod(containers=[{"name": "a"}, {"name": "b"}, {"name": "c"}]),
     pod(containers=[{"name": "c"}, {"name": "a", "image": "x"}])),
    (pod(containers=[{"name": "a", "ports": [{"containerPort": 1}, {"containerPort": 2}]}]),
     pod(containers=[{"name": "a", "ports": [{"containerPort": 2, "name": "p"}]}])),
    ({"metadata": {"finalizers": ["x", "y", "z"]}}, {"metadata": {"finalizers": ["z", "x"]}}),
    ({"metadata": {}}, {"metadata": {"finalizers": ["x"]}}),
    (pod(tolerations=[{"key": "a"}]), pod(tolerations=[{"key": "b"}, {"key": "a"}])),
    ({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
     {"spec": {"strategy": {"type": "Recreate"}}}),
])
def test_two_way_merge_round_trips(before, after):
    schema = DEPLOYMENT if "strategy" in before.get("spec", {}) else POD
    patch = create_two_way_merge(before, after, schema)
    assert strategic_merge(before, patch, schema) == after


# --- RFC 7386 merge patch -------------------------------------------------------------------

# RFC 7386 appendix A, with objects at the top level as the API requires.
RFC7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize("original, patch, expected", RFC7386)
def test_merge_patch_rfc7386_examples(original, patch, expected):
    before = copy.deepcopy((original, patch))
    assert merge_patch(original, patch) == expected
    assert (original, patch) == before


def test_merge_patch_as_kubectl_label_sends_it():
    result = merge_patch(pod(), {"metadata": {"labels": {"env": "prod", "tier": None}}})
    assert result["metadata"]["labels"] == {"app": "web", "env": "prod"}
    assert result["spec"] == pod()["spec"]


def test_merge_patch_replaces_keyed_lists_whole():
    result = merge_patch(pod(), {"spec": {"containers": [{"name": "x", "image": "y"}]}})
    assert result["spec"]["containers"] == [{"name": "x", "image": "y"}]


@pytest.mark.parametrize("patch", [["a"], "x", None])
def test_merge_patch_must_be_an_object(patch):
    with pytest.raises(PatchError, match="merge patch must be a JSON object"):
        merge_patch({}, patch)


# --- RFC 6902 JSON patch --------------------------------------------------------------------


def test_json_patch_operations():
    original = pod()
    ops = [
        {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:2"},
        {"op": "add", "path": "/metadata/labels/env", "value": "prod"},
        {"op": "remove", "path": "/metadata/labels/tier"},
        {"op": "test", "path": "/metadata/name", "value": "web"},
        {"op": "add", "path": "/spec/containers/-", "value": {"name": "b", "image": "b"}},
        {"op": "copy", "from": "/metadata/labels/app", "path": "/metadata/labels/copied"},
        {"op": "move", "from": "/metadata/labels/copied", "path": "/metadata/labels/moved"},
    ]
    result = json_patch(original, ops)
    assert original == pod()
    assert result["metadata"]["labels"] == {"app": "web", "env": "prod", "moved": "web"}
    assert result["spec"]["containers"] == [
        {"name": "nginx", "image": "nginx:2", "ports": [{"containerPort": 80}]},
        {"name": "b", "image": "b"},
    ]


@pytest.mark.parametrize("ops, message", [
    ([{"op": "test", "path": "/metadata/name", "value": "other"}], "not equal"),
    ([{"op": "remove", "path": "/metadata/nope"}], "non-existent"),
    ([{"op": "add", "path": "/missing/deep", "value": 1}], "'missing' not found"),
    ([{"op": "add", "value": 1}], "'path'"),
    ([{"op": "frobnicate", "path": "/a"}], "Unknown operation"),
    ([{"op": "replace", "path": "metadata"}], "start with /"),
    (["not an op"], "sequence of operations"),
])
def test_json_patch_errors_become_patch_errors(ops, message):
    with pytest.raises(PatchError, match=message) as info:
        json_patch(pod(), ops)
    assert str(info.value).startswith("the JSON patch could not be applied: ")


def test_json_patch_must_be_a_list_and_leave_an_object():
    with pytest.raises(PatchError, match="JSON array of operations"):
        json_patch(pod(), {"op": "add", "path": "/a", "value": 1})
    with pytest.raises(PatchError, match="must leave an object"):
        json_patch(pod(), [{"op": "replace", "path": "", "value": [1]}])


# --- server-side apply ----------------------------------------------------------------------


def test_apply_merges_and_keeps_what_the_configuration_omits():
    live = pod(containers=[
        {"name": "nginx", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent",
         "ports": [{"containerPort": 80, "protocol": "TCP"}]},
        {"name": "side", "image": "busybox"},
    ], restartPolicy="Always")
    live["metadata"]["finalizers"] = ["a"]
    applied = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "web", "labels": {"app": "web2"}, "finalizers": ["b"]},
               "spec": {"containers": [
                   {"name": "nginx", "image": "nginx:1.26",
                    "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 81}]},
                   {"name": "new", "image": "new", "args": None},
               ], "nodeSelector": None}}
    before = copy.deepcopy((live, applied))
    result = apply_patch(live, applied, POD)
    assert (live, applied) == before
    assert result["metadata"]["labels"] == {"app": "web2", "tier": "fe"}
    assert result["metadata"]["finalizers"] == ["a", "b"]
    assert result["metadata"]["annotations"] == live["metadata"]["annotations"]
    assert result["spec"] == {
        "restartPolicy": "Always",
        "containers": [
            {"name": "nginx", "image": "nginx:1.26", "imagePullPolicy": "IfNotPresent",
             "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"},
                       {"containerPort": 81}]},
            {"name": "side", "image": "busybox"},
            {"name": "new", "image": "new"},
        ],
    }


def test_apply_onto_nothing_and_replaced_lists():
    applied = {"metadata": {"name": "x"}, "spec": {"tolerations": [{"key": "a", "value": None}]}}
    assert apply_patch({}, applied, POD) == {"metadata": {"name": "x"},
                                             "spec": {"tolerations": [{"key": "a"}]}}


def test_apply_rejects_keyed_items_without_their_key_and_non_objects():
    with pytest.raises(PatchError, match="does not contain the key 'name'"):
        apply_patch(pod(), {"spec": {"containers": [{"image": "x"}]}}, POD)
    with pytest.raises(PatchError, match="must be an object"):
        apply_patch(pod(), ["x"], POD)
