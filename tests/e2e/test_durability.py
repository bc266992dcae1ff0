"""SIGKILL the API server in the middle of a stream of writes: every write it
acknowledged is still there when it comes back."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from kubernetes import client

from conftest import running_cluster

WRITER = r"""
import sys
from kubernetes import client, config
cfg = client.Configuration()
config.load_kube_config(config_file=sys.argv[1], client_configuration=cfg)
cfg.retries = False
v1 = client.CoreV1Api(client.ApiClient(cfg))
i = 0
while True:
    name = f"ack-{i}"
    try:
        v1.create_namespaced_config_map("default", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name), data={"i": str(i)}), _request_timeout=5)
    except Exception:
        break
    print(name, flush=True)
    i += 1
"""


def test_sigkill_loses_no_acknowledged_write(tmp_path):
    with running_cluster("e2e-k", tmp_path) as c:
        writer = subprocess.Popen([sys.executable, "-c", WRITER, c.kubeconfig],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            acked = []
            while len(acked) < 300:
                line = writer.stdout.readline()
                assert line, "writer stopped early"
                acked.append(line.strip())
            pid = int((c.state_dir / "server.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
            for line in writer.stdout:
                acked.append(line.strip())
            writer.wait(timeout=30)
        finally:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
        c.up()
        v1 = client.CoreV1Api(c.client())
        names = {i.metadata.name for i in v1.list_namespaced_config_map("default").items}
        missing = [n for n in acked if n not in names]
        assert not missing, f"{len(missing)} acknowledged writes lost: {missing[:5]}"
        assert len(acked) >= 300
