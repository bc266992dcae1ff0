"""Strict decoding: unknown fields, nulls and wrong JSON types, as Go's decoder sees them."""
import pytest

from kwire.api import schema


def decode(obj, type_name="V1Pod"):
    out, res = schema.decode(obj, type_name)
    return out, res.unknown, res.type_error


@pytest.mark.parametrize("kind, api_version, root", [
    ("Pod", "v1", "V1Pod"), ("Deployment", "apps/v1", "V1Deployment"),
    ("EndpointSlice", "discovery.k8s.io/v1", "V1EndpointSlice"),
    ("Event", "v1", "CoreV1Event"), ("Widget", "example.com/v1", None)])
def test_root_type(kind, api_version, root):
    assert schema.root_type(kind, api_version) == root


def test_known_fields_pass_unchanged():
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "labels": {"app": "web"}, "finalizers": ["a/b"]},
           "spec": {"containers": [{"name": "c", "image": "nginx",
                                    "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
                    "hostNetwork": True, "nodeSelector": {"disk": "ssd"}}}
    assert decode(pod) == (pod, [], None)


def test_unknown_fields_are_dropped_and_listed_with_their_paths():
    out, unknown, error = decode({
        "bogus": 1,
        "metadata": {"name": "p", "nam": "typo"},
        "spec": {"containers": [{"name": "a"}, {"name": "b", "foo": {"x": 1}, "image": "i"}],
                 "extra": True}})
    assert unknown == ["bogus", "metadata.nam", "spec.containers[1].foo", "spec.extra"]
    assert error is None
    assert out == {"metadata": {"name": "p"},
                   "spec": {"containers": [{"name": "a"}, {"name": "b", "image": "i"}]}}


def test_unknown_fields_in_nested_structs():
    _, unknown, _ = decode({"spec": {"containers": [{"name": "a", "foo": 1}],
                                     "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Gi",
                                                                            "medium2": ""}}]}})
    assert unknown == ["spec.containers[0].foo", "spec.volumes[0].emptyDir.medium2"]


def test_null_fields_are_dropped():
    out, unknown, error = decode({"metadata": {"name": "p", "labels": None},
                                  "spec": {"nodeName": None, "containers": [
                                      {"name": "c", "command": None, "resources": None}]},
                                  "status": None})
    assert (unknown, error) == ([], None)
    assert out == {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}


def test_null_list_elements_and_map_values_become_zero_values():
    # Go decodes null into the element's zero value; they must not reach validation
    # as None (a null finalizer crashed it).
    out, _, error = decode({"metadata": {"labels": {"a": None}, "finalizers": ["x", None]},
                            "spec": {"containers": [None, {"name": "c", "resources": {
                                "limits": {"cpu": None}}}]}})
    assert error is None
    assert out == {"metadata": {"labels": {"a": ""}, "finalizers": ["x", ""]},
                   "spec": {"containers": [{}, {"name": "c",
                                                "resources": {"limits": {"cpu": "0"}}}]}}


@pytest.mark.parametrize("obj, message", [
    ({"spec": {"containers": [{"name": 1}]}},
     "json: cannot unmarshal number into Go struct field Container.spec.containers.name of "
     "type string"),
    ({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": "80"}]}]}},
     "json: cannot unmarshal string into Go struct field ContainerPort.spec.containers.ports."
     "containerPort of type int64"),
    ({"spec": {"containers": "c"}},
     "json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type "
     "[]v1.Container"),
    ({"spec": {"containers": ["c"]}},
     "json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type "
     "v1.Container"),
    ({"spec": {"hostNetwork": "true"}},
     "json: cannot unmarshal string into Go struct field PodSpec.spec.hostNetwork of type bool"),
    ({"spec": {"activeDeadlineSeconds": True}},
     "json: cannot unmarshal bool into Go struct field PodSpec.spec.activeDeadlineSeconds of "
     "type int64"),
    ({"spec": {"activeDeadlineSeconds": 1.5}},
     "json: cannot unmarshal number 1.5 into Go struct field PodSpec.spec."
     "activeDeadlineSeconds of type int64"),
    ({"metadata": {"labels": {"a": 1}}},
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type "
     "string"),
    ({"metadata": {"labels": ["a"]}},
     "json: cannot unmarshal array into Go struct field ObjectMeta.metadata.labels of type "
     "map[string]string"),
    ({"metadata": {"finalizers": "a"}},
     "json: cannot unmarshal string into Go struct field ObjectMeta.metadata.finalizers of "
     "type []string"),
    ({"metadata": "m"},
     "json: cannot unmarshal string into Go struct field Pod.metadata of type v1.ObjectMeta"),
    ({"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": False}}}]}},
     "json: cannot unmarshal bool into Go struct field ResourceRequirements.spec.containers."
     "resources.limits of type resource.Quantity"),
])
def test_wrong_json_types_give_the_go_message(obj, message):
    assert decode(obj)[2] == message


def test_type_error_names_the_struct_without_its_version_prefix():
    assert decode({"involvedObject": {"name": 3}}, "CoreV1Event")[2] == (
        "json: cannot unmarshal number into Go struct field ObjectReference.involvedObject.name "
        "of type string")
    assert decode({"spec": {"replicas": "3"}}, "V1Deployment")[2] == (
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of "
        "type int64")


def test_only_the_first_type_error_is_reported():
    _, _, error = decode({"spec": {"hostNetwork": "yes", "hostPID": "no"}})
    assert error == ("json: cannot unmarshal string into Go struct field PodSpec.spec."
                     "hostNetwork of type bool")


@pytest.mark.parametrize("value", ["500m", 2, 0.5, "1Gi"])
def test_quantities_accept_strings_and_numbers(value):
    obj = {"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": value}}}],
                    "overhead": {"memory": value}}}
    assert decode(obj) == (obj, [], None)


@pytest.mark.parametrize("target", [8080, "http"])
def test_int_or_string_accepts_both(target):
    probe = {"httpGet": {"port": target, "path": "/"}}
    obj = {"spec": {"containers": [{"name": "c", "livenessProbe": probe}]}}
    assert decode(obj) == (obj, [], None)
    svc = {"spec": {"ports": [{"port": 80, "targetPort": target}]}}
    assert decode(svc, "V1Service") == (svc, [], None)


def test_integral_floats_become_ints():
    out, _, error = decode({"spec": {"replicas": 3.0, "minReadySeconds": 1e1}}, "V1Deployment")
    assert error is None
    assert out == {"spec": {"replicas": 3, "minReadySeconds": 10}}
    assert type(out["spec"]["replicas"]) is int


def test_secret_data_values_pass_through():
    secret = {"data": {"k": "dmFs"}, "metadata": {"annotations": {"a": "b"}}}
    assert decode(secret, "V1Secret") == (secret, [], None)
