"""The overlay's pure part: desired state from Nodes, the diff, the commands, and the
parsing of `ip -j` output (net/overlay.py, net/overlay_apply.py)."""
import json

import pytest

from kwire.net.overlay import (ADD, DELETE, HOST_GW, UPDATE, VXLAN, FdbEntry, LocalNode,
                               Neighbour, Operation, OverlayState, Route, VxlanDevice,
                               annotations_patch, desired_state, diff, node_annotations,
                               overlay_fields, parse_peer, pod_mtu)
from kwire.net.overlay_apply import (OverlayError, commands, find_underlay, parse_device,
                                     parse_fdb, parse_neighbours, parse_routes)

MAC1, MAC2, MAC3 = "0a:00:00:00:00:01", "0a:00:00:00:00:02", "0a:00:00:00:00:03"


def node(name, cidr=None, ip=None, mac=None, backend=VXLAN):
    meta = {"name": name}
    if ip:
        meta["annotations"] = node_annotations(backend, ip, mac)
    return {"metadata": meta, "spec": {"podCIDR": cidr} if cidr else {}}


def local(backend=VXLAN, mtu=1500):
    return LocalNode("n1", "10.244.1.0/24", "172.30.0.2", "eth0", mtu, backend)


NODES = [node("n1", "10.244.1.0/24", "172.30.0.2", MAC1),
         node("n2", "10.244.2.0/24", "172.30.0.3", MAC2),
         node("n3", "10.244.3.0/24", "172.30.0.4", MAC3)]


def test_vxlan_desired_state():
    state = desired_state(local(), NODES)
    assert state.device == VxlanDevice("kwire.1", vni=1, port=8472, local="172.30.0.2",
                                       dev="eth0", learning=False, mtu=1450,
                                       address="10.244.1.0/32", up=True)
    assert state.routes == {Route("10.244.2.0/24", "10.244.2.0", "kwire.1", onlink=True),
                            Route("10.244.3.0/24", "10.244.3.0", "kwire.1", onlink=True)}
    assert state.neighbours == {Neighbour("10.244.2.0", MAC2, "kwire.1"),
                                Neighbour("10.244.3.0", MAC3, "kwire.1")}
    assert state.fdb == {FdbEntry(MAC2, "172.30.0.3", "kwire.1"),
                         FdbEntry(MAC3, "172.30.0.4", "kwire.1")}


def test_host_gw_desired_state():
    nodes = [node("n2", "10.244.2.0/24", "172.30.0.3", backend=HOST_GW),
             node("n3", "10.244.3.0/24", "172.30.0.4", backend=HOST_GW)]
    state = desired_state(local(HOST_GW), nodes)
    assert state == OverlayState(routes=frozenset({Route("10.244.2.0/24", "172.30.0.3", "eth0"),
                                                   Route("10.244.3.0/24", "172.30.0.4", "eth0")}))


def test_nodes_without_subnet_annotations_or_our_backend_are_skipped():
    bad_data = node("bad-data", "10.244.6.0/24", "172.30.0.7", MAC2)
    bad_data["metadata"]["annotations"]["kwire.io/backend-data"] = "{not json"
    nodes = [node("n2", "10.244.2.0/24"),                     # not published yet
             node("n3", None, "172.30.0.4", MAC3),            # no pod subnet yet
             node("gw", "10.244.4.0/24", "172.30.0.5", backend=HOST_GW),
             node("no-mac", "10.244.5.0/24", "172.30.0.6", None),
             node("bad-mac", "10.244.7.0/24", "172.30.0.8", "zz:00:00:00:00:01"),
             node("bad-ip", "10.244.8.0/24", "not-an-ip", MAC2),
             node("v6", "fd00::/64", "172.30.0.9", MAC2),
             node("same-subnet", "10.244.1.0/24", "172.30.0.10", MAC2),
             node("same-ip", "10.244.9.0/24", "172.30.0.2", MAC2),
             bad_data]
    assert desired_state(local(), nodes) == OverlayState(device=desired_state(local(), []).device)
    assert parse_peer(node("gw", "10.244.4.0/24", "172.30.0.5", backend=HOST_GW), HOST_GW)


def test_of_two_nodes_claiming_one_subnet_the_first_by_name_wins():
    nodes = [node("n3", "10.244.2.0/24", "172.30.0.4", MAC3),
             node("n2", "10.244.2.0/24", "172.30.0.3", MAC2)]
    assert desired_state(local(), nodes).fdb == {FdbEntry(MAC2, "172.30.0.3")}


def test_mtu():
    assert pod_mtu(VXLAN, 1500) == 1450 and pod_mtu(HOST_GW, 1500) == 1500
    assert desired_state(local(mtu=9000), NODES).device.mtu == 8950
    with pytest.raises(ValueError, match="unknown overlay backend"):
        pod_mtu("udp", 1500)


def test_annotations_are_flannels():
    assert node_annotations(VXLAN, "172.30.0.2", MAC1) == {
        "kwire.io/backend-type": "vxlan",
        "kwire.io/backend-data": '{"VNI":1,"VtepMAC":"0a:00:00:00:00:01"}',
        "kwire.io/public-ip": "172.30.0.2"}
    assert node_annotations(HOST_GW, "172.30.0.2", None)["kwire.io/backend-data"] == "null"
    wanted = node_annotations(VXLAN, "172.30.0.2", MAC1)
    assert annotations_patch(NODES[0], wanted) is None
    assert annotations_patch(node("n1", "10.244.1.0/24"), wanted) == {
        "metadata": {"annotations": wanted}}
    moved = node_annotations(VXLAN, "172.30.0.2", MAC2)
    assert annotations_patch(NODES[0], moved) == {"metadata": {"annotations": moved}}


def test_overlay_fields_ignore_status():
    beat = {**NODES[1], "status": {"conditions": [{"type": "Ready"}]}}
    assert overlay_fields(beat) == overlay_fields(NODES[1])
    assert overlay_fields(NODES[1]) != overlay_fields(node("n2", "10.244.2.0/24", "172.30.0.3",
                                                           MAC3))


def test_diff_from_nothing_creates_device_then_fdb_neighbours_routes():
    desired = desired_state(local(), NODES)
    ops = diff(OverlayState(), desired)
    assert [(op.action, type(op.obj).__name__) for op in ops] == [
        (ADD, "VxlanDevice"), (ADD, "FdbEntry"), (ADD, "FdbEntry"),
        (ADD, "Neighbour"), (ADD, "Neighbour"), (ADD, "Route"), (ADD, "Route")]
    assert diff(desired, desired) == []


def test_diff_of_a_node_leaving_deletes_its_route_first():
    before = desired_state(local(), NODES)
    after = desired_state(local(), NODES[:2])
    assert diff(before, after) == [
        Operation(DELETE, Route("10.244.3.0/24", "10.244.3.0", "kwire.1", True)),
        Operation(DELETE, Neighbour("10.244.3.0", MAC3)),
        Operation(DELETE, FdbEntry(MAC3, "172.30.0.4"))]


def test_diff_updates_a_node_whose_vtep_changed_in_place():
    before = desired_state(local(), NODES)
    moved = [*NODES[:2], node("n3", "10.244.3.0/24", "172.30.0.9", "0a:00:00:00:00:33")]
    ops = diff(before, desired_state(local(), moved))
    # The FDB is keyed by MAC: the old MAC's entry goes, the new one comes.
    assert ops == [
        Operation(DELETE, FdbEntry(MAC3, "172.30.0.4")),
        Operation(ADD, FdbEntry("0a:00:00:00:00:33", "172.30.0.9")),
        Operation(UPDATE, Neighbour("10.244.3.0", "0a:00:00:00:00:33"),
                  Neighbour("10.244.3.0", MAC3))]


def test_diff_deletes_duplicates_and_strays():
    desired = desired_state(local(), NODES[:2])
    stray = Route("10.244.9.0/24", "10.244.9.0", "kwire.1", True)
    twin = Route("10.244.2.0/24", "172.30.0.3", "eth0")
    current = OverlayState(desired.device, desired.routes | {stray, twin}, desired.neighbours,
                           desired.fdb)
    assert diff(current, desired) == [Operation(DELETE, twin), Operation(DELETE, stray)]


def test_diff_changes_mtu_in_place_and_recreates_for_a_new_underlay():
    desired = desired_state(local(), NODES)
    old = VxlanDevice(**{**desired.device.__dict__, "mtu": 1400, "mac": MAC1})
    current = OverlayState(old, desired.routes, desired.neighbours, desired.fdb)
    assert diff(current, desired) == [Operation(UPDATE, desired.device, old)]

    moved = LocalNode("n1", "10.244.1.0/24", "172.30.0.2", "eth1", 1500)
    ops = diff(desired, desired_state(moved, NODES))
    # The new device starts empty: every entry is added again, none deleted.
    assert [op.action for op in ops] == [DELETE, ADD] + [ADD] * 6


def test_diff_to_host_gw_removes_the_device_and_replaces_routes():
    vxlan = desired_state(local(), NODES)
    gw_nodes = [node(n["metadata"]["name"], n["spec"]["podCIDR"],
                     n["metadata"]["annotations"]["kwire.io/public-ip"], backend=HOST_GW)
                for n in NODES]
    host_gw = desired_state(local(HOST_GW), gw_nodes)
    ops = diff(vxlan, host_gw)
    assert ops[0] == Operation(DELETE, vxlan.device)
    assert [op.obj for op in ops[1:]] == sorted(host_gw.routes)
    assert all(op.action == ADD for op in ops[1:])
    assert diff(host_gw, vxlan)[0] == Operation(ADD, vxlan.device)


def test_commands():
    device = desired_state(local(), NODES).device
    assert commands(Operation(ADD, device)) == [
        ["ip", "link", "add", "kwire.1", "mtu", "1450", "type", "vxlan", "id", "1",
         "local", "172.30.0.2", "dev", "eth0", "dstport", "8472", "nolearning"],
        ["ip", "addr", "add", "10.244.1.0/32", "dev", "kwire.1"],
        ["ip", "link", "set", "dev", "kwire.1", "up"]]
    old = VxlanDevice(**{**device.__dict__, "mtu": 1400, "address": "10.244.7.0/32"})
    assert commands(Operation(UPDATE, device, old)) == [
        ["ip", "link", "set", "dev", "kwire.1", "mtu", "1450"],
        ["ip", "-4", "addr", "flush", "dev", "kwire.1"],
        ["ip", "addr", "add", "10.244.1.0/32", "dev", "kwire.1"]]
    assert commands(Operation(DELETE, device)) == [["ip", "link", "del", "dev", "kwire.1"]]
    route = Route("10.244.2.0/24", "10.244.2.0", "kwire.1", True)
    assert commands(Operation(ADD, route)) == [
        ["ip", "-4", "route", "replace", "10.244.2.0/24", "via", "10.244.2.0", "dev", "kwire.1",
         "onlink", "proto", "107"]]
    assert commands(Operation(DELETE, Route("10.244.2.0/24", "172.30.0.3", "eth0"))) == [
        ["ip", "-4", "route", "del", "10.244.2.0/24", "via", "172.30.0.3", "dev", "eth0",
         "proto", "107"]]
    assert commands(Operation(ADD, Neighbour("10.244.2.0", MAC2))) == [
        ["ip", "-4", "neigh", "replace", "10.244.2.0", "lladdr", MAC2, "dev", "kwire.1",
         "nud", "permanent"]]
    assert commands(Operation(DELETE, Neighbour("10.244.2.0", MAC2))) == [
        ["ip", "-4", "neigh", "del", "10.244.2.0", "dev", "kwire.1"]]
    assert commands(Operation(ADD, FdbEntry(MAC2, "172.30.0.3"))) == [
        ["bridge", "fdb", "replace", MAC2, "dev", "kwire.1", "dst", "172.30.0.3", "self",
         "permanent"]]
    assert commands(Operation(DELETE, FdbEntry(MAC2, "172.30.0.3"))) == [
        ["bridge", "fdb", "del", MAC2, "dev", "kwire.1", "dst", "172.30.0.3", "self"]]


# Recorded from iproute2 6.1 in a namespace.
DEVICE_JSON = json.loads("""[{"ifname":"kwire.1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],
 "mtu":1450,"address":"ce:f3:8c:2b:a1:4e","linkinfo":{"info_kind":"vxlan","info_data":{"id":1,
 "local":"172.30.0.2","link":"eth0","port":8472,"learning":false}},"addr_info":[{"family":"inet",
 "local":"10.244.1.0","prefixlen":32},{"family":"inet6","local":"fe80::1","prefixlen":64}]}]""")


def test_parsing_kernel_state_round_trips_to_converged():
    device = parse_device(DEVICE_JSON)
    assert device.mac == "ce:f3:8c:2b:a1:4e"
    routes = parse_routes([{"dst": "10.244.2.0/24", "gateway": "10.244.2.0", "dev": "kwire.1",
                            "flags": ["onlink"]},
                           {"dst": "10.244.3.0/24", "gateway": "10.244.3.0", "dev": "kwire.1",
                            "flags": ["onlink"]}])
    neighbours = parse_neighbours([{"dst": "10.244.2.0", "lladdr": MAC2, "state": ["PERMANENT"]},
                                   {"dst": "10.244.3.0", "lladdr": MAC3, "state": ["PERMANENT"]}])
    fdb = parse_fdb([{"mac": MAC2, "dst": "172.30.0.3", "flags": ["self"], "state": "permanent"},
                     {"mac": MAC3, "dst": "172.30.0.4", "flags": ["self"], "state": "permanent"},
                     {"mac": "33:33:00:00:00:01", "flags": ["self"], "state": "permanent"}])
    current = OverlayState(device, routes, neighbours, fdb)
    assert diff(current, desired_state(local(), NODES)) == []
    assert parse_device([]) is None
    with pytest.raises(OverlayError, match="refusing"):
        parse_device([{"ifname": "kwire.1", "linkinfo": {"info_kind": "bridge"}}])


def test_find_underlay():
    links = [{"ifname": "lo", "flags": ["LOOPBACK", "UP"], "mtu": 65536,
              "addr_info": [{"local": "127.0.0.1"}]},
             {"ifname": "eth0", "flags": ["UP"], "mtu": 1500,
              "addr_info": [{"local": "172.30.0.2"}]}]
    assert find_underlay(links, "172.30.0.2").dev == "eth0"
    with pytest.raises(OverlayError, match="loopback"):
        find_underlay(links, "127.0.0.1")
    with pytest.raises(OverlayError, match="no interface"):
        find_underlay(links, "172.30.0.9")
