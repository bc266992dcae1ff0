"""Cluster DNS end to end: the API server runs `kwire dns` on the underlay host
address and publishes it as kube-system/kube-dns; Services and pods made with the
real kubectl are asked for with `dig` from the host (A, SRV, PTR, headless and
hostname records, ExternalName, NXDOMAIN, dns-version, TCP), and from a pod.
Only cluster names are asked, so nothing is forwarded off the machine."""
from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Cluster, running_cluster, wait_for

from kwire.cluster.config import ClusterConfig

NS = "dns-e2e"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    with running_cluster("dns", tmp_path_factory.mktemp("dns"), nodes=1) as c:
        yield c


@pytest.fixture(scope="module")
def config(cluster: Cluster) -> ClusterConfig:
    """The cluster's config, once its DNS server answers (it starts beside the API server)."""
    config = ClusterConfig.load(cluster.state_dir / "config.yaml")
    wait_for(lambda: short(config, "kubernetes.default.svc.cluster.local") ==
             [config.api_service_ip], timeout=30, what="kwire dns answering")
    return config


def dig(config: ClusterConfig, *args: str) -> str:
    r = subprocess.run(["dig", f"@{config.underlay_host_address}", "+time=2", "+tries=2", *args],
                       capture_output=True, text=True, timeout=20)
    return r.stdout


def short(config: ClusterConfig, *args: str) -> list[str]:
    return sorted(dig(config, "+short", *args).split("\n")[:-1])


def name(service: str) -> str:
    return f"{service}.{NS}.svc.cluster.local"


@pytest.fixture(scope="module")
def workload(cluster: Cluster) -> dict[str, str]:
    """A web pod (hostname web-0 in headless Service sub) behind ClusterIP Service
    web, ExternalName Services, and a client pod; returns pod name -> IP."""
    cluster.kubectl("create", "namespace", NS)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web-0", "namespace": NS, "labels": {"app": "web"}},
           "spec": {"hostname": "web-0", "subdomain": "sub", "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "nginx", "image": "nginx:alpine",
                                    "ports": [{"name": "http", "containerPort": 80}]}]}}
    client = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": NS},
              "spec": {"terminationGracePeriodSeconds": 0,
                       "containers": [{"name": "c", "image": "busybox",
                                       "command": ["sleep", "3600"]}]}}
    services = [
        {"metadata": {"name": "web"},
         "spec": {"selector": {"app": "web"},
                  "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                            {"name": "syslog", "port": 514, "protocol": "UDP"}]}},
        {"metadata": {"name": "sub"},
         "spec": {"clusterIP": "None", "selector": {"app": "web"},
                  "ports": [{"name": "http", "port": 80}]}},
        {"metadata": {"name": "alias"},
         "spec": {"type": "ExternalName", "externalName": name("web")}},
        {"metadata": {"name": "outside"},
         "spec": {"type": "ExternalName", "externalName": "db.example.com"}},
    ]
    for svc in services:
        cluster.apply({"apiVersion": "v1", "kind": "Service", **svc,
                       "metadata": {**svc["metadata"], "namespace": NS}})
    cluster.apply(pod)
    cluster.apply(client)

    def running() -> dict[str, str] | None:
        pods = cluster.kubectl_json("get", "pods", "-n", NS)["items"]
        ips = {p["metadata"]["name"]: p["status"].get("podIP") for p in pods
               if any(c["type"] == "Ready" and c["status"] == "True"
                      for c in p["status"].get("conditions") or ())}
        return ips if len(ips) == 2 else None

    return wait_for(running, timeout=90, what="web-0 and client ready")


def test_kube_dns_service_points_at_the_host(cluster: Cluster, config: ClusterConfig):
    svc = cluster.kubectl_json("get", "service", "kube-dns", "-n", "kube-system")
    assert svc["metadata"]["labels"] == {"k8s-app": "kube-dns",
                                         "kubernetes.io/cluster-service": "true",
                                         "kubernetes.io/name": "CoreDNS"}
    assert svc["spec"]["clusterIP"] == config.cluster_dns
    assert "selector" not in svc["spec"]
    assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == \
        [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]
    [eps] = cluster.kubectl_json("get", "endpointslices", "-n", "kube-system",
                                 "-l", "kubernetes.io/service-name=kube-dns")["items"]
    assert eps["endpoints"][0]["addresses"] == [config.underlay_host_address]
    assert {p["name"] for p in eps["ports"]} == {"dns", "dns-tcp"}
    ep = cluster.kubectl_json("get", "endpoints", "kube-dns", "-n", "kube-system")
    assert ep["subsets"][0]["addresses"] == [{"ip": config.underlay_host_address}]
    assert short(config, name("kube-dns").replace(NS, "kube-system")) == [config.cluster_dns]


def test_service_records(cluster: Cluster, config: ClusterConfig, workload: dict[str, str]):
    ip = cluster.kubectl_json("get", "service", "web", "-n", NS)["spec"]["clusterIP"]
    web_ip = workload["web-0"]
    assert short(config, name("web")) == [ip]
    upper = name("WEB").upper()
    assert f"{upper}. 5 IN A {ip}" in " ".join(dig(config, "+noall", "+answer", upper).split())
    assert short(config, "SRV", f"_http._tcp.{name('web')}") == [f"0 100 80 {name('web')}."]
    assert short(config, "SRV", f"_syslog._udp.{name('web')}") == [f"0 100 514 {name('web')}."]
    assert short(config, "-x", ip) == [f"{name('web')}."]

    # headless: the pod itself, by the Service's name and by its hostname
    wait_for(lambda: short(config, name("sub")) == [web_ip], timeout=20, what="headless A")
    assert short(config, f"web-0.{name('sub')}") == [web_ip]
    out = dig(config, "SRV", f"_http._tcp.{name('sub')}")
    assert f"0 100 80 web-0.{name('sub')}." in " ".join(out.split())
    assert f"web-0.{name('sub')}. 5 IN A {web_ip}" in " ".join(out.split())
    assert f"web-0.{name('sub')}." in short(config, "-x", web_ip)

    assert short(config, "CNAME", name("outside")) == ["db.example.com."]
    assert short(config, name("alias")) == sorted([f"{name('web')}.", ip])
    dashed = web_ip.replace(".", "-")
    assert short(config, f"{dashed}.{NS}.pod.cluster.local") == [web_ip]


def test_negative_answers_and_the_schema_version(config: ClusterConfig, workload):
    out = dig(config, name("nope"))
    assert "status: NXDOMAIN" in out and "IN SOA ns.dns.cluster.local." in " ".join(out.split())
    out = dig(config, "AAAA", name("web"))
    assert "status: NOERROR" in out and "ANSWER: 0" in out and "AUTHORITY: 1" in out
    service_range = ipaddress.ip_network(config.service_cidr)
    assert "status: NXDOMAIN" in dig(config, "-x", str(service_range.network_address + 99))
    assert short(config, "TXT", "dns-version.cluster.local") == ['"1.0.1"']


def test_tcp(config: ClusterConfig, workload):
    out = dig(config, "+tcp", name("web"))
    assert "status: NOERROR" in out and "ANSWER: 1" in out and "(TCP)" in out


def test_records_follow_changes(cluster: Cluster, config: ClusterConfig, workload):
    cluster.apply({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "late", "namespace": NS},
                   "spec": {"ports": [{"port": 80}]}})
    ip = cluster.kubectl_json("get", "service", "late", "-n", NS)["spec"]["clusterIP"]
    wait_for(lambda: short(config, name("late")) == [ip], timeout=10, what="new Service in DNS")
    cluster.kubectl("delete", "service", "late", "-n", NS)
    wait_for(lambda: "NXDOMAIN" in dig(config, name("late")), timeout=10,
             what="deleted Service gone from DNS")


def exec_in_client(cluster: Cluster, *cmd: str) -> subprocess.CompletedProcess:
    return cluster.kubectl("exec", "client", "-n", NS, "--", "timeout", "5", *cmd,
                           check=False, timeout=30)


def test_a_pod_can_ask_the_dns_server(cluster: Cluster, config: ClusterConfig, workload):
    """Straight to the underlay host address, which pods reach through their node."""
    r = exec_in_client(cluster, "nslookup", f"{name('web')}.", config.underlay_host_address)
    ip = cluster.kubectl_json("get", "service", "web", "-n", NS)["spec"]["clusterIP"]
    assert r.returncode == 0 and f"Address: {ip}" in r.stdout, r.stdout + r.stderr


def test_pods_resolve_services_through_the_cluster_dns_service(
        cluster: Cluster, config: ClusterConfig, workload):
    """The end-to-end path: a pod's resolv.conf names cluster_dns, the service proxy
    carries it to `kwire dns`, and the answer takes wget to the Service."""
    r = exec_in_client(cluster, "nslookup", f"{name('web')}.")
    assert r.returncode == 0 and f"Server:\t\t{config.cluster_dns}" in r.stdout \
        and name("web") in r.stdout, r.stdout + r.stderr
    r = exec_in_client(cluster, "wget", "-qO-", f"http://{name('web')}.:80/")
    assert r.returncode == 0 and "nginx" in r.stdout, r.stdout + r.stderr


def _resolv(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"nameserver": [], "search": [], "options": []}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in out:
            out[parts[0]] += parts[1:] if parts[0] != "nameserver" else parts[1:2]
    return out


def test_resolv_conf_per_dns_policy(cluster: Cluster, config: ClusterConfig):
    """What the kubelet writes for each dnsPolicy, with dnsConfig merged in."""
    def pod(name: str, **spec) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
                "spec": {"terminationGracePeriodSeconds": 0, **spec,
                         "containers": [{"name": "c", "image": "busybox",
                                         "command": ["sleep", "3600"]}]}}

    custom = {"nameservers": ["192.0.2.53"], "searches": ["corp.example"],
              "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}
    pods = {"cf": pod("dp-cf", dnsConfig=custom),
            "default": pod("dp-default", dnsPolicy="Default"),
            "none": pod("dp-none", dnsPolicy="None", dnsConfig=custom),
            "hostnet": pod("dp-hostnet", hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"),
            "hostnet-cf": pod("dp-hostnet-cf", hostNetwork=True)}
    for manifest in pods.values():
        cluster.apply(manifest)
    for manifest in pods.values():
        cluster.kubectl("wait", "--for=condition=Ready", f"pod/{manifest['metadata']['name']}",
                        "-n", NS, "--timeout=60s")
    got = {k: _resolv(cluster.kubectl("exec", m["metadata"]["name"], "-n", NS, "--", "cat",
                                      "/etc/resolv.conf").stdout) for k, m in pods.items()}
    host = _resolv(Path("/etc/resolv.conf").read_text())
    cluster_search = [f"{NS}.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert got["cf"] == {"nameserver": [config.cluster_dns, "192.0.2.53"],
                         "search": [*cluster_search, "corp.example"],
                         "options": ["ndots:2", "edns0"]}
    assert got["none"] == {"nameserver": ["192.0.2.53"], "search": ["corp.example"],
                           "options": ["ndots:2", "edns0"]}
    assert got["hostnet"] == {"nameserver": [config.cluster_dns], "search": cluster_search,
                              "options": ["ndots:5"]}
    for k in ("default", "hostnet-cf"):  # the node's own resolver configuration
        assert got[k]["nameserver"] == host["nameserver"] and \
            got[k]["search"] == host["search"], (k, got[k], host)
