"""The real kubectl against a cluster started with `kwire up`."""
from __future__ import annotations

import json
import select
import subprocess
import time

import yaml

from conftest import KUBECTL, ROOT

SEED = str(ROOT.parent / "shared" / "seed" / "multi-container-pod.yaml")


def pod(name: str, ns: str, image: str = "nginx:alpine", labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {"app": name}},
            "spec": {"containers": [{"name": "main", "image": image}]}}


def test_version_and_discovery(cluster):
    out = cluster.kubectl("version", "-o", "json").stdout
    server = json.loads(out)["serverVersion"]
    assert (server["major"], server["minor"]) == ("1", "32")
    res = cluster.kubectl("api-resources", "-o", "name").stdout.split()
    for r in ("pods", "services", "namespaces", "deployments.apps", "endpointslices.discovery.k8s.io",
              "ingresses.networking.k8s.io", "networkpolicies.networking.k8s.io",
              "leases.coordination.k8s.io", "events", "configmaps", "secrets"):
        assert r in res
    short = cluster.kubectl("get", "po,svc,deploy,ns", "-A").stdout
    assert "service/kubernetes" in short and "namespace/kube-system" in short


def test_system_namespaces_and_kubernetes_service(cluster):
    names = cluster.kubectl("get", "ns", "-o", "name").stdout.split()
    for n in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert f"namespace/{n}" in names
    ns = cluster.kubectl_json("get", "ns", "kube-system")
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "kube-system"
    assert ns["status"]["phase"] == "Active"
    svc = cluster.kubectl_json("get", "svc", "kubernetes", "-n", "default")
    assert svc["spec"]["clusterIP"] == cluster.api_service_ip  # 10.96.0.1 when alone
    table = cluster.kubectl("get", "svc", "kubernetes", "-n", "default").stdout.splitlines()
    assert table[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert table[1].split()[:5] == ["kubernetes", "ClusterIP", cluster.api_service_ip, "<none>",
                                    "443/TCP"]


def test_apply_created_configured_unchanged(cluster, ns):
    manifest = pod("web", ns)
    assert cluster.apply(manifest).stdout.strip() == "pod/web created"
    assert cluster.apply(manifest).stdout.strip() == "pod/web unchanged"
    manifest["metadata"]["labels"]["tier"] = "front"
    manifest["spec"]["containers"][0]["image"] = "nginx:1.27"
    assert cluster.apply(manifest).stdout.strip() == "pod/web configured"
    live = cluster.kubectl_json("get", "pod", "web", "-n", ns)
    assert live["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert live["spec"]["containers"][0]["image"] == "nginx:1.27"
    assert live["spec"]["restartPolicy"] == "Always"
    assert live["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    # removing a label in the file removes it from the live object (three-way merge)
    del manifest["metadata"]["labels"]["tier"]
    assert cluster.apply(manifest).stdout.strip() == "pod/web configured"
    live = cluster.kubectl_json("get", "pod", "web", "-n", ns)
    assert live["metadata"]["labels"] == {"app": "web"}
    assert cluster.apply(manifest).stdout.strip() == "pod/web unchanged"


def test_seed_pod_applies_unchanged_file(cluster, ns):
    out = cluster.kubectl("apply", "-n", ns, "-f", SEED).stdout.strip()
    assert out == "pod/multi-container-pod created"
    live = cluster.kubectl_json("get", "pod", "multi-container-pod", "-n", ns)
    names = [c["name"] for c in live["spec"]["containers"]]
    assert names == ["container-1", "container-2"]
    assert live["spec"]["dnsPolicy"] == "ClusterFirst"
    assert live["spec"]["terminationGracePeriodSeconds"] == 30
    assert cluster.kubectl("apply", "-n", ns, "-f", SEED).stdout.strip() == \
        "pod/multi-container-pod unchanged"


def test_get_tables_and_outputs(cluster, ns):
    cluster.apply(pod("a", ns, labels={"app": "a", "tier": "front"}))
    cluster.apply(pod("b", ns, labels={"app": "b", "tier": "back"}))
    lines = cluster.kubectl("get", "pods", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    assert set(rows) == {"a", "b"}
    assert rows["a"][1:4] == ["0/1", "Pending", "0"]
    wide = cluster.kubectl("get", "pods", "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                               "NOMINATED", "NODE", "READINESS", "GATES"]
    assert cluster.kubectl("get", "pods", "-n", ns, "-l", "tier=back", "-o", "name").stdout.split() \
        == ["pod/b"]
    assert cluster.kubectl("get", "pods", "-n", ns, "-l", "tier in (front,back),app!=a", "-o",
                           "name").stdout.split() == ["pod/b"]
    got = cluster.kubectl("get", "pods", "-n", ns, "--field-selector", "metadata.name=a",
                          "-o", "name").stdout.split()
    assert got == ["pod/a"]
    assert cluster.kubectl("get", "pods", "-n", ns, "--field-selector",
                           "status.phase=Running", "-o", "name").stdout.strip() == ""
    bad = cluster.kubectl("get", "pods", "-n", ns, "--field-selector", "spec.bogus=1",
                          check=False)
    assert bad.returncode != 0 and "field label not supported: spec.bogus" in bad.stderr
    y = yaml.safe_load(cluster.kubectl("get", "pod", "a", "-n", ns, "-o", "yaml").stdout)
    assert y["kind"] == "Pod" and y["metadata"]["namespace"] == ns
    j = cluster.kubectl_json("get", "pods", "-n", ns)
    assert j["kind"] == "List" and len(j["items"]) == 2
    every = cluster.kubectl("get", "pods", "-A").stdout.splitlines()
    assert every[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert any(l.split()[:2] == [ns, "a"] for l in every[1:])
    labels = cluster.kubectl("get", "pods", "-n", ns, "--show-labels").stdout
    assert "app=a,tier=front" in labels
    chunked = cluster.kubectl("get", "pods", "-n", ns, "--chunk-size=1", "-o", "name")
    assert chunked.stdout.split() == ["pod/a", "pod/b"]


def test_get_watch_sees_a_change(cluster, ns):
    cluster.apply(pod("w", ns))
    proc = subprocess.Popen([KUBECTL, f"--cache-dir={cluster.cache}", "get", "pods", "-n", ns,
                             "-w", "--no-headers", "-o",
                             "custom-columns=NAME:.metadata.name,SEEN:.metadata.labels.seen"],
                            env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lines: list[list[str]] = []
    try:
        deadline = time.time() + 20
        labelled = False
        while time.time() < deadline and ["w", "yes"] not in lines:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                lines.append(proc.stdout.readline().split())
            if lines and not labelled:
                cluster.kubectl("label", "pod", "w", "-n", ns, "seen=yes")
                labelled = True
        assert lines[0] == ["w", "<none>"]
        assert ["w", "yes"] in lines
    finally:
        proc.kill()
        proc.wait()


def test_describe_shows_events(cluster, ns):
    cluster.apply(pod("d", ns))
    uid = cluster.kubectl_json("get", "pod", "d", "-n", ns)["metadata"]["uid"]
    event = {"apiVersion": "v1", "kind": "Event",
             "metadata": {"name": "d.1", "namespace": ns},
             "involvedObject": {"kind": "Pod", "name": "d", "namespace": ns, "uid": uid,
                                "apiVersion": "v1"},
             "reason": "Testing", "message": "hello from the e2e test", "type": "Normal",
             "source": {"component": "e2e"}, "count": 1,
             "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"}
    cluster.kubectl("create", "-f", "-", input=json.dumps(event))
    out = cluster.kubectl("describe", "pod", "d", "-n", ns).stdout
    assert "Name:" in out and "d" in out
    assert "Testing" in out and "hello from the e2e test" in out
    assert "nginx:alpine" in out


def test_delete_and_wait(cluster, ns):
    cluster.apply(pod("gone", ns))
    out = cluster.kubectl("delete", "pod", "gone", "-n", ns).stdout.strip()
    assert out == 'pod "gone" deleted'
    r = cluster.kubectl("get", "pod", "gone", "-n", ns, check=False)
    assert r.returncode == 1 and 'pods "gone" not found' in r.stderr


def test_validation_errors_print_field_paths(cluster, ns):
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name", "namespace": ns},
           "spec": {"containers": [{"name": "c"}, {"name": "c", "image": "x"}]}}
    r = cluster.kubectl("create", "-f", "-", input=json.dumps(bad), check=False)
    assert r.returncode == 1
    assert 'The Pod "Bad_Name" is invalid' in r.stderr
    assert "metadata.name: Invalid value" in r.stderr
    assert "spec.containers[0].image: Required value" in r.stderr
    assert 'spec.containers[1].name: Duplicate value: "c"' in r.stderr


def test_unknown_field_is_refused_strictly(cluster, ns):
    p = pod("unk", ns)
    p["spec"]["bogus"] = 1
    r = cluster.kubectl("create", "-f", "-", input=json.dumps(p), check=False)
    assert r.returncode == 1
    assert "BadRequest" in r.stderr and 'unknown field "spec.bogus"' in r.stderr
    r = cluster.kubectl("create", "--validate=false", "-f", "-", input=json.dumps(p))
    assert "pod/unk created" in r.stdout
    assert "bogus" not in json.dumps(cluster.kubectl_json("get", "pod", "unk", "-n", ns))


def test_missing_namespace_and_already_exists(cluster, ns):
    r = cluster.kubectl("create", "-f", "-", input=json.dumps(pod("x", "no-such-ns")),
                        check=False)
    assert r.returncode == 1 and 'namespaces "no-such-ns" not found' in r.stderr
    cluster.kubectl("create", "-f", "-", input=json.dumps(pod("x", ns)))
    r = cluster.kubectl("create", "-f", "-", input=json.dumps(pod("x", ns)), check=False)
    assert r.returncode == 1 and "AlreadyExists" in r.stderr and 'pods "x" already exists' in r.stderr


def test_namespace_deletion_removes_contents(cluster):
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}})
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cm", "namespace": "doomed"}, "data": {"a": "b"}})
    cluster.apply(pod("p", "doomed"))
    out = cluster.kubectl("delete", "namespace", "doomed", timeout=90).stdout.strip()
    assert out == 'namespace "doomed" deleted'
    r = cluster.kubectl("get", "ns", "doomed", check=False)
    assert r.returncode == 1 and "not found" in r.stderr
    assert cluster.kubectl("get", "cm", "-n", "doomed", "-o", "name").stdout.strip() == ""


def test_services_get_addresses(cluster, ns):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    cluster.apply(svc)
    live = cluster.kubectl_json("get", "svc", "web", "-n", ns)
    ip = live["spec"]["clusterIP"]
    assert ip.startswith("10.") and ip != cluster.api_service_ip
    assert live["spec"]["ports"][0]["targetPort"] == 80
    assert live["spec"]["ports"][0]["protocol"] == "TCP"
    np = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np", "namespace": ns},
          "spec": {"type": "NodePort", "selector": {"app": "web"},
                   "ports": [{"port": 80, "nodePort": 30080}]}}
    cluster.apply(np)
    row = cluster.kubectl("get", "svc", "np", "-n", ns).stdout.splitlines()[1].split()
    assert row[1] == "NodePort" and row[4] == "80:30080/TCP"
    np["metadata"]["name"] = "np2"
    r = cluster.kubectl("create", "-f", "-", input=json.dumps(np), check=False)
    assert r.returncode == 1
    assert "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated" \
        in r.stderr
    headless = {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "hl", "namespace": ns},
                "spec": {"clusterIP": "None", "selector": {"app": "web"},
                         "ports": [{"port": 80}]}}
    cluster.apply(headless)
    assert cluster.kubectl_json("get", "svc", "hl", "-n", ns)["spec"]["clusterIP"] == "None"
    # clusterIP is immutable
    r = cluster.kubectl("patch", "svc", "web", "-n", ns, "-p",
                        '{"spec":{"clusterIP":"10.96.100.100"}}', check=False)
    assert r.returncode == 1
    assert "spec.clusterIPs[0]: Invalid value" in r.stderr and "may not change once set" in r.stderr


def test_patch_forms(cluster, ns):
    cluster.apply(pod("pt", ns))
    cluster.kubectl("patch", "pod", "pt", "-n", ns, "--type=merge", "-p",
                    '{"metadata":{"labels":{"m":"1"}}}')
    cluster.kubectl("patch", "pod", "pt", "-n", ns, "--type=json", "-p",
                    '[{"op":"add","path":"/metadata/labels/j","value":"2"}]')
    cluster.kubectl("patch", "pod", "pt", "-n", ns, "-p",
                    '{"spec":{"containers":[{"name":"main","image":"busybox"}]}}')
    live = cluster.kubectl_json("get", "pod", "pt", "-n", ns)
    assert live["metadata"]["labels"] == {"app": "pt", "m": "1", "j": "2"}
    assert [c["image"] for c in live["spec"]["containers"]] == ["busybox"]
    r = cluster.kubectl("patch", "pod", "pt", "-n", ns, "-p",
                        '{"spec":{"containers":[{"name":"other","image":"busybox"}]}}',
                        check=False)
    assert r.returncode == 1 and "Forbidden" in r.stderr and "pod updates" in r.stderr


def test_server_side_apply(cluster, ns):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "namespace": ns},
          "data": {"a": "1"}}
    out = cluster.apply(cm, "--server-side").stdout.strip()
    assert out == "configmap/ssa serverside-applied"
    cm["data"]["b"] = "2"
    assert cluster.apply(cm, "--server-side").stdout.strip() == "configmap/ssa serverside-applied"
    assert cluster.kubectl_json("get", "cm", "ssa", "-n", ns)["data"] == {"a": "1", "b": "2"}


def test_no_credentials_is_401(cluster):
    import ssl
    import urllib.error
    import urllib.request

    cfg = yaml.safe_load(open(cluster.kubeconfig))
    server = cfg["clusters"][0]["cluster"]["server"]
    ctx = ssl.create_default_context(cafile=str(cluster.state_dir / "ca.crt"))
    try:
        urllib.request.urlopen(server + "/api/v1/namespaces", context=ctx, timeout=10)
        raise AssertionError("expected 401")
    except urllib.error.HTTPError as e:
        assert e.code == 401
        body = json.loads(e.read())
        assert body["kind"] == "Status" and body["reason"] == "Unauthorized"


def test_typed_create_and_scale(cluster, ns):
    """kubectl's typed commands send protobuf bodies and use the scale subresource."""
    out = cluster.kubectl("create", "deployment", "web", "-n", ns, "--image=nginx:alpine",
                          "--replicas=1").stdout.strip()
    assert out == "deployment.apps/web created"
    out = cluster.kubectl("scale", "deployment", "web", "-n", ns, "--replicas=3").stdout.strip()
    assert out == "deployment.apps/web scaled"
    live = cluster.kubectl_json("get", "deployment", "web", "-n", ns)
    assert live["spec"]["replicas"] == 3
    assert live["metadata"]["generation"] == 2
    assert live["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%",
                                                         "maxUnavailable": "25%"}
    cluster.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=k=v")
    assert cluster.kubectl_json("get", "cm", "cfg", "-n", ns)["data"] == {"k": "v"}
    cluster.kubectl("create", "secret", "generic", "s", "-n", ns, "--from-literal=p=secret")
    assert cluster.kubectl_json("get", "secret", "s", "-n", ns)["data"] == {"p": "c2VjcmV0"}
    r = cluster.kubectl("scale", "deployment", "web", "-n", ns, "--replicas=-1", check=False)
    assert r.returncode != 0


def test_every_namespace_gets_default_service_account_and_root_ca(cluster, ns):
    deadline = time.time() + 10
    names: list[str] = []
    while time.time() < deadline:
        names = cluster.kubectl("get", "sa,cm", "-n", ns, "-o", "name").stdout.split()
        if {"serviceaccount/default", "configmap/kube-root-ca.crt"} <= set(names):
            break
        time.sleep(0.2)
    assert {"serviceaccount/default", "configmap/kube-root-ca.crt"} <= set(names)
    ca = cluster.kubectl_json("get", "cm", "kube-root-ca.crt", "-n", ns)["data"]["ca.crt"]
    assert ca == (cluster.state_dir / "ca.crt").read_text()


def test_system_namespaces_cannot_be_deleted(cluster):
    r = cluster.kubectl("delete", "namespace", "kube-system", check=False)
    assert r.returncode == 1
    assert 'namespaces "kube-system" is forbidden: this namespace may not be deleted' in r.stderr


def test_apply_a_list_as_get_prints_it(cluster, ns):
    cluster.kubectl("create", "configmap", "l1", "-n", ns, "--from-literal=a=b")
    listed = cluster.kubectl("get", "cm", "l1", "-n", ns, "-o", "yaml").stdout
    doc = yaml.safe_load(listed)
    doc["data"]["a"] = "c"
    wrapped = {"apiVersion": "v1", "kind": "List", "items": [doc]}
    out = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(wrapped)).stdout
    assert "configmap/l1 configured" in out
    assert cluster.kubectl_json("get", "cm", "l1", "-n", ns)["data"] == {"a": "c"}


def test_auth_can_i(cluster):
    assert cluster.kubectl("auth", "can-i", "create", "pods").stdout.strip() == "yes"


def test_kubernetes_service_comes_back(cluster):
    cluster.kubectl("delete", "svc", "kubernetes", "-n", "default")
    deadline = time.time() + 25
    while time.time() < deadline:
        r = cluster.kubectl("get", "svc", "kubernetes", "-n", "default", "-o", "json",
                            check=False)
        if r.returncode == 0:
            assert json.loads(r.stdout)["spec"]["clusterIP"] == cluster.api_service_ip
            return
        time.sleep(0.5)
    raise AssertionError("the kubernetes Service was not restored")
