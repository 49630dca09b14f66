"""Routing (static routes, MX by preference, the implicit MX, null MX) against
Knot on loopback, one delivery found through MX end to end, and the
``[outbound]`` / ``[routes]`` settings."""

from __future__ import annotations

from datetime import timedelta

import pytest

from anchors.source import StaticAnchors
from gateway.core.inbound import open_inbound
from gateway.core.outcomes import Opened
from gateway.discovery import (
    DiscoverySettings,
    DnsClient,
    Nameserver,
    TrustServiceJudge,
    build_discovery,
)
from gateway.domains import LocalDomains
from gateway.outbound import (
    Backoff,
    DeliveryWorker,
    JobKind,
    JobState,
    MxRouter,
    OutboundQueue,
    OutboundSettings,
    OutboundSettingsError,
    Routed,
    SmtpTransport,
    StaticRoute,
    TlsMode,
    Unroutable,
    outbound_settings,
)
from trust import OfflineFetcher, TrustService

from .outbound_sink import start_sink
from .pki import NOW, address_leaf, org_leaf, root
from .servers.common import free_port
from .servers.knot import KnotServer, cert_line
from .storage_fixtures import store_fixture, store_url_fixture  # noqa: F401

ZONE = "mx.test"


@pytest.fixture(scope="module")
def pki():
    b_root = root("MX Root")
    return {"root": b_root, "bob": address_leaf(b_root, f"bob@deliver.{ZONE}"), "a_org": org_leaf(root("A"), "a.test")}


@pytest.fixture(scope="module")
def knot(tmp_path_factory, pki):
    lines = [
        "pref IN MX 20 b.pref", "pref IN MX 10 a.pref", "a.pref IN A 127.0.0.1", "b.pref IN A 127.0.0.2",
        "b.pref IN AAAA ::1",
        "tie IN MX 10 x.tie", "tie IN MX 10 y.tie", "tie IN MX 5 w.tie",
        "w.tie IN A 127.0.1.1", "x.tie IN A 127.0.1.2", "y.tie IN A 127.0.1.3",
        "implicit IN A 127.0.0.3",
        "null IN MX 0 .",
        "noaddr IN MX 10 gone",
        "deliver IN MX 10 sinkhost", "sinkhost IN A 127.0.0.1",
        cert_line("bob.deliver", pki["bob"].der),
    ]
    with KnotServer(tmp_path_factory.mktemp("knot"), {ZONE: lines}) as server:
        yield server


def _router(port: int, *, static=None, timeout: float = 2.0, shuffle=lambda hosts: None) -> MxRouter:
    dns = DnsClient((Nameserver("127.0.0.1", port),), timeout=timeout)
    settings = OutboundSettings(starttls_required=frozenset({f"pref.{ZONE}"}))
    return MxRouter(dns, static=static or {}, tls_for=settings.tls_for, mx_port=2525, shuffle=shuffle)


@pytest.mark.parametrize(
    ("domain", "how", "destinations"),
    [
        ("pref", "MX", [("a.pref", "127.0.0.1"), ("b.pref", "127.0.0.2"), ("b.pref", "::1")]),
        ("tie", "MX", [("w.tie", "127.0.1.1"), ("y.tie", "127.0.1.3"), ("x.tie", "127.0.1.2")]),
        ("implicit", "implicit MX", [("implicit", "127.0.0.3")]),
    ],
    ids=["by-preference-a-then-aaaa", "equal-preferences-shuffled", "no-mx-means-the-domain-itself"],
)
async def test_mx_routes_follow_rfc_5321_section_5_1(knot, domain, how, destinations):
    route = await _router(knot.port, shuffle=lambda hosts: hosts.reverse()).route(f"{domain}.{ZONE}", at=NOW)
    assert isinstance(route, Routed) and route.how == how
    assert [(d.host, d.address) for d in route.destinations] == [(f"{h}.{ZONE}", a) for h, a in destinations]
    assert {d.port for d in route.destinations} == {2525}


async def test_starttls_policy_is_per_destination(knot):
    router = _router(knot.port)
    required = await router.route(f"pref.{ZONE}", at=NOW)
    default = await router.route(f"implicit.{ZONE}", at=NOW)
    assert {d.tls for d in required.destinations} == {TlsMode.REQUIRED}
    assert {d.tls for d in default.destinations} == {TlsMode.OPPORTUNISTIC}


@pytest.mark.parametrize(
    ("domain", "permanent", "null_mx", "says"),
    [
        ("null", True, True, "null MX"),
        ("absent", True, False, "does not exist"),
        ("noaddr", True, False, "no address for MX"),
    ],
    ids=["null-mx-accepts-no-mail", "nxdomain", "mx-host-without-address"],
)
async def test_unroutable_domains_are_final(knot, domain, permanent, null_mx, says):
    route = await _router(knot.port).route(f"{domain}.{ZONE}", at=NOW)
    assert isinstance(route, Unroutable) and (route.permanent, route.null_mx) == (permanent, null_mx)
    assert says in route.detail


async def test_dns_that_cannot_be_asked_is_temporary():
    route = await _router(free_port(), timeout=0.2).route(f"pref.{ZONE}", at=NOW)
    assert isinstance(route, Unroutable) and not route.permanent


async def test_a_static_route_comes_before_dns(knot):
    router = _router(knot.port, static={f"null.{ZONE}": StaticRoute("127.0.0.1", 2626)})
    route = await router.route(f"NULL.{ZONE}.", at=NOW)
    assert isinstance(route, Routed) and route.how == "static route"
    assert [(d.address, d.port) for d in route.destinations] == [("127.0.0.1", 2626)]


async def test_a_message_delivered_through_mx_and_a_cert_record_from_knot(knot, pki, store):
    """Discovery (CERT) and routing (MX, A) both answered by Knot; the sink sits on the MX port."""
    sink = await start_sink()
    try:
        settings = OutboundSettings(helo="gw.a.test", connect_timeout=2, command_timeout=5, data_timeout=5,
                                    lease=timedelta(minutes=5), mx_port=sink.port)
        await LocalDomains(store).add_key("a.test", pki["a_org"].pair, at=NOW)
        discovery = build_discovery(
            DiscoverySettings((Nameserver("127.0.0.1", knot.port),), dns_timeout=2.0, ldap=False),
            TrustServiceJudge(TrustService(StaticAnchors((pki["root"].ref,)), OfflineFetcher())), OfflineFetcher(),
        )
        queue = OutboundQueue(store)
        router = MxRouter(discovery.dns, static={}, tls_for=settings.tls_for, mx_port=settings.mx_port)
        worker = DeliveryWorker(queue, discovery=discovery, keys=LocalDomains(store), router=router,
                                transport=SmtpTransport(settings), settings=settings, clock=lambda: NOW, owner="w")
        message = (f"From: alice@a.test\r\nTo: bob@deliver.{ZONE}\r\nMessage-ID: <mx1@a.test>\r\n\r\nHello.\r\n")
        await queue.enqueue(None, JobKind.MAIL, "alice@a.test", f"bob@deliver.{ZONE}", message.encode(), at=NOW,
                            lifetime=timedelta(hours=1))
        [attempt] = await worker.run_once()
        assert attempt.state is JobState.SENT and attempt.detail.startswith("MX: ")
        opened = open_inbound(sink.received[0].data, [pki["bob"].pair], at=NOW)
        assert isinstance(opened, Opened) and opened.inner.message_id == "<mx1@a.test>"
    finally:
        await sink.close()


def test_settings_from_the_configuration_tables():
    s = outbound_settings(
        {"lifetime": 600, "first_retry": 30, "max_retry": 300, "starttls": "required", "batch": 4,
         "starttls_required": ["PHR.example"], "mx_port": 2525, "helo": "gw.example"},
        {"PHR.example.": "127.0.0.1:2626", "v6.example": "[::1]:2727", "plain.example": "relay.example"},
    )
    assert (s.lifetime, s.first_retry, s.max_retry, s.batch, s.mx_port, s.helo) == (
        timedelta(minutes=10), timedelta(seconds=30), timedelta(minutes=5), 4, 2525, "gw.example")
    assert s.routes == {"phr.example": StaticRoute("127.0.0.1", 2626), "v6.example": StaticRoute("::1", 2727),
                        "plain.example": StaticRoute("relay.example", 25)}
    assert s.tls_for("phr.example") is TlsMode.REQUIRED and s.tls_for("other.example") is TlsMode.REQUIRED
    defaults = outbound_settings({}, {}, helo="a.test")
    assert defaults.helo == "a.test" and defaults.tls_for("x.example") is TlsMode.OPPORTUNISTIC
    assert defaults.lifetime == timedelta(days=4) and defaults.lease.total_seconds() > defaults.delivery_timeout
    assert s.backoff == Backoff(timedelta(seconds=30), timedelta(minutes=5))
    # sessions kept 2 s by default for the next message to a destination; 0 turns reuse off
    assert (defaults.session_idle, outbound_settings({"session_idle": 0}).session_idle) == (2.0, 0.0)


@pytest.mark.parametrize(
    ("outbound", "routes", "key"),
    [
        ({"retries": 3}, {}, "[outbound] retries"),
        ({"starttls": "maybe"}, {}, "[outbound] starttls"),
        ({"lifetime": -1}, {}, "[outbound] lifetime"),
        ({"lifetime": True}, {}, "[outbound] lifetime"),
        ({"batch": 0}, {}, "[outbound] batch"),
        ({"starttls_required": "phr.example"}, {}, "[outbound] starttls_required"),
        ({"helo": "two words"}, {}, "[outbound] helo"),
        ({}, {"phr.example": "127.0.0.1:notaport"}, "[routes] phr.example"),
        ({}, {"phr.example": 2626}, "[routes] phr.example"),
        ({"lease": 60}, {}, "lease"),
        ({"session_idle": -1}, {}, "[outbound] session_idle"),
        ({"session_idle": 301}, {}, "[outbound] session_idle"),
    ],
    ids=["unknown-key", "bad-starttls", "negative", "boolean", "zero-batch", "list-expected", "bad-helo",
         "bad-port", "not-a-string", "lease-shorter-than-a-delivery", "negative-idle", "idle-past-rfc5321s-5-min"],
)
def test_settings_refuse_what_cannot_be_used(outbound, routes, key):
    with pytest.raises(OutboundSettingsError) as caught:
        outbound_settings(outbound, routes)
    assert caught.value.key == key
