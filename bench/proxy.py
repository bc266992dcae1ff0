"""Service proxy figures: rule programming time, rule-live latency, connection set-up
through a ClusterIP, and cluster DNS queries/s, with --services Services present.

1. Programming --services Services with --endpoints endpoints each from scratch (target
   < 2 s): synthetic Services + EndpointSlices -> Tracker.update -> ProxyApplier.replace,
   nft run in a network namespace of the bench's own; then one more Service as a
   partial sync (Tracker.update + ProxyApplier.patch).
2. On a real 1-node cluster (`kwire up`) holding --services selector-less Services with
   hand-made EndpointSlices: from one more Service's POST to its ClusterIP being in the
   node's `service-ips` map (target < 100 ms), with where the time goes.
3. Connection set-up (connect + close) from the node's namespace to a busybox httpd pod,
   through its ClusterIP vs to its pod IP directly (target: ratio within 1.1).
4. Cluster DNS queries/s for a Service name (CoreDNS: ~33,000/s on 2 vCPUs), sent to the
   cluster's DNS on the underlay host address, reusing bench/dns.py's client loop.

Needs root. Cleans up (its namespace, `kwire down`) on error and Ctrl-C too.

    .venv/bin/python bench/proxy.py [--services 10000] [--endpoints 5] [--parts 1,2,3,4]
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import inspect
import ipaddress
import json
import os
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kwire.client import ApiError, Client
from kwire.net.proxy import SERVICE_IPS, TABLE, Tracker
from kwire.net.proxy_apply import ProxyApplier

KWIRE = str(ROOT / ".venv" / "bin" / "kwire")
NODES = ("node-a", "node-b", "node-c")
"""Part 1's endpoints are spread over these; the tracker plays node-a."""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def cpu() -> tuple[float, float]:
    """(this process's CPU seconds, its waited-for children's CPU seconds)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


# --- synthetic objects -----------------------------------------------------------------


def service(i: int, cluster_ip: str | None = None) -> dict:
    spec = {"type": "ClusterIP",
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"svc-{i}", "namespace": "default"}, "spec": spec}


def endpoint_slice(i: int, endpoints: int, pod_net: ipaddress.IPv4Network,
                   nodes: tuple[str, ...], name: str | None = None) -> dict:
    """`endpoints` ready endpoints of svc-<i> (or `name`) on made-up pod IPs from the
    upper half of `pod_net`, spread over `nodes`."""
    name = name or f"svc-{i}"
    base = pod_net.num_addresses // 2
    eps = []
    for j in range(endpoints):
        n = (i * endpoints + j) % (base - 512)
        ip = pod_net.network_address + base + 256 * (n // 250) + n % 250 + 1
        eps.append({"addresses": [str(ip)], "conditions": {"ready": True},
                    "nodeName": nodes[(i + j) % len(nodes)]})
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-bench", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name,
                                    "endpointslice.kubernetes.io/managed-by": "bench"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": eps}


# --- part 1: programming from scratch, in a namespace of our own -----------------------


class NsRunner:
    """subprocess.run for ProxyApplier, inside `ip netns exec NS`; times each call."""

    def __init__(self, ns: str):
        self.ns, self.seconds = ns, 0.0

    def __call__(self, cmd, **kw):
        t0 = time.perf_counter()
        try:
            return subprocess.run(["ip", "netns", "exec", self.ns, *cmd], **kw)  # noqa: PLW1510 (kw has check)
        finally:
            self.seconds += time.perf_counter() - t0


def part1(args) -> None:
    print(f"== 1. program {args.services:,} Services x {args.endpoints} endpoints from scratch "
          f"(target < 2 s)")
    pod_net = ipaddress.ip_network("10.244.0.0/16")
    svc_net = ipaddress.ip_network("10.96.0.0/16")

    def changes(lo: int, hi: int) -> dict:
        return {("default", f"svc-{i}"): (service(i, str(svc_net.network_address + 20 + i)),
                                          [endpoint_slice(i, args.endpoints, pod_net, NODES)])
                for i in range(lo, hi)}

    everything = changes(0, args.services)
    ns = f"kwire-bench-proxy-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        rounds = []
        for _ in range(args.rounds):
            run = NsRunner(ns)
            applier = ProxyApplier(run)
            tracker = Tracker(NODES[0], ["172.31.255.2"], str(pod_net))
            (c0, k0), t0 = cpu(), time.perf_counter()
            tracker.update(everything)
            state = tracker.state()
            t1 = time.perf_counter()
            synced = applier.replace(state)
            (c2, k2), t2 = cpu(), time.perf_counter()
            rounds.append((t2 - t0, t1 - t0, t2 - t1 - run.seconds, run.seconds, c2 - c0,
                           k2 - k0, synced.size))
        wall, build, rend, nft, py_cpu, nft_cpu, size = (statistics.median(x) for x in zip(*rounds))
        got = count_service_ips(["ip", "netns", "exec", ns])
        print(f"  from scratch: {wall:.2f} s wall (median of {args.rounds}): build "
              f"(Tracker.update + state) {build:.2f} s, render {rend:.2f} s, nft -f {nft:.2f} s; "
              f"CPU: python {py_cpu:.2f} s, nft {nft_cpu:.2f} s; {size / 1e6:.1f} MB of rules, "
              f"{got:,} service-ips elements in the kernel")

        # partial syncs: one more Service each, against the full table
        times, nft_times = [], []
        for k in range(args.partials):
            i = args.services + k
            run.seconds = 0.0
            t0 = time.perf_counter()
            before, after = tracker.update(changes(i, i + 1))
            applier.patch(before, after)
            times.append(time.perf_counter() - t0)
            nft_times.append(run.seconds)
        print(f"  one more Service (Tracker.update + patch): p50 {ms(statistics.median(times))}, "
              f"max {ms(max(times))} (nft part p50 {ms(statistics.median(nft_times))}; "
              f"{args.partials} syncs)")
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def count_service_ips(prefix: list[str]) -> int:
    r = subprocess.run([*prefix, "nft", "-j", "list", "map", "ip", TABLE, SERVICE_IPS],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return 0
    for item in json.loads(r.stdout)["nftables"]:
        if "map" in item:
            return len(item["map"].get("elem") or [])
    return 0


# --- the cluster -----------------------------------------------------------------------


class Cluster:
    def __init__(self, tmp: Path):
        self.name = f"bench-proxy-{uuid.uuid4().hex[:6]}"
        self.env = dict(os.environ, KWIRE_STATE_ROOT=str(tmp / "state"),
                        KUBECONFIG=str(tmp / "kube"))
        self.state = tmp / "state" / self.name
        self.started = False

    def up(self) -> None:
        self.started = True
        t0 = time.perf_counter()
        subprocess.run([KWIRE, "up", "--name", self.name, "--nodes", "1"], env=self.env,
                       check=True, capture_output=True)
        print(f"  kwire up --nodes 1: {time.perf_counter() - t0:.1f} s")
        self.config = yaml.safe_load((self.state / "config.yaml").read_text())
        prefix = f"kwire-{self.name}_"
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                             check=False).stdout
        self.netns = next(line.split()[0] for line in out.splitlines() if line.startswith(prefix))
        self.node = self.netns[len(prefix):]

    def down(self) -> None:
        if self.started:
            subprocess.run([KWIRE, "down", "--name", self.name], env=self.env,
                           capture_output=True, check=False)

    def nft(self, *args: str) -> subprocess.CompletedProcess:
        """nft in the node's namespace (nsenter: cheaper than `ip netns exec`, and
        a spawn without preexec_fn, so cheap enough to poll every few ms)."""
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.netns}", "nft", *args],
                              capture_output=True, text=True, check=False)

    def has_service(self, ip: str, port: int = 80) -> bool:
        return self.nft("get", "element", "ip", TABLE, SERVICE_IPS,
                        f"{{ {ip} . tcp . {port} }}").returncode == 0

    def pids(self, what: str) -> list[int]:
        """Processes whose command line holds `what` and this cluster's name."""
        found = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if self.name in cmd and what in cmd:
                    found.append(int(p.name))
        return found


def proc_cpu(pids: list[int]) -> float:
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


async def pool(n: int, workers: int, fn) -> float:
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await fn(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.perf_counter() - t0


async def wait_for(pred, timeout: float, what: str, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


# --- part 2: one more Service among many, end to end -----------------------------------


PROBE = r"""
import errno, select, socket, sys, time
# Connects to ClusterIP:80 from the node until the Service's rule answers: a Service
# with no endpoints is rejected with a TCP reset in the node itself. TTL 1 keeps the
# probes from before that off the wire (the first router drops them).
ip, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
print("ready", flush=True)
while time.monotonic() < deadline:
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
    s.setblocking(False)
    s.connect_ex((ip, 80))
    select.select([], [s], [], 0.002)
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    s.close()
    if err == errno.ECONNREFUSED:
        print(time.monotonic(), flush=True)
        break
"""


async def part2(args, cl: Cluster, client: Client) -> None:
    print(f"== 2. one more Service to its rule live, with {args.services:,} present "
          f"(target < 100 ms)")
    pod_net = ipaddress.ip_network(cl.config["pod_cidr"])
    nodes = (cl.node, "bench-elsewhere-1", "bench-elsewhere-2")
    baseline = await asyncio.to_thread(count_service_ips, ["ip", "netns", "exec", cl.netns])

    async def create(i: int) -> None:
        await client.create("discovery.k8s.io/v1", "endpointslices",
                            endpoint_slice(i, args.endpoints, pod_net, nodes), "default")
        await client.create("v1", "services", service(i), "default")

    server_pids, agent_pids = cl.pids("server"), cl.pids(" agent ")
    s0, a0 = proc_cpu(server_pids), proc_cpu(agent_pids)
    took = await pool(args.services, args.clients, create)
    print(f"  created {args.services:,} Services + EndpointSlices in {took:.1f} s "
          f"({2 * args.services / took:,.0f} objects/s, {args.clients} clients)")
    t0 = time.perf_counter()

    async def all_there() -> bool:
        n = await asyncio.to_thread(count_service_ips, ["ip", "netns", "exec", cl.netns])
        return n >= baseline + args.services

    await wait_for(all_there, 600, "the node's table to hold every Service", 2.0)
    print(f"  node's table holds all {args.services:,} {time.perf_counter() - t0:.1f} s after "
          f"the last create; CPU meanwhile: server {proc_cpu(server_pids) - s0:.1f} s, "
          f"agent {proc_cpu(agent_pids) - a0:.1f} s")
    full = [line for line in (cl.state / "nodes" / cl.node / "agent.log").read_text(
        errors="replace").splitlines() if "full sync" in line]
    if full:
        print(f"  agent log, last full sync: {full[-1].strip()[-110:]}")

    # where the time goes: our own watch of Services (as the agent's informer sees them)
    seen: dict[str, float] = {}
    _, rv = await client.list("v1", "services", "default", limit=1)

    async def watcher() -> None:
        async for _etype, obj in client.watch("v1", "services", "default", resource_version=rv):
            seen.setdefault(obj["metadata"]["name"], time.monotonic())

    watch_task = asyncio.create_task(watcher())
    rows = []
    s0, a0 = proc_cpu(server_pids), proc_cpu(agent_pids)
    try:
        for k in range(args.samples):
            i = args.services + 1000 + k
            name = f"svc-{i}"
            # a static ClusterIP from the band kept for them, so the probe runs before the POST
            ip = str(ipaddress.ip_network(cl.config["service_cidr"]).network_address + 200 + k)
            probe = subprocess.Popen(["ip", "netns", "exec", cl.netns, sys.executable, "-c",
                                      PROBE, ip, "60"], stdout=subprocess.PIPE, text=True)
            assert probe.stdout.readline().strip() == "ready"
            await asyncio.sleep(0.2)
            t0 = time.monotonic()
            await client.create("v1", "services", service(i, ip), "default")
            t_post = time.monotonic()
            line = await asyncio.to_thread(probe.stdout.readline)
            probe.wait()
            if not line.strip():
                raise SystemExit(f"{name} ({ip}): its rule never answered within 60 s")
            t_live = float(line)
            await asyncio.sleep(0.05)
            rows.append((t_live - t0, t_post - t0, seen.get(name, float("nan")) - t0))
            await asyncio.sleep(0.2)
    finally:
        watch_task.cancel()
    cpu_s, cpu_a = proc_cpu(server_pids) - s0, proc_cpu(agent_pids) - a0
    total = [r[0] for r in rows]
    print(f"  Service POST -> its rule answering packets in the node (a reset, as it has no "
          f"endpoints): p50 {ms(statistics.median(total))}, max {ms(max(total))} "
          f"({len(rows)} Services)")
    post, watch = (statistics.median(r[i] for r in rows) for i in (1, 2))
    print(f"  where it goes (p50, from the POST): answered {ms(post)}; watch event at a second "
          f"watcher {ms(watch)}; so agent (informer, Tracker.update, diff, nft -f) "
          f"~{ms(statistics.median(total) - watch)}")
    print(f"  CPU over those {len(rows)} Services (incl. waits): server {cpu_s:.2f} s, "
          f"agent {cpu_a:.2f} s")


# --- part 3: connection set-up through a ClusterIP vs direct ---------------------------

CONNECT = r"""
import json, socket, sys, time
targets = [(sys.argv[1], int(sys.argv[2])), (sys.argv[3], int(sys.argv[4]))]
n, block = int(sys.argv[5]), int(sys.argv[6])
out = [[], []]
def once(addr):
    time.sleep(0.002)  # let httpd accept (fork) the last one: a full backlog drops SYNs (1 s)
    t = time.perf_counter_ns()
    s = socket.socket()
    s.connect(addr)
    s.close()
    return time.perf_counter_ns() - t
deadline = time.monotonic() + 180
for w in range(2):  # until both answer (httpd starting, endpoint not yet in the table)
    while True:
        try:
            once(targets[w])
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                sys.exit(f"{targets[w]} refuses connections")
            time.sleep(0.1)
    for _ in range(50):
        once(targets[w])
while len(out[1]) < n:
    for w in range(2):
        out[w] += [once(targets[w]) for _ in range(min(block, n - len(out[w])))]
print(json.dumps(out))
"""


async def part3(args, cl: Cluster, client: Client) -> None:
    print(f"== 3. TCP connect+close via ClusterIP vs pod IP, {args.services:,} Services present "
          f"(target: ratio <= 1.1)")
    labels = {"app": "bench-web"}
    await client.create("v1", "pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": labels},
        # no service links: 10,000 Services' variables overflow exec's argument space
        # ("argument list too long"), as they do upstream
        "spec": {"terminationGracePeriodSeconds": 0, "enableServiceLinks": False,
                 "containers": [{"name": "httpd", "image": "busybox",
                                 "imagePullPolicy": "IfNotPresent",
                                 "command": ["httpd", "-f", "-p", "8080"],
                                 "ports": [{"containerPort": 8080}]}]}},
        "default")
    svc = await client.create("v1", "services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}}, "default")
    cluster_ip = svc["spec"]["clusterIP"]
    pod_ip = ""

    async def running() -> bool:
        nonlocal pod_ip
        pod = await client.get("v1", "pods", "web", "default")
        pod_ip = (pod.get("status") or {}).get("podIP", "")
        return (pod.get("status") or {}).get("phase") == "Running" and bool(pod_ip)

    await wait_for(running, 120, "the web pod to run", 0.5)

    cmd = ["ip", "netns", "exec", cl.netns, "python3", "-c", CONNECT, pod_ip, "8080",
           cluster_ip, "80", str(args.connections), str(args.block)]
    r = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=600,
                                check=False)
    if r.returncode != 0:
        raise SystemExit(f"connect helper failed: {r.stderr.strip()[-500:]}")
    direct, via = ([x / 1e6 for x in xs] for xs in json.loads(r.stdout))
    d, v = statistics.median(direct), statistics.median(via)

    def q(xs: list[float]) -> float:
        return sorted(xs)[int(len(xs) * 0.9)]

    print(f"  from the node's namespace, {args.connections} sequential connect+close each, "
          f"blocks of {args.block} alternating:")
    print(f"  pod IP {pod_ip}:8080 p50 {d * 1000:.0f} us (p90 {q(direct) * 1000:.0f} us); "
          f"ClusterIP {cluster_ip}:80 p50 {v * 1000:.0f} us (p90 {q(via) * 1000:.0f} us); "
          f"ratio {v / d:.2f}; SYN retransmits (> 900 ms): "
          f"{sum(x > 900 for x in direct)} direct, {sum(x > 900 for x in via)} via ClusterIP")


# --- part 4: cluster DNS ---------------------------------------------------------------


def load_dns_bench():
    path = ROOT / "bench" / "dns.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("kwire_bench_dns", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def blast_at(dnsbench, host: str, packets: list[bytes], seconds: float, window: int):
    """bench/dns.py's blast (which aims at 127.0.0.1) aimed at `host`."""
    if "host" in inspect.signature(dnsbench.blast).parameters:
        return dnsbench.blast(53, packets, seconds, window, host=host)
    real = dnsbench.socket.socket

    class Aimed(real):
        def connect(self, addr):
            return super().connect((host, addr[1]) if addr[0] == "127.0.0.1" else addr)

    dnsbench.socket.socket = Aimed
    try:
        return dnsbench.blast(53, packets, seconds, window)
    finally:
        dnsbench.socket.socket = real


async def part4(args, cl: Cluster, client: Client) -> None:
    print("== 4. cluster DNS queries/s (CoreDNS: ~33,000/s on 2 vCPUs)")
    try:
        dnsbench = load_dns_bench()
        if dnsbench is None:
            print("  DNS: not measured: bench/dns.py is not there yet")
            return
        from dnslib import DNSRecord
        host = str(ipaddress.ip_network(cl.config["underlay_cidr"]).network_address + 1)
        domain = cl.config.get("cluster_domain", "cluster.local")
        name = f"{'web' if '3' in args.parts else 'svc-0'}.default.svc.{domain}"
        probe = DNSRecord.question(name, "A")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(probe.pack(), (host, 53))
            reply = DNSRecord.parse(s.recv(4096))
        answers = [str(rr.rdata) for rr in reply.rr]
        if not answers:
            print(f"  DNS: not measured: {name} A got no answer from {host}:53 "
                  f"(rcode {reply.header.rcode})")
            return
        got, lost = await asyncio.to_thread(blast_at, dnsbench, host, [probe.pack()],
                                            args.dns_seconds, 64)
        print(f"  {name} A -> {answers[0]}: {got / args.dns_seconds:,.0f} queries/s over UDP "
              f"at {host}:53 (64 in flight, {lost} timeouts); CoreDNS: ~33,000/s on 2 vCPUs")
        names = [DNSRecord.question(f"svc-{random.randrange(args.services)}.default.svc.{domain}",
                                    "A").pack() for _ in range(2000)]
        ok = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            for packet in names[:20]:  # the names resolve (an error reply would count too)
                s.sendto(packet, (host, 53))
                reply = DNSRecord.parse(s.recv(4096))
                ok += reply.header.rcode == 0 and bool(reply.rr)
        got, lost = await asyncio.to_thread(blast_at, dnsbench, host, names, args.dns_seconds, 64)
        print(f"  2,000 distinct svc-<n>.default.svc.{domain} A (of the {args.services:,} "
              f"Services): {got / args.dns_seconds:,.0f} queries/s ({lost} timeouts; {ok}/20 "
              f"checked resolve)")
    except (OSError, ImportError, AttributeError) as e:
        print(f"  DNS: not measured: {type(e).__name__}: {e}")


# --- main ------------------------------------------------------------------------------


async def cluster_parts(args, cl: Cluster, parts: set[str]) -> None:
    client = Client.from_kubeconfig(cl.env["KUBECONFIG"])
    try:
        for part, fn in (("2", part2), ("3", part3), ("4", part4)):
            if part in parts:
                t0 = time.perf_counter()
                await fn(args, cl, client)
                print(f"  ({time.perf_counter() - t0:.0f} s)")
    except ApiError as e:
        raise SystemExit(f"API error: {e}") from e
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--parts", default="1,2,3,4", help="which figures (comma-separated)")
    parser.add_argument("--rounds", type=int, default=3, help="part 1: full programs")
    parser.add_argument("--partials", type=int, default=10, help="part 1: one-Service syncs")
    parser.add_argument("--clients", type=int, default=16, help="part 2: concurrent creates")
    parser.add_argument("--samples", type=int, default=10, help="part 2: timed Services")
    parser.add_argument("--connections", type=int, default=2000, help="part 3: per target")
    parser.add_argument("--block", type=int, default=100, help="part 3: alternation block")
    parser.add_argument("--dns-seconds", type=float, default=5.0)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if os.geteuid() != 0:
        raise SystemExit("bench/proxy.py needs root (network namespaces, nftables)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))  # run the finally blocks
    print(f"bench/proxy.py on {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    if "1" in parts:
        part1(args)
    if parts & {"2", "3", "4"}:
        with tempfile.TemporaryDirectory(prefix="kwire-bench-proxy-") as tmp:
            cl = Cluster(Path(tmp))
            try:
                print(f"== cluster {cl.name}")
                cl.up()
                asyncio.run(cluster_parts(args, cl, parts))
            finally:
                cl.down()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
