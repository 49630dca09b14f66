"""Trust bundle refresh against a real HTTP server on loopback (Direct item
15): a good bundle, the same bundle again, then 404, garbage, a bundle signed
by the wrong signer, a server that hangs, one that is gone and one too large;
each failure typed, and the last good copy's anchors kept every time."""

import hashlib
from datetime import timedelta

import aiohttp
import pytest
from sqlalchemy import select

from anchors.bundles import BundleDefinitionError, Bundles, RefreshProblem, RefreshStatus
from anchors.source import Direction
from anchors.store import DbAnchors
from gateway.domains import LocalDomains
from gateway.store import StoreError, schema
from tests import anchor_files as files
from tests.pki import NOW, hisp, issue
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures

B, C = hisp("b.test"), hisp("c.test")
SIGNER = issue("Community bundle signer")
IMPOSTOR = issue("Community bundle signer")  # same name, other key


@pytest.fixture(name="session")
async def session_fixture():
    async with aiohttp.ClientSession() as session:
        yield session


async def incoming(store):
    return await DbAnchors(store).anchors("a.test", Direction.INCOMING)


async def test_refresh_keeps_last_good_copy_through_every_failure(store, http, session):
    await LocalDomains(store).create("a.test", at=NOW)
    bundles = Bundles(store, session, timeout=0.5, max_bytes=64 * 1024)
    good = files.p7m(files.p7b(B.root, C.root), SIGNER)
    http.files["/bundle.p7m"] = good
    record = await bundles.add(
        http.url("/bundle.p7m"), "a.test", (Direction.INCOMING,), refresh=timedelta(hours=6), signer=SIGNER.ref, at=NOW
    )

    first = await bundles.refresh(record, NOW)
    assert (first.status, first.certificates) == (RefreshStatus.UPDATED, 2)
    kept = await incoming(store)
    assert set(kept.certificates) == {B.root.ref, C.root.ref}
    assert (await DbAnchors(store).anchors("a.test", Direction.OUTGOING)).certificates == ()

    again = await bundles.refresh(await bundles.get(record.id), NOW + timedelta(hours=6))
    assert again.status is RefreshStatus.UNCHANGED
    assert http.hits["/bundle.p7m"] == 2

    failures = {
        RefreshProblem.NOT_FOUND: lambda: http.files.pop("/bundle.p7m"),
        RefreshProblem.INVALID_FORMAT: lambda: http.files.__setitem__("/bundle.p7m", b"<html>moved</html>"),
        RefreshProblem.INVALID_SIGNER: lambda: http.files.__setitem__(
            "/bundle.p7m", files.p7m(files.p7b(B.intermediate), IMPOSTOR)
        ),
        RefreshProblem.TIMEOUT: lambda: (
            http.files.__setitem__("/bundle.p7m", good + b""),
            http.delays.__setitem__("/bundle.p7m", 1.0),
        ),
    }
    at = NOW + timedelta(hours=12)
    for problem, arrange in failures.items():
        http.delays.clear()
        arrange()
        outcome = await bundles.refresh(await bundles.get(record.id), at)
        assert (outcome.status, outcome.problem) == (RefreshStatus.FAILED, problem), outcome.detail
        assert outcome.certificates == 2
        assert await incoming(store) == kept
        listed = await bundles.get(record.id)
        assert (listed.last_status, listed.last_error) == (problem.value, outcome.detail)
        assert listed.checksum == hashlib.sha256(good).hexdigest()
        assert listed.next_refresh_at == at + timedelta(minutes=15)  # failures retry sooner
    async with store.engine.connect() as conn:
        assert bytes(await conn.scalar(select(schema.bundles.c.last_good))) == good


async def test_new_contents_replace_the_bundle_anchors(store, http, session):
    await LocalDomains(store).create("a.test", at=NOW)
    bundles = Bundles(store, session)
    http.files["/b.p7b"] = files.p7b(B.root, C.root, pem=True)
    record = await bundles.add(http.url("/b.p7b"), "a.test", tuple(Direction), refresh=timedelta(hours=1), signer=None, at=NOW)
    await bundles.refresh(record, NOW)
    before = await incoming(store)
    assert len((await DbAnchors(store).anchors("a.test", Direction.OUTGOING)).certificates) == 2

    http.files["/b.p7b"] = files.p7b(C.root)
    outcome = await bundles.refresh(await bundles.get(record.id), NOW + timedelta(hours=1))
    assert (outcome.status, outcome.certificates) == (RefreshStatus.UPDATED, 1)
    after = await incoming(store)
    assert after.certificates == (C.root.ref,)
    assert after.version != before.version
    assert (await bundles.get(record.id)).next_refresh_at == NOW + timedelta(hours=2)

    # an anchor from a bundle is removed with its bundle, not on its own
    listed = await DbAnchors(store).all("a.test")
    assert {a.source for a in listed} == {f"bundle:{record.id}"}
    with pytest.raises(StoreError, match="remove the bundle"):
        await DbAnchors(store).remove(listed[0].id)
    await bundles.remove(record.id)
    assert (await incoming(store)).certificates == ()


async def test_bundle_and_manual_anchor_of_the_same_certificate(store, http, session):
    await LocalDomains(store).create("a.test", at=NOW)
    await DbAnchors(store).add("a.test", [Direction.INCOMING], [B.root.ref], at=NOW)
    http.files["/b.p7b"] = files.p7b(B.root)
    bundles = Bundles(store, session)
    record = await bundles.add(http.url("/b.p7b"), "a.test", (Direction.INCOMING,), refresh=timedelta(hours=1), signer=None, at=NOW)
    await bundles.refresh(record, NOW)
    assert (await incoming(store)).certificates == (B.root.ref,)
    await bundles.remove(record.id)
    assert (await incoming(store)).certificates == (B.root.ref,)  # the manual one stays


async def test_unreachable_and_oversized(store, http, session):
    await LocalDomains(store).create("a.test", at=NOW)
    bundles = Bundles(store, session, timeout=2, max_bytes=1000)
    http.files["/big.p7b"] = files.p7b(B.root, C.root, B.intermediate)
    big = await bundles.add(http.url("/big.p7b"), "a.test", (Direction.INCOMING,), refresh=timedelta(hours=1), signer=None, at=NOW)
    gone = await bundles.add("http://127.0.0.1:1/b.p7b", "a.test", (Direction.INCOMING,), refresh=timedelta(hours=1), signer=None, at=NOW)
    outcomes = {o.bundle_id: o for o in await bundles.refresh_due(NOW)}
    assert outcomes[big.id].problem is RefreshProblem.INVALID_FORMAT
    assert "1000" in outcomes[big.id].detail
    assert outcomes[gone.id].problem is RefreshProblem.UNREACHABLE
    assert await bundles.refresh_due(NOW + timedelta(minutes=1)) == []  # not due again yet
    assert len(await bundles.refresh_due(NOW + timedelta(minutes=1), force=True)) == 2


async def test_bundle_urls_and_intervals_checked(store):
    await LocalDomains(store).create("a.test", at=NOW)
    bundles = Bundles(store)
    with pytest.raises(BundleDefinitionError, match="http"):
        await bundles.add("file:///etc/passwd", "a.test", (Direction.INCOMING,), refresh=timedelta(hours=1), signer=None, at=NOW)
    with pytest.raises(BundleDefinitionError, match="hammer"):
        await bundles.add("http://x.test/b", "a.test", (Direction.INCOMING,), refresh=timedelta(seconds=5), signer=None, at=NOW)
    await bundles.add("http://x.test/b", "a.test", (Direction.INCOMING,), refresh=timedelta(hours=1), signer=None, at=NOW)
    with pytest.raises(StoreError, match="already"):
        await bundles.add("http://x.test/b", "a.test", (Direction.INCOMING,), refresh=timedelta(hours=1), signer=None, at=NOW)
