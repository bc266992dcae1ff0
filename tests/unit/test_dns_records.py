"""Cluster DNS records (kwire.dns.records) against the Kubernetes DNS spec 1.0.1
and CoreDNS's kubernetes plugin: which names exist, with which records."""
from __future__ import annotations

from dnslib import QTYPE, RCODE

from kwire.dns.records import Zone, reverse_ip, service_records

DOMAIN = "cluster.local"


def service(name: str, ns: str = "default", **spec) -> dict:
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def endpoint(ip: str, ready: bool | None = True, hostname: str | None = None) -> dict:
    e: dict = {"addresses": [ip]}
    if ready is not None:
        e["conditions"] = {"ready": ready}
    if hostname:
        e["hostname"] = hostname
    return e


def slice_(*endpoints: dict, ports=(("http", 8080, "TCP"),), family: str = "IPv4") -> dict:
    return {"addressType": family, "endpoints": list(endpoints),
            "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports]}


WEB = service("web", clusterIP="10.96.0.20", clusterIPs=["10.96.0.20"], type="ClusterIP",
              ports=[{"name": "http", "port": 80, "protocol": "TCP"},
                     {"name": "dns", "port": 53, "protocol": "UDP"},
                     {"port": 9000, "protocol": "TCP"}])
HEADLESS = service("db", clusterIP="None", clusterIPs=["None"],
                   ports=[{"name": "http", "port": 8080, "protocol": "TCP"}])


def zone(*services: tuple[dict, list[dict]]) -> Zone:
    z = Zone(DOMAIN, ("10.96.0.0/12", "10.244.0.0/16"), nameservers=["10.96.0.10"])
    for svc, slices in services:
        key = f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"
        z.put(key, service_records(svc, slices, DOMAIN))
    return z


def ask(z: Zone, name: str, qtype: str = "A") -> tuple[int, list[str], list[str], list[str]]:
    """(rcode, answer, authority types, additional) as 'name type rdata' strings."""
    ans = z.lookup(name, getattr(QTYPE, qtype))
    assert ans is not None, f"{name} would be forwarded"

    def text(rrs):
        return [f"{r.rname} {QTYPE[r.rtype]} {r.rdata}" for r in rrs]

    return ans.rcode, text(ans.answer), [QTYPE[r.rtype] for r in ans.authority], \
        text(ans.additional)


def test_cluster_ip_service_a_record_echoes_the_question_case():
    z = zone((WEB, []))
    assert ask(z, "Web.Default.SVC.cluster.local.") == \
        (RCODE.NOERROR, ["Web.Default.SVC.cluster.local. A 10.96.0.20"], [], [])
    assert ask(z, "web.default.svc.cluster.local")[1] == \
        ["web.default.svc.cluster.local. A 10.96.0.20"]


def test_name_without_records_of_the_type_is_nodata_with_soa():
    z = zone((WEB, []))
    rcode, answer, authority, _ = ask(z, "web.default.svc.cluster.local", "AAAA")
    assert (rcode, answer, authority) == (RCODE.NOERROR, [], ["SOA"])
    assert ask(z, "web.default.svc.cluster.local", "TXT")[:3] == (RCODE.NOERROR, [], ["SOA"])


def test_unknown_names_are_nxdomain_with_soa_and_parents_exist():
    z = zone((WEB, []))
    for name in ("nope.default.svc.cluster.local", "web.other.svc.cluster.local",
                 "x.web.default.svc.cluster.local", "foo.cluster.local"):
        assert ask(z, name)[:3] == (RCODE.NXDOMAIN, [], ["SOA"]), name
    for name in ("default.svc.cluster.local", "svc.cluster.local", "cluster.local",
                 "_tcp.web.default.svc.cluster.local"):
        assert ask(z, name)[:3] == (RCODE.NOERROR, [], ["SOA"]), name


def test_soa_and_ns_at_the_apex():
    z = zone()
    ans = z.lookup("cluster.local.", QTYPE.SOA)
    [soa] = ans.answer
    assert str(soa.rdata.mname) == "ns.dns.cluster.local."
    assert str(soa.rdata.rname) == "hostmaster.cluster.local."
    assert (soa.ttl, soa.rdata.times[1:]) == (5, (7200, 1800, 86400, 5))
    assert ask(z, "cluster.local", "NS")[1::2] == (
        ["cluster.local. NS ns.dns.cluster.local."], ["ns.dns.cluster.local. A 10.96.0.10"])


def test_serial_grows_with_every_change():
    z = zone()
    before = z.serial
    z.put("default/web", service_records(WEB, [], DOMAIN))
    assert z.serial > before


def test_dns_version_txt():
    assert ask(zone(), "dns-version.cluster.local", "TXT")[1] == \
        ['dns-version.cluster.local. TXT "1.0.1"']


def test_srv_for_named_ports_target_the_service():
    z = zone((WEB, []))
    assert ask(z, "_http._tcp.web.default.svc.cluster.local", "SRV")[1::2] == (
        ["_http._tcp.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."],
        ["web.default.svc.cluster.local. A 10.96.0.20"])
    assert ask(z, "_dns._udp.web.default.svc.cluster.local", "SRV")[1] == \
        ["_dns._udp.web.default.svc.cluster.local. SRV 0 100 53 web.default.svc.cluster.local."]
    assert ask(z, "_dns._tcp.web.default.svc.cluster.local", "SRV")[0] == RCODE.NXDOMAIN
    # the bare name has every port, unnamed ones too, sharing the weight
    rcode, answer, _, extra = ask(z, "web.default.svc.cluster.local", "SRV")
    assert sorted(a.split()[-2] for a in answer) == ["53", "80", "9000"]
    assert {a.split()[3] for a in answer} == {"33"}
    assert extra == ["web.default.svc.cluster.local. A 10.96.0.20"]


def test_ptr_for_cluster_ips_and_endpoints():
    z = zone((WEB, [slice_(endpoint("10.244.1.5"))]),
             (HEADLESS, [slice_(endpoint("10.244.2.7", hostname="db-0"))]))
    assert ask(z, "20.0.96.10.in-addr.arpa", "PTR")[1] == \
        ["20.0.96.10.in-addr.arpa. PTR web.default.svc.cluster.local."]
    assert ask(z, "7.2.244.10.in-addr.arpa", "PTR")[1] == \
        ["7.2.244.10.in-addr.arpa. PTR db-0.db.default.svc.cluster.local."]
    assert ask(z, "5.1.244.10.in-addr.arpa", "PTR")[1] == \
        ["5.1.244.10.in-addr.arpa. PTR 10-244-1-5.web.default.svc.cluster.local."]
    # an unknown address of a cluster range is ours to deny; others go upstream
    assert ask(z, "9.9.244.10.in-addr.arpa", "PTR")[:3] == (RCODE.NXDOMAIN, [], ["SOA"])
    assert z.lookup("1.0.0.127.in-addr.arpa.", QTYPE.PTR) is None


def test_ptr_of_an_address_behind_two_services_names_both():
    other = service("web2", clusterIP="10.96.0.21", ports=[{"name": "http", "port": 80}])
    z = zone((WEB, [slice_(endpoint("10.244.1.5"))]), (other, [slice_(endpoint("10.244.1.5"))]))
    assert sorted(ask(z, "5.1.244.10.in-addr.arpa", "PTR")[1]) == [
        "5.1.244.10.in-addr.arpa. PTR 10-244-1-5.web.default.svc.cluster.local.",
        "5.1.244.10.in-addr.arpa. PTR 10-244-1-5.web2.default.svc.cluster.local."]
    z.delete("default/web2")
    assert len(ask(z, "5.1.244.10.in-addr.arpa", "PTR")[1]) == 1


def test_headless_service_has_one_a_record_per_ready_endpoint():
    slices = [slice_(endpoint("10.244.1.5", hostname="db-0"), endpoint("10.244.2.7"),
                     endpoint("10.244.3.9", ready=False), endpoint("10.244.4.1", ready=None)),
              slice_(endpoint("10.244.1.5", hostname="db-0"))]  # a duplicate across slices
    z = zone((HEADLESS, slices))
    rcode, answer, _, _ = ask(z, "db.default.svc.cluster.local")
    assert rcode == RCODE.NOERROR
    assert sorted(a.split()[-1] for a in answer) == ["10.244.1.5", "10.244.2.7", "10.244.4.1"]
    assert ask(z, "db-0.db.default.svc.cluster.local")[1] == \
        ["db-0.db.default.svc.cluster.local. A 10.244.1.5"]
    assert ask(z, "10-244-2-7.db.default.svc.cluster.local")[1] == \
        ["10-244-2-7.db.default.svc.cluster.local. A 10.244.2.7"]
    assert ask(z, "10-244-3-9.db.default.svc.cluster.local")[0] == RCODE.NXDOMAIN


def test_headless_srv_targets_each_endpoint_with_its_address():
    z = zone((HEADLESS, [slice_(endpoint("10.244.1.5", hostname="db-0"),
                                endpoint("10.244.2.7"))]))
    rcode, answer, _, extra = ask(z, "_http._tcp.db.default.svc.cluster.local", "SRV")
    assert sorted(answer) == [
        "_http._tcp.db.default.svc.cluster.local. SRV 0 50 8080 "
        "10-244-2-7.db.default.svc.cluster.local.",
        "_http._tcp.db.default.svc.cluster.local. SRV 0 50 8080 db-0.db.default.svc.cluster.local."]
    assert sorted(extra) == ["10-244-2-7.db.default.svc.cluster.local. A 10.244.2.7",
                             "db-0.db.default.svc.cluster.local. A 10.244.1.5"]


def test_headless_without_ready_endpoints_is_nxdomain():
    z = zone((HEADLESS, [slice_(endpoint("10.244.1.5", ready=False))]))
    assert ask(z, "db.default.svc.cluster.local")[0] == RCODE.NXDOMAIN


def test_publish_not_ready_reaches_dns_through_the_ready_condition():
    """The EndpointSlice controller marks endpoints ready when the Service publishes
    not-ready addresses; DNS follows the slice, as CoreDNS does."""
    svc = dict(HEADLESS, spec={**HEADLESS["spec"], "publishNotReadyAddresses": True})
    z = zone((svc, [slice_(endpoint("10.244.1.5", ready=True))]))
    assert ask(z, "db.default.svc.cluster.local")[1] == \
        ["db.default.svc.cluster.local. A 10.244.1.5"]


def test_headless_without_ports_still_has_addresses():
    z = zone((HEADLESS, [slice_(endpoint("10.244.1.5"), ports=())]))
    assert ask(z, "db.default.svc.cluster.local")[1] == \
        ["db.default.svc.cluster.local. A 10.244.1.5"]
    assert ask(z, "db.default.svc.cluster.local", "SRV")[:3] == (RCODE.NOERROR, [], ["SOA"])


def test_ipv6_addresses_are_aaaa_records():
    svc = service("v6", clusterIP="None", clusterIPs=["None"])
    z = zone((svc, [slice_(endpoint("fd00::5"), family="IPv6"),
                    slice_(endpoint("10.244.1.5"))]))
    assert ask(z, "v6.default.svc.cluster.local", "AAAA")[1] == \
        ["v6.default.svc.cluster.local. AAAA fd00::5"]
    assert ask(z, "fd00--5.v6.default.svc.cluster.local", "AAAA")[1] == \
        ["fd00--5.v6.default.svc.cluster.local. AAAA fd00::5"]
    assert ask(z, "v6.default.svc.cluster.local", "A")[1] == \
        ["v6.default.svc.cluster.local. A 10.244.1.5"]


def test_fqdn_slices_are_ignored():
    z = zone((HEADLESS, [{"addressType": "FQDN", "endpoints": [
        {"addresses": ["example.com"], "conditions": {"ready": True}}]}]))
    assert ask(z, "db.default.svc.cluster.local")[0] == RCODE.NXDOMAIN


def test_external_name_is_a_cname():
    ext = service("ext", type="ExternalName", externalName="db.example.com")
    z = zone((ext, []))
    ans = z.lookup("ext.default.svc.cluster.local.", QTYPE.CNAME)
    assert [str(r.rdata) for r in ans.answer] == ["db.example.com."]
    assert ans.chase is None
    # other types: the CNAME, and the target to resolve upstream
    ans = z.lookup("EXT.default.svc.cluster.local.", QTYPE.A)
    assert [f"{r.rname} {r.rdata}" for r in ans.answer] == \
        ["EXT.default.svc.cluster.local. db.example.com."]
    assert ans.chase == "db.example.com."


def test_external_name_into_the_cluster_is_followed_here():
    ext = service("alias", type="ExternalName", externalName="web.default.svc.cluster.local")
    z = zone((ext, []), (WEB, []))
    assert ask(z, "alias.default.svc.cluster.local")[1] == [
        "alias.default.svc.cluster.local. CNAME web.default.svc.cluster.local.",
        "web.default.svc.cluster.local. A 10.96.0.20"]
    dangling = service("gone", type="ExternalName", externalName="nope.default.svc.cluster.local")
    z.put("default/gone", service_records(dangling, [], DOMAIN))
    rcode, answer, authority, _ = ask(z, "gone.default.svc.cluster.local")
    assert (rcode, len(answer), authority) == (RCODE.NXDOMAIN, 1, ["SOA"])


def test_pod_names_answer_from_the_name():
    z = zone()
    assert ask(z, "10-244-1-5.default.pod.cluster.local")[1] == \
        ["10-244-1-5.default.pod.cluster.local. A 10.244.1.5"]
    assert ask(z, "10-244-1-5.default.pod.cluster.local", "AAAA")[:3] == \
        (RCODE.NOERROR, [], ["SOA"])
    assert ask(z, "not-an-ip.default.pod.cluster.local")[0] == RCODE.NXDOMAIN
    assert ask(z, "default.pod.cluster.local")[0] == RCODE.NOERROR


def test_deleting_a_service_removes_its_names_and_parents():
    z = zone((WEB, []))
    z.delete("default/web")
    assert ask(z, "web.default.svc.cluster.local")[0] == RCODE.NXDOMAIN
    assert ask(z, "default.svc.cluster.local")[0] == RCODE.NXDOMAIN
    assert ask(z, "20.0.96.10.in-addr.arpa", "PTR")[0] == RCODE.NXDOMAIN


def test_names_outside_the_zone_are_not_answered():
    z = zone((WEB, []))
    assert z.lookup("example.com.", QTYPE.A) is None
    assert z.lookup("cluster.local.example.com.", QTYPE.A) is None
    assert z.lookup("4.3.2.1.in-addr.arpa.", QTYPE.PTR) is None


def test_reverse_ip():
    assert str(reverse_ip("10.0.96.10.in-addr.arpa.")) == "10.96.0.10"
    assert reverse_ip("96.10.in-addr.arpa.") is None
    assert reverse_ip("x.0.96.10.in-addr.arpa.") is None
    assert str(reverse_ip("1.0." + "0." * 28 + "d.f.ip6.arpa.")) == "fd00::1"
