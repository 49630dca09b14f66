"""Fetches go only to public addresses unless configured otherwise (issue 7 section 4).

AIA, CRL, OCSP and DNS CERT URLs are written by peers; the fetcher checks
the address it actually connects to, after resolving the name and after each
redirect. The server below runs on loopback, so every refusal is also proven
by the server never having been reached.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.common.destinations import AddressClass, Destinations, classify, parse_networks
from trust import FetchError, FetchProblem, HttpFetcher, settings_from_mapping
from trust.fetch import MAX_REDIRECTS

from .http_servers import LOOPBACK_ALLOWED

ADDRESSES = {
    "loopback": ("127.0.0.1", AddressClass.LOOPBACK),
    "loopback-other": ("127.8.9.10", AddressClass.LOOPBACK),
    "rfc1918-10": ("10.1.2.3", AddressClass.PRIVATE),
    "rfc1918-172": ("172.16.0.1", AddressClass.PRIVATE),
    "rfc1918-192": ("192.168.1.1", AddressClass.PRIVATE),
    "cloud-metadata": ("169.254.169.254", AddressClass.LINK_LOCAL),
    "cgnat": ("100.64.0.1", AddressClass.SHARED),
    "multicast": ("224.0.0.251", AddressClass.MULTICAST),
    "unspecified": ("0.0.0.0", AddressClass.UNSPECIFIED),
    "broadcast": ("255.255.255.255", AddressClass.RESERVED),
    "v6-loopback": ("::1", AddressClass.LOOPBACK),
    "v6-unspecified": ("::", AddressClass.UNSPECIFIED),
    "v6-ula": ("fd12:3456::1", AddressClass.PRIVATE),
    "v6-link-local": ("fe80::1", AddressClass.LINK_LOCAL),
    "v6-multicast": ("ff02::1", AddressClass.MULTICAST),
    "v4-mapped-loopback": ("::ffff:127.0.0.1", AddressClass.LOOPBACK),
    "v4-mapped-metadata": ("::ffff:169.254.169.254", AddressClass.LINK_LOCAL),
    "nat64-metadata": ("64:ff9b::a9fe:a9fe", AddressClass.LINK_LOCAL),
    "6to4-private": ("2002:0a00:0001::1", AddressClass.PRIVATE),
    "v4-compatible": ("::7f00:1", AddressClass.RESERVED),
    "public-v4": ("93.184.215.14", None),
    "public-v6": ("2606:4700:4700::1111", None),
    "v4-mapped-public": ("::ffff:8.8.8.8", None),
}


@pytest.mark.parametrize(("address", "kind"), ADDRESSES.values(), ids=ADDRESSES.keys())
def test_address_classes(address, kind):
    assert classify(ipaddress.ip_address(address)) is kind


@given(st.integers(0, 2**32 - 1))
def test_an_ipv6_form_of_an_ipv4_address_is_judged_as_that_address(n):
    """IPv4-mapped (RFC 4291 2.5.5.2), NAT64 (RFC 6052) and 6to4 (RFC 3056) reach the IPv4 address inside."""
    v4 = ipaddress.IPv4Address(n)
    forms = (
        ipaddress.IPv6Address(0xFFFF << 32 | n),
        ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | n),
        ipaddress.IPv6Address(0x2002 << 112 | n << 80 | 1),
    )
    assert all(classify(v6) is classify(v4) for v6 in forms)


def test_allow_list_opens_only_its_networks():
    allowed = Destinations.allowing(["127.0.0.1/32", "10.20.0.0/16"])
    ip = ipaddress.ip_address
    assert allowed.refused(ip("127.0.0.1")) is None
    assert allowed.refused(ip("::ffff:127.0.0.1")) is None  # the same address, mapped
    assert allowed.refused(ip("10.20.3.4")) is None
    assert allowed.refused(ip("127.0.0.2")) is AddressClass.LOOPBACK
    assert allowed.refused(ip("10.21.0.1")) is AddressClass.PRIVATE
    assert allowed.refused(ip("169.254.169.254")) is AddressClass.LINK_LOCAL
    assert Destinations.anywhere().refused(ip("169.254.169.254")) is None


@pytest.fixture
async def public_only():
    f = HttpFetcher(timeout=2)
    yield f
    await f.close()


REFUSED = {
    "loopback": ("http://127.0.0.1:{port}/ok", AddressClass.LOOPBACK),
    "loopback-by-name": ("http://localhost:{port}/ok", AddressClass.LOOPBACK),
    "loopback-legacy-form": ("http://127.1:{port}/ok", AddressClass.LOOPBACK),
    "v6-loopback": ("http://[::1]:{port}/ok", AddressClass.LOOPBACK),
    "v4-mapped-loopback": ("http://[::ffff:127.0.0.1]:{port}/ok", AddressClass.LOOPBACK),
    "rfc1918": ("http://10.0.0.1/crl", AddressClass.PRIVATE),
    "cloud-metadata": ("http://169.254.169.254/latest/meta-data/", AddressClass.LINK_LOCAL),
}


@pytest.mark.parametrize(("url", "kind"), REFUSED.values(), ids=REFUSED.keys())
async def test_not_public_is_refused_by_default(http, public_only, url, kind):
    http.files["/ok"] = b"secret"
    with pytest.raises(FetchError) as info:
        await public_only.get(url.format(port=http.port), max_bytes=1000)
    assert info.value.problem is FetchProblem.FORBIDDEN_DESTINATION and info.value.refused is kind
    assert "fetch_allow" in info.value.detail
    assert not http.hits


REDIRECTED = {
    "to-another-loopback": "http://127.0.0.2:{port}/ok",
    "to-v6-loopback": "http://[::1]:{port}/ok",
    "to-cloud-metadata": "http://169.254.169.254/latest/meta-data/",
}


@pytest.mark.parametrize("location", REDIRECTED.values(), ids=REDIRECTED.keys())
async def test_a_redirect_is_checked_like_the_url(http, location):
    """The first hop is allowed (127.0.0.1 only); where it redirects is not."""
    http.files["/ok"] = b"secret"
    http.redirects["/moved"] = location.format(port=http.port)
    f = HttpFetcher(timeout=2, destinations=Destinations.allowing(["127.0.0.1/32"]))
    try:
        with pytest.raises(FetchError) as info:
            await f.get(http.url("/moved"), max_bytes=1000)
    finally:
        await f.close()
    assert info.value.problem is FetchProblem.FORBIDDEN_DESTINATION
    assert http.hits["/moved"] == 1 and http.hits["/ok"] == 0


async def test_allowed_redirects_are_followed_and_bounded(http):
    http.files["/ok"] = b"the CRL"
    http.redirects["/moved"] = "/ok"
    http.redirects["/loop"] = "/loop"
    f = HttpFetcher(timeout=2, destinations=LOOPBACK_ALLOWED)
    try:
        assert await f.get(http.url("/moved"), max_bytes=1000) == b"the CRL"
        with pytest.raises(FetchError) as info:
            await f.get(http.url("/loop"), max_bytes=1000)
    finally:
        await f.close()
    assert info.value.problem is FetchProblem.TOO_MANY_REDIRECTS
    assert http.hits["/loop"] == MAX_REDIRECTS + 1


async def test_a_name_is_resolved_once_and_connected_to_by_address(http):
    """What was checked is what is connected to; the server still sees the name."""
    http.files["/ok"] = b"the CRL"
    f = HttpFetcher(timeout=2, destinations=LOOPBACK_ALLOWED)
    try:
        assert await f.get(f"http://localhost:{http.port}/ok", max_bytes=1000) == b"the CRL"
    finally:
        await f.close()
    assert http.hosts == [f"localhost:{http.port}"]


def test_allow_list_from_configuration():
    assert settings_from_mapping({"fetch_allow": ["127.0.0.1/32", "fd00::/8"]}).fetch_destinations == Destinations.allowing(
        ["127.0.0.1/32", "fd00::/8"]
    )
    assert settings_from_mapping({}).fetch_destinations == Destinations.public()
    with pytest.raises(ValueError, match="fetch_allow"):
        settings_from_mapping({"fetch_allow": ["localhost"]})
    with pytest.raises(ValueError, match="not a network"):
        parse_networks(["10.0.0.0/33"])


async def test_aia_and_crl_on_loopback_are_not_fetched_by_default(http, public_only):
    """End to end: a certificate naming its issuer and its CRL on a private
    address gets no fetch there; the chain fails for good (no issuer) and the
    server is never reached."""
    from trust import Check

    from .trust_pki import build_world, decide, service

    w = build_world(http)
    leaf = w.leaf(aia_ca_issuers=(http.url("/inter.cer"),))
    http.files["/inter.cer"] = w.inter.der
    d = await decide(service(public_only, w.root), leaf, "carol@a.test", chain=[])
    assert d.failure is not None and d.failure.check is Check.CHAIN and not d.failure.temporary
    assert "forbidden-destination" in d.failure.detail
    d = await decide(service(public_only, w.root), w.alice, chain=[w.inter])
    assert d.failure is not None and d.failure.check is Check.REVOCATION_UNKNOWN
    assert not http.hits


async def test_dns_cert_url_on_loopback_is_not_fetched(http, public_only, tmp_path):
    from gateway.discovery.dnscert import MAX_URL_FETCHES, DnsCertSource
    from gateway.discovery.dnsclient import DnsClient
    from gateway.discovery.settings import Nameserver

    from .pki import NOW, issue
    from .servers.knot import KnotServer, url_cert_line

    bob = issue("bob@b.test", email="bob@b.test")
    http.files["/bob.der"] = bob.der
    lines = [url_cert_line("bob", http.url("/bob.der"), cert_type="IPKIX")]
    lines += [url_cert_line("many", http.url(f"/{n}.der")) for n in range(MAX_URL_FETCHES + 2)]
    knot = KnotServer(tmp_path / "knot", {"b.test": lines}).start()
    loopback = HttpFetcher(timeout=2, destinations=LOOPBACK_ALLOWED)
    try:
        dns = DnsClient((Nameserver.parse(knot.nameserver),), timeout=2)
        refused = await DnsCertSource(dns, public_only).lookup("bob.b.test", at=NOW)
        allowed = await DnsCertSource(dns, loopback).lookup("bob.b.test", at=NOW)
        many = await DnsCertSource(dns, public_only).lookup("many.b.test", at=NOW)
    finally:
        knot.stop()
        await loopback.close()
    assert not refused.certificates and "forbidden-destination" in refused.detail
    assert allowed.certificates == (bob.ref,)
    assert http.hits["/bob.der"] == 1
    assert many.detail.count("forbidden-destination") == MAX_URL_FETCHES
    assert many.detail.count(f"over {MAX_URL_FETCHES} URL records") == 2


@pytest.mark.parametrize(("name_in_certificate", "fetched"), [("localhost", True), ("other.test", False)],
                         ids=["name-matches", "name-differs"])
async def test_https_connects_to_the_checked_address_and_verifies_the_name(tmp_path, name_in_certificate, fetched):
    """Connecting to the checked IP must not lose TLS: the server is sent the
    name (SNI) and its certificate is checked against that name, not the IP."""
    import ssl

    import aiohttp
    from aiohttp import web

    from .pki import issue

    ca = issue("Fetch TLS Root", ca=True)
    server_cert = issue(name_in_certificate, issuer=ca, dns=name_in_certificate, eku=())
    (tmp_path / "cert.pem").write_bytes(server_cert.pem)
    (tmp_path / "key.pem").write_bytes(server_cert.key_pem())
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    seen: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.host)
        return web.Response(body=b"over TLS")

    app = web.Application()
    app.router.add_get("/ok", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    client_ctx = ssl.create_default_context(cadata=ca.pem.decode())
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as session:
            f = HttpFetcher(session, schemes=("https",), timeout=5, destinations=LOOPBACK_ALLOWED)
            url = f"https://localhost:{port}/ok"
            if fetched:
                assert await f.get(url, max_bytes=100) == b"over TLS"
                assert seen == [f"localhost:{port}"]
            else:
                with pytest.raises(FetchError) as info:
                    await f.get(url, max_bytes=100)
                assert info.value.problem is FetchProblem.UNREACHABLE and "certificate" in info.value.detail.lower()
                assert not seen
    finally:
        await runner.cleanup()
