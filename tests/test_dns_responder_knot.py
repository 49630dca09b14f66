"""Our responder answers as Knot DNS does, for the same zone.

Knot is a production authoritative server; both serve b.test with the same
records, and each question of the table goes to both, over UDP (with and
without EDNS0) and TCP. The rcode, the AA and TC flags, the answer's records
and the presence of the SOA in the authority section must agree. (SOA
serials and timers differ by design; they are not compared.)
"""

from __future__ import annotations

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from gateway.publish import StaticPublished, dns_settings, start_responder

from .pki import hisp, issue
from .servers.knot import KnotServer, cert_line
from .trust_pki import role_key

pytestmark = pytest.mark.interop

B = hisp("b.test")
BOB = B.address("bob", key=role_key("bob"))
JOHN = B.address("john.smith", key=role_key("john"))
BIG_CA = issue("b.test 4096-bit CA", ca=True, key=role_key("big-ca", "rsa", 4096))
BIG = issue("big@b.test", issuer=BIG_CA, email="big@b.test", key=role_key("big", "rsa", 4096))
PUBLISHED = [BOB, JOHN, B.org, BIG]


@pytest.fixture(scope="module")
def knot(tmp_path_factory):
    lines = [cert_line(owner, c.der) for c in PUBLISHED
             for owner in ([a.replace("@b.test", "") for a in c.ref.email_addresses] or ["@"])]
    server = KnotServer(tmp_path_factory.mktemp("knot"), {"b.test": lines}).start()
    yield server
    server.stop()


@pytest.fixture(name="ours")
async def ours_fixture():
    settings = dns_settings(
        {"zones": ["b.test"], "nameserver_addresses": ["127.0.0.1"], "ttl": 300, "negative_ttl": 60}
    )
    running = await start_responder(settings, StaticPublished.of(c.ref for c in PUBLISHED), host="127.0.0.1", port=0)
    yield running
    await running.close()


QUESTIONS = [
    ("bob.b.test", "CERT"),
    ("john.smith.b.test", "CERT"),
    ("b.test", "CERT"),
    ("b.test", "NS"),
    ("ns.b.test", "A"),
    ("b.test", "SOA"),
    ("nobody.b.test", "CERT"),
    ("bob.b.test", "A"),
    ("smith.b.test", "CERT"),  # an empty non-terminal: NODATA, not NXDOMAIN (RFC 8020)
    ("bob.example.com", "CERT"),
    ("big.b.test", "CERT"),
    ("b.test", "ANY"),
]
TRANSPORTS = ["udp-edns", "udp-512", "tcp"]


def _summary(r: dns.message.Message) -> dict:
    answer = {
        (rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype), rd.to_text())
        for rrset in r.answer
        if rrset.rdtype != dns.rdatatype.SOA
        for rd in rrset
    }
    return {
        "rcode": r.rcode(),
        "aa": bool(r.flags & dns.flags.AA),
        "tc": bool(r.flags & dns.flags.TC),
        "answer": answer if not r.flags & dns.flags.TC else "truncated",
        "soa_in_answer": any(rr.rdtype == dns.rdatatype.SOA for rr in r.answer),
        "soa_in_authority": any(rr.rdtype == dns.rdatatype.SOA for rr in r.authority),
    }


async def _ask(port: int, name: str, rdtype: str, transport: str) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=False if transport == "udp-512" else 0, payload=1232)
    if transport == "tcp":
        return await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=3)
    return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=3)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("name", "rdtype"), QUESTIONS, ids=[f"{n}-{t}" for n, t in QUESTIONS])
async def test_same_answer_as_knot(knot, ours, name, rdtype, transport):
    theirs = _summary(await _ask(knot.port, name, rdtype, transport))
    mine = _summary(await _ask(ours.port, name, rdtype, transport))
    assert mine == theirs
    if (name, rdtype) == ("bob.b.test", "CERT") and transport != "udp-512":
        assert mine["answer"] and mine["answer"] != "truncated"  # the comparison is not vacuous


async def test_same_badvers_as_knot(knot, ours):
    """RFC 6891 6.1.3: a query with EDNS version 1 gets BADVERS and our version, 0.
    (Opcodes other than QUERY differ on purpose: Knot answers NOTIFY and UPDATE
    NOTAUTH, its ACLs refusing them; we implement neither and say NOTIMP.)"""
    q = dns.message.make_query("b.test", "SOA", use_edns=1, payload=1232)

    async def ask(port: int) -> tuple[int, int, bool]:
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=3)
        return r.rcode(), r.edns, bool(r.answer)

    assert await ask(ours.port) == await ask(knot.port) == (dns.rcode.BADVERS, 0, False)
