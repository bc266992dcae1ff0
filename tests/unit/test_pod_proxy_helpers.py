"""The API server's side of pods/log, exec and attach (kwire.api.proxy), its pure
parts: which container, which kubelet, which query, and how kubelet errors read."""
import pytest
from multidict import MultiDict

from kwire.api.errors import APIError
from kwire.api.proxy import (
    _kubelet_error,
    container_for,
    kubelet_endpoint,
    log_params,
    stream_params,
)


def pod(containers, init=(), annotations=None):
    return {"metadata": {"name": "web", "annotations": annotations or {}},
            "spec": {"containers": [{"name": c} for c in containers],
                     "initContainers": [{"name": c} for c in init]}}


def refused(call, *args):
    with pytest.raises(APIError) as e:
        call(*args)
    return e.value.code, e.value.reason, e.value.message


def test_container_for():
    assert container_for(pod(["app"]), None) == "app"
    assert container_for(pod(["a", "b"], init=["setup"]), "setup") == "setup"
    assert container_for(pod(["a", "b"], annotations={
        "kubectl.kubernetes.io/default-container": "b"}), None) == "b"
    assert refused(container_for, pod(["a", "b"]), "c") == (
        400, "BadRequest", "container c is not valid for pod web")
    assert refused(container_for, pod(["a", "b"], init=["i1", "i2"]), None) == (
        400, "BadRequest", "a container name must be specified for pod web, choose one of: "
                           "[a b] or one of the init containers: [i1 i2]")
    # an annotation naming no container is ignored, as kubectl ignores it
    assert refused(container_for, pod(["a", "b"], annotations={
        "kubectl.kubernetes.io/default-container": "gone"}), None)[0] == 400


def test_kubelet_endpoint():
    node = {"status": {"addresses": [{"type": "Hostname", "address": "node-a"},
                                     {"type": "ExternalIP", "address": "192.0.2.1"},
                                     {"type": "InternalIP", "address": "172.30.0.2"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 10251}}}}
    assert kubelet_endpoint(node) == ("172.30.0.2", 10251)
    assert kubelet_endpoint({"status": {"addresses": [
        {"type": "Hostname", "address": "node-a"}]}}) == ("node-a", 10250)
    code, reason, message = refused(kubelet_endpoint, {"status": {}})
    assert (code, reason) == (500, "InternalError") and "no preferred addresses found" in message


def test_log_params():
    assert log_params(MultiDict(follow="true", tailLines="10", timestamps="1", previous="false",
                                limitBytes="5", container="x"), "web") == {
        "follow": "true", "timestamps": "true", "tailLines": "10", "limitBytes": "5"}
    assert log_params(MultiDict(sinceTime="2026-01-02T03:04:05Z"), "web") == {
        "sinceTime": "2026-01-02T03:04:05Z"}
    code, reason, message = refused(log_params, MultiDict(sinceSeconds="0"), "web")
    assert (code, reason, message) == (422, "Invalid", 'PodLogOptions "web" is invalid: '
                                       'sinceSeconds: Invalid value: 0: must be greater than 0')
    assert refused(log_params, MultiDict(tailLines="ten"), "web")[:2] == (400, "BadRequest")
    assert refused(log_params, MultiDict(follow="yes"), "web")[:2] == (400, "BadRequest")
    assert refused(log_params, MultiDict(sinceTime="noon"), "web")[:2] == (400, "BadRequest")


def test_stream_params_as_kube_apiserver_sends_them():
    query = MultiDict([("command", "sh"), ("command", "-c"), ("command", "echo hi"),
                       ("stdout", "true"), ("stderr", "true"), ("stdin", "false"),
                       ("tty", "false"), ("container", "app")])
    assert stream_params(query, with_command=True) == [
        ("command", "sh"), ("command", "-c"), ("command", "echo hi"), ("stdout", "1"),
        ("stderr", "1")]
    assert stream_params(query, with_command=False) == [("stdout", "1"), ("stderr", "1")]


def test_kubelet_errors():
    status = b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",' \
             b'"message":"container \\"c\\" in pod \\"p\\" is waiting to start: ' \
             b'ContainerCreating","reason":"BadRequest","code":400}'
    e = _kubelet_error(400, status)
    assert (e.code, e.reason, e.message) == (
        400, "BadRequest", 'container "c" in pod "p" is waiting to start: ContainerCreating')
    e = _kubelet_error(500, b"boom\n")
    assert (e.code, e.reason, e.message) == (500, "InternalError", "Internal error occurred: boom")
    # the agent refusing the API server's credentials is not the user's failure to log in
    assert _kubelet_error(401, b"{}").code == 500
