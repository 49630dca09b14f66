"""Revocation (Direct item 10), AIA path building (item 11) and the decision cache,
against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import pytest

from anchors.source import StaticAnchors
from trust import Check, DomainPolicies, Policy, RevocationUnknown, TrustService
from trust.chain import MAX_CARRIED_CERTIFICATES
from trust.policy import RevocationRequirement

from .pki import NOW, issue
from .trust_pki import DAY, build_world, crl, decide, ocsp_response, role_key, service


@pytest.mark.parametrize("who", ["alice", "org"], ids=["address-bound", "org-bound"])
async def test_leaf_revoked_on_crl_over_http(http, fetcher, who):
    w = build_world(http)
    leaf = getattr(w, who)
    w.revoked.append(leaf)
    w.publish()
    d = await decide(service(fetcher, w.root), leaf, "alice@a.test", chain=[w.inter])
    assert d.failure is not None and d.failure.check is Check.REVOKED, d
    assert d.failure.certificate == leaf.ref
    assert not d.failure.temporary
    assert "compromised key" in d.failure.detail
    assert http.hits["/int.crl"] == 1


async def test_intermediate_revoked_on_root_crl(http, fetcher):
    w = build_world(http)
    w.revoked.append(w.inter)
    w.publish()
    d = await decide(service(fetcher, w.root), w.alice, chain=[w.inter])
    assert d.failure is not None and d.failure.check is Check.REVOKED
    assert d.failure.certificate == w.inter.ref


async def test_not_revoked_consults_both_crls(http, fetcher):
    w = build_world(http)
    d = await decide(service(fetcher, w.root), w.alice, chain=[w.inter])
    assert d.trusted
    assert http.hits["/int.crl"] == 1 and http.hits["/root.crl"] == 1


async def test_revoked_by_ocsp_responder(http, fetcher):
    w = build_world(http)
    revoked: set[int] = set()
    http.posts["/ocsp"] = lambda body: ocsp_response(body, [w.inter, w.root], revoked)
    leaf = w.leaf(crl_urls=(), ocsp_urls=(http.url("/ocsp"),))
    svc = service(fetcher, w.root)
    good = await decide(svc, leaf, "carol@a.test", chain=[w.inter])
    assert good.trusted, good
    revoked.add(leaf.cert.serial_number)
    svc = service(fetcher, w.root)  # a fresh service: no cached answer
    d = await decide(svc, leaf, "carol@a.test", chain=[w.inter])
    assert d.failure is not None and d.failure.check is Check.REVOKED, d
    assert "OCSP" in d.failure.detail and d.failure.certificate == leaf.ref


async def test_ocsp_good_does_not_hide_a_crl_revocation(http, fetcher):
    w = build_world(http)
    http.posts["/ocsp"] = lambda body: ocsp_response(body, [w.inter], set())
    leaf = w.leaf(ocsp_urls=(http.url("/ocsp"),))
    w.revoked.append(leaf)
    w.publish()
    d = await decide(service(fetcher, w.root), leaf, "carol@a.test", chain=[w.inter])
    assert d.failure is not None and d.failure.check is Check.REVOKED


@pytest.mark.parametrize(
    ("mode", "trusted", "temporary"),
    [
        (RevocationUnknown.TEMPORARY, False, True),
        (RevocationUnknown.HARD_FAIL, False, False),
        (RevocationUnknown.SOFT_PASS, True, False),
    ],
    ids=["default-temporary", "hard-fail", "soft-pass"],
)
async def test_crl_server_down(http, fetcher, mode, trusted, temporary):
    w = build_world(http)
    down = "http://127.0.0.1:9/int.crl"  # discard port: nothing listens
    leaf = w.leaf(crl_urls=(down,))
    d = await decide(service(fetcher, w.root, policy=Policy(revocation_unknown=mode)), leaf, "carol@a.test", chain=[w.inter])
    assert d.trusted is trusted, d
    if trusted:
        assert [f.check for f in d.waived] == [Check.REVOCATION_UNKNOWN]
    else:
        assert d.failure is not None and d.failure.check is Check.REVOCATION_UNKNOWN
        assert d.failure.temporary is temporary
        assert d.failure.certificate == leaf.ref and "127.0.0.1:9" in d.failure.detail


async def test_crl_missing_404_is_temporary(http, fetcher):
    w = build_world(http)
    leaf = w.leaf(crl_urls=(http.url("/nowhere.crl"),))
    d = await decide(service(fetcher, w.root), leaf, "carol@a.test", chain=[w.inter])
    assert d.failure is not None and d.failure.check is Check.REVOCATION_UNKNOWN and d.temporary
    assert "HTTP 404" in d.failure.detail


async def test_crl_garbage_is_unknown(http, fetcher):
    w = build_world(http)
    http.files["/int.crl"] = b"not a crl"
    d = await decide(service(fetcher, w.root), w.alice, chain=[w.inter])
    assert d.failure is not None and d.failure.check is Check.REVOCATION_UNKNOWN


async def test_stale_crl_is_unknown(http, fetcher):
    w = build_world(http)
    http.files["/int.crl"] = crl(w.inter, next_update=NOW - DAY, this_update=NOW - 8 * DAY)
    d = await decide(service(fetcher, w.root), w.alice, chain=[w.inter])
    assert d.failure is not None and d.failure.check is Check.REVOCATION_UNKNOWN, d


# --- CRLs the administrator supplied count without a distribution point ----------


async def test_supplied_crl_counts_without_distribution_point(http, fetcher):
    w = build_world(http)
    leaf = w.leaf(crl_urls=())
    svc = TrustService(StaticAnchors((w.root.ref,)), fetcher, supplied_crls=[crl(w.inter, [leaf])])
    d = await decide(svc, leaf, "carol@a.test", chain=[w.inter])
    assert d.failure is not None and d.failure.check is Check.REVOKED, d


async def test_fetched_crl_counts_for_a_sibling_without_distribution_point(http, fetcher):
    w = build_world(http)
    sibling = w.leaf(crl_urls=())
    w.revoked.append(sibling)
    w.publish()
    svc = service(fetcher, w.root)
    assert (await decide(svc, w.alice, chain=[w.inter])).trusted  # brings the intermediate's CRL in
    d = await decide(svc, sibling, "carol@a.test", chain=[w.inter])
    assert d.failure is not None and d.failure.check is Check.REVOKED


async def test_no_distribution_point_and_no_crl_held_passes(http, fetcher):
    w = build_world(http, inter_kw={"crl_urls": ()}, leaf_kw={"crl_urls": ()})
    assert (await decide(service(fetcher, w.root), w.alice, chain=[w.inter])).trusted
    assert sum(http.hits.values()) == 0


@pytest.mark.parametrize("count", [0, 31], ids=["alone", "thirty-one-intermediates-loaded"])
async def test_badly_signed_crl_rejected_even_with_many_intermediates(http, fetcher, count):
    assert count + 1 <= MAX_CARRIED_CERTIFICATES
    """Library-notes regression: preloading many intermediates once made
    pyhanko accept a CRL whose signature it never checked."""
    w = build_world(http)
    crowd = [
        issue(f"Crowd CA {n}", issuer=w.root, ca=True, key=role_key("crowd"), crl_urls=(http.url("/root.crl"),))
        for n in range(count)
    ]
    leaf = w.leaf(crl_urls=())
    forged = crl(w.inter, [], signer_key=role_key("impostor"))
    svc = TrustService(StaticAnchors((w.root.ref,)), fetcher, supplied_crls=[forged])
    # as many as a message may carry (MAX_CARRIED_CERTIFICATES), the issuer among them
    d = await decide(svc, leaf, "carol@a.test", chain=[*crowd[:15], w.inter, *crowd[15:]])
    assert not d.trusted
    assert d.failure is not None and d.failure.check is Check.REVOCATION_UNKNOWN, d
    assert d.failure.certificate == leaf.ref
    # and a genuine CRL for the same issuer next to it still decides
    svc2 = TrustService(StaticAnchors((w.root.ref,)), fetcher, supplied_crls=[forged, crl(w.inter, [leaf])])
    d2 = await decide(svc2, leaf, "carol@a.test", chain=[*crowd, w.inter])
    assert d2.failure is not None and d2.failure.check is Check.REVOKED


async def test_intermediate_anchor_revokes_through_its_crl(http, fetcher):
    w = build_world(http)
    w.revoked.append(w.alice)
    w.publish()
    d = await decide(service(fetcher, w.inter), w.alice, chain=[])
    assert d.failure is not None and d.failure.check is Check.REVOKED, d
    forged = crl(w.inter, [], signer_key=role_key("impostor"))
    http.files["/int.crl"] = forged
    d = await decide(service(fetcher, w.inter), w.org, "a.test")
    assert d.failure is not None and d.failure.check is Check.REVOCATION_UNKNOWN, d


# --- AIA caIssuers (Direct item 11, DCDT D18) -------------------------------------


async def test_intermediate_reachable_only_through_aia(http, fetcher):
    w = build_world(http)
    leaf = w.leaf(aia_ca_issuers=(http.url("/int.cer"),))
    svc = service(fetcher, w.root)
    d = await decide(svc, leaf, "carol@a.test", chain=[])
    assert d.trusted, d
    assert d.path == (leaf.ref, w.inter.ref, w.root.ref)
    assert http.hits["/int.cer"] == 1


async def test_aia_pointing_nowhere_is_a_chain_failure(http, fetcher):
    w = build_world(http)
    leaf = w.leaf(aia_ca_issuers=(http.url("/missing.cer"),))
    d = await decide(service(fetcher, w.root), leaf, "carol@a.test", chain=[])
    assert d.failure is not None and d.failure.check is Check.CHAIN


# --- the decision cache ------------------------------------------------------------


async def test_second_decision_is_cached_and_fetches_nothing(http, fetcher):
    w = build_world(http)
    svc = service(fetcher, w.root)
    first = await decide(svc, w.alice, chain=[w.inter])
    hits = sum(http.hits.values())
    second = await decide(svc, w.alice, chain=[w.inter], at=NOW + DAY / 1440)
    assert first.trusted and second.trusted and second.cached and not first.cached
    assert sum(http.hits.values()) == hits
    assert svc.cache.hits == 1


async def test_cached_decision_expires_at_crl_next_update(http, fetcher):
    w = build_world(http)
    http.files["/int.crl"] = crl(w.inter, next_update=NOW + 2 * DAY)
    svc = service(fetcher, w.root, policy=Policy(decision_ttl=__import__("datetime").timedelta(days=30)))
    await decide(svc, w.alice, chain=[w.inter])
    assert (await decide(svc, w.alice, chain=[w.inter], at=NOW + DAY)).cached
    http.files["/int.crl"] = crl(w.inter, [w.alice], this_update=NOW + 2 * DAY, next_update=NOW + 9 * DAY)
    later = await decide(svc, w.alice, chain=[w.inter], at=NOW + 3 * DAY)
    assert not later.cached
    assert later.failure is not None and later.failure.check is Check.REVOKED
    assert http.hits["/int.crl"] == 2


async def test_cache_expires_with_ttl_and_differs_per_key(http, fetcher):
    import datetime as dt

    w = build_world(http)
    svc = service(fetcher, w.root, policy=Policy(decision_ttl=dt.timedelta(minutes=10)))
    await decide(svc, w.alice, chain=[w.inter])
    assert not (await decide(svc, w.alice, chain=[w.inter], at=NOW + dt.timedelta(minutes=11))).cached
    # another purpose, address or direction is another decision
    from trust import Purpose

    assert not (await decide(svc, w.alice, chain=[w.inter], purpose=Purpose.ENCRYPTION)).cached
    later = NOW + dt.timedelta(minutes=12)
    assert (await decide(svc, w.alice, "ALICE@a.test", chain=[w.inter], at=later)).cached  # lowercased


async def test_cache_respects_anchor_set_version(http, fetcher):
    w = build_world(http)

    class Mutable:
        certs = (w.root.ref,)

        async def anchors(self, domain, direction):
            from anchors.source import AnchorSet

            return AnchorSet.of(domain, direction, self.certs)

    source = Mutable()
    svc = TrustService(source, fetcher)
    assert (await decide(svc, w.alice, chain=[w.inter])).trusted
    source.certs = ()
    d = await decide(svc, w.alice, chain=[w.inter])
    assert not d.trusted and not d.cached


async def test_temporary_failure_cached_briefly(http, fetcher):
    import datetime as dt

    w = build_world(http)
    leaf = w.leaf(crl_urls=(http.url("/later.crl"),))
    svc = service(fetcher, w.root)
    assert (await decide(svc, leaf, "carol@a.test", chain=[w.inter])).temporary
    assert (await decide(svc, leaf, "carol@a.test", chain=[w.inter], at=NOW + dt.timedelta(seconds=30))).cached
    http.files["/later.crl"] = crl(w.inter)
    d = await decide(svc, leaf, "carol@a.test", chain=[w.inter], at=NOW + dt.timedelta(minutes=2))
    assert d.trusted and not d.cached


def test_domain_policies_lookup():
    strict, lax = Policy(), Policy(allow_sha1=True)
    p = DomainPolicies(strict, {"old.test": lax})
    assert p.for_domain("OLD.test") is lax and p.for_domain("new.test") is strict


async def test_concurrent_decisions_fetch_each_crl_once(http, fetcher):
    import asyncio

    w = build_world(http)
    svc = service(fetcher, w.root)
    results = await asyncio.gather(*(decide(svc, leaf, bound, chain=[w.inter]) for leaf, bound in
                                     [(w.alice, "alice@a.test"), (w.org, "a.test")] * 3))
    assert all(d.trusted for d in results)
    assert http.hits["/int.crl"] == 1 and http.hits["/root.crl"] == 1


async def test_unparseable_carried_certificate_is_ignored(http, fetcher):
    from gateway.core.certs import CertRef

    w = build_world(http)
    d = await w_decide_with_junk(w, fetcher, CertRef(b"\x30\x03\x02\x01\x01"))
    assert d.trusted, d


async def w_decide_with_junk(w, fetcher, junk):
    from anchors.source import Direction
    from trust import Purpose

    return await service(fetcher, w.root).decide(
        w.alice.ref, purpose=Purpose.SIGNING, bound_to="alice@a.test", local_domain="b.test",
        direction=Direction.INCOMING, at=NOW, intermediates=[junk, w.inter.ref],
    )


async def test_leaf_pinned_as_anchor_is_trusted(http, fetcher):
    w = build_world(http)
    d = await decide(service(fetcher, w.alice), w.alice)
    assert d.trusted and d.path == (w.alice.ref,)


async def test_leaf_directly_under_the_root_revoked(http, fetcher):
    w = build_world(http)
    direct = issue("erin@a.test", issuer=w.root, email="erin@a.test", key=role_key("leaf2"), crl_urls=(http.url("/root.crl"),))
    w.revoked.append(direct)
    w.publish()
    d = await decide(service(fetcher, w.root), direct, "erin@a.test")
    assert d.failure is not None and d.failure.check is Check.REVOKED, d


@pytest.mark.parametrize("revoked", [False, True], ids=["good", "revoked"])
async def test_ocsp_with_an_intermediate_anchor(http, fetcher, revoked):
    w = build_world(http)
    leaf = w.leaf(crl_urls=(), ocsp_urls=(http.url("/ocsp"),))
    serials = {leaf.cert.serial_number} if revoked else set()
    http.posts["/ocsp"] = lambda body: ocsp_response(body, [w.inter], serials)
    d = await decide(service(fetcher, w.inter), leaf, "carol@a.test")
    assert d.trusted is not revoked, d
    if revoked:
        assert d.failure is not None and d.failure.check is Check.REVOKED


async def test_not_yet_valid_decision_is_not_reused_once_valid(http, fetcher):
    w = build_world(http)
    soon = w.leaf(not_before=NOW + DAY / 24, not_after=NOW + 300 * DAY)
    svc = service(fetcher, w.root)
    first = await decide(svc, soon, "carol@a.test", chain=[w.inter])
    assert first.failure is not None and first.failure.check is Check.NOT_YET_VALID
    later = await decide(svc, soon, "carol@a.test", chain=[w.inter], at=NOW + DAY / 12)
    assert later.trusted and not later.cached


async def test_unreachable_crl_is_not_retried_for_a_minute(http, fetcher):
    import datetime as dt

    w = build_world(http)
    a = w.leaf(crl_urls=(http.url("/down.crl"),))
    b = w.leaf("dave@a.test", crl_urls=(http.url("/down.crl"),), key=role_key("dave"))
    svc = service(fetcher, w.root)
    assert (await decide(svc, a, "carol@a.test", chain=[w.inter])).temporary
    assert (await decide(svc, b, "dave@a.test", chain=[w.inter], at=NOW + dt.timedelta(seconds=20))).temporary
    assert http.hits["/down.crl"] == 1
    http.files["/down.crl"] = crl(w.inter)
    assert (await decide(svc, b, "dave@a.test", chain=[w.inter], at=NOW + dt.timedelta(seconds=90))).trusted


@pytest.mark.parametrize("answer", ["down", "unauthorized"])
async def test_ocsp_responder_without_an_answer_is_unknown(http, fetcher, answer):
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509 import ocsp

    w = build_world(http)
    if answer == "unauthorized":
        refusal = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        http.posts["/ocsp"] = lambda body: refusal.public_bytes(serialization.Encoding.DER)
    leaf = w.leaf(crl_urls=(), ocsp_urls=(http.url("/ocsp") if answer != "down" else "http://127.0.0.1:9/ocsp",))
    d = await decide(service(fetcher, w.root), leaf, "carol@a.test", chain=[w.inter])
    assert d.failure is not None and d.failure.check is Check.REVOCATION_UNKNOWN and d.temporary, d


async def test_aia_server_down_is_a_temporary_chain_failure(http, fetcher):
    w = build_world(http)
    leaf = w.leaf(aia_ca_issuers=("http://127.0.0.1:9/int.cer",))
    d = await decide(service(fetcher, w.root), leaf, "carol@a.test", chain=[])
    assert d.failure is not None and d.failure.check is Check.CHAIN and d.temporary, d
    assert "127.0.0.1:9" in d.failure.detail


# --- revocation = "required": the setting ------------------------------------------


def test_revocation_requirement_defaults_to_when_declared_and_reads_per_domain():
    from trust import policies_from_mapping
    from trust.policy import RevocationRequirement

    policies = policies_from_mapping({"domains": {"Strict.Example": {"revocation": "required"}}})
    assert policies.default.revocation is RevocationRequirement.WHEN_DECLARED
    assert policies.for_domain("strict.example").revocation is RevocationRequirement.REQUIRED


def test_revocation_requirement_rejects_unknown_values():
    from trust import PolicyError, policies_from_mapping

    with pytest.raises(PolicyError) as info:
        policies_from_mapping({"revocation": "sometimes"})
    assert info.value.key == "revocation" and "required" in info.value.detail


def test_revocation_required_cannot_be_soft_passed():
    from trust import PolicyError, policies_from_mapping
    from trust.policy import RevocationRequirement

    with pytest.raises(PolicyError) as info:
        policies_from_mapping({"revocation_unknown": "soft-pass", "domains": {"x.test": {"revocation": "required"}}})
    assert info.value.key == "revocation"
    with pytest.raises(ValueError, match="soft-pass"):
        Policy(revocation=RevocationRequirement.REQUIRED, revocation_unknown=RevocationUnknown.SOFT_PASS)


# --- revocation = "required": what covers a certificate ----------------------------

REQUIRED = Policy(revocation=RevocationRequirement.REQUIRED)


@pytest.mark.parametrize(
    ("policy", "trusted"),
    [(Policy(), True), (REQUIRED, False)],
    ids=["when-declared-passes", "required-refuses"],
)
async def test_nothing_declared_nothing_held(http, fetcher, policy, trusted):
    w = build_world(http, inter_kw={"crl_urls": ()}, leaf_kw={"crl_urls": ()})
    d = await decide(service(fetcher, w.root, policy=policy), w.alice, chain=[w.inter])
    assert d.trusted is trusted, d
    if not trusted:
        assert d.failure is not None and d.failure.check is Check.REVOCATION_UNKNOWN and d.temporary
        # checked top down: the intermediate is the first certificate left uncovered
        assert d.failure.certificate == w.inter.ref
        assert "revocation = required" in d.failure.detail


@pytest.mark.parametrize(
    ("supplied", "uncovered"),
    [(("root", "inter"), None), (("inter",), "inter"), (("root",), "alice")],
    ids=["both-crls-supplied", "root-crl-missing", "intermediate-crl-missing"],
)
async def test_required_every_certificate_below_the_anchor(http, fetcher, supplied, uncovered):
    w = build_world(http, inter_kw={"crl_urls": ()}, leaf_kw={"crl_urls": ()})
    crls = [crl(getattr(w, who)) for who in supplied]
    svc = TrustService(StaticAnchors((w.root.ref,)), fetcher, DomainPolicies(REQUIRED), supplied_crls=crls)
    d = await decide(svc, w.alice, chain=[w.inter])
    if uncovered is None:
        assert d.trusted, d
    else:
        assert d.failure is not None and d.failure.check is Check.REVOCATION_UNKNOWN, d
        assert d.failure.certificate == getattr(w, uncovered).ref and d.temporary


async def test_required_covered_by_ocsp_alone(http, fetcher):
    w = build_world(http)
    http.posts["/ocsp"] = lambda body: ocsp_response(body, [w.inter], set())
    leaf = w.leaf(crl_urls=(), ocsp_urls=(http.url("/ocsp"),))
    d = await decide(service(fetcher, w.root, policy=REQUIRED), leaf, "carol@a.test", chain=[w.inter])
    assert d.trusted, d


@pytest.mark.parametrize(
    ("mode", "temporary"),
    [(RevocationUnknown.TEMPORARY, True), (RevocationUnknown.HARD_FAIL, False)],
    ids=["temporary", "hard-fail"],
)
async def test_required_and_uncovered_follows_revocation_unknown(http, fetcher, mode, temporary):
    w = build_world(http, inter_kw={"crl_urls": ()}, leaf_kw={"crl_urls": ()})
    policy = Policy(revocation=RevocationRequirement.REQUIRED, revocation_unknown=mode)
    d = await decide(service(fetcher, w.root, policy=policy), w.alice, chain=[w.inter])
    assert d.failure is not None and d.failure.check is Check.REVOCATION_UNKNOWN
    assert d.failure.temporary is temporary


@pytest.mark.parametrize("order", ["revoking-first", "revoking-last"])
async def test_every_supplied_crl_of_one_issuer_is_held(http, fetcher, order):
    """Two CRLs of one issuer (partitions, or an old and a new one): both are
    consulted, whichever was given last; a revocation on either counts."""
    w = build_world(http, inter_kw={"crl_urls": ()}, leaf_kw={"crl_urls": ()})
    leaf = w.leaf(crl_urls=())
    crls = [crl(w.inter, [leaf]), crl(w.inter, [w.alice])]
    if order == "revoking-last":
        crls.reverse()
    svc = TrustService(StaticAnchors((w.root.ref,)), fetcher, supplied_crls=[*crls, crl(w.root)])
    d = await decide(svc, leaf, "carol@a.test", chain=[w.inter])
    assert d.failure is not None and d.failure.check is Check.REVOKED, d


# --- the CRL cache is bounded ------------------------------------------------------


def _crl_from(n: int) -> bytes:
    return crl(issue(f"Cache CA {n}", ca=True, key=role_key("cache")))


@pytest.mark.parametrize(
    ("limits", "held"),
    [({"max_crls": 3}, 3), ({"max_crl_bytes": 2}, 2)],
    ids=["by-count", "by-bytes"],
)
def test_fetched_crls_are_bounded_and_the_least_recently_used_go(limits, held):
    from trust import OfflineFetcher
    from trust.revinfo import RevocationCache, parse_crl

    ders = [_crl_from(n) for n in range(6)]
    if "max_crl_bytes" in limits:
        limits = {"max_crl_bytes": limits["max_crl_bytes"] * max(len(d) for d in ders)}
    cache = RevocationCache(OfflineFetcher(), [ders[0]], **limits)
    for n, der in enumerate(ders[1:], 1):
        cache.add_crl(parse_crl(der, f"http://crl.test/{n}.crl"))
    count, size = cache.held
    assert count == held
    assert size == sum(len(d) for d in ders[-held:])  # the newest kept
    supplied = issue("Cache CA 0", ca=True, key=role_key("cache"))
    leaf = issue("x@cache.test", issuer=supplied, key=role_key("leaf2"))
    assert cache.held_crls(leaf.ref, NOW), "the administrator's CRL is never evicted"


def test_a_refetched_crl_replaces_its_older_copy():
    from trust import OfflineFetcher
    from trust.revinfo import RevocationCache, parse_crl

    cache = RevocationCache(OfflineFetcher())
    ca = issue("Refetch CA", ca=True, key=role_key("cache"))
    for hours in (2, 1):
        cache.add_crl(parse_crl(crl(ca, this_update=NOW - hours * DAY / 24), "http://crl.test/r.crl"))
    assert cache.held[0] == 1
    leaf = issue("y@cache.test", issuer=ca, key=role_key("leaf2"))
    assert len(cache.held_crls(leaf.ref, NOW)) == 1


# --- a CRL is hostile bytes: parsed or refused, never an exception -----------------


def test_a_damaged_crl_is_refused_or_judged_never_raised():
    import asyncio

    from hypothesis import given, settings

    from anchors.source import Direction
    from trust import FetchError, OfflineFetcher, Purpose
    from trust.revinfo import parse_crl

    from .mutations import FUZZ, mutated

    root = issue("Fuzz Root CA", ca=True, key=role_key("root"))
    inter = issue("Fuzz Intermediate CA", issuer=root, ca=True, key=role_key("inter"))
    leaf = issue("carol@a.test", issuer=inter, email="carol@a.test", key=role_key("leaf2"))
    original = crl(inter, [leaf, issue("x@a.test", issuer=inter, key=role_key("alice"))])

    @settings(FUZZ, max_examples=120)
    @given(mutated(original))
    def check(data: bytes) -> None:
        try:
            parse_crl(data, "http://crl.test/fuzz.crl")
        except FetchError:
            return
        # through pyhanko (root anchor) and read directly (the intermediate as anchor)
        for anchor in (root, inter):
            svc = TrustService(
                StaticAnchors((anchor.ref,)), OfflineFetcher(), DomainPolicies(REQUIRED),
                supplied_crls=[data, crl(root)],
            )
            d = asyncio.run(
                svc.decide(leaf.ref, purpose=Purpose.SIGNING, bound_to="carol@a.test", local_domain="b.test",
                           direction=Direction.INCOMING, at=NOW, intermediates=[inter.ref])
            )
            # a damaged CRL never vouches for the leaf: revoked if it still says so, else unknown
            assert d.failure is not None and d.failure.check in (Check.REVOKED, Check.REVOCATION_UNKNOWN), d

    check()


def test_a_crl_with_a_version_cryptography_refuses_is_refused_not_raised():
    """cryptography's InvalidVersion is not a ValueError: the fuzzer above found a v1 CRL
    that spells out version 0 (DER omits it) escaping parse_crl as an exception."""
    from trust import FetchError, FetchProblem
    from trust.revinfo import parse_crl

    der = crl(issue("Version CA", ca=True, key=role_key("cache")))
    spelled_v1 = der.replace(b"\x02\x01\x01", b"\x02\x01\x00", 1)  # the first INTEGER is the version
    assert spelled_v1 != der
    with pytest.raises(FetchError) as refused:
        parse_crl(spelled_v1, "http://crl.test/v0.crl")
    assert refused.value.problem is FetchProblem.INVALID and "version" in str(refused.value)


# --- delta CRLs named by their base CRL (RFC 5280 5.2.4, 5.2.6) --------------------


def _crl(issuer, revoked=(), *, number: int, extensions=()) -> bytes:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(NOW - dt.timedelta(hours=1))
        .next_update(NOW + dt.timedelta(days=1))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    )
    for ext, critical in extensions:
        b = b.add_extension(ext, critical=critical)
    for cert in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.cert.serial_number)
            .revocation_date(NOW - dt.timedelta(minutes=30)).build()
        )
    return b.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("delta", "check"),
    [("revoking", Check.REVOKED), ("clean", None), ("missing", Check.REVOCATION_UNKNOWN)],
    ids=["delta-revokes", "delta-clean", "delta-unavailable"],
)
async def test_a_base_crl_naming_its_delta_is_used_with_it(http, fetcher, delta, check):
    from cryptography import x509

    w = build_world(http)
    leaf = w.leaf()
    freshest = x509.FreshestCRL(
        [x509.DistributionPoint([x509.UniformResourceIdentifier(http.url("/int-delta.crl"))], None, None, None)]
    )
    http.files["/int.crl"] = _crl(w.inter, number=1, extensions=[(freshest, False)])
    if delta != "missing":
        revoked = [leaf] if delta == "revoking" else []
        http.files["/int-delta.crl"] = _crl(
            w.inter, revoked, number=2, extensions=[(x509.DeltaCRLIndicator(1), True)]
        )
    d = await decide(service(fetcher, w.root, policy=REQUIRED), leaf, "carol@a.test", chain=[w.inter])
    if check is None:
        assert d.trusted, d
        return
    assert d.failure is not None and d.failure.check is check, d
    assert d.failure.certificate == leaf.ref
    if delta == "missing":
        assert "int-delta.crl" in d.failure.detail and d.temporary


def test_crl_urls_per_certificate_are_bounded():
    from trust.revinfo import MAX_CRL_URLS, crl_urls

    urls = tuple(f"http://crl{n}.test/x.crl" for n in range(10))
    ca = issue("Many DP CA", ca=True, key=role_key("cache"))
    leaf = issue("z@a.test", issuer=ca, key=role_key("leaf2"), crl_urls=(*urls, urls[0]))
    assert crl_urls(leaf.ref) == list(urls[:MAX_CRL_URLS])


# --- an OCSP answer is hostile bytes too --------------------------------------------


class _Canned:
    """A ``Fetcher`` that answers every POST with the same bytes (our own Protocol)."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    async def get(self, url: str, *, max_bytes: int) -> bytes:
        from trust import FetchError, FetchProblem

        raise FetchError(url, FetchProblem.OFFLINE, "no GET here")

    async def post(self, url: str, body: bytes, *, content_type: str, max_bytes: int) -> bytes:
        return self.answer


def test_a_damaged_ocsp_answer_is_refused_or_judged_never_raised():
    import asyncio

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp
    from hypothesis import given, settings

    from anchors.source import Direction
    from trust import Purpose

    from .mutations import FUZZ, mutated

    root = issue("Fuzz Root CA", ca=True, key=role_key("root"))
    inter = issue("Fuzz Intermediate CA", issuer=root, ca=True, key=role_key("inter"))
    leaf = issue("carol@a.test", issuer=inter, email="carol@a.test", key=role_key("leaf2"),
                 ocsp_urls=("http://ocsp.test/",))
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf.cert, inter.cert, hashes.SHA1()).build()
    good = ocsp_response(request.public_bytes(serialization.Encoding.DER), [inter], set())

    async def judge(answer: bytes):
        svc = TrustService(StaticAnchors((root.ref,)), _Canned(answer), DomainPolicies(REQUIRED),
                           supplied_crls=[crl(root)])
        return await svc.decide(leaf.ref, purpose=Purpose.SIGNING, bound_to="carol@a.test", local_domain="b.test",
                                direction=Direction.INCOMING, at=NOW, intermediates=[inter.ref])

    assert asyncio.run(judge(good)).trusted  # the undamaged answer covers the leaf
    # found by this test: a CertID hash other than SHA-1/SHA-256 made the validator raise
    # (AttributeError from asn1crypto's Name); such an answer is refused when it arrives
    sha1_oid = bytes.fromhex("06052b0e03021a")
    assert sha1_oid in good
    unknown_hash = good.replace(sha1_oid, bytes.fromhex("06052b0e03021b"), 1)
    d = asyncio.run(judge(unknown_hash))
    assert not d.trusted and d.failure is not None and d.failure.check is Check.REVOCATION_UNKNOWN, d

    @settings(FUZZ, max_examples=120)
    @given(mutated(good))
    def check(answer: bytes) -> None:
        d = asyncio.run(judge(answer))
        assert d.trusted or (d.failure is not None and d.failure.check is Check.REVOCATION_UNKNOWN), d

    check()
