"""Bad requests get a metav1.Status with the right code, never a traceback, and
leave the server serving."""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest
import yaml


def call(cluster, method: str, path: str, body: bytes | None = None,
         ctype: str = "application/json") -> tuple[int, dict]:
    cfg = yaml.safe_load(open(cluster.kubeconfig))
    server = cfg["clusters"][0]["cluster"]["server"]
    token = cfg["users"][0]["user"]["token"]
    ctx = ssl.create_default_context(cafile=str(cluster.state_dir / "ca.crt"))
    req = urllib.request.Request(server + path, data=body, method=method,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("method,path,body,ctype,code,reason", [
    ("GET", "/api/v1/nosuchthings", None, "application/json", 404, "NotFound"),
    ("GET", "/nonsense/path", None, "application/json", 404, "NotFound"),
    ("PUT", "/api/v1/namespaces/default/configmaps", b"{}", "application/json", 405,
     "MethodNotAllowed"),
    ("POST", "/api/v1/namespaces/default/configmaps", b"{not json", "application/json", 400,
     "BadRequest"),
    ("POST", "/api/v1/namespaces/default/configmaps", b"a: [b", "application/yaml", 400,
     "BadRequest"),
    ("PATCH", "/api/v1/namespaces/default/services/kubernetes", b"{}", "text/plain", 415,
     "UnsupportedMediaType"),
    ("GET", "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20(", None,
     "application/json", 400, "BadRequest"),
])
def test_error_statuses(cluster, method, path, body, ctype, code, reason):
    status, out = call(cluster, method, path, body, ctype)
    assert status == code
    assert out["kind"] == "Status" and out["code"] == code and out["reason"] == reason


def test_hostile_bodies_are_refused_and_the_server_lives(cluster):
    path = "/api/v1/namespaces/default/configmaps"
    big = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                      "data": {"x": "a" * (4 * 1024 * 1024)}}).encode()
    status, out = call(cluster, "POST", path, big)
    assert status == 413 and out["reason"] == "RequestEntityTooLarge"
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    status, out = call(cluster, "POST", path, deep)
    assert status == 400 and out["kind"] == "Status"
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi"))
    status, out = call(cluster, "POST", path, bomb.encode(), "application/yaml")
    assert status == 400 and out["kind"] == "Status"
    status, out = call(cluster, "GET", "/api/v1/namespaces/default/services/kubernetes")
    assert status == 200 and out["metadata"]["name"] == "kubernetes"


def test_collection_deletes_only_where_upstream_serves_them(cluster):
    assert call(cluster, "DELETE", "/api/v1/namespaces")[0] == 405
    assert call(cluster, "DELETE", "/api/v1/configmaps")[0] == 405
    status, out = call(cluster, "GET", "/api/v1/namespaces/default")
    assert status == 200 and out["status"]["phase"] == "Active"


def test_out_of_range_integers_are_bad_requests(cluster):
    status, out = call(cluster, "GET", "/api/v1/namespaces/default/pods?limit=" + "9" * 30)
    assert status == 400 and out["reason"] == "BadRequest"


def test_unknown_body_media_type_is_415(cluster):
    status, out = call(cluster, "POST", "/api/v1/namespaces/default/configmaps",
                       b'{"metadata":{"name":"x"}}', "text/plain")
    assert status == 415 and out["reason"] == "UnsupportedMediaType"
