"""Pod start-up latency and cluster start-up time, against a cluster started with
`kwire up` (2 worker nodes).

Prints: seconds from `kwire up` to every Node Ready, and the pod start-up latency
(creation request sent to the watch event showing every container running, images
already present) p50/p99 over --pods pods, created one after another.
Targets (2 cores): `kwire up` with 2 nodes < 3 s; pod start-up p50 < 300 ms, p99 < 1 s.

    .venv/bin/python bench/pod_startup.py [--pods 30]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kwire.client import Client  # noqa: E402

KWIRE = str(ROOT / ".venv" / "bin" / "kwire")


async def wait_nodes_ready(client: Client, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes, _ = await client.list("v1", "nodes")
        ready = [n for n in nodes if any(c["type"] == "Ready" and c["status"] == "True"
                                         for c in n.get("status", {}).get("conditions", []))]
        if len(ready) >= count:
            return
        await asyncio.sleep(0.05)
    raise SystemExit("nodes did not become Ready")


def all_running(pod: dict) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    want = len(pod["spec"]["containers"])
    return len(statuses) == want and all("running" in (s.get("state") or {}) for s in statuses)


async def measure_pods(client: Client, count: int) -> list[float]:
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    await client.create("v1", "namespaces", {"metadata": {"name": ns}})
    while True:  # the ServiceAccount controller must have made `default` first
        try:
            await client.get("v1", "serviceaccounts", "default", ns)
            break
        except Exception:  # noqa: BLE001
            await asyncio.sleep(0.05)
    latencies: list[float] = []
    try:
        for i in range(count):
            name = f"p{i}"
            body = {"metadata": {"name": name},
                    "spec": {"terminationGracePeriodSeconds": 0,
                             "containers": [{"name": "c", "image": "busybox",
                                             "imagePullPolicy": "IfNotPresent",
                                             "command": ["sleep", "3600"]}]}}
            sent = time.perf_counter()
            created = await client.create("v1", "pods", body, ns)
            async for _etype, pod in client.watch(
                    "v1", "pods", ns, resource_version=created["metadata"]["resourceVersion"],
                    field_selector=f"metadata.name={name}", timeout_seconds=60):
                if all_running(pod):
                    latencies.append(time.perf_counter() - sent)
                    break
            else:
                raise SystemExit(f"pod {name} did not start")
    finally:
        await client.delete("v1", "namespaces", ns)
    return latencies


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def main_async(args, env: dict, name: str, state: Path) -> None:
    client = Client.from_kubeconfig(env["KUBECONFIG"])
    try:
        await wait_nodes_ready(client, 2)
        lat = await measure_pods(client, args.pods)
    finally:
        await client.close()
    ms = [x * 1000 for x in lat]
    print(f"pod start-up over {len(ms)} pods: p50 {pct(ms, 50):.0f} ms, p99 {pct(ms, 99):.0f} ms, "
          f"mean {statistics.mean(ms):.0f} ms, max {max(ms):.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kwire-bench-") as tmp:
        name = f"bench-{uuid.uuid4().hex[:6]}"
        env = dict(os.environ, KWIRE_STATE_ROOT=str(Path(tmp) / "state"),
                   KUBECONFIG=str(Path(tmp) / "kube"))
        try:
            t0 = time.perf_counter()
            subprocess.run([KWIRE, "up", "--name", name, "--nodes", "2"], env=env, check=True,
                           capture_output=True)
            up = time.perf_counter() - t0
            client_env = env

            async def ready_time() -> float:
                client = Client.from_kubeconfig(env["KUBECONFIG"])
                try:
                    await wait_nodes_ready(client, 2)
                finally:
                    await client.close()
                return time.perf_counter() - t0

            total = asyncio.run(ready_time())
            print(f"kwire up with 2 nodes: command returned in {up:.2f} s, all nodes Ready at {total:.2f} s")
            asyncio.run(main_async(args, client_env, name, Path(tmp)))
        finally:
            subprocess.run([KWIRE, "down", "--name", name], env=env, capture_output=True)


if __name__ == "__main__":
    main()
