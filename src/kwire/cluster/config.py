"""ClusterConfig: what one cluster is, where its files live, and which ranges it uses.

`kwire up` builds a ClusterConfig, validates it, picks a free API port if none was
given and saves it as ``<state_dir>/config.yaml``; `kwire server --config` loads that
file back, so the server and the CLI always agree on ports, ranges and paths.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

CONFIG_API_VERSION = "kwire/v1alpha1"
CONFIG_KIND = "ClusterConfig"
DEFAULT_STATE_ROOT = "/var/lib/kwire"
STATE_ROOT_ENV = "KWIRE_STATE_ROOT"
UNDERLAY_POOL = "172.30.0.0/16"
"""Where `kwire up` looks for a free /24 node underlay when none is given."""
POD_CIDR_POOL = ("10.244.0.0/14", "10.248.0.0/13")
"""Where `kwire up` looks for a free /16 pod range when none is given: 10.244.0.0/16 (the
default), then 10.245.0.0/16 and on up to 10.255.0.0/16. The host routes each cluster's
pod range to its nodes, so two clusters must not share one."""
SERVICE_CIDR_POOL = "10.96.0.0/12"
"""Where `kwire up` looks for a free /16 ClusterIP range when none is given: 10.96.0.0/16
(the `kubernetes` Service at 10.96.0.1, cluster DNS at 10.96.0.10), then 10.97.0.0/16 and
on up to 10.111.0.0/16. The host routes each cluster's service range into its bridge, so
two clusters must not share one either."""
LOAD_BALANCER_POOL_PREFIX = 26
"""The default load-balancer pool is the top /26 of the underlay (64 addresses); node
addresses are handed out from the bottom and stop below it."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ClusterError(Exception):
    """An expected failure the CLI reports in one line (no traceback)."""


class ConfigError(ClusterError):
    """The configuration is invalid or unreadable."""


def state_root() -> Path:
    """The folder holding one sub-folder per cluster ($KWIRE_STATE_ROOT or /var/lib/kwire).

    Read at call time, so tests and side-by-side installs can move it with the env.
    """
    # Absolute, because the server's command line (checked against the pid file) holds it.
    return Path(os.environ.get(STATE_ROOT_ENV) or DEFAULT_STATE_ROOT).absolute()


def cluster_dir(name: str) -> Path:
    """The state folder of cluster `name` under the current state root."""
    return state_root() / name


def check_name(name: str) -> None:
    """Cluster names end up in paths, kubeconfig entries and resource names: a DNS label."""
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise ConfigError(f"invalid cluster name {name!r}: use lower-case letters, digits and '-' "
                          "(at most 63, starting and ending with a letter or digit)")


@dataclass(frozen=True)
class ClusterConfig:
    """One cluster's settings. Every field has a default; ranges are validated by validate()."""

    name: str = "kwire"
    """Cluster name; kubeconfig entries are called ``kwire-<name>``."""

    state_dir: Path = None  # type: ignore[assignment]  # filled in __post_init__
    """Where the cluster keeps certificates, tokens, data and logs.
    Defaults to ``$KWIRE_STATE_ROOT/<name>`` (``/var/lib/kwire/<name>``)."""

    api_host: str = "127.0.0.1"
    """Address the API server listens on for the user (it also listens on the underlay host
    address for the node agents)."""

    api_port: int = 0
    """API server port; 0 means pick a free one at `kwire up` (then saved), so several
    clusters can run side by side."""

    underlay_cidr: str = "172.30.0.0/24"
    """The node network. Its first host address is the host's bridge address, where node
    agents reach the API server. `kwire up` gives a new cluster the first free /24 of
    UNDERLAY_POOL unless one is set explicitly."""

    pod_cidr: str = "10.244.0.0/16"
    """Pod addresses; each node gets a /24 out of it. `kwire up` gives a new cluster the
    first free /16 of POD_CIDR_POOL unless one is set explicitly."""

    service_cidr: str = "10.96.0.0/16"
    """ClusterIP range; its first address is the `kubernetes` Service. `kwire up` gives a
    new cluster the first free /16 of SERVICE_CIDR_POOL unless one is set explicitly."""

    node_port_range: str = "30000-32767"
    """Inclusive port range for NodePort Services, as ``FIRST-LAST``."""

    cluster_dns: str = "10.96.0.10"
    """ClusterIP of kube-system/kube-dns, given to pods as their nameserver. `kwire up`
    takes the tenth address of service_cidr (default_cluster_dns) unless one is set."""

    cluster_domain: str = "cluster.local"
    """DNS suffix of Services and pods."""

    backend: str = "vxlan"
    """How pod traffic crosses between nodes: "vxlan" (an overlay, flannel's default) or
    "host-gw" (plain routes via the nodes' underlay addresses; nodes on one L2 segment)."""

    load_balancer_pool: str = ""
    """Addresses for LoadBalancer Services (status.loadBalancer.ingress). Empty means the
    top /26 of underlay_cidr (172.30.0.192/26 for 172.30.0.0/24), or no pool at all for an
    underlay smaller than a /24; see load_balancer_cidr. A pool outside the underlay is
    routed into the cluster's bridge as the pod range is."""

    compaction_interval_seconds: int = 300
    """How often the store drops history older than what watchers may still ask for."""

    def __post_init__(self) -> None:
        # Frozen, so defaults derived from other fields are set through object.__setattr__.
        if self.state_dir is None:
            object.__setattr__(self, "state_dir", cluster_dir(self.name))
        else:
            object.__setattr__(self, "state_dir", Path(self.state_dir))

    # -- derived addresses -------------------------------------------------------------

    @property
    def underlay_host_address(self) -> str:
        """The host's own address on the underlay (first host address of underlay_cidr)."""
        return str(ipaddress.ip_network(self.underlay_cidr).network_address + 1)

    @property
    def api_service_ip(self) -> str:
        """ClusterIP of the default/kubernetes Service (first address of service_cidr)."""
        return str(ipaddress.ip_network(self.service_cidr).network_address + 1)

    @property
    def load_balancer_cidr(self) -> str | None:
        """The load-balancer pool in use (load_balancer_pool, or its default), or None."""
        if self.load_balancer_pool:
            return self.load_balancer_pool
        net = ipaddress.ip_network(self.underlay_cidr)
        if net.prefixlen > 24:
            return None
        top = net.broadcast_address + 1 - 2 ** (32 - LOAD_BALANCER_POOL_PREFIX)
        return f"{top}/{LOAD_BALANCER_POOL_PREFIX}"

    def host_routed(self) -> dict[str, ipaddress.IPv4Network]:
        """The ranges the host routes into the cluster's bridge, by config key: the
        underlay, the pod and service ranges, and the load-balancer pool when it lies
        outside the underlay. No host route and no other cluster may overlap them.
        (Call on a validated config.)"""
        ranges = {key: ipaddress.ip_network(getattr(self, key))
                  for key in ("underlay_cidr", "pod_cidr", "service_cidr")}
        if self.load_balancer_cidr is not None:
            pool = ipaddress.ip_network(self.load_balancer_cidr)
            if not pool.subnet_of(ranges["underlay_cidr"]):
                ranges["load_balancer_pool"] = pool
        return ranges

    @property
    def node_ports(self) -> tuple[int, int]:
        """node_port_range as (first, last), both inclusive."""
        first, _, last = self.node_port_range.partition("-")
        return int(first), int(last)

    @property
    def api_url(self) -> str:
        """The URL users (and the kubeconfig) reach the API server at."""
        return f"https://{self.api_host}:{self.api_port}"

    @property
    def context_name(self) -> str:
        """Name of the kubeconfig cluster, user and context entries."""
        return f"kwire-{self.name}"

    # -- files in state_dir ------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.state_dir / "config.yaml"

    @property
    def ca_cert(self) -> Path:
        return self.state_dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.state_dir / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.state_dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.state_dir / "server.key"

    @property
    def admin_cert(self) -> Path:
        return self.state_dir / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.state_dir / "admin.key"

    @property
    def tokens_file(self) -> Path:
        """Static bearer tokens, in kube-apiserver's --token-auth-file CSV format."""
        return self.state_dir / "tokens.csv"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def server_log(self) -> Path:
        return self.state_dir / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "server.pid"

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def nodes_file(self) -> Path:
        """The cluster's node names, one a line, in the order they were added: a node's
        place in it fixes its underlay address (see kwire.cluster.nodes.plan_underlay)."""
        return self.state_dir / "nodes.list"

    # -- validation --------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ConfigError listing every problem (host routes are checked separately)."""
        problems: list[str] = []
        try:
            check_name(self.name)
        except ConfigError as e:
            problems.append(str(e))
        if not 0 <= self.api_port <= 65535:
            problems.append(f"api_port {self.api_port} is not a port number")
        try:
            host = ipaddress.IPv4Address(self.api_host)
        except ValueError:
            problems.append(f"api_host {self.api_host!r} must be an IPv4 address "
                            "(it goes into the serving certificate)")
        else:
            if host.is_unspecified:
                problems.append("api_host must be an address clients can dial, not 0.0.0.0")

        nets: dict[str, ipaddress.IPv4Network] = {}
        for key in ("underlay_cidr", "pod_cidr", "service_cidr"):
            value = getattr(self, key)
            try:
                net = ipaddress.ip_network(value)
            except ValueError as e:
                problems.append(f"{key} {value!r} is not a network: {e}")
                continue
            if net.version != 4:
                problems.append(f"{key} {value}: kwire supports IPv4 ranges only")
                continue
            nets[key] = net
        for key, net in nets.items():
            if net.is_loopback or net.is_multicast or net.is_link_local or net.is_unspecified:
                problems.append(f"{key} {net} is not a usable unicast range")
        if "underlay_cidr" in nets and nets["underlay_cidr"].prefixlen > 29:
            problems.append(f"underlay_cidr {nets['underlay_cidr']} is too small (at most /29)")
        if "pod_cidr" in nets and nets["pod_cidr"].prefixlen > 24:
            problems.append(f"pod_cidr {nets['pod_cidr']} is too small: each node takes a /24")
        if "service_cidr" in nets and nets["service_cidr"].prefixlen > 28:
            problems.append(f"service_cidr {nets['service_cidr']} is too small (at most /28)")
        keys = list(nets)
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                if nets[a].overlaps(nets[b]):
                    problems.append(f"{a} {nets[a]} overlaps {b} {nets[b]}")
        if self.load_balancer_pool:
            problems += _pool_problems(self.load_balancer_pool, nets)

        try:
            dns = ipaddress.ip_address(self.cluster_dns)
        except ValueError:
            problems.append(f"cluster_dns {self.cluster_dns!r} is not an IP address")
        else:
            svc = nets.get("service_cidr")
            if svc is not None and (dns not in svc or dns in (svc.network_address,
                                                              svc.network_address + 1,
                                                              svc.broadcast_address)):
                problems.append(f"cluster_dns {dns} must be a free address inside service_cidr "
                                f"{svc} (not its first one, which the kubernetes Service takes)")

        m = re.fullmatch(r"(\d+)-(\d+)", self.node_port_range)
        if not m or not 1 <= int(m[1]) <= int(m[2]) <= 65535:
            problems.append(f"node_port_range {self.node_port_range!r} must be FIRST-LAST "
                            "with 1 <= FIRST <= LAST <= 65535")
        if not all(_DNS_LABEL.match(part) for part in self.cluster_domain.split(".")):
            problems.append(f"cluster_domain {self.cluster_domain!r} is not a DNS domain")
        if self.backend not in ("vxlan", "host-gw"):
            problems.append(f'backend: Unsupported value: "{self.backend}": supported values: '
                            '"vxlan", "host-gw"')
        if self.compaction_interval_seconds <= 0:
            problems.append("compaction_interval_seconds must be positive")
        if problems:
            raise ConfigError("invalid cluster configuration:\n  " + "\n  ".join(problems))

    # -- YAML --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"apiVersion": CONFIG_API_VERSION, "kind": CONFIG_KIND}
        data.update(asdict(self))
        data["state_dir"] = str(self.state_dir)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterConfig:
        return cls(**check_settings(data))

    @classmethod
    def load(cls, path: str | Path) -> ClusterConfig:
        return cls(**load_settings(path))

    def save(self, path: str | Path | None = None) -> Path:
        """Write the config as YAML (default: config_path) and return where it went."""
        target = Path(path) if path is not None else self.config_path
        write_private_file(target, yaml.safe_dump(self.to_dict(), sort_keys=False).encode())
        return target


def _pool_problems(value: str, nets: dict[str, ipaddress.IPv4Network]) -> list[str]:
    """What is wrong with load_balancer_pool `value`, given the other valid ranges. Inside
    the underlay it must leave out the addresses the underlay itself uses at the bottom."""
    try:
        pool = ipaddress.ip_network(value)
    except ValueError as e:
        return [f"load_balancer_pool {value!r} is not a network: {e}"]
    if pool.version != 4:
        return [f"load_balancer_pool {value}: kwire supports IPv4 ranges only"]
    if pool.is_loopback or pool.is_multicast or pool.is_link_local or pool.is_unspecified:
        return [f"load_balancer_pool {pool} is not a usable unicast range"]
    problems = [f"load_balancer_pool {pool} overlaps {key} {nets[key]}"
                for key in ("pod_cidr", "service_cidr")
                if key in nets and nets[key].overlaps(pool)]
    underlay = nets.get("underlay_cidr")
    if underlay is not None and underlay.overlaps(pool):
        if not pool.subnet_of(underlay):
            problems.append(f"load_balancer_pool {pool} must lie inside underlay_cidr "
                            f"{underlay} or apart from it")
        elif pool.network_address <= underlay.network_address + 1:
            problems.append(f"load_balancer_pool {pool} must leave out the network and host "
                            f"addresses of underlay_cidr {underlay}")
    return problems


def check_settings(data: dict[str, Any]) -> dict[str, Any]:
    """The ClusterConfig fields set in `data`, refusing unknown keys and wrong types, so
    that a typo in a config file fails loudly instead of silently using a default."""
    data = dict(data)
    api_version = data.pop("apiVersion", CONFIG_API_VERSION)
    kind = data.pop("kind", CONFIG_KIND)
    if (api_version, kind) != (CONFIG_API_VERSION, CONFIG_KIND):
        raise ConfigError(f"expected apiVersion {CONFIG_API_VERSION}, kind {CONFIG_KIND}; "
                          f"got {api_version}, {kind}")
    hints = typing.get_type_hints(ClusterConfig)
    unknown = sorted(set(data) - {f.name for f in fields(ClusterConfig)})
    if unknown:
        raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
    for key, value in data.items():
        want = str if hints[key] is Path else hints[key]
        # bool is an int in Python, but "api_port: true" is a mistake.
        if not isinstance(value, want) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected {want.__name__}, got {value!r}")
    return data


def load_settings(path: str | Path) -> dict[str, Any]:
    """The settings a YAML config file sets (see check_settings); an empty file sets none."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    return check_settings(data)


# -- host routes ---------------------------------------------------------------------


def parse_ip_route_json(text: str) -> list[ipaddress.IPv4Network]:
    """Destinations of `ip -j route` output; the default route is left out."""
    nets = []
    for route in json.loads(text or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            nets.append(ipaddress.ip_network(dst, strict=False))
    return [n for n in nets if n.prefixlen > 0]


def parse_proc_net_route(text: str) -> list[ipaddress.IPv4Network]:
    """Destinations of /proc/net/route (little-endian hex columns); default route left out."""
    nets = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 8:
            continue
        dst = ipaddress.IPv4Address(int(cols[1], 16).to_bytes(4, "little"))
        mask = ipaddress.IPv4Address(int(cols[7], 16).to_bytes(4, "little"))
        net = ipaddress.ip_network(f"{dst}/{mask}", strict=False)
        if net.prefixlen > 0:
            nets.append(net)
    return nets


def host_routes() -> list[ipaddress.IPv4Network]:
    """The host's IPv4 routes (main table), read only: `ip -j route`, else /proc/net/route."""
    ip = shutil.which("ip")
    if ip:
        out = subprocess.run([ip, "-j", "route"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            return parse_ip_route_json(out.stdout)
    return parse_proc_net_route(Path("/proc/net/route").read_text())


def check_host_routes(config: ClusterConfig, routes: list[ipaddress.IPv4Network],
                      keys: tuple[str, ...] | None = None) -> None:
    """Refuse the ranges the host would route into the cluster (config.host_routed(), or
    those of them named by `keys`) that overlap a host route: cluster traffic must never
    be confused with, or leak onto, a network the host already reaches."""
    problems = []
    for key, net in config.host_routed().items():
        if keys is None or key in keys:
            problems += [f"{key} {net} overlaps the host route to {r}"
                         for r in routes if r.version == net.version and r.overlaps(net)]
    if problems:
        raise ConfigError("cluster ranges clash with this host's routes (choose other ranges, "
                          "e.g. --pod-cidr / --service-cidr / --underlay-cidr / --lb-pool):\n  "
                          + "\n  ".join(problems))


def _first_free(pools: tuple[str, ...], prefix: int, busy: list[ipaddress.IPv4Network]
                ) -> str | None:
    for block in pools:
        for net in ipaddress.ip_network(block).subnets(new_prefix=prefix):
            if not any(b.version == 4 and b.overlaps(net) for b in busy):
                return str(net)
    return None


def _busy(config: ClusterConfig, key: str, routes: list[ipaddress.IPv4Network],
          taken: list[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
    """What range `key` must not overlap: host routes, other clusters' ranges (`taken`)
    and the cluster's own other ranges. A load-balancer pool that was given stays apart
    from a chosen underlay too: the user cannot know where that one lands."""
    busy = [*routes, *taken, *(net for k, net in config.host_routed().items() if k != key)]
    if key == "underlay_cidr" and config.load_balancer_pool:
        busy.append(ipaddress.ip_network(config.load_balancer_pool))
    return busy


def choose_underlay(config: ClusterConfig, routes: list[ipaddress.IPv4Network],
                    taken: list[ipaddress.IPv4Network], pool: str = UNDERLAY_POOL) -> str:
    """The first /24 of `pool` that overlaps no host route, no network in `taken` (other
    clusters' ranges) and none of the cluster's own other ranges."""
    found = _first_free((pool,), 24, _busy(config, "underlay_cidr", routes, taken))
    if found is None:
        raise ConfigError(f"no free /24 in {pool} for the node underlay: routes or other "
                          "kwire clusters use them all (choose one with --underlay-cidr)")
    return found


def choose_pod_cidr(config: ClusterConfig, routes: list[ipaddress.IPv4Network],
                    taken: list[ipaddress.IPv4Network],
                    pool: tuple[str, ...] = POD_CIDR_POOL) -> str:
    """The first /16 of `pool` that overlaps no host route, no network in `taken` (other
    clusters' ranges) and none of the cluster's own other ranges."""
    found = _first_free(pool, 16, _busy(config, "pod_cidr", routes, taken))
    if found is None:
        raise ConfigError(f"no free /16 in {', '.join(pool)} for the pods: routes or other "
                          "kwire clusters use them all (choose one with --pod-cidr)")
    return found


def choose_service_cidr(config: ClusterConfig, routes: list[ipaddress.IPv4Network],
                        taken: list[ipaddress.IPv4Network],
                        pool: str = SERVICE_CIDR_POOL) -> str:
    """The first /16 of `pool` that overlaps no host route (other clusters' service ranges,
    routed into their bridges, among them), no network in `taken` and none of the
    cluster's own other ranges."""
    found = _first_free((pool,), 16, _busy(config, "service_cidr", routes, taken))
    if found is None:
        raise ConfigError(f"no free /16 in {pool} for the Services: routes or other kwire "
                          "clusters use them all (choose one with --service-cidr)")
    return found


def default_cluster_dns(service_cidr: str) -> str:
    """The cluster DNS address kubeadm and kind use: the tenth of the service range."""
    return str(ipaddress.ip_network(service_cidr).network_address + 10)


# -- files ---------------------------------------------------------------------------


def write_private_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write atomically (temp file + rename) with `mode` from the first byte on.

    Cluster files hold keys and tokens, and readers (the server, kubectl) must never see
    a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
