"""The trust store against a model: seeded random sequences of what
administrators and the refresh timer do (add anchors, remove one, a bundle
changing, vanishing or turning to garbage, a bundle removed), on both
databases, with a loopback HTTP server behind the bundles.

After every step, for every local domain and direction, ``DbAnchors.anchors``
must hold exactly the manual anchors plus the last good copy of every bundle
of that domain and direction, and its version must be the version of that set
(so the trust engine's cache turns over exactly when the set does).
"""

import random
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
import pytest

from anchors.bundles import Bundles, RefreshStatus
from anchors.source import AnchorSet, Direction
from anchors.store import MANUAL, DbAnchors
from gateway.core.certs import CertRef
from gateway.domains import LocalDomains
from tests import anchor_files as files
from tests.pki import NOW, hisp
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures

DOMAINS = ("a.test", "b.test")
PKIS = [hisp(name) for name in ("p.test", "q.test", "r.test")]
ISSUED = [c for h in PKIS for c in (h.root, h.intermediate)]
BY_SHA = {c.ref.sha256: c for c in ISSUED}
STEPS = 24
SEEDS = range(5)


@dataclass
class Model:
    manual: dict[tuple[str, Direction], set[CertRef]] = field(
        default_factory=lambda: {(d, x): set() for d in DOMAINS for x in Direction}
    )
    bundles: dict[int, tuple[str, tuple[Direction, ...], set[CertRef]]] = field(default_factory=dict)
    """Bundle id -> (domain, directions, last good certificates)."""

    def expected(self, domain: str, direction: Direction) -> set[CertRef]:
        out = set(self.manual[(domain, direction)])
        for d, directions, certs in self.bundles.values():
            if d == domain and direction in directions:
                out |= certs
        return out


def some_certs(rng: random.Random) -> list:
    return rng.sample(ISSUED, rng.randint(1, 3))


def some_directions(rng: random.Random) -> tuple[Direction, ...]:
    return rng.choice([(Direction.INCOMING,), (Direction.OUTGOING,), tuple(Direction)])


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed{s}" for s in SEEDS])
async def test_anchor_sets_follow_the_model(store, http, seed):
    rng = random.Random(seed)
    model = Model()
    anchors = DbAnchors(store)
    for domain in DOMAINS:
        await LocalDomains(store).create(domain, at=NOW)
    async with aiohttp.ClientSession() as session:
        bundles = Bundles(store, session)
        versions = {}
        for step in range(STEPS):
            at = NOW + timedelta(minutes=step)
            action = rng.choice(["add", "add", "remove", "bundle-new", "bundle-change", "bundle-change", "bundle-remove"])

            if action == "add":
                domain, directions, certs = rng.choice(DOMAINS), some_directions(rng), some_certs(rng)
                await anchors.add(domain, directions, [c.ref for c in certs], at=at)
                for direction in directions:
                    model.manual[(domain, direction)] |= {c.ref for c in certs}

            elif action == "remove":
                manual = [r for r in await anchors.all() if r.source == MANUAL]
                if manual:
                    record = rng.choice(manual)
                    await anchors.remove(record.id)
                    model.manual[(record.domain, record.direction)].discard(BY_SHA[record.sha256].ref)

            elif action == "bundle-new":
                domain, directions, certs = rng.choice(DOMAINS), some_directions(rng), some_certs(rng)
                path = f"/bundle-{step}.p7b"
                http.files[path] = files.p7b(*certs)
                record = await bundles.add(
                    http.url(path), domain, directions, refresh=timedelta(hours=1), signer=None, at=at
                )
                outcome = await bundles.refresh(record, at)
                assert outcome.status is RefreshStatus.UPDATED
                model.bundles[record.id] = (domain, directions, {c.ref for c in certs})

            elif action == "bundle-change" and model.bundles:
                bundle_id = rng.choice(sorted(model.bundles))
                record = await bundles.get(bundle_id)
                path = record.url.split(str(http.port), 1)[1]
                served = rng.choice(["certs", "certs", "gone", "garbage"])
                if served == "certs":
                    certs = some_certs(rng)
                    http.files[path] = files.p7b(*certs, pem=rng.random() < 0.5)
                elif served == "gone":
                    http.files.pop(path, None)
                else:
                    http.files[path] = files.HTML
                outcome = await bundles.refresh(record, at)
                if served == "certs":
                    assert outcome.status in (RefreshStatus.UPDATED, RefreshStatus.UNCHANGED)
                    domain, directions, _ = model.bundles[bundle_id]
                    model.bundles[bundle_id] = (domain, directions, {c.ref for c in certs})
                else:  # the last good copy stays
                    assert outcome.status is RefreshStatus.FAILED

            elif action == "bundle-remove" and model.bundles:
                bundle_id = rng.choice(sorted(model.bundles))
                await bundles.remove(bundle_id)
                del model.bundles[bundle_id]

            for domain in DOMAINS:
                for direction in Direction:
                    found = await anchors.anchors(domain, direction)
                    expected = model.expected(domain, direction)
                    assert set(found.certificates) == expected, (step, action, domain, direction)
                    assert len(found.certificates) == len(expected), "no certificate twice in a set"
                    assert found.version == AnchorSet.of(domain, direction, expected).version
                    key = (domain, direction)
                    if key in versions and versions[key][1] == expected:
                        assert found.version == versions[key][0], "unchanged set, unchanged version"
                    versions[key] = (found.version, expected)
