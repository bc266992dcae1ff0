"""kwire-cni: the node's pod network as a CNI plugin (spec 1.1; speaks 0.4.0,
1.0.0 and 1.1.0).

Like flannel's CNI plugin it has no data path of its own. It reads the node's pod
subnet and MTU from the subnet file the agent writes (``KWIRE_SUBNET=10.244.1.0/24``,
``KWIRE_MTU=1450``, as flannel reads /run/flannel/subnet.env), builds the config of
a reference plugin, and executes that plugin from CNI_PATH, passing its result or
error through:

- ``bridge`` (default): a ``cni0`` bridge in the node's namespace as the pods'
  gateway, hairpin mode, the MTU, and no masquerade, so pod-to-pod traffic keeps
  the pod's source IP; or ``ptp`` (``"delegate": {"type": "ptp"}``);
- ``host-local`` IPAM over the subnet, its state under ``<dataDir>/ipam``.

Config keys: ``subnetFile``, ``dataDir``, and optional ``delegate`` / ``ipam``
objects whose keys override the defaults. The delegate's config is saved under
``<dataDir>/attachments`` before ADD runs it, so CHECK, DEL and GC use what ADD
used even if the subnet file changed or is gone; DEL of an attachment with no
saved config succeeds (nothing to undo).

A process is started for every operation, and Python's start-up is most of an
ADD's cost: only json, os, sys, signal, ipaddress and collections are imported
(json brings re, enum, functools and collections anyway); typing, dataclasses,
pathlib and subprocess would add some 50 ms to every call.
"""
from __future__ import annotations

import collections
import ipaddress
import json
import os
import signal
import sys

SUPPORTED_VERSIONS = ("0.4.0", "1.0.0", "1.1.0")
SPEC_VERSION = "1.1.0"
SUBNET_KEY = "KWIRE_SUBNET"
MTU_KEY = "KWIRE_MTU"
DEFAULT_BRIDGE = "cni0"

ERR_INCOMPATIBLE_VERSION = 1
ERR_CONTAINER_UNKNOWN = 3
ERR_INVALID_ENV = 4
ERR_IO = 5
ERR_DECODE = 6
ERR_INVALID_CONFIG = 7
ERR_TRY_AGAIN_LATER = 11
ERR_NOT_AVAILABLE = 50
ERR_DELEGATE = 100
"""A delegate failed without saying why in the spec's error format."""


class PluginError(Exception):
    """An error result (spec: code, msg, details), printed on stdout with exit status 1."""

    def __init__(self, code: int, msg: str, details: str = ""):
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details

    def to_json(self, cni_version: str) -> dict:
        out = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


# ------------------------------------------------------------ pure parts

Subnet = collections.namedtuple("Subnet", "subnets mtu")
"""The node's pod subnets (a tuple, one per IP family) and the pods' MTU."""


def parse_subnet_env(text: str) -> Subnet:
    """``KEY=value`` lines; KWIRE_SUBNET may list one subnet per family, comma-separated."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"')
    if not values.get(SUBNET_KEY):
        raise ValueError(f"no {SUBNET_KEY}")
    subnets = []
    for item in values[SUBNET_KEY].split(","):
        try:
            subnets.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError as e:
            raise ValueError(f"{SUBNET_KEY}: {e}") from None
    try:
        mtu = int(values.get(MTU_KEY) or 1500)
    except ValueError:
        raise ValueError(f"{MTU_KEY} is not a number: {values[MTU_KEY]!r}") from None
    if not 68 <= mtu <= 65535:
        raise ValueError(f"{MTU_KEY} {mtu} is out of range")
    return Subnet(tuple(subnets), mtu)


def ipam_config(conf: dict, subnet: Subnet) -> dict:
    """host-local over the subnet, the first address of each range the gateway, a
    default route per family; keys of the config's ``ipam`` win."""
    ipam = dict(conf.get("ipam") or {})
    ipam.setdefault("type", "host-local")
    nets = [ipaddress.ip_network(s) for s in subnet.subnets]
    ipam.setdefault("ranges", [[{"subnet": str(n), "gateway": str(n.network_address + 1)}] for n in nets])
    ipam.setdefault("routes", [{"dst": "0.0.0.0/0" if n.version == 4 else "::/0"} for n in nets])
    ipam.setdefault("dataDir", os.path.join(conf["dataDir"], "ipam"))
    return ipam


def delegate_type(conf: dict) -> str:
    return (conf.get("delegate") or {}).get("type", "bridge")


def delegate_config(conf: dict, subnet: Subnet, cni_version: str) -> dict:
    """The delegate's config, as flannel builds it: ``bridge`` unless the config's
    ``delegate`` names another type; its keys override the defaults."""
    delegate = dict(conf.get("delegate") or {})
    delegate.setdefault("type", "bridge")
    delegate.setdefault("mtu", subnet.mtu)
    delegate.setdefault("ipMasq", False)
    if delegate["type"] == "bridge":
        delegate.setdefault("bridge", DEFAULT_BRIDGE)
        delegate.setdefault("isGateway", True)
        delegate.setdefault("hairpinMode", True)
    delegate["name"] = conf["name"]
    delegate["cniVersion"] = cni_version
    delegate["ipam"] = ipam_config(conf, subnet)
    return delegate


def delegate_version(requested: str, supported: list[str] | None) -> str:
    """The version to speak to the delegate: the runtime's, except that a delegate
    without 1.1.0 (the reference plugins before v1.5) gets 1.0.0, whose results
    have the same shape. ``supported`` is only needed (asked) for 1.1.0."""
    if requested != "1.1.0" or supported is None or "1.1.0" in supported:
        return requested
    if "1.0.0" in supported:
        return "1.0.0"
    raise PluginError(ERR_INCOMPATIBLE_VERSION,
                      f"the delegate supports none of 1.1.0, 1.0.0 (it supports {supported})")


def scratch_path(data_dir: str, container_id: str, ifname: str) -> str:
    return os.path.join(data_dir, "attachments", f"{container_id}-{ifname}.json")


def check_version(version: object, command: str) -> None:
    if version not in SUPPORTED_VERSIONS:
        raise PluginError(ERR_INCOMPATIBLE_VERSION,
                          f"incompatible CNI versions; config is {version!r}, plugin supports {list(SUPPORTED_VERSIONS)}")
    if command in ("STATUS", "GC") and version != "1.1.0":
        raise PluginError(ERR_INCOMPATIBLE_VERSION, f"config version does not allow {command}")


def parse_conf(stdin: bytes) -> dict:
    try:
        conf = json.loads(stdin)
    except ValueError as e:
        raise PluginError(ERR_DECODE, f"failed to parse network configuration: {e}") from None
    if not isinstance(conf, dict):
        raise PluginError(ERR_DECODE, "the network configuration is not a JSON object")
    for key in ("name", "subnetFile", "dataDir"):
        if not isinstance(conf.get(key), str) or not conf[key]:
            raise PluginError(ERR_INVALID_CONFIG, f"the network configuration has no {key!r}")
    if not isinstance(conf.get("delegate") or {}, dict) or not isinstance(conf.get("ipam") or {}, dict):
        raise PluginError(ERR_INVALID_CONFIG, "'delegate' and 'ipam' must be objects")
    return conf


def need(env: dict, *names: str) -> None:
    missing = [n for n in names if not env.get(n)]
    if missing:
        raise PluginError(ERR_INVALID_ENV, f"required env variables [{','.join(missing)}] missing")


# ------------------------------------------------------------ the delegate

def find_in_path(kind: str, env: dict) -> str:
    for d in env.get("CNI_PATH", "").split(os.pathsep):
        candidate = os.path.join(d, kind)
        if d and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise PluginError(ERR_NOT_AVAILABLE, f'failed to find plugin "{kind}" in path [{env.get("CNI_PATH", "")}]')


def spawn(path: str, stdin: bytes, env: dict) -> tuple[int, bytes]:
    """Run ``path`` with ``stdin``; (exit status, stdout). Its stderr is ours, which
    the runtime reads. (subprocess would cost more to import than this whole run.)"""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        pid = os.posix_spawn(path, [path], env, setsigdef=(signal.SIGPIPE,), file_actions=[
            (os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_CLOSE, in_w), (os.POSIX_SPAWN_CLOSE, out_r)])
    except OSError:
        os.close(in_w)
        os.close(out_r)
        raise
    finally:
        os.close(in_r)
        os.close(out_w)
    try:
        view = memoryview(stdin)
        while view:
            view = view[os.write(in_w, view):]
    except BrokenPipeError:
        pass
    finally:
        os.close(in_w)
    with os.fdopen(out_r, "rb") as out:
        stdout = out.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), stdout


def run_delegate(command: str, conf: dict, env: dict) -> bytes:
    """Execute the delegate with our environment (CNI_COMMAND as given), as libcni's
    invoke.Delegate* do; its error result is raised with the delegate's name in front."""
    kind = conf["type"]
    status, stdout = spawn(find_in_path(kind, env), json.dumps(conf).encode(),
                           {**env, "CNI_COMMAND": command})
    if status == 0:
        return stdout
    try:
        err = json.loads(stdout)
        raise PluginError(int(err["code"]), f"{kind}: {err.get('msg', '')}", err.get("details") or "")
    except (ValueError, KeyError, TypeError):
        text = stdout.decode(errors="replace").strip()
        raise PluginError(ERR_DELEGATE, f"{kind} failed: {text or f'exit status {status}'}") from None


def delegate_versions(kind: str, env: dict) -> list[str]:
    out = run_delegate("VERSION", {"type": kind, "cniVersion": SPEC_VERSION}, env)
    try:
        return list(json.loads(out)["supportedVersions"])
    except (ValueError, KeyError, TypeError):
        raise PluginError(ERR_DELEGATE, f"{kind}: unreadable VERSION output") from None


def version_for(kind: str, requested: str, env: dict) -> str:
    return delegate_version(requested, delegate_versions(kind, env) if requested == "1.1.0" else None)


def read_subnet(conf: dict) -> Subnet:
    path = conf["subnetFile"]
    try:
        with open(path) as f:
            return parse_subnet_env(f.read())
    except FileNotFoundError:
        raise PluginError(ERR_TRY_AGAIN_LATER, f"no subnet file {path}: the node has no pod subnet yet") from None
    except (OSError, ValueError) as e:
        raise PluginError(ERR_INVALID_CONFIG, f"subnet file {path}: {e}") from None


def load_scratch(conf: dict, container_id: str, ifname: str) -> dict | None:
    path = scratch_path(conf["dataDir"], container_id, ifname)
    try:
        with open(path) as f:
            saved = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise PluginError(ERR_IO, f"{path}: {e}") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("delegate"), dict) or not saved["delegate"].get("type"):
        raise PluginError(ERR_IO, f"{path}: not a saved delegate config")
    return saved


def save_scratch(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def with_prev_result(delegate: dict, conf: dict, version: str) -> dict:
    """The saved delegate config for CHECK/DEL, speaking ``version``, with the runtime's
    prevResult (same result shape within 1.x) when it gave one."""
    out = {k: v for k, v in delegate.items() if k != "prevResult"}
    out["cniVersion"] = version
    if isinstance(conf.get("prevResult"), dict):
        out["prevResult"] = {**conf["prevResult"], "cniVersion": version}
    return out


# ------------------------------------------------------------ commands

def cmd_add(conf: dict, env: dict) -> str:
    need(env, "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH")
    subnet = read_subnet(conf)
    kind = delegate_type(conf)
    delegate = delegate_config(conf, subnet, version_for(kind, conf["cniVersion"], env))
    cid, ifname = env["CNI_CONTAINERID"], env["CNI_IFNAME"]
    save_scratch(scratch_path(conf["dataDir"], cid, ifname),
                 {"containerID": cid, "ifname": ifname, "netns": env["CNI_NETNS"],
                  "cniArgs": env.get("CNI_ARGS", ""), "delegate": delegate})
    out = run_delegate("ADD", delegate, env)
    try:
        result = json.loads(out)
        result["cniVersion"] = conf["cniVersion"]
    except (ValueError, TypeError):
        raise PluginError(ERR_DECODE, f"{kind}: unreadable ADD result {out[:200]!r}") from None
    return json.dumps(result)


def cmd_del(conf: dict, env: dict) -> None:
    need(env, "CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH")
    cid, ifname = env["CNI_CONTAINERID"], env["CNI_IFNAME"]
    saved = load_scratch(conf, cid, ifname)
    if saved is None:
        return
    delegate = saved["delegate"]
    version = version_for(delegate["type"], conf["cniVersion"], env)
    run_delegate("DEL", with_prev_result(delegate, conf, version), env)
    remove(scratch_path(conf["dataDir"], cid, ifname))


def cmd_check(conf: dict, env: dict) -> None:
    need(env, "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH")
    saved = load_scratch(conf, env["CNI_CONTAINERID"], env["CNI_IFNAME"])
    if saved is None:
        raise PluginError(ERR_CONTAINER_UNKNOWN,
                          f"container {env['CNI_CONTAINERID']} interface {env['CNI_IFNAME']} was not added")
    delegate = saved["delegate"]
    version = version_for(delegate["type"], conf["cniVersion"], env)
    run_delegate("CHECK", with_prev_result(delegate, conf, version), env)


def cmd_status(conf: dict, env: dict) -> None:
    """Ready when the subnet file is readable and the delegate is on CNI_PATH (and
    answers STATUS, if it speaks 1.1.0)."""
    need(env, "CNI_PATH")
    try:
        subnet = read_subnet(conf)
    except PluginError as e:
        raise PluginError(ERR_NOT_AVAILABLE, e.msg) from None
    kind = delegate_type(conf)
    if "1.1.0" in delegate_versions(kind, env):
        run_delegate("STATUS", delegate_config(conf, subnet, "1.1.0"), env)


def cmd_gc(conf: dict, env: dict) -> None:
    """DEL, through the delegate, every saved attachment not in the valid list (this
    releases their host-local addresses), then pass GC on if the delegate speaks 1.1.0."""
    need(env, "CNI_PATH")
    valid_list = conf.get("cni.dev/valid-attachments", conf.get("cni.dev/attachments")) or []
    valid = {(a.get("containerID"), a.get("ifname")) for a in valid_list if isinstance(a, dict)}
    errors = []
    attachments = os.path.join(conf["dataDir"], "attachments")
    names = sorted(os.listdir(attachments)) if os.path.isdir(attachments) else []
    for name in (n for n in names if n.endswith(".json") and not n.startswith(".")):
        path = os.path.join(attachments, name)
        try:
            with open(path) as f:
                saved = json.load(f)
            if (saved["containerID"], saved["ifname"]) in valid:
                continue
            delegate = saved["delegate"]
            delegate_env = {**env, "CNI_CONTAINERID": saved["containerID"], "CNI_IFNAME": saved["ifname"],
                            "CNI_NETNS": saved.get("netns", ""), "CNI_ARGS": saved.get("cniArgs", "")}
            run_delegate("DEL", with_prev_result(delegate, {}, version_for(delegate["type"], "1.1.0", env)),
                         delegate_env)
            remove(path)
        except (OSError, ValueError, KeyError, TypeError, PluginError) as e:
            errors.append(f"{name}: {e}")
    kind = delegate_type(conf)
    try:
        if "1.1.0" in delegate_versions(kind, env):
            gc_conf = delegate_config(conf, read_subnet(conf), "1.1.0")
            gc_conf["cni.dev/valid-attachments"] = valid_list
            run_delegate("GC", gc_conf, env)
    except PluginError as e:
        errors.append(str(e))
    if errors:
        raise PluginError(ERR_DELEGATE, f"GC: {len(errors)} failure(s)", "; ".join(errors))


COMMANDS = {"ADD": cmd_add, "DEL": cmd_del, "CHECK": cmd_check, "STATUS": cmd_status, "GC": cmd_gc}


def handle(env: dict, stdin: bytes) -> tuple[int, str]:
    """One invocation: (exit status, stdout)."""
    command = env.get("CNI_COMMAND", "")
    if command == "VERSION":
        return 0, json.dumps({"cniVersion": SPEC_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)})
    version = SPEC_VERSION
    try:
        if command not in COMMANDS:
            raise PluginError(ERR_INVALID_ENV, f"unknown CNI_COMMAND: {command!r}")
        conf = parse_conf(stdin)
        version = conf.get("cniVersion", "")
        check_version(version, command)
        return 0, COMMANDS[command](conf, env) or ""
    except PluginError as e:
        error = e
    except OSError as e:
        error = PluginError(ERR_IO, str(e))
    return 1, json.dumps(error.to_json(version if version in SUPPORTED_VERSIONS else SPEC_VERSION))


def main() -> None:
    status, out = handle(dict(os.environ), sys.stdin.buffer.read())
    if out:
        sys.stdout.write(out + "\n")
    sys.exit(status)


if __name__ == "__main__":
    main()
