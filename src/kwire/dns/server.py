"""The cluster DNS server (what CoreDNS is in a kubeadm cluster): UDP and TCP
on one address, cluster names answered from a Zone that informers over
Services and EndpointSlices keep current, everything else forwarded to the
host's resolvers (CoreDNS's `forward . /etc/resolv.conf`).

Speed comes from doing little per query: the Zone is a dict by name, and packed
answers are cached by the query's bytes (but the ID and EDNS options), so a
repeated question costs one dict lookup; the cache is dropped whenever the
Zone changes.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import random
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from dnslib import (OPCODE, QTYPE, RCODE, DNSBuffer, DNSError, DNSHeader, DNSQuestion, DNSRecord,
                    EDNS0)

from kwire.client import Client, Informers, object_key
from kwire.cluster.config import ClusterConfig
from kwire.cluster.pki import load_tokens
from kwire.daemon import run_until_signalled
from kwire.dns.records import SERVICE_NAME_LABEL, Answer, Zone, service_records

log = logging.getLogger("kwire.dns")

DNS_PORT = 53
UDP_MIN = 512
EDNS_SIZE = 1232
"""The UDP payload size kwire offers with EDNS0 (the DNS flag day 2020 value)."""
FORWARD_TIMEOUT = 2.0
"""Per upstream, as CoreDNS's forward plugin's read timeout."""
TCP_IDLE = 10.0
CACHE_LIMIT = 20000
BIND_RETRY = 0.5
SLICE_SERVICE_INDEX = "service"

Upstream = tuple[str, int]


def resolv_conf_upstreams(path: str | Path = "/etc/resolv.conf",
                          skip: Iterable[str] = ()) -> list[Upstream]:
    """The nameservers of a resolv.conf, port 53, except `skip` (our own address:
    forwarding to ourselves would loop)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    skip = set(skip)
    servers = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver" and fields[1] not in skip:
            servers.append((fields[1], DNS_PORT))
    return servers


class _ReplyCatcher(asyncio.DatagramProtocol):
    def __init__(self, query_id: bytes):
        self.query_id = query_id
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        if data[:2] == self.query_id and not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def _ask_udp(upstream: Upstream, query: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _ReplyCatcher(query[:2]), remote_addr=upstream)
    try:
        transport.sendto(query)
        return await protocol.reply
    finally:
        transport.close()


async def _ask_tcp(upstream: Upstream, query: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*upstream)
    try:
        writer.write(struct.pack("!H", len(query)) + query)
        await writer.drain()
        size, = struct.unpack("!H", await reader.readexactly(2))
        return await reader.readexactly(size)
    finally:
        writer.close()


class DNSServer:
    """Answers from a Zone, forwards the rest; `synced()` says whether the Zone
    holds the cluster yet (until then cluster names get SERVFAIL rather than a
    wrong NXDOMAIN, as CoreDNS answers when serving before its informers sync)."""

    def __init__(self, zone: Zone, upstreams: Sequence[Upstream] = (),
                 synced: Callable[[], bool] = lambda: True):
        self.zone = zone
        self.upstreams = list(upstreams)
        self.synced = synced
        self._cache: tuple[dict[bytes, bytes], dict[bytes, bytes]] = ({}, {})
        """Packed answers (without the ID) by _cache_key, for UDP and TCP."""
        self._tasks: set[asyncio.Task] = set()
        self._udp: _UDP | None = None
        self._tcp: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self.address: tuple[str, int] | None = None

    def changed(self) -> None:
        """The Zone changed: cached answers are stale."""
        for cache in self._cache:
            cache.clear()

    # --- answering ----------------------------------------------------------------

    def answer(self, data: bytes, tcp: bool) -> bytes | None:
        """The packed response to a query when it needs no upstream, else None."""
        key = _cache_key(data)
        cached = self._cache[tcp].get(key)
        if cached is not None:
            return data[:2] + cached
        try:
            request = DNSRecord.parse(data)
        except (DNSError, IndexError, ValueError):
            return _format_error(data)
        if request.header.qr:
            return b""
        if request.header.opcode != OPCODE.QUERY:
            return self._pack(request, RCODE.NOTIMP, tcp)
        if len(request.questions) != 1:
            return self._pack(request, RCODE.FORMERR, tcp)
        q = request.q
        if q.qclass != 1:
            return self._pack(request, RCODE.REFUSED, tcp)
        if self.zone.zone_of(str(q.qname).lower()) is None:
            return None
        if not self.synced():
            return self._pack(request, RCODE.SERVFAIL, tcp)
        ans = self.zone.lookup(str(q.qname), q.qtype)
        if ans is None or ans.chase is not None:
            return None
        reply = self._pack(request, ans, tcp)
        cache = self._cache[tcp]
        if len(cache) >= CACHE_LIMIT:
            del cache[next(iter(cache))]  # the oldest
        cache[key] = reply[2:]
        return reply

    async def resolve(self, data: bytes, tcp: bool) -> bytes:
        """The response to any query: local, forwarded, or SERVFAIL."""
        reply = self.answer(data, tcp)
        if reply is not None:
            return reply
        request = DNSRecord.parse(data)
        ans = self.zone.lookup(str(request.q.qname), request.q.qtype) if self.synced() else None
        if ans is not None:  # an ExternalName's target outside the cluster
            await self._chase(request, ans, tcp)
            return self._pack(request, ans, tcp)
        upstream = await self.forward(data, tcp)
        if upstream is None:
            return self._pack(request, RCODE.SERVFAIL, tcp)
        return upstream

    async def forward(self, query: bytes, tcp: bool) -> bytes | None:
        """The first upstream's reply, over the client's transport; None if none
        answers (at once when there are no upstreams)."""
        for upstream in self.upstreams:
            try:
                return await asyncio.wait_for(
                    (_ask_tcp if tcp else _ask_udp)(upstream, query), FORWARD_TIMEOUT)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                log.debug("upstream %s:%d: %s", *upstream, str(e) or type(e).__name__)
        return None

    async def _chase(self, request: DNSRecord, ans: Answer, tcp: bool) -> None:
        """Resolve a CNAME's outside target upstream and append it, as CoreDNS
        does for ExternalName Services (clients expect the whole chain)."""
        query = DNSRecord(DNSHeader(id=random.randrange(1 << 16), rd=1),
                          q=DNSQuestion(ans.chase, request.q.qtype))
        reply = await self.forward(query.pack(), tcp)
        if reply is None:
            return
        try:
            upstream = DNSRecord.parse(reply)
        except DNSError:
            return
        ans.rcode = upstream.header.rcode
        ans.answer += upstream.rr
        ans.authority = upstream.auth

    def _pack(self, request: DNSRecord, result: Answer | int, tcp: bool) -> bytes:
        ans = result if isinstance(result, Answer) else Answer(rcode=result)
        reply = DNSRecord(DNSHeader(id=request.header.id, qr=1, aa=int(ans is result), ra=1,
                                    rd=request.header.rd, rcode=ans.rcode),
                          questions=request.questions[:1], rr=list(ans.answer),
                          auth=list(ans.authority), ar=list(ans.additional))
        opt = next((r for r in request.ar if r.rtype == QTYPE.OPT), None)
        if opt is not None:
            reply.ar.append(EDNS0(udp_len=EDNS_SIZE))
        packed = bytes(reply.pack())
        limit = None if tcp else max(UDP_MIN, opt.rclass if opt is not None else 0)
        if limit is None or len(packed) <= limit:
            return packed
        return _truncate(reply, limit)

    # --- serving ------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        """Listen on UDP and TCP host:port (port 0: one free port for both)."""
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            tcp = await asyncio.start_server(self._serve_tcp, host, port)
        except OSError:
            sock.close()
            raise
        self._udp, self._tcp = _UDP(self, sock), tcp
        self.address = (host, port)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._udp is not None:
            self._udp.close()
            self._tcp.close()
            for writer in list(self._conns):
                writer.close()
            await self._tcp.wait_closed()
            self._udp = self._tcp = None

    def spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """RFC 7766: length-prefixed queries, several per connection, answered in order."""
        self._conns.add(writer)
        try:
            while True:
                size, = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2),
                                                                   TCP_IDLE))
                query = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE)
                reply = await self.resolve(query, tcp=True)
                if reply:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, DNSError):
            pass
        finally:
            self._conns.discard(writer)
            writer.close()


class _UDP:
    """The UDP side on a bare socket rather than a DatagramTransport: each wake-up
    drains every waiting datagram (asyncio reads one per event-loop turn), and
    replies are sent at once (a full send buffer drops them, as UDP may)."""

    BATCH = 256

    def __init__(self, server: DNSServer, sock: socket.socket):
        self.server, self.sock = server, sock
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(sock.fileno(), self._read)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _read(self) -> None:
        answer, recvfrom, sendto = self.server.answer, self.sock.recvfrom, self.sock.sendto
        for _ in range(self.BATCH):
            try:
                data, addr = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error for an earlier reply
                continue
            reply = answer(data, False)
            if reply is None:
                self.server.spawn(self._resolve(data, addr))
            elif reply:
                self._send(reply, addr, sendto)

    @staticmethod
    def _send(reply: bytes, addr, sendto) -> None:
        try:
            sendto(reply, addr)
        except OSError as e:
            log.debug("reply to %s: %s", addr, e)

    async def _resolve(self, data: bytes, addr) -> None:
        reply = await self.server.resolve(data, tcp=False)
        if self.sock.fileno() >= 0:
            self._send(reply, addr, self.sock.sendto)


def _cache_key(data: bytes) -> bytes:
    """What a local answer depends on: the flags, counts and question, and an
    EDNS0 payload size; not the ID, nor EDNS options (dig's cookie changes
    every run)."""
    end = 12
    try:
        while length := data[end]:
            if length & 0xC0:  # a compressed question: no shortcut
                return data[2:]
            end += length + 1
    except IndexError:
        return data[2:]
    end += 5  # the root label, QTYPE and QCLASS
    return data[2:end + 5]  # and an OPT record's root label, TYPE and CLASS (the size)


def _format_error(data: bytes) -> bytes:
    """FORMERR for a query dnslib cannot parse; nothing if not even the header is there."""
    if len(data) < 12:
        return b""
    header = DNSHeader.parse(DNSBuffer(data[:12]))
    return bytes(DNSRecord(DNSHeader(id=header.id, qr=1, rcode=RCODE.FORMERR)).pack())


def _truncate(reply: DNSRecord, limit: int) -> bytes:
    """What fits in limit bytes, as miekg/dns's Truncate: additional records go
    first (no TC), then answers (TC set, so the client asks again over TCP)."""
    opt = [r for r in reply.ar if r.rtype == QTYPE.OPT]
    reply.ar = opt
    packed = bytes(reply.pack())
    if len(packed) <= limit:
        return packed
    answers, reply.auth = reply.rr, []
    reply.header.tc = 1
    low, high = 0, len(answers)
    while low < high:  # the most answers that fit
        mid = (low + high + 1) // 2
        reply.rr = answers[:mid]
        if len(reply.pack()) <= limit:
            low = mid
        else:
            high = mid - 1
    reply.rr = answers[:low]
    return bytes(reply.pack())


# --- the cluster's data ----------------------------------------------------------

def _slice_service(obj: dict) -> list[str]:
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{meta.get('namespace')}/{name}"] if name else []


class ClusterRecords:
    """Keeps a Zone equal to what the Service and EndpointSlice informers hold:
    an event marks its Service, and the marked ones are rebuilt once per loop
    turn (a list of a thousand objects is one rebuild of each Service)."""

    def __init__(self, zone: Zone, informers: Informers, domain: str,
                 on_change: Callable[[], None] = lambda: None):
        self.zone, self.domain, self.on_change = zone, domain, on_change
        self.services = informers.get("v1", "services")
        self.slices = informers.get("discovery.k8s.io/v1", "endpointslices")
        self.slices.store.add_index(SLICE_SERVICE_INDEX, _slice_service)
        self._dirty: set[str] = set()
        self.services.add_handler(self._on_service)
        self.slices.add_handler(self._on_slice)

    def synced(self) -> bool:
        return self.services.has_synced and self.slices.has_synced

    async def wait_synced(self) -> None:
        await asyncio.gather(self.services.wait_synced(), self.slices.wait_synced())

    def close(self) -> None:
        self.services.remove_handler(self._on_service)
        self.slices.remove_handler(self._on_slice)

    def _on_service(self, etype: str, obj: dict, old: dict | None) -> None:
        self._mark([object_key(obj)])

    def _on_slice(self, etype: str, obj: dict, old: dict | None) -> None:
        self._mark(_slice_service(obj) + (_slice_service(old) if old else []))

    def _mark(self, keys: list[str]) -> None:
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self._rebuild)
        self._dirty.update(keys)

    def _rebuild(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            service = self.services.store.get(key)
            try:
                if service is None:
                    self.zone.delete(key)
                else:
                    slices = self.slices.store.by_index(SLICE_SERVICE_INDEX, key)
                    self.zone.put(key, service_records(service, slices, self.domain))
            except Exception:  # noqa: BLE001 - one odd Service must not stop the others
                log.exception("building the records of Service %s", key)
        self.on_change()


async def run(config: ClusterConfig, stop: asyncio.Event) -> None:
    """Serve the cluster's DNS on the underlay host address, port 53, until stop."""
    host = config.underlay_host_address
    client = Client(f"https://127.0.0.1:{config.api_port}", token=load_tokens(config).admin,
                    ca_file=str(config.ca_cert))
    informers = Informers(client)
    zone = Zone(config.cluster_domain, (config.service_cidr, config.pod_cidr),
                nameservers=[config.cluster_dns])
    upstreams = resolv_conf_upstreams(skip=(host, config.cluster_dns))
    server = DNSServer(zone, upstreams)
    records = ClusterRecords(zone, informers, config.cluster_domain, server.changed)
    server.synced = records.synced
    try:
        for attempt in itertools.count():
            try:
                await server.start(host, DNS_PORT)
                break
            except OSError as e:  # the underlay bridge may not carry its address yet
                log.log(logging.DEBUG if attempt else logging.INFO,
                        "binding %s:%d: %s; retrying", host, DNS_PORT, e)
                if stop.is_set():
                    return
                await asyncio.sleep(BIND_RETRY)
        log.info("serving %s on %s:%d, forwarding to %s", config.cluster_domain, host, DNS_PORT,
                 ", ".join(h for h, _ in upstreams) or "nothing (SERVFAIL)")
        await stop.wait()
    finally:
        records.close()
        await server.stop()
        await informers.stop()
        await client.close()


def serve(config: ClusterConfig) -> None:
    """Run until SIGTERM or SIGINT."""
    run_until_signalled(lambda stop: run(config, stop))
