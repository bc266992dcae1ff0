"""The OCI runtime spec built for a pod's container: Kubernetes' command/args/env
rules, namespaces, mounts, capabilities, users, and the pod's /etc files."""
import copy

import pytest

from kwire.node.runtime.spec import (ALL_CAPABILITIES, DEFAULT_CAPABILITIES, MASKED_PATHS,
                                     READONLY_PATHS, Mount, SandboxPaths, SpecError, UserFiles,
                                     build_spec, capabilities, cluster_first_resolv_conf,
                                     container_env, expand, hosts_file, merge_env, pod_hostname,
                                     process_args, resolve_identity, resolve_user)

SB = SandboxPaths(netns="/run/netns/kwire-abc", utsns="/run/kwire/sandboxes/abc/ns/uts",
                  ipcns="/run/kwire/sandboxes/abc/ns/ipc", hostname="web-0",
                  hosts_file="/sb/hosts", hostname_file="/sb/hostname",
                  resolv_conf="/sb/resolv.conf", shm="/sb/shm")
POD = {"metadata": {"name": "web-0", "namespace": "prod", "uid": "1234"}, "spec": {}}
NGINX = {"Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"],
         "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 "NGINX_VERSION=1.22.1"]}
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/var/cache/nginx:/bin/nologin\n"
GROUP = "root:x:0:\nwheel:x:10:root,nginx\nnginx:x:101:nginx\n"


def spec_for(container, image=NGINX, pod=POD, **kw):
    return build_spec(pod, container, image, rootfs="/c/rootfs", sandbox=SB, **kw)


# ------------------------------------------------------------------ the whole spec


def test_default_nginx_container_exact():
    spec = spec_for({"name": "web"})
    assert spec == {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0, "additionalGids": [0]},
            "args": ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOSTNAME=web-0", "NGINX_VERSION=1.22.1"],
            "cwd": "/",
            "capabilities": {"bounding": list(DEFAULT_CAPABILITIES),
                             "effective": list(DEFAULT_CAPABILITIES),
                             "permitted": list(DEFAULT_CAPABILITIES)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}],
            "noNewPrivileges": False,
        },
        "root": {"path": "/c/rootfs", "readonly": False},
        "hostname": "web-0",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "bind", "source": "/sb/shm",
             "options": ["rbind", "rprivate", "rw"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "/sb/hosts",
             "options": ["rbind", "rprivate", "rw"]},
            {"destination": "/etc/hostname", "type": "bind", "source": "/sb/hostname",
             "options": ["rbind", "rprivate", "rw"]},
            {"destination": "/etc/resolv.conf", "type": "bind", "source": "/sb/resolv.conf",
             "options": ["rbind", "rprivate", "rw"]},
        ],
        "annotations": {"io.kubernetes.pod.name": "web-0",
                        "io.kubernetes.pod.namespace": "prod",
                        "io.kubernetes.pod.uid": "1234",
                        "io.kubernetes.container.name": "web"},
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc", "path": "/run/kwire/sandboxes/abc/ns/ipc"},
                {"type": "uts", "path": "/run/kwire/sandboxes/abc/ns/uts"},
                {"type": "mount"},
                {"type": "network", "path": "/run/netns/kwire-abc"},
            ],
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def test_masked_and_readonly_paths_are_containerds():
    assert MASKED_PATHS == (
        "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
        "/sys/devices/virtual/powercap", "/proc/scsi")
    assert READONLY_PATHS == ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger")


def test_inputs_are_not_modified():
    pod, image = copy.deepcopy(POD), copy.deepcopy(NGINX)
    container = {"name": "c", "env": [{"name": "A", "value": "1"}]}
    before = copy.deepcopy((pod, container, image))
    spec_for(container, image, pod)
    assert (pod, container, image) == before


def test_extra_annotations_cgroups_nofile_sysctls():
    pod = {"metadata": {"name": "p"}, "spec": {"securityContext": {
        "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]}}}
    spec = spec_for({"name": "c"}, pod=pod, annotations={"io.kwire.sandbox.id": "abc"},
                    cgroups_path="/kwire/abc/c", nofile=20000)
    assert spec["annotations"]["io.kwire.sandbox.id"] == "abc"
    assert spec["annotations"]["io.kubernetes.pod.namespace"] == "default"
    assert spec["linux"]["cgroupsPath"] == "/kwire/abc/c"
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_unprivileged_port_start": "0"}
    assert spec["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}]


# ------------------------------------------------------------------ command and args


@pytest.mark.parametrize("container, expected", [
    ({}, ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]),
    ({"args": ["nginx-debug"]}, ["/docker-entrypoint.sh", "nginx-debug"]),
    ({"command": ["/bin/sh"]}, ["/bin/sh"]),
    ({"command": ["/bin/sh"], "args": ["-c", "echo hi"]}, ["/bin/sh", "-c", "echo hi"]),
    ({"command": [], "args": []}, ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]),
])
def test_command_and_args_follow_kubernetes(container, expected):
    assert process_args(container, NGINX, {}) == expected


def test_cmd_only_image_and_the_seed_container():
    busybox = {"Cmd": ["sh"], "Env": ["PATH=/bin"]}
    assert process_args({}, busybox, {}) == ["sh"]
    assert process_args({"args": ["echo", "x"]}, busybox, {}) == ["echo", "x"]
    seed = {"command": ["/bin/sh", "-c", "while true; do echo hi; sleep 10; done"]}
    assert process_args(seed, busybox, {}) == seed["command"]


def test_no_command_at_all_is_an_error():
    with pytest.raises(SpecError, match="no command"):
        spec_for({"name": "c"}, image={})


def test_command_and_args_expand_container_env_only():
    container = {"name": "c", "command": ["echo", "$(GREETING)", "$(NGINX_VERSION)"],
                 "args": ["$$(GREETING)", "$(MISSING)"],
                 "env": [{"name": "GREETING", "value": "hello"}]}
    spec = spec_for(container)
    # image env is not a source for $(VAR), as in the kubelet
    assert spec["process"]["args"] == ["echo", "hello", "$(NGINX_VERSION)", "$(GREETING)",
                                       "$(MISSING)"]


def test_image_entrypoint_is_not_expanded():
    image = {"Entrypoint": ["echo", "$(A)"], "Cmd": ["$(A)"]}
    assert process_args({}, image, {"A": "x"}) == ["echo", "$(A)", "$(A)"]


# ------------------------------------------------------------------ expansion


@pytest.mark.parametrize("text, expected", [
    ("$(A)", "a"),
    ("x$(A)y$(B)z", "xaybz"),
    ("$$(A)", "$(A)"),
    ("$$$(A)", "$a"),
    ("$(C)", "$(C)"),
    ("$A", "$A"),
    ("$(A", "$(A"),
    ("a$", "a$"),
    ("$", "$"),
    ("$$", "$"),
    ("", ""),
    ("$()", "$()"),
    ("$(A)$(A)", "aa"),
])
def test_expand(text, expected):
    assert expand(text, {"A": "a", "B": "b"}) == expected


# ------------------------------------------------------------------ env


def test_env_order_and_override():
    image = {"Cmd": ["sh"], "Env": ["PATH=/bin", "A=image", "B=image"]}
    container = {"name": "c", "env": [{"name": "B", "value": "ctr"}, {"name": "C", "value": "$(B)-x"},
                                      {"name": "HOSTNAME", "value": "mine"}, {"name": "E"}]}
    spec = spec_for(container, image)
    assert spec["process"]["env"] == ["PATH=/bin", "HOSTNAME=mine", "A=image", "B=ctr",
                                      "C=ctr-x", "E="]


def test_env_expands_only_earlier_entries():
    env = container_env({"env": [{"name": "A", "value": "$(B)"}, {"name": "B", "value": "b"},
                                 {"name": "C", "value": "$(A)$(B)"}]})
    assert env == [("A", "$(B)"), ("B", "b"), ("C", "$(B)b")]


def test_resolved_env_replaces_container_env():
    container = {"name": "c", "env": [{"name": "X", "valueFrom": {"fieldRef": {}}}]}
    with pytest.raises(SpecError, match="valueFrom"):
        spec_for(container)
    spec = spec_for(container, env=[("X", "10.244.1.5"), ("KUBERNETES_SERVICE_HOST", "10.96.0.1")])
    assert spec["process"]["env"][-2:] == ["X=10.244.1.5", "KUBERNETES_SERVICE_HOST=10.96.0.1"]


def test_merge_env():
    assert merge_env(["A=1", "B=2"], ["B=3", "C=4"], ["A=5"]) == ["A=5", "B=3", "C=4"]
    assert merge_env([], ["X"]) == ["X"]


def test_working_dir():
    assert spec_for({"name": "c"}, {"Cmd": ["sh"], "WorkingDir": "/app"})["process"]["cwd"] == "/app"
    assert spec_for({"name": "c", "workingDir": "/w"}, {"Cmd": ["sh"], "WorkingDir": "/app"}
                    )["process"]["cwd"] == "/w"


# ------------------------------------------------------------------ capabilities


def test_default_capabilities_exact():
    assert DEFAULT_CAPABILITIES == (
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
        "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
    assert capabilities({}) == list(DEFAULT_CAPABILITIES)


def test_capabilities_add_and_drop():
    caps = capabilities({"capabilities": {"add": ["NET_ADMIN", "sys_time", "CHOWN"],
                                          "drop": ["NET_RAW", "KILL"]}})
    expected = [c for c in DEFAULT_CAPABILITIES if c not in ("CAP_NET_RAW", "CAP_KILL")]
    assert caps == expected + ["CAP_NET_ADMIN", "CAP_SYS_TIME"]


def test_capabilities_drop_all_then_add():
    assert capabilities({"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}) == \
        ["CAP_NET_BIND_SERVICE"]
    assert capabilities({"capabilities": {"drop": ["all"]}}) == []


def test_capabilities_add_all_minus_one():
    caps = capabilities({"capabilities": {"add": ["ALL"], "drop": ["SYS_ADMIN"]}})
    assert caps == [c for c in ALL_CAPABILITIES if c != "CAP_SYS_ADMIN"]
    host = ["CAP_CHOWN", "CAP_KILL"]
    assert capabilities({"capabilities": {"add": ["ALL"]}}, host) == host


def test_privileged():
    spec = spec_for({"name": "c", "securityContext": {"privileged": True,
                                                      "allowPrivilegeEscalation": False}},
                    all_capabilities=["CAP_CHOWN", "CAP_SYS_ADMIN"])
    assert spec["process"]["capabilities"]["bounding"] == ["CAP_CHOWN", "CAP_SYS_ADMIN"]
    assert "maskedPaths" not in spec["linux"] and "readonlyPaths" not in spec["linux"]
    sysfs = [m for m in spec["mounts"] if m["destination"] in ("/sys", "/sys/fs/cgroup")]
    assert all("ro" not in m["options"] for m in sysfs) and len(sysfs) == 2
    assert spec["process"]["noNewPrivileges"] is False


def test_no_new_privileges_and_readonly_root():
    spec = spec_for({"name": "c", "securityContext": {"allowPrivilegeEscalation": False,
                                                      "readOnlyRootFilesystem": True}})
    assert spec["process"]["noNewPrivileges"] is True
    assert spec["root"] == {"path": "/c/rootfs", "readonly": True}
    etc = [m for m in spec["mounts"] if m["destination"].startswith("/etc/")]
    assert [m["options"][-1] for m in etc] == ["ro", "ro", "ro"]
    assert spec_for({"name": "c", "securityContext": {"allowPrivilegeEscalation": True}}
                    )["process"]["noNewPrivileges"] is False


# ------------------------------------------------------------------ users


@pytest.mark.parametrize("user, expected", [
    ("", (0, None, None)),
    ("1000", (1000, None, None)),
    ("1000:2000", (1000, 2000, None)),
    ("nginx", (101, 101, "nginx")),
    ("nginx:wheel", (101, 10, "nginx")),
    ("0:nginx", (0, 101, None)),
])
def test_resolve_user(user, expected):
    assert resolve_user(user, UserFiles(PASSWD, GROUP)) == expected


def test_resolve_user_unknown_names():
    with pytest.raises(SpecError, match="passwd"):
        resolve_user("nobody", UserFiles(PASSWD, GROUP))
    with pytest.raises(SpecError, match="group"):
        resolve_user("0:nogroup", UserFiles(PASSWD, GROUP))
    with pytest.raises(SpecError):
        resolve_user("nginx")  # names need the image's files


def test_identity_from_image_and_security_context():
    files = UserFiles(PASSWD, GROUP)
    assert resolve_identity({}, {}, "nginx", files) == (101, 101, [101, 10])
    assert resolve_identity({}, {}, "101", files) == (101, 101, [101, 10])
    assert resolve_identity({}, {}, "1000:3", files) == (1000, 3, [3])
    assert resolve_identity({}, {}, "1000") == (1000, 0, [0])
    # container securityContext over pod's, pod's over the image
    assert resolve_identity({"runAsUser": 5, "runAsGroup": 6}, {}, "nginx", files) == (5, 6, [6])
    assert resolve_identity({"runAsUser": 5}, {"runAsUser": 7}, "", files) == (7, 0, [0])
    assert resolve_identity({}, {"runAsUser": 101}, "", files) == (101, 101, [101, 10])
    assert resolve_identity({"supplementalGroups": [4, 6], "fsGroup": 2000}, {"runAsGroup": 6},
                            "1000") == (1000, 6, [6, 4, 2000])


def test_user_in_spec_and_run_as_non_root():
    spec = spec_for({"name": "c"}, {"Cmd": ["sh"], "User": "nginx"},
                    user_files=UserFiles(PASSWD, GROUP))
    assert spec["process"]["user"] == {"uid": 101, "gid": 101, "additionalGids": [101, 10]}
    with pytest.raises(SpecError, match="runAsNonRoot"):
        spec_for({"name": "c", "securityContext": {"runAsNonRoot": True}})
    pod = {"metadata": {"name": "p"}, "spec": {"securityContext": {"runAsNonRoot": True,
                                                                   "runAsUser": 1000}}}
    assert spec_for({"name": "c"}, pod=pod)["process"]["user"]["uid"] == 1000


# ------------------------------------------------------------------ mounts


def test_volume_mounts_sorted_by_depth_after_defaults():
    vols = [Mount("/usr/share/nginx/html/sub", "/v/b"), Mount("/data", "/v/a", readonly=True),
            Mount("/usr/share/nginx/html", "/v/c", propagation="rslave")]
    dests = [m["destination"] for m in spec_for({"name": "c"}, volumes=vols)["mounts"]]
    assert dests == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                     "/sys/fs/cgroup", "/data", "/etc/hosts", "/etc/hostname",
                     "/etc/resolv.conf", "/usr/share/nginx/html", "/usr/share/nginx/html/sub"]
    assert Mount("/data", "/v/a", readonly=True).to_oci() == {
        "destination": "/data", "type": "bind", "source": "/v/a",
        "options": ["rbind", "rprivate", "ro"]}
    assert vols[2].to_oci()["options"] == ["rbind", "rslave", "rw"]


def test_volume_over_etc_file_or_default_mount_wins():
    vols = [Mount("/etc/hosts", "/mine/hosts"), Mount("/dev/shm", "/mine/shm")]
    mounts = spec_for({"name": "c"}, volumes=vols)["mounts"]
    by_dest = {}
    for m in mounts:
        assert m["destination"] not in by_dest, "one mount per destination"
        by_dest[m["destination"]] = m["source"]
    assert by_dest["/etc/hosts"] == "/mine/hosts"
    assert by_dest["/dev/shm"] == "/mine/shm"


def test_relative_destination_is_rejected():
    with pytest.raises(SpecError, match="absolute"):
        spec_for({"name": "c"}, volumes=[Mount("data", "/v")])


def test_sandbox_without_files_or_shm():
    bare = SandboxPaths(netns="/n", utsns="/u", ipcns="/i", hostname="h")
    spec = build_spec(POD, {"name": "c"}, NGINX, rootfs="/r", sandbox=bare)
    shm = [m for m in spec["mounts"] if m["destination"] == "/dev/shm"]
    assert shm == [{"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                    "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}]
    assert not [m for m in spec["mounts"] if m["destination"].startswith("/etc")]


# ------------------------------------------------------------------ pod files


def test_pod_hostname():
    assert pod_hostname({"metadata": {"name": "web-0"}}) == "web-0"
    assert pod_hostname({"metadata": {"name": "x"}, "spec": {"hostname": "h"}}) == "h"
    long = "a" * 62 + "-" + "b" * 10
    assert pod_hostname({"metadata": {"name": long}}) == "a" * 62


def test_hosts_file():
    assert hosts_file("web-0", ["10.244.1.5"], [{"ip": "1.2.3.4", "hostnames": ["a", "b"]}]) == (
        "# Kubernetes-managed hosts file.\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "fe00::0\tip6-mcastprefix\n"
        "fe00::1\tip6-allnodes\n"
        "fe00::2\tip6-allrouters\n"
        "10.244.1.5\tweb-0\n"
        "\n"
        "# Entries added by HostAliases.\n"
        "1.2.3.4\ta\tb\n")
    assert "10.244.1.5\tweb-0.sub.ns.svc.cluster.local\tweb-0\n" in hosts_file(
        "web-0", ["10.244.1.5"], subdomain_fqdn="web-0.sub.ns.svc.cluster.local")


def test_cluster_first_resolv_conf():
    assert cluster_first_resolv_conf("prod", "10.96.0.10") == (
        "search prod.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n")


def test_null_container_setting_falls_back_to_pod():
    assert resolve_identity({"runAsUser": 5}, {"runAsUser": None, "runAsGroup": None}, "") == \
        (5, 0, [0])
