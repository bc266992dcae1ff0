"""A pod whose image comes from a registry: Debian's docker-registry listening on the
cluster's underlay host address (the only address the node agents and the host
share), filled with skopeo, and reached through a mirror in the cluster's
registries.yaml, as k3s users configure theirs."""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import running_cluster

REGISTRY = "/usr/bin/docker-registry"
MIRRORED = "registry.kwire.test"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, runc"),
    pytest.mark.skipif(not (os.path.exists(REGISTRY) and shutil.which("skopeo")),
                       reason="needs docker-registry and skopeo: apt-get install docker-registry skopeo"),
]


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from kwire.node.images import BUSYBOX_REF, ImageStore, ensure_builtin_images
    from kwire.node.paths import image_root

    tmp = tmp_path_factory.mktemp("pulls")
    with running_cluster("pulls", tmp, nodes=0) as kw:
        config = yaml.safe_load((kw.state_dir / "config.yaml").read_text())
        host = str(ipaddress.ip_network(config["underlay_cidr"]).network_address + 1)
        port = free_port(host)
        work = Path(tempfile.mkdtemp(prefix="kwire-e2e-registry-"))
        (work / "config.yml").write_text(
            f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {work / 'data'}\n"
            f"http:\n  addr: {host}:{port}\n")
        proc = subprocess.Popen([REGISTRY, "serve", str(work / "config.yml")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    urllib.request.urlopen(f"http://{host}:{port}/v2/", timeout=2).close()
                    break
                except (urllib.error.URLError, OSError):
                    assert time.monotonic() < deadline, "docker-registry did not start"
                    time.sleep(0.1)
            store = ImageStore(image_root())
            ensure_builtin_images(store)
            subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                            f"oci:{store.root}:{BUSYBOX_REF}",
                            f"docker://{host}:{port}/test/busybox:1"],
                           check=True, capture_output=True, timeout=120)
            (kw.state_dir / "registries.yaml").write_text(
                f"mirrors:\n  {MIRRORED}:\n    endpoint: [\"http://{host}:{port}\"]\n"
                "disable_default_endpoint: true\n")
            kw.kwire("up", "--name", kw.name, "--nodes", "1", timeout=60)
            yield kw
        finally:
            proc.kill()
            proc.wait()
            shutil.rmtree(work, ignore_errors=True)
            kw.kwire("images", "rm", f"{MIRRORED}/test/busybox:1", check=False)


def wait_pod(kw, name: str, check, timeout: float = 40) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        pod = json.loads(kw.kubectl("get", "pod", name, "-o", "json").stdout)
        if check(pod):
            return pod
        assert time.monotonic() < deadline, json.dumps(pod.get("status"), indent=1)
        time.sleep(0.3)


def test_pod_image_pulled_through_a_mirror(setup):
    kw = setup
    kw.kwire("images", "rm", f"{MIRRORED}/test/busybox:1", check=False)
    kw.kubectl("run", "pulled", f"--image={MIRRORED}/test/busybox:1", "--restart=Never",
               "--", "sh", "-c", "echo pulled; sleep 3600")
    pod = wait_pod(kw, "pulled", lambda p: p["status"].get("phase") == "Running")
    status = pod["status"]["containerStatuses"][0]
    assert status["image"] == f"{MIRRORED}/test/busybox:1"
    assert status["imageID"].startswith(f"{MIRRORED}/test/busybox@sha256:")
    events = kw.kubectl("get", "events", "--field-selector", "involvedObject.name=pulled").stdout
    assert f'Successfully pulled image "{MIRRORED}/test/busybox:1"' in events
    assert f"{MIRRORED}/test/busybox" in kw.kwire("images", "ls").stdout


def test_missing_tag_is_err_image_pull_with_the_reason(setup):
    kw = setup
    kw.kubectl("run", "missing", f"--image={MIRRORED}/test/busybox:nope", "--restart=Never")
    pod = wait_pod(kw, "missing", lambda p: any(
        (s.get("state", {}).get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff"))
        for s in p["status"].get("containerStatuses") or []))
    assert pod["status"]["phase"] == "Pending"
    described = kw.kubectl("describe", "pod", "missing").stdout
    assert "not found" in described and "Failed to pull image" in described
