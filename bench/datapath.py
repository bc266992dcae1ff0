"""Data-path throughput: TCP with iperf3 between pod network namespaces of a cluster
started with `kwire up` (2 worker nodes), pod to pod on one node and across nodes over
VXLAN (and, on a second cluster started with `--backend host-gw`, across nodes over plain
routes), each as a ratio to a raw veth pair between two bare namespaces this bench makes
itself, measured in the same run.

The paths are measured in turn, round after round, so a busy machine weighs on all of
them alike; each figure is the median of the rounds. iperf3 is the host's binary run in
the pods' namespaces with `ip netns exec` (the pods are busybox `sleep`s).
Targets: same node >= 0.9, across nodes over VXLAN >= 0.75.

    .venv/bin/python bench/datapath.py [--runs 3] [--seconds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KWIRE = str(ROOT / ".venv" / "bin" / "kwire")
PORT = 5201
RAW_ADDRESSES = ("169.254.77.1", "169.254.77.2")
"""The bare veth pair's ends (/30): link-local, seen only inside the two namespaces."""
TARGETS = {"same node": 0.9, "across nodes (vxlan)": 0.75}


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=True, **kw)


def start_pods(env: dict, nodes: list[str]) -> dict[str, dict]:
    """Busybox pods a and b on the first node, c on the second, once Running."""
    places = {"a": nodes[0], "b": nodes[0], "c": nodes[1]}
    manifests = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                  "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                           "containers": [{"name": "c", "image": "busybox",
                                           "command": ["sleep", "3600"]}]}}
                 for name, node in places.items()]
    run(KWIRE, "apply", "-f", "-", input=yaml.safe_dump_all(manifests), env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pods = {p["metadata"]["name"]: p for p in
                json.loads(run(KWIRE, "get", "pods", "-o", "json", env=env).stdout)["items"]}
        if all((pods.get(n) or {}).get("status", {}).get("phase") == "Running"
               and pods[n]["status"].get("podIP") for n in places):
            return pods
        time.sleep(0.3)
    raise SystemExit("the bench pods did not start within 60 s")


def pod_netns(pod: dict) -> str:
    """`kwire-<sandbox id>`: the sandbox id leads the container ID
    (runc://<id>-<attempt>-<name>)."""
    cid = pod["status"]["containerStatuses"][0]["containerID"]
    return "kwire-" + cid.removeprefix("runc://").split("-")[0]


def make_raw_pair(pair: tuple[str, str]) -> None:
    """Two bare namespaces joined by a veth pair, addressed RAW_ADDRESSES."""
    for ns in pair:
        run("ip", "netns", "add", ns)
    run("ip", "link", "add", "veth0", "netns", pair[0], "type", "veth",
        "peer", "name", "veth0", "netns", pair[1])
    for ns, address in zip(pair, RAW_ADDRESSES):
        run("ip", "-n", ns, "addr", "add", f"{address}/30", "dev", "veth0")
        run("ip", "-n", ns, "link", "set", "veth0", "up")


def listening(netns: str) -> bool:
    return bool(run("ip", "netns", "exec", netns, "ss", "-Htln", f"sport = :{PORT}").stdout.strip())


def iperf(server_ns: str, server_ip: str, client_ns: str, seconds: int) -> float:
    """TCP throughput in Gbit/s from client_ns to an iperf3 server in server_ns."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1",
                               "-B", server_ip, "-p", str(PORT)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not listening(server_ns):
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"iperf3 server in {server_ns} did not listen")
            time.sleep(0.05)
        out = run("ip", "netns", "exec", client_ns, "iperf3", "-c", server_ip, "-p", str(PORT),
                  "-t", str(seconds), "-J", timeout=seconds + 20).stdout
        server.wait(timeout=5)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


def measure(paths: dict[str, tuple[str, str, str]], runs: int, seconds: int) -> dict[str, float]:
    """The median Gbit/s of each path (server netns, server IP, client netns)."""
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(runs):
        for name, (server_ns, server_ip, client_ns) in paths.items():
            samples[name].append(iperf(server_ns, server_ip, client_ns, seconds))
    for name, values in samples.items():
        print(f"  {name:22} runs: {' '.join(f'{v:.2f}' for v in values)} Gbit/s")
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the bench makes namespaces and clusters")
    tag = uuid.uuid4().hex[:6]
    clusters = {"vxlan": f"dp-{tag}", "host-gw": f"dphg-{tag}"}
    raw = (f"kwbench-{tag}-a", f"kwbench-{tag}-b")
    with tempfile.TemporaryDirectory(prefix="kwire-bench-") as tmp:
        envs = {backend: dict(os.environ, KWIRE_STATE_ROOT=str(Path(tmp) / "state"),
                              KUBECONFIG=str(Path(tmp) / f"kube-{backend}"))
                for backend in clusters}
        try:
            paths = {}
            for backend, name in clusters.items():
                env = envs[backend]
                run(KWIRE, "up", "--name", name, "--nodes", "2", "--backend", backend, env=env,
                    timeout=120)
                nodes = sorted(n["metadata"]["name"] for n in json.loads(
                    run(KWIRE, "get", "nodes", "-o", "json", env=env).stdout)["items"])
                pods = start_pods(env, nodes)
                ip = {n: p["status"]["podIP"] for n, p in pods.items()}
                ns = {n: pod_netns(p) for n, p in pods.items()}
                if backend == "vxlan":
                    paths["same node"] = (ns["b"], ip["b"], ns["a"])
                paths[f"across nodes ({backend})"] = (ns["c"], ip["c"], ns["a"])
            make_raw_pair(raw)
            print(f"iperf3 TCP, {args.runs} runs of {args.seconds} s each, medians:")
            result = measure({"raw veth pair": (raw[1], RAW_ADDRESSES[1], raw[0]), **paths},
                             args.runs, args.seconds)
        finally:
            for netns in raw:
                subprocess.run(["ip", "netns", "delete", netns], capture_output=True, check=False)
            for backend, name in clusters.items():
                subprocess.run([KWIRE, "down", "--name", name], env=envs[backend],
                               capture_output=True, check=False)
    base = result["raw veth pair"]
    print(f"raw veth pair: {base:.2f} Gbit/s")
    for path in (p for p in result if p != "raw veth pair"):
        ratio = result[path] / base
        target = TARGETS.get(path)
        verdict = "" if target is None else (
            f" (target >= {target}): " + ("ok" if ratio >= target else "BELOW TARGET"))
        print(f"{path}: {result[path]:.2f} Gbit/s, {ratio:.2f} of raw veth{verdict}")


if __name__ == "__main__":
    main()
