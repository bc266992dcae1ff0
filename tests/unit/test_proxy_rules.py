"""The service proxy's pure part (net/proxy.py): Services + EndpointSlices -> the model,
what a packet gets from it, its nftables text (checked by the real `nft -c`), and the
partial diff."""
import os
import shutil
import subprocess

import pytest

from kwire.net.proxy import (
    DROP,
    MAX_NAME,
    REJECT,
    Packet,
    Tracker,
    build,
    chain_name,
    diff,
    evaluate,
    render,
    ruleset,
    stale_udp,
)

NODE, NODE_IP, POD = "n1", "172.18.0.2", "10.244.1.9"


def svc(name, ports, ip="10.96.0.10", ns="default", status=None, **spec):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports, **spec}, "status": status or {}}


def port(port, name="", proto="TCP", node_port=None):
    p = {"name": name, "port": port, "protocol": proto}
    if node_port:
        p["nodePort"] = node_port
    return p


def ep(ip, node=NODE, ready=True, serving=None, terminating=False):
    cond = {"ready": ready, "terminating": terminating}
    if serving is not None:
        cond["serving"] = serving
    return {"addresses": [ip], "nodeName": node, "conditions": cond}


def eps(service, ports, endpoints, ns="default", name=None):
    return {"metadata": {"name": name or service + "-abc", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": ports, "endpoints": endpoints}


def state(services, slices, node=NODE, node_ips=(NODE_IP,)):
    return build(services, slices, node, node_ips)


def go(st, dst, dport, proto="tcp", src=POD, local=False, affinity=None):
    return evaluate(st, Packet(src, dst, proto, dport, local), affinity)


WEB = svc("web", [port(80, "http"), port(443, "https")])
WEB_EPS = eps("web", [port(8080, "http"), port(8443, "https")],
              [ep("10.244.1.5"), ep("10.244.2.5", node="n2")])


def test_clusterip_multi_port_picks_among_ready_endpoints():
    st = state([WEB], [WEB_EPS])
    v = go(st, "10.96.0.10", 80)
    assert v.kind == "dnat" and v.endpoints == {"10.244.1.5:8080", "10.244.2.5:8080"}
    assert go(st, "10.96.0.10", 443).endpoints == {"10.244.1.5:8443", "10.244.2.5:8443"}
    assert not v.masquerade  # pod to service: the client IP is kept
    assert go(st, "10.96.0.10", 8080).kind == "accept"  # not a service port
    assert go(st, "10.96.0.11", 80).kind == "accept"
    assert str(go(state([WEB], [eps("web", [port(8080, "http")], [ep("10.244.1.5")])]),
                  "10.96.0.10", 80)) == "dnat 10.244.1.5:8080"


def test_named_target_ports_resolved_per_slice():
    slices = [eps("web", [port(8080, "http")], [ep("10.244.1.5")], name="a"),
              eps("web", [port(9090, "http")], [ep("10.244.2.5")], name="b")]
    assert go(state([WEB], slices), "10.96.0.10", 80).endpoints == {
        "10.244.1.5:8080", "10.244.2.5:9090"}


def test_udp_and_sctp_ports():
    s = svc("dns", [port(53, "dns", "UDP"), port(53, "dns-tcp"), port(99, "s", "SCTP")])
    sl = eps("dns", [port(5353, "dns", "UDP"), port(5353, "dns-tcp"), port(99, "s", "SCTP")],
             [ep("10.244.1.6")])
    st = state([s], [sl])
    assert str(go(st, "10.96.0.10", 53, "udp")) == "dnat 10.244.1.6:5353"
    assert str(go(st, "10.96.0.10", 53, "tcp")) == "dnat 10.244.1.6:5353"
    assert str(go(st, "10.96.0.10", 99, "sctp")) == "dnat 10.244.1.6:99"
    text = render(st)
    line = next(x for x in text.splitlines() if x.startswith("  map endpoints-0 "))
    assert line.startswith("  map endpoints-0 { type ipv4_addr . inet_proto . inet_service : "
                           "ipv4_addr . inet_service; elements = { ")
    for element in ("10.96.0.10 . sctp . 99 : 10.244.1.6 . 99",
                    "10.96.0.10 . tcp . 53 : 10.244.1.6 . 5353",
                    "10.96.0.10 . udp . 53 : 10.244.1.6 . 5353"):
        assert element in line
    assert go(st, "10.96.0.10", 99, "udp").kind == "accept"


def test_protocol_must_match_slice_port():
    sl = eps("web", [port(8080, "http", "UDP")], [ep("10.244.1.5")])
    assert go(state([svc("web", [port(80, "http")])], [sl]), "10.96.0.10", 80).kind == "reject"


def test_only_ready_endpoints_then_serving_terminating():
    sl = eps("web", [port(8080, "http")],
             [ep("10.244.1.5"), ep("10.244.1.6", ready=False),
              ep("10.244.1.7", ready=False, serving=True, terminating=True)])
    s = svc("web", [port(80, "http")])
    assert go(state([s], [sl]), "10.96.0.10", 80).endpoints == {"10.244.1.5:8080"}
    sl["endpoints"] = sl["endpoints"][1:]  # no ready one left: the terminating still serve
    assert go(state([s], [sl]), "10.96.0.10", 80).endpoints == {"10.244.1.7:8080"}
    sl["endpoints"] = [ep("10.244.1.7", ready=False, serving=False, terminating=True)]
    assert go(state([s], [sl]), "10.96.0.10", 80).kind == "reject"


def test_nil_ready_counts_as_ready_and_duplicates_merge():
    sl = eps("web", [port(8080, "http")], [{"addresses": ["10.244.1.5"]}])
    sl2 = eps("web", [port(8080, "http")], [ep("10.244.1.5")], name="other")
    v = go(state([svc("web", [port(80, "http")])], [sl, sl2]), "10.96.0.10", 80)
    assert v.endpoints == {"10.244.1.5:8080"}


def test_no_endpoints_rejects_tcp_reset_and_icmp_for_udp():
    s = svc("empty", [port(80), port(53, proto="UDP")])
    st = state([s], [])
    assert go(st, "10.96.0.10", 80).kind == "reject"
    assert go(st, "10.96.0.10", 53, "udp").kind == "reject"
    text = render(st)
    assert "10.96.0.10 . tcp . 80 : goto reject-chain" in text
    assert "meta l4proto tcp reject with tcp reset\n    reject\n" in text
    assert not st.service_ips and not st.chains


def test_headless_and_externalname_are_skipped():
    st = state([svc("h", [port(80)], ip="None"),
                svc("x", [port(80)], ip="", type="ExternalName", externalName="a.b")], [])
    assert not st.service_ips and not st.no_endpoint_services


def test_hairpin_and_off_cluster_sources_are_masqueraded():
    st = state([WEB], [WEB_EPS])
    v = go(st, "10.96.0.10", 80, src="10.244.1.5")
    assert v.masquerade == {"10.244.1.5:8080"}  # only if it lands on itself
    assert go(st, "10.96.0.10", 80, src=NODE_IP, local=True).masquerade == v.endpoints
    text = render(st)
    # only this node's endpoints: another node's pod hairpins through its own node
    assert "hairpin-endpoints { type ipv4_addr . ipv4_addr; elements = { 10.244.1.5 . " \
        "10.244.1.5 } }" in text
    assert "ct status dnat ip saddr . ip daddr @hairpin-endpoints jump mark-for-masquerade" \
        in text
    line = next(x for x in text.splitlines() if x.startswith("  set cluster-ips "))
    assert "10.96.0.10 . tcp . 80" in line and "10.96.0.10 . tcp . 443" in line
    assert ("ip daddr . meta l4proto . th dport @cluster-ips ip saddr != 10.244.0.0/16 "
            "jump mark-for-masquerade") in text
    assert go(st, "10.96.0.10", 80, src="172.30.0.1").masquerade == v.endpoints
    assert "meta mark & 0x4000 == 0 return" in text and "masquerade fully-random" in text


def test_nodeport_on_node_addresses_only():
    s = svc("np", [port(80, "http", node_port=30080)], type="NodePort")
    sl = eps("np", [port(8080, "http")], [ep("10.244.1.5"), ep("10.244.2.5", node="n2")])
    st = state([s], [sl], node_ips=(NODE_IP, "172.18.1.2"))
    for ip in (NODE_IP, "172.18.1.2"):
        v = go(st, ip, 30080, src="172.18.0.1")
        assert v.endpoints == {"10.244.1.5:8080", "10.244.2.5:8080"}
        assert v.masquerade == v.endpoints  # externalTrafficPolicy Cluster
    assert go(st, "172.18.0.9", 30080).kind == "accept"
    assert go(st, "10.96.0.10", 80).kind == "dnat"
    assert "tcp . 30080 : goto external-" in render(st)
    assert "set nodeport-ips { type ipv4_addr; elements = { 172.18.0.2, 172.18.1.2 } }" \
        in render(st)


def test_nodeport_ignored_on_clusterip_type():
    st = state([svc("c", [port(80, node_port=30080)])], [])
    assert not st.no_endpoint_nodeports and not st.service_nodeports


def test_external_ips_and_load_balancer_ingress():
    s = svc("lb", [port(80, "http", node_port=30081)], type="LoadBalancer",
            externalIPs=["192.0.2.10"],
            status={"loadBalancer": {"ingress": [{"ip": "192.0.2.50"}, {"hostname": "x"}]}})
    sl = eps("lb", [port(8080, "http")], [ep("10.244.1.5")])
    st = state([s], [sl])
    for ip in ("192.0.2.10", "192.0.2.50"):
        v = go(st, ip, 80, src="192.0.2.1")
        assert str(v) == "dnat 10.244.1.5:8080" and v.masquerade
    assert go(st, "192.0.2.50", 81).kind == "accept"
    # externalIPs also work on a plain ClusterIP Service
    st2 = state([svc("e", [port(80, "http")], externalIPs=["192.0.2.11"])],
                [eps("e", [port(8080, "http")], [ep("10.244.1.5")])])
    assert str(go(st2, "192.0.2.11", 80)) == "dnat 10.244.1.5:8080"


def test_external_destinations_without_endpoints_reject():
    s = svc("lb", [port(80, node_port=30082)], type="LoadBalancer", externalIPs=["192.0.2.10"])
    st = state([s], [])
    assert go(st, "192.0.2.10", 80).kind == "reject"
    assert go(st, NODE_IP, 30082).kind == "reject"
    assert st.no_endpoint_nodeports == {("tcp", 30082): REJECT}


def test_session_affinity_client_ip():
    s = svc("web", [port(80, "http")], sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    st = state([s], [WEB_EPS])
    assert len(st.affinity_sets) == 2
    (chosen,) = [n for n in st.affinity_sets if "10.244.2.5" in n]
    assert go(st, "10.96.0.10", 80).endpoints == {"10.244.1.5:8080", "10.244.2.5:8080"}
    stuck = go(st, "10.96.0.10", 80, affinity={chosen: [POD]})
    assert str(stuck) == "dnat 10.244.2.5:8080"
    assert go(st, "10.96.0.10", 80, src="10.244.3.3", affinity={chosen: [POD]}).kind == "dnat"
    text = render(st)
    assert f"update @{chosen} {{ ip saddr timeout 60s }}" in text
    assert f"ip saddr @{chosen} goto endpoint-" in text
    assert f"set {chosen} {{ type ipv4_addr; flags dynamic,timeout; }}" in text


def test_session_affinity_default_timeout():
    st = state([svc("web", [port(80, "http")], sessionAffinity="ClientIP")], [WEB_EPS])
    assert "timeout 10800s" in render(st)


def test_internal_traffic_policy_local():
    s = svc("web", [port(80, "http")], internalTrafficPolicy="Local")
    st = state([s], [WEB_EPS])
    assert str(go(st, "10.96.0.10", 80)) == "dnat 10.244.1.5:8080"
    st3 = state([s], [WEB_EPS], node="n3")  # endpoints exist, none here: drop
    assert go(st3, "10.96.0.10", 80).kind == "drop"
    assert st3.no_endpoint_services == {("10.96.0.10", "tcp", 80): DROP}


def test_external_traffic_policy_local_keeps_client_ip():
    s = svc("lb", [port(80, "http", node_port=30080)], type="LoadBalancer",
            externalTrafficPolicy="Local",
            status={"loadBalancer": {"ingress": [{"ip": "192.0.2.50"}]}})
    st = state([s], [eps("lb", [port(8080, "http")],
                         [ep("10.244.1.5"), ep("10.244.2.5", node="n2")])])
    for dst, dport in (("192.0.2.50", 80), (NODE_IP, 30080)):
        v = go(st, dst, dport, src="192.0.2.1")
        assert str(v) == "dnat 10.244.1.5:8080" and not v.masquerade
    # pods and the node itself still reach every endpoint (the node's is masqueraded)
    assert len(go(st, "192.0.2.50", 80).endpoints) == 2
    v = go(st, NODE_IP, 30080, src=NODE_IP, local=True)
    assert len(v.endpoints) == 2 and v.masquerade == v.endpoints
    # the ClusterIP keeps the Cluster policy
    assert len(go(st, "10.96.0.10", 80).endpoints) == 2
    st3 = state([s], [eps("lb", [port(8080, "http")], [ep("10.244.2.5", node="n2")])])
    assert go(st3, "192.0.2.50", 80, src="192.0.2.1").kind == "drop"
    assert go(st3, NODE_IP, 30080, src="192.0.2.1").kind == "drop"
    assert str(go(st3, "10.96.0.10", 80)) == "dnat 10.244.2.5:8080"


def test_external_traffic_policy_ignored_on_clusterip_type():
    s = svc("e", [port(80, "http")], externalIPs=["192.0.2.11"], externalTrafficPolicy="Local")
    st = state([s], [eps("e", [port(8080, "http")], [ep("10.244.2.5", node="n2")])])
    assert go(st, "192.0.2.11", 80, src="192.0.2.1").masquerade


def test_names_follow_kube_proxy_and_stay_within_nft_limits():
    plain = state([WEB], [WEB_EPS])
    assert set(plain.chains) == {"random-2", "pick-0", "pick-1"}  # none per service
    assert plain.service_ips[("10.96.0.10", "tcp", 80)] == "goto random-2"
    st = state([svc("web", [port(80, "http")], sessionAffinity="ClientIP")], [WEB_EPS])
    name = chain_name("service", "default/web/tcp/http")
    assert name.startswith("service-") and name.endswith("-default/web/tcp/http")
    assert len(name.split("-")[1]) == 8 and name in st.chains
    assert chain_name("endpoint", "default/web/tcp/http__10.244.1.5/8080") in st.chains
    assert st.service_ips[("10.96.0.10", "tcp", 80)] == f"goto {name}"
    unnamed = state([svc("u", [port(80)], internalTrafficPolicy="Local")],
                    [eps("u", [port(8080)], [ep("10.244.1.5")])])
    assert chain_name("local", "default/u/tcp/80") in unnamed.chains
    long_a, long_b = "x" * 300 + "a", "x" * 300 + "b"
    a, b = chain_name("endpoint", long_a), chain_name("endpoint", long_b)
    assert len(a) == len(b) == MAX_NAME and a != b


def test_same_inputs_same_text():
    assert ruleset([WEB], [WEB_EPS], NODE, [NODE_IP]) == \
        ruleset([WEB], [dict(WEB_EPS)], NODE, [NODE_IP])


def _lines(text):
    return [line for line in text.splitlines() if line]


def test_diff_adds_only_the_new_service():
    old = state([WEB], [WEB_EPS])
    db = svc("db", [port(5432)], ip="10.96.0.20")
    new = state([WEB, db], [WEB_EPS, eps("db", [port(5432)], [ep("10.244.1.8")])])
    lines = _lines(diff(old, new))
    assert all("web" not in line for line in lines)
    assert "add chain ip kwire-proxy random-1" in lines
    assert "add rule ip kwire-proxy random-1 goto pick-0" in lines
    assert "add element ip kwire-proxy endpoints-0 { 10.96.0.20 . tcp . 5432 : " \
        "10.244.1.8 . 5432 }" in lines
    assert lines[-1] == "add element ip kwire-proxy service-ips { 10.96.0.20 . tcp . 5432 : " \
        "goto random-1 }"
    assert not any(line.startswith(("delete", "flush")) for line in lines)
    assert diff(new, new) == ""


def test_diff_removes_endpoint_and_service():
    old = state([WEB], [WEB_EPS])
    one = eps("web", [port(8080, "http"), port(8443, "https")], [ep("10.244.1.5")])
    new = state([WEB], [one])
    lines = _lines(diff(old, new))
    assert lines == [
        "delete element ip kwire-proxy service-ips { 10.96.0.10 . tcp . 80, "
        "10.96.0.10 . tcp . 443 }",
        "add chain ip kwire-proxy random-1",
        "add rule ip kwire-proxy random-1 goto pick-0",
        "flush chain ip kwire-proxy pick-1",
        "flush chain ip kwire-proxy random-2",
        "delete chain ip kwire-proxy pick-1",
        "delete chain ip kwire-proxy random-2",
        "delete map ip kwire-proxy endpoints-1",  # after the chain using it, with its elements
        "add element ip kwire-proxy service-ips { 10.96.0.10 . tcp . 80 : goto random-1, "
        "10.96.0.10 . tcp . 443 : goto random-1 }"]
    lines = _lines(diff(new, state([], [])))
    assert lines[0].startswith("delete element ip kwire-proxy service-ips {")
    assert lines[-1] == "delete map ip kwire-proxy endpoints-0"


def test_diff_moves_service_to_no_endpoints():
    old = state([WEB], [WEB_EPS])
    lines = _lines(diff(old, state([WEB], [])))
    assert lines[0].startswith("delete element ip kwire-proxy service-ips")
    assert lines[-1] == ("add element ip kwire-proxy no-endpoint-services { 10.96.0.10 . tcp "
                         ". 80 : goto reject-chain, 10.96.0.10 . tcp . 443 : goto reject-chain }")


def test_diff_from_nothing_is_full_render():
    new = state([WEB], [WEB_EPS])
    assert diff(None, new) == render(new)


# --- the real nft ---------------------------------------------------------------------

def _representative():
    services = [
        WEB,
        svc("dns", [port(53, "dns", "UDP"), port(53, "dns-tcp"), port(99, "s", "SCTP")],
            ip="10.96.0.11"),
        svc("np", [port(80, "http", node_port=30080)], ip="10.96.0.12", type="NodePort",
            sessionAffinity="ClientIP", externalIPs=["192.0.2.10"]),
        svc("lb", [port(80, "http", node_port=30081)], ip="10.96.0.13", type="LoadBalancer",
            externalTrafficPolicy="Local", internalTrafficPolicy="Local",
            status={"loadBalancer": {"ingress": [{"ip": "192.0.2.50"}]}}),
        svc("empty", [port(80), port(53, proto="UDP", node_port=30082)], ip="10.96.0.14",
            type="NodePort"),
        svc("remote", [port(80, "http", node_port=30083)], ip="10.96.0.15", type="NodePort",
            externalTrafficPolicy="Local"),
        svc("n" * 63, [port(80, "p" * 15)], ip="10.96.0.16", ns="s" * 63),
    ]
    two = [ep("10.244.1.5"), ep("10.244.2.5", node="n2")]
    slices = [WEB_EPS,
              eps("dns", [port(5353, "dns", "UDP"), port(5353, "dns-tcp"), port(99, "s", "SCTP")],
                  [ep("10.244.1.6")]),
              eps("np", [port(8080, "http")], two),
              eps("lb", [port(8080, "http")], two),
              eps("remote", [port(8080, "http")], [ep("10.244.2.5", node="n2")]),
              eps("n" * 63, [port(8080, "p" * 15)], [ep("10.244.255.255")], ns="s" * 63)]
    return services, slices


needs_nft = pytest.mark.skipif(shutil.which("nft") is None or os.geteuid() != 0,
                               reason="nft -c needs the nft binary and root")


def _nft_check(text, tmp_path):
    f = tmp_path / "rules.nft"
    f.write_text(text)
    r = subprocess.run(["nft", "-c", "-f", str(f)], check=False, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr + "\n" + text


@needs_nft
def test_nft_accepts_the_rendered_ruleset(tmp_path):
    services, slices = _representative()
    text = ruleset(services, slices, NODE, [NODE_IP, "172.18.1.2"])
    _nft_check(text, tmp_path)


@needs_nft
def test_nft_accepts_a_diff_after_the_full_ruleset(tmp_path):
    """The diff checked in the same batch as the state it applies to."""
    services, slices = _representative()
    old = state(services, slices)
    services2 = [s for s in services if s["metadata"]["name"] != "dns"]
    services2.append(svc("new", [port(80, "http")], ip="10.96.0.30",
                         sessionAffinity="ClientIP"))
    slices2 = [s for s in slices if s["metadata"]["labels"]["kubernetes.io/service-name"]
               not in ("web", "dns")]
    slices2 += [eps("web", [port(8080, "http"), port(8443, "https")], [ep("10.244.1.5")]),
                eps("new", [port(8080, "http")], [ep("10.244.1.7")])]
    new = build(services2, slices2, NODE, [NODE_IP])
    change = diff(old, new)
    assert "delete chain" in change and "add chain" in change and "add set" in change
    _nft_check(render(old) + change, tmp_path)


def test_stale_udp_flows_of_removed_endpoints():
    s = svc("dns", [port(53, "dns", "UDP", node_port=30053), port(53, "t")], type="NodePort")
    both = eps("dns", [port(5353, "dns", "UDP"), port(5353, "t")],
               [ep("10.244.1.6"), ep("10.244.2.6", node="n2")])
    one = eps("dns", [port(5353, "dns", "UDP"), port(5353, "t")], [ep("10.244.1.6")])
    old, new = state([s], [both]), state([s], [one])
    assert stale_udp(old, new) == {("10.96.0.10", 53, "10.244.2.6"),
                                   (NODE_IP, 30053, "10.244.2.6")}  # TCP needs no flush
    assert stale_udp(new, old) == set()
    assert stale_udp(old, state([s], [])) == {
        ("10.96.0.10", 53, "10.244.1.6"), ("10.96.0.10", 53, "10.244.2.6"),
        (NODE_IP, 30053, "10.244.1.6"), (NODE_IP, 30053, "10.244.2.6")}


def test_random_choice_is_a_fair_cascade():
    five = eps("web", [port(8080, "http")], [ep(f"10.244.1.{i}") for i in range(1, 6)])
    st = state([svc("web", [port(80, "http")], internalTrafficPolicy="Local")], [five])
    rules = st.chains[chain_name("local", "default/web/tcp/http")]
    picks = [r for r in rules if r.action == "dnat"]
    # P(i-th) = prod_{j<i} (1 - 1/(5-j)) * 1/(5-i) = 1/5 for every endpoint
    assert [m.args for r in picks for m in r.matches] == [(5,), (4,), (3,), (2,)]
    assert not picks[-1].matches
    assert go(st, "10.96.0.10", 80).endpoints == {f"10.244.1.{i}:8080" for i in range(1, 6)}


def test_tracker_touches_only_what_changed_and_agrees_with_a_full_build():
    db = svc("db", [port(5432)], ip="10.96.0.20")
    db_eps = eps("db", [port(5432)], [ep("10.244.1.5")])  # also behind web: shared pair
    tracker = Tracker(NODE, [NODE_IP], "10.244.0.0/16")
    tracker.update({("default", "web"): (WEB, [WEB_EPS]), ("default", "db"): (db, [db_eps])})
    full_old = tracker.state()
    assert full_old == state([WEB, db], [WEB_EPS, db_eps])

    moved = eps("db", [port(5432)], [ep("10.244.1.8")])
    before, after = tracker.update({("default", "db"): (db, [moved])})
    assert all("10.96.0.10" not in str(k) for k in before.service_ips)  # web not touched
    assert tracker.state() == state([WEB, db], [WEB_EPS, moved])
    assert set(_lines(diff(before, after))) == set(_lines(diff(full_old, tracker.state())))
    assert "10.244.1.5" in {ip for ip in tracker.state().hairpin}  # web still needs it

    before, after = tracker.update({("default", "web"): (None, [])})
    assert tracker.state() == state([db], [moved])
    assert "delete chain ip kwire-proxy random-2" in _lines(diff(before, after))
    assert "random-1" in tracker.state().chains  # db's shared chain stays
