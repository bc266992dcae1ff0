"""kwire-cni without root: subnet file parsing, the delegate's config, version
handling, and the command flow against a fake delegate that logs what it gets."""
import json
import os
import subprocess
import sys

import pytest

from kwire.cni import netconf
from kwire.cni.plugin import (DEFAULT_BRIDGE, SUPPORTED_VERSIONS, PluginError, Subnet, delegate_config,
                              delegate_version, handle, parse_subnet_env, scratch_path)

FAKE_DELEGATE = r'''#!{python} -IS
import json, os, sys
conf = json.load(sys.stdin)
cmd = os.environ["CNI_COMMAND"]
if cmd == "VERSION":
    print(json.dumps({"cniVersion": "1.0.0", "supportedVersions": os.environ["FAKE_VERSIONS"].split(",")}))
    sys.exit(0)
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({"command": cmd, "conf": conf,
                        "env": {k: v for k, v in os.environ.items() if k.startswith("CNI_")}}) + "\n")
fail = os.environ.get("FAKE_FAIL", "")
if fail.startswith(cmd + ":"):
    print(fail[len(cmd) + 1:])
    sys.exit(1)
if cmd == "ADD":
    subnet = conf["ipam"]["ranges"][0][0]["subnet"]
    print(json.dumps({"cniVersion": conf["cniVersion"],
                      "interfaces": [{"name": "eth0", "sandbox": os.environ["CNI_NETNS"]}],
                      "ips": [{"address": subnet.rsplit(".", 1)[0] + ".2/24", "interface": 0}]}))
'''


@pytest.fixture
def node(tmp_path):
    """A CNI_PATH with a fake 'bridge' and 'ptp', a subnet file, and the plugin's config."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bridge", "ptp"):
        (bin_dir / name).write_text(FAKE_DELEGATE.replace("{python}", sys.executable))
        (bin_dir / name).chmod(0o755)
    subnet_file = tmp_path / "subnet.env"
    netconf.write_subnet_file(subnet_file, "10.244.7.0/24", 1450)

    class Node:
        def __init__(self):
            self.log = tmp_path / "delegate.jsonl"
            self.data_dir = tmp_path / "kwire"
            self.subnet = subnet_file
            self.conf = {"cniVersion": "1.0.0", "name": "kwire", "type": "kwire-cni",
                         "subnetFile": str(subnet_file), "dataDir": str(self.data_dir)}
            self.env = {"CNI_PATH": f"{tmp_path / 'none'}:{bin_dir}", "CNI_CONTAINERID": "abc123",
                        "CNI_NETNS": "/run/netns/p1", "CNI_IFNAME": "eth0", "CNI_ARGS": "K8S_POD_NAME=web",
                        "FAKE_LOG": str(self.log), "FAKE_VERSIONS": "0.3.1,0.4.0,1.0.0",
                        "PATH": os.environ.get("PATH", "")}

        def run(self, command, conf=None, **env):
            conf = {**self.conf, **(conf or {})}
            return handle({**self.env, "CNI_COMMAND": command, **env}, json.dumps(conf).encode())

        def calls(self):
            return [json.loads(x) for x in self.log.read_text().splitlines()] if self.log.exists() else []

    return Node()


def test_subnet_file_parsing():
    assert parse_subnet_env("KWIRE_SUBNET=10.244.1.0/24\nKWIRE_MTU=1450\n") == Subnet(("10.244.1.0/24",), 1450)
    assert parse_subnet_env("# written by kwire\nKWIRE_SUBNET = \"10.244.1.1/24\"\n") == \
        Subnet(("10.244.1.0/24",), 1500)
    assert parse_subnet_env("KWIRE_SUBNET=10.244.1.0/24,fd00:10:244:1::/64\nKWIRE_MTU=1450").subnets == \
        ("10.244.1.0/24", "fd00:10:244:1::/64")
    for bad, why in (("KWIRE_MTU=1450", "no KWIRE_SUBNET"), ("KWIRE_SUBNET=10.244.1.0/33", "KWIRE_SUBNET"),
                     ("KWIRE_SUBNET=10.0.0.0/8\nKWIRE_MTU=big", "not a number"),
                     ("KWIRE_SUBNET=10.0.0.0/8\nKWIRE_MTU=20", "out of range")):
        with pytest.raises(ValueError, match=why):
            parse_subnet_env(bad)
    assert netconf.subnet_env("10.244.3.0/24", 1450) == "KWIRE_SUBNET=10.244.3.0/24\nKWIRE_MTU=1450\n"


def test_bridge_delegate_config_is_flannels():
    conf = {"name": "kwire", "dataDir": "/var/lib/kwire/cni"}
    d = delegate_config(conf, Subnet(("10.244.1.0/24",), 1450), "1.0.0")
    assert d == {"type": "bridge", "name": "kwire", "cniVersion": "1.0.0", "bridge": DEFAULT_BRIDGE,
                 "isGateway": True, "hairpinMode": True, "ipMasq": False, "mtu": 1450,
                 "ipam": {"type": "host-local", "dataDir": "/var/lib/kwire/cni/ipam",
                          "ranges": [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}}


def test_ptp_delegate_and_overrides():
    conf = {"name": "kwire", "dataDir": "/d", "delegate": {"type": "ptp", "mtu": 1400},
            "ipam": {"routes": [{"dst": "10.244.0.0/16"}]}}
    d = delegate_config(conf, Subnet(("10.244.1.0/24", "fd00::/64"), 1450), "0.4.0")
    assert d["type"] == "ptp" and d["mtu"] == 1400 and d["ipMasq"] is False
    assert not {"bridge", "isGateway", "hairpinMode"} & set(d)
    assert d["ipam"]["routes"] == [{"dst": "10.244.0.0/16"}]
    assert d["ipam"]["ranges"][1] == [{"subnet": "fd00::/64", "gateway": "fd00::1"}]
    assert conf["delegate"] == {"type": "ptp", "mtu": 1400}, "the config is not modified"


def test_delegate_version():
    assert delegate_version("1.0.0", None) == "1.0.0"
    assert delegate_version("0.4.0", None) == "0.4.0"
    assert delegate_version("1.1.0", ["0.4.0", "1.0.0"]) == "1.0.0"
    assert delegate_version("1.1.0", ["1.0.0", "1.1.0"]) == "1.1.0"
    with pytest.raises(PluginError):
        delegate_version("1.1.0", ["0.3.1"])


def test_version_and_argument_errors(node):
    status, out = handle({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "1.0.0"}')
    assert status == 0 and json.loads(out) == {"cniVersion": "1.1.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}
    assert SUPPORTED_VERSIONS == ("0.4.0", "1.0.0", "1.1.0")

    def error(result):
        status, out = result
        assert status == 1
        return json.loads(out)

    assert error(node.run("FROB"))["code"] == 4
    assert error(handle({"CNI_COMMAND": "ADD"}, b"{not json"))["code"] == 6
    assert error(node.run("ADD", {"subnetFile": ""}))["code"] == 7
    assert error(node.run("ADD", {"cniVersion": "0.3.1"}))["code"] == 1
    assert error(node.run("STATUS"))["msg"] == "config version does not allow STATUS"
    missing = error(node.run("ADD", CNI_NETNS=""))
    assert missing == {"cniVersion": "1.0.0", "code": 4, "msg": "required env variables [CNI_NETNS] missing"}
    node.subnet.unlink()
    assert error(node.run("ADD"))["code"] == 11
    assert node.calls() == []


def test_add_check_del_del_through_the_delegate(node):
    status, out = node.run("ADD")
    assert status == 0, out
    result = json.loads(out)
    assert result["cniVersion"] == "1.0.0" and result["ips"][0]["address"] == "10.244.7.2/24"
    (add,) = node.calls()
    assert add["command"] == "ADD" and add["conf"]["type"] == "bridge" and add["conf"]["mtu"] == 1450
    assert add["conf"]["ipam"]["dataDir"] == str(node.data_dir / "ipam")
    assert add["env"]["CNI_CONTAINERID"] == "abc123" and add["env"]["CNI_ARGS"] == "K8S_POD_NAME=web"
    assert os.path.exists(scratch_path(str(node.data_dir), "abc123", "eth0"))

    node.subnet.unlink()  # CHECK and DEL use what ADD used
    assert node.run("CHECK", {"prevResult": result}) == (0, "")
    assert node.run("DEL", {"prevResult": result}) == (0, "")
    check, delete = node.calls()[1:]
    assert check["command"] == "CHECK" and check["conf"]["prevResult"] == result
    assert delete["command"] == "DEL" and delete["conf"]["ipam"] == add["conf"]["ipam"]
    assert not os.path.exists(scratch_path(str(node.data_dir), "abc123", "eth0"))

    assert node.run("DEL") == (0, "")
    assert node.run("DEL", CNI_CONTAINERID="never-added", CNI_NETNS="") == (0, "")
    assert len(node.calls()) == 3, "nothing to undo: the delegate is not called"
    status, out = node.run("CHECK")
    assert status == 1 and json.loads(out)["code"] == 3


def test_a_1_1_0_request_talks_1_0_0_to_an_older_delegate(node):
    status, out = node.run("ADD", {"cniVersion": "1.1.0", "delegate": {"type": "ptp"}})
    assert status == 0 and json.loads(out)["cniVersion"] == "1.1.0"
    (add,) = node.calls()
    assert add["conf"]["type"] == "ptp" and add["conf"]["cniVersion"] == "1.0.0"


def test_delegate_errors_pass_through(node):
    status, out = node.run("ADD", FAKE_FAIL='ADD:{"code": 11, "msg": "no IP addresses available", "details": "x"}')
    assert status == 1
    assert json.loads(out) == {"cniVersion": "1.0.0", "code": 11, "msg": "bridge: no IP addresses available",
                               "details": "x"}
    status, out = node.run("DEL", FAKE_FAIL="DEL:panic: runtime error")
    assert status == 1 and json.loads(out)["msg"] == "bridge failed: panic: runtime error"
    assert os.path.exists(scratch_path(str(node.data_dir), "abc123", "eth0")), "kept for the next DEL"
    assert node.run("DEL") == (0, "")


def test_status(node):
    v11 = {"cniVersion": "1.1.0"}
    assert node.run("STATUS", v11) == (0, "")
    assert node.calls() == [], "a delegate without 1.1.0 is not sent STATUS"
    assert node.run("STATUS", v11, FAKE_VERSIONS="1.0.0,1.1.0") == (0, "")
    assert [c["command"] for c in node.calls()] == ["STATUS"]
    status, out = node.run("STATUS", {**v11, "delegate": {"type": "macvlan"}})
    assert status == 1 and json.loads(out)["code"] == 50
    node.subnet.unlink()
    status, out = node.run("STATUS", v11)
    assert status == 1 and json.loads(out)["code"] == 50 and "no subnet file" in json.loads(out)["msg"]


def test_gc_deletes_saved_attachments_not_in_the_valid_list(node):
    for cid in ("keep1", "stale1"):
        assert node.run("ADD", CNI_CONTAINERID=cid, CNI_NETNS=f"/run/netns/{cid}")[0] == 0
    gc = {"cniVersion": "1.1.0", "cni.dev/valid-attachments": [{"containerID": "keep1", "ifname": "eth0"}]}
    assert node.run("GC", gc, CNI_CONTAINERID="", CNI_NETNS="", CNI_IFNAME="") == (0, "")
    delete = node.calls()[-1]
    assert delete["command"] == "DEL" and delete["env"]["CNI_CONTAINERID"] == "stale1"
    assert delete["env"]["CNI_NETNS"] == "/run/netns/stale1" and delete["conf"]["cniVersion"] == "1.0.0"
    assert os.path.exists(scratch_path(str(node.data_dir), "keep1", "eth0"))
    assert not os.path.exists(scratch_path(str(node.data_dir), "stale1", "eth0"))


def test_the_module_runs_as_a_plugin_executable():
    proc = subprocess.run([sys.executable, "-m", "kwire.cni.plugin"], input=b'{"cniVersion": "1.0.0"}',
                          capture_output=True, env={**os.environ, "CNI_COMMAND": "VERSION"}, timeout=30, check=False)
    assert proc.returncode == 0 and json.loads(proc.stdout)["supportedVersions"] == ["0.4.0", "1.0.0", "1.1.0"]
    proc = subprocess.run([sys.executable, "-m", "kwire.cni.plugin"], input=b"{}", capture_output=True,
                          env={**os.environ, "CNI_COMMAND": "ADD"}, timeout=30, check=False)
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == 7


def test_default_conflist_chains_kwire_cni_with_portmap(tmp_path):
    conf_dir = netconf.write_node_config(tmp_path, "10.244.2.0/24", mtu=1450)
    assert conf_dir == tmp_path / "net.d"
    conflist = json.loads((conf_dir / "10-kwire.conflist").read_text())
    kwire, portmap = conflist["plugins"]
    assert conflist["cniVersion"] == "1.0.0" and conflist["name"] == "kwire"
    assert kwire == {"type": "kwire-cni", "subnetFile": str(tmp_path / "subnet.env"),
                     "dataDir": str(tmp_path / "kwire"), "delegate": {"type": "ptp"}}
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}}
    assert parse_subnet_env((tmp_path / "subnet.env").read_text()) == Subnet(("10.244.2.0/24",), 1450)
    assert netconf.default_conflist(tmp_path / "s", tmp_path / "d", "bridge")["plugins"][0]["delegate"] == \
        {"type": "bridge", "bridge": "cni0"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.d", "subnet.env"], "no temp files left"
