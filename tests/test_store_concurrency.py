"""Several processes on one database, as in production: the server running
while an administrator uses the CLI, or several gateway nodes starting on
one PostgreSQL. Each ``Store`` here is a separate engine (its own connection
pool), which is what a second process is to the database.

What must hold: nodes starting together all end at the current schema; two
administrators adding the same domain or anchor at once both succeed with one
row; and the trust engine, reading anchors while a bundle refresh swaps them,
sees the old set or the new one, never a half-written or empty one.
"""

import asyncio
from datetime import timedelta

import aiohttp
from sqlalchemy import func, select

from anchors.bundles import Bundles, RefreshStatus
from anchors.source import Direction
from anchors.store import DbAnchors
from gateway.domains import LocalDomains
from gateway.store import head_revision, open_store, schema
from tests import anchor_files as files
from tests.pki import NOW, hisp
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures

AT = NOW
NODES = 4
A, B, C = hisp("a.test"), hisp("b.test"), hisp("c.test")


async def stores(url: str, n: int = NODES):
    opened = await asyncio.gather(*(open_store(url) for _ in range(n)))
    return list(opened)


async def close_all(opened) -> None:
    await asyncio.gather(*(s.close() for s in opened))


async def count(store, table) -> int:
    async with store.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)))


async def test_nodes_starting_together_all_reach_head(store_url):
    opened = await stores(store_url)
    try:
        assert [await s.revision() for s in opened] == [head_revision()] * NODES
    finally:
        await close_all(opened)


async def test_same_domain_created_at_once(store_url):
    opened = await stores(store_url)
    try:
        created = await asyncio.gather(*(LocalDomains(s).create("a.test", at=AT) for s in opened))
        assert sorted(created) == [False] * (NODES - 1) + [True]
        assert await count(opened[0], schema.domains) == 1
    finally:
        await close_all(opened)


async def test_same_anchor_added_at_once(store_url):
    opened = await stores(store_url)
    try:
        await LocalDomains(opened[0]).create("a.test", at=AT)
        results = await asyncio.gather(
            *(DbAnchors(s).add("a.test", [Direction.INCOMING], [B.root.ref], at=AT) for s in opened)
        )
        assert sum(len(r.added) for r in results) == 1
        assert await count(opened[0], schema.anchors) == 1
        assert (await DbAnchors(opened[0]).anchors("a.test", Direction.INCOMING)).certificates == (B.root.ref,)
    finally:
        await close_all(opened)


async def test_readers_never_see_a_half_swapped_bundle(store_url, http):
    """The bundle alternates between two contents; every read of the anchor
    set, from another engine, is exactly one of them."""
    writer, reader = await stores(store_url, 2)
    first = frozenset({B.root.ref, B.intermediate.ref})
    second = frozenset({C.root.ref, C.intermediate.ref, A.root.ref})
    contents = [files.p7b(B.root, B.intermediate), files.p7b(C.root, C.intermediate, A.root)]
    try:
        await LocalDomains(writer).create("a.test", at=AT)
        async with aiohttp.ClientSession() as session:
            bundles = Bundles(writer, session)
            http.files["/bundle.p7b"] = contents[0]
            record = await bundles.add(
                http.url("/bundle.p7b"), "a.test", (Direction.INCOMING,), refresh=timedelta(hours=6), signer=None, at=AT
            )
            assert (await bundles.refresh(record, AT)).status is RefreshStatus.UPDATED
            done = asyncio.Event()
            seen: list[frozenset] = []

            async def read() -> None:
                source = DbAnchors(reader)
                while not done.is_set():
                    seen.append(frozenset((await source.anchors("a.test", Direction.INCOMING)).certificates))
                    await asyncio.sleep(0)

            async def swap() -> None:
                try:
                    for i in range(1, 13):
                        http.files["/bundle.p7b"] = contents[i % 2]
                        outcome = await bundles.refresh(await bundles.get(record.id), AT)
                        assert outcome.status is RefreshStatus.UPDATED, outcome
                finally:
                    done.set()

            await asyncio.gather(read(), swap())
        assert seen and set(seen) <= {first, second}
        assert frozenset((await DbAnchors(reader).anchors("a.test", Direction.INCOMING)).certificates) == first
    finally:
        await close_all([writer, reader])

