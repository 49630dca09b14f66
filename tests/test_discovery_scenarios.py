"""Discovery against real servers on loopback: Knot DNS, two OpenLDAP slapd
instances, a closed port (a dead LDAP server), and an HTTP server for AIA,
CRLs and CERT URLs. Recipient certificates are judged by the real
TrustService against the outgoing anchors of our sender's domain.

Every scenario of issue 4's proof list is a row of ``SCENARIOS``: one
recipient domain under ``disc.test`` set up so that exactly one place (or
none) holds a usable certificate, and what discovery must answer.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from anchors.source import StaticAnchors
from gateway.core.certs import CertRef
from gateway.discovery import (
    Binding,
    Discovered,
    DiscoverySettings,
    DoNotSend,
    DropReason,
    Nameserver,
    Outcome,
    Source,
    TrustServiceJudge,
    build_discovery,
)
from trust import HttpFetcher, TrustService

from .http_servers import LOOPBACK_ALLOWED
from .pki import NOW, Issued, address_leaf, intermediate, issue, new_key, org_leaf, root
from .servers.common import free_port
from .servers.knot import KnotServer, cert_line, srv_line, url_cert_line
from .servers.slapd import SlapdServer, person
from .trust_pki import crl

# about 7 s here: servers start once per module, so the default run keeps it
pytestmark = pytest.mark.interop

ZONE = "disc.test"
SENDER_DOMAIN = "sender.test"
PAST = NOW - dt.timedelta(days=400)
EXPIRED = {"not_before": PAST, "not_after": NOW - dt.timedelta(days=2)}


def midpoint(low: int, high: int) -> int:
    """A deterministic RFC 2782 draw: with two servers, the heavier wins."""
    return (low + high) // 2


class _Files(BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class World:
    http_port: int
    labels: dict[CertRef, str] = field(default_factory=dict)
    zone: list[str] = field(default_factory=list)
    ldap_a: list[str] = field(default_factory=list)
    ldap_b: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def named(self, label: str, issued: Issued) -> bytes:
        self.labels[issued.ref] = label
        return issued.der


def build_world(http_port: int, ports: dict[str, int]) -> tuple[World, Issued]:
    w = World(http_port)
    anchor = root("Discovery Test Root")
    inter = intermediate(anchor, "Discovery Test Issuing CA")
    w.files["/inter.der"] = inter.der
    A, B, DEAD = ports["a"], ports["b"], ports["dead"]
    z = w.zone
    z.append("ldap IN A 127.0.0.1")

    def addr(local: str, domain: str, **kw) -> Issued:
        return address_leaf(anchor, f"{local}@{domain}.{ZONE}", **kw)

    def org(domain: str, **kw) -> Issued:
        return org_leaf(anchor, f"{domain}.{ZONE}", **kw)

    # valid address-bound certificate in DNS among expired ones
    for label, cert in [("expired-1", addr("bob", "dns-addr", **EXPIRED)), ("valid", addr("bob", "dns-addr")),
                        ("expired-2", addr("bob", "dns-addr", **EXPIRED))]:
        z.append(cert_line("bob.dns-addr", w.named(label, cert)))
    # valid org-bound in DNS
    z.append(cert_line("dns-org", w.named("org", org("dns-org"))))
    # address-bound and org-bound in LDAP
    z.append(srv_line("_ldap._tcp.ldap-addr", 0, 0, A, f"ldap.{ZONE}."))
    w.ldap_a.append(person(f"bob@ldap-addr.{ZONE}", [w.named("ldap-addr", addr("bob", "ldap-addr"))]))
    z.append(srv_line("_ldap._tcp.ldap-org", 0, 0, A, f"ldap.{ZONE}."))
    w.ldap_a.append(person(f"ldap-org.{ZONE}", [w.named("ldap-org", org("ldap-org"))], uid="ldap-org"))
    # only expired certificates in each of the four places
    z.append(cert_line("bob.all-expired", w.named("x-dns-addr", addr("bob", "all-expired", **EXPIRED))))
    z.append(cert_line("all-expired", w.named("x-dns-org", org("all-expired", **EXPIRED))))
    z.append(srv_line("_ldap._tcp.all-expired", 0, 0, A, f"ldap.{ZONE}."))
    w.ldap_a.append(person(f"bob@all-expired.{ZONE}", [w.named("x-ldap-addr", addr("bob", "all-expired", **EXPIRED))]))
    w.ldap_a.append(person(f"all-expired.{ZONE}", [w.named("x-ldap-org", org("all-expired", **EXPIRED))],
                           uid="all-expired"))
    # valid preferred over expired: DNS holds an expired one, LDAP a valid one
    z.append(cert_line("bob.prefer-valid", w.named("p-expired", addr("bob", "prefer-valid", **EXPIRED))))
    z.append(srv_line("_ldap._tcp.prefer-valid", 0, 0, A, f"ldap.{ZONE}."))
    w.ldap_a.append(person(f"bob@prefer-valid.{ZONE}", [w.named("p-valid", addr("bob", "prefer-valid"))]))
    # first-priority LDAP server dead, the next answers
    z.append(srv_line("_ldap._tcp.first-dead", 0, 0, DEAD, f"ldap.{ZONE}."))
    z.append(srv_line("_ldap._tcp.first-dead", 10, 0, B, f"ldap.{ZONE}."))
    w.ldap_b.append(person(f"bob@first-dead.{ZONE}", [w.named("second", addr("bob", "first-dead"))]))
    # SRV pointing only at a dead server
    z.append(srv_line("_ldap._tcp.dead-only", 0, 0, DEAD, f"ldap.{ZONE}."))
    # DNS and LDAP reachable but empty: names exist, no CERT; an entry without a certificate
    z += ["bob.empty IN TXT \"no certificate here\"", "empty IN TXT \"nor here\""]
    z.append(srv_line("_ldap._tcp.empty", 0, 0, A, f"ldap.{ZONE}."))
    w.ldap_a.append(person(f"bob@empty.{ZONE}", []))
    # certificates over 512 bytes: two 4096-bit keys, beyond even EDNS0's 1232 bytes, so UDP comes back truncated
    for label in ("big", "big-2"):
        big = issue(f"bob@big.{ZONE}", issuer=anchor, email=f"bob@big.{ZONE}", key=new_key("rsa", 4096), key_size=4096)
        z.append(cert_line("bob.big", w.named(label, big)))
    # lowest priority value wins (records listed highest first)
    z.append(srv_line("_ldap._tcp.priority", 20, 0, B, f"ldap.{ZONE}."))
    z.append(srv_line("_ldap._tcp.priority", 5, 0, A, f"ldap.{ZONE}."))
    w.ldap_a.append(person(f"bob@priority.{ZONE}", [w.named("priority-5", addr("bob", "priority"))]))
    w.ldap_b.append(person(f"bob@priority.{ZONE}", [w.named("priority-20", addr("bob", "priority"))]))
    # higher weight wins within a priority
    z.append(srv_line("_ldap._tcp.weight", 1, 10, A, f"ldap.{ZONE}."))
    z.append(srv_line("_ldap._tcp.weight", 1, 90, B, f"ldap.{ZONE}."))
    w.ldap_a.append(person(f"bob@weight.{ZONE}", [w.named("weight-10", addr("bob", "weight"))]))
    w.ldap_b.append(person(f"bob@weight.{ZONE}", [w.named("weight-90", addr("bob", "weight"))]))
    # a revoked certificate among valid ones (the root's CRL names it)
    crl_url = w.url("/root.crl")
    revoked = addr("bob", "revoked", crl_urls=(crl_url,))
    for label, cert in [("r-valid-1", addr("bob", "revoked", crl_urls=(crl_url,))), ("r-revoked", revoked),
                        ("r-valid-2", addr("bob", "revoked", crl_urls=(crl_url,)))]:
        z.append(cert_line("bob.revoked", w.named(label, cert)))
    w.files["/root.crl"] = crl(anchor, [revoked])
    # an intermediate only reachable through AIA
    aia = address_leaf(inter, f"bob@aia.{ZONE}", aia_ca_issuers=(w.url("/inter.der"),))
    z.append(cert_line("bob.aia", w.named("aia", aia)))
    # CERT types IPKIX and URI: the certificate is fetched from the URL
    w.files["/ipkix.der"] = w.named("ipkix", addr("bob", "ipkix"))
    z.append(url_cert_line("bob.ipkix", w.url("/ipkix.der"), cert_type="IPKIX"))
    uri = addr("bob", "uri")
    w.named("uri", uri)
    w.files["/uri.pem"] = uri.pem  # served as PEM: both encodings are read
    z.append(url_cert_line("bob.uri", w.url("/uri.pem"), cert_type="URI"))
    # wrong key usage (signing only), and issued under a root the sender's domain does not trust
    z.append(cert_line("bob.wrong-usage", w.named("sign-only", addr("bob", "wrong-usage", key_encipherment=False))))
    stranger = root("Stranger Root")
    z.append(cert_line("bob.untrusted", w.named("stranger",
                                                address_leaf(stranger, f"bob@untrusted.{ZONE}"))))
    # an intermediate published beside the leaf (no AIA): used to build the path, not encrypted to
    z.append(cert_line("bob.beside", w.named("beside", address_leaf(inter, f"bob@beside.{ZONE}"))))
    z.append(cert_line("bob.beside", inter.der))
    # bound to another address: published at bob's name, naming alice
    z.append(cert_line("bob.other", w.named("alice", addr("alice", "other"))))
    return w, anchor


@dataclass(frozen=True)
class Scenario:
    id: str
    domain: str
    selected: tuple[str, ...] = ()
    """Labels of the certificates to encrypt to; empty: DoNotSend."""
    binding: Binding | None = None
    source: Source | None = None
    dropped: tuple[tuple[str, DropReason], ...] = ()
    temporary: bool = False


SCENARIOS = [
    Scenario("dns-address-bound-among-expired", "dns-addr", ("valid",), Binding.ADDRESS, Source.DNS,
             (("expired-1", DropReason.EXPIRED), ("expired-2", DropReason.EXPIRED))),
    Scenario("dns-org-bound", "dns-org", ("org",), Binding.ORG, Source.DNS),
    Scenario("ldap-address-bound", "ldap-addr", ("ldap-addr",), Binding.ADDRESS, Source.LDAP),
    Scenario("ldap-org-bound", "ldap-org", ("ldap-org",), Binding.ORG, Source.LDAP),
    Scenario("only-expired-everywhere", "all-expired", dropped=(
        ("x-dns-addr", DropReason.EXPIRED), ("x-dns-org", DropReason.EXPIRED),
        ("x-ldap-addr", DropReason.EXPIRED), ("x-ldap-org", DropReason.EXPIRED))),
    Scenario("valid-preferred-over-expired", "prefer-valid", ("p-valid",), Binding.ADDRESS, Source.LDAP,
             (("p-expired", DropReason.EXPIRED),)),
    Scenario("first-priority-ldap-dead", "first-dead", ("second",), Binding.ADDRESS, Source.LDAP),
    Scenario("no-cert-no-srv", "nothing"),
    Scenario("srv-only-dead-server", "dead-only", temporary=True),
    Scenario("reachable-but-empty", "empty"),
    Scenario("over-512-bytes-via-tcp", "big", ("big", "big-2"), Binding.ADDRESS, Source.DNS),
    Scenario("lowest-priority-wins", "priority", ("priority-5",), Binding.ADDRESS, Source.LDAP),
    Scenario("higher-weight-wins", "weight", ("weight-90",), Binding.ADDRESS, Source.LDAP),
    Scenario("revoked-among-valid", "revoked", ("r-valid-1", "r-valid-2"), Binding.ADDRESS, Source.DNS,
             (("r-revoked", DropReason.UNTRUSTED),)),
    Scenario("intermediate-only-via-aia", "aia", ("aia",), Binding.ADDRESS, Source.DNS),
    Scenario("cert-type-ipkix-url", "ipkix", ("ipkix",), Binding.ADDRESS, Source.DNS),
    Scenario("cert-type-uri-url", "uri", ("uri",), Binding.ADDRESS, Source.DNS),
    Scenario("wrong-key-usage", "wrong-usage", dropped=(("sign-only", DropReason.WRONG_KEY_USAGE),)),
    Scenario("untrusted-root", "untrusted", dropped=(("stranger", DropReason.UNTRUSTED),)),
    Scenario("intermediate-published-beside", "beside", ("beside",), Binding.ADDRESS, Source.DNS),
    Scenario("bound-to-another-address", "other", dropped=(("alice", DropReason.OTHER_BINDING),)),
]


@dataclass
class Servers:
    world: World
    anchor: Issued
    knot: KnotServer


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[Servers]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    ports = {"a": free_port(), "b": free_port(), "dead": free_port()}
    world, anchor = build_world(httpd.server_address[1], ports)
    _Files.files = world.files
    base = tmp_path_factory.mktemp("discovery")
    started: list = []
    try:
        knot = KnotServer(base / "knot", {ZONE: world.zone}).start()
        started.append(knot)
        started.append(SlapdServer(base / "ldap-a", world.ldap_a, port=ports["a"]).start())
        started.append(SlapdServer(base / "ldap-b", world.ldap_b, port=ports["b"]).start())
        yield Servers(world, anchor, knot)
    finally:
        for server in reversed(started):
            server.stop()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
async def discovery(servers: Servers):
    fetcher = HttpFetcher(timeout=2.0, destinations=LOOPBACK_ALLOWED)
    trust = TrustService(StaticAnchors((servers.anchor.ref,)), fetcher)
    settings = DiscoverySettings((Nameserver.parse(servers.knot.nameserver),), dns_timeout=2.0, ldap_timeout=2.0)
    yield build_discovery(settings, TrustServiceJudge(trust), fetcher, draw=midpoint)
    await fetcher.close()


@pytest.mark.parametrize("case", SCENARIOS, ids=[s.id for s in SCENARIOS])
async def test_scenario(servers: Servers, discovery, case: Scenario):
    labels = servers.world.labels
    address = f"bob@{case.domain}.{ZONE}"
    result = await discovery.discover(address, local_domain=SENDER_DOMAIN, at=NOW)
    dropped = tuple((labels.get(d.certificate, "?"), d.reason) for d in result.dropped)
    assert sorted(dropped) == sorted(case.dropped), [str(d) for d in result.dropped]
    if not case.selected:
        assert isinstance(result, DoNotSend), result
        assert result.temporary is case.temporary, result.explain()
        assert result.reports, "a do-not-send result names the sources asked"
        return
    assert isinstance(result, Discovered), result.explain() if isinstance(result, DoNotSend) else result
    assert sorted(labels[c] for c in result.certificates) == sorted(case.selected)
    assert (result.binding, result.source) == (case.binding, case.source)


async def test_big_certificate_came_over_tcp(servers: Servers, discovery):
    result = await discovery.discover(f"bob@big.{ZONE}", local_domain=SENDER_DOMAIN, at=NOW)
    assert isinstance(result, Discovered)
    assert len(result.certificates[0].der) > 512
    assert result.reports[0].query.endswith("(tcp)"), result.reports[0]


async def test_do_not_send_names_every_source(servers: Servers, discovery):
    result = await discovery.discover(f"bob@all-expired.{ZONE}", local_domain=SENDER_DOMAIN, at=NOW)
    assert isinstance(result, DoNotSend)
    asked = [(r.source, r.outcome) for r in result.reports]
    assert asked == [
        (Source.DNS, Outcome.FOUND), (Source.DNS, Outcome.FOUND), (Source.DNS, Outcome.FOUND),
        (Source.LDAP, Outcome.FOUND), (Source.LDAP, Outcome.FOUND),
    ]
    text = result.explain()
    assert f"_ldap._tcp.all-expired.{ZONE}" in text and "expired" in text


async def test_dead_server_is_reported_unreachable(servers: Servers, discovery):
    result = await discovery.discover(f"bob@first-dead.{ZONE}", local_domain=SENDER_DOMAIN, at=NOW)
    assert isinstance(result, Discovered)
    outcomes = [r.outcome for r in result.reports if r.source is Source.LDAP]
    assert outcomes == [Outcome.UNREACHABLE, Outcome.FOUND]


async def test_answers_are_cached_by_ttl(servers: Servers, discovery):
    address = f"bob@dns-addr.{ZONE}"
    first = await discovery.discover(address, local_domain=SENDER_DOMAIN, at=NOW)
    again = await discovery.discover(address, local_domain=SENDER_DOMAIN, at=NOW + dt.timedelta(seconds=299))
    later = await discovery.discover(address, local_domain=SENDER_DOMAIN, at=NOW + dt.timedelta(seconds=301))
    assert not first.reports[0].cached and again.reports[0].cached and not later.reports[0].cached
    assert first.certificates == again.certificates == later.certificates


async def test_negative_answers_are_cached_briefly(servers: Servers, discovery):
    address = f"bob@nothing.{ZONE}"
    await discovery.discover(address, local_domain=SENDER_DOMAIN, at=NOW)
    again = await discovery.discover(address, local_domain=SENDER_DOMAIN, at=NOW + dt.timedelta(seconds=30))
    later = await discovery.discover(address, local_domain=SENDER_DOMAIN, at=NOW + dt.timedelta(seconds=61))
    assert all(r.cached for r in again.reports) and not any(r.cached for r in later.reports)


async def test_untrusted_when_sender_domain_has_other_anchors(servers: Servers):
    fetcher = HttpFetcher(timeout=2.0, destinations=LOOPBACK_ALLOWED)
    try:
        other = root("Some Other Root")
        trust = TrustService(StaticAnchors((other.ref,)), fetcher)
        settings = DiscoverySettings((Nameserver.parse(servers.knot.nameserver),), ldap=False)
        d = build_discovery(settings, TrustServiceJudge(trust), fetcher)
        result = await d.discover(f"bob@dns-org.{ZONE}", local_domain=SENDER_DOMAIN, at=NOW)
    finally:
        await fetcher.close()
    assert isinstance(result, DoNotSend)
    assert [d.reason for d in result.dropped] == [DropReason.UNTRUSTED]


async def test_ldap_answers_are_cached_for_the_srv_ttl(servers: Servers, discovery):
    address = f"bob@ldap-addr.{ZONE}"
    first = await discovery.discover(address, local_domain=SENDER_DOMAIN, at=NOW)
    again = await discovery.discover(address, local_domain=SENDER_DOMAIN, at=NOW + dt.timedelta(seconds=299))
    later = await discovery.discover(address, local_domain=SENDER_DOMAIN, at=NOW + dt.timedelta(seconds=301))
    assert [r.cached for r in first.reports] == [False] * 4
    # the two negative DNS answers lasted the SOA minimum (60 s); SRV and LDAP last the SRV TTL (300 s)
    assert [r.cached for r in again.reports] == [False, False, True, True]
    assert not later.reports[-1].cached
