"""ClusterConfig: defaults, derived paths, YAML round trip, range validation, host routes."""
import ipaddress
import stat
from pathlib import Path

import pytest

from kwire.cluster.config import (ClusterConfig, ConfigError, check_host_routes,
                                  choose_pod_cidr, choose_service_cidr, choose_underlay,
                                  default_cluster_dns, load_settings, parse_ip_route_json,
                                  parse_proc_net_route)
from kwire.cluster.nodes import UnderlayError, plan_underlay


@pytest.fixture(autouse=True)
def state_root(tmp_path, monkeypatch):
    root = tmp_path / "state"
    monkeypatch.setenv("KWIRE_STATE_ROOT", str(root))
    return root


def nets(*cidrs):
    return [ipaddress.ip_network(c) for c in cidrs]


def test_defaults_and_derived_values(state_root):
    c = ClusterConfig()
    assert c.name == "kwire"
    assert c.state_dir == state_root / "kwire"
    assert (c.api_host, c.api_port) == ("127.0.0.1", 0)
    assert c.underlay_host_address == "172.30.0.1"
    assert c.api_service_ip == "10.96.0.1"
    assert (c.service_cidr, c.cluster_dns) == ("10.96.0.0/16", "10.96.0.10")
    assert c.load_balancer_cidr == "172.30.0.192/26"
    assert c.node_ports == (30000, 32767)
    assert c.context_name == "kwire-kwire"
    c.validate()


def test_default_state_root_without_env(monkeypatch):
    monkeypatch.delenv("KWIRE_STATE_ROOT")
    assert ClusterConfig(name="a").state_dir == Path("/var/lib/kwire/a")


def test_paths_live_in_state_dir(tmp_path):
    c = ClusterConfig(name="x", state_dir=str(tmp_path / "x"), api_port=6443)
    assert isinstance(c.state_dir, Path)
    files = {p.name for p in (c.config_path, c.ca_cert, c.ca_key, c.server_cert, c.server_key,
                              c.admin_cert, c.admin_key, c.tokens_file, c.db_path, c.server_log,
                              c.pid_file, c.kubeconfig_path, c.nodes_file)}
    assert files == {"config.yaml", "ca.crt", "ca.key", "server.crt", "server.key", "admin.crt",
                     "admin.key", "tokens.csv", "state.db", "server.log", "server.pid",
                     "kubeconfig", "nodes.list"}
    assert c.db_path.parent == tmp_path / "x"
    assert c.api_url == "https://127.0.0.1:6443"


def test_yaml_round_trip(tmp_path):
    c = ClusterConfig(name="rt", api_port=40001, pod_cidr="10.200.0.0/16",
                      compaction_interval_seconds=5)
    path = c.save(tmp_path / "c.yaml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ClusterConfig.load(path) == c


def test_load_refuses_unknown_keys_and_wrong_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\npod_cidrs: 10.0.0.0/16\n")
    with pytest.raises(ConfigError, match="unknown configuration keys: pod_cidrs"):
        ClusterConfig.load(path)
    path.write_text("api_port: '6443'\n")
    with pytest.raises(ConfigError, match="api_port: expected int"):
        ClusterConfig.load(path)
    path.write_text("api_port: true\n")
    with pytest.raises(ConfigError, match="api_port"):
        ClusterConfig.load(path)
    path.write_text("- a\n")
    with pytest.raises(ConfigError, match="mapping"):
        ClusterConfig.load(path)
    with pytest.raises(ConfigError, match="cannot read"):
        ClusterConfig.load(tmp_path / "missing.yaml")


def test_load_settings_returns_only_what_the_file_sets(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("apiVersion: kwire/v1alpha1\nkind: ClusterConfig\npod_cidr: 10.7.0.0/16\n")
    assert load_settings(path) == {"pod_cidr": "10.7.0.0/16"}
    path.write_text("")
    assert load_settings(path) == {}


@pytest.mark.parametrize("changes, message", [
    ({"name": "Not_A_Label"}, "invalid cluster name"),
    ({"api_port": 70000}, "not a port number"),
    ({"api_host": "localhost"}, "must be an IPv4 address"),
    ({"api_host": "0.0.0.0"}, "clients can dial"),
    ({"pod_cidr": "10.244.0.1/16"}, "pod_cidr .* is not a network"),
    ({"pod_cidr": "fd00::/64"}, "IPv4 ranges only"),
    ({"pod_cidr": "10.244.0.0/25"}, "each node takes a /24"),
    ({"underlay_cidr": "172.30.0.0/30"}, "underlay_cidr .* too small"),
    ({"pod_cidr": "10.96.0.0/16"}, "pod_cidr 10.96.0.0/16 overlaps service_cidr 10.96.0.0/16"),
    ({"service_cidr": "10.97.0.0/16"}, "cluster_dns 10.96.0.10 must be a free address inside"),
    ({"load_balancer_pool": "10.244.1.0/28"}, "load_balancer_pool .* overlaps pod_cidr"),
    ({"load_balancer_pool": "172.30.0.128/24"}, "load_balancer_pool .* is not a network"),
    ({"load_balancer_pool": "172.30.0.0/23"}, "inside underlay_cidr .* or apart from it"),
    ({"load_balancer_pool": "172.30.0.0/26"}, "leave out the network and host addresses"),
    ({"load_balancer_pool": "fd00::/120"}, "IPv4 ranges only"),
    ({"underlay_cidr": "10.244.1.0/24"}, "underlay_cidr .* overlaps pod_cidr"),
    ({"cluster_dns": "10.244.0.10"}, "cluster_dns .* inside service_cidr"),
    ({"cluster_dns": "10.96.0.1"}, "cluster_dns"),
    ({"node_port_range": "32767-30000"}, "node_port_range"),
    ({"node_port_range": "30000"}, "node_port_range"),
    ({"cluster_domain": "Cluster..local"}, "cluster_domain"),
    ({"compaction_interval_seconds": 0}, "compaction_interval_seconds"),
])
def test_validation_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        ClusterConfig(**changes).validate()


def test_validation_lists_every_problem():
    with pytest.raises(ConfigError) as e:
        ClusterConfig(api_port=-1, node_port_range="x").validate()
    assert "api_port" in str(e.value) and "node_port_range" in str(e.value)


def test_parse_ip_route_json_skips_default():
    text = ('[{"dst":"default","gateway":"192.0.2.1","dev":"eth0"},'
            '{"dst":"192.0.2.0/24","dev":"eth0"},{"dst":"198.51.100.7","dev":"eth0"}]')
    assert parse_ip_route_json(text) == nets("192.0.2.0/24", "198.51.100.7/32")


def test_parse_proc_net_route_skips_default():
    text = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
            "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
            "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    assert parse_proc_net_route(text) == nets("192.0.2.0/24")


def test_host_route_overlap_is_refused():
    c = ClusterConfig()
    check_host_routes(c, nets("192.0.2.0/24", "172.31.0.0/16"))
    with pytest.raises(ConfigError, match="service_cidr 10.96.0.0/16 overlaps the host route"):
        check_host_routes(c, nets("10.96.5.0/24"))
    with pytest.raises(ConfigError, match="pod_cidr 10.244.0.0/16 overlaps the host route to 10.0"):
        check_host_routes(c, nets("10.0.0.0/8"))
    with pytest.raises(ConfigError, match="underlay_cidr"):
        check_host_routes(c, nets("172.30.0.128/25"))


def test_choose_underlay_takes_the_first_free_slash_24_of_the_pool():
    c = ClusterConfig()
    assert choose_underlay(c, [], []) == "172.30.0.0/24"
    # A host route, another cluster's underlay, and a route covering two /24s are skipped.
    routes = nets("192.0.2.0/24", "172.30.0.0/24", "172.30.2.0/23")
    assert choose_underlay(c, routes, nets("172.30.1.0/24")) == "172.30.4.0/24"
    # Never the cluster's own pod or service ranges.
    own = ClusterConfig(pod_cidr="172.30.0.0/20", service_cidr="172.30.16.0/24")
    assert choose_underlay(own, [], []) == "172.30.17.0/24"


def test_choose_underlay_fails_when_the_pool_is_full():
    with pytest.raises(ConfigError, match="no free /24 in 172.30.0.0/16.*--underlay-cidr"):
        choose_underlay(ClusterConfig(), nets("172.30.0.0/17"), nets("172.30.128.0/17"))


def test_host_route_check_can_be_limited_to_some_ranges():
    c = ClusterConfig()
    check_host_routes(c, nets("10.0.0.0/8"), keys=("underlay_cidr",))
    with pytest.raises(ConfigError, match="underlay_cidr") as e:
        check_host_routes(c, nets("10.0.0.0/8", "172.30.0.0/16"), keys=("underlay_cidr",))
    assert "pod_cidr" not in str(e.value)


def test_choose_pod_cidr_takes_the_first_free_slash_16_from_10_244():
    c = ClusterConfig()
    assert choose_pod_cidr(c, [], []) == "10.244.0.0/16"
    # Another cluster's pod range, a host route inside 10.245/16 and one over 10.246-247.
    taken = nets("10.244.0.0/16")
    routes = nets("192.0.2.0/24", "10.245.3.0/24", "10.246.0.0/15")
    assert choose_pod_cidr(c, routes, taken) == "10.248.0.0/16"
    # Never the cluster's own underlay or service ranges.
    own = ClusterConfig(underlay_cidr="10.244.7.0/24", service_cidr="10.245.0.0/16")
    assert choose_pod_cidr(own, [], []) == "10.246.0.0/16"


def test_choose_pod_cidr_ends_at_10_255_and_fails_when_the_pool_is_full():
    c = ClusterConfig()
    assert choose_pod_cidr(c, nets("10.244.0.0/14", "10.248.0.0/14"), nets("10.252.0.0/15",
                                                                           "10.254.0.0/16")) \
        == "10.255.0.0/16"
    with pytest.raises(ConfigError, match="no free /16 in 10.244.0.0/14, 10.248.0.0/13 for the "
                                          "pods.*--pod-cidr"):
        choose_pod_cidr(c, nets("10.240.0.0/12"), [])


def test_choose_service_cidr_takes_the_first_free_slash_16_from_10_96():
    c = ClusterConfig()
    assert choose_service_cidr(c, [], []) == "10.96.0.0/16"
    # Another cluster's service range routed into its bridge, another one only saved.
    assert choose_service_cidr(c, nets("10.96.0.0/16"), nets("10.97.0.0/16")) == "10.98.0.0/16"
    # Never the cluster's own pod range (or underlay).
    own = ClusterConfig(pod_cidr="10.96.0.0/16", underlay_cidr="10.97.3.0/24")
    assert choose_service_cidr(own, [], []) == "10.98.0.0/16"
    with pytest.raises(ConfigError, match="no free /16 in 10.96.0.0/12 for the Services.*"
                                          "--service-cidr"):
        choose_service_cidr(c, nets("10.96.0.0/13"), nets("10.104.0.0/13"))


def test_cluster_dns_defaults_to_the_tenth_address_of_the_service_range():
    assert default_cluster_dns("10.96.0.0/16") == "10.96.0.10"
    assert default_cluster_dns("10.97.0.0/16") == "10.97.0.10"
    ClusterConfig(service_cidr="10.97.0.0/16", cluster_dns="10.97.0.10").validate()


def test_load_balancer_pool_defaults_to_the_top_of_the_underlay():
    assert ClusterConfig(underlay_cidr="172.30.7.0/24").load_balancer_cidr == "172.30.7.192/26"
    assert ClusterConfig(underlay_cidr="10.10.0.0/16").load_balancer_cidr == "10.10.255.192/26"
    # Too small an underlay has no default pool; a given one is kept as it is.
    assert ClusterConfig(underlay_cidr="172.30.0.0/25").load_balancer_cidr is None
    c = ClusterConfig(load_balancer_pool="172.30.0.240/28")
    c.validate()
    assert c.load_balancer_cidr == "172.30.0.240/28"


def test_host_routed_ranges_include_a_pool_outside_the_underlay_only():
    assert ClusterConfig().host_routed() == dict(zip(
        ("underlay_cidr", "pod_cidr", "service_cidr"),
        nets("172.30.0.0/24", "10.244.0.0/16", "10.96.0.0/16")))
    outside = ClusterConfig(load_balancer_pool="192.168.240.0/28")
    outside.validate()
    assert outside.host_routed()["load_balancer_pool"] == nets("192.168.240.0/28")[0]
    with pytest.raises(ConfigError, match="load_balancer_pool 192.168.240.0/28 overlaps"):
        check_host_routes(outside, nets("192.168.0.0/16"))
    # A chosen underlay keeps clear of a pool that was given.
    assert choose_underlay(ClusterConfig(load_balancer_pool="172.30.0.0/28"), [], []) == \
        "172.30.1.0/24"


def test_nodes_stop_below_the_load_balancer_pool():
    c = ClusterConfig(name="kwire")
    names = [f"n{i}" for i in range(190)]
    assert plan_underlay(c, names).nodes[-1].address == "172.30.0.191/24"
    with pytest.raises(UnderlayError, match="room for 190 nodes below the load-balancer pool "
                                            "172.30.0.192/26, not 191"):
        plan_underlay(c, [*names, "n190"])
    high = ClusterConfig(name="kwire", load_balancer_pool="172.30.0.250/31")
    assert len(plan_underlay(high, [f"n{i}" for i in range(248)]).nodes) == 248
