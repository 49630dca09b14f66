"""The inbound step after open_inbound (Direct item 8), the RI vectors, and the
policy table read from configuration."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest

from anchors.source import Direction, StaticAnchors
from gateway.core import Opened, RejectReason, open_inbound
from gateway.core import Rejected as CoreRejected
from gateway.core.certs import KeyPair, load_certificates, load_private_key
from trust import (
    Accepted,
    Check,
    DomainPolicies,
    OfflineFetcher,
    Policy,
    PolicyError,
    Purpose,
    Rejected,
    RevocationUnknown,
    TrustService,
    policies_from_mapping,
    policy_from_mapping,
)
from trust import direct as direct_checks

from . import messages, smime
from .pki import NOW, Issued, issue
from .trust_pki import role_key


def _pki() -> tuple[Issued, Issued, Issued]:
    root = issue("Inbound Root CA", ca=True, key=role_key("root"))
    inter = issue("Inbound Intermediate CA", issuer=root, ca=True, key=role_key("inter"))
    alice = issue("alice@a.test", issuer=inter, email="alice@a.test", key=role_key("alice"))
    return root, inter, alice


def _opened(raw: bytes) -> Opened:
    opened = open_inbound(raw, [], at=NOW, require_encryption=False)
    assert isinstance(opened, Opened), opened
    return opened


def _signed(signer: Issued, sender: str, chain=(), wrap: bool = True) -> bytes:
    body = messages.plain(sender=sender)
    entity = smime.wrap(body) if wrap else body
    headers = f"From: {sender}\r\nTo: bob@b.test\r\nMIME-Version: 1.0\r\n".encode()
    return headers + smime.detached(entity, signer.pair, chain=chain)


async def test_signer_accepted_with_chain_carried_in_the_cms():
    root, inter, alice = _pki()
    svc = TrustService(StaticAnchors((root.ref,)), OfflineFetcher())
    verdict = await svc.check_inbound(_opened(_signed(alice, "alice@a.test", chain=[inter.ref])), recipient="bob@b.test", at=NOW)
    assert isinstance(verdict, Accepted), verdict
    d = verdict.decision
    assert d.purpose is Purpose.SIGNING and d.direction is Direction.INCOMING
    assert d.local_domain == "b.test" and d.bound_to == "alice@a.test"
    assert d.path == (alice.ref, inter.ref, root.ref)


async def test_signer_not_bound_to_the_sender_is_rejected():
    root, inter, alice = _pki()
    svc = TrustService(StaticAnchors((root.ref,)), OfflineFetcher())
    verdict = await svc.check_inbound(
        _opened(_signed(alice, "mallory@a.test", chain=[inter.ref])), recipient="bob@b.test", at=NOW
    )
    assert isinstance(verdict, Rejected)
    assert verdict.failure.check is Check.BINDING and not verdict.temporary
    assert verdict.failure.certificate == alice.ref


async def test_outer_from_is_the_fallback_when_not_wrapped():
    root, inter, alice = _pki()
    svc = TrustService(StaticAnchors((root.ref,)), OfflineFetcher())
    verdict = await svc.check_inbound(
        _opened(_signed(alice, "alice@a.test", chain=[inter.ref], wrap=False)), recipient="bob@b.test", at=NOW
    )
    assert isinstance(verdict, Accepted), verdict


ATTACKS = {
    # a trusted certificate for Mallory, and signed headers that also name Alice
    "second-from-field": (b"From: mallory@evil.test\r\nFrom: alice@a.test\r\n", RejectReason.SENDER_AMBIGUOUS),
    "second-mailbox": (b"From: mallory@evil.test, alice@a.test\r\n", RejectReason.SENDER_AMBIGUOUS),
    "from-behind-a-bare-cr": (b"From: mallory@evil.test\r\nX-Pad: 1\rFrom: alice@a.test\r\n", RejectReason.MALFORMED),
    "address-in-the-display-name": (b"From: alice@a.test <mallory@evil.test>\r\n", RejectReason.SENDER_MALFORMED),
}


@pytest.mark.parametrize(("head", "reason"), list(ATTACKS.values()), ids=list(ATTACKS))
def test_signed_headers_naming_someone_besides_the_signer_never_reach_the_binding(head, reason):
    _root, inter, _ = _pki()
    mallory = issue("mallory@evil.test", issuer=inter, email="mallory@evil.test", key=role_key("alice"))
    inner = head + b"To: bob@b.test\r\nSubject: results\r\n\r\nhi\r\n"
    raw = b"From: mallory@evil.test\r\nTo: bob@b.test\r\nMIME-Version: 1.0\r\n" + smime.detached(
        smime.wrap(inner), mallory.pair, chain=[inter.ref]
    )
    result = open_inbound(raw, [], at=NOW, require_encryption=False)
    assert isinstance(result, CoreRejected) and result.reason is reason, result


async def test_the_bound_sender_is_the_address_not_the_display_name():
    root, inter, _ = _pki()
    mallory = issue("mallory@evil.test", issuer=inter, email="mallory@evil.test", key=role_key("alice"))
    inner = b'From: "alice@a.test" <mallory@evil.test>\r\nTo: bob@b.test\r\n\r\nhi\r\n'
    raw = b"From: mallory@evil.test\r\nTo: bob@b.test\r\n" + smime.detached(smime.wrap(inner), mallory.pair)
    opened = _opened(raw)
    assert opened.sender == "mallory@evil.test"
    svc = TrustService(StaticAnchors((root.ref,)), OfflineFetcher())
    verdict = await svc.check_inbound(opened, recipient="bob@b.test", at=NOW)
    assert verdict.decision.bound_to == "mallory@evil.test"


async def test_untrusted_signer_names_the_anchor_set():
    _root, inter, alice = _pki()
    other = issue("Other Root", ca=True, key=role_key("other-root"))
    svc = TrustService(StaticAnchors((other.ref,)), OfflineFetcher())
    verdict = await svc.check_inbound(_opened(_signed(alice, "alice@a.test", chain=[inter.ref])), recipient="bob@b.test", at=NOW)
    assert isinstance(verdict, Rejected)
    assert verdict.failure.check in (Check.CHAIN, Check.UNTRUSTED_ROOT)
    assert "incoming anchors of b.test" in verdict.decision.anchors


async def test_offline_crl_declared_is_temporary():
    root, inter, _ = _pki()
    alice = issue("alice@a.test", issuer=inter, email="alice@a.test", key=role_key("alice"), crl_urls=("http://crl.a.test/i.crl",))
    svc = TrustService(StaticAnchors((root.ref,)), OfflineFetcher())
    verdict = await svc.check_inbound(_opened(_signed(alice, "alice@a.test", chain=[inter.ref])), recipient="bob@b.test", at=NOW)
    assert isinstance(verdict, Rejected) and verdict.temporary
    assert verdict.failure.check is Check.REVOCATION_UNKNOWN


# --- the Direct Project reference implementation's vectors --------------------------


@pytest.fixture
def ryan(ri_vectors):
    agent = ri_vectors / "agent"
    return KeyPair(load_private_key((agent / "ryanKey.der").read_bytes()), load_certificates((agent / "ryan.der").read_bytes())[0])


SHA1_OK = DomainPolicies(Policy(allow_sha1=True))


async def test_ri_gm2552_chains_to_its_anchor(ri_vectors):
    agent = ri_vectors / "agent"
    gm2552 = load_certificates((agent / "gm2552.der").read_bytes())[0]
    anchor = load_certificates((agent / "secureHealthEmailCACert.der").read_bytes())[0]
    at = gm2552.not_before + timedelta(days=1)
    kw = {"purpose": Purpose.SIGNING, "bound_to": "gm2552@securehealthemail.com",
          "local_domain": "securehealthemail.com", "direction": Direction.INCOMING, "at": at}
    trusted = await TrustService(StaticAnchors((anchor,)), OfflineFetcher(), SHA1_OK).decide(gm2552, **kw)
    assert trusted.trusted, trusted
    assert trusted.path == (gm2552, anchor)
    # the same certificate under the strict default: it is signed with SHA-1
    strict = await TrustService(StaticAnchors((anchor,)), OfflineFetcher()).decide(gm2552, **kw)
    assert strict.failure is not None and strict.failure.check is Check.WEAK_SIGNATURE_ALGORITHM
    other = issue("Some Other Root", ca=True, key=role_key("other-root"))
    untrusted = await TrustService(StaticAnchors((other.ref,)), OfflineFetcher(), SHA1_OK).decide(gm2552, **kw)
    assert not untrusted.trusted
    assert untrusted.failure is not None and untrusted.failure.check in (Check.CHAIN, Check.UNTRUSTED_ROOT)


async def test_ri_encrypted_message_full_inbound(ri_vectors, ryan):
    agent = ri_vectors / "agent"
    anchor = load_certificates((agent / "secureHealthEmailCACert.der").read_bytes())[0]
    raw = (agent / "EncryptedMessage2.txt").read_bytes()
    at = anchor.not_before + timedelta(days=2)
    opened = open_inbound(raw, [ryan], at=at)
    assert isinstance(opened, Opened), opened
    accepted = await TrustService(StaticAnchors((anchor,)), OfflineFetcher(), SHA1_OK).check_inbound(
        opened, recipient="ryan@securehealthemail.com", at=at
    )
    assert isinstance(accepted, Accepted), accepted
    without = await TrustService(StaticAnchors(()), OfflineFetcher(), SHA1_OK).check_inbound(
        opened, recipient="ryan@securehealthemail.com", at=at
    )
    assert isinstance(without, Rejected) and without.failure.check is Check.NO_ANCHORS


@pytest.mark.parametrize(
    ("name", "signing", "encryption"),
    [("digSigOnly", True, False), ("keyEncOnly", False, True), ("dualUse", True, True)],
    ids=["dig-sig-only", "key-enc-only", "dual-use"],
)
def test_ri_key_usage_certificates(ri_vectors, name, signing, encryption):
    cert = load_certificates((ri_vectors / "gateway" / f"{name}.der").read_bytes())[0]
    assert (direct_checks.check_key_usage(cert, Purpose.SIGNING) is None) is signing
    assert (direct_checks.check_key_usage(cert, Purpose.ENCRYPTION) is None) is encryption


# --- policy from configuration ------------------------------------------------------


def test_policy_from_mapping_defaults_are_strict():
    p = policy_from_mapping({})
    assert p == Policy()
    assert p.min_rsa_bits == 2048 and not p.allow_sha1
    assert p.revocation_unknown is RevocationUnknown.TEMPORARY


def test_policies_from_mapping_with_domain_overrides():
    table = {
        "revocation_unknown": "hard-fail",
        "required_policy_oids": ["1.3.6.1.4.1.41179.0.1.2"],
        "decision_ttl": 600,
        "domains": {"Old.Example": {"allow_sha1": True, "min-rsa-bits": 1024, "revocation_unknown": "soft-pass"}},
    }
    policies = policies_from_mapping(table)
    assert policies.default.revocation_unknown is RevocationUnknown.HARD_FAIL
    assert policies.default.decision_ttl == timedelta(minutes=10)
    old = policies.for_domain("old.example")
    assert old.allow_sha1 and old.min_rsa_bits == 1024
    assert old.revocation_unknown is RevocationUnknown.SOFT_PASS
    assert old.required_policy_oids == frozenset({"1.3.6.1.4.1.41179.0.1.2"})  # inherited
    assert policies.for_domain("new.example") == policies.default


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"allow_sha1": "yes"}, "allow_sha1"),
        ({"min_rsa_bits": 512}, "min_rsa_bits"),
        ({"revocation_unknown": "maybe"}, "revocation_unknown"),
        ({"required_eku": ["emailProtection"]}, "required_eku"),
        ({"allowed_curves": ["curve25519"]}, "allowed_curves"),
        ({"colour": "blue"}, "colour"),
        ({"domains": {"x.test": 3}}, "domains.x.test"),
    ],
    ids=["bool", "rsa-too-small", "unknown-mode", "eku-not-oid", "unknown-curve", "unknown-key", "domain-not-table"],
)
def test_policy_errors_name_the_key(table, key):
    with pytest.raises(PolicyError) as info:
        policies_from_mapping(table)
    assert info.value.key == key


async def test_build_trust_service_from_the_trust_table(tmp_path):
    from trust import build_trust_service, settings_from_mapping
    from trust.policy import PolicyError as Err

    root, inter, alice = _pki()
    from .trust_pki import crl

    (tmp_path / "i.crl").write_bytes(crl(inter, [alice]))
    table = {"allow_sha1": True, "crl_files": [str(tmp_path / "i.crl")], "fetch_timeout": 3,
             "domains": {"b.test": {"revocation_unknown": "hard-fail"}}}
    assert settings_from_mapping(table).fetch_timeout == 3.0
    svc, fetcher = build_trust_service(table, StaticAnchors((root.ref,)))
    try:
        d = await svc.decide(alice.ref, purpose=Purpose.SIGNING, bound_to="alice@a.test", local_domain="b.test",
                             direction=Direction.INCOMING, at=NOW, intermediates=[inter.ref])
        assert d.failure is not None and d.failure.check is Check.REVOKED  # the configured CRL counts
    finally:
        await fetcher.close()
    with pytest.raises(Err):
        build_trust_service({"crl_files": [str(tmp_path / "missing.crl")]}, StaticAnchors(()))


@pytest.mark.parametrize(
    ("allow", "accepted"), [(False, False), (True, True)], ids=["sha1-digest-refused", "sha1-digest-allowed"]
)
async def test_sha1_message_digest_follows_policy(allow, accepted):
    from gateway.core import Digest

    root, inter, alice = _pki()
    head = b"From: alice@a.test\r\nTo: bob@b.test\r\nMIME-Version: 1.0\r\n"
    raw = head + smime.detached(smime.wrap(messages.plain()), alice.pair, digest=Digest.SHA1, chain=[inter.ref])
    svc = TrustService(StaticAnchors((root.ref,)), OfflineFetcher(), DomainPolicies(Policy(allow_sha1=allow)))
    verdict = await svc.check_inbound(_opened(raw), recipient="bob@b.test", at=NOW)
    assert isinstance(verdict, Accepted) is accepted, verdict
    if not accepted:
        assert isinstance(verdict, Rejected) and verdict.failure.check is Check.WEAK_MESSAGE_ALGORITHM
        assert not verdict.temporary and "SHA-1" in verdict.failure.detail


@pytest.mark.parametrize(("allow", "accepted"), [(False, False), (True, True)], ids=["3des-refused", "3des-allowed"])
async def test_3des_message_follows_policy(allow, accepted):
    from dataclasses import replace

    from gateway.core import Finding, Observation

    root, inter, alice = _pki()
    opened = _opened(_signed(alice, "alice@a.test", chain=[inter.ref]))
    opened = replace(opened, findings=(Finding(Observation.WEAK_CIPHER, "content encrypted with 3DES"),))
    svc = TrustService(StaticAnchors((root.ref,)), OfflineFetcher(), DomainPolicies(Policy(allow_3des=allow)))
    verdict = await svc.check_inbound(opened, recipient="bob@b.test", at=NOW)
    assert isinstance(verdict, Accepted) is accepted, verdict


_KEYS = ["allow_sha1", "allow_3des", "min_rsa_bits", "allowed_curves", "required_policy_oids", "required_eku",
         "eku_must_allow_email", "revocation_unknown", "decision_ttl", "domains", "other"]


def test_policy_tables_fail_only_with_policy_error():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    values = st.recursive(
        st.none() | st.booleans() | st.integers(-10, 10_000) | st.text(max_size=12),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=3),
        max_leaves=6,
    )

    # Generating nested tables is slow on a loaded machine: that is not a failure.
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.dictionaries(st.sampled_from(_KEYS), values, max_size=4))
    def check(table):
        with contextlib.suppress(PolicyError):
            policies_from_mapping(table)

    check()
