"""Run a CNI network the way a container runtime does: CNI spec 1.1, section 3
("Execution of Network Configurations"), following libcni, the library under
containerd and CRI-O.

- The network is the lexically first ``.conf``/``.conflist``/``.json`` file of the
  conf dir (a single-plugin ``.conf`` becomes a one-plugin list). Its ``cniVersion``
  (or the highest of ``cniVersions`` we speak) is the version every plugin is asked
  to speak.
- Each plugin gets the CNI_* environment and its own config on stdin, with the
  list's ``name``/``cniVersion``, a ``runtimeConfig`` holding only the capability
  arguments it declares in ``capabilities``, and (ADD) the previous plugin's
  result or (CHECK, DEL) the cached ADD result as ``prevResult``.
- A successful ADD is cached in libcni's layout and format
  (``<cache>/results/<network>-<container id>-<ifname>``, kind ``cniCacheV1``),
  so CHECK and DEL get its result, CNI_ARGS and capability arguments even after
  the agent restarts, and GC knows what was attached.
- DEL runs the plugins in reverse order, tolerates a missing cache, and drops the
  cache only when every plugin succeeded (so a retry still has it). A failed ADD
  is undone with DEL; the ADD error is what is raised.
- Results of 0.3.x/0.4.0 plugins reach the caller converted to 1.x, as libcni's
  ``GetAsVersion`` converts them; failures are CniError with the spec's code,
  msg and details, worded like containerd's for FailedCreatePodSandBox events.
"""
from __future__ import annotations

import base64
import copy
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPEC_VERSION = "1.1.0"
LEGACY_VERSIONS = ("0.3.0", "0.3.1", "0.4.0")
"""Versions whose results carry ``ips[].version`` (the 0.3/0.4 result shape)."""
SUPPORTED_VERSIONS = LEGACY_VERSIONS + ("1.0.0", "1.1.0")
CONF_EXTENSIONS = (".conf", ".conflist", ".json")
CACHE_KIND = "cniCacheV1"
DEFAULT_TIMEOUT = 60.0

ERR_INCOMPATIBLE_VERSION = 1
ERR_CONTAINER_UNKNOWN = 3
ERR_DECODE = 6
ERR_INVALID_CONFIG = 7
RUNTIME_ERROR = 999
"""Code of failures of the invocation itself (plugin not found, timeout, garbage
output), which no plugin reported. Codes below 100 are the spec's well-known ones."""

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_V1_INTERFACE_ONLY = ("mtu", "socketPath", "pciID")


class CniError(Exception):
    """A failed CNI operation. ``str()`` reads like containerd's message, e.g.
    ``plugin type="bridge" failed (add): failed to allocate for range 0: ...``."""

    def __init__(self, msg: str, code: int = RUNTIME_ERROR, details: str = "",
                 plugin: str = "", command: str = ""):
        self.msg, self.code, self.details = msg, code, details
        self.plugin, self.command = plugin, command
        text = msg + (f"; {details}" if details else "")
        if plugin:
            text = f'plugin type="{plugin}" failed ({command.lower()}): {text}'
        super().__init__(text)


def default_bin_dirs() -> list[str]:
    """The CNI_PATH the agent runs plugins from: ``kwire-cni`` is installed beside this
    interpreter (the venv's bin), the reference plugins in Debian's /usr/lib/cni or
    upstream's /opt/cni/bin."""
    return [str(Path(sys.executable).parent), "/usr/lib/cni", "/opt/cni/bin"]


# ------------------------------------------------------------ versions and results

def version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except (AttributeError, ValueError):
        raise CniError(f"invalid cniVersion {version!r}", ERR_INCOMPATIBLE_VERSION) from None


def at_least(version: str, minimum: str) -> bool:
    return version_tuple(version) >= version_tuple(minimum)


def negotiate_version(conflist: Mapping[str, Any]) -> str:
    """The highest of ``cniVersion`` and ``cniVersions`` (spec 1.1) that kwire speaks."""
    offered = list(conflist.get("cniVersions") or [])
    if conflist.get("cniVersion"):
        offered.append(conflist["cniVersion"])
    spoken = [v for v in offered if v in SUPPORTED_VERSIONS]
    if not spoken:
        raise CniError(f"network {conflist.get('name')!r}: none of the CNI versions {offered} "
                       f"is supported (supported: {list(SUPPORTED_VERSIONS)})",
                       ERR_INCOMPATIBLE_VERSION)
    return max(spoken, key=version_tuple)


def convert_result(result: Mapping[str, Any], to_version: str) -> dict[str, Any]:
    """A result in another version's shape, as libcni's GetAsVersion does: 0.3.x/0.4.0
    and 1.x differ in ``ips[].version`` (0.x only) and the interface fields 1.1 added."""
    from_version = result.get("cniVersion") or to_version
    for v in (from_version, to_version):
        if v not in SUPPORTED_VERSIONS:
            raise CniError(f"cannot convert a result from version {from_version} to {to_version}",
                           ERR_INCOMPATIBLE_VERSION)
    out = copy.deepcopy(dict(result))
    out["cniVersion"] = to_version
    legacy_from, legacy_to = from_version in LEGACY_VERSIONS, to_version in LEGACY_VERSIONS
    if legacy_from and not legacy_to:
        out["ips"] = [{k: v for k, v in ip.items() if k != "version"} for ip in out.get("ips") or []]
    elif legacy_to and not legacy_from:
        out["ips"] = [{"version": str(ipaddress.ip_interface(ip["address"]).version), **ip}
                      for ip in out.get("ips") or []]
        out["interfaces"] = [{k: v for k, v in i.items() if k not in _V1_INTERFACE_ONLY}
                             for i in out.get("interfaces") or []]
    for key in ("interfaces", "ips"):
        if not out.get(key):
            out.pop(key, None)
    return out


def parse_result(stdout: bytes, conf_version: str) -> dict[str, Any]:
    """A plugin's ADD output; one without ``cniVersion`` is taken to speak the
    config's version (libcni's fixupResultVersion)."""
    try:
        result = json.loads(stdout)
    except ValueError as e:
        raise CniError(f"failed to decode the plugin's result {_snippet(stdout)}: {e}", ERR_DECODE) from None
    if not isinstance(result, dict):
        raise CniError(f"the plugin's result is not a JSON object: {_snippet(stdout)}", ERR_DECODE)
    result.setdefault("cniVersion", conf_version)
    if result["cniVersion"] not in SUPPORTED_VERSIONS:
        raise CniError(f"the plugin's result has unsupported cniVersion {result['cniVersion']!r}",
                       ERR_INCOMPATIBLE_VERSION)
    return result


def plugin_error(stdout: bytes, stderr: bytes, returncode: int) -> tuple[int, str, str]:
    """(code, msg, details) of a failed plugin: its error JSON, else what libcni
    makes of a plugin that failed without one."""
    if not stdout.strip():
        err = stderr.decode(errors="replace").strip()
        return (RUNTIME_ERROR, f"netplugin failed: {err!r}" if err
                else f"netplugin failed with no error message: exit status {returncode}", "")
    try:
        data = json.loads(stdout)
        return int(data.get("code", RUNTIME_ERROR)), str(data.get("msg", "")), str(data.get("details") or "")
    except (ValueError, TypeError, AttributeError) as e:
        return RUNTIME_ERROR, f"netplugin failed but error parsing its diagnostic message {_snippet(stdout)}: {e}", ""


def _snippet(data: bytes, limit: int = 200) -> str:
    text = data.decode(errors="replace").strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


@dataclass(frozen=True)
class Result:
    """What ADD gave the container, in spec 1.x form whatever version the plugins
    spoke (containerd's go-cni converts the same way before reading the pod IPs)."""

    data: dict[str, Any]

    @classmethod
    def of(cls, result: Mapping[str, Any]) -> Result:
        version = result.get("cniVersion", "1.0.0")
        return cls(convert_result(result, "1.0.0") if version in LEGACY_VERSIONS else dict(result))

    @property
    def interfaces(self) -> list[dict[str, Any]]:
        return self.data.get("interfaces") or []

    @property
    def ips(self) -> list[dict[str, Any]]:
        return self.data.get("ips") or []

    def pod_ips(self, ifname: str = "eth0") -> list[str]:
        """The addresses of the sandbox interface ``ifname`` (an address without an
        interface index counts as the pod's), IPv4 first, without prefix length."""
        ifaces = self.interfaces
        addrs = []
        for ip in self.ips:
            index = ip.get("interface")
            if isinstance(index, int) and 0 <= index < len(ifaces):
                iface = ifaces[index]
                if iface.get("name") != ifname or not iface.get("sandbox"):
                    continue
            addrs.append(ipaddress.ip_interface(ip["address"]).ip)
        return [str(a) for a in sorted(addrs, key=lambda a: a.version)]


# ------------------------------------------------------------ configuration

@dataclass(frozen=True)
class Attachment:
    """One container interface on the network; the pod fields become the CNI_ARGS
    the kubelet's runtime passes (K8S_POD_NAMESPACE, K8S_POD_NAME,
    K8S_POD_INFRA_CONTAINER_ID = the sandbox id, K8S_POD_UID)."""

    container_id: str
    netns: str = ""
    ifname: str = "eth0"
    pod_namespace: str = ""
    pod_name: str = ""
    pod_uid: str = ""

    def cni_args(self) -> list[list[str]]:
        if not self.pod_name:
            return []
        return [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", self.pod_namespace],
                ["K8S_POD_NAME", self.pod_name], ["K8S_POD_INFRA_CONTAINER_ID", self.container_id],
                ["K8S_POD_UID", self.pod_uid]]

    @property
    def key(self) -> tuple[str, str]:
        return self.container_id, self.ifname


def validate_attachment(network: str, att: Attachment) -> None:
    """libcni's checks, which also keep cache file names inside the cache dir."""
    if not _NAME.match(att.container_id):
        raise CniError(f"invalid container id {att.container_id!r}", ERR_INVALID_CONFIG)
    if not _NAME.match(network):
        raise CniError(f"invalid network name {network!r}", ERR_INVALID_CONFIG)
    name = att.ifname
    if (not name or len(name) > 15 or name in (".", "..")
            or any(c in "/:" or c.isspace() for c in name)):
        raise CniError(f"invalid interface name {name!r}", ERR_INVALID_CONFIG)


def load_network_config(conf_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The lexically first network config file of ``conf_dir`` and its list form."""
    conf_dir = Path(conf_dir)
    files = sorted(p for p in conf_dir.iterdir()
                   if p.suffix in CONF_EXTENSIONS and p.is_file()) if conf_dir.is_dir() else []
    if not files:
        raise CniError(f"no network config found in {conf_dir}", ERR_INVALID_CONFIG)
    path = files[0]
    try:
        conf = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CniError(f"failed to load CNI config file {path}: {e}", ERR_INVALID_CONFIG) from None
    if not isinstance(conf, dict):
        raise CniError(f"CNI config file {path} is not a JSON object", ERR_INVALID_CONFIG)
    if path.suffix != ".conflist":
        if not conf.get("type"):
            raise CniError(f"network type not found in {path}", ERR_INVALID_CONFIG)
        conf = {"cniVersion": conf.get("cniVersion", ""), "name": conf.get("name", ""), "plugins": [conf]}
    return path, conf


def check_conflist(conflist: Mapping[str, Any]) -> None:
    name = conflist.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise CniError(f"invalid network name {name!r}", ERR_INVALID_CONFIG)
    plugins = conflist.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise CniError(f"network {name!r} has no plugins", ERR_INVALID_CONFIG)
    for plugin in plugins:
        kind = plugin.get("type") if isinstance(plugin, dict) else None
        if not isinstance(kind, str) or not kind or "/" in kind or "\\" in kind:
            raise CniError(f"network {name!r}: invalid plugin type {kind!r}", ERR_INVALID_CONFIG)


def plugin_config(plugin: Mapping[str, Any], name: str, cni_version: str, *,
                  prev_result: Mapping[str, Any] | None = None,
                  runtime_config: Mapping[str, Any] | None = None,
                  extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One plugin's stdin: its own keys, the list's name and cniVersion, the
    prevResult, and ``runtimeConfig`` with only the capabilities it declares."""
    conf = dict(plugin)
    conf["name"] = name
    conf["cniVersion"] = cni_version
    if prev_result is not None:
        conf["prevResult"] = prev_result
    declared = plugin.get("capabilities") or {}
    rc = {cap: (runtime_config or {})[cap] for cap, on in declared.items()
          if on and cap in (runtime_config or {})}
    if rc:
        conf["runtimeConfig"] = rc
    conf.update(extra or {})
    return conf


def plugin_env(command: str, cni_path: Sequence[str], att: Attachment | None = None,
               cni_args: Sequence[Sequence[str]] = (),
               base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The spec's variables over the runtime's own environment (plugins need its
    PATH: portmap runs iptables). STATUS and GC get no attachment variables."""
    env = {k: v for k, v in base.items() if not k.startswith("CNI_")}
    env["CNI_COMMAND"] = command
    env["CNI_PATH"] = os.pathsep.join(cni_path)
    if att is not None:
        env["CNI_CONTAINERID"] = att.container_id
        env["CNI_NETNS"] = att.netns
        env["CNI_IFNAME"] = att.ifname
        env["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in cni_args)
    return env


def pod_runtime_config(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The capability arguments the kubelet and containerd derive from a pod:
    ``portMappings`` for every container port with a hostPort (CONVENTIONS.md)."""
    mappings, seen = [], set()
    for container in pod.get("spec", {}).get("containers") or []:
        for port in container.get("ports") or []:
            if not port.get("hostPort"):
                continue
            protocol = (port.get("protocol") or "TCP").lower()
            key = (container["name"], port.get("name") or f"{protocol}:{port['containerPort']}")
            if key in seen:
                continue
            seen.add(key)
            mapping = {"hostPort": port["hostPort"], "containerPort": port["containerPort"],
                       "protocol": protocol}
            if port.get("hostIP"):
                mapping["hostIP"] = port["hostIP"]
            mappings.append(mapping)
    return {"portMappings": mappings} if mappings else {}


# ------------------------------------------------------------ the result cache

def cache_path(cache_dir: Path, network: str, att: Attachment) -> Path:
    return Path(cache_dir) / "results" / f"{network}-{att.container_id}-{att.ifname}"


@dataclass(frozen=True)
class CachedAttachment:
    """One entry of the result cache: what ADD was given and what it returned."""

    network: str
    container_id: str
    ifname: str
    netns: str
    cni_args: list[list[str]]
    capability_args: dict[str, Any]
    result: dict[str, Any] | None
    config: bytes

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CachedAttachment | None:
        """None for a file that is not a usable cniCacheV1 record."""
        if (not isinstance(data, dict) or data.get("kind") != CACHE_KIND
                or not data.get("networkName") or not data.get("ifName")):
            return None
        try:
            config = base64.b64decode(data.get("config") or "")
        except ValueError:
            config = b""
        return cls(network=data["networkName"], container_id=data.get("containerId", ""),
                   ifname=data["ifName"], netns=data.get("netns", ""),
                   cni_args=[list(a) for a in data.get("cniArgs") or []],
                   capability_args=dict(data.get("capabilityArgs") or {}),
                   result=data.get("result"), config=config)

    def to_json(self) -> dict[str, Any]:
        """libcni's cachedInfo (``config`` is the list's bytes, base64 as Go encodes []byte)."""
        data: dict[str, Any] = {"kind": CACHE_KIND, "containerId": self.container_id,
                                "config": base64.b64encode(self.config).decode(),
                                "ifName": self.ifname, "networkName": self.network}
        if self.netns:
            data["netns"] = self.netns
        if self.cni_args:
            data["cniArgs"] = self.cni_args
        if self.capability_args:
            data["capabilityArgs"] = self.capability_args
        if self.result is not None:
            data["result"] = self.result
        return data

    def attachment(self) -> Attachment:
        return Attachment(container_id=self.container_id, netns=self.netns, ifname=self.ifname)


def read_cache_file(path: Path) -> CachedAttachment | None:
    try:
        return CachedAttachment.from_json(json.loads(path.read_bytes()))
    except (OSError, ValueError):
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ------------------------------------------------------------ running plugins

def find_plugin(kind: str, bin_dirs: Sequence[str]) -> str:
    for d in bin_dirs:
        candidate = os.path.join(d, kind)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(f'failed to find plugin "{kind}" in path {list(bin_dirs)}')


def exec_plugin(path: str, conf: Mapping[str, Any], env: Mapping[str, str],
                timeout: float) -> bytes:
    """Run one plugin; its stdout on success, CniError otherwise. It runs in its own
    process group so a timeout also ends what it delegated to."""
    try:
        proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=dict(env), start_new_session=True)
    except OSError as e:
        raise CniError(f"failed to execute {path}: {e}") from None
    try:
        stdout, stderr = proc.communicate(json.dumps(conf).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise CniError(f"timed out after {timeout:g} s") from None
    if proc.returncode != 0:
        code, msg, details = plugin_error(stdout, stderr, proc.returncode)
        raise CniError(msg, code, details)
    return stdout


class CniNetwork:
    """One network configuration list, run against containers. Thread-safe: the
    agent's workers may ADD and DEL different attachments at once."""

    def __init__(self, conflist: Mapping[str, Any], bin_dirs: Iterable[str | Path],
                 cache_dir: Path, *, source: Path | None = None, timeout: float = DEFAULT_TIMEOUT):
        check_conflist(conflist)
        self.conflist = dict(conflist)
        self.name: str = conflist["name"]
        self.cni_version = negotiate_version(conflist)
        self.plugins: list[dict[str, Any]] = list(conflist["plugins"])
        self.bin_dirs = [str(d) for d in bin_dirs]
        self.cache_dir = Path(cache_dir)
        self.source = source
        self.timeout = timeout
        self._config_bytes = json.dumps(self.conflist).encode()
        self._lock = threading.Lock()
        self._live: set[tuple[str, str]] = set()
        """Attachments this object has ADDed (or is ADDing) and not DELeted: GC spares them."""

    @classmethod
    def load(cls, conf_dir: Path, bin_dirs: Iterable[str | Path], cache_dir: Path,
             **kwargs: Any) -> CniNetwork:
        """The network of the lexically first config file in conf_dir (as containerd)."""
        path, conflist = load_network_config(conf_dir)
        try:
            return cls(conflist, bin_dirs, cache_dir, source=path, **kwargs)
        except CniError as e:
            raise CniError(f"{path}: {e.msg}", e.code, e.details) from None

    def __repr__(self) -> str:
        return f"CniNetwork({self.name!r}, {self.cni_version}, {[p['type'] for p in self.plugins]})"

    # -------------------------------------------------------- operations

    def add(self, att: Attachment, runtime_config: Mapping[str, Any] | None = None) -> Result:
        """ADD through the list, each plugin given the previous one's result; the
        last result is cached and returned. On failure the list is DELeted again."""
        validate_attachment(self.name, att)
        runtime_config = dict(runtime_config or {})
        args = att.cni_args()
        with self._lock:
            self._live.add(att.key)
        result: dict[str, Any] | None = None
        try:
            for plugin in self.plugins:
                conf = plugin_config(plugin, self.name, self.cni_version,
                                     prev_result=result, runtime_config=runtime_config)
                out = self._run(plugin, "ADD", conf, att, args)
                with _blame(plugin["type"], "ADD"):
                    result = convert_result(parse_result(out, self.cni_version), self.cni_version)
            cached = CachedAttachment(self.name, att.container_id, att.ifname, att.netns, args,
                                      runtime_config, result, self._config_bytes)
            _write_atomically(cache_path(self.cache_dir, self.name, att),
                              json.dumps(cached.to_json()).encode())
        except Exception as e:
            try:
                self._delete(att, args, runtime_config, None)
            except CniError as cleanup:
                e.add_note(f"cleaning up with DEL also failed: {cleanup}")
            with self._lock:
                self._live.discard(att.key)
            raise
        return Result.of(result)

    def delete(self, att: Attachment, runtime_config: Mapping[str, Any] | None = None) -> None:
        """DEL in reverse order with the cached ADD result as prevResult. What the
        caller leaves empty (netns, pod fields, runtime_config) comes from the cache.
        DEL of something never added, or already deleted, succeeds."""
        validate_attachment(self.name, att)
        with self._lock:
            self._live.discard(att.key)
        cached = self.cached(att)
        prev = None
        if cached is not None:
            att = Attachment(att.container_id, att.netns or cached.netns, att.ifname,
                             att.pod_namespace, att.pod_name, att.pod_uid)
            if runtime_config is None:
                runtime_config = cached.capability_args
            if cached.result is not None:
                try:
                    prev = convert_result(cached.result, self.cni_version)
                except CniError:
                    prev = None
        args = att.cni_args() or (cached.cni_args if cached else [])
        self._delete(att, args, runtime_config or {}, prev)
        cache_path(self.cache_dir, self.name, att).unlink(missing_ok=True)

    def check(self, att: Attachment, runtime_config: Mapping[str, Any] | None = None) -> None:
        """CHECK every plugin against the cached ADD result (spec: only for an
        attachment that was ADDed; not at all if the list sets disableCheck)."""
        validate_attachment(self.name, att)
        if not at_least(self.cni_version, "0.4.0"):
            raise CniError(f"configuration version {self.cni_version!r} does not support the CHECK command")
        if self.conflist.get("disableCheck"):
            return
        cached = self.cached(att)
        if cached is None or cached.result is None:
            raise CniError(f"network {self.name!r} has no cached ADD result for container "
                           f"{att.container_id} interface {att.ifname}", ERR_CONTAINER_UNKNOWN)
        if runtime_config is None:
            runtime_config = cached.capability_args
        args = att.cni_args() or cached.cni_args
        att = Attachment(att.container_id, att.netns or cached.netns, att.ifname)
        prev = convert_result(cached.result, self.cni_version)
        for plugin in self.plugins:
            conf = plugin_config(plugin, self.name, self.cni_version, prev_result=prev,
                                 runtime_config=runtime_config)
            self._run(plugin, "CHECK", conf, att, args)

    def status(self) -> None:
        """Raise CniError unless the network can take ADDs: every plugin must be on the
        CNI path and, for a 1.1.0 list, answer STATUS (codes 50/51 say why not). Older
        lists have no STATUS (libcni skips it), so only the first part applies."""
        for plugin in self.plugins:
            with _blame(plugin["type"], "STATUS"):
                find_plugin(plugin["type"], self.bin_dirs)
        if not at_least(self.cni_version, "1.1.0"):
            return
        for plugin in self.plugins:
            self._run(plugin, "STATUS", plugin_config(plugin, self.name, self.cni_version))

    def gc(self, valid: Iterable[Attachment]) -> list[CachedAttachment]:
        """Remove the attachments of this network that are neither in ``valid`` nor
        ADDed by this object since: DEL every such cached attachment (as libcni
        does, so plugins without GC are covered too), then, for a 1.1.0 list, send
        GC with ``cni.dev/valid-attachments`` so plugins drop what no cache knows.
        Returns the attachments deleted; errors are raised after everything ran."""
        if self.conflist.get("disableGC"):
            return []
        with self._lock:
            keep = {a.key for a in valid} | self._live
        removed, errors = [], []
        for cached in self.cached_attachments():
            if (cached.container_id, cached.ifname) in keep:
                continue
            try:
                self.delete(cached.attachment())
                removed.append(cached)
            except CniError as e:
                errors.append(e)
        if at_least(self.cni_version, "1.1.0"):
            attachments = [{"containerID": cid, "ifname": ifname} for cid, ifname in sorted(keep)]
            # libcni sends both keys: an early 1.1 spec text named it cni.dev/attachments.
            extra = {"cni.dev/valid-attachments": attachments, "cni.dev/attachments": attachments}
            for plugin in self.plugins:
                try:
                    self._run(plugin, "GC", plugin_config(plugin, self.name, self.cni_version, extra=extra))
                except CniError as e:
                    errors.append(e)
        if errors:
            first = errors[0]
            more = f" (and {len(errors) - 1} more: {'; '.join(map(str, errors[1:]))})" if errors[1:] else ""
            raise CniError(f"GC of network {self.name!r}: {first}{more}", first.code)
        return removed

    # -------------------------------------------------------- the cache

    def cached(self, att: Attachment) -> CachedAttachment | None:
        return read_cache_file(cache_path(self.cache_dir, self.name, att))

    def cached_attachments(self) -> list[CachedAttachment]:
        """Every cache entry of this network (the cache dir may hold other networks')."""
        results = self.cache_dir / "results"
        if not results.is_dir():
            return []
        entries = (read_cache_file(p) for p in sorted(results.iterdir()) if not p.name.startswith("."))
        return [c for c in entries if c is not None and c.network == self.name]

    # -------------------------------------------------------- internals

    def _delete(self, att: Attachment, args: Sequence[Sequence[str]],
                runtime_config: Mapping[str, Any], prev: Mapping[str, Any] | None) -> None:
        """DEL the plugins in reverse order, stopping at the first error (spec)."""
        for plugin in reversed(self.plugins):
            conf = plugin_config(plugin, self.name, self.cni_version, prev_result=prev,
                                 runtime_config=runtime_config)
            self._run(plugin, "DEL", conf, att, args)

    def _run(self, plugin: Mapping[str, Any], command: str, conf: Mapping[str, Any],
             att: Attachment | None = None, args: Sequence[Sequence[str]] = ()) -> bytes:
        with _blame(plugin["type"], command):
            path = find_plugin(plugin["type"], self.bin_dirs)
            return exec_plugin(path, conf, plugin_env(command, self.bin_dirs, att, args), self.timeout)


@contextmanager
def _blame(kind: str, command: str) -> Iterator[None]:
    """Name the plugin and the operation in a CniError raised inside."""
    try:
        yield
    except CniError as e:
        if e.plugin:
            raise
        raise CniError(e.msg, e.code, e.details, plugin=kind, command=command) from None
