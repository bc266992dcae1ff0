"""The underlay's pure part: plan_underlay, worker_names and the node list; exact names,
addresses and limits, no `ip` run."""
import pytest

from kwire.cluster.config import ClusterConfig
from kwire.cluster.nodes import (IFNAMSIZ, NETNS_MAX, NodeLink, UnderlayError, UnderlayPlan,
                                 bridge_name, format_node_list, host_veth_name, netns_name,
                                 parse_node_list, plan_underlay, worker_names)


def test_default_cluster_two_nodes_exact():
    plan = plan_underlay(ClusterConfig(name="kwire"), ["node1", "node2"])
    assert plan == UnderlayPlan(
        cluster="kwire", bridge="kw-7cc5b44d3954", bridge_address="172.30.0.1/24",
        bridge_alias="kwire:kwire", mtu=1500, netns_prefix="kwire-kwire_",
        pod_cidr="10.244.0.0/16", nodes=(
            NodeLink(node="node1", netns="kwire-kwire_node1", host_ifname="kv-f2ae40a5043b",
                     node_ifname="eth0", address="172.30.0.2/24", gateway="172.30.0.1",
                     mtu=1500, alias="kwire:kwire/node1"),
            NodeLink(node="node2", netns="kwire-kwire_node2", host_ifname="kv-6ae94d32729e",
                     node_ifname="eth0", address="172.30.0.3/24", gateway="172.30.0.1",
                     mtu=1500, alias="kwire:kwire/node2"),
        ))
    assert plan.node("node2").address == "172.30.0.3/24"
    with pytest.raises(UnderlayError, match="not in the underlay plan"):
        plan.node("node3")


def test_custom_cidr_and_mtu():
    plan = plan_underlay(ClusterConfig(name="dev", underlay_cidr="10.10.8.0/29"),
                         ["a", "b"], mtu=1400)
    assert plan.bridge_address == "10.10.8.1/29"
    assert [(n.address, n.gateway, n.mtu) for n in plan.nodes] == [
        ("10.10.8.2/29", "10.10.8.1", 1400), ("10.10.8.3/29", "10.10.8.1", 1400)]
    assert plan.mtu == 1400


def test_addresses_follow_order_so_appending_keeps_existing_ones():
    config = ClusterConfig(name="kwire")
    two = plan_underlay(config, ["node1", "node2"])
    three = plan_underlay(config, ["node1", "node2", "node3"])
    assert three.nodes[:2] == two.nodes
    assert three.nodes[2].address == "172.30.0.4/24"


def test_interface_names_fit_ifnamsiz_even_for_longest_names():
    cluster = "c" * 63
    node = ".".join(["n" * 63] * 3) + "." + "n" * 61  # 253 characters
    plan = plan_underlay(ClusterConfig(name=cluster), [node])
    assert len(plan.bridge) <= IFNAMSIZ
    assert len(plan.nodes[0].host_ifname) <= IFNAMSIZ
    assert len(plan.nodes[0].netns) == NETNS_MAX
    assert plan.nodes[0].netns.startswith(plan.netns_prefix)


def test_long_netns_names_are_cut_with_a_hash():
    assert netns_name("kwire", "x" * 88) == "kwire-kwire_" + "x" * 88  # exactly NETNS_MAX
    assert netns_name("kwire", "x" * 100) == "kwire-kwire_" + "x" * 79 + "-09ecb6eb"
    assert netns_name("kwire", "x" * 101) != netns_name("kwire", "x" * 100)


def test_names_do_not_collide_across_clusters_and_nodes():
    # "a" + node "b-c" and "a-b" + node "c" would both read kwire-a-b-c with a dash.
    assert netns_name("a", "b-c") == "kwire-a_b-c"
    assert netns_name("a-b", "c") == "kwire-a-b_c"
    assert host_veth_name("a", "b-c") != host_veth_name("a-b", "c")
    assert bridge_name("kwire") != bridge_name("kwire2")
    # One cluster's prefix never matches another cluster's namespaces.
    prefix_a = plan_underlay(ClusterConfig(name="a"), []).netns_prefix
    assert not netns_name("a-b", "c").startswith(prefix_a)
    names = {host_veth_name("kwire", f"node{i}") for i in range(253)}
    assert len(names) == 253


def test_invalid_duplicate_and_too_many_nodes_are_refused():
    config = ClusterConfig(name="kwire", underlay_cidr="172.30.0.0/29")  # 6 hosts: 5 nodes
    with pytest.raises(UnderlayError, match="invalid node names"):
        plan_underlay(config, ["Node_1"])
    with pytest.raises(UnderlayError, match="duplicate node names: a"):
        plan_underlay(config, ["a", "b", "a"])
    assert len(plan_underlay(config, list("abcde")).nodes) == 5
    with pytest.raises(UnderlayError, match="room for 5 nodes, not 6"):
        plan_underlay(config, list("abcdef"))
    with pytest.raises(UnderlayError, match="mtu"):
        plan_underlay(config, ["a"], mtu=10)


def test_worker_names_are_kinds_and_only_grow():
    assert worker_names("kind", [], 0) == []
    assert worker_names("kind", [], 3) == ["kind-worker", "kind-worker2", "kind-worker3"]
    # Existing names keep their places (and so their addresses); new ones skip taken names.
    assert worker_names("kind", ["kind-worker2", "extra"], 4) == [
        "kind-worker2", "extra", "kind-worker", "kind-worker3"]
    assert worker_names("kind", ["a", "b", "c"], 2) == ["a", "b", "c"]
    # A removed node's name counts for nothing and is not given again.
    assert worker_names("kind", ["kind-worker", "kind-worker2"], 2, removed={"kind-worker"}) \
        == ["kind-worker", "kind-worker2", "kind-worker3"]
    assert worker_names("kind", ["kind-worker"], 0, removed={"kind-worker"}) == ["kind-worker"]


def test_removed_nodes_keep_their_places_so_no_address_moves():
    config = ClusterConfig(name="kwire")
    plan = plan_underlay(config, ["a", "b", "c"], removed={"b"})
    assert [(n.node, n.address) for n in plan.nodes] == [("a", "172.30.0.2/24"),
                                                          ("c", "172.30.0.4/24")]
    grown = plan_underlay(config, ["a", "b", "c", "d"], removed={"b"})
    assert grown.node("d").address == "172.30.0.5/24"
    with pytest.raises(UnderlayError, match="not in the underlay plan"):
        plan.node("b")


def test_node_list_round_trip_and_refusals():
    text = format_node_list(["kind-worker", "kind-worker2", "x.y"], {"kind-worker2"})
    assert text == "kind-worker\nkind-worker2 removed\nx.y\n"
    assert parse_node_list(text) == (["kind-worker", "kind-worker2", "x.y"], {"kind-worker2"})
    # The list an older kwire wrote: names alone, blank lines ignored.
    assert parse_node_list("a\n\nb\n") == (["a", "b"], set())
    assert parse_node_list("") == ([], set())
    with pytest.raises(UnderlayError, match="line 2: expected NAME or NAME removed"):
        parse_node_list("a\nb gone\n")
