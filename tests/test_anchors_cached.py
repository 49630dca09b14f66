"""Anchors are reused for a few seconds, then read again: an administrator's
change shows within ANCHOR_TTL, and the database is not asked per message."""

from datetime import timedelta

from anchors.cached import ANCHOR_TTL, CachedAnchors
from anchors.source import Direction
from anchors.store import DbAnchors
from gateway.domains import LocalDomains
from tests.pki import NOW, hisp
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures

A, B = hisp("a.test"), hisp("b.test")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self):
        return self.now


async def test_a_new_anchor_counts_once_the_cached_answer_expires(store):
    await LocalDomains(store).create("b.test", at=NOW)
    db = DbAnchors(store)
    await db.add("b.test", [Direction.INCOMING], [A.root.ref], at=NOW)
    clock = Clock()
    cached = CachedAnchors(db, clock)

    first = await cached.anchors("b.test", Direction.INCOMING)
    await db.add("b.test", [Direction.INCOMING], [B.root.ref], at=NOW)
    clock.now += ANCHOR_TTL - timedelta(milliseconds=1)
    assert await cached.anchors("B.test.", Direction.INCOMING) == first  # one domain, however spelled

    clock.now += timedelta(milliseconds=1)
    later = await cached.anchors("b.test", Direction.INCOMING)
    assert {c.sha256 for c in later.certificates} == {A.root.ref.sha256, B.root.ref.sha256}


async def test_directions_are_kept_apart(store):
    await LocalDomains(store).create("b.test", at=NOW)
    db = DbAnchors(store)
    await db.add("b.test", [Direction.INCOMING], [A.root.ref], at=NOW)
    cached = CachedAnchors(db, Clock())
    assert (await cached.anchors("b.test", Direction.INCOMING)).certificates
    assert not (await cached.anchors("b.test", Direction.OUTGOING)).certificates
