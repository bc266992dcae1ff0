"""kwire's kubectl-shaped verbs (apply, create, get, describe, delete) driven as a
user would, against their own cluster; where kubectl prints the same thing,
its output is the expected one."""
from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import yaml

from conftest import Cluster, kwire_bin, running_cluster

MANIFEST = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
  annotations: {note: hello}
spec:
  schedulerName: no-scheduler  # no scheduler event: the test writes its own
  containers:
  - name: nginx
    image: nginx:alpine
    ports: [{containerPort: 80, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http, name: http}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, labels: {app: web}}
data: {a: "1"}
"""


@pytest.fixture(scope="module")
def kw(tmp_path_factory) -> Iterator[Cluster]:
    with running_cluster("cli", tmp_path_factory.mktemp("cli")) as c:
        yield c


@pytest.fixture
def ns(kw: Cluster):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    assert kw.kwire("create", "namespace", name).stdout == f"namespace/{name} created\n"
    try:
        yield name
    finally:
        kw.kwire("delete", "namespace", name, "--no-wait", check=False)


def kwire(kw: Cluster, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """kwire with stdin, never raising: tests look at the exit code themselves."""
    return subprocess.run([kwire_bin(), *args], env=kw.env, input=input, capture_output=True,
                          text=True, timeout=60)


def applied(kw: Cluster, ns: str, text: str = MANIFEST) -> str:
    r = kwire(kw, "apply", "-n", ns, "-f", "-", input=text)
    assert r.returncode == 0, r.stderr
    return r.stdout


def same_as_kubectl(kw: Cluster, *args: str) -> str:
    """kwire's output of a get, checked equal to kubectl's. Ages are rendered at
    request time, so kwire runs between two kubectl runs and must match one."""
    for _ in range(3):
        before = kw.kubectl(*args, check=False)
        ours = kwire(kw, *args)
        after = kw.kubectl(*args, check=False)
        outputs = [(r.stdout, r.stderr, r.returncode) for r in (before, after)]
        if (ours.stdout, ours.stderr, ours.returncode) in outputs:
            return ours.stdout
    assert (ours.stdout, ours.stderr) == (after.stdout, after.stderr)
    raise AssertionError(f"exit codes differ: {ours.returncode} != {after.returncode}")


def test_apply_creates_then_leaves_alone_then_configures(kw, ns, tmp_path):
    assert applied(kw, ns) == "pod/web created\nservice/web created\nconfigmap/cfg created\n"
    assert applied(kw, ns) == \
        "pod/web unchanged\nservice/web unchanged\nconfigmap/cfg unchanged\n"
    changed = MANIFEST.replace('a: "1"', 'a: "2"').replace("note: hello", "note: bye")
    f = tmp_path / "web.yaml"
    f.write_text(changed)
    r = kwire(kw, "apply", "-n", ns, "-f", str(f))
    assert r.stdout == "pod/web configured\nservice/web unchanged\nconfigmap/cfg configured\n"
    cm = kw.kubectl_json("get", "cm", "cfg", "-n", ns)
    assert cm["data"] == {"a": "2"}
    assert "annotations" not in cm["metadata"]  # server-side apply: no last-applied copy


def test_apply_directory_json_and_lists(kw, ns, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-json"}}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"item-{i}"}}
        for i in range(2)]}))
    r = kwire(kw, "apply", "-n", ns, "-f", str(tmp_path))
    assert r.stdout == ("configmap/from-json created\nconfigmap/item-0 created\n"
                        "configmap/item-1 created\n")


def test_get_matches_kubectl(kw, ns):
    applied(kw, ns)
    tables = same_as_kubectl(kw, "get", "po,svc,cm", "-n", ns)
    assert tables.startswith("NAME      READY   STATUS    RESTARTS   AGE\npod/web   0/1")
    assert "\n\nNAME          TYPE        CLUSTER-IP" in tables
    for args in (("get", "pods", "-o", "wide"), ("get", "svc", "web"),
                 ("get", "cm", "-l", "app=web"), ("get", "po/web", "svc/web"),
                 ("get", "all"), ("get", "ns", ns), ("get", "pod", "web", "-o", "yaml"),
                 ("get", "cm", "-o", "json"), ("get", "po,cm", "-o", "name"),
                 ("get", "configmaps", "--field-selector", "metadata.name=cfg"),
                 ("get", "secrets"), ("get", "pods", "web", "nope")):
        same_as_kubectl(kw, *args, "-n", ns)
    every = same_as_kubectl(kw, "get", "cm", "-A", "-l", "app=web")
    assert re.search(rf"^NAMESPACE +NAME +DATA +AGE\n{ns} +cfg +1 ", every, re.M)


def test_get_errors(kw, ns):
    r = kwire(kw, "get", "pods", "nope", "-n", ns)
    assert (r.returncode, r.stderr) == (1, 'Error from server (NotFound): pods "nope" not found\n')
    r = kwire(kw, "get", "widgets")
    assert (r.returncode, r.stderr) == \
        (1, 'error: the server doesn\'t have a resource type "widgets"\n')
    r = kwire(kw, "get", "pods", "-n", ns)
    assert (r.returncode, r.stdout, r.stderr) == \
        (0, "", f"No resources found in {ns} namespace.\n")
    r = kwire(kw, "get", "pods", "-n", ns, "--context", "no-such-context")
    assert r.returncode == 1 and "no-such-context" in r.stderr


def test_create_and_its_errors(kw, ns, tmp_path):
    f = tmp_path / "web.yaml"
    f.write_text(MANIFEST)
    r = kwire(kw, "create", "-n", ns, "-f", str(f))
    assert r.stdout == "pod/web created\nservice/web created\nconfigmap/cfg created\n"
    r = kwire(kw, "create", "-n", ns, "-f", str(f))
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f'Error from server (AlreadyExists): error when creating "{f}": '
        f'{plural} "{name}" already exists'
        for plural, name in (("pods", "web"), ("services", "web"), ("configmaps", "cfg"))]
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"},
           "spec": {"containers": [{"name": "Bad_Name", "image": ""}]}}
    r = kwire(kw, "create", "-n", ns, "-f", "-", input=json.dumps(bad))
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0] == 'The Pod "bad" is invalid: '
    assert lines[1].startswith('* spec.containers[0].name: Invalid value: "Bad_Name"')
    assert lines[2] == "* spec.containers[0].image: Required value"
    r = kwire(kw, "create", "namespace", ns)
    assert r.stderr == f'Error from server (AlreadyExists): namespaces "{ns}" already exists\n'
    r = kwire(kw, "apply", "-n", "default", "-f", "-", input=MANIFEST.replace(
        "name: cfg,", f"name: cfg, namespace: {ns},"))
    assert r.returncode == 1 and f"You must pass '--namespace={ns}'" in r.stderr


def test_describe_pod_and_service(kw, ns):
    applied(kw, ns)
    pod = kw.kubectl_json("get", "pod", "web", "-n", ns)
    event = {"apiVersion": "v1", "kind": "Event",
             "metadata": {"name": "web.1", "namespace": ns},
             "involvedObject": {"kind": "Pod", "name": "web", "namespace": ns,
                                "apiVersion": "v1", "uid": pod["metadata"]["uid"]},
             "reason": "Scheduled", "message": "Successfully assigned it", "type": "Normal",
             "source": {"component": "default-scheduler"}, "count": 1,
             "firstTimestamp": pod["metadata"]["creationTimestamp"],
             "lastTimestamp": pod["metadata"]["creationTimestamp"]}
    kw.apply(event)
    text = kwire(kw, "describe", "pod", "web", "-n", ns).stdout
    head = text.splitlines()[:6]
    assert head[:5] == ["Name:               web", f"Namespace:          {ns}",
                        "Labels:             app=web", "Annotations:        note: hello",
                        head[4]]
    assert head[4].startswith("CreationTimestamp:  ")
    assert "last-applied" not in text
    assert "  nginx:\n    Image:        nginx:alpine\n    Port:         80/TCP\n" in text
    assert re.search(r"Events:\n  Type    Reason     Age +From +Message\n"
                     r"  ----    ------     ---- +---- +-------\n"
                     r"  Normal  Scheduled  \S+ +default-scheduler  Successfully assigned it\n$",
                     text), text
    svc = kwire(kw, "describe", "svc/web", "-n", ns).stdout
    for line in ("Selector:                 app=web", "Type:                     ClusterIP",
                 "Port:                     http  80/TCP",
                 "TargetPort:               http/TCP", "Events:                   <none>"):
        assert line in svc.splitlines()
    cm = kwire(kw, "describe", "configmap", "cfg", "-n", ns).stdout
    assert 'Data:\n  a: "1"\n' in cm and cm.endswith("Events:  <none>\n")
    r = kwire(kw, "describe", "pod", "nope", "-n", ns)
    assert (r.returncode, r.stderr) == (1, 'Error from server (NotFound): pods "nope" not found\n')


def test_delete_waits_until_gone(kw, ns, tmp_path):
    applied(kw, ns)
    r = kwire(kw, "delete", "pod", "web", "-n", ns)
    assert (r.returncode, r.stdout) == (0, 'pod "web" deleted\n')
    assert kwire(kw, "get", "pod", "web", "-n", ns).returncode == 1
    r = kwire(kw, "delete", "cm,svc", "-l", "app=web", "-n", ns)
    assert r.stdout == 'configmap "cfg" deleted\n'
    r = kwire(kw, "delete", "svc", "-l", "app=web", "-n", ns)
    assert (r.returncode, r.stderr) == (0, "No resources found\n")
    f = tmp_path / "web.yaml"
    f.write_text(MANIFEST)
    applied(kw, ns)
    r = kwire(kw, "delete", "-n", ns, "-f", str(f), "--cascade", "foreground")
    assert r.stdout == 'pod "web" deleted\nservice "web" deleted\nconfigmap "cfg" deleted\n'
    r = kwire(kw, "delete", "-n", ns, "-f", str(f))
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == \
        f'Error from server (NotFound): error when deleting "{f}": pods "web" not found'


def test_delete_is_bounded_by_finalizers(kw, ns):
    kw.apply({"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "held", "namespace": ns, "finalizers": ["example.com/x"]}})
    r = kwire(kw, "delete", "cm", "held", "-n", ns, "--timeout", "1")
    assert r.returncode == 1
    assert r.stdout == 'configmap "held" deleted\n'
    assert r.stderr == "error: timed out waiting for the condition on configmaps/held\n"
    kw.kubectl("patch", "cm", "held", "-n", ns, "--type=merge",
               "-p", '{"metadata":{"finalizers":null}}')
    assert kwire(kw, "get", "cm", "held", "-n", ns).returncode == 1


def test_get_watch_prints_changes(kw, ns):
    applied(kw, ns, MANIFEST.split("---")[2])
    proc = subprocess.Popen([kwire_bin(), "get", "cm", "-n", ns, "-l", "app=web", "-w"],
                            env=kw.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines = Lines(proc.stdout.fileno())
    try:
        assert lines.next() == "NAME   DATA   AGE"
        assert lines.next().startswith("cfg    1      ")
        kw.apply({"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "a-much-longer-name", "namespace": ns,
                               "labels": {"app": "web"}},
                  "data": {"x": "1", "y": "2"}})
        assert re.fullmatch(r"a-much-longer-name   2      \S+", lines.next())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Lines:
    """Lines from a pipe, each waited for with a deadline."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buf = b""

    def next(self, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no line within {timeout}s; got {self.buf!r}")
            chunk = os.read(self.fd, 4096)
            if not chunk:
                raise AssertionError(f"output ended; got {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()
