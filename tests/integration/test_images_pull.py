"""Pulls from a real registry: Debian's docker-registry (distribution) on 127.0.0.1,
filled by skopeo from a store holding the built-in images, then pulled with kwire's
puller into fresh stores: by tag, by digest, from an index, through mirrors, and
with `kwire images pull`. The registry's access log shows which blobs were fetched."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from kwire.cli.main import main
from kwire.node.images import (BUSYBOX_REF, NGINX_REF, ImageStore, MissingPackages,
                               build_builtin_images)
from kwire.node.images.registry import PullNotFound, parse_registries, pull_sync
from kwire.node.images.store import OCI_INDEX, host_platform
from kwire.node.paths import IMAGE_ROOT_ENV

OS, ARCH = host_platform()
OTHER_ARCH = "s390x" if ARCH != "s390x" else "riscv64"
REGISTRY = "/usr/bin/docker-registry"
APT_HINT = "apt-get install docker-registry skopeo"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: layers keep their owners"),
]

REGISTRY_CONFIG = """\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {data}
http:
  addr: 127.0.0.1:{port}
"""


@dataclass
class Registry:
    host: str
    log: Path
    source: ImageStore
    """The store skopeo pushed from, holding the built-in images."""

    def blob_gets(self) -> list[str]:
        """Digests of blobs fetched so far, from the access log."""
        return re.findall(r'"GET /v2/\S+/blobs/(sha256:[0-9a-f]{64}) HTTP', self.log.read_text())


@pytest.fixture
def tmp_store():
    with tempfile.TemporaryDirectory(prefix="kwire-pull-") as d:
        yield ImageStore(Path(d) / "store")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"docker-registry exited ({proc.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    pytest.fail(f"docker-registry did not answer at {url}:\n{log.read_text()}")


def skopeo_push(source: ImageStore, ref: str, dest: str) -> None:
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                    f"oci:{source.root}:{ref}", f"docker://{dest}"],
                   check=True, capture_output=True, timeout=120)


def put_manifest(host: str, repo: str, tag: str, media_type: str, body: bytes) -> None:
    request = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}", data=body,
                                     method="PUT", headers={"Content-Type": media_type})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 201


@pytest.fixture(scope="module")
def registry():
    for tool in (REGISTRY, shutil.which("skopeo")):
        if not tool or not os.path.exists(tool):
            pytest.skip(f"needs docker-registry and skopeo: {APT_HINT}")
    work = Path(tempfile.mkdtemp(prefix="kwire-registry-"))
    proc = None
    try:
        source = ImageStore(work / "source")
        try:
            build_builtin_images(source)
        except MissingPackages as e:
            pytest.skip(str(e))
        port = free_port()
        config = work / "config.yml"
        config.write_text(REGISTRY_CONFIG.format(data=work / "data", port=port))
        log = work / "registry.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        host = f"127.0.0.1:{port}"
        wait_ready(proc, f"http://{host}/v2/", log)
        skopeo_push(source, BUSYBOX_REF, f"{host}/test/busybox:1")
        skopeo_push(source, NGINX_REF, f"{host}/test/nginx:1")
        # A two-platform index: busybox for this machine, nginx posing as another.
        skopeo_push(source, BUSYBOX_REF, f"{host}/test/multi:busybox")
        skopeo_push(source, NGINX_REF, f"{host}/test/multi:nginx")
        put_manifest(host, "test/multi", "1", OCI_INDEX, json.dumps({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                platform_entry(source, NGINX_REF, OTHER_ARCH),
                platform_entry(source, BUSYBOX_REF, ARCH)]}).encode())
        yield Registry(host, log, source)
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(work)


def platform_entry(source: ImageStore, ref: str, arch: str) -> dict:
    image = source.resolve(ref)
    size = source.blob_path(image.digest).stat().st_size
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image.digest,
            "size": size, "platform": {"os": OS, "architecture": arch}}


def test_pull_by_tag_then_again(registry, tmp_store):
    want = registry.source.resolve(BUSYBOX_REF)
    before = len(registry.blob_gets())
    image = pull_sync(tmp_store, f"{registry.host}/test/busybox:1")
    assert (image.digest, image.id) == (want.digest, want.id)
    assert [la.descriptor for la in image.layers] == [la.descriptor for la in want.layers]
    assert image.cmd == ["sh"]
    fetched = registry.blob_gets()[before:]
    assert sorted(fetched) == sorted([want.id] + [la.descriptor.digest for la in want.layers])

    dirs = tmp_store.layer_dirs(f"{registry.host}/test/busybox:1")
    assert (dirs[0] / "bin" / "busybox").is_file()
    assert (dirs[0] / "bin" / "wget").is_symlink()

    # Everything is there now: the second pull reads manifests, no blob.
    again = pull_sync(tmp_store, f"{registry.host}/test/busybox:1")
    assert again.digest == image.digest
    assert registry.blob_gets()[before:] == fetched


def test_shared_layers_are_fetched_once(registry, tmp_store):
    busybox = pull_sync(tmp_store, f"{registry.host}/test/busybox:1")
    before = len(registry.blob_gets())
    nginx = pull_sync(tmp_store, f"{registry.host}/test/nginx:1")
    shared = busybox.layers[0].descriptor.digest
    assert nginx.layers[0].descriptor.digest == shared
    fetched = registry.blob_gets()[before:]
    assert shared not in fetched
    assert sorted(fetched) == sorted([nginx.id, nginx.layers[1].descriptor.digest])
    assert nginx.entrypoint == ["/docker-entrypoint.sh"]


def test_pull_by_digest(registry, tmp_store):
    digest = registry.source.resolve(BUSYBOX_REF).digest
    image = pull_sync(tmp_store, f"{registry.host}/test/busybox@{digest}")
    assert image.digest == digest
    assert tmp_store.resolve(f"{registry.host}/test/busybox@{digest}").id == image.id


def test_index_gives_this_platform(registry, tmp_store):
    image = pull_sync(tmp_store, f"{registry.host}/test/multi:1")
    assert image.digest == registry.source.resolve(BUSYBOX_REF).digest


def test_missing_tag_is_not_found(registry, tmp_store):
    ref = f"{registry.host}/test/busybox:nope"
    with pytest.raises(PullNotFound) as e:
        pull_sync(tmp_store, ref)
    assert str(e.value) == (f'failed to pull and unpack image "{ref}": failed to resolve '
                            f'reference "{ref}": {ref}: not found')
    with pytest.raises(PullNotFound):
        pull_sync(tmp_store, f"{registry.host}/test/nothing:1")
    assert tmp_store.list() == []


def test_pull_through_mirrors(registry, tmp_store):
    """A made-up registry served by the mirror alone, and Docker Hub names mapped
    onto the mirror's repositories; no default endpoint, so nothing leaves loopback."""
    registries = parse_registries({
        "mirrors": {
            "registry.kwire.invalid": {"endpoint": [f"http://{registry.host}"]},
            "docker.io": {"endpoint": [f"http://{registry.host}"],
                          "rewrite": {"^library/(.*)$": "test/$1"}},
        },
        "disable_default_endpoint": True})
    want = registry.source.resolve(BUSYBOX_REF).digest
    image = pull_sync(tmp_store, "registry.kwire.invalid/test/busybox:1", registries=registries)
    assert image.digest == want
    image = pull_sync(tmp_store, "busybox:1", registries=registries)
    assert str(image.reference) == "docker.io/library/busybox:1"
    assert image.digest == want
    assert tmp_store.resolve("busybox:1").digest == want


def test_cli_pull(registry):
    with tempfile.TemporaryDirectory(prefix="kwire-pull-cli-") as d:
        config = Path(d) / "registries.yaml"
        config.write_text(f"mirrors:\n  registry.kwire.invalid:\n"
                          f"    endpoint: ['http://{registry.host}']\n"
                          f"disable_default_endpoint: true\n")
        env = {IMAGE_ROOT_ENV: str(Path(d) / "images")}
        runner = CliRunner()
        result = runner.invoke(main, ["images", "pull", "registry.kwire.invalid/test/nginx:1",
                                      "--registries", str(config)], env=env)
        assert result.exit_code == 0, result.output
        want = registry.source.resolve(NGINX_REF)
        assert f"Image is up to date for {want.id}" in result.output
        listed = runner.invoke(main, ["images", "ls"], env=env)
        assert re.search(rf"^registry\.kwire\.invalid/test/nginx\s+1\s+{want.id[7:20]}\s+",
                         listed.output, re.MULTILINE), listed.output

        missing = runner.invoke(main, ["images", "pull", f"{registry.host}/test/nginx:2"],
                                env=env)
        assert missing.exit_code == 1
        assert "not found" in missing.output
