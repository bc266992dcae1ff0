"""Services with real packets on a 3-node cluster: the agents' nftables proxy (ClusterIP,
NodePort, LoadBalancer, externalIPs, affinity, traffic policies, hairpin, reject without
endpoints), driven with the real kubectl and checked from pods and from the host."""
from __future__ import annotations

import ipaddress
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator

import pytest

from conftest import Cluster, running_cluster, wait_for

pytestmark = pytest.mark.e2e

WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      initContainers:
      - name: page
        image: busybox
        command: ["sh", "-c", "hostname > /html/index.html"]
        volumeMounts: [{name: html, mountPath: /html}]
      containers:
      - name: nginx
        image: nginx:alpine
        ports: [{name: http, containerPort: 80}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
        volumeMounts: [{name: html, mountPath: /usr/share/nginx/html}]
      volumes: [{name: html, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    with running_cluster("svc", tmp_path_factory.mktemp("svc"), nodes=3) as c:
        c.apply(WEB)
        c.kubectl("rollout", "status", "deployment/web", "--timeout=120s", timeout=130)
        yield c


@pytest.fixture(scope="module")
def nodes(cluster: Cluster) -> dict[str, str]:
    """Node name -> InternalIP."""
    return {n["metadata"]["name"]: next(a["address"] for a in n["status"]["addresses"]
                                        if a["type"] == "InternalIP")
            for n in cluster.kubectl_json("get", "nodes")["items"]}


@pytest.fixture(scope="module")
def web_pods(cluster: Cluster) -> dict[str, dict]:
    """Pod name -> {node, ip} of the Deployment's pods."""
    return {p["metadata"]["name"]: {"node": p["spec"]["nodeName"], "ip": p["status"]["podIP"]}
            for p in cluster.kubectl_json("get", "pods", "-l", "app=web")["items"]}


@pytest.fixture(scope="module")
def client(cluster: Cluster, web_pods) -> str:
    """A busybox pod on a node with no web replica if there is one, else on the node
    with the fewest."""
    counts = Counter(p["node"] for p in web_pods.values())
    nodes = [n["metadata"]["name"] for n in cluster.kubectl_json("get", "nodes")["items"]]
    node = min(nodes, key=lambda n: (counts[n], n))
    cluster.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
                   "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                            "containers": [{"name": "c", "image": "busybox",
                                            "command": ["sleep", "3600"]}]}})
    cluster.kubectl("wait", "--for=condition=Ready", "pod/client", "--timeout=60s")
    return "client"


def sh(cluster: Cluster, pod: str, script: str, check: bool = True,
       timeout: float = 60) -> subprocess.CompletedProcess:
    return cluster.kubectl("exec", pod, "--", "sh", "-c", script, check=check, timeout=timeout)


def fetch_many(cluster: Cluster, pod: str, url: str, n: int) -> list[str]:
    """n fetches from inside pod, one line each (the serving pod's hostname)."""
    out = sh(cluster, pod, f"for i in $(seq {n}); do timeout 5 wget -qO- {url} || "
                           "echo FAILED; done", timeout=n * 6 + 30).stdout
    return out.split()


def host_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode().strip()


def cluster_ip(cluster: Cluster, name: str) -> str:
    return cluster.kubectl_json("get", "service", name)["spec"]["clusterIP"]


def proxy_table(cluster: Cluster, node: str) -> str:
    return subprocess.run(["ip", "netns", "exec", f"kwire-{cluster.name}_{node}", "nft",
                           "list", "table", "ip", "kwire-proxy"], capture_output=True,
                          text=True, check=True).stdout


def underlay(cluster: Cluster) -> ipaddress.IPv4Network:
    return ipaddress.ip_network(cluster.config["underlay_cidr"])


def service(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}], **spec}}


def test_clusterip_by_name_fqdn_and_ip_reaches_every_replica(cluster, web_pods, client):
    ip = cluster_ip(cluster, "web")
    for url in ("http://web", "http://web.default.svc.cluster.local", f"http://{ip}"):
        assert sh(cluster, client, f"timeout 5 wget -qO- {url}").stdout.strip() in web_pods
    answers = Counter(fetch_many(cluster, client, f"http://{ip}", 30))
    assert set(answers) == set(web_pods), answers


def test_host_reaches_a_clusterip(cluster, web_pods):
    assert host_get(f"http://{cluster_ip(cluster, 'web')}/") in web_pods


def test_nodeport_answers_at_every_node_address(cluster, nodes, web_pods):
    cluster.apply(service("web-np", type="NodePort"))
    port = cluster.kubectl_json("get", "service", "web-np")["spec"]["ports"][0]["nodePort"]
    for address in nodes.values():
        seen = {wait_for(lambda a=address: host_get(f"http://{a}:{port}/"), timeout=10,
                         what=f"NodePort at {address}") for _ in range(6)}
        assert seen <= set(web_pods)


def test_loadbalancer_gets_a_pool_address_that_answers_from_the_host(cluster, web_pods):
    cluster.apply(service("web-lb", type="LoadBalancer"))
    ingress = wait_for(lambda: cluster.kubectl_json("get", "service", "web-lb").get(
        "status", {}).get("loadBalancer", {}).get("ingress"), timeout=20, what="LB address")
    ip = ingress[0]["ip"]
    row = cluster.kubectl("get", "service", "web-lb", "--no-headers").stdout.split()
    assert row[3] == ip and "<pending>" not in row
    assert wait_for(lambda: _try(f"http://{ip}/"), timeout=10, what="LB answers") in web_pods


def _try(url: str) -> str | None:
    try:
        return host_get(url, timeout=2)
    except (urllib.error.URLError, OSError):
        return None


def test_external_ip_answers_from_the_host(cluster, web_pods):
    external = str(underlay(cluster).network_address + 150)
    cluster.apply(service("web-ext", externalIPs=[external]))
    assert wait_for(lambda: _try(f"http://{external}/"), timeout=10,
                    what="externalIP answers") in web_pods


def test_client_ip_affinity_sticks(cluster, web_pods, client):
    cluster.apply(service("web-sticky", sessionAffinity="ClientIP",
                          sessionAffinityConfig={"clientIP": {"timeoutSeconds": 30}}))
    ip = cluster_ip(cluster, "web-sticky")
    answers = wait_for(lambda: [a for a in fetch_many(cluster, client, f"http://{ip}", 10)
                                if a != "FAILED"], timeout=20, what="sticky answers")
    assert len(set(answers)) == 1 and answers[0] in web_pods, answers


def test_external_traffic_policy_local_keeps_the_client_ip(cluster, nodes, web_pods):
    cluster.apply(service("web-local", type="NodePort", externalTrafficPolicy="Local"))
    port = cluster.kubectl_json("get", "service", "web-local")["spec"]["ports"][0]["nodePort"]
    with_pods = {p["node"] for p in web_pods.values()}
    for node, address in nodes.items():
        if node not in with_pods:  # no local endpoint: dropped, as upstream
            with pytest.raises((urllib.error.URLError, OSError)):
                host_get(f"http://{address}:{port}/", timeout=2)
            continue
        local = {name for name, p in web_pods.items() if p["node"] == node}
        for _ in range(5):
            assert wait_for(lambda: _try(f"http://{address}:{port}/"), timeout=10,
                            what="Local NodePort") in local
    host_ip = str(underlay(cluster).network_address + 1)
    logs = cluster.kubectl("logs", "-l", "app=web", "-c", "nginx", "--tail=-1").stdout
    assert f"{host_ip} - - " in logs  # the host's own address reached nginx


def test_internal_traffic_policy_local_uses_only_local_endpoints(cluster, web_pods):
    node, local = next((n, {name for name, p in web_pods.items() if p["node"] == n})
                       for n in sorted({p["node"] for p in web_pods.values()}))
    cluster.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "local-client"},
                   "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                            "containers": [{"name": "c", "image": "busybox",
                                            "command": ["sleep", "3600"]}]}})
    cluster.kubectl("wait", "--for=condition=Ready", "pod/local-client", "--timeout=60s")
    cluster.apply(service("web-itp", internalTrafficPolicy="Local"))
    ip = cluster_ip(cluster, "web-itp")
    answers = wait_for(lambda: [a for a in fetch_many(cluster, "local-client",
                                                      f"http://{ip}", 10) if a != "FAILED"],
                       timeout=20, what="answers")
    assert set(answers) <= local, answers


def test_a_pod_reaches_itself_through_its_service(cluster, web_pods):
    name = sorted(web_pods)[0]
    ip = cluster_ip(cluster, "web")
    out = cluster.kubectl("exec", name, "-c", "nginx", "--", "sh", "-c",
                          f"for i in $(seq 20); do timeout 3 wget -qO- http://{ip}/; done",
                          timeout=120).stdout.split()
    assert name in out, out  # the hairpin connection to itself answered


def test_a_service_without_endpoints_refuses_at_once(cluster, client):
    cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nobody"},
                   "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80}]}})
    ip = cluster_ip(cluster, "nobody")
    time.sleep(1)
    start = time.monotonic()
    r = sh(cluster, client, f"timeout 10 wget -qO- http://{ip}/", check=False)
    assert r.returncode != 0 and "refused" in r.stderr, r.stderr
    assert time.monotonic() - start < 5  # a reset, not a 10 s timeout
    with socket.socket() as s:  # and from the host
        s.settimeout(5)
        with pytest.raises(ConnectionRefusedError):
            s.connect((ip, 80))


def test_deleted_and_unready_pods_leave_the_rules(cluster, nodes):
    cluster.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "churn"},
                   "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "churn"}},
                            "template": {"metadata": {"labels": {"app": "churn"}},
                                         "spec": {"terminationGracePeriodSeconds": 30,
                                                  "containers": [{
                                                      "name": "c", "image": "busybox",
                                                      "command": ["sh", "-c",
                                                                  "touch /tmp/ready; "
                                                                  "exec sleep 3600"],
                                                      "readinessProbe": {
                                                          "exec": {"command": ["cat",
                                                                               "/tmp/ready"]},
                                                          "periodSeconds": 1}}]}}}})
    cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "churn"},
                   "spec": {"selector": {"app": "churn"}, "ports": [{"port": 80}]}})
    cluster.kubectl("rollout", "status", "deployment/churn", "--timeout=60s", timeout=70)
    pods = cluster.kubectl_json("get", "pods", "-l", "app=churn")["items"]
    first, second = (p["metadata"]["name"] for p in pods)
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}

    def programmed(ip: str) -> bool:
        return all(f": {ip} . 80" in proxy_table(cluster, n) for n in nodes)

    def gone(ip: str) -> bool:
        return all(f": {ip} . 80" not in proxy_table(cluster, n) for n in nodes)

    wait_for(lambda: programmed(ips[first]) and programmed(ips[second]), timeout=10,
             what="both endpoints programmed")
    # a failing readiness probe takes the pod out (the probe runs every second)
    cluster.kubectl("exec", first, "--", "rm", "/tmp/ready")
    wait_for(lambda: gone(ips[first]), timeout=5, what="unready pod out of the rules")
    # a deleted pod goes at once, though it takes its 30 s grace to stop
    start = time.monotonic()
    cluster.kubectl("delete", "pod", second, "--wait=false")
    wait_for(lambda: gone(ips[second]), timeout=5, interval=0.05,
             what="deleted pod out of the rules")
    print(f"deleted pod left every node's rules after {time.monotonic() - start:.2f} s")


def test_kubectl_expose_makes_a_working_service(cluster, web_pods, client):
    cluster.kubectl("expose", "deployment", "web", "--name=web-exposed", "--port=8081",
                    "--target-port=80")
    svc = cluster.kubectl_json("get", "service", "web-exposed")
    assert svc["spec"]["selector"] == {"app": "web"}
    ip = svc["spec"]["clusterIP"]
    assert wait_for(lambda: sh(cluster, client, f"timeout 5 wget -qO- http://{ip}:8081",
                               check=False).stdout.strip(), timeout=10,
                    what="exposed service answers") in web_pods


def test_every_node_synced_by_patches_after_its_first_whole_table(cluster, nodes):
    """Runs last: all the Service changes above went in as partial syncs (a refused
    patch would have fallen back to a whole table, and said so in the agent's log)."""
    for node in nodes:
        log = (cluster.state_dir / "nodes" / node / "agent.log").read_text()
        assert "service proxy: full sync" in log
        assert "partial proxy sync failed" not in log, node
