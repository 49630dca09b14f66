"""The responder serves what the database holds: a key added with LocalDomains
is answered at once, address-bound at ``local.domain`` and org-bound at the
domain (Direct item 16), on SQLite and (with the postgres marker) PostgreSQL."""

from __future__ import annotations

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype

from gateway.domains import LocalDomains
from gateway.publish import dns_settings, start_responder
from tests.pki import NOW, hisp
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures

B = hisp("b.test")
BOB = B.address("bob")
JOHN = B.address("john.smith")


async def _cert(port: int, name: str) -> tuple[int, list[bytes]]:
    q = dns.message.make_query(name, "CERT", use_edns=0, payload=1232)
    r, _ = await dns.asyncquery.udp_with_fallback(q, "127.0.0.1", port=port, timeout=2)
    return r.rcode(), [rd.certificate for rrset in r.answer if rrset.rdtype == dns.rdatatype.CERT for rd in rrset]


async def test_database_keys_are_published(store):
    domains = LocalDomains(store)
    settings = dns_settings({"zones": ["b.test"], "refresh": 0})  # read the database on every query
    running = await start_responder(settings, domains, host="127.0.0.1", port=0)
    try:
        assert await _cert(running.port, "bob.b.test") == (dns.rcode.NXDOMAIN, [])
        await domains.add_key("b.test", B.org.pair, at=NOW)
        await domains.add_key("b.test", BOB.pair, at=NOW, address="bob@b.test")
        await domains.add_key("b.test", JOHN.pair, at=NOW, address="john.smith@b.test")
        assert await _cert(running.port, "b.test") == (dns.rcode.NOERROR, [B.org.der])
        assert await _cert(running.port, "bob.b.test") == (dns.rcode.NOERROR, [BOB.der])
        assert await _cert(running.port, "john.smith.b.test") == (dns.rcode.NOERROR, [JOHN.der])
        # an address without its own key has no name of its own
        assert await _cert(running.port, "alice.b.test") == (dns.rcode.NXDOMAIN, [])
    finally:
        await running.close()
