"""API server throughput and watch latency, over HTTPS, against a cluster started
with `kwire up`.

Prints: creates/s and gets/s with 16 concurrent clients, and the delay from a
write being sent to its watch event arriving (p50/p99).
Targets (2 cores): >= 1,000 creates/s; watch delivery p99 < 20 ms.

    .venv/bin/python bench/api.py [--objects 5000] [--clients 16]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
KWIRE = str(ROOT / ".venv" / "bin" / "kwire")


def start_cluster(tmp: Path) -> tuple[str, dict, str]:
    name = f"bench-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, KWIRE_STATE_ROOT=str(tmp / "state"), KUBECONFIG=str(tmp / "kube"))
    t0 = time.perf_counter()
    subprocess.run([KWIRE, "up", "--name", name, "--nodes", "0"], env=env, check=True, capture_output=True)
    print(f"kwire up (server only): {time.perf_counter() - t0:.2f} s")
    return name, env, str(tmp / "state" / name)


def client_session(state_dir: str, limit: int) -> tuple[aiohttp.ClientSession, str]:
    cfg = yaml.safe_load(open(os.path.join(state_dir, "kubeconfig")))
    server = cfg["clusters"][0]["cluster"]["server"]
    token = cfg["users"][0]["user"]["token"]
    ctx = ssl.create_default_context(cafile=os.path.join(state_dir, "ca.crt"))
    conn = aiohttp.TCPConnector(ssl=ctx, limit=limit)
    return aiohttp.ClientSession(connector=conn, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"}), server


async def run_pool(n: int, clients: int, fn) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            await fn(queue.get_nowait())

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - t0


async def bench(state_dir: str, objects: int, clients: int) -> None:
    session, server = client_session(state_dir, clients + 1)
    base = f"{server}/api/v1/namespaces/default/configmaps"
    async with session:
        async def create(i: int) -> None:
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": f"cm-{i}", "labels": {"bench": "yes"}},
                    "data": {"i": str(i)}}
            async with session.post(base, data=json.dumps(body)) as r:
                assert r.status == 201, await r.text()
                await r.read()

        async def get(i: int) -> None:
            async with session.get(f"{base}/cm-{i % objects}") as r:
                assert r.status == 200
                await r.read()

        elapsed = await run_pool(objects, clients, create)
        print(f"creates: {objects / elapsed:,.0f}/s ({objects} ConfigMaps, {clients} clients)")
        elapsed = await run_pool(objects, clients, get)
        print(f"gets:    {objects / elapsed:,.0f}/s ({objects} gets, {clients} clients)")
        await watch_latency(session, server)


async def watch_latency(session: aiohttp.ClientSession, server: str, n: int = 500) -> None:
    base = f"{server}/api/v1/namespaces/default/configmaps"
    async with session.get(base) as r:
        rv = (await r.json())["metadata"]["resourceVersion"]
    sent: dict[str, float] = {}
    delays: list[float] = []
    done = asyncio.Event()

    async def watcher() -> None:
        async with session.get(f"{base}?watch=true&resourceVersion={rv}",
                               timeout=aiohttp.ClientTimeout(total=None)) as r:
            async for line in r.content:
                ev = json.loads(line)
                name = ev["object"]["metadata"]["name"]
                if name in sent:
                    delays.append(time.perf_counter() - sent[name])
                    if len(delays) == n:
                        done.set()
                        return

    task = asyncio.create_task(watcher())
    await asyncio.sleep(0.2)
    for i in range(n):
        name = f"lat-{i}"
        sent[name] = time.perf_counter()
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
        async with session.post(base, data=json.dumps(body)) as r:
            await r.read()
        await asyncio.sleep(0.002)
    await asyncio.wait_for(done.wait(), 30)
    task.cancel()
    delays.sort()
    p50 = statistics.median(delays) * 1000
    p99 = delays[int(len(delays) * 0.99) - 1] * 1000
    print(f"watch delivery (write sent -> event received): p50 {p50:.2f} ms, p99 {p99:.2f} ms "
          f"({n} writes)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        name, env, state_dir = start_cluster(Path(tmp))
        try:
            asyncio.run(bench(state_dir, args.objects, args.clients))
        finally:
            subprocess.run([KWIRE, "down", "--name", name], env=env, capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
