"""Discovery's parts that need no server: RFC 2782 ordering, settings, the
cache, LDIF, and selection with a judge of our own protocol (the real
TrustService is used in test_discovery_scenarios.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from collections import Counter

import pytest

from gateway.common.ttl_cache import TtlCache
from gateway.discovery import (
    DiscoverySettingsError,
    Nameserver,
    SrvTarget,
    address_name,
    rfc2782_order,
    settings_from_mapping,
)
from gateway.discovery.dnsclient import NameserverError
from gateway.discovery.ldif import default_base, export_ldif, mail_of
from gateway.discovery.parsing import certificates_in

from .pki import NOW, address_leaf, org_leaf, root


def t(priority: int, weight: int, host: str) -> SrvTarget:
    return SrvTarget(priority, weight, 389, host)


def test_lowest_priority_first_whatever_the_order_given():
    order = rfc2782_order([t(20, 0, "c."), t(5, 0, "a."), t(10, 0, "b.")])
    assert [x.host for x in order] == ["a.", "b.", "c."]


def test_weight_zero_first_then_drawn_by_weight():
    # draw(0, total) == 0 takes the first in line: the weight-0 one, which RFC 2782 puts first
    order = rfc2782_order([t(1, 50, "heavy."), t(1, 0, "zero.")], draw=lambda lo, hi: lo)
    assert [x.host for x in order] == ["zero.", "heavy."]


def test_higher_weight_drawn_proportionally():
    rng = random.Random(4398)
    firsts = Counter(rfc2782_order([t(0, 10, "light."), t(0, 90, "heavy.")], draw=rng.randint)[0].host
                     for _ in range(2000))
    assert 0.85 < firsts["heavy."] / 2000 < 0.95


def test_dot_target_means_no_service():
    assert rfc2782_order([t(0, 0, ".")]) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1", Nameserver("127.0.0.1", 53)), ("127.0.0.1:5353", Nameserver("127.0.0.1", 5353)),
     ("[::1]:5300", Nameserver("::1", 5300)), ("::1", Nameserver("::1", 53))],
)
def test_nameserver_parse(text, expected):
    assert Nameserver.parse(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:x", "127.0.0.1:0", ":53", "[::1]:70000"])
def test_nameserver_refused(text):
    with pytest.raises(NameserverError):
        Nameserver.parse(text)


def test_settings_parse_and_refuse():
    s = settings_from_mapping({"nameservers": ["127.0.0.1:5353"], "dns_timeout": 1, "negative_ttl": 30, "ldap": False})
    assert s.nameservers == (Nameserver("127.0.0.1", 5353),) and s.dns_timeout == 1.0
    assert s.negative_ttl == dt.timedelta(seconds=30) and s.ldap is False
    for bad, key in [({}, "nameservers"), ({"nameservers": ["a:b"]}, "nameservers"),
                     ({"nameservers": ["a"], "dns_timeout": 0}, "dns_timeout"),
                     ({"nameservers": ["a"], "typo": 1}, "typo"), ({"nameservers": ["a"], "ldap": "yes"}, "ldap")]:
        with pytest.raises(DiscoverySettingsError) as exc:
            settings_from_mapping(bad)
        assert exc.value.key == key


def test_address_name_replaces_the_at_sign():
    assert address_name("John.Doe@Example.TEST") == "John.Doe.example.test"


def test_cache_expires_at_ttl():
    cache: TtlCache[str] = TtlCache(max_entries=2)
    cache.put("a", "1", NOW, dt.timedelta(seconds=10))
    assert cache.get("a", NOW + dt.timedelta(seconds=9)) == "1"
    assert cache.get("a", NOW + dt.timedelta(seconds=10)) is None
    for k in "bcd":
        cache.put(k, k, NOW, dt.timedelta(seconds=10))
    assert len(cache) == 2 and cache.get("b", NOW) is None


def test_pkcs7_bundle_and_pem_are_read():
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

    r = root("Parsing Root")
    leaf = address_leaf(r, "bob@p.test")
    bundle = pkcs7.serialize_certificates([leaf.cert, r.cert], Encoding.DER)
    assert set(certificates_in(bundle)) == {leaf.ref, r.ref}  # a SET OF: DER sorts it
    assert certificates_in(leaf.pem) == [leaf.ref]


def test_ldif_entries_per_address_and_domain():
    r = root("LDIF Root")
    bob, org = address_leaf(r, "bob@l.test"), org_leaf(r, "l.test")
    assert mail_of(bob.ref, "l.test") == "bob@l.test" and mail_of(org.ref, "l.test") == "l.test"
    text = export_ldif("l.test", [bob.ref, org.ref, bob.ref])
    assert default_base("l.test") == "ou=direct,dc=l,dc=test"
    assert "dn: cn=bob@l.test,ou=direct,dc=l,dc=test" in text and "dn: cn=l.test,ou=direct,dc=l,dc=test" in text
    assert text.count("userCertificate;binary::") == 2
    assert all(len(line) <= 76 for line in text.splitlines())


def test_discovered_needs_a_certificate():
    from gateway.discovery import Binding, Discovered, Source

    with pytest.raises(ValueError):
        Discovered("bob@x.test", (), Binding.ADDRESS, Source.DNS, ())


@pytest.mark.parametrize("prefix", [b"", b"-----BEGIN CERTIFICATE-----\n", b"-----BEGIN PKCS7-----\n", b"\x30\x82"])
def test_any_bytes_from_a_directory_give_certificates_or_a_typed_error(prefix):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from gateway.core.certs import KeyMaterialError

    @settings(max_examples=150, deadline=None)
    @given(st.binary(max_size=600))
    def check(data: bytes) -> None:
        with contextlib.suppress(KeyMaterialError):  # the one allowed failure
            assert certificates_in(prefix + data)

    check()
