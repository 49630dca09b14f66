"""Path building costs what a plain chain costs, whatever certificates a message carries.

Each case is a shape of carried certificates built to make path building
explode (issue 7 section 3); the decision must come back with the expected
outcome after a bounded amount of work, counted (paths validated, steps of
the search), not timed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anchors.source import StaticAnchors
from trust import Check, OfflineFetcher, PathLimits, Purpose, TrustService
from trust.anchor_source import Direction
from trust.chain import IssuerCache
from trust.paths import Limit, PathSearch

from .http_servers import LOOPBACK_ALLOWED
from .pki import NOW, Issued, issue
from .trust_pki import role_key

DAY = dt.timedelta(days=1)


def ca(cn: str, issuer: Issued | None = None, *, key_role: str, **kw) -> Issued:
    return issue(cn, issuer=issuer, ca=True, key=role_key(key_role, "ec", 256), key_kind="ec", key_size=256, **kw)


def leaf_of(issuer: Issued, **kw) -> Issued:
    return issue("alice@a.test", email="alice@a.test", issuer=issuer, key=role_key("alice"), **kw)


@dataclass
class Shape:
    anchors: list[Issued]
    leaf: Issued
    carried: list[Issued]


def self_issued_copies() -> Shape:
    """Ten CA certificates with one name and one key, each issued by that name:
    a naive builder tries 10! orderings (eight took 18 s before the bound)."""
    root = ca("Bounds Root", key_role="bounds-root")
    base = ca("Evil CA", key_role="evil")
    copies = [ca("Evil CA", base, key_role="evil", not_before=NOW - (n + 1) * DAY) for n in range(10)]
    return Shape([root], leaf_of(base), copies)


def copies_spelled_differently() -> Shape:
    """The same, each copy's name in another letter case: byte-different names
    that RFC 5280 7.1 compares equal, as the validator does."""
    root = ca("Bounds Root", key_role="bounds-root")
    base = ca("Evil CA", key_role="evil")
    spellings = ["".join(ch.upper() if (m >> i) & 1 else ch for i, ch in enumerate("evil ca")) for m in range(1, 11)]
    return Shape([root], leaf_of(base), [ca(name, base, key_role="evil") for name in spellings])


def look_alikes_of_the_intermediate() -> Shape:
    """Ten certificates claiming the intermediate's name and key identifier,
    each with its own key and living longer than the real one (so preferred
    by every claim they make): only a signature check tells them apart."""
    root = ca("Bounds Root", key_role="bounds-root")
    inter = ca("Bounds Intermediate", root, key_role="bounds-inter")
    ski = inter.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    fakes = []
    for n in range(10):
        key = role_key(f"look-alike-{n}", "ec", 256)
        cert = (
            x509.CertificateBuilder().subject_name(inter.cert.subject).issuer_name(root.cert.subject)
            .public_key(key.public_key()).serial_number(0x7000 + n)
            .not_valid_before(NOW - DAY).not_valid_after(NOW + 3000 * DAY)
            .add_extension(x509.SubjectKeyIdentifier(ski), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        fakes.append(Issued(cert, key))
    return Shape([root], leaf_of(inter), [*fakes, inter])


def copies_under_the_anchor() -> Shape:
    """Ten certificates of the genuine intermediate (same name, key and issuer,
    other serials and validity), nine of them expired: they count as one candidate."""
    root = ca("Bounds Root", key_role="bounds-root")
    valid = ca("Bounds Intermediate", root, key_role="bounds-inter")
    expired = [
        ca("Bounds Intermediate", root, key_role="bounds-inter", not_before=NOW - 400 * DAY, not_after=NOW - (n + 1) * DAY)
        for n in range(9)
    ]
    return Shape([root], leaf_of(valid), [*expired[:5], valid, *expired[5:]])


def ladder(*, expired: bool = False, top_signed_by_impostor: bool = False) -> Shape:
    """Six names, two keys each; each key of a name is certified by both keys
    of the name above (the top name by the anchor alone): 2^5 = 32 paths from
    the leaf to the anchor in 22 certificates. ``expired``: every path fails
    validation; ``top_signed_by_impostor`` (a root of the anchor's name with
    another key): none reaches the anchor, the search meets only dead ends."""
    root = ca("Bounds Root", key_role="bounds-root")
    impostor = ca("Bounds Root", key_role="impostor-root")
    dates = {"not_before": NOW - 400 * DAY, "not_after": NOW - DAY} if expired else {}
    signers: list[Issued] = [impostor if top_signed_by_impostor else root]
    carried: list[Issued] = []
    for level in reversed(range(6)):
        per_key = {
            k: [ca(f"Rung {level}", signer, key_role=f"rung-{level}-{k}", **dates) for signer in signers]
            for k in ("a", "b")
        }
        carried.extend(c for certs in per_key.values() for c in certs)
        signers = [certs[0] for certs in per_key.values()]
    return Shape([root], leaf_of(signers[0]), carried)


def service(shape: Shape, limits: PathLimits | None = None, fetcher=None) -> TrustService:
    return TrustService(
        StaticAnchors(tuple(a.ref for a in shape.anchors)), fetcher or OfflineFetcher(), limits=limits or PathLimits()
    )


async def decide(svc: TrustService, shape: Shape):
    return await svc.decide(
        shape.leaf.ref, purpose=Purpose.SIGNING, bound_to="alice@a.test", local_domain="b.test",
        direction=Direction.INCOMING, at=NOW, intermediates=[c.ref for c in shape.carried],
    )


CASES = {
    # shape, expected check (None: trusted), most paths validated
    "ten-self-issued-copies": (self_issued_copies, Check.UNTRUSTED_ROOT, 0),
    "ten-copies-spelled-differently": (copies_spelled_differently, Check.CHAIN, 0),
    "ten-copies-of-the-intermediate": (copies_under_the_anchor, None, 1),
    "ten-look-alikes-of-the-intermediate": (look_alikes_of_the_intermediate, None, 1),
    "ladder-of-32-paths-all-expired": (lambda: ladder(expired=True), Check.PATH_LIMIT, PathLimits().paths),
    "ladder-of-dead-ends": (lambda: ladder(top_signed_by_impostor=True), Check.PATH_LIMIT, 0),
    "ladder-with-a-good-path": (ladder, None, 1),
}


@pytest.mark.parametrize(("make", "check", "most_paths"), CASES.values(), ids=CASES.keys())
async def test_crafted_shapes_cost_bounded_work(make, check, most_paths):
    shape = make()
    assert len(shape.carried) <= 32
    svc = service(shape)
    d = await decide(svc, shape)
    assert (d.failure.check if d.failure else None) is check, d
    assert svc.paths_tried <= most_paths
    if check is Check.PATH_LIMIT:
        assert d.failure is not None and not d.failure.temporary  # the same certificates give the same search
        assert "path-building limits" in d.failure.detail


async def test_search_counts_its_steps():
    shape = ladder(top_signed_by_impostor=True)
    limits = PathLimits()
    search = PathSearch(
        shape.leaf.ref, [c.ref for c in shape.carried], [a.ref for a in shape.anchors],
        IssuerCache(OfflineFetcher()), NOW, limits,
    )
    assert [p async for p in search.paths()] == []
    assert search.limit is Limit.EXPANSIONS and search.expansions == limits.expansions


def cross_certified() -> tuple[Shape, Issued]:
    """One intermediate key certified by two anchors; the preferred
    certificate (longer-lived) leads to an anchor that has expired."""
    old_root = ca("Old Root", key_role="old-root", not_before=NOW - 800 * DAY, not_after=NOW - DAY)
    new_root = ca("New Root", key_role="new-root")
    by_old = ca("Cross Intermediate", old_root, key_role="cross", not_after=NOW + 900 * DAY)
    by_new = ca("Cross Intermediate", new_root, key_role="cross")
    return Shape([old_root, new_root], leaf_of(by_new), [by_old, by_new]), new_root


async def test_a_failing_path_gives_way_to_the_next_candidate():
    shape, new_root = cross_certified()
    svc = service(shape)
    d = await decide(svc, shape)
    assert d.trusted, d
    assert d.path[-1] == new_root.ref and svc.paths_tried == 2


async def test_one_path_allowed_and_it_fails_is_the_path_limit():
    shape, _ = cross_certified()
    d = await decide(service(shape, PathLimits(paths=1)), shape)
    assert d.failure is not None and d.failure.check is Check.PATH_LIMIT
    assert "expired" in d.failure.detail  # what the one path tried met


async def test_a_decision_over_its_time_budget_is_a_temporary_failure(http):
    """The issuer sits behind an AIA URL that answers too late."""
    from trust import HttpFetcher

    root = ca("Bounds Root", key_role="bounds-root")
    inter = ca("Bounds Intermediate", root, key_role="bounds-inter")
    leaf = leaf_of(inter, aia_ca_issuers=(http.url("/inter.cer"),))
    http.files["/inter.cer"] = inter.der
    http.delays["/inter.cer"] = 2.0
    fetcher = HttpFetcher(timeout=5, destinations=LOOPBACK_ALLOWED)
    try:
        svc = service(Shape([root], leaf, []), PathLimits(decision_seconds=0.2), fetcher)
        started = asyncio.get_running_loop().time()
        d = await decide(svc, Shape([root], leaf, []))
        assert asyncio.get_running_loop().time() - started < 1.9  # did not wait for the 2 s answer
    finally:
        await fetcher.close()
    assert d.failure is not None and d.failure.check is Check.TIME_LIMIT and d.failure.temporary


# Any set of carried certificates: the search stays within its bounds and
# yields only name chains that end at an anchor and repeat no name and key.
NAMES = ("Graph A", "Graph B", "Graph C")
KEYS = ("k0", "k1")


def _stub(name: str, key: str) -> Issued:
    """A certificate standing for (name, key), only used to sign with that key under that name."""
    return ca(name, key_role=f"graph-{key}")


EDGES = st.tuples(st.sampled_from(NAMES), st.sampled_from(KEYS), st.sampled_from(NAMES), st.sampled_from(KEYS))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EDGES, max_size=24), st.sampled_from(NAMES), st.sampled_from(KEYS))
def test_any_carried_set_is_searched_within_bounds(edges, leaf_name, leaf_key):
    anchor = _stub("Graph A", "k0")
    carried = [ca(subject, _stub(issuer, issuer_key), key_role=f"graph-{key}") for subject, key, issuer, issuer_key in edges]
    leaf = leaf_of(_stub(leaf_name, leaf_key))
    limits = PathLimits()
    search = PathSearch(leaf.ref, [c.ref for c in carried], [anchor.ref], IssuerCache(OfflineFetcher()), NOW, limits)

    async def run():
        return [p async for p in search.paths()]

    paths = asyncio.run(run())
    assert len(paths) <= limits.paths and search.expansions <= limits.expansions
    for path in paths:
        assert path[0] == leaf.ref and path[-1] == anchor.ref and len(path) <= limits.chain_length
        assert all(a.issuer_der == b.subject_der for a, b in itertools.pairwise(path))
        keys = [(c.subject_der, c.x509.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)) for c in path]
        assert len(set(keys)) == len(keys)
