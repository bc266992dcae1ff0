"""The built-in busybox and nginx:alpine images, built from the installed Debian
packages into a temporary store, run for real: chroot into the unpacked images
and into an overlay mount of their layer dirs, inside private mount (and network)
namespaces that vanish with the test's processes."""
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from kwire.node.images import (BUSYBOX_REF, NGINX_REF, ImageStore, MissingPackages,
                               build_builtin_images)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chroot, mounts, namespaces"),
]


@pytest.fixture(scope="module")
def work():
    path = Path(tempfile.mkdtemp(prefix="kwire-images-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture(scope="module")
def store(work):
    store = ImageStore(work / "store")
    try:
        built = build_builtin_images(store)
    except MissingPackages as e:
        pytest.skip(str(e))
    assert [b.created for b in built] == [True, True]
    return store


@pytest.fixture(scope="module")
def roots(store, work):
    """Both images unpacked the plain way, as (busybox root, nginx root)."""
    bb, web = work / "busybox-root", work / "nginx-root"
    store.unpack("busybox", bb)
    store.unpack("nginx:alpine", web)
    return bb, web


def isolated(script: str, net: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a shell script in new mount (and network) namespaces: its mounts, its
    loopback and its processes go when it ends; on timeout its group is killed."""
    args = ["unshare", "--mount", "--propagation", "private", *(["--net"] if net else []),
            "sh", "-euc", script]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_rebuild_changes_nothing_and_layers_are_shared(store):
    before = {i.repository + ":" + i.tag: i.digest for i in store.list()}
    again = build_builtin_images(store)
    assert [b.created for b in again] == [False, False]
    assert {str(b.image.reference): b.image.digest for b in again} == before
    busybox, nginx = store.resolve(BUSYBOX_REF), store.resolve(NGINX_REF)
    assert nginx.layers[0] == busybox.layers[0]
    assert store.layer_dirs("nginx:alpine")[0] == store.layer_dirs("busybox")[0]


def test_image_configs_match_upstream(store):
    busybox, nginx = store.resolve("busybox"), store.resolve("nginx:alpine")
    assert busybox.entrypoint == [] and busybox.cmd == ["sh"]
    assert nginx.entrypoint == ["/docker-entrypoint.sh"]
    assert nginx.cmd == ["nginx", "-g", "daemon off;"]
    assert nginx.exposed_ports == ["80/tcp"]
    assert nginx.stop_signal == "SIGQUIT"
    assert any(e.startswith("PATH=") and "/usr/sbin" in e for e in nginx.env)


def test_busybox_shell_and_applets(roots):
    bb, _ = roots
    for applet in ("sh", "wget", "echo", "sleep", "mkdir", "cat", "ls", "nslookup"):
        assert os.readlink(bb / "bin" / applet) == "busybox"
    run = subprocess.run(["chroot", str(bb), "/bin/sh", "-c", "echo ok; wget --help"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ok\n")
    assert "Usage: wget" in run.stdout + run.stderr


def test_nginx_accepts_its_config(roots):
    _, web = roots
    run = isolated(f"mount --rbind /dev {web}/dev; mount -t proc proc {web}/proc; "
                   f"chroot {web} /usr/sbin/nginx -t")
    assert run.returncode == 0, run.stderr
    assert "test is successful" in run.stderr
    assert (web / "var/log/nginx/access.log").readlink() == Path("/dev/stdout")
    assert "nginx:x:101:101:" in (web / "etc/passwd").read_text()


def test_nginx_on_an_overlay_of_layer_dirs(store, work):
    lower = ":".join(str(d) for d in reversed(store.layer_dirs("nginx:alpine")))
    top = work / "overlay"
    for d in ("upper", "work", "merged"):
        (top / d).mkdir(parents=True)
    m = top / "merged"
    run = isolated(f"mount -t overlay overlay -o lowerdir={lower},upperdir={top}/upper,"
                   f"workdir={top}/work {m}; mount --rbind /dev {m}/dev; "
                   f"mount -t proc proc {m}/proc; chroot {m} /usr/sbin/nginx -t; "
                   f"chroot {m} /bin/sh -c 'echo written > /tmp/x'")
    assert run.returncode == 0, run.stderr
    assert "test is successful" in run.stderr
    assert (top / "upper" / "tmp" / "x").read_text() == "written\n"  # writes go up
    assert not any(d.joinpath("tmp", "x").exists() for d in store.layer_dirs("nginx:alpine"))


def test_overlay_honours_layer_whiteouts(work):
    """The kernel reads the whiteouts layer_dirs writes: removed files and opaque
    directories of lower layers are gone from the merged view."""
    tmp_path = work / "whiteouts"
    store = ImageStore(tmp_path / "store")
    base = tmp_path / "base"
    for rel in ("etc/keep", "etc/gone", "data/old/file", "data/other"):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(rel)
    layers = [store.add_layer(base)]
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / ".wh.gone").write_text("")
    (upper / "data").mkdir()
    (upper / "data" / ".wh..wh..opq").write_text("")
    (upper / "data" / "new").write_text("new")
    layers.append(store.add_layer(upper))
    store.write_image("whiteouts", layers, {})
    lower = ":".join(str(d) for d in reversed(store.layer_dirs("whiteouts")))
    m = tmp_path / "merged"
    m.mkdir()
    run = isolated(f"mount -t overlay overlay -o lowerdir={lower} {m}; "
                   f"cd {m}; find . | sort")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [".", "./data", "./data/new", "./etc", "./etc/keep"]
    store.unpack("whiteouts", tmp_path / "plain")  # the plain unpack agrees
    found = sorted(str(p.relative_to(tmp_path / "plain")) for p in (tmp_path / "plain").rglob("*"))
    assert found == ["data", "data/new", "etc", "etc/keep"]


def test_nginx_serves_its_page_to_busybox_wget(roots, work):
    """As in the seed pod: nginx started through its entrypoint and busybox's wget in
    one network namespace (a new one, with only loopback in it)."""
    bb, web = roots
    log = work / "nginx.log"
    script = f"""
        mount --rbind /dev {web}/dev
        mount -t proc proc {web}/proc
        chroot {bb} /bin/ip link set lo up
        chroot {web} /docker-entrypoint.sh nginx -g 'daemon off;' >{log} 2>&1 &
        nginx=$!
        trap 'kill -QUIT $nginx 2>/dev/null || true; wait $nginx || true' EXIT
        for i in $(seq 100); do
            chroot {bb} wget -q -O /dev/null http://127.0.0.1/ 2>/dev/null && break
            sleep 0.1
        done
        chroot {bb} wget -qO- http://127.0.0.1/
        chroot {bb} wget -qO- 'http://[::1]/' | grep -c '<h1>Welcome to nginx!</h1>'
    """
    run = isolated(script, net=True)
    assert run.returncode == 0, run.stderr + log.read_text()
    assert "<title>Welcome to nginx!</title>" in run.stdout
    assert run.stdout.rstrip().endswith("1")  # the IPv6 hook made it listen on [::1]
    text = log.read_text()
    for line in ("/docker-entrypoint.sh: Launching /docker-entrypoint.d/"
                 "10-listen-on-ipv6-by-default.sh",
                 "10-listen-on-ipv6-by-default.sh: info: Enabled listen on IPv6",
                 "/docker-entrypoint.sh: Configuration complete; ready for start up",
                 "[notice]", "start worker processes",
                 '"GET / HTTP/1.1" 200', "SIGQUIT"):
        assert line in text, text
    assert "::1 - - [" in text  # the access log reaches stdout


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo (apt-get install skopeo)")
def test_skopeo_reads_the_store_and_its_archives_import_back(store, work):
    """The store is a real OCI layout: skopeo copies images out of it as `docker save`
    and OCI archives, and importing those gives the same images again."""
    out = work / "skopeo"
    out.mkdir()
    fresh = ImageStore(out / "store")
    for ref, dest in ((NGINX_REF, f"docker-archive:{out}/save.tar:nginx:alpine"),
                      (BUSYBOX_REF, f"oci-archive:{out}/oci.tar:{BUSYBOX_REF}")):
        run = subprocess.run(["skopeo", "copy", "-q", f"oci:{store.root}:{ref}", dest],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
    [nginx] = fresh.import_archive(out / "save.tar")
    [busybox] = fresh.import_archive(out / "oci.tar")
    assert nginx.id == store.resolve(NGINX_REF).id  # docker archives keep the config
    assert busybox.digest == store.resolve(BUSYBOX_REF).digest  # OCI keeps the manifest too
    fresh.unpack(NGINX_REF, out / "root")
    assert (out / "root/usr/share/nginx/html/index.html").read_text() == \
        (store.layer_dirs(NGINX_REF)[1] / "usr/share/nginx/html/index.html").read_text()
