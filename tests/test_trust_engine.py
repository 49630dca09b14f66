"""TrustService.decide on the generated PKI, at a pinned time, with a real HTTP
server on 127.0.0.1 for CRLs, AIA and OCSP."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from anchors.source import AnchorSet, Direction
from gateway.core.certs import CertRef
from trust import (
    Check,
    Policy,
    Purpose,
    TrustService,
)

from .pki import NOW, issue
from .trust_pki import DAY, FUTURE, PAST, World, build_world, decide, resigned, role_key, service

# --- trusted paths ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "bound_to", "anchor"),
    [
        ("alice", "alice@a.test", "root"),
        ("alice", "ALICE@A.TEST", "root"),
        ("org", "anyone@a.test", "root"),
        ("org", "a.test", "root"),
        ("alice", "alice@a.test", "inter"),
    ],
    ids=["address-bound", "address-case-insensitive", "org-bound-address", "org-bound-domain", "intermediate-as-anchor"],
)
async def test_trusted(http, fetcher, who, bound_to, anchor):
    w = build_world(http)
    svc = service(fetcher, getattr(w, anchor))
    d = await decide(svc, getattr(w, who), bound_to, chain=[w.inter])
    assert d.trusted, d
    expected = (getattr(w, who).ref, w.inter.ref) + ((w.root.ref,) if anchor == "root" else ())
    assert d.path == expected
    assert d.failure is None and "incoming anchors of b.test" in d.anchors


# --- failures, each naming the certificate that failed ---------------------------


def _case(w: World, name: str):
    """(leaf, chain, bound_to, purpose, expected check, failing certificate)"""
    S, E = Purpose.SIGNING, Purpose.ENCRYPTION
    cases = {
        "wrong-binding": lambda: (w.alice, [w.inter], "mallory@a.test", S, Check.BINDING, w.alice),
        "org-binding-other-domain": lambda: (w.org, [w.inter], "bob@b.test", S, Check.BINDING, w.org),
        "no-digital-signature": lambda: (
            w.leaf(digital_signature=False), [w.inter], "carol@a.test", S, Check.KEY_USAGE, None),
        "no-key-encipherment": lambda: (
            w.leaf(key_encipherment=False), [w.inter], "carol@a.test", E, Check.KEY_USAGE, None),
        "eku-server-auth-only": lambda: (
            w.leaf(eku=(ExtendedKeyUsageOID.SERVER_AUTH,)), [w.inter], "carol@a.test", S, Check.EXTENDED_KEY_USAGE, None),
        "sha1-leaf": lambda: (
            resigned(w.leaf()), [w.inter], "carol@a.test", S, Check.WEAK_SIGNATURE_ALGORITHM, None),
        "rsa-1024-leaf": lambda: (
            w.leaf(key=role_key("small", "rsa", 1024)), [w.inter], "carol@a.test", S, Check.KEY_SIZE, None),
        "ec-p521-leaf": lambda: (
            w.leaf(key=role_key("p521", "ec", 521), key_kind="ec"), [w.inter], "carol@a.test", S, Check.KEY_SIZE, None),
        "expired-leaf": lambda: (
            w.leaf(not_before=PAST, not_after=NOW - DAY), [w.inter], "carol@a.test", S, Check.EXPIRED, None),
        "not-yet-valid-leaf": lambda: (
            w.leaf(not_before=NOW + DAY, not_after=FUTURE), [w.inter], "carol@a.test", S, Check.NOT_YET_VALID, None),
        "missing-intermediate": lambda: (w.alice, [], "alice@a.test", S, Check.CHAIN, w.alice),
    }
    leaf, chain, bound_to, purpose, check, failing = cases[name]()
    return leaf, chain, bound_to, purpose, check, failing or leaf


FAILURES = [
    "wrong-binding", "org-binding-other-domain", "no-digital-signature", "no-key-encipherment",
    "eku-server-auth-only", "sha1-leaf", "rsa-1024-leaf", "ec-p521-leaf", "expired-leaf",
    "not-yet-valid-leaf", "missing-intermediate",
]


@pytest.mark.parametrize("name", FAILURES)
async def test_leaf_failures(http, fetcher, name):
    w = build_world(http)
    leaf, chain, bound_to, purpose, check, failing = _case(w, name)
    d = await decide(service(fetcher, w.root), leaf, bound_to, chain=chain, purpose=purpose)
    assert not d.trusted
    assert d.failure is not None
    assert d.failure.check is check, d.failure
    assert d.failure.certificate == failing.ref
    assert not d.failure.temporary
    assert d.path == ()


@pytest.mark.parametrize(
    ("where", "validity", "check"),
    [
        ("inter", {"not_before": PAST, "not_after": NOW - DAY}, Check.EXPIRED),
        ("inter", {"not_before": NOW + DAY, "not_after": FUTURE}, Check.NOT_YET_VALID),
        ("root", {"not_before": PAST, "not_after": NOW - DAY}, Check.EXPIRED),
        ("root", {"not_before": NOW + DAY, "not_after": FUTURE}, Check.NOT_YET_VALID),
    ],
    ids=["expired-intermediate", "not-yet-valid-intermediate", "expired-anchor", "not-yet-valid-anchor"],
)
async def test_validity_anywhere_in_chain(http, fetcher, where, validity, check):
    w = build_world(http, **{f"{where}_kw": validity})
    d = await decide(service(fetcher, w.root), w.alice, chain=[w.inter])
    assert d.failure is not None and d.failure.check is check, d
    assert d.failure.certificate == getattr(w, where).ref


async def test_sha1_intermediate_refused(http, fetcher):
    w = build_world(http)
    d = await decide(service(fetcher, w.root), w.alice, chain=[resigned(w.inter)])
    assert d.failure is not None and d.failure.check is Check.WEAK_SIGNATURE_ALGORITHM
    assert d.failure.certificate == resigned(w.inter).ref


async def test_sha1_allowed_by_policy(http, fetcher):
    w = build_world(http)
    leaf = resigned(w.leaf())
    d = await decide(service(fetcher, w.root, policy=Policy(allow_sha1=True)), leaf, "carol@a.test", chain=[w.inter])
    assert d.trusted, d


async def test_no_binding_skips_only_the_binding(http, fetcher):
    w = build_world(http)
    svc = service(fetcher, w.root)
    assert (await decide(svc, w.alice, "other@x.test", chain=[w.inter], binding=False)).trusted
    leaf = w.leaf(digital_signature=False)
    d = await decide(svc, leaf, "other@x.test", chain=[w.inter], binding=False)
    assert d.failure is not None and d.failure.check is Check.KEY_USAGE


async def test_untrusted_root(http, fetcher):
    w = build_world(http)
    other = issue("Other Root CA", ca=True, key=role_key("other-root"))
    d = await decide(service(fetcher, other), w.alice, chain=[w.inter, w.root])
    assert d.failure is not None and d.failure.check is Check.UNTRUSTED_ROOT, d
    assert d.failure.certificate == w.root.ref


async def test_intermediate_not_carried_without_aia_is_a_chain_failure(http, fetcher):
    w = build_world(http)
    d = await decide(service(fetcher, w.root), w.alice)
    assert d.failure is not None and d.failure.check is Check.CHAIN
    assert "Intermediate" in d.failure.detail


async def test_bad_signature_in_chain(http, fetcher):
    """A leaf claiming the intermediate as issuer but signed by another key."""
    w = build_world(http)
    impostor = issue("Test Intermediate CA", ca=True, key=role_key("impostor"))
    forged = issue("carol@a.test", issuer=impostor, email="carol@a.test", key=role_key("leaf2"))
    d = await decide(service(fetcher, w.root), forged, "carol@a.test", chain=[w.inter])
    assert d.failure is not None and d.failure.check is Check.CHAIN, d
    assert d.failure.certificate == forged.ref


# --- policy OIDs ----------------------------------------------------------------

COMMUNITY = "1.3.6.1.4.1.41179.0.1.2"


@pytest.mark.parametrize(
    ("asserted", "trusted"), [((COMMUNITY,), True), (("1.2.3.4",), False), ((), False)],
    ids=["community-policy", "other-policy", "no-policy"],
)
async def test_required_policy_oid(http, fetcher, asserted, trusted):
    w = build_world(http)
    leaf = w.leaf(policies=asserted)
    svc = service(fetcher, w.root, policy=Policy(required_policy_oids=frozenset({COMMUNITY})))
    d = await decide(svc, leaf, "carol@a.test", chain=[w.inter])
    assert d.trusted is trusted, d
    if not trusted:
        assert d.failure is not None and d.failure.check is Check.POLICY_OID


async def test_required_eku(http, fetcher):
    w = build_world(http)
    svc = service(fetcher, w.root, policy=Policy(required_eku=frozenset({ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string})))
    plain = await decide(svc, w.alice, chain=[w.inter])
    assert plain.failure is not None and plain.failure.check is Check.EXTENDED_KEY_USAGE
    leaf = w.leaf(eku=(ExtendedKeyUsageOID.EMAIL_PROTECTION,))
    assert (await decide(svc, leaf, "carol@a.test", chain=[w.inter])).trusted


# --- anchors per domain and direction ---------------------------------------------


@dataclass(frozen=True)
class OneDomainAnchors:
    """Anchors for one (domain, direction) only: an ``AnchorSource`` like the store's."""

    domain: str
    direction: Direction
    certs: tuple[CertRef, ...]

    async def anchors(self, domain: str, direction: Direction) -> AnchorSet:
        held = self.certs if (domain, direction) == (self.domain, self.direction) else ()
        return AnchorSet.of(domain, direction, held)


@pytest.mark.parametrize(
    ("local_domain", "direction", "trusted"),
    [
        ("b.test", Direction.INCOMING, True),
        ("c.test", Direction.INCOMING, False),
        ("b.test", Direction.OUTGOING, False),
    ],
    ids=["own-domain-incoming", "another-domain", "other-direction"],
)
async def test_anchors_apply_to_their_domain_and_direction(http, fetcher, local_domain, direction, trusted):
    w = build_world(http)
    svc = TrustService(OneDomainAnchors("b.test", Direction.INCOMING, (w.root.ref,)), fetcher)
    d = await decide(svc, w.alice, chain=[w.inter], local_domain=local_domain, direction=direction)
    assert d.trusted is trusted, d
    assert d.local_domain == local_domain and d.direction is direction
    if not trusted:
        assert d.failure is not None and d.failure.check is Check.NO_ANCHORS


async def test_anchors_of_another_domain_do_not_chain(http, fetcher):
    """Another domain's anchors are present but do not reach this chain."""
    w = build_world(http)
    other = issue("Other Root CA", ca=True, key=role_key("other-root"))

    class Two:
        async def anchors(self, domain: str, direction: Direction) -> AnchorSet:
            return AnchorSet.of(domain, direction, (w.root.ref,) if domain == "b.test" else (other.ref,))

    svc = TrustService(Two(), fetcher)
    assert (await decide(svc, w.alice, chain=[w.inter], local_domain="b.test")).trusted
    d = await decide(svc, w.alice, chain=[w.inter], local_domain="c.test")
    assert d.failure is not None and d.failure.check in (Check.CHAIN, Check.UNTRUSTED_ROOT)


async def test_end_entity_used_as_a_ca_breaks_the_path(http, fetcher):
    w = build_world(http)
    not_a_ca = issue("Not A CA", issuer=w.inter, key=role_key("dave"), email="dave@a.test")
    leaf = issue("carol@a.test", issuer=not_a_ca, email="carol@a.test", key=role_key("leaf2"))
    d = await decide(service(fetcher, w.root), leaf, "carol@a.test", chain=[not_a_ca, w.inter])
    assert d.failure is not None, d
    assert d.failure.check in (Check.PATH_CONSTRAINTS, Check.CHAIN), d.failure
    assert d.failure.certificate == not_a_ca.ref


# --- pyhanko's errors, classified by their class and the path they carry -----------


@pytest.mark.parametrize(
    ("min_bits", "expected"),
    [(2048, Check.KEY_SIZE), (1024, None)],
    ids=["small-anchor-key-refused", "allowed-by-policy"],
)
async def test_an_anchor_key_below_the_policy_is_named(http, fetcher, min_bits, expected):
    """Direct's own checks see the leaf and the CA certificates; an anchor's key
    is judged when pyhanko verifies what it signed (DisallowedAlgorithmError),
    and the failure names the anchor, whose key it is."""
    small = issue("Small Root CA", ca=True, key=role_key("small-root", "rsa", 1024))
    inter = issue("Small Intermediate CA", issuer=small, ca=True, key=role_key("inter"))
    leaf = issue("carol@a.test", issuer=inter, email="carol@a.test", key=role_key("leaf2"))
    d = await decide(service(fetcher, small, policy=Policy(min_rsa_bits=min_bits)), leaf, "carol@a.test", chain=[inter])
    if expected is None:
        assert d.trusted, d
        return
    assert d.failure is not None and d.failure.check is expected, d
    assert d.failure.certificate == small.ref
    assert "1024 bits" in d.failure.detail


async def test_a_forged_intermediate_is_a_chain_failure_on_that_certificate(http, fetcher):
    """A plain PathValidationError is a bad signature only if a signature on the
    path does not verify (checked again with cryptography), whatever its text."""
    w = build_world(http)
    der = bytearray(w.inter.der)
    der[-1] ^= 0x01  # the last byte of the signature: same name, key and AKI, signature broken
    forged = CertRef(bytes(der))
    d = await w_decide(service(fetcher, w.root), w, forged)
    assert d.failure is not None and d.failure.check is Check.CHAIN, d
    assert d.failure.certificate == forged
    assert "signature" in d.failure.detail


async def w_decide(svc: TrustService, w: World, intermediate: CertRef):
    return await svc.decide(
        w.alice.ref, purpose=Purpose.SIGNING, bound_to="alice@a.test", local_domain="b.test",
        direction=Direction.INCOMING, at=NOW, intermediates=[intermediate],
    )
