"""Starting, stopping and inspecting clusters: what `kwire up`, `down`, `status` and
`node rm` do.

A cluster is its state folder, ``$KWIRE_STATE_ROOT/<name>`` (see ClusterConfig for the
files in it), one detached API server process, `kwire server --config
<state_dir>/config.yaml`, that leads its own session so that `kwire up` can exit and
`kwire down` can stop it with everything it started, and its worker nodes: a bridge and
one network namespace per node (kwire.cluster.nodes), each running a `kwire agent`
(kwire.cluster.agents). Agents do not depend on the server process: they outlive it, as
kubelets outlive their control plane, and `kwire up` starts again whichever is missing.
Pid files are trusted only while /proc/<pid>/cmdline still names the process they stand
for, since pids get reused after a reboot or crash.
"""
from __future__ import annotations

import fcntl
import http.client
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import quote

from kwire.cluster import agents, kubeconfig, pki
from kwire.cluster import nodes as underlay
from kwire.cluster.config import (ClusterConfig, ClusterError, ConfigError, check_host_routes,
                                  check_name, choose_pod_cidr, choose_service_cidr,
                                  choose_underlay, cluster_dir, default_cluster_dns,
                                  host_routes, state_root, write_private_file)
from kwire.cluster.nodes import format_node_list, parse_node_list, plan_underlay, worker_names
from kwire.node.cleanup import purge_node
from kwire.node.paths import RUN_ROOT
from kwire.node.runtime import rootfs

DEFAULT_NODES = 2
PICKABLE = ("underlay_cidr", "pod_cidr", "service_cidr", "cluster_dns")
"""The settings `kwire up` chooses for a new cluster unless they are given (see up)."""
UNDERLAY_LOCK = RUN_ROOT / "underlay.lock"
"""Host-wide, as /run/xtables.lock is for iptables: see _underlay_lock."""
LOG_TAIL_LINES = 25
TRANSPORT_ERRORS = (OSError, ssl.SSLError, http.client.HTTPException)
"""What a request to the API server raises when it gets no answer."""


@dataclass(frozen=True)
class ClusterStatus:
    """What runs for one cluster. pid is None when no server of this cluster runs."""

    name: str
    state_dir: Path
    url: str
    pid: int | None
    ready: bool
    kubeconfig_path: Path
    nodes: tuple[NodeStatus, ...] = ()

    @property
    def running(self) -> bool:
        return self.pid is not None


@dataclass(frozen=True)
class NodeStatus:
    """One worker node. agent_pid is None when its agent does not run."""

    name: str
    address: str
    """Its underlay address (the Node's InternalIP)."""
    netns: str
    agent_pid: int | None

    @property
    def running(self) -> bool:
        return self.agent_pid is not None


@dataclass(frozen=True)
class UpResult:
    status: ClusterStatus
    started: bool
    """False when the API server was already running."""
    agents_started: tuple[str, ...]
    """The nodes whose agent this `kwire up` started (new nodes, or agents that had died)."""
    user_kubeconfig: Path
    """The user's kubeconfig the context was merged into."""
    context: str
    """The kubeconfig context, now current there."""


def list_clusters() -> list[str]:
    """Names of the clusters with a state folder under the state root, sorted."""
    root = state_root()
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if (d / "config.yaml").is_file())


def saved_config(name: str) -> ClusterConfig | None:
    """The configuration cluster `name` was created with, or None if it does not exist."""
    check_name(name)
    path = ClusterConfig(name=name).config_path
    return ClusterConfig.load(path) if path.is_file() else None


def server_pid(config: ClusterConfig) -> int | None:
    """The pid of this cluster's running API server, or None."""
    try:
        pid = int(config.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_server_of(pid, config) else None


def _is_server_of(pid: int, config: ClusterConfig) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # A zombie has an empty cmdline, so an exited server no longer matches.
    return any(b"kwire" in a for a in args) and str(config.config_path).encode() in args


def up(config: ClusterConfig, *, nodes: int | None = None, timeout: float = 30.0,
       pick: Collection[str] = ()) -> UpResult:
    """Start cluster `config.name` (creating it if new), its node underlay and one agent per
    node; merge its kubeconfig context; wait until every Node is Ready.

    An existing cluster keeps its saved settings: api_port 0 means "the saved port", and
    any other difference is refused, since certificates, data and the nodes' addresses
    were made for the saved ranges. `pick` names the settings of PICKABLE that are only
    defaults (not given by the user): a new cluster then takes the first free /24 of
    UNDERLAY_POOL, /16 of POD_CIDR_POOL and /16 of SERVICE_CIDR_POOL instead, and the
    tenth address of its service range as cluster DNS; an existing one keeps its own.

    `nodes` is how many worker nodes the cluster has (None: DEFAULT_NODES for a new
    cluster, its own count for an existing one). `kwire up` only adds nodes, each at a new
    name and address, so that nodes keep theirs: asking for fewer than the cluster has is
    refused (remove_node takes one away). Missing agents (crashed, killed, or gone with a
    reboot) are started again.
    """
    if config.state_dir != cluster_dir(config.name):
        raise ClusterError(f"state_dir must be {cluster_dir(config.name)} for `kwire down` and "
                           f"`kwire status` to find the cluster; set $KWIRE_STATE_ROOT instead")
    saved = saved_config(config.name)
    if saved is not None:
        if config.api_port == 0:
            config = replace(config, api_port=saved.api_port)
        config = replace(config, **{key: getattr(saved, key) for key in pick})
    elif "cluster_dns" in pick:
        config = replace(config, cluster_dns=default_cluster_dns(config.service_cidr))
    config.validate()
    if saved is not None:
        _refuse_changes(saved, config)
    server_running = server_pid(config) is not None

    with _underlay_lock():
        # Read under the lock, which `kwire node rm` also takes to mark a node removed.
        names, removed = read_node_list(config) if saved is not None else ([], set())
        live = len(names) - len(removed)
        if nodes is None:
            nodes = live if saved is not None else DEFAULT_NODES
        if nodes < live:
            raise ClusterError(f"cluster {config.name!r} has {live} nodes; `kwire up` only "
                               f"adds nodes, so that each keeps its name and address (remove "
                               f"one with `kwire node rm NODE --name {config.name}`)")
        names = worker_names(config.name, names, nodes, removed)
        config = _claim_ranges(config, new=saved is None, pick=pick)
        plan = plan_underlay(config, names, removed=removed)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        config.state_dir.chmod(0o700)
        pki.ensure_pki(config)
        if not server_running:
            config = replace(config, api_port=_claim_port(config))
            config.save()
        write_private_file(config.nodes_file, format_node_list(names, removed).encode())
        underlay.apply(replace(plan, nodes=()))  # the bridge, with the server's address
        underlay.claim_ranges(plan.bridge, _bridge_claims(config))
    tokens = pki.ensure_tokens(config)

    # The server starts while the nodes are made, and the agents while the server starts
    # (each waits for the API on its own): Python start-ups are most of what `kwire up`
    # takes, so they overlap.
    server = None if server_running else _spawn_server(config)
    started: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        underlay.apply(plan)
        for link in plan.nodes:
            if agents.agent_pid(config, link.node) is None:
                log_start = _log_size(agents.node_paths(config, link.node).agent_log)
                started[link.node] = (agents.start_agent(config, link), log_start)
        if server is not None:
            _wait_server_ready(config, server, tokens.admin, timeout)
    except BaseException:
        agents.terminate([proc.pid for proc, _ in started.values()]
                         + ([server[0].pid] if server is not None else []), grace=5.0)
        if server is not None:
            config.pid_file.unlink(missing_ok=True)
        raise
    path = kubeconfig.merge_into_user(kubeconfig.write_cluster_kubeconfig(config, tokens.admin))
    _wait_nodes_ready(config, plan, started, tokens.admin, timeout)
    return UpResult(status=status(config.name), started=not server_running,
                    agents_started=tuple(started), user_kubeconfig=path,
                    context=config.context_name)


def read_node_list(config: ClusterConfig) -> tuple[list[str], set[str]]:
    """Every node the cluster had, in the order they were added (their underlay addresses'
    order), and those of them that were removed (see nodes.parse_node_list)."""
    try:
        return parse_node_list(config.nodes_file.read_text())
    except FileNotFoundError:
        return [], set()


def node_names(config: ClusterConfig) -> list[str]:
    """The cluster's nodes, in the order they were added."""
    names, removed = read_node_list(config)
    return [n for n in names if n not in removed]


@contextmanager
def _underlay_lock() -> Iterator[None]:
    """Held while a cluster claims its underlay and pod range and creates its bridge
    (which routes both): the host's addresses are shared by the clusters of every state
    root, and two `kwire up` side by side must not both take the same free range. Also
    held to change a cluster's node list."""
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    with open(UNDERLAY_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _claim_ranges(config: ClusterConfig, *, new: bool, pick: Collection[str]) -> ClusterConfig:
    """`config` with ranges that no host route (and, for a new cluster, no other cluster
    of this state root) uses, the PICKABLE ones in `pick` chosen. The host routes them to
    the cluster from the moment its bridge is made under the same lock, so clusters of
    other state roots see them as taken too. The caller holds _underlay_lock."""
    routes = host_routes()
    if new:
        others = _other_ranges(config.name)
        taken = [net for _, _, net in others]
        if "pod_cidr" in pick:
            config = replace(config, pod_cidr=choose_pod_cidr(config, routes, taken))
        if "underlay_cidr" in pick:
            config = replace(config, underlay_cidr=choose_underlay(config, routes, taken))
        if "service_cidr" in pick:
            config = replace(config, service_cidr=choose_service_cidr(config, routes, taken))
            if "cluster_dns" in pick:
                config = replace(config,
                                 cluster_dns=default_cluster_dns(config.service_cidr))
        config.validate()  # the chosen ranges with those given
        for key, net in config.host_routed().items():
            for other, other_key, other_net in others:
                if other_net.overlaps(net):
                    raise ConfigError(f"{key} {net} overlaps the {other_key} {other_net} of "
                                      f"cluster {other!r} in {state_root()}")
        # New ranges must not clash with what the host routes. (An existing cluster's
        # ranges are not checked again while its bridge is there: its own routes are.)
        check_host_routes(config, routes)
    elif not Path(f"/sys/class/net/{underlay.bridge_name(config.name)}").exists():
        # The bridge, and the routes through it, are gone (a reboot, say), so another
        # cluster may hold its ranges now.
        check_host_routes(config, routes)
    return config


def _bridge_claims(config: ClusterConfig) -> dict[str, str]:
    """The host-routed ranges that the bridge's own address and the pod range route do
    not cover, routed onto it by name: the service range and an outside pool."""
    names = {"service_cidr": "service range", "load_balancer_pool": "load-balancer pool"}
    return {names[key]: str(net) for key, net in config.host_routed().items() if key in names}


def _other_ranges(name: str) -> list[tuple[str, str, ipaddress.IPv4Network]]:
    """(cluster, key, range) for the host-routed ranges saved by this state root's other
    clusters, running or not."""
    ranges = []
    for other in list_clusters():
        if other == name:
            continue
        try:
            config = saved_config(other)
        except ClusterError:
            continue  # an unreadable config holds no address the host could see
        if config is not None:  # else removed meanwhile
            try:
                routed = config.host_routed()
            except ValueError:
                continue  # as unreadable
            ranges += [(other, key, net) for key, net in routed.items()]
    return ranges


def _refuse_changes(saved: ClusterConfig, wanted: ClusterConfig) -> None:
    changed = [f"{f.name}: {getattr(saved, f.name)} (asked: {getattr(wanted, f.name)})"
               for f in fields(ClusterConfig) if getattr(saved, f.name) != getattr(wanted, f.name)]
    if changed:
        raise ClusterError(f"cluster {saved.name!r} exists with other settings:\n  "
                           + "\n  ".join(changed)
                           + f"\nrun `kwire down --name {saved.name}` first to recreate it")


def _claim_port(config: ClusterConfig) -> int:
    """config.api_port if it is free, or a free port chosen by the kernel if it is 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the server will: a port in TIME_WAIT from a previous run is usable.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((config.api_host, config.api_port))
        except OSError as e:
            raise ClusterError(f"cannot use {config.api_host}:{config.api_port} "
                               f"for the API server: {e.strerror}") from None
        return s.getsockname()[1]


def _spawn_server(config: ClusterConfig) -> tuple[subprocess.Popen, int]:
    """Launch the detached server; returns it and where its run starts in server.log."""
    cmd = [sys.executable, "-m", "kwire.cli.main", "server", "--config", str(config.config_path)]
    with open(config.server_log, "ab") as log:
        log_start = log.tell()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=config.state_dir, close_fds=True)
    config.pid_file.write_text(f"{proc.pid}\n")
    return proc, log_start


def _wait_server_ready(config: ClusterConfig, server: tuple[subprocess.Popen, int],
                       admin_token: str, timeout: float) -> None:
    """Wait for /readyz; ClusterError with the log's tail if the server exits or is late."""
    proc, log_start = server
    ctx = pki.admin_ssl_context(config)
    deadline = time.monotonic() + timeout
    while (problem := _readyz_problem(config, ctx, admin_token)) is not None:
        if proc.poll() is not None:
            raise ClusterError(f"the API server exited with code {proc.returncode} before "
                               f"it was ready.\n{_log_tail(config.server_log, log_start)}")
        if time.monotonic() >= deadline:
            raise ClusterError(f"the API server was not ready after {timeout:g}s "
                               f"({problem}), so it was stopped.\n"
                               f"{_log_tail(config.server_log, log_start)}")
        time.sleep(0.05)


_STILL_UP = ("The cluster is still up: see `kwire status --name {name}`, "
             "or remove it with `kwire down --name {name}`.")


def _wait_nodes_ready(config: ClusterConfig, plan: underlay.UnderlayPlan,
                      started: dict[str, tuple[subprocess.Popen, int]], admin_token: str,
                      timeout: float) -> None:
    """Wait until every node of `plan` has a Ready Node; ClusterError with the agents' log
    tails if an agent started here exits or the nodes are late. The cluster stays up
    either way, for the user to look into."""
    if not plan.nodes:
        return
    ctx = pki.admin_ssl_context(config)
    deadline = time.monotonic() + timeout
    while True:
        ready, problem = _ready_nodes(config, ctx, admin_token)
        late = [link.node for link in plan.nodes if link.node not in ready]
        if not late:
            return
        for node, (proc, log_start) in started.items():
            if proc.poll() is not None:
                raise ClusterError(
                    f"the agent of node {node} exited with code {proc.returncode}.\n"
                    f"{_log_tail(agents.node_paths(config, node).agent_log, log_start)}\n"
                    f"{_STILL_UP.format(name=config.name)}")
        if time.monotonic() >= deadline:
            tails = "\n".join(
                _log_tail(agents.node_paths(config, node).agent_log,
                          started[node][1] if node in started else 0) for node in late)
            raise ClusterError(f"nodes {', '.join(late)} were not Ready after {timeout:g}s"
                               f"{f' ({problem})' if problem else ''}.\n{tails}\n"
                               f"{_STILL_UP.format(name=config.name)}")
        time.sleep(0.1)


def _ready_nodes(config: ClusterConfig, ctx: ssl.SSLContext, admin_token: str
                 ) -> tuple[set[str], str | None]:
    """The names of the Nodes whose Ready condition is True, and why the list failed."""
    try:
        code, body = _request(config, ctx, admin_token, "GET", "/api/v1/nodes")
        if code != 200:
            return set(), f"listing nodes answered {code}"
        return {node["metadata"]["name"] for node in json.loads(body).get("items") or []
                if any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in (node.get("status") or {}).get("conditions") or [])}, None
    except (*TRANSPORT_ERRORS, ValueError) as e:
        return set(), str(e) or type(e).__name__


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _request(config: ClusterConfig, ctx: ssl.SSLContext, admin_token: str, method: str,
             path: str, body: dict | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    """One request to the API server as the cluster admin (the server verified with the
    cluster CA): the status code and the body. Raises TRANSPORT_ERRORS."""
    conn = http.client.HTTPSConnection(config.api_host, config.api_port, timeout=timeout,
                                       context=ctx)
    headers = {"Authorization": f"Bearer {admin_token}", "Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _readyz_problem(config: ClusterConfig, ctx: ssl.SSLContext, admin_token: str,
                    timeout: float = 2.0) -> str | None:
    """None if GET /readyz answers 200 (server verified with the cluster CA), else why not."""
    try:
        code, _ = _request(config, ctx, admin_token, "GET", "/readyz", timeout=timeout)
    except TRANSPORT_ERRORS as e:
        return str(e) or type(e).__name__
    return None if code == 200 else f"/readyz answered {code}"


def _log_tail(path: Path, offset: int = 0) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        lines = []
    if not lines:
        return f"{path} is empty."
    return f"Last lines of {path}:\n" + "\n".join(f"  | {line}" for line in lines)


def down(name: str, *, grace: float = 10.0) -> bool:
    """Stop cluster `name` and remove all of it: its agents and every other process in its
    nodes' namespaces, its API server, the nodes' containers and mounts (purge_node), its
    underlay, /run/kwire/<name>, its kubeconfig entries and its state folder with all its
    data (as `kind delete cluster`). Works on whatever part of a cluster is left, and
    returns whether there was anything to remove."""
    check_name(name)
    try:
        config = saved_config(name) or ClusterConfig(name=name)
    except ClusterError:
        config = ClusterConfig(name=name)  # an unreadable config: remove what is found
    run_dir = RUN_ROOT / name
    try:
        listed = read_node_list(config)[0]
    except ClusterError:
        listed = []  # an unreadable node list: the folders name the nodes
    names = sorted({*listed, *_names_in(config.state_dir / "nodes"),
                    *_names_in(run_dir)})
    netns_prefix = plan_underlay(config, []).netns_prefix
    namespaces = [ns for ns in _names_in(agents.NETNS_DIR, dirs_only=False)
                  if ns.startswith(netns_prefix)]

    # Agents first, or they would start again the containers being purged. The rest of
    # what runs in the nodes (conmon monitors, say) goes once the containers are gone:
    # a monitor waits for its container, which may well ignore SIGTERM.
    pids = {pid for node in names if (pid := agents.agent_pid(config, node)) is not None}
    pids.update(pid for ns in namespaces for pid in agents.agents_in(config, ns))
    if (server := server_pid(config)) is not None:
        pids.add(server)
    agents.terminate(sorted(pids), grace)
    for node in names:
        purge_node(agents.node_paths(config, node))
    rest = [pid for ns in namespaces for pid in agents.namespace_pids(ns)]
    agents.terminate(rest, grace=1.0)
    removed_links = underlay.teardown(plan_underlay(config, []))
    for directory in (run_dir, config.state_dir):
        _unmount_under(directory)
    existed = bool(pids or rest or removed_links or run_dir.exists()
                   or config.state_dir.exists())
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.rmtree(config.state_dir, ignore_errors=True)
    removed_context = kubeconfig.remove_from_user(config.context_name) is not None
    return existed or removed_context


def remove_node(name: str, node: str, *, grace: float = 10.0) -> bool:
    """`kwire node rm`: take `node` out of cluster `name` for good. Its agent stops, its
    containers and mounts go (purge_node), its Node and then its pods are deleted through
    the API (pods at once: no kubelet is left to finish them, as upstream's pod GC
    decides for the pods of a deleted Node), and its namespace, veth and folders go.

    The node keeps its line in the node list, marked removed, so that no other node
    changes address and its name is not given again. Marked first, so that a `kwire up`
    meanwhile does not start its agent again; running this again finishes a removal that
    failed half-way. Returns False if the node was already marked removed."""
    config = saved_config(name)
    if config is None:
        raise ClusterError(f"no cluster named {name!r} (see `kwire status`)")
    names, _ = read_node_list(config)
    if node not in names:
        raise ClusterError(f"cluster {name!r} has no node {node!r} (see `kwire status "
                           f"--name {name}`)")
    token = pki.load_tokens(config).admin
    ctx = pki.admin_ssl_context(config)
    if (problem := _readyz_problem(config, ctx, token)) is not None:
        raise ClusterError(f"the API server of cluster {name!r} is not ready ({problem}); "
                           f"start it with `kwire up --name {name}`, then remove the node")
    with _underlay_lock():
        names, removed = read_node_list(config)
        write_private_file(config.nodes_file,
                           format_node_list(names, removed | {node}).encode())

    plan = plan_underlay(config, names)
    link = plan.node(node)
    paths = agents.node_paths(config, node)
    # As in down(): the agent first, or it would restart the containers being purged.
    pids = {*agents.agents_in(config, link.netns)}
    if (pid := agents.agent_pid(config, node)) is not None:
        pids.add(pid)
    agents.terminate(sorted(pids), grace)
    purge_node(paths)
    agents.terminate(agents.namespace_pids(link.netns), grace=1.0)
    _delete_node_and_pods(config, ctx, token, node)
    underlay.remove_node(plan, node)
    _unmount_under(paths.state_dir)
    shutil.rmtree(paths.state_dir, ignore_errors=True)
    return node not in removed


def _delete_node_and_pods(config: ClusterConfig, ctx: ssl.SSLContext, token: str,
                          node: str) -> None:
    """Delete Node `node` (gone already is fine), then every pod bound to it, with grace
    period 0 and the pod's uid as precondition (a pod of the same name made meanwhile
    lives on)."""
    def call(method: str, path: str, body: dict | None = None,
             ok: tuple[int, ...] = (200, 202, 404)) -> bytes:
        try:
            code, answer = _request(config, ctx, token, method, path, body, timeout=10.0)
        except TRANSPORT_ERRORS as e:
            raise ClusterError(f"{method} {path}: {e}") from None
        if code not in ok:
            try:
                message = json.loads(answer).get("message") or answer.decode()
            except ValueError:
                message = answer.decode(errors="replace")
            raise ClusterError(f"{method} {path} answered {code}: {message}")
        return answer

    call("DELETE", f"/api/v1/nodes/{quote(node)}")
    selector = quote(f"spec.nodeName={node}")
    pods = json.loads(call("GET", f"/api/v1/pods?fieldSelector={selector}",
                           ok=(200,))).get("items") or []
    for pod in pods:
        meta = pod["metadata"]
        call("DELETE", f"/api/v1/namespaces/{quote(meta['namespace'])}/pods/"
                       f"{quote(meta['name'])}",
             {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
              "preconditions": {"uid": meta["uid"]}}, ok=(200, 202, 404, 409))


def _names_in(path: Path, dirs_only: bool = True) -> list[str]:
    try:
        return [e.name for e in os.scandir(path)
                if not dirs_only or e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _unmount_under(directory: Path) -> None:
    """Unmount whatever is still mounted in `directory`, deepest first, so that deleting
    it can never reach into a volume or a host path mounted there."""
    root = os.path.realpath(directory)
    for point in sorted((p for p in rootfs.mount_points()
                         if p == root or p.startswith(root + "/")), key=len, reverse=True):
        try:
            rootfs.unmount(point)
        except OSError as e:
            raise ClusterError(f"cannot unmount {point}: {e.strerror}; "
                               f"{directory} is kept") from None


def status(name: str) -> ClusterStatus:
    """What runs for cluster `name`; ClusterError if there is no such cluster."""
    config = saved_config(name)
    if config is None:
        raise ClusterError(f"no cluster named {name!r} (see `kwire status`)")
    pid = server_pid(config)
    ready = False
    if pid is not None:
        ready = _readyz_problem(config, pki.admin_ssl_context(config),
                                pki.load_tokens(config).admin) is None
    names, removed = read_node_list(config)
    plan = plan_underlay(config, names, removed=removed)
    nodes = tuple(NodeStatus(name=link.node, address=link.address.split("/")[0],
                             netns=link.netns, agent_pid=agents.agent_pid(config, link.node))
                  for link in plan.nodes)
    return ClusterStatus(name=config.name, state_dir=config.state_dir, url=config.api_url,
                         pid=pid, ready=ready, kubeconfig_path=config.kubeconfig_path,
                         nodes=nodes)
