"""Run a CNI network configuration list the way a container runtime does
(CNI spec 1.x, "Execution of Network Configurations"): each plugin gets the
CNI_* environment variables and its own config on stdin, with the previous
plugin's result as ``prevResult`` on ADD; DEL runs the plugins in reverse order.
An error result is raised as CniError carrying the spec's code, msg and details.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PATH = ("/usr/lib/cni", "/opt/cni/bin")
TIMEOUT = 60


class CniError(Exception):
    def __init__(self, plugin: str, code: int, msg: str, details: str = ""):
        self.plugin, self.code, self.msg, self.details = plugin, code, msg, details
        super().__init__(f"plugin type=\"{plugin}\" failed ({code}): {msg}"
                         + (f": {details}" if details else ""))


@dataclass(frozen=True)
class Attachment:
    container_id: str
    netns: str
    ifname: str = "eth0"


def load_conflist(conf_dir: Path) -> dict[str, Any] | None:
    """The lexically first .conflist in conf_dir (the runtime's choice), or None."""
    if not conf_dir.is_dir():
        return None
    for path in sorted(conf_dir.iterdir()):
        if path.suffix == ".conflist":
            return json.loads(path.read_text())
    return None


def plugin_config(conflist: dict[str, Any], plugin: dict[str, Any],
                  prev_result: dict | None) -> dict[str, Any]:
    """One plugin's stdin: its own keys plus the list's name and cniVersion."""
    conf = dict(plugin)
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist["cniVersion"]
    if prev_result is not None:
        conf["prevResult"] = prev_result
    return conf


def find_plugin(name: str, path: tuple[str, ...] = DEFAULT_PATH) -> str:
    for d in path:
        candidate = Path(d) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise CniError(name, 999, f"failed to find plugin \"{name}\" in path {list(path)}")


def exec_plugin(plugin: str, command: str, att: Attachment, conf: dict[str, Any],
                path: tuple[str, ...] = DEFAULT_PATH) -> dict[str, Any] | None:
    env = {
        "CNI_COMMAND": command, "CNI_CONTAINERID": att.container_id, "CNI_NETNS": att.netns,
        "CNI_IFNAME": att.ifname, "CNI_PATH": ":".join(path),
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    }
    proc = subprocess.run([find_plugin(plugin, path)], input=json.dumps(conf).encode(),
                          capture_output=True, env=env, timeout=TIMEOUT)
    out = proc.stdout.strip()
    result = json.loads(out) if out else None
    if proc.returncode != 0:
        if isinstance(result, dict) and "code" in result:
            raise CniError(plugin, int(result["code"]), result.get("msg", ""),
                           result.get("details", ""))
        raise CniError(plugin, 999, proc.stderr.decode(errors="replace").strip()
                       or f"exit status {proc.returncode}")
    return result


def add(conflist: dict[str, Any], att: Attachment,
        path: tuple[str, ...] = DEFAULT_PATH) -> dict[str, Any]:
    """ADD every plugin in order, chaining results; on failure undo with DEL."""
    result: dict | None = None
    try:
        for plugin in conflist["plugins"]:
            result = exec_plugin(plugin["type"], "ADD", att,
                                 plugin_config(conflist, plugin, result), path) or result
    except BaseException:
        delete(conflist, att, path)
        raise
    return result or {}


def delete(conflist: dict[str, Any], att: Attachment,
           path: tuple[str, ...] = DEFAULT_PATH, prev_result: dict | None = None) -> None:
    """DEL every plugin in reverse order; plugins must tolerate repeats (spec)."""
    errors = []
    for plugin in reversed(conflist["plugins"]):
        try:
            exec_plugin(plugin["type"], "DEL", att,
                        plugin_config(conflist, plugin, prev_result), path)
        except CniError as e:
            errors.append(e)
    if errors:
        raise errors[0]


def pod_ips(result: dict[str, Any]) -> list[str]:
    """The addresses a result gave the container's interface, without prefix length."""
    return [ip["address"].split("/")[0] for ip in result.get("ips") or []]
