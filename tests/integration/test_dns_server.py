"""The cluster DNS server (kwire.dns.server) on 127.0.0.1, an ephemeral port,
asked by the real `dig` over UDP and TCP: answers kept current by informers
(fed here by hand), truncation and the TCP retry, forwarding to a fake upstream
on 127.0.0.1, and SERVFAIL at once when there is no upstream. Traffic stays
on loopback."""
from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from kwire.client import Informer
from kwire.dns.records import Zone
from kwire.dns.server import ClusterRecords, DNSServer, resolv_conf_upstreams

pytestmark = pytest.mark.skipif(shutil.which("dig") is None, reason="needs dig (dnsutils)")

DOMAIN = "cluster.local"
UPSTREAM_ANSWER = "192.0.2.1"


class Loop:
    """An asyncio loop in a thread, so blocking `dig` runs beside the servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args):
        async def call():
            return fn(*args)
        return self.run(call())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class FakeInformers:
    """Informers that never list or watch: the test applies events to them."""

    def __init__(self) -> None:
        self.informers: dict[str, Informer] = {}

    def get(self, api_version: str, plural: str) -> Informer:
        return self.informers.setdefault(plural, Informer(None, api_version, plural))

    def sync(self) -> None:
        for informer in self.informers.values():
            informer._replace([], "1")

    def event(self, plural: str, etype: str, obj: dict) -> None:
        self.informers[plural]._apply(etype, obj)


class FakeUpstream(asyncio.DatagramProtocol):
    """A resolver on 127.0.0.1 answering every A question with UPSTREAM_ANSWER,
    over UDP and TCP; it counts what it was asked."""

    def __init__(self) -> None:
        self.questions: list[str] = []

    def reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        self.questions.append(str(request.q.qname))
        reply = request.reply()
        if request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, ttl=60, rdata=A(UPSTREAM_ANSWER)))
        return reply.pack()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.transport.sendto(self.reply(data), addr)

    async def serve_tcp(self, reader, writer) -> None:
        size, = struct.unpack("!H", await reader.readexactly(2))
        reply = self.reply(await reader.readexactly(size))
        writer.write(struct.pack("!H", len(reply)) + reply)
        await writer.drain()
        writer.close()

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.udp, _ = await loop.create_datagram_endpoint(lambda: self, ("127.0.0.1", 0))
        port = self.udp.get_extra_info("sockname")[1]
        self.tcp = await asyncio.start_server(self.serve_tcp, "127.0.0.1", port)
        return port

    async def stop(self) -> None:
        self.udp.close()
        self.tcp.close()
        await self.tcp.wait_closed()


def service(name: str, ns: str = "default", **spec) -> dict:
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}",
                         "resourceVersion": "1"}, "spec": spec}


def endpoint_slice(svc: str, ips: list[str], rv: str = "1", ns: str = "default") -> dict:
    return {"metadata": {"name": f"{svc}-abc", "namespace": ns, "uid": f"uid-{svc}-slice",
                         "resourceVersion": rv,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips]}


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    lp = Loop()
    try:
        yield lp
    finally:
        lp.close()


@pytest.fixture(scope="module")
def upstream(loop: Loop) -> Iterator[tuple[FakeUpstream, int]]:
    fake = FakeUpstream()
    port = loop.run(fake.start())
    try:
        yield fake, port
    finally:
        loop.run(fake.stop())


@pytest.fixture
def cluster(loop: Loop, upstream) -> Iterator[tuple[DNSServer, FakeInformers]]:
    """A DNS server for an empty cluster, forwarding to the fake upstream."""
    zone = Zone(DOMAIN, ("10.96.0.0/12", "10.244.0.0/16"), nameservers=["10.96.0.10"])
    server = DNSServer(zone, [("127.0.0.1", upstream[1])])
    informers = FakeInformers()
    records = loop.call(lambda: ClusterRecords(zone, informers, DOMAIN, server.changed))
    server.synced = records.synced
    loop.run(server.start("127.0.0.1", 0))
    try:
        yield server, informers
    finally:
        records.close()
        loop.run(server.stop())


def dig(server: DNSServer, *args: str) -> str:
    host, port = server.address
    r = subprocess.run(["dig", f"@{host}", "-p", str(port), "+time=2", "+tries=1", *args],
                       capture_output=True, text=True, timeout=20)
    return r.stdout


def short(server: DNSServer, *args: str) -> list[str]:
    return sorted(dig(server, "+short", *args).split())


def answers(server: DNSServer, *args: str) -> list[str]:
    """The answer section, one whitespace-normalized record a line."""
    return [" ".join(line.split()) for line in
            dig(server, "+noall", "+answer", *args).splitlines()]


def apply(loop: Loop, informers: FakeInformers, plural: str, etype: str, obj: dict) -> None:
    """Apply an event and let the coalesced rebuild run."""
    loop.call(informers.event, plural, etype, obj)
    loop.run(asyncio.sleep(0.01))


def test_answers_follow_the_informers(loop: Loop, cluster):
    server, informers = cluster
    assert "status: SERVFAIL" in dig(server, "web.default.svc.cluster.local")  # not synced
    loop.call(informers.sync)
    assert "status: NXDOMAIN" in dig(server, "web.default.svc.cluster.local")

    apply(loop, informers, "services", "ADDED",
          service("web", clusterIP="10.96.0.20", ports=[{"name": "http", "port": 80}]))
    assert short(server, "WEB.default.svc.cluster.local") == ["10.96.0.20"]
    assert answers(server, "WEB.default.svc.cluster.local") == \
        ["WEB.default.svc.cluster.local. 5 IN A 10.96.0.20"]
    assert short(server, "-x", "10.96.0.20") == ["web.default.svc.cluster.local."]
    assert short(server, "SRV", "_http._tcp.web.default.svc.cluster.local") == \
        ["0", "100", "80", "web.default.svc.cluster.local."]
    out = dig(server, "AAAA", "web.default.svc.cluster.local")
    assert "status: NOERROR" in out and "ANSWER: 0" in out and "AUTHORITY: 1" in out
    assert "flags: qr aa rd ra" in out
    assert short(server, "TXT", "dns-version.cluster.local") == ['"1.0.1"']

    apply(loop, informers, "services", "ADDED", service("db", clusterIP="None"))
    assert "status: NXDOMAIN" in dig(server, "db.default.svc.cluster.local")
    apply(loop, informers, "endpointslices", "ADDED",
          endpoint_slice("db", ["10.244.1.5", "10.244.2.7"]))
    assert short(server, "db.default.svc.cluster.local") == ["10.244.1.5", "10.244.2.7"]
    apply(loop, informers, "endpointslices", "MODIFIED",
          endpoint_slice("db", ["10.244.2.7"], rv="2"))
    assert short(server, "db.default.svc.cluster.local") == ["10.244.2.7"]

    apply(loop, informers, "services", "DELETED", service("web"))
    assert "status: NXDOMAIN" in dig(server, "web.default.svc.cluster.local")


def test_big_answers_are_truncated_over_udp_and_whole_over_tcp(loop: Loop, cluster):
    server, informers = cluster
    loop.call(informers.sync)
    ips = [f"10.244.{i // 250}.{i % 250 + 1}" for i in range(100)]
    apply(loop, informers, "services", "ADDED", service("big", clusterIP="None"))
    apply(loop, informers, "endpointslices", "ADDED", endpoint_slice("big", ips))

    out = dig(server, "+ignore", "+noedns", "big.default.svc.cluster.local")
    assert " tc " in out.split("flags:")[1].split(";")[0]
    assert len(out.encode()) < 4096 and "ANSWER: 100" not in out
    out = dig(server, "+ignore", "+bufsize=512", "big.default.svc.cluster.local")
    assert " tc " in out.split("flags:")[1].split(";")[0]

    out = dig(server, "big.default.svc.cluster.local")  # dig retries over TCP by itself
    assert "Truncated, retrying in TCP mode" in out and "ANSWER: 100" in out
    assert short(server, "+tcp", "big.default.svc.cluster.local") == sorted(ips)
    # an EDNS0 client with room enough gets it all over UDP
    out = dig(server, "+bufsize=4096", "big.default.svc.cluster.local")
    assert "ANSWER: 100" in out and "Truncated" not in out


def test_tcp_serves_several_queries_per_connection(cluster):
    server, _ = cluster
    with socket.create_connection(server.address, timeout=5) as s:
        for i in range(3):
            query = DNSRecord.question("dns-version.cluster.local", "TXT")
            query.header.id = 100 + i
            data = query.pack()
            s.sendall(struct.pack("!H", len(data)) + data)
            size, = struct.unpack("!H", s.recv(2))
            reply = DNSRecord.parse(s.recv(size, socket.MSG_WAITALL))
            assert reply.header.id == 100 + i and reply.header.rcode == 2  # not synced yet


def test_other_names_are_forwarded_upstream(loop: Loop, cluster, upstream):
    server, informers = cluster
    fake, _ = upstream
    loop.call(informers.sync)
    assert short(server, "www.example.com") == [UPSTREAM_ANSWER]
    assert short(server, "+tcp", "tcp.example.com") == [UPSTREAM_ANSWER]
    assert short(server, "-x", "192.0.2.9") == []  # not a cluster range: upstream's answer
    assert fake.questions[-3:] == ["www.example.com.", "tcp.example.com.",
                                   "9.2.0.192.in-addr.arpa."]
    # an unknown address of the cluster's ranges is answered here
    assert "status: NXDOMAIN" in dig(server, "-x", "10.244.9.9")
    assert fake.questions[-1] == "9.2.0.192.in-addr.arpa."


def test_external_name_targets_are_resolved_upstream(loop: Loop, cluster):
    server, informers = cluster
    loop.call(informers.sync)
    apply(loop, informers, "services", "ADDED",
          service("ext", type="ExternalName", externalName="db.example.com"))
    assert answers(server, "ext.default.svc.cluster.local") == [
        "ext.default.svc.cluster.local. 5 IN CNAME db.example.com.",
        f"db.example.com. 60 IN A {UPSTREAM_ANSWER}"]
    assert short(server, "CNAME", "ext.default.svc.cluster.local") == ["db.example.com."]


def test_servfail_at_once_without_upstreams(loop: Loop):
    server = DNSServer(Zone(DOMAIN), [])
    loop.run(server.start("127.0.0.1", 0))
    try:
        for transport in ("+notcp", "+tcp"):
            started = time.monotonic()
            out = dig(server, transport, "www.example.com")
            assert "status: SERVFAIL" in out and time.monotonic() - started < 1.5
    finally:
        loop.run(server.stop())


def test_a_dead_upstream_is_skipped(loop: Loop, upstream):
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there: the kernel refuses at once
    server = DNSServer(Zone(DOMAIN), [("127.0.0.1", dead_port), ("127.0.0.1", upstream[1])])
    loop.run(server.start("127.0.0.1", 0))
    try:
        started = time.monotonic()
        assert short(server, "www.example.com") == [UPSTREAM_ANSWER]
        assert time.monotonic() - started < 1.5
    finally:
        loop.run(server.stop())


def test_malformed_queries_get_formerr(cluster):
    server, _ = cluster
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(b"\x12\x34" + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x07broken",
                 server.address)
        reply = s.recv(512)
    assert reply[:2] == b"\x12\x34" and reply[3] & 0x0F == 1


def test_resolv_conf_upstreams(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example.com\nnameserver 127.0.0.53\n"
                    "nameserver 172.30.0.1\noptions ndots:1\n")
    assert resolv_conf_upstreams(conf, skip=["172.30.0.1"]) == [("127.0.0.53", 53)]
    assert resolv_conf_upstreams(tmp_path / "missing") == []


def test_cached_answers_end_with_a_change(loop: Loop, cluster, monkeypatch):
    """The same query bytes hit the answer cache, until the zone changes; a full
    cache drops its oldest answer only."""
    server, informers = cluster
    loop.call(informers.sync)
    monkeypatch.setattr("kwire.dns.server.CACHE_LIMIT", 2)

    def ask(qname: str) -> DNSRecord:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(DNSRecord.question(qname).pack(), server.address)
            return DNSRecord.parse(s.recv(512))

    assert ask("cached.default.svc.cluster.local").header.rcode == 3
    assert ask("cached.default.svc.cluster.local").header.rcode == 3
    apply(loop, informers, "services", "ADDED", service("cached", clusterIP="10.96.0.30"))
    assert [str(r.rdata) for r in ask("cached.default.svc.cluster.local").rr] == ["10.96.0.30"]
    for qname in ("a.cluster.local", "b.cluster.local", "cached.default.svc.cluster.local"):
        ask(qname)
    assert len(server._cache[False]) == 2
    # dig sends a new EDNS cookie each run: the cache looks past it
    monkeypatch.setattr("kwire.dns.server.CACHE_LIMIT", 100)
    dig(server, "dns-version.cluster.local", "TXT")
    cached = len(server._cache[False])
    assert short(server, "dns-version.cluster.local", "TXT") == ['"1.0.1"']
    assert len(server._cache[False]) == cached
