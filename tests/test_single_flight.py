"""Concurrent identical questions share one computation: decisions and issuer fetches.

The fetcher below implements our own ``Fetcher`` protocol: it counts requests
and holds every answer until the test opens its gate, so the concurrent
callers are provably waiting at the same time.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from anchors.source import StaticAnchors
from gateway.common.single_flight import SingleFlight
from trust import Check, FetchError, FetchProblem, Purpose, TrustService
from trust.anchor_source import Direction
from trust.chain import IssuerCache

from .pki import NOW, issue
from .trust_pki import role_key


class GatedFetcher:
    def __init__(self, answers: dict[str, bytes]) -> None:
        self.answers = answers
        self.gets = 0
        self.gate = asyncio.Event()

    async def get(self, url: str, *, max_bytes: int) -> bytes:
        self.gets += 1
        await self.gate.wait()
        if url not in self.answers:
            raise FetchError(url, FetchProblem.UNREACHABLE, "connection refused")
        return self.answers[url]

    async def post(self, url: str, body: bytes, *, content_type: str, max_bytes: int) -> bytes:
        raise FetchError(url, FetchProblem.OFFLINE, "no OCSP here")


AIA = "http://ca.example/inter.cer"


def world():
    root = issue("Shared Root", ca=True, key=role_key("root"))
    inter = issue("Shared Intermediate", issuer=root, ca=True, key=role_key("inter"))
    leaf = issue("alice@a.test", email="alice@a.test", issuer=inter, key=role_key("alice"), aia_ca_issuers=(AIA,))
    return root, inter, leaf


async def many(n, make):
    tasks = [asyncio.ensure_future(make(i)) for i in range(n)]
    await asyncio.sleep(0.01)  # every caller is now waiting
    return tasks


@pytest.mark.parametrize("served", [True, False], ids=["issuer-served", "issuer-unreachable"])
async def test_concurrent_identical_decisions_compute_once(served):
    root, inter, leaf = world()
    fetcher = GatedFetcher({AIA: inter.der} if served else {})
    svc = TrustService(StaticAnchors((root.ref,)), fetcher)

    def ask(i):
        return svc.decide(
            leaf.ref, purpose=Purpose.SIGNING, bound_to="alice@a.test", local_domain="b.test",
            direction=Direction.INCOMING, at=NOW + dt.timedelta(milliseconds=i),
        )

    tasks = await many(5, ask)
    fetcher.gate.set()
    decisions = await asyncio.gather(*tasks)
    assert fetcher.gets == 1 and svc.decisions_computed == 1
    assert all(d.trusted is served for d in decisions)
    assert [d.cached for d in decisions] == [False, True, True, True, True]  # four shared the first
    assert [d.at for d in decisions] == [NOW + dt.timedelta(milliseconds=i) for i in range(5)]
    if not served:
        assert all(d.failure is not None and d.failure.check is Check.CHAIN and d.temporary for d in decisions)


async def test_concurrent_issuer_fetches_share_one_download_and_a_failure_is_not_kept():
    _, inter, _ = world()
    fetcher = GatedFetcher({})
    cache = IssuerCache(fetcher)
    tasks = await many(4, lambda i: cache.fetch(AIA, NOW))
    fetcher.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert fetcher.gets == 1
    assert all(isinstance(r, FetchError) and r.problem is FetchProblem.UNREACHABLE for r in results)
    # the failure was shared, not remembered: the next caller asks again, and keeps a success
    fetcher.answers[AIA] = inter.der
    assert await cache.fetch(AIA, NOW) == (inter.ref,)
    assert await cache.fetch(AIA, NOW) == (inter.ref,)
    assert fetcher.gets == 2


async def test_a_caller_giving_up_does_not_cancel_the_shared_work():
    flight: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()

    async def work() -> int:
        await gate.wait()
        return 42

    impatient = asyncio.ensure_future(flight.run("k", work))
    patient = asyncio.ensure_future(flight.run("k", work))
    await asyncio.sleep(0)
    impatient.cancel()
    gate.set()
    assert await patient == 42
    assert flight.started == 1 and flight.joined == 1 and len(flight) == 0
