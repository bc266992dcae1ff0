"""The kubectl-shaped verbs' pure parts: tabwriter alignment, Table printing,
yaml/json output, kubectl's error wording, resource type resolution, argument
forms, manifests and describe layouts. Expected texts are kubectl's own output
for the same objects."""
import io
import json
import time
from datetime import datetime, timezone

import pytest
import yaml

from kwire.cli.describers import describe, field_value, format_endpoints
from kwire.cli.manifests import Manifest, parse_manifests, place, read_manifests
from kwire.cli.printing import (TabWriter, as_list, format_cell, kind_label, list_error,
                                no_resources_message, server_error, table_lines,
                                to_json, to_yaml)
from kwire.cli.resources import Catalog, ResourceError, parse_targets

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def utc(monkeypatch):
    """describe prints times in the local zone, as kubectl does: pin it."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def visible(text: str) -> str:
    """Trailing spaces shown as "·" (kubectl's tabwriter pads cells even at the
    end of a line), so expected texts survive editors that strip them."""
    return "".join(line.rstrip(" ") + "·" * (len(line) - len(line.rstrip(" "))) + "\n"
                   for line in text.split("\n")[:-1])


# --- TabWriter ----------------------------------------------------------------------------

def test_tabwriter_pads_columns_but_not_the_last_cell():
    w = TabWriter(6, 3)
    w.write("NAME\tREADY\tAGE\nweb\t1/1\t5s\nlonger-name\t0/2\t3m\n")
    assert w.flush() == ("NAME          READY   AGE\n"
                         "web           1/1     5s\n"
                         "longer-name   0/2     3m\n")


def test_tabwriter_minwidth_and_trailing_empty_cell():
    w = TabWriter(6, 3)
    w.write("A\tB\n")
    assert w.flush() == "A     B\n"
    w = TabWriter(0, 2)
    w.write("IP:\t\nName:\tweb\n")
    assert visible(w.flush()) == "IP:····\nName:  web\n"


def test_tabwriter_blocks_end_at_lines_without_the_column():
    """kubectl describe's alignment: a line with no tab ends the block."""
    w = TabWriter(0, 2)
    w.write("Name:\tweb\nService Account:\tdefault\nContainers:\n  c:\n"
            "    Image:\tnginx\n    Environment:\t<none>\nVolumes:\t<none>\n")
    assert w.flush() == ("Name:             web\n"
                         "Service Account:  default\n"
                         "Containers:\n"
                         "  c:\n"
                         "    Image:        nginx\n"
                         "    Environment:  <none>\n"
                         "Volumes:          <none>\n")


def test_tabwriter_remembers_widths_across_flushes():
    w = TabWriter(6, 3, remember_widths=True)
    w.write("NAME\tAGE\nlonger-name\t1s\n")
    w.flush()
    w.write("a\t2s\n")
    assert w.flush() == "a             2s\n"
    w.reset_widths()
    w.write("a\t2s\n")
    assert w.flush() == "a     2s\n"


# --- Tables -------------------------------------------------------------------------------

POD_TABLE = {
    "kind": "Table", "apiVersion": "meta.k8s.io/v1",
    "columnDefinitions": [
        {"name": "Name", "type": "string", "format": "name", "priority": 0},
        {"name": "Ready", "type": "string", "format": "", "priority": 0},
        {"name": "Restarts", "type": "integer", "format": "", "priority": 0},
        {"name": "IP", "type": "string", "format": "", "priority": 1},
    ],
    "rows": [
        {"cells": ["web", "1/1", 0, "10.244.1.5"],
         "object": {"metadata": {"name": "web", "namespace": "default"}}},
        {"cells": ["db", "0/1", 3, None],
         "object": {"metadata": {"name": "db", "namespace": "prod"}}},
    ],
}


def aligned(lines: str) -> str:
    w = TabWriter(6, 3)
    w.write(lines)
    return w.flush()


def test_table_default_columns():
    assert aligned(table_lines(POD_TABLE)) == ("NAME   READY   RESTARTS\n"
                                               "web    1/1     0\n"
                                               "db     0/1     3\n")


def test_table_wide_namespace_and_kind():
    text = aligned(table_lines(POD_TABLE, wide=True, with_namespace=True, kind_prefix="pod"))
    assert visible(text) == ("NAMESPACE   NAME      READY   RESTARTS   IP\n"
                             "default     pod/web   1/1     0          10.244.1.5\n"
                             "prod        pod/db    0/1     3··········\n")


def test_table_without_rows_has_no_header_and_rows_can_omit_it():
    assert table_lines({**POD_TABLE, "rows": []}) == ""
    assert table_lines(POD_TABLE, header=False).splitlines()[0] == "web\t1/1\t0"


@pytest.mark.parametrize("value, text", [
    (None, ""), (True, "true"), (False, "false"), (3, "3"), ("a\nb", "a..."),
    ("plain", "plain"),
])
def test_format_cell(value, text):
    assert format_cell(value) == text


def test_kind_label_and_no_resources():
    assert kind_label("Pod", "") == "pod"
    assert kind_label("Deployment", "apps") == "deployment.apps"
    assert no_resources_message("dev") == "No resources found in dev namespace."
    assert no_resources_message(None) == "No resources found"


# --- yaml and json ------------------------------------------------------------------------

def test_yaml_quotes_like_kubectl():
    obj = {"metadata": {"resourceVersion": "17", "creationTimestamp": "2026-11-26T10:53:12Z",
                        "name": "web"},
           "data": {"on": "true", "script": "line1\nline2\n", "n": 3, "empty": {}},
           "items": [{"b": 1, "a": 2}]}
    assert to_yaml(obj) == (
        "data:\n"
        "  empty: {}\n"
        "  n: 3\n"
        "  \"on\": \"true\"\n"
        "  script: |\n"
        "    line1\n"
        "    line2\n"
        "items:\n"
        "- a: 2\n"
        "  b: 1\n"
        "metadata:\n"
        "  creationTimestamp: \"2026-11-26T10:53:12Z\"\n"
        "  name: web\n"
        "  resourceVersion: \"17\"\n")
    assert yaml.safe_load(to_yaml(obj)) == obj


def test_json_is_go_style():
    text = to_json({"b": "<none> & more", "a": [1], "c": {}})
    assert text == ('{\n    "a": [\n        1\n    ],\n'
                    '    "b": "\\u003cnone\\u003e \\u0026 more",\n    "c": {}\n}\n')
    assert json.loads(text)["b"] == "<none> & more"


def test_list_wrapper():
    assert as_list([{"kind": "Pod"}]) == {"apiVersion": "v1", "items": [{"kind": "Pod"}],
                                          "kind": "List", "metadata": {"resourceVersion": ""}}


# --- errors -------------------------------------------------------------------------------

def status(code, reason, message, details=None):
    s = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
         "reason": reason, "message": message}
    if details is not None:
        s["details"] = details
    return s


def test_server_error_shapes():
    nf = status(404, "NotFound", 'pods "x" not found', {"name": "x", "kind": "pods"})
    assert server_error(nf) == 'Error from server (NotFound): pods "x" not found'
    exists = status(409, "AlreadyExists", 'pods "web" already exists')
    assert server_error(exists, "creating", "web.yaml") == (
        'Error from server (AlreadyExists): error when creating "web.yaml": '
        'pods "web" already exists')
    assert server_error(status(500, "", "boom")) == "Error from server: boom"
    assert server_error(status(401, "Unauthorized", "Unauthorized")) == \
        "error: You must be logged in to the server (Unauthorized)"


def test_invalid_lists_each_distinct_cause():
    causes = [{"field": "spec.containers[0].image", "message": "Required value"},
              {"field": "metadata.name", "message": "Invalid value: \"A\""},
              {"field": "spec.containers[0].image", "message": "Required value"}]
    e = status(422, "Invalid", "ignored", {"kind": "Pod", "name": "bad", "causes": causes})
    assert server_error(e, "creating", "x.yaml") == (
        'The Pod "bad" is invalid: \n'
        "* spec.containers[0].image: Required value\n"
        '* metadata.name: Invalid value: "A"')
    one = status(422, "Invalid", "x", {"kind": "Pod", "name": "bad", "causes": causes[:1]})
    assert server_error(one) == 'The Pod "bad" is invalid: spec.containers[0].image: ' \
                                "Required value"


def test_list_error_names_the_selectors():
    bad = status(400, "BadRequest", "field label not supported: bogus")
    assert list_error(bad, "/v1, Resource=pods", None, "bogus=x") == (
        'Error from server (BadRequest): Unable to find "/v1, Resource=pods" that match '
        'label selector "", field selector "bogus=x": field label not supported: bogus')
    assert list_error(bad, "/v1, Resource=pods", None, None).startswith(
        'Error from server (BadRequest): Unable to list "/v1, Resource=pods": ')
    forbidden = status(403, "Forbidden", "no")
    assert list_error(forbidden, "/v1, Resource=pods", "a=b", None) == \
        "Error from server (Forbidden): no"


# --- resource resolution ------------------------------------------------------------------

def resource_list(gv, *resources):
    return {"kind": "APIResourceList", "groupVersion": gv, "resources": [
        {"name": plural, "singularName": singular, "kind": kind, "namespaced": namespaced,
         "shortNames": list(short), "categories": list(cats), "verbs": ["get", "list"]}
        for plural, singular, kind, namespaced, short, cats in resources]}


CATALOG = Catalog.from_discovery([
    (resource_list("v1",
                   ("namespaces", "namespace", "Namespace", False, ["ns"], []),
                   ("pods", "pod", "Pod", True, ["po"], ["all"]),
                   ("pods/log", "", "Pod", True, [], []),
                   ("services", "service", "Service", True, ["svc"], ["all"]),
                   ("events", "event", "Event", True, ["ev"], [])), True),
    (resource_list("apps/v1",
                   ("deployments", "deployment", "Deployment", True, ["deploy"], ["all"]),
                   ("replicasets", "replicaset", "ReplicaSet", True, ["rs"], ["all"])), True),
    (resource_list("events.k8s.io/v1", ("events", "event", "Event", True, ["ev"], [])), True),
    (resource_list("batch/v2", ("jobs", "job", "Job", True, [], [])), True),
    (resource_list("batch/v1", ("jobs", "job", "Job", True, [], [])), False),
])


@pytest.mark.parametrize("token, plural, group", [
    ("pods", "pods", ""), ("pod", "pods", ""), ("po", "pods", ""), ("Pod", "pods", ""),
    ("PODS", "pods", ""), ("svc", "services", ""), ("deploy", "deployments", "apps"),
    ("Deployment", "deployments", "apps"), ("deployments.apps", "deployments", "apps"),
    ("deploy.apps", "deployments", "apps"), ("deployments.v1.apps", "deployments", "apps"),
    ("ev", "events", ""), ("events.events.k8s.io", "events", "events.k8s.io"),
    ("ns", "namespaces", ""),
])
def test_resolve(token, plural, group):
    [r] = CATALOG.resolve(token)
    assert (r.plural, r.group) == (plural, group)


def test_resolve_category_prefers_versions_and_refuses_unknown():
    assert [r.label for r in CATALOG.resolve("all")] == \
        ["pod", "service", "deployment.apps", "replicaset.apps"]
    assert CATALOG.resolve("jobs")[0].version == "v2"
    assert CATALOG.resolve("jobs.v1.batch")[0].version == "v1"
    with pytest.raises(ResourceError, match='the server doesn\'t have a resource type "foo"'):
        CATALOG.resolve("foo")
    with pytest.raises(ResourceError):
        CATALOG.resolve("pods/log")


def test_for_kind():
    assert CATALOG.for_kind("apps/v1", "Deployment").plural == "deployments"
    assert CATALOG.for_kind("batch/v1", "Job").version == "v1"
    with pytest.raises(ResourceError, match='no matches for kind "Foo" in version "v1"'):
        CATALOG.for_kind("v1", "Foo")


@pytest.mark.parametrize("args, targets", [
    (["pods"], [("pods", [])]),
    (["po,svc", "a", "b"], [("po", ["a", "b"]), ("svc", ["a", "b"])]),
    (["po/a", "po/b", "svc/c", "po/d"], [("po", ["a", "b"]), ("svc", ["c"]), ("po", ["d"])]),
])
def test_parse_targets(args, targets):
    assert parse_targets(args) == targets


@pytest.mark.parametrize("args", [["pods", "po/web"], ["po/"], ["po/a/b"], [","]])
def test_parse_targets_refuses(args):
    with pytest.raises(ResourceError):
        parse_targets(args)


# --- manifests ----------------------------------------------------------------------------

def test_manifests_yaml_documents_lists_and_json():
    text = """
apiVersion: v1
kind: Pod
metadata: {name: a, creationTimestamp: 2026-01-01T00:00:00Z}
---
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: b}}
- apiVersion: v1
  kind: ConfigMapList
  items: [{apiVersion: v1, kind: ConfigMap, metadata: {name: c}}]
"""
    ms = parse_manifests(text, "x.yaml")
    assert [(m.obj["kind"], m.name, m.source) for m in ms] == [
        ("Pod", "a", "x.yaml"), ("Service", "b", "x.yaml"), ("ConfigMap", "c", "x.yaml")]
    assert ms[0].obj["metadata"]["creationTimestamp"] == "2026-01-01T00:00:00Z"
    [j] = parse_manifests('{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "j"}}',
                          "j.json")
    assert j.name == "j"


@pytest.mark.parametrize("text, message", [
    ("kind: Pod\n", 'error validating "f": error validating data: apiVersion not set'),
    ("- a\n", "a manifest must be a mapping"),
    ("a: [\n", "error parsing f"),
])
def test_manifests_refused(text, message):
    with pytest.raises(ResourceError, match=message.replace("(", r"\(")):
        parse_manifests(text, "f")


def test_read_manifests_files_dirs_stdin(tmp_path):
    (tmp_path / "b.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: b}\n")
    (tmp_path / "a.json").write_text('{"apiVersion": "v1", "kind": "Pod", '
                                     '"metadata": {"name": "a"}}')
    (tmp_path / "notes.txt").write_text("not a manifest")
    stdin = io.StringIO("apiVersion: v1\nkind: Pod\nmetadata: {name: s}\n")
    ms = read_manifests([str(tmp_path), "-"], stdin, "apply")
    assert [(m.name, m.source) for m in ms] == [
        ("a", str(tmp_path / "a.json")), ("b", str(tmp_path / "b.yaml")), ("s", "STDIN")]
    with pytest.raises(ResourceError, match='the path "nope" does not exist'):
        read_manifests(["nope"], stdin, "apply")
    with pytest.raises(ResourceError, match="no objects passed to create"):
        read_manifests(["-"], io.StringIO(""), "create")


def test_place_namespaces():
    pod = Manifest({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}, "f")
    own = Manifest({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "p", "namespace": "a"}}, "f")
    ns = Manifest({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "n", "namespace": "a"}}, "f")
    assert place(CATALOG, pod, "dev", False)[1] == "dev"
    assert place(CATALOG, own, "dev", False)[1] == "a"
    assert place(CATALOG, own, "a", True)[1] == "a"
    assert place(CATALOG, ns, "dev", True)[1] is None
    assert ns.body(None)["metadata"] == {"name": "n"}
    assert pod.body("dev")["metadata"] == {"name": "p", "namespace": "dev"}
    with pytest.raises(ResourceError, match="You must pass '--namespace=a'"):
        place(CATALOG, own, "dev", True)
    foo = Manifest({"apiVersion": "v1", "kind": "Foo", "metadata": {"name": "x"}}, "STDIN")
    with pytest.raises(ResourceError, match='resource mapping not found for name: "x" '
                                            'namespace: "" from "STDIN": no matches for kind'):
        place(CATALOG, foo, "dev", False)


# --- describe -----------------------------------------------------------------------------

META = {"name": "web", "namespace": "default", "uid": "u1",
        "creationTimestamp": "2026-11-26T10:00:00Z", "labels": {"b": "2", "a": "1"},
        "annotations": {"note": "hi",
                        "kubectl.kubernetes.io/last-applied-configuration": "{}"}}

POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": META,
    "spec": {
        "nodeName": "node-1", "serviceAccountName": "default", "priority": 0,
        "containers": [
            {"name": "nginx", "image": "nginx:alpine",
             "ports": [{"containerPort": 80, "protocol": "TCP"}],
             "env": [{"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
             "volumeMounts": [{"name": "html", "mountPath": "/html", "readOnly": True}]},
            {"name": "side", "image": "busybox", "command": ["sleep", "3600"]}],
        "volumes": [{"name": "html", "emptyDir": {}}],
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 300}],
    },
    "status": {
        "phase": "Running", "hostIP": "172.30.0.2", "podIP": "10.244.1.5",
        "podIPs": [{"ip": "10.244.1.5"}], "startTime": "2026-11-26T10:00:01Z",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {"name": "nginx", "containerID": "runc://1", "imageID": "sha256:a", "ready": True,
             "restartCount": 1, "state": {"running": {"startedAt": "2026-11-26T10:00:02Z"}},
             "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                                          "startedAt": "2026-11-26T10:00:01Z",
                                          "finishedAt": "2026-11-26T10:00:02Z"}}},
            {"name": "side", "ready": False, "restartCount": 0,
             "state": {"waiting": {"reason": "ContainerCreating"}}}],
    },
}

EVENTS = [
    {"type": "Warning", "reason": "BackOff", "message": "restarting\n", "count": 3,
     "firstTimestamp": "2026-11-26T11:00:00Z", "lastTimestamp": "2026-11-26T11:58:00Z",
     "source": {"component": "kubelet"}},
    {"type": "Normal", "reason": "Scheduled", "message": "assigned", "count": 1,
     "firstTimestamp": "2026-11-26T10:00:00Z", "lastTimestamp": "2026-11-26T10:00:00Z",
     "reportingComponent": "default-scheduler"},
]


def test_describe_pod(utc):
    assert visible(describe(POD, EVENTS, now=NOW)) == """\
Name:               web
Namespace:          default
Labels:             a=1
                    b=2
Annotations:        note: hi
CreationTimestamp:  Thu, 26 Nov 2026 10:00:00 +0000
Priority:           0
Service Account:    default
Node:               node-1/172.30.0.2
Start Time:         Thu, 26 Nov 2026 10:00:01 +0000
Status:             Running
IP:                 10.244.1.5
IPs:
  IP:  10.244.1.5
Containers:
  nginx:
    Container ID:   runc://1
    Image:          nginx:alpine
    Image ID:       sha256:a
    Port:           80/TCP
    Host Port:      0/TCP
    State:          Running
      Started:      Thu, 26 Nov 2026 10:00:02 +0000
    Last State:     Terminated
      Reason:       OOMKilled
      Exit Code:    137
      Started:      Thu, 26 Nov 2026 10:00:01 +0000
      Finished:     Thu, 26 Nov 2026 10:00:02 +0000
    Ready:          True
    Restart Count:  1
    Environment:
      ME:  web (v1:metadata.name)
    Mounts:
      /html from html (ro)
  side:
    Container ID:··
    Image:         busybox
    Image ID:······
    Port:          <none>
    Host Port:     <none>
    Command:
      sleep
      3600
    State:          Waiting
      Reason:       ContainerCreating
    Ready:          False
    Restart Count:  0
    Environment:    <none>
    Mounts:         <none>
Conditions:
  Type    Status
  Ready   True·
Volumes:
  html:
    Type:        EmptyDir (a temporary directory that shares a pod's lifetime)
    Medium:······
    SizeLimit:   <unset>
Node-Selectors:  <none>
Tolerations:     k:NoExecute op=Exists for 300s
Events:
  Type     Reason     Age               From               Message
  ----     ------     ----              ----               -------
  Normal   Scheduled  120m              default-scheduler  assigned
  Warning  BackOff    2m (x3 over 60m)  kubelet            restarting
"""


SERVICE = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "web", "namespace": "default",
                 "creationTimestamp": "2026-11-26T10:00:00Z"},
    "spec": {"type": "NodePort", "selector": {"app": "web"}, "clusterIP": "10.96.0.20",
             "clusterIPs": ["10.96.0.20"], "ipFamilies": ["IPv4"],
             "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
             "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
             "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP",
                        "nodePort": 30080},
                       {"name": "admin", "port": 81, "targetPort": 8081, "protocol": "TCP",
                        "nodePort": 30081}]},
}

SLICES = [{"endpoints": [{"addresses": [f"10.244.1.{i}"]} for i in range(1, 6)],
           "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 8081}]}]


def test_describe_service(utc):
    assert describe(SERVICE, [], SLICES) == """\
Name:                     web
Namespace:                default
Labels:                   <none>
Annotations:              <none>
CreationTimestamp:        Thu, 26 Nov 2026 10:00:00 +0000
Selector:                 app=web
Type:                     NodePort
IP Family Policy:         SingleStack
IP Families:              IPv4
IP:                       10.96.0.20
IPs:                      10.96.0.20
Port:                     http  80/TCP
TargetPort:               http/TCP
NodePort:                 http  30080/TCP
Endpoints:                10.244.1.1:8080,10.244.1.2:8080,10.244.1.3:8080 + 2 more...
Port:                     admin  81/TCP
TargetPort:               8081/TCP
NodePort:                 admin  30081/TCP
Endpoints:                10.244.1.1:8081,10.244.1.2:8081,10.244.1.3:8081 + 2 more...
Session Affinity:         None
External Traffic Policy:  Cluster
Internal Traffic Policy:  Cluster
Events:                   <none>
"""


def test_format_endpoints():
    assert format_endpoints([], "http") == "<none>"
    assert format_endpoints([{"endpoints": [{"addresses": ["10.0.0.1"]}]}], None) == "10.0.0.1"
    v6 = [{"endpoints": [{"addresses": ["fd00::1"]}], "ports": [{"name": "", "port": 80}]}]
    assert format_endpoints(v6, "") == "[fd00::1]:80"
    assert format_endpoints(v6, "other") == ""


def test_describe_generic_kind_and_cluster_scope(utc):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "immutable": False,
          "metadata": {"name": "cfg", "creationTimestamp": "2026-11-26T10:00:00Z",
                       "annotations": {"long": "x" * 200}},
          "data": {"a": "1", "script": "echo\tok\n"}, "binaryData": {}}
    assert describe(cm, []) == f"""\
Name:               cfg
Labels:             <none>
Annotations:        long:
                      {"x" * 138}...
CreationTimestamp:  Thu, 26 Nov 2026 10:00:00 +0000
BinaryData:         <none>
Data:
  a: "1"
  script: "echo\\tok\\n"
Immutable:  false
Events:     <none>
"""


def test_field_value():
    assert field_value(POD, "metadata.name") == "web"
    assert field_value(POD, "metadata.labels['a']") == "1"
    assert field_value(POD, "status.podIP") == "10.244.1.5"
    assert field_value(POD, "spec.nope") == ""
