"""The CNI invoker against fake plugins: small Python scripts in a temp dir that
log their stdin and CNI_* environment and answer as their config tells them
(``"on": {"ADD": {"result": ..., "error": ..., "stdout": ..., "sleep": ...}}``)."""
import base64
import json
import sys
import time

import pytest

from kwire.cni.invoke import (CACHE_KIND, ERR_CONTAINER_UNKNOWN, ERR_DECODE, RUNTIME_ERROR, Attachment,
                              CachedAttachment, CniError, CniNetwork, Result, cache_path, convert_result,
                              default_bin_dirs, load_network_config, negotiate_version, plugin_config,
                              plugin_env, plugin_error, pod_runtime_config, validate_attachment)

FAKE = r'''#!{python} -IS
import json, os, sys, time
conf = json.load(sys.stdin)
cmd = os.environ.get("CNI_COMMAND")
with open(conf["log"], "a") as f:
    f.write(json.dumps({"plugin": os.path.basename(sys.argv[0]), "command": cmd, "conf": conf,
                        "env": {k: v for k, v in os.environ.items() if k.startswith("CNI_")}}) + "\n")
act = conf.get("on", {}).get(cmd, {})
time.sleep(act.get("sleep", 0))
if "stdout" in act:
    sys.stdout.write(act["stdout"])
elif "error" in act:
    print(json.dumps(act["error"]))
elif cmd == "ADD":
    v = conf["cniVersion"]
    ip = {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0}
    if v.startswith("0."):
        ip["version"] = "4"
    default = {"cniVersion": v, "interfaces": [{"name": os.environ["CNI_IFNAME"],
               "sandbox": os.environ["CNI_NETNS"]}], "ips": [ip]}
    print(json.dumps(act.get("result") or conf.get("prevResult") or default))
sys.stderr.write(act.get("stderr", ""))
sys.exit(act.get("exit", 1 if "error" in act else 0))
'''

ATT = Attachment("c0ffee", "/run/netns/test-pod", "eth0", pod_namespace="default", pod_name="web",
                 pod_uid="uid-1")


@pytest.fixture
def env(tmp_path):
    """A bin dir with fake plugins 'first', 'second' and 'third', a log, a cache dir."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("first", "second", "third"):
        path = bin_dir / name
        path.write_text(FAKE.replace("{python}", sys.executable))
        path.chmod(0o755)

    class Env:
        def __init__(self):
            self.log = tmp_path / "log.jsonl"
            self.cache = tmp_path / "cache"
            self.bins = [str(tmp_path / "nonexistent"), str(bin_dir)]

        def network(self, *plugins, version="1.0.0", **top):
            conflist = {"cniVersion": version, "name": "testnet", **top,
                        "plugins": [{"log": str(self.log), **p} for p in plugins]}
            return CniNetwork(conflist, self.bins, self.cache, timeout=10)

        def calls(self):
            if not self.log.exists():
                return []
            return [json.loads(line) for line in self.log.read_text().splitlines()]

        def reset(self):
            self.log.unlink(missing_ok=True)

    return Env()


# ------------------------------------------------------------ pure parts

def test_plugin_config_injects_name_version_prev_result_and_declared_capabilities_only():
    plugin = {"type": "portmap", "name": "ignored", "cniVersion": "0.1.0", "snat": True,
              "capabilities": {"portMappings": True, "bandwidth": False}}
    rc = {"portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}],
          "bandwidth": {"ingressRate": 1}, "dns": {}}
    conf = plugin_config(plugin, "net", "1.0.0", prev_result={"cniVersion": "1.0.0"}, runtime_config=rc)
    assert conf["name"] == "net" and conf["cniVersion"] == "1.0.0" and conf["snat"] is True
    assert conf["prevResult"] == {"cniVersion": "1.0.0"}
    assert conf["runtimeConfig"] == {"portMappings": rc["portMappings"]}
    assert plugin["cniVersion"] == "0.1.0", "the list's plugin entry is not modified"

    bare = plugin_config({"type": "bridge"}, "net", "1.0.0", runtime_config=rc)
    assert "runtimeConfig" not in bare and "prevResult" not in bare
    no_data = plugin_config(plugin, "net", "1.0.0", runtime_config={})
    assert "runtimeConfig" not in no_data


def test_plugin_env_sets_the_spec_variables_over_the_runtime_environment():
    base = {"PATH": "/usr/sbin:/usr/bin", "CNI_NETNS": "stale", "HOME": "/root"}
    env = plugin_env("ADD", ["/a", "/b"], ATT, ATT.cni_args(), base=base)
    assert env["PATH"] == "/usr/sbin:/usr/bin" and env["HOME"] == "/root"
    assert env["CNI_COMMAND"] == "ADD" and env["CNI_CONTAINERID"] == "c0ffee"
    assert env["CNI_NETNS"] == "/run/netns/test-pod" and env["CNI_IFNAME"] == "eth0"
    assert env["CNI_PATH"] == "/a:/b"
    assert env["CNI_ARGS"] == ("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
                               "K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=uid-1")
    status = plugin_env("STATUS", ["/a"], base=base)
    assert {k for k in status if k.startswith("CNI_")} == {"CNI_COMMAND", "CNI_PATH"}


def test_0_4_0_results_convert_to_1_0_as_libcni_does_and_back():
    old = {"cniVersion": "0.4.0",
           "interfaces": [{"name": "cni0", "mac": "aa:bb:cc:dd:ee:ff"},
                          {"name": "eth0", "mac": "11:22:33:44:55:66", "sandbox": "/run/netns/x"}],
           "ips": [{"version": "4", "address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 1},
                   {"version": "6", "address": "fd00::5/64", "interface": 1}],
           "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.96.0.10"]}}
    new = convert_result(old, "1.0.0")
    assert new["cniVersion"] == "1.0.0"
    assert new["ips"] == [{"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 1},
                          {"address": "fd00::5/64", "interface": 1}]
    assert new["interfaces"] == old["interfaces"] and new["routes"] == old["routes"]
    assert new["dns"] == old["dns"] and old["ips"][0]["version"] == "4", "input untouched"
    back = convert_result({**new, "interfaces": [{"name": "eth0", "mtu": 1450, "sandbox": "/x"}]}, "0.4.0")
    assert [ip["version"] for ip in back["ips"]] == ["4", "6"]
    assert back["interfaces"] == [{"name": "eth0", "sandbox": "/x"}]
    assert convert_result(new, "1.1.0")["cniVersion"] == "1.1.0"
    with pytest.raises(CniError):
        convert_result({"cniVersion": "0.2.0", "ip4": {}}, "1.0.0")


def test_result_pod_ips_are_the_sandbox_interfaces_addresses_ipv4_first():
    result = Result.of({"cniVersion": "0.4.0",
                        "interfaces": [{"name": "cni0"}, {"name": "veth1"},
                                       {"name": "eth0", "sandbox": "/run/netns/p"}],
                        "ips": [{"version": "4", "address": "10.244.1.1/24", "interface": 0},
                                {"version": "6", "address": "fd00::7/64", "interface": 2},
                                {"version": "4", "address": "10.244.1.7/24", "interface": 2}]})
    assert result.data["cniVersion"] == "1.0.0" and "version" not in result.ips[0]
    assert result.pod_ips() == ["10.244.1.7", "fd00::7"]
    assert Result.of({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.9/32"}]}).pod_ips() == ["10.0.0.9"]


def test_plugin_errors_map_to_the_spec_error_or_libcni_wording():
    assert plugin_error(b'{"code": 7, "msg": "bad config", "details": "no bridge"}', b"", 1) == \
        (7, "bad config", "no bridge")
    assert plugin_error(b"", b"panic: oops\n", 2) == (RUNTIME_ERROR, "netplugin failed: 'panic: oops'", "")
    assert plugin_error(b"", b"", 2)[1] == "netplugin failed with no error message: exit status 2"
    code, msg, _ = plugin_error(b"Segmentation fault", b"", 139)
    assert code == RUNTIME_ERROR and "error parsing its diagnostic message 'Segmentation fault'" in msg
    e = CniError("no IP addresses available", 11, "range 10.244.1.0/24", plugin="bridge", command="ADD")
    assert str(e) == 'plugin type="bridge" failed (add): no IP addresses available; range 10.244.1.0/24'


def test_cache_entry_is_libcnis_cached_info_at_libcnis_path(tmp_path):
    assert cache_path(tmp_path, "kwire", ATT) == tmp_path / "results" / "kwire-c0ffee-eth0"
    entry = CachedAttachment("kwire", "c0ffee", "eth0", "/run/netns/p", ATT.cni_args(),
                             {"portMappings": []}, {"cniVersion": "1.0.0"}, b'{"name":"kwire"}')
    data = entry.to_json()
    assert data["kind"] == CACHE_KIND == "cniCacheV1"
    assert {"containerId", "ifName", "networkName", "netns", "cniArgs", "capabilityArgs", "result",
            "config"} <= set(data)
    assert base64.b64decode(data["config"]) == b'{"name":"kwire"}'
    assert CachedAttachment.from_json(json.loads(json.dumps(data))) == entry
    assert CachedAttachment.from_json({"kind": "other"}) is None


def test_version_negotiation_and_config_loading(tmp_path):
    assert negotiate_version({"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0", "9.0.0"]}) == "1.1.0"
    assert negotiate_version({"cniVersion": "0.4.0"}) == "0.4.0"
    with pytest.raises(CniError, match="none of the CNI versions"):
        negotiate_version({"name": "x", "cniVersion": "0.2.0"})

    with pytest.raises(CniError, match="no network config found"):
        load_network_config(tmp_path / "missing")
    (tmp_path / "20-b.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "b",
                                                        "plugins": [{"type": "bridge"}]}))
    (tmp_path / "10-a.conf").write_text(json.dumps({"cniVersion": "0.4.0", "name": "a", "type": "ptp"}))
    (tmp_path / "05-ignored.txt").write_text("not a config")
    path, conflist = load_network_config(tmp_path)
    assert path.name == "10-a.conf"
    assert conflist == {"cniVersion": "0.4.0", "name": "a",
                        "plugins": [{"cniVersion": "0.4.0", "name": "a", "type": "ptp"}]}
    (tmp_path / "01-broken.conflist").write_text("{")
    with pytest.raises(CniError, match="01-broken.conflist"):
        load_network_config(tmp_path)


def test_attachment_and_network_names_are_validated():
    validate_attachment("kwire", ATT)
    for bad in (Attachment("../etc", "/x"), Attachment("c1", "/x", "eth0/1"),
                Attachment("c1", "/x", "a-very-long-ifname"), Attachment("c1", "/x", "")):
        with pytest.raises(CniError):
            validate_attachment("kwire", bad)
    with pytest.raises(CniError):
        CniNetwork({"cniVersion": "1.0.0", "name": "bad name", "plugins": [{"type": "x"}]}, [], "/tmp")
    with pytest.raises(CniError):
        CniNetwork({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "../x"}]}, [], "/tmp")


def test_pod_runtime_config_has_the_host_ports_as_containerd_passes_them():
    pod = {"spec": {"containers": [
        {"name": "web", "ports": [{"containerPort": 80, "hostPort": 8080},
                                  {"containerPort": 53, "hostPort": 5353, "protocol": "UDP",
                                   "hostIP": "127.0.0.1"},
                                  {"containerPort": 9090}]},
        {"name": "side"}]}}
    assert pod_runtime_config(pod) == {"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}]}
    assert pod_runtime_config({"spec": {"containers": [{"name": "a"}]}}) == {}


def test_default_bin_dirs_start_with_the_interpreters_bin_dir():
    dirs = default_bin_dirs()
    assert dirs[0] == str(__import__("pathlib").Path(sys.executable).parent)
    assert dirs[1:] == ["/usr/lib/cni", "/opt/cni/bin"]


# ------------------------------------------------------------ with fake plugins

def test_add_chains_prev_results_and_caches_the_last(env):
    net = env.network({"type": "first"},
                      {"type": "second", "capabilities": {"portMappings": True},
                       "on": {"ADD": {"result": {"cniVersion": "1.0.0", "ips": [{"address": "10.9.9.9/24"}]}}}})
    rc = {"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "tcp"}], "other": 1}
    result = net.add(ATT, rc)
    first, second = env.calls()
    assert [first["plugin"], second["plugin"]] == ["first", "second"]
    assert all(c["command"] == "ADD" for c in (first, second))
    assert "prevResult" not in first["conf"] and "runtimeConfig" not in first["conf"]
    assert second["conf"]["prevResult"]["ips"][0]["address"] == "10.1.0.5/24"
    assert second["conf"]["runtimeConfig"] == {"portMappings": rc["portMappings"]}
    assert first["env"]["CNI_ARGS"].startswith("IgnoreUnknown=1;K8S_POD_NAMESPACE=default")
    assert result.pod_ips() == ["10.9.9.9"]
    cached = json.loads(cache_path(env.cache, "testnet", ATT).read_text())
    assert cached["result"]["ips"] == [{"address": "10.9.9.9/24"}]
    assert cached["capabilityArgs"] == rc and cached["netns"] == ATT.netns


def test_a_0_4_0_list_gets_0_4_0_prev_results_and_returns_1_0(env):
    net = env.network({"type": "first"}, {"type": "second"}, version="0.4.0")
    result = net.add(ATT)
    second = env.calls()[1]
    assert second["conf"]["cniVersion"] == "0.4.0"
    assert second["conf"]["prevResult"]["ips"][0]["version"] == "4"
    assert result.data["cniVersion"] == "1.0.0" and "version" not in result.ips[0]
    assert json.loads(cache_path(env.cache, "testnet", ATT).read_text())["result"]["cniVersion"] == "0.4.0"


def test_del_runs_in_reverse_with_the_cached_result_after_a_restart(env):
    plugins = ({"type": "first"}, {"type": "second", "capabilities": {"portMappings": True}})
    rc = {"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "tcp"}]}
    env.network(*plugins).add(ATT, rc)
    env.reset()
    restarted = env.network(*plugins)
    restarted.delete(Attachment(ATT.container_id, ifname="eth0"))
    second, first = env.calls()
    assert [second["plugin"], first["plugin"]] == ["second", "first"]
    assert all(c["command"] == "DEL" for c in (first, second))
    assert first["conf"]["prevResult"]["ips"][0]["address"] == "10.1.0.5/24"
    assert second["conf"]["runtimeConfig"] == rc, "capability args come from the cache"
    assert first["env"]["CNI_NETNS"] == ATT.netns, "so does the netns"
    assert "K8S_POD_NAME=web" in first["env"]["CNI_ARGS"], "and CNI_ARGS"
    assert not cache_path(env.cache, "testnet", ATT).exists()

    env.reset()
    restarted.delete(ATT)
    assert [c["plugin"] for c in env.calls()] == ["second", "first"]
    assert all("prevResult" not in c["conf"] for c in env.calls()), "no cache: no prevResult"


def test_a_failing_del_stops_the_list_and_keeps_the_cache_for_a_retry(env):
    env.network({"type": "first"}, {"type": "second"}).add(ATT)
    env.reset()
    failing = env.network({"type": "first"}, {"type": "second", "on": {"DEL": {"error": {"code": 11, "msg": "busy"}}}})
    with pytest.raises(CniError) as e:
        failing.delete(ATT)
    assert e.value.code == 11 and str(e.value) == 'plugin type="second" failed (del): busy'
    assert [c["plugin"] for c in env.calls()] == ["second"]
    assert cache_path(env.cache, "testnet", ATT).exists()


def test_a_failed_add_is_undone_with_del_and_its_error_is_the_one_raised(env):
    net = env.network({"type": "first"},
                      {"type": "second", "on": {"ADD": {"error": {"code": 7, "msg": "no bridge", "details": "cni0"}}}},
                      {"type": "third"})
    with pytest.raises(CniError) as e:
        net.add(ATT)
    assert (e.value.code, e.value.plugin, e.value.command) == (7, "second", "ADD")
    assert str(e.value) == 'plugin type="second" failed (add): no bridge; cni0'
    calls = [(c["plugin"], c["command"]) for c in env.calls()]
    assert calls == [("first", "ADD"), ("second", "ADD"),
                     ("third", "DEL"), ("second", "DEL"), ("first", "DEL")]
    assert not cache_path(env.cache, "testnet", ATT).exists()

    env.reset()
    worse = env.network({"type": "first", "on": {"ADD": {"error": {"code": 5, "msg": "io"}},
                                                 "DEL": {"error": {"code": 6, "msg": "also broken"}}}})
    with pytest.raises(CniError) as e:
        worse.add(ATT)
    assert e.value.code == 5
    assert any("also broken" in note for note in e.value.__notes__)


def test_garbage_output_and_timeouts_are_cni_errors(env):
    with pytest.raises(CniError) as e:
        env.network({"type": "first", "on": {"ADD": {"stdout": "this is not json"}}}).add(ATT)
    assert e.value.code == ERR_DECODE and e.value.plugin == "first"
    assert "this is not json" in str(e.value)

    with pytest.raises(CniError, match="failed \\(add\\): netplugin failed: 'no such file'"):
        env.network({"type": "first", "on": {"ADD": {"stdout": "", "stderr": "no such file", "exit": 1}}}).add(ATT)

    slow = env.network({"type": "first", "on": {"ADD": {"sleep": 30}}})
    slow.timeout = 0.5
    started = time.monotonic()
    with pytest.raises(CniError, match="timed out after 0.5 s"):
        slow.add(ATT)
    assert time.monotonic() - started < 10

    with pytest.raises(CniError, match='failed to find plugin "absent"'):
        env.network({"type": "absent"}).delete(ATT)


def test_check_uses_the_cached_result_and_needs_one(env):
    net = env.network({"type": "first"}, {"type": "second"})
    with pytest.raises(CniError) as e:
        net.check(ATT)
    assert e.value.code == ERR_CONTAINER_UNKNOWN and env.calls() == []
    net.add(ATT)
    env.reset()
    env.network({"type": "first"}, {"type": "second"}).check(ATT)
    calls = env.calls()
    assert [(c["plugin"], c["command"]) for c in calls] == [("first", "CHECK"), ("second", "CHECK")]
    assert all(c["conf"]["prevResult"]["ips"][0]["address"] == "10.1.0.5/24" for c in calls)
    env.reset()
    env.network({"type": "first"}, disableCheck=True).check(ATT)
    assert env.calls() == []


def test_status(env):
    env.network({"type": "first"}, {"type": "second"}).status()
    assert env.calls() == [], "a 1.0.0 list has no STATUS"
    with pytest.raises(CniError, match='type="absent" failed \\(status\\)'):
        env.network({"type": "first"}, {"type": "absent"}).status()

    env.network({"type": "first"}, version="1.1.0").status()
    (call,) = env.calls()
    assert call["command"] == "STATUS"
    assert set(call["env"]) == {"CNI_COMMAND", "CNI_PATH"}
    with pytest.raises(CniError) as e:
        env.network({"type": "first", "on": {"STATUS": {"error": {"code": 50, "msg": "no subnet"}}}},
                    version="1.1.0").status()
    assert e.value.code == 50


def test_gc_deletes_cached_attachments_not_valid_and_sends_gc_on_1_1(env):
    gone, kept = Attachment("gone1", "/run/netns/gone"), Attachment("kept1", "/run/netns/kept")
    plugins = ({"type": "first"}, {"type": "second"})
    for att in (gone, kept):
        env.network(*plugins).add(att)
    other = CniNetwork({"cniVersion": "1.0.0", "name": "othernet",
                        "plugins": [{"type": "first", "log": str(env.log)}]}, env.bins, env.cache)
    other.add(Attachment("foreign", "/run/netns/f"))
    env.reset()

    removed = env.network(*plugins).gc([kept])
    assert [r.container_id for r in removed] == ["gone1"]
    calls = env.calls()
    assert [(c["plugin"], c["command"], c["env"]["CNI_CONTAINERID"]) for c in calls] == \
        [("second", "DEL", "gone1"), ("first", "DEL", "gone1")]
    assert calls[0]["env"]["CNI_NETNS"] == "/run/netns/gone"
    assert calls[0]["conf"]["prevResult"]["ips"][0]["address"] == "10.1.0.5/24"
    assert not cache_path(env.cache, "testnet", gone).exists()
    assert cache_path(env.cache, "testnet", kept).exists()
    assert cache_path(env.cache, "othernet", Attachment("foreign")).exists()

    env.reset()
    env.network(*plugins, version="1.1.0").gc([kept])
    assert [(c["plugin"], c["command"]) for c in env.calls()] == [("first", "GC"), ("second", "GC")]
    gc_conf = env.calls()[0]["conf"]
    assert gc_conf["cni.dev/valid-attachments"] == [{"containerID": "kept1", "ifname": "eth0"}]
    assert set(env.calls()[0]["env"]) == {"CNI_COMMAND", "CNI_PATH"}


def test_gc_spares_what_the_same_network_object_added_and_honours_disable_gc(env):
    net = env.network({"type": "first"})
    net.add(ATT)
    assert net.gc([]) == [], "an attachment this agent added is not stale"
    assert env.network({"type": "first"}, disableGC=True).gc([]) == []
    assert cache_path(env.cache, "testnet", ATT).exists()
    net.delete(ATT)
    net.add(ATT)
    net2 = env.network({"type": "first"})
    assert [r.container_id for r in net2.gc([])] == [ATT.container_id]


def test_load_picks_the_lexically_first_file(env, tmp_path):
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    for name, kind in (("10-kwire.conflist", "first"), ("05-other.conflist", "second")):
        (conf_dir / name).write_text(json.dumps({"cniVersion": "1.0.0", "name": name[3:8],
                                                 "plugins": [{"type": kind, "log": str(env.log)}]}))
    net = CniNetwork.load(conf_dir, env.bins, env.cache)
    assert net.source.name == "05-other.conflist" and net.name == "other"
    net.add(ATT)
    assert [c["plugin"] for c in env.calls()] == ["second"]
