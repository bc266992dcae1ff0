"""ServiceAllocator: ClusterIPs (upper band first, static band, requested IPs, headless,
ExternalName, updates) and NodePorts (allocation, keeping, range, conflicts, exhaustion)."""
import ipaddress
import random

import pytest

from kwire.api.allocators import ServiceAllocator, addresses, parse_port_range
from kwire.api.errors import APIError
from kwire.api.validation import Cause


def svc(type_=None, ip=None, ports=()):
    spec = {"ports": [dict(p) for p in ports]}
    if type_:
        spec["type"] = type_
    if ip:
        spec["clusterIP"] = ip
    return {"metadata": {"name": "s"}, "spec": spec}


def port(number, protocol="TCP", node_port=None):
    p = {"port": number, "protocol": protocol}
    if node_port:
        p["nodePort"] = node_port
    return p


def allocator(cidr="10.0.0.0/24", ports="30000-30004", seed=1):
    return ServiceAllocator(cidr, ports, random.Random(seed))


def allocate(alloc, s, old, others):
    """ServiceAllocator.allocate, given the other Services themselves."""
    held = [addresses(o) for o in others]
    return alloc.allocate(s, old, {ip for ips_, _ in held for ip in ips_},
                          {p for _, ports in held for p in ports})


def ips(first, last):
    """Every address from first to last, inclusive, as strings."""
    lo, hi = int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last))
    return {str(ipaddress.ip_address(n)) for n in range(lo, hi + 1)}


def fill(alloc, count, others):
    """Allocate count services, each seeing the ones before it; their IPs in order."""
    out = []
    for _ in range(count):
        s = svc()
        assert allocate(alloc, s, None, others) == []
        others.append(s)
        out.append(s["spec"]["clusterIP"])
    return out


# --- ClusterIP ------------------------------------------------------------------------


def test_parse_port_range():
    assert parse_port_range("30000-32767") == (30000, 32767)
    assert parse_port_range("30080") == (30080, 30080)


@pytest.mark.parametrize("cidr, band", [
    ("10.0.0.0/29", 0), ("10.0.0.0/28", 0), ("10.0.0.0/27", 16), ("10.0.0.0/24", 16),
    ("10.0.0.0/22", 64), ("10.0.0.0/20", 256), ("10.96.0.0/12", 256)])
def test_static_band_size_follows_upstream(cidr, band):
    # ipallocator calculateRangeOffset: min(max(16, size/16), 256), 0 for size <= 16.
    assert allocator(cidr).static_band == band


def test_dynamic_ips_come_from_the_upper_band_first():
    alloc = allocator("10.0.0.0/27")  # usable .1-.30, static band .1-.16
    others: list[dict] = []
    upper = fill(alloc, 14, others)
    assert set(upper) == ips("10.0.0.17", "10.0.0.30")
    lower = fill(alloc, 16, others)
    assert set(lower) == ips("10.0.0.1", "10.0.0.16")
    with pytest.raises(APIError) as e:
        allocate(alloc, svc(), None, others)
    assert (e.value.code, e.value.reason, e.value.message) == (
        500, "InternalError", "Internal error occurred: failed to allocate a serviceIP: "
                              "range is full")


def test_small_range_uses_every_usable_address_then_is_full():
    alloc = allocator("10.0.0.0/29")
    others: list[dict] = []
    assert set(fill(alloc, 6, others)) == ips("10.0.0.1", "10.0.0.6")
    with pytest.raises(APIError) as e:
        allocate(alloc, svc(), None, others)
    assert e.value.code == 500 and e.value.message.endswith("range is full")


def test_allocation_sets_cluster_ip_and_cluster_ips():
    s = svc()
    assert allocate(allocator(), s, None, []) == []
    ip = s["spec"]["clusterIP"]
    assert s["spec"]["clusterIPs"] == [ip]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.0.0.0/24")
    assert int(ipaddress.ip_address(ip).packed[-1]) >= 17  # not from the static band


def test_allocation_is_deterministic_for_a_seed():
    first = svc()
    second = svc()
    allocate(allocator(seed=42), first, None, [])
    allocate(allocator(seed=42), second, None, [])
    assert first["spec"]["clusterIP"] == second["spec"]["clusterIP"]


def test_requested_ip_in_the_static_band():
    s = svc(ip="10.0.0.10")
    assert allocate(allocator(), s, None, []) == []
    assert (s["spec"]["clusterIP"], s["spec"]["clusterIPs"]) == ("10.0.0.10", ["10.0.0.10"])


def test_requested_ip_through_cluster_ips_only():
    s = {"metadata": {"name": "s"}, "spec": {"clusterIPs": ["10.0.0.200"]}}
    assert allocate(allocator(), s, None, []) == []
    assert (s["spec"]["clusterIP"], s["spec"]["clusterIPs"]) == ("10.0.0.200", ["10.0.0.200"])


@pytest.mark.parametrize("ip", ["10.0.1.5", "10.0.0.0", "10.0.0.255", "192.168.0.1"])
def test_requested_ip_out_of_range(ip):
    s = svc(ip=ip)
    assert allocate(allocator(), s, None, []) == [Cause(
        "spec.clusterIPs[0]", "FieldValueInvalid",
        f'Invalid value: "{ip}": provided IP is not in the valid range. The range of valid '
        "IPs is 10.0.0.0/24")]


def test_requested_ip_that_is_not_an_address():
    assert allocate(allocator(), svc(ip="10.0.0.300"), None, []) == [Cause(
        "spec.clusterIPs[0]", "FieldValueInvalid",
        'Invalid value: "10.0.0.300": must be a valid IP address')]


def test_requested_ip_already_allocated():
    others = [{"spec": {"clusterIP": "10.0.0.10", "clusterIPs": ["10.0.0.10"]}}]
    assert allocate(allocator(), svc(ip="10.0.0.10"), None, others) == [Cause(
        "spec.clusterIPs[0]", "FieldValueInvalid",
        'Invalid value: "10.0.0.10": provided IP is already allocated')]


def test_in_use_ips_come_from_cluster_ip_when_cluster_ips_is_missing():
    others = [{"spec": {"clusterIP": "10.0.0.10"}}]
    assert allocate(allocator(), svc(ip="10.0.0.10"), None, others)[0].message.endswith(
        "provided IP is already allocated")


def test_headless_services_get_none_and_do_not_use_addresses():
    alloc = allocator("10.0.0.0/29")
    others: list[dict] = [{"spec": {"clusterIP": "None", "clusterIPs": ["None"]}}]
    s = svc(ip="None")
    assert allocate(alloc, s, None, others) == []
    assert (s["spec"]["clusterIP"], s["spec"]["clusterIPs"]) == ("None", ["None"])
    others.append(s)
    assert set(fill(alloc, 6, others)) == ips("10.0.0.1", "10.0.0.6")


def test_external_name_services_have_no_cluster_ip():
    s = svc("ExternalName", ip="10.0.0.10")
    s["spec"]["clusterIPs"] = ["10.0.0.10"]
    assert allocate(allocator(), s, None, []) == []
    assert "clusterIP" not in s["spec"] and "clusterIPs" not in s["spec"]
    assert s["spec"]["ports"] == []


def test_update_keeps_the_old_ip():
    old = svc(ip="10.0.0.20")
    old["spec"]["clusterIPs"] = ["10.0.0.20"]
    new = svc()
    # The service itself is not among the others; another one holding the address
    # would be a conflict, which only a new request can hit.
    assert allocate(allocator(), new, old, []) == []
    assert (new["spec"]["clusterIP"], new["spec"]["clusterIPs"]) == ("10.0.0.20", ["10.0.0.20"])
    same = svc(ip="10.0.0.20")
    assert allocate(allocator(), same, old, []) == []
    assert same["spec"]["clusterIPs"] == ["10.0.0.20"]


def test_update_of_a_headless_service_stays_headless():
    old = svc(ip="None")
    new = svc()
    assert allocate(allocator(), new, old, []) == []
    assert (new["spec"]["clusterIP"], new["spec"]["clusterIPs"]) == ("None", ["None"])


def test_update_from_external_name_allocates():
    new = svc()
    assert allocate(allocator(), new, svc("ExternalName"), []) == []
    assert ipaddress.ip_address(new["spec"]["clusterIP"]) in ipaddress.ip_network("10.0.0.0/24")


# --- NodePort ---------------------------------------------------------------------------


@pytest.mark.parametrize("type_", ["NodePort", "LoadBalancer"])
def test_node_ports_are_allocated_in_range_and_distinct(type_):
    s = svc(type_, ports=[port(80), port(443), port(53, "UDP")])
    assert allocate(allocator(), s, None, []) == []
    node_ports = [p["nodePort"] for p in s["spec"]["ports"]]
    assert all(30000 <= np <= 30004 for np in node_ports)
    assert len(set(node_ports[:2])) == 2  # the two TCP ports


def test_node_ports_avoid_ports_in_use():
    others = [svc("NodePort", ports=[port(80, node_port=n) for n in (30000, 30001, 30003)])]
    s = svc("NodePort", ports=[port(80), port(81)])
    assert allocate(allocator(), s, None, others) == []
    assert sorted(p["nodePort"] for p in s["spec"]["ports"]) == [30002, 30004]


def test_node_ports_are_kept_on_update_by_port_and_protocol():
    old = svc("NodePort", ip="10.0.0.20",
              ports=[port(80, node_port=30001), port(53, "UDP", node_port=30002)])
    new = svc("NodePort", ports=[port(53, "UDP"), port(80), port(443)])
    assert allocate(allocator(), new, old, []) == []
    got = {(p["port"], p["protocol"]): p["nodePort"] for p in new["spec"]["ports"]}
    assert got[(53, "UDP")] == 30002 and got[(80, "TCP")] == 30001
    assert got[(443, "TCP")] in (30000, 30002, 30003, 30004)  # ports are per protocol


def test_node_port_is_not_kept_when_the_protocol_changes():
    # Kept, 30001/UDP would conflict with the other service; it is allocated anew instead.
    old = svc("NodePort", ports=[port(80, node_port=30001)])
    others = [svc("NodePort", ports=[port(9, "UDP", node_port=30001)])]
    new = svc("NodePort", ports=[port(80, "UDP")])
    assert allocate(allocator(), new, old, others) == []
    assert new["spec"]["ports"][0]["nodePort"] in (30000, 30002, 30003, 30004)


def test_node_ports_are_kept_from_node_port_to_load_balancer():
    old = svc("NodePort", ports=[port(80, node_port=30003)])
    new = svc("LoadBalancer", ports=[port(80)])
    assert allocate(allocator(), new, old, []) == []
    assert new["spec"]["ports"][0]["nodePort"] == 30003


def test_requested_node_port_out_of_range():
    s = svc("NodePort", ports=[port(80, node_port=29999), port(81, node_port=30005)])
    assert allocate(allocator(), s, None, []) == [
        Cause("spec.ports[0].nodePort", "FieldValueInvalid",
              "Invalid value: 29999: provided port is not in the valid range. The range of "
              "valid ports is 30000-30004"),
        Cause("spec.ports[1].nodePort", "FieldValueInvalid",
              "Invalid value: 30005: provided port is not in the valid range. The range of "
              "valid ports is 30000-30004")]


def test_requested_node_port_already_allocated():
    others = [svc("NodePort", ports=[port(80, node_port=30001)])]
    s = svc("NodePort", ports=[port(8080, node_port=30001)])
    assert allocate(allocator(), s, None, others) == [Cause(
        "spec.ports[0].nodePort", "FieldValueInvalid",
        "Invalid value: 30001: provided port is already allocated")]


def test_requested_node_port_is_reserved_before_dynamic_ones():
    # The dynamic port must not take the one requested by a later entry.
    alloc = ServiceAllocator("10.0.0.0/24", "30000-30001", random.Random(1))
    s = svc("NodePort", ports=[port(80), port(81, node_port=30000)])
    assert allocate(alloc, s, None, []) == []
    assert [p["nodePort"] for p in s["spec"]["ports"]] == [30001, 30000]


@pytest.mark.parametrize("type_", [None, "ClusterIP"])
def test_node_port_is_forbidden_on_cluster_ip_services(type_):
    s = svc(type_, ports=[port(80), port(81, node_port=30001)])
    assert allocate(allocator(), s, None, []) == [Cause(
        "spec.ports[1].nodePort", "FieldValueForbidden",
        "Forbidden: may not be used when `type` is 'ClusterIP'")]
    assert "nodePort" not in s["spec"]["ports"][0]


def test_node_port_range_full():
    alloc = ServiceAllocator("10.0.0.0/24", "30000-30001", random.Random(1))
    others = [svc("NodePort", ports=[port(80, node_port=30000)])]
    s = svc("NodePort", ports=[port(80), port(81)])
    with pytest.raises(APIError) as e:
        allocate(alloc, s, None, others)
    assert (e.value.code, e.value.reason, e.value.message) == (
        500, "InternalError", "Internal error occurred: failed to allocate a nodePort: "
                              "range is full")
