"""Cluster DNS throughput: queries/s over UDP, to compare with CoreDNS's ~33,000/s
on 2 vCPUs (its published kubernetes-plugin figure).

Starts a kwire DNS server on 127.0.0.1 in a child process with a zone of
--services ClusterIP Services (and a headless one), then one client process keeps
--window queries in flight for --seconds, cycling through --names distinct
names (A for Services, SRV, PTR, and some NXDOMAIN), and prints answers/s.
Loopback only.

    .venv/bin/python bench/dns.py [--services 1000] [--seconds 5] [--window 64]
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import socket
import time

from dnslib import DNSRecord

from kwire.dns.records import Zone, service_records
from kwire.dns.server import DNSServer

DOMAIN = "cluster.local"


def build_zone(services: int) -> Zone:
    zone = Zone(DOMAIN, ("10.96.0.0/12", "10.244.0.0/16"), nameservers=["10.96.0.10"])
    for i in range(services):
        ip = f"10.96.{i // 250 + 1}.{i % 250 + 1}"
        svc = {"metadata": {"name": f"svc-{i}", "namespace": "default"},
               "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]}}
        zone.put(f"default/svc-{i}", service_records(svc, [], DOMAIN))
    headless = {"metadata": {"name": "db", "namespace": "default"}, "spec": {"clusterIP": "None"}}
    slices = [{"addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
               "endpoints": [{"addresses": [f"10.244.1.{i}"], "conditions": {"ready": True}}
                             for i in range(1, 6)]}]
    zone.put("default/db", service_records(headless, slices, DOMAIN))
    return zone


def serve(services: int, ready, port) -> None:
    async def main() -> None:
        server = DNSServer(build_zone(services))
        await server.start("127.0.0.1", 0)
        port.value = server.address[1]
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def queries(services: int, names: int) -> list[bytes]:
    out = []
    for i in range(names):
        n = random.randrange(services)
        kind = i % 10
        if kind < 6:
            q = DNSRecord.question(f"svc-{n}.default.svc.{DOMAIN}", "A")
        elif kind == 6:
            q = DNSRecord.question(f"_http._tcp.svc-{n}.default.svc.{DOMAIN}", "SRV")
        elif kind == 7:
            q = DNSRecord.question(f"{n % 250 + 1}.{n // 250 + 1}.96.10.in-addr.arpa", "PTR")
        elif kind == 8:
            q = DNSRecord.question(f"db.default.svc.{DOMAIN}", "A")
        else:
            q = DNSRecord.question(f"missing-{n}.default.svc.{DOMAIN}", "A")
        out.append(q.pack())
    return out


def blast(port: int, packets: list[bytes], seconds: float, window: int) -> tuple[int, int]:
    """(answers, timeouts) from keeping `window` queries in flight for `seconds`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(0.5)
    answers = timeouts = sent = 0
    deadline = time.monotonic() + seconds
    for _ in range(window):
        sock.send(packets[sent % len(packets)])
        sent += 1
    while time.monotonic() < deadline:
        try:
            sock.recv(4096)
            answers += 1
        except socket.timeout:
            timeouts += 1  # a lost datagram: refill the window
        sock.send(packets[sent % len(packets)])
        sent += 1
    sock.close()
    return answers, timeouts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--names", type=int, default=2000)
    args = parser.parse_args()
    ready, port = multiprocessing.Event(), multiprocessing.Value("i", 0)
    child = multiprocessing.Process(target=serve, args=(args.services, ready, port), daemon=True)
    child.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the DNS server did not start")
        packets = queries(args.services, args.names)
        blast(port.value, packets, 1.0, args.window)  # warm the answer cache
        answers, timeouts = blast(port.value, packets, args.seconds, args.window)
        print(f"kwire DNS: {answers / args.seconds:,.0f} queries/s over UDP "
              f"({args.services} Services, {args.names} names, {args.window} in flight, "
              f"{timeouts} timeouts); CoreDNS: ~33,000/s on 2 vCPUs")
    finally:
        child.terminate()
        child.join(5)


if __name__ == "__main__":
    main()
