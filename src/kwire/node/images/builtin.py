"""The built-in images ``busybox`` and ``nginx:alpine``, built offline from Debian.

No registry is reachable on kwire's machines, yet the seed pod names these two
images, so they are made from installed Debian packages with what a pod relies on
in the upstream images kept the same:

- ``docker.io/library/busybox:latest``: the static busybox (busybox-static) with
  every applet as a symlink in /bin, /etc/passwd, group and nsswitch.conf,
  Cmd ["sh"].
- ``docker.io/library/nginx:alpine``: that same layer (so `sh` and `wget` are there,
  as in Alpine), plus Debian's nginx binary with the shared libraries it links and
  the dynamic loader, Entrypoint ["/docker-entrypoint.sh"] running the hooks in
  /docker-entrypoint.d/, Cmd ["nginx", "-g", "daemon off;"], port 80/tcp,
  StopSignal SIGQUIT, /etc/nginx/nginx.conf and conf.d/default.conf serving
  /usr/share/nginx/html, logs to stdout/stderr through /var/log/nginx symlinks and
  user nginx (101:101). Paths that Debian's build compiled in (/var/lib/nginx for
  temporary files, /run/nginx.pid) exist too, so configs written for either work.

The nginx image reuses the busybox layer, so the store keeps it and unpacks it once.
Layers are reproducible, so building again from the same packages gives the same
digests and changes nothing.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kwire.node.images.errors import ImageError, ImageNotFound, MissingPackages
from kwire.node.images.store import Image, ImageStore, Layer

BUSYBOX_REF = "docker.io/library/busybox:latest"
NGINX_REF = "docker.io/library/nginx:alpine"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NGINX_UID = 101
BUILTIN_LABEL = "io.kwire.image.builtin"
DESCRIPTION = ("built offline by kwire from the Debian packages {packages}; "
               "same entrypoint, command, ports and paths as the upstream image")


@dataclass(frozen=True)
class BuiltImage:
    image: Image
    created: bool
    """False when the store already held this image, built from the same inputs."""


def build_builtin_images(store: ImageStore) -> list[BuiltImage]:
    """Build (or find up to date) busybox:latest and nginx:alpine in ``store``.

    Raises MissingPackages, naming what to `apt-get install`, when busybox-static
    or nginx is not installed.
    """
    busybox_version = _dpkg_version("busybox-static")
    nginx_version = _dpkg_version("nginx")
    missing = [pkg for pkg, version in (("busybox-static", busybox_version),
                                        ("nginx-light", nginx_version)) if version is None]
    if missing:
        raise MissingPackages(missing)
    busybox = _dpkg_file("busybox-static", "/bin/busybox")
    nginx = _dpkg_file("nginx", "/sbin/nginx")
    with tempfile.TemporaryDirectory(prefix="build-", dir=store.root / "tmp") as tmp:
        base = _Tree(Path(tmp) / "busybox")
        _busybox_tree(base, busybox)
        base_layer = store.add_layer(base.root)
        web = _Tree(Path(tmp) / "nginx")
        _nginx_tree(web, nginx)
        nginx_layer = store.add_layer(web.root)
    bb_pkg = f"busybox-static {busybox_version}"
    return [
        _write(store, BUSYBOX_REF, [base_layer],
               {"Cmd": ["sh"], "Env": [PATH_ENV]},
               [f"kwire: busybox with its applets in /bin, from {bb_pkg}"], bb_pkg),
        _write(store, NGINX_REF, [base_layer, nginx_layer],
               {"Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"],
                "Env": [PATH_ENV, f"NGINX_VERSION={_upstream_version(nginx_version)}"],
                "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGQUIT"},
               [f"kwire: busybox with its applets in /bin, from {bb_pkg}",
                f"kwire: nginx and its shared libraries, from nginx {nginx_version}"],
               f"{bb_pkg}, nginx {nginx_version}"),
    ]


def _write(store: ImageStore, ref: str, layers: list[Layer], config: dict, history: list[str],
           packages: str) -> BuiltImage:
    try:
        before = store.resolve(ref).digest
    except ImageNotFound:
        before = None
    labels = {"org.opencontainers.image.description": DESCRIPTION.format(packages=packages),
              BUILTIN_LABEL: "true"}
    image = store.write_image(ref, layers, config, history=history, labels=labels)
    return BuiltImage(image, created=image.digest != before)


def is_builtin(image: Image) -> bool:
    """Made here from Debian packages: no registry has this image, so pulling its
    name would fetch a different one (or fail, offline)."""
    labels = (image.config.get("config") or {}).get("Labels") or {}
    return labels.get(BUILTIN_LABEL) == "true"


def ensure_builtin_images(store: ImageStore) -> None:
    """Build the built-in images unless the store has them (one builder at a time)."""
    def present() -> bool:
        try:
            return all(is_builtin(store.resolve(ref)) for ref in (BUSYBOX_REF, NGINX_REF))
        except ImageNotFound:
            return False

    if present():
        return
    store.root.mkdir(parents=True, exist_ok=True)
    with open(store.root / "builtin.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not present():
            build_builtin_images(store)


# ---------------------------------------------------------------- the trees


def _busybox_tree(tree: _Tree, busybox: Path) -> None:
    for d in ("dev", "etc", "home", "proc", "sys", "usr/sbin", "var/spool/mail", "var/www"):
        tree.dir(d)
    tree.dir("root", 0o700)
    tree.dir("tmp", 0o1777)
    tree.copy("bin/busybox", busybox, 0o755)
    applets = subprocess.run([str(busybox), "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            tree.symlink(f"bin/{applet}", "busybox")
    tree.file("etc/passwd", PASSWD)
    tree.file("etc/group", GROUP)
    tree.file("etc/nsswitch.conf", NSSWITCH)


def _nginx_tree(tree: _Tree, nginx: Path) -> None:
    tree.copy("usr/sbin/nginx", nginx, 0o755)
    for lib in _shared_libraries(nginx):
        tree.copy(lib.lstrip("/"), Path(lib))
    tree.file("etc/passwd", PASSWD + f"nginx:x:{NGINX_UID}:{NGINX_UID}:nginx:"
                                     "/var/cache/nginx:/bin/nologin\n")
    tree.file("etc/group", GROUP + f"nginx:x:{NGINX_UID}:nginx\n")
    tree.file("etc/nginx/nginx.conf", NGINX_CONF)
    tree.file("etc/nginx/conf.d/default.conf", DEFAULT_CONF)
    for name in ("mime.types", "fastcgi_params", "scgi_params", "uwsgi_params"):
        tree.copy(f"etc/nginx/{name}", Path("/etc/nginx") / name, 0o644)
    tree.file("usr/share/nginx/html/index.html", INDEX_HTML)
    tree.file("usr/share/nginx/html/50x.html", ERROR_HTML)
    tree.symlink("var/log/nginx/access.log", "/dev/stdout")
    tree.symlink("var/log/nginx/error.log", "/dev/stderr")
    for d in ("var/cache/nginx", "var/lib/nginx", "run"):
        tree.dir(d)
    tree.symlink("var/run", "/run")
    tree.file("docker-entrypoint.sh", ENTRYPOINT, 0o755)
    default_conf_sum = hashlib.sha256(DEFAULT_CONF.encode()).hexdigest()
    tree.file("docker-entrypoint.d/10-listen-on-ipv6-by-default.sh",
              IPV6_HOOK.replace("@DEFAULT_CONF_SHA256@", default_conf_sum), 0o755)


def _shared_libraries(binary: Path) -> list[str]:
    """The libraries ``binary`` loads and its dynamic loader, as paths on this host
    (so the same paths inside the image), from ldd."""
    out = subprocess.run(["ldd", str(binary)], check=True, capture_output=True, text=True).stdout
    paths = []
    for line in out.splitlines():
        line = line.strip()
        if "=> not found" in line:
            raise ImageError(f"{binary} needs {line.split()[0]}, which is not installed")
        if "=>" in line:
            line = line.split("=>", 1)[1].strip()
        if line.startswith("/"):
            paths.append(line.split(" (", 1)[0])
    return paths


class _Tree:
    """A directory being filled for one layer, with explicit modes everywhere so
    that the host's umask and file modes never reach the layer digest."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(mode=0o755)

    def dir(self, rel: str, mode: int = 0o755) -> Path:
        path = self.root
        for part in rel.split("/"):
            path = path / part
            if not path.is_dir():
                path.mkdir()
                os.chmod(path, 0o755)
        os.chmod(path, mode)
        return path

    def _parent(self, rel: str) -> Path:
        parent, _, name = rel.rpartition("/")
        return (self.dir(parent) if parent else self.root) / name

    def file(self, rel: str, text: str, mode: int = 0o644) -> None:
        path = self._parent(rel)
        path.write_text(text)
        os.chmod(path, mode)

    def copy(self, rel: str, src: Path, mode: int | None = None) -> None:
        """Copy the file ``src`` resolves to (a library's soname link becomes the
        file), with ``mode`` or else the source's permission bits less group/other write."""
        path = self._parent(rel)
        try:
            real = src.resolve(strict=True)
        except FileNotFoundError:
            raise ImageError(f"{src} is missing: reinstall the Debian package that has it "
                             f"(dpkg -S {src})") from None
        shutil.copyfile(real, path)
        os.chmod(path, stat.S_IMODE(real.stat().st_mode) & 0o755 if mode is None else mode)

    def symlink(self, rel: str, target: str) -> None:
        os.symlink(target, self._parent(rel))


# ---------------------------------------------------------------- Debian


def _dpkg_version(package: str) -> str | None:
    """The installed version of a Debian package, None when it is not installed."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", package],
                             capture_output=True, text=True)
    except FileNotFoundError:
        return None
    status, _, version = out.stdout.partition(" ")
    return version if out.returncode == 0 and status == "installed" else None


def _dpkg_file(package: str, suffix: str) -> Path:
    """The file of ``package`` whose path ends with ``suffix`` (``/bin/busybox``)."""
    out = subprocess.run(["dpkg", "-L", package], check=True, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.endswith(suffix) and os.path.isfile(line):
            return Path(line)
    raise ImageError(f"Debian package {package} has no file ending in {suffix}")


def _upstream_version(debian_version: str) -> str:
    """1.22.1 from 1.22.1-9+deb12u11 (and from an epoch-prefixed 1:1.22.1-9)."""
    return debian_version.split(":", 1)[-1].rsplit("-", 1)[0]


# ---------------------------------------------------------------- file contents

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""

GROUP = """\
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
mail:x:8:
kmem:x:9:
wheel:x:10:root
www-data:x:33:
operator:x:37:
staff:x:50:
users:x:100:
nogroup:x:65534:
"""

NSSWITCH = """\
# Name service lookups go to the files in /etc, and host names to DNS after that:
# Kubernetes writes /etc/hosts and /etc/resolv.conf into every container.
passwd:    files
group:     files
shadow:    files
hosts:     files dns
networks:  files
protocols: files
services:  files
"""

NGINX_CONF = """\
user  nginx;
worker_processes  auto;

error_log  /var/log/nginx/error.log notice;
pid        /run/nginx.pid;


events {
    worker_connections  1024;
}


http {
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;

    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';

    access_log  /var/log/nginx/access.log  main;

    sendfile        on;

    keepalive_timeout  65;

    include /etc/nginx/conf.d/*.conf;
}
"""

DEFAULT_CONF = """\
server {
    listen       80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }

    # server errors get the static page /50x.html
    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
"""

INDEX_HTML = """\
<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>nginx is up and serves this default page from /usr/share/nginx/html.
Put your own files there, or mount a volume over that directory, to serve
something else.</p>

<p>This nginx:alpine image was built offline by kwire from Debian's nginx package.
The documentation is at <a href="http://nginx.org/">nginx.org</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""

ERROR_HTML = """\
<!DOCTYPE html>
<html>
<head>
<title>Error</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>An error occurred.</h1>
<p>The page you asked for cannot be served right now. Please try again later.</p>
<p>If you run this server, its error log (nginx's standard error) says why.</p>
</body>
</html>
"""

ENTRYPOINT = """\
#!/bin/sh
# kwire's nginx:alpine entrypoint: before nginx starts, run the hooks in
# /docker-entrypoint.d/ (*.sh executed, *.envsh sourced, in name order) and say so
# on stdout, as the upstream image's entrypoint does; then run the command.
set -e

log() {
    if [ -z "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then
        echo "$0: $*"
    fi
}

if [ "$1" = "nginx" ] || [ "$1" = "nginx-debug" ]; then
    if [ -n "$(ls -A /docker-entrypoint.d/ 2>/dev/null)" ]; then
        log "/docker-entrypoint.d/ is not empty, will attempt to perform configuration"
        log "Looking for shell scripts in /docker-entrypoint.d/"
        for f in /docker-entrypoint.d/*; do
            case "$f" in
                *.envsh)
                    if [ -x "$f" ]; then log "Sourcing $f"; . "$f"
                    else log "Ignoring $f, not executable"; fi ;;
                *.sh)
                    if [ -x "$f" ]; then log "Launching $f"; "$f"
                    else log "Ignoring $f, not executable"; fi ;;
                *) log "Ignoring $f" ;;
            esac
        done
        log "Configuration complete; ready for start up"
    else
        log "No files found in /docker-entrypoint.d/, skipping configuration"
    fi
fi

exec "$@"
"""

IPV6_HOOK = """\
#!/bin/sh
# Let the default server listen on IPv6 as well, as the upstream image's hook of
# this name does: only with IPv6 in the kernel, and only while default.conf is
# writable and still the one the image shipped (a user's own config is left alone).
set -e
ME=$(basename "$0")
CONF=/etc/nginx/conf.d/default.conf

if [ ! -f /proc/net/if_inet6 ]; then
    echo "$ME: info: ipv6 not available"
    exit 0
fi
if [ ! -f "$CONF" ]; then
    echo "$ME: info: $CONF is not a file or does not exist"
    exit 0
fi
if [ ! -w "$CONF" ]; then
    echo "$ME: info: can not modify $CONF (read-only file system?)"
    exit 0
fi
echo "$ME: info: Getting the checksum of $CONF"
if [ "$(sha256sum "$CONF" | cut -d' ' -f1)" != "@DEFAULT_CONF_SHA256@" ]; then
    echo "$ME: info: $CONF differs from the packaged version"
    exit 0
fi
sed -i -E 's,^( *)listen( +)80;,&\\n\\1listen\\2[::]:80;,' "$CONF"
echo "$ME: info: Enabled listen on IPv6 in $CONF"
"""
