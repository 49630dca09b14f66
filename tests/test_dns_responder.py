"""Our authoritative DNS responder, on loopback, asked by dnspython and by Knot's kdig.

The table says, for one question, what an authoritative server must answer
(RFC 1034 4.3.2, RFC 2308, RFC 4398): the rcode, whether the answer is
authoritative, what the answer section holds, and whether the zone's SOA is
in the authority section (negative answers). Every row is asked over UDP
and over TCP.
"""

from __future__ import annotations

import asyncio
import base64
import os

import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.certs import CertRef
from gateway.publish import (
    DnsResponder,
    DnsSettingsError,
    StaticPublished,
    dns_settings,
    load_published,
    owner_name,
    start_responder,
)

from .pki import hisp, issue
from .servers.common import require_server_binary
from .trust_pki import role_key

HISP = hisp("b.test")
BOB = HISP.address("bob", key=role_key("bob"))
JOHN = HISP.address("john.smith", key=role_key("john"))
ORG = HISP.org


@pytest.fixture(scope="module")
def big() -> CertRef:
    """A 4096-bit certificate: its CERT answer does not fit 1232 bytes (DCDT D14)."""
    ca = issue("b.test 4096-bit CA", ca=True, key=role_key("big-ca", "rsa", 4096))
    cert = issue("big@b.test", issuer=ca, email="big@b.test", key=role_key("big", "rsa", 4096)).ref
    assert len(cert.der) > 1232
    return cert


SETTINGS = {
    "zones": ["b.test", "c.test."],
    "nameservers": ["ns1.b.test"],
    "nameserver_addresses": ["127.0.0.1"],
    "ttl": 600,
    "negative_ttl": 120,
}


@pytest.fixture(name="server")
async def server_fixture(big):
    source = StaticPublished.of([BOB.ref, JOHN.ref, ORG.ref, big])
    running = await start_responder(dns_settings(SETTINGS), source, host="127.0.0.1", port=0)
    yield running
    await running.close()


async def ask(server, name: str, rdtype: str, *, tcp: bool, edns: bool = True) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False, payload=1232)
    if tcp:
        return await dns.asyncquery.tcp(q, "127.0.0.1", port=server.port, timeout=2)
    return await dns.asyncquery.udp(q, "127.0.0.1", port=server.port, timeout=2)


def certs_in(response: dns.message.Message) -> list[bytes]:
    return [rd.certificate for rrset in response.answer if rrset.rdtype == dns.rdatatype.CERT for rd in rrset]


# (id, name, type, rcode, authoritative, answer check, SOA in authority)
CASES = [
    ("address-bound", "bob.b.test", "CERT", "NOERROR", True, lambda r: certs_in(r) == [BOB.der], False),
    ("address-bound-case-insensitive", "BoB.B.TEST", "CERT", "NOERROR", True, lambda r: certs_in(r) == [BOB.der], False),
    ("dotted-local-part", "john.smith.b.test", "CERT", "NOERROR", True, lambda r: certs_in(r) == [JOHN.der], False),
    ("org-bound", "b.test", "CERT", "NOERROR", True, lambda r: certs_in(r) == [ORG.der], False),
    ("soa", "b.test", "SOA", "NOERROR", True, lambda r: r.answer[0][0].minimum == 120, False),
    ("ns", "b.test", "NS", "NOERROR", True, lambda r: [str(x.target) for x in r.answer[0]] == ["ns1.b.test."], False),
    ("ns-address", "ns1.b.test", "A", "NOERROR", True, lambda r: r.answer[0][0].address == "127.0.0.1", False),
    ("any", "bob.b.test", "ANY", "NOERROR", True, lambda r: certs_in(r) == [BOB.der], False),
    ("nxdomain", "nobody.b.test", "CERT", "NXDOMAIN", True, lambda r: not r.answer, True),
    ("nodata-other-type", "bob.b.test", "A", "NOERROR", True, lambda r: not r.answer, True),
    ("nodata-empty-non-terminal", "smith.b.test", "CERT", "NOERROR", True, lambda r: not r.answer, True),
    ("zone-without-certificates", "c.test", "CERT", "NOERROR", True, lambda r: not r.answer, True),
    ("second-zone-soa", "c.test", "SOA", "NOERROR", True, lambda r: len(r.answer) == 1, False),
    ("not-our-zone", "bob.example.com", "CERT", "REFUSED", False, lambda r: not r.answer, False),
    ("parent-of-our-zone", "test", "SOA", "REFUSED", False, lambda r: not r.answer, False),
]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(("name", "rdtype", "rcode", "aa", "check", "soa"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
async def test_answers(server, transport, name, rdtype, rcode, aa, check, soa):
    r = await ask(server, name, rdtype, tcp=transport == "tcp")
    assert dns.rcode.to_text(r.rcode()) == rcode
    assert bool(r.flags & dns.flags.AA) is aa
    assert not r.flags & dns.flags.RA
    assert not r.flags & dns.flags.TC
    assert check(r)
    authority = [rr for rr in r.authority if rr.rdtype == dns.rdatatype.SOA]
    assert bool(authority) is soa
    if soa:
        # RFC 2308 section 3: the negative TTL is min(SOA TTL, MINIMUM)
        assert authority[0].ttl == 120


async def test_zone_transfer_refused(server):
    q = dns.message.make_query("b.test", "AXFR")
    r = await dns.asyncquery.tcp(q, "127.0.0.1", port=server.port, timeout=2)
    assert r.rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize(
    ("name", "edns", "truncated"),
    [
        ("bob.b.test", False, True),  # ~900 bytes > 512 (RFC 1035 4.2.1)
        ("bob.b.test", True, False),  # fits the EDNS0 payload of 1232
        ("big.b.test", True, True),  # 4096-bit: over 1232 even with EDNS0
    ],
    ids=["2048-bit-no-edns", "2048-bit-edns", "4096-bit-edns"],
)
async def test_udp_truncation(server, big, name, edns, truncated):
    r = await ask(server, name, "CERT", tcp=False, edns=edns)
    assert bool(r.flags & dns.flags.TC) is truncated
    assert (not r.answer) is truncated
    full = await ask(server, name, "CERT", tcp=True, edns=edns)
    assert not full.flags & dns.flags.TC
    assert certs_in(full) == [big.der if name.startswith("big") else BOB.der]


async def test_truncated_answer_retried_over_tcp_by_dnspython(server, big):
    q = dns.message.make_query("big.b.test", "CERT", use_edns=0, payload=1232)
    r, over_tcp = await dns.asyncquery.udp_with_fallback(q, "127.0.0.1", port=server.port, timeout=2)
    assert over_tcp
    assert certs_in(r) == [big.der]


async def test_several_queries_on_one_tcp_connection(server):
    """RFC 7766 6.2.1: a client may send further queries on the same connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for name in ("bob.b.test", "b.test", "nobody.b.test"):
            wire = dns.message.make_query(name, "CERT").to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
            await writer.drain()
            length = int.from_bytes(await reader.readexactly(2), "big")
            r = dns.message.from_wire(await reader.readexactly(length))
            assert r.question[0].name == dns.name.from_text(name)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_publishing_a_certificate_serves_it_at_once():
    """The responder asks its source on every query: a new address is reachable at once."""

    class Growing:
        def __init__(self) -> None:
            self.entries: list[tuple[str, CertRef]] = []

        async def published_certificates(self, domain: str) -> list[tuple[str, CertRef]]:
            return list(self.entries)

    source = Growing()
    settings = dns_settings({"zones": ["b.test"], "refresh": 0})
    running = await start_responder(settings, source, host="127.0.0.1", port=0)
    try:
        before = await ask(running, "bob.b.test", "CERT", tcp=False)
        source.entries.append(("bob@b.test", BOB.ref))
        after = await ask(running, "bob.b.test", "CERT", tcp=False)
    finally:
        await running.close()
    assert before.rcode() == dns.rcode.NXDOMAIN
    assert certs_in(after) == [BOB.der]


async def test_a_zone_is_read_once_per_refresh_interval():
    """A burst of queries costs the source one read; a change shows after ``refresh`` seconds."""

    class Counting:
        def __init__(self) -> None:
            self.reads = 0
            self.entries: list[tuple[str, CertRef]] = [("bob@b.test", BOB.ref)]

        async def published_certificates(self, domain: str) -> list[tuple[str, CertRef]]:
            self.reads += 1
            await asyncio.sleep(0.01)  # a database round trip, during which more queries arrive
            return list(self.entries)

    now = [1000.0]
    source = Counting()
    responder = DnsResponder(dns_settings({"zones": ["b.test"], "refresh": 5}), source, clock=lambda: now[0])
    query = dns.message.make_query("bob.b.test", "CERT").to_wire()
    answers = await asyncio.gather(*(responder.respond(query, over_tcp=True) for _ in range(50)))
    assert source.reads == 1
    assert all(certs_in(dns.message.from_wire(a)) == [BOB.der] for a in answers if a)
    source.entries.clear()
    now[0] += 4.9
    assert certs_in(dns.message.from_wire(await responder.respond(query, over_tcp=True) or b"")) == [BOB.der]
    now[0] += 0.2
    after = dns.message.from_wire(await responder.respond(query, over_tcp=True) or b"")
    assert (after.rcode(), source.reads) == (dns.rcode.NXDOMAIN, 2)


async def test_store_failure_is_servfail():
    class Broken:
        async def published_certificates(self, domain: str) -> list[tuple[str, CertRef]]:
            raise RuntimeError("database is down")

    responder = DnsResponder(dns_settings({"zones": ["b.test"]}), Broken())
    wire = await responder.respond(dns.message.make_query("bob.b.test", "CERT").to_wire(), over_tcp=False)
    assert wire is not None
    assert dns.message.from_wire(wire).rcode() == dns.rcode.SERVFAIL


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (b"\x12\x34" + b"\x01\x00" + b"\x00\x01" + b"\x00" * 6 + b"\xff\xff", "FORMERR"),  # question cut short
        (b"\x12", None),  # not even a header: nothing to answer
        (dns.message.make_response(dns.message.make_query("b.test", "SOA")).to_wire(), None),  # a response
    ],
    ids=["garbled-question", "short", "a-response"],
)
async def test_malformed_queries(wire, expected):
    responder = DnsResponder(dns_settings({"zones": ["b.test"]}), StaticPublished())
    out = await responder.respond(wire, over_tcp=False)
    if expected is None:
        assert out is None
    else:
        assert out is not None and out[:2] == wire[:2]
        assert dns.rcode.to_text(out[3] & 0x0F) == expected


async def test_other_opcodes_not_implemented():
    q = dns.message.make_query("b.test", "SOA")
    q.set_opcode(dns.opcode.NOTIFY)
    responder = DnsResponder(dns_settings({"zones": ["b.test"]}), StaticPublished())
    out = await responder.respond(q.to_wire(), over_tcp=False)
    assert out is not None and dns.message.from_wire(out).rcode() == dns.rcode.NOTIMP


# --- Knot's kdig ---------------------------------------------------------------------


async def kdig(server, *args: str) -> str:
    """kdig runs as a subprocess without blocking the loop the responder answers on."""
    proc = await asyncio.create_subprocess_exec(
        require_server_binary("kdig"), "-p", str(server.port), "@127.0.0.1", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def short_certs(output: str) -> list[bytes]:
    # +short prints "PKIX 0 0 <base64, possibly split by spaces>"
    return [base64.b64decode("".join(line.split()[3:])) for line in output.splitlines() if line.strip()]


@pytest.mark.interop
@pytest.mark.parametrize("transport", [("+notcp", "+bufsize=1232"), ("+tcp",)], ids=["udp", "tcp"])
async def test_kdig_reads_our_cert_records(server, transport):
    assert short_certs(await kdig(server, *transport, "+short", "bob.b.test", "CERT")) == [BOB.der]
    assert short_certs(await kdig(server, *transport, "+short", "b.test", "CERT")) == [ORG.der]


@pytest.mark.interop
async def test_kdig_falls_back_to_tcp_for_a_4096_bit_certificate(server, big):
    out = await kdig(server, "+notcp", "+bufsize=1232", "+ignore", "big.b.test", "CERT")
    assert "status: NOERROR" in out and "flags: qr aa tc" in out.lower()
    # without +notcp/+ignore kdig retries a truncated answer over TCP
    assert short_certs(await kdig(server, "+bufsize=1232", "+short", "big.b.test", "CERT")) == [big.der]


@pytest.mark.interop
@pytest.mark.parametrize(
    ("args", "status"),
    [
        (("nobody.b.test", "CERT"), "NXDOMAIN"),
        (("bob.b.test", "A"), "NOERROR"),
        (("example.com", "CERT"), "REFUSED"),
    ],
    ids=["nxdomain", "nodata", "refused"],
)
async def test_kdig_negative_answers(server, args, status):
    out = await kdig(server, *args)
    assert f"status: {status}" in out
    if status != "REFUSED":
        assert "flags: qr aa" in out.lower()


# --- settings and sources ----------------------------------------------------------------


def test_owner_names_follow_item_16():
    assert owner_name("Bob@B.test") == dns.name.from_text("bob.b.test")
    assert owner_name("john.smith@b.test") == dns.name.from_text("john.smith.b.test")
    assert owner_name("b.test") == dns.name.from_text("b.test")


def test_static_source_publishes_each_cert_under_what_it_names():
    source = StaticPublished.of([BOB.ref, ORG.ref])
    assert sorted(o for o, _ in source.entries) == ["b.test", "bob@b.test"]


async def test_load_published_reads_pem_files(tmp_path):
    (tmp_path / "bob.pem").write_bytes(BOB.pem)
    source = load_published([tmp_path / "bob.pem"])
    assert await source.published_certificates("b.test") == [("bob@b.test", BOB.ref)]
    assert await source.published_certificates("c.test") == []


@pytest.mark.parametrize(
    "table",
    [
        {"listen": "localhost:53"},
        {"listen": "127.0.0.1:99999"},
        {"zones": "b.test"},
        {"ttl": -1},
        {"negative_ttl": True},
        {"nameserver_addresses": ["ns1"]},
        {"zone": ["b.test"]},
    ],
    ids=["hostname", "port-range", "zones-not-list", "negative-ttl", "bool-ttl", "bad-address", "unknown-key"],
)
def test_settings_errors_name_the_key(table):
    with pytest.raises(DnsSettingsError) as info:
        dns_settings(table)
    assert "dns." in str(info.value) or "dns:" in str(info.value)


def test_settings_defaults():
    s = dns_settings({"zones": ["B.Test."], "listen": "[::1]:5353"})
    assert (s.zones, s.host, s.port, s.enabled) == (("b.test",), "::1", 5353, False)


def test_ci_fails_rather_than_skips_without_kdig(monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception):
        require_server_binary("no-such-dns-tool")
    assert os.environ["CI"] == "true"


async def test_udp_queries_in_flight_are_bounded(monkeypatch):
    """Past the bound, datagrams are dropped (clients retry) rather than queued without limit."""
    import gateway.publish.responder as responder_module

    monkeypatch.setattr(responder_module, "MAX_UDP_IN_FLIGHT", 2)
    release = asyncio.Event()

    class Slow:
        async def published_certificates(self, domain: str) -> list[tuple[str, CertRef]]:
            await release.wait()
            return [("bob@b.test", BOB.ref)]

    running = await start_responder(dns_settings({"zones": ["b.test"]}), Slow(), host="127.0.0.1", port=0)
    loop = asyncio.get_running_loop()
    answers: list[bytes] = []

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr) -> None:
            answers.append(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", running.port))
    try:
        for _ in range(5):
            transport.sendto(dns.message.make_query("bob.b.test", "CERT", use_edns=0, payload=1232).to_wire())
        await asyncio.sleep(0.2)
        assert len(running.tasks) == 2
        release.set()
        await asyncio.sleep(0.2)
        assert len(answers) == 2 and not running.tasks
    finally:
        transport.close()
        await running.close()


# --- any bytes ------------------------------------------------------------------------------

_FUZZ_RESPONDER = DnsResponder(dns_settings({"zones": ["b.test"]}), StaticPublished.of([BOB.ref, ORG.ref]))
_VALID = dns.message.make_query("bob.b.test", "CERT", use_edns=0, payload=1232).to_wire()


def _mutations() -> st.SearchStrategy[bytes]:
    flips = st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=6)
    mutated = flips.map(lambda fs: bytes(_mutate(_VALID, fs)))
    return st.one_of(st.binary(max_size=600), mutated, st.binary(max_size=40).map(lambda b: _VALID + b))


def _mutate(data: bytes, flips: list[tuple[int, int]]) -> bytearray:
    out = bytearray(data)
    for i, v in flips:
        out[i] = v
    return out


@settings(max_examples=400, deadline=None)
@given(wire=_mutations(), over_tcp=st.booleans())
def test_any_bytes_get_nothing_or_a_well_formed_answer(wire, over_tcp):
    """The responder never raises on what arrives; whatever it sends parses and fits the transport."""
    out = asyncio.run(_FUZZ_RESPONDER.respond(wire, over_tcp=over_tcp))
    if out is None:
        return
    assert out[:2] == wire[:2]  # the id echoed
    assert len(out) <= (65_535 if over_tcp else 1232)
    reply = dns.message.from_wire(out)
    assert reply.flags & dns.flags.QR
