"""A cluster started with `kwire up` for the e2e tests, driven by the real kubectl
and the official `kubernetes` client. Its state and kubeconfig live in a
temporary directory, so the user's ~/.kube/config is never touched."""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")
ROOT = Path(__file__).resolve().parents[2]


def kwire_bin() -> str:
    venv = ROOT / ".venv" / "bin" / "kwire"
    return str(venv) if venv.exists() else (shutil.which("kwire") or "kwire")


class Cluster:
    def __init__(self, name: str, tmp: Path, extra_args: tuple[str, ...] = ()):
        self.name = name
        self.tmp = tmp
        self.env = dict(os.environ, KWIRE_STATE_ROOT=str(tmp / "state"),
                        KUBECONFIG=str(tmp / "kubeconfig"))
        self.cache = tmp / "kubectl-cache"
        self.extra_args = extra_args

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state" / self.name

    @property
    def config(self) -> dict:
        """The cluster's config.yaml as `kwire up` saved it (its chosen ranges)."""
        return yaml.safe_load((self.state_dir / "config.yaml").read_text())

    @property
    def api_service_ip(self) -> str:
        """The kubernetes Service's ClusterIP: the first address of the service range."""
        return str(ipaddress.ip_network(self.config["service_cidr"]).network_address + 1)

    @property
    def kubeconfig(self) -> str:
        return str(self.tmp / "kubeconfig")

    def kwire(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([kwire_bin(), *args], env=self.env, capture_output=True,
                              text=True, check=check, timeout=timeout)

    def up(self) -> subprocess.CompletedProcess:
        r = self.kwire("up", "--name", self.name, *self.extra_args, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"kwire up failed:\n{r.stdout}\n{r.stderr}")
        return r

    def down(self) -> None:
        self.kwire("down", "--name", self.name, check=False)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        r = subprocess.run([KUBECTL, f"--cache-dir={self.cache}", *args], env=self.env,
                           capture_output=True, text=True, input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}):\n"
                                 f"{r.stdout}\n{r.stderr}")
        return r

    def kubectl_json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def apply(self, manifest: dict | str, *args: str) -> subprocess.CompletedProcess:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        return self.kubectl("apply", "-f", "-", *args, input=text)

    def client(self):
        from kubernetes import client, config

        return client.ApiClient(configuration=self._client_config(config, client))

    def _client_config(self, config, client):
        cfg = client.Configuration()
        config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
        return cfg


def wait_for(check, timeout: float = 30.0, what: str = "condition", interval: float = 0.2):
    """Poll check() until it returns something true, and return that; fail with the
    last value after timeout seconds (every e2e test waits this way)."""
    deadline = time.monotonic() + timeout
    while not (last := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s; last: {last!r}")
        time.sleep(interval)
    return last


@contextmanager
def running_cluster(prefix: str, tmp: Path, *extra_args: str, nodes: int = 0) -> Iterator[Cluster]:
    """A cluster with a unique name under tmp and `nodes` worker nodes (none by default:
    a control plane alone starts fastest), taken down however the block ends."""
    c = Cluster(f"{prefix}-{uuid.uuid4().hex[:6]}", tmp, ("--nodes", str(nodes), *extra_args))
    try:
        c.up()
        yield c
    finally:
        c.down()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    with running_cluster("e2e", tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture
def ns(cluster: Cluster):
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
