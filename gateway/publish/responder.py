"""Our authoritative DNS responder: UDP and TCP on one address and port.

Each query is answered from what ``PublishedCertificates`` says at that
moment, so adding a domain's or an address's certificate to the database
publishes it at once. Messages are dnspython's codec; the servers are plain
asyncio (a datagram endpoint and a stream server).

Sizes: over UDP an answer must fit 512 bytes (RFC 1035 4.2.1), or the
requester's EDNS0 payload (RFC 6891 6.2.5) capped at 1232 bytes (DNS Flag
Day 2020). An answer that does not fit is sent with TC set and no records,
and the requester asks again over TCP (RFC 7766), where messages carry a
two-byte length (RFC 1035 4.2.2) and the connection serves several queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import structlog

from .settings import DnsSettings
from .source import PublishedCertificates
from .zone import Zone, answer, build_zone, find_zone

log = structlog.get_logger(__name__)

CLASSIC_UDP_SIZE = 512
"""RFC 1035 4.2.1: the most a UDP answer may hold without EDNS0."""
MAX_UDP_PAYLOAD = 1232
"""DNS Flag Day 2020: the largest UDP answer we send, whatever the requester offers."""
MAX_TCP_MESSAGE = 65_535
"""RFC 1035 4.2.2: the two-byte length prefix."""
TCP_IDLE_SECONDS = 10.0
"""RFC 7766 6.2.3: close idle connections after some seconds, so clients cannot hold them all."""
MAX_UDP_IN_FLIGHT = 1024
"""UDP queries being answered at once; more are dropped until some finish (a flood must not grow memory)."""
BIND_ATTEMPTS = 20
"""Tries at finding a port free for both UDP and TCP when asked for any port (tests)."""
MAX_TCP_CONNECTIONS = 256
"""Beyond this many open TCP connections new ones are closed at once (RFC 7766 6.2.2 asks servers to bound them)."""


class DnsResponder:
    """Turns query bytes into answer bytes; knows nothing of sockets.

    A zone built from the source is reused for ``settings.refresh`` seconds
    (``clock`` is monotonic seconds), and queries arriving while it is being
    built wait for that one build: a burst of queries, or a flood, costs the
    database one read per zone per interval rather than one per packet.
    """

    def __init__(
        self, settings: DnsSettings, source: PublishedCertificates, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.source = source
        self._clock = clock
        self._zones: dict[str, tuple[Zone, float]] = {}
        self._building: dict[str, asyncio.Future[Zone]] = {}

    async def zone(self, name: str) -> Zone:
        """The zone as the source holds it now (or at most ``refresh`` seconds ago)."""
        held = self._zones.get(name)
        if held is not None and self._clock() < held[1]:
            return held[0]
        pending = self._building.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Zone] = asyncio.get_running_loop().create_future()
        self._building[name] = future
        try:
            zone = build_zone(name, await self.source.published_certificates(name), self.settings)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked retrieved: the waiters, if any, re-raise it
            raise
        finally:
            del self._building[name]
        if self.settings.refresh > 0:
            self._zones[name] = (zone, self._clock() + self.settings.refresh)
        future.set_result(zone)
        return zone

    async def respond(self, wire: bytes, *, over_tcp: bool) -> bytes | None:
        """The answer to send, or None to send nothing (unparseable, or itself a response)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return _formerr(wire)
        if query.flags & dns.flags.QR:
            return None  # never answer an answer: no reflection loops
        response = dns.message.make_response(query, our_payload=MAX_UDP_PAYLOAD)
        response.flags &= ~dns.flags.RA  # RFC 1035 4.1.1: we offer no recursion
        if query.edns > 0:
            response.use_edns(0, payload=MAX_UDP_PAYLOAD)
            response.set_rcode(dns.rcode.BADVERS)  # RFC 6891 6.1.3: we speak EDNS version 0 only
        elif query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
        elif len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
        elif query.question[0].rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
            response.set_rcode(dns.rcode.REFUSED)
        else:
            zone_name = find_zone(query.question[0].name, self.settings.zones)
            zone = None
            if zone_name is not None:
                try:
                    zone = await self.zone(zone_name)
                except Exception:  # a store failure is SERVFAIL (try later), and logged, never a crash
                    log.exception("dns.published_certificates failed", zone=zone_name)
                    response.set_rcode(dns.rcode.SERVFAIL)
                    return response.to_wire(max_size=CLASSIC_UDP_SIZE)
            answer(query, zone, response)
        return _encode(query, response, over_tcp)


def _udp_limit(query: dns.message.Message) -> int:
    if query.edns < 0:
        return CLASSIC_UDP_SIZE
    return max(CLASSIC_UDP_SIZE, min(query.payload, MAX_UDP_PAYLOAD))


def _encode(query: dns.message.Message, response: dns.message.Message, over_tcp: bool) -> bytes:
    limit = MAX_TCP_MESSAGE if over_tcp else _udp_limit(query)
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        # RFC 2181 9: set TC and send what surely fits, the question; the client retries over TCP
        response.answer.clear()
        response.authority.clear()
        response.additional.clear()
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=limit)


def _formerr(wire: bytes) -> bytes | None:
    """RFC 1035 4.1.1 FORMERR echoing the id, when there is a header to echo."""
    if len(wire) < 12:
        return None
    (qid, flags) = struct.unpack("!HH", wire[:4])
    if flags & dns.flags.QR:
        return None
    return struct.pack("!HHHHHH", qid, dns.flags.QR | dns.rcode.FORMERR, 0, 0, 0, 0)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: DnsResponder, tasks: set[asyncio.Task[None]]) -> None:
        self.responder = responder
        self.tasks = tasks
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(self.tasks) >= MAX_UDP_IN_FLIGHT:
            return  # shed load: a UDP client asks again (RFC 1035 4.2.1), memory stays bounded
        task = asyncio.get_running_loop().create_task(self._answer(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        out = await self.responder.respond(data, over_tcp=False)
        if out is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("dns.udp_error", error=str(exc))  # ICMP unreachable from a client that left


@dataclass
class RunningResponder:
    """A responder listening on ``host``:``port`` (UDP and TCP); ``close()`` stops it."""

    responder: DnsResponder
    host: str
    port: int
    udp: asyncio.DatagramTransport
    tcp: asyncio.Server
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    connections: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def close(self) -> None:
        self.udp.close()
        self.tcp.close()
        for writer in list(self.connections):
            writer.close()
        await self.tcp.wait_closed()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        self.connections.add(writer)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS)
                    (length,) = struct.unpack("!H", head)
                    wire = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_SECONDS)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                out = await self.responder.respond(wire, over_tcp=True)
                if out is None:
                    return
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except ConnectionError:
            return
        finally:
            self.connections.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def start_responder(
    settings: DnsSettings, source: PublishedCertificates, *, host: str | None = None, port: int | None = None
) -> RunningResponder:
    """Listen on UDP and TCP; ``port=0`` picks a free port (the UDP one, then TCP on the same)."""
    host = host if host is not None else settings.host
    port = port if port is not None else settings.port
    responder = DnsResponder(settings, source)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    running: RunningResponder | None = None

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert running is not None
        await running._client(reader, writer)

    # With port 0 the kernel picks a free UDP port, which TCP may not have free: try a few.
    for attempt in range(1 if port else BIND_ATTEMPTS):
        udp, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(responder, tasks), local_addr=(host, port))
        bound = udp.get_extra_info("sockname")[1]
        try:
            tcp = await asyncio.start_server(client, host, bound)
            break
        except OSError:
            udp.close()
            if port or attempt == BIND_ATTEMPTS - 1:
                raise
    running = RunningResponder(responder, host, bound, udp, tcp, tasks)
    log.info("dns.listening", address=running.address, zones=list(settings.zones))
    return running


async def serve(settings: DnsSettings, source: PublishedCertificates) -> None:
    """Run the responder until cancelled (``directgw dns``; ``directgw serve`` when ``[dns] enabled``)."""
    running = await start_responder(settings, source)
    try:
        await asyncio.Event().wait()
    finally:
        await running.close()
