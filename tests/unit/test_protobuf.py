"""Kubernetes protobuf bodies: the request bodies kubectl v1.32.4 really sent (captured
from `kubectl create ...` against a recording server) and hand-built ones for the cases
kubectl's create commands do not reach."""
from pathlib import Path

import pytest

from kwire.api import errors
from kwire.api.handlers import parse_body
from kwire.api.protobuf import MAGIC, ProtobufError, decode

DATA = Path(__file__).parent / "data" / "protobuf"

CAPTURED = {
    # kubectl create namespace foo
    "namespace": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}},
    # kubectl create configmap settings -n foo --from-literal=mode=fast
    #   --from-literal=greeting="hello world" --from-file=app.yaml --from-file=blob (not UTF-8)
    "configmap": {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "foo"},
        "data": {"app.yaml": "key: value\n", "greeting": "hello world", "mode": "fast"},
        "binaryData": {"blob": "YmluAP8="}},
    # kubectl create secret generic creds -n foo --from-literal=password=s3cr3t
    #   --from-file=blob --type=Opaque
    "secret": {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "foo"},
        "data": {"blob": "YmluAP8=", "password": "czNjcjN0"}, "type": "Opaque"},
    # kubectl create deployment web -n foo --image=nginx:1.27 --image=busybox:1.36
    #   --replicas=3 --port=80
    "deployment": {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "foo", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]},
                {"name": "busybox", "image": "busybox:1.36"}]}}}},
    # kubectl create deployment idle --image=busybox --replicas=0 -- sleep 3600
    # replicas is a pointer: its zero is on the wire and must not become "unset" (1).
    "deployment_zero": {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "idle", "labels": {"app": "idle"}},
        "spec": {
            "replicas": 0, "selector": {"matchLabels": {"app": "idle"}},
            "template": {"metadata": {"labels": {"app": "idle"}}, "spec": {"containers": [
                {"name": "busybox", "image": "busybox", "command": ["sleep", "3600"]}]}}}},
    # kubectl create service clusterip web -n foo --tcp=80:8080 --tcp=443:https
    "service": {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "foo", "labels": {"app": "web"}},
        "spec": {"ports": [
            {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080},
            {"name": "443-https", "protocol": "TCP", "port": 443, "targetPort": "https"}],
            "selector": {"app": "web"}, "type": "ClusterIP"}},
    # kubectl create ingress web -n foo --class=nginx
    #   --rule="foo.com/bar*=web:8080,tls=foo-cert" --rule="bar.com/=web:http"
    #   --default-backend=web:80 --annotation=a.example.com/x=1
    "ingress": {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "foo",
                     "annotations": {"a.example.com/x": "1"}},
        "spec": {
            "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
            "tls": [{"hosts": ["foo.com"], "secretName": "foo-cert"}],
            "rules": [
                {"host": "foo.com", "http": {"paths": [{
                    "path": "/bar", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 8080}}}}]}},
                {"host": "bar.com", "http": {"paths": [{
                    "path": "/", "pathType": "Exact",
                    "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}}],
            "ingressClassName": "nginx"}},
    # kubectl create serviceaccount builder -n foo
    "serviceaccount": {"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": {"name": "builder", "namespace": "foo"}},
    # kubectl drain n1 --force --disable-eviction --grace-period=0: the DELETE body
    "deleteoptions": {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0},
}


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_captured_kubectl_bodies(name):
    assert decode((DATA / f"{name}.pb").read_bytes()) == CAPTURED[name]


# --- a tiny encoder for the hand-built cases ------------------------------------------

def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def f(number: int, value: int | bytes | str) -> bytes:
    """One field: an int is a varint, bytes or str are length-delimited."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(raw)) + raw


def body(api_version: str, kind: str, *fields: bytes) -> bytes:
    type_meta = f(1, api_version) + f(2, kind)
    return MAGIC + f(1, type_meta) + f(2, b"".join(fields)) + f(3, "") + f(4, "")


def test_namespace_zero_values_are_dropped_as_omitempty_drops_them():
    # ObjectMeta as gogo writes it: every non-pointer field, zero or not.
    meta = (f(1, "foo") + f(2, "") + f(3, "") + f(4, "") + f(5, "") + f(6, "") + f(7, 0)
            + f(8, b""))
    assert decode(body("v1", "Namespace", f(1, meta), f(2, b""), f(3, b""))) == {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}}


def test_pod_inline_structs_maps_times_and_pointers():
    meta = (f(1, "p") + f(8, f(1, 1700000000) + f(2, 5))
            + f(11, f(1, "app") + f(2, "web"))
            + f(17, f(1, "kubectl") + f(4, f(1, 1700000000))
                + f(7, f(1, b'{"f:metadata":{}}'))))
    volume = f(1, "cfg") + f(2, f(19, f(1, f(1, "settings")) + f(3, 420)))
    probe = f(1, f(2, f(1, "/healthz") + f(2, f(1, 1) + f(3, "http"))))
    resources = f(1, f(1, "cpu") + f(2, f(1, "500m")))
    container = (f(1, "") + f(2, "nginx") + f(8, resources) + f(10, probe)
                 + f(999, "a field from a newer release"))
    security = f(4, varint(1000) + varint(2000)) + f(4, 3000)  # packed, then not
    spec = (f(1, volume) + f(2, container) + f(4, 0) + f(11, 0) + f(14, security)
            + f(25, -5) + f(21, 0))
    assert decode(body("v1", "Pod", f(1, meta), f(2, spec))) == {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "p", "creationTimestamp": "2023-11-14T22:13:20Z",
            "labels": {"app": "web"},
            "managedFields": [{"manager": "kubectl", "time": "2023-11-14T22:13:20Z",
                               "fieldsV1": {"f:metadata": {}}}]},
        "spec": {
            "volumes": [{"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420}}],
            "containers": [{
                "name": "", "image": "nginx", "resources": {"limits": {"cpu": "500m"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}}}],
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"supplementalGroups": [1000, 2000, 3000]},
            "priority": -5, "automountServiceAccountToken": False}}


def test_lease_micro_times():
    spec = (f(1, "node-a") + f(2, 40) + f(3, f(1, 1700000000) + f(2, 123456789))
            + f(4, b""))
    assert decode(body("coordination.k8s.io/v1", "Lease", f(2, spec))) == {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 40,
                 "acquireTime": "2023-11-14T22:13:20.123456Z"}}


def test_delete_options_under_any_group_version():
    obj = decode(body("apps/v1", "DeleteOptions", f(4, "Foreground")))
    assert obj == {"apiVersion": "apps/v1", "kind": "DeleteOptions",
                   "propagationPolicy": "Foreground"}


@pytest.mark.parametrize("raw, message", [
    (b'{"kind":"Namespace"}', "prefix"),
    (body("v1", "Widget"), "cannot decode Widget v1"),
    (body("v1", "Namespace")[:-4] + f(3, "gzip") + f(4, ""), "contentEncoding 'gzip'"),
    (body("v1", "Namespace", f(1, b"\x0a\x05foo")), "runs past the end"),
    (body("v1", "Namespace", f(1, b"\x38\xff")), "varint"),
    (body("v1", "Namespace", f(1, f(1, 7))), "wire type 0"),
    (body("v1", "Namespace", b"\x0b"), "wire type 3"),
])
def test_errors(raw, message):
    with pytest.raises(ProtobufError, match=message):
        decode(raw)


def test_parse_body_reads_protobuf_and_answers_400_for_bad_bodies():
    ct = "application/vnd.kubernetes.protobuf"
    assert parse_body((DATA / "namespace.pb").read_bytes(), ct) == CAPTURED["namespace"]
    with pytest.raises(errors.APIError) as e:
        parse_body(body("v1", "Widget"), ct)
    assert (e.value.code, e.value.reason) == (400, "BadRequest")
    assert "error decoding protobuf" in e.value.message
