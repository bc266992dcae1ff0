"""The OCI runtime spec (a bundle's config.json) for one container of a pod.

Pure: API objects and paths in, a dict out; nothing here touches the machine. It
follows what containerd's CRI plugin builds for the kubelet, so a container
behaves as on a real Kubernetes node:

- process args: ``command`` replaces the image Entrypoint and ``args`` its Cmd
  (``args`` alone keeps the Entrypoint); ``$(VAR)`` references expand with the
  container's env, ``$$`` escapes, as the kubelet does;
- env: a default PATH, ``HOSTNAME``, then the image Env, then the container env,
  a later value replacing an earlier one of the same name in place;
- cwd: ``workingDir``, else the image WorkingDir, else ``/``;
- namespaces: the pod's network, UTS and IPC namespaces joined by path (the
  sandbox owns them), a PID and a mount namespace of its own;
- mounts: proc, a /dev tmpfs, devpts, /dev/shm (the sandbox's, bound, or a
  tmpfs), mqueue, sysfs and the cgroup tree read-only, the volume bind mounts, and
  /etc/hosts, /etc/hostname and /etc/resolv.conf bound from the sandbox unless a
  volume covers them; volume mounts sort by depth so parents come first;
- capabilities: the default set of containerd (the Kubernetes default), with
  ``securityContext.capabilities`` add/drop (``ALL`` first, then single names)
  and ``privileged`` giving every capability, no masked or read-only paths and a
  writable sysfs;
- user: ``runAsUser``/``runAsGroup`` (container over pod securityContext), else
  the image User (``uid``, ``uid:gid``, or names resolved with the image's
  /etc/passwd and /etc/group text when given); supplementalGroups and fsGroup
  join the additional gids;
- noNewPrivileges when ``allowPrivilegeEscalation`` is false (Kubernetes'
  default is to allow it), a read-only root for ``readOnlyRootFilesystem``,
  RLIMIT_NOFILE, pod sysctls, no terminal.
"""
from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OCI_VERSION = "1.0.2-dev"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOFILE = 1048576
SHM_SIZE = "65536k"

DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)
"""containerd's default set, which a Kubernetes container gets (same order)."""

ALL_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
"""Every capability runc 1.1 knows (Linux 5.9+), in bit order."""

MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
    "/sys/devices/virtual/powercap", "/proc/scsi",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# annotations that name the container, as CRI runtimes set them; re-adoption reads them
ANN_POD_NAME = "io.kubernetes.pod.name"
ANN_POD_NAMESPACE = "io.kubernetes.pod.namespace"
ANN_POD_UID = "io.kubernetes.pod.uid"
ANN_CONTAINER_NAME = "io.kubernetes.container.name"
ANN_SANDBOX_ID = "io.kwire.sandbox.id"


class SpecError(ValueError):
    """The container cannot be run as specified (what CreateContainerError shows)."""


@dataclass(frozen=True)
class Mount:
    """A bind mount of a host path (a volume) into the container."""

    destination: str
    source: str
    readonly: bool = False
    propagation: str = "rprivate"
    """rprivate, rslave (HostToContainer) or rshared (Bidirectional)."""

    def to_oci(self) -> dict[str, Any]:
        return {"destination": self.destination, "type": "bind", "source": self.source,
                "options": ["rbind", self.propagation, "ro" if self.readonly else "rw"]}


@dataclass(frozen=True)
class SandboxPaths:
    """What a container of the pod joins and binds from its sandbox."""

    netns: str
    utsns: str
    ipcns: str
    hostname: str
    hosts_file: str | None = None
    hostname_file: str | None = None
    resolv_conf: str | None = None
    shm: str | None = None
    """A directory (a tmpfs the sandbox mounted) bound on /dev/shm, so the pod's
    containers share POSIX shared memory with their IPC namespace; else a tmpfs each."""


@dataclass(frozen=True)
class UserFiles:
    """The image's /etc/passwd and /etc/group, to resolve user and group names."""

    passwd: str = ""
    group: str = ""


@dataclass(frozen=True)
class Process:
    """The resolved process of a container, before it becomes spec['process']."""

    args: list[str]
    env: list[str]
    cwd: str
    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)


# ------------------------------------------------------------------ expansion


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a known name is replaced, an unknown one stays as
    written, ``$$`` gives ``$``, and any other ``$`` is kept (kubelet's expansion.go)."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1:]
            if rest[0] == "$":
                out.append("$")
                advance = 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    name = rest[1:close]
                    out.append(env[name] if name in env else f"$({name})")
                    advance = close + 1
            else:
                out.append("$" + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def container_env(container: Mapping[str, Any],
                  resolved: Sequence[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """The container's own env as (name, value), each value expanded with the ones
    before it. ``resolved`` replaces ``container['env']`` when the caller has
    worked out valueFrom and envFrom (and added the service variables)."""
    if resolved is None:
        resolved = []
        for item in container.get("env") or []:
            if "valueFrom" in item and "value" not in item:
                raise SpecError(f"env {item.get('name')!r}: valueFrom must be resolved by the caller")
            resolved.append((item["name"], item.get("value") or ""))
    seen: dict[str, str] = {}
    out = []
    for name, value in resolved:
        value = expand(value, seen)
        seen[name] = value
        out.append((name, value))
    return out


def merge_env(*layers: Iterable[str]) -> list[str]:
    """NAME=value lists merged in order: a later NAME replaces the earlier in place,
    a new one is appended (containerd's replaceOrAppendEnvValues)."""
    out: list[str] = []
    index: dict[str, int] = {}
    for layer in layers:
        for entry in layer:
            name = entry.split("=", 1)[0]
            if name in index:
                out[index[name]] = entry
            else:
                index[name] = len(out)
                out.append(entry)
    return out


def process_args(container: Mapping[str, Any], image_config: Mapping[str, Any],
                 env: Mapping[str, str]) -> list[str]:
    """Kubernetes' rule: command replaces Entrypoint, args replace Cmd."""
    command = [expand(a, env) for a in container.get("command") or []]
    args = [expand(a, env) for a in container.get("args") or []]
    if command:
        argv = command + args
    else:
        argv = list(image_config.get("Entrypoint") or [])
        argv += args if args else list(image_config.get("Cmd") or [])
    if not argv:
        raise SpecError("no command specified: the container has no command and the "
                        "image no Entrypoint or Cmd")
    return argv


# ------------------------------------------------------------------ users


def _lookup(text: str, key: str, by_name: bool) -> list[str] | None:
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) < 4 or line.startswith("#"):
            continue
        if (parts[0] == key) if by_name else (parts[2] == key):
            return parts
    return None


def resolve_user(user: str, files: UserFiles | None = None) -> tuple[int, int | None, str | None]:
    """An image User ("", "uid", "uid:gid", "name", "name:group") as (uid, gid or
    None when the user's passwd entry should decide, user name if known)."""
    files = files or UserFiles()
    name_part, _, group_part = user.partition(":")
    uid: int
    gid: int | None = None
    name: str | None = None
    if not name_part:
        uid = 0
    elif name_part.isdigit():
        uid = int(name_part)
    else:
        entry = _lookup(files.passwd, name_part, by_name=True)
        if entry is None:
            raise SpecError(f"image user {name_part!r} is not in the image's /etc/passwd")
        uid, gid, name = int(entry[2]), int(entry[3]), name_part
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            entry = _lookup(files.group, group_part, by_name=True)
            if entry is None:
                raise SpecError(f"image group {group_part!r} is not in the image's /etc/group")
            gid = int(entry[2])
    return uid, gid, name


def _passwd_for_uid(files: UserFiles, uid: int) -> tuple[str | None, int | None]:
    entry = _lookup(files.passwd, str(uid), by_name=False)
    return (entry[0], int(entry[3])) if entry else (None, None)


def _groups_of(files: UserFiles, name: str | None) -> list[int]:
    if not name:
        return []
    out = []
    for line in files.group.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and name in parts[3].split(","):
            out.append(int(parts[2]))
    return out


def _either(sc: Mapping[str, Any], pod_sc: Mapping[str, Any], key: str) -> Any:
    """The container's setting, else the pod's (a null counts as unset)."""
    value = sc.get(key)
    return pod_sc.get(key) if value is None else value


def resolve_identity(pod_sc: Mapping[str, Any], sc: Mapping[str, Any], image_user: str,
                     files: UserFiles | None = None) -> tuple[int, int, list[int]]:
    """(uid, gid, additional gids) as containerd resolves them for the kubelet."""
    files = files or UserFiles()
    run_as_user = _either(sc, pod_sc, "runAsUser")
    run_as_group = _either(sc, pod_sc, "runAsGroup")
    if run_as_user is not None:
        uid, gid, name = int(run_as_user), None, None
    else:
        uid, gid, name = resolve_user(image_user, files)
    pw_name, pw_gid = _passwd_for_uid(files, uid)
    name = name or pw_name
    if run_as_group is not None:
        gid = int(run_as_group)
    elif gid is None:
        gid = pw_gid if pw_gid is not None else 0
    extra = [gid] + _groups_of(files, name)
    extra += [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        extra.append(int(pod_sc["fsGroup"]))
    seen: list[int] = []
    for g in extra:
        if g not in seen:
            seen.append(g)
    return uid, gid, seen


# ------------------------------------------------------------------ capabilities


def capabilities(sc: Mapping[str, Any],
                 all_capabilities: Sequence[str] = ALL_CAPABILITIES) -> list[str]:
    """The container's capability set: defaults, or all when privileged; then
    add/drop, ``ALL`` first so single names still apply on top of it. ``ALL`` means
    ``all_capabilities``: what the agent itself holds (host.capabilities())."""
    if sc.get("privileged"):
        return list(all_capabilities)
    caps = list(DEFAULT_CAPABILITIES)
    spec = sc.get("capabilities") or {}
    add = [c.upper() for c in spec.get("add") or []]
    drop = [c.upper() for c in spec.get("drop") or []]
    if "ALL" in add:
        caps = list(all_capabilities)
    if "ALL" in drop:
        caps = []
    for c in add:
        if c != "ALL":
            c = c if c.startswith("CAP_") else "CAP_" + c
            if c not in caps:
                caps.append(c)
    for c in drop:
        if c != "ALL":
            c = c if c.startswith("CAP_") else "CAP_" + c
            caps = [x for x in caps if x != c]
    return caps


# ------------------------------------------------------------------ mounts


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def default_mounts(privileged: bool, shm: str | None) -> list[dict[str, Any]]:
    sys_ro = [] if privileged else ["ro"]
    shm_mount = ({"destination": "/dev/shm", "type": "bind", "source": shm,
                  "options": ["rbind", "rprivate", "rw"]} if shm else
                 {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                  "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={SHM_SIZE}"]})
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        shm_mount,
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", *sys_ro]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", *sys_ro]},
    ]


def build_mounts(volumes: Sequence[Mount], sandbox: SandboxPaths, *, privileged: bool,
                 readonly_root: bool) -> list[dict[str, Any]]:
    """Default mounts (minus those a volume covers), then volume mounts and the
    sandbox's files, sorted by depth so a parent mounts before its children."""
    extra = [(m.destination, m.to_oci()) for m in volumes]
    for path, dest in ((sandbox.hosts_file, "/etc/hosts"),
                       (sandbox.hostname_file, "/etc/hostname"),
                       (sandbox.resolv_conf, "/etc/resolv.conf")):
        if path and not any(d == dest for d, _ in extra):
            extra.append((dest, Mount(dest, path, readonly=readonly_root).to_oci()))
    for dest, _ in extra:
        if not posixpath.isabs(dest):
            raise SpecError(f"mount destination {dest!r} is not an absolute path")
    dests = [posixpath.normpath(d) for d, _ in extra]
    base = [m for m in default_mounts(privileged, sandbox.shm)
            if not any(_under(m["destination"], d) for d in dests)]
    ordered = sorted(extra, key=lambda e: len([p for p in posixpath.normpath(e[0]).split("/") if p]))
    return base + [m for _, m in ordered]


# ------------------------------------------------------------------ the spec


def pod_hostname(pod: Mapping[str, Any]) -> str:
    """spec.hostname, else the pod name, cut to 63 characters without a trailing
    '-' or '.' (the kubelet's truncation)."""
    name = (pod.get("spec") or {}).get("hostname") or pod["metadata"]["name"]
    if len(name) > 63:
        name = name[:63].rstrip("-.")
    return name


def build_spec(pod: Mapping[str, Any], container: Mapping[str, Any],
               image_config: Mapping[str, Any], *, rootfs: str, sandbox: SandboxPaths,
               volumes: Sequence[Mount] = (), env: Sequence[tuple[str, str]] | None = None,
               user_files: UserFiles | None = None, cgroups_path: str | None = None,
               annotations: Mapping[str, str] | None = None, nofile: int = NOFILE,
               all_capabilities: Sequence[str] = ALL_CAPABILITIES) -> dict[str, Any]:
    """config.json for ``container`` of ``pod``: see the module doc.

    ``image_config`` is the image's run configuration (``Image.run_config``:
    Entrypoint, Cmd, Env, WorkingDir, User); ``env`` the container's resolved env
    (valueFrom, envFrom and service variables done) overriding ``container['env']``.
    ``nofile`` and ``all_capabilities`` must not exceed what the agent holds (see
    host.py); the defaults are what an unconfined Kubernetes node gives.
    """
    spec = pod.get("spec") or {}
    pod_sc = spec.get("securityContext") or {}
    sc = container.get("securityContext") or {}
    privileged = bool(sc.get("privileged"))
    own_env = container_env(container, env)
    env_map = dict(own_env)
    args = process_args(container, image_config, env_map)
    env_list = merge_env([DEFAULT_PATH, f"HOSTNAME={sandbox.hostname}"],
                         image_config.get("Env") or [],
                         [f"{k}={v}" for k, v in own_env])
    uid, gid, gids = resolve_identity(pod_sc, sc, image_config.get("User") or "", user_files)
    if _either(sc, pod_sc, "runAsNonRoot") and uid == 0:
        raise SpecError("container has runAsNonRoot and image will run as root")
    caps = capabilities(sc, all_capabilities)
    allow_escalation = sc.get("allowPrivilegeEscalation")
    readonly_root = bool(sc.get("readOnlyRootFilesystem"))
    meta = pod.get("metadata") or {}
    ann = {ANN_POD_NAME: meta.get("name", ""), ANN_POD_NAMESPACE: meta.get("namespace", "default"),
           ANN_POD_UID: meta.get("uid", ""), ANN_CONTAINER_NAME: container["name"]}
    ann.update(annotations or {})
    linux: dict[str, Any] = {
        "namespaces": [
            {"type": "pid"},
            {"type": "ipc", "path": sandbox.ipcns},
            {"type": "uts", "path": sandbox.utsns},
            {"type": "mount"},
            {"type": "network", "path": sandbox.netns},
        ],
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
    }
    if not privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    sysctls = {s["name"]: str(s.get("value", "")) for s in pod_sc.get("sysctls") or []}
    if sysctls:
        linux["sysctl"] = sysctls
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid, "additionalGids": gids},
            "args": args,
            "env": env_list,
            "cwd": container.get("workingDir") or image_config.get("WorkingDir") or "/",
            "capabilities": {"bounding": caps, "effective": list(caps), "permitted": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": allow_escalation is False and not privileged,
        },
        "root": {"path": rootfs, "readonly": readonly_root},
        "hostname": sandbox.hostname,
        "mounts": build_mounts(volumes, sandbox, privileged=privileged,
                               readonly_root=readonly_root),
        "annotations": ann,
        "linux": linux,
    }


# ------------------------------------------------------------------ pod files


def hosts_file(hostname: str, pod_ips: Sequence[str] = (), host_aliases: Sequence[Mapping] = (),
               subdomain_fqdn: str | None = None) -> str:
    """/etc/hosts as the kubelet writes it for a pod that is not on the host network."""
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    for ip in pod_ips:
        lines.append(f"{ip}\t{subdomain_fqdn}\t{hostname}" if subdomain_fqdn else f"{ip}\t{hostname}")
    if host_aliases:
        lines.append("")
        lines.append("# Entries added by HostAliases.")
        for alias in host_aliases:
            lines.append(f"{alias['ip']}\t" + "\t".join(alias.get("hostnames") or []))
    return "\n".join(lines) + "\n"


def resolv_conf(nameservers: Sequence[str], searches: Sequence[str] = (),
                options: Sequence[str] = ()) -> str:
    out = [f"search {' '.join(searches)}"] if searches else []
    out += [f"nameserver {ns}" for ns in nameservers]
    if options:
        out.append(f"options {' '.join(options)}")
    return "\n".join(out) + "\n"


def cluster_first_resolv_conf(namespace: str, dns_ip: str, domain: str = "cluster.local") -> str:
    """A ClusterFirst pod's resolv.conf: the cluster DNS, the namespace's search path, ndots:5."""
    return resolv_conf([dns_ip], [f"{namespace}.svc.{domain}", f"svc.{domain}", domain],
                       ["ndots:5"])
