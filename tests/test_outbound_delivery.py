"""The delivery worker against real parts on loopback: our DNS responder
publishing the recipient's certificate, the real discovery and trust engine,
the sender domain's key from the database, and an aiosmtpd server that
records what it accepts and answers 4xx/5xx when told to. What arrives there
opens with the recipient's key (``open_inbound``). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from anchors.source import StaticAnchors
from gateway.core.inbound import open_inbound
from gateway.core.outcomes import Opened
from gateway.discovery import DiscoverySettings, Nameserver, TrustServiceJudge, build_discovery
from gateway.domains import LocalDomains
from gateway.outbound import (
    DeliveryWorker,
    JobKind,
    JobState,
    MxRouter,
    OutboundQueue,
    OutboundSettings,
    Reason,
    SmtpTransport,
    StaticRoute,
    TlsMode,
)
from gateway.publish import DnsSettings, StaticPublished, start_responder
from gateway.store import open_store
from gateway.store.messaging import audit
from trust import OfflineFetcher, TrustService

from .outbound_sink import Sink, server_tls, start_sink
from .pki import NOW, address_leaf, org_leaf, root
from .servers.common import free_port
from .storage_fixtures import store_fixture, store_url_fixture  # noqa: F401

A, B = "a.test", "b.test"
SETTINGS = OutboundSettings(
    helo="gw.a.test", connect_timeout=2.0, command_timeout=5.0, data_timeout=5.0, lease=timedelta(minutes=5),
    poll=0.05,
)


@pytest.fixture(scope="module")
def pki():
    a_root, b_root = root("A Root"), root("B Root")
    return {
        "a_org": org_leaf(a_root, A),
        "b_root": b_root,
        "bob": address_leaf(b_root, f"bob@{B}"),
    }


def _message(n: int = 0, sender: str = f"alice@{A}", to: str = f"bob@{B}") -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: referral {n}\r\nMessage-ID: <m{n}@{A}>\r\n"
        f"Date: Mon, 01 Jun 2026 12:00:00 +0000\r\n\r\nPatient summary {n}.\r\n"
    ).encode()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self):
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class World:
    store: object
    queue: OutboundQueue
    sink: Sink
    clock: Clock
    dns_port: int
    pki: dict

    def worker(self, settings: OutboundSettings = SETTINGS, *, owner: str = "w1", store=None,
               route_port: int | None = None) -> DeliveryWorker:
        settings = replace(settings, routes={B: StaticRoute("127.0.0.1", route_port or self.sink.port)})
        trust = TrustService(StaticAnchors((self.pki["b_root"].ref,)), OfflineFetcher())
        discovery = build_discovery(
            DiscoverySettings((Nameserver("127.0.0.1", self.dns_port),), dns_timeout=1.0, ldap=False),
            TrustServiceJudge(trust), OfflineFetcher(),
        )
        store = store or self.store
        router = MxRouter(discovery.dns, static=settings.routes, tls_for=settings.tls_for, mx_port=settings.mx_port)
        return DeliveryWorker(
            OutboundQueue(store) if store is not self.store else self.queue, discovery=discovery,
            keys=LocalDomains(store), router=router, transport=SmtpTransport(settings), settings=settings,
            clock=self.clock, owner=owner,
        )

    async def enqueue(self, n: int = 0, *, kind: JobKind = JobKind.MAIL, to: str = f"bob@{B}",
                      lifetime: timedelta = timedelta(hours=1)) -> int:
        return await self.queue.enqueue(None, kind, f"alice@{A}", to, _message(n, to=to), at=self.clock(),
                                        lifetime=lifetime)

    async def events(self, job_id: int) -> list[str]:
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(audit.c.event, audit.c.detail).order_by(audit.c.id))).all()
        return [e for e, d in rows if f"outbound #{job_id}" in (d or "")]


async def _world(store, pki, tmp_path, *, tls: bool):
    await LocalDomains(store).add_key(A, pki["a_org"].pair, at=NOW)
    responder = await start_responder(DnsSettings(zones=(B,)), StaticPublished.of([pki["bob"].ref]),
                                      host="127.0.0.1", port=0)
    sink = await start_sink(tls=server_tls(tmp_path) if tls else None)
    return World(store, OutboundQueue(store), sink, Clock(), responder.port, pki), responder


@pytest.fixture
async def world(store, pki, tmp_path):
    w, responder = await _world(store, pki, tmp_path, tls=True)
    yield w
    await w.sink.close()
    await responder.close()


@pytest.fixture
async def plain_world(store, pki, tmp_path):
    """A destination that does not offer STARTTLS."""
    w, responder = await _world(store, pki, tmp_path, tls=False)
    yield w
    await w.sink.close()
    await responder.close()


def _opens_for_bob(world: World, data: bytes, n: int = 0) -> Opened:
    opened = open_inbound(data, [world.pki["bob"].pair], at=NOW)
    assert isinstance(opened, Opened), opened
    assert opened.sender == f"alice@{A}" and opened.inner.message_id == f"<m{n}@{A}>"
    assert f"Patient summary {n}.".encode() in opened.content
    return opened


@pytest.mark.parametrize(("kind", "mail_from"), [(JobKind.MAIL, f"alice@{A}"), (JobKind.MDN, "<>")],
                         ids=["mail-from-the-sender", "mdn-from-the-null-sender"])
async def test_a_queued_message_is_sealed_delivered_over_starttls_and_opens_for_the_recipient(world, kind, mail_from):
    job_id = await world.enqueue(kind=kind)
    [attempt] = await world.worker().run_once()
    assert (attempt.state, attempt.reason, attempt.code) == (JobState.SENT, Reason.DELIVERED, 250)
    [got] = world.sink.received
    assert got.mail_from == mail_from and got.rcpt_tos == (f"bob@{B}",) and got.tls
    _opens_for_bob(world, got.data)
    job = await world.queue.get(job_id)
    assert job.state is JobState.SENT and job.sent_message_id == f"<m0@{A}>"
    assert await world.events(job_id) == ["queued", "claimed", "sent"]


async def test_a_4xx_is_retried_after_the_backoff_and_then_sent(world):
    job_id = await world.enqueue()
    world.sink.data_replies.append("451 4.3.0 try again later")
    worker = world.worker()
    [first] = await worker.run_once()
    assert (first.state, first.reason, first.code) == (JobState.QUEUED, Reason.SMTP_TEMPORARY, 451)
    assert await worker.run_once() == []  # not due yet
    world.clock.advance(timedelta(minutes=1))
    [second] = await worker.run_once()
    assert second.state is JobState.SENT and (await world.queue.get(job_id)).attempts == 2
    assert len(world.sink.received) == 1
    _opens_for_bob(world, world.sink.received[0].data)
    assert await world.events(job_id) == ["queued", "claimed", "deferred", "claimed", "sent"]


async def test_4xx_until_the_lifetime_runs_out_expires_the_job(world):
    job_id = await world.enqueue(lifetime=timedelta(minutes=3))
    world.sink.data_replies += ["451 4.3.0 busy"] * 5
    worker = world.worker()
    states = []
    for _ in range(5):
        states += [a.state for a in await worker.run_once()]
        world.clock.advance(timedelta(minutes=1))
    assert states == [JobState.QUEUED, JobState.EXPIRED]  # at 0 (due +1), at 1 min (+2 = 3: lifetime over)
    job = await world.queue.get(job_id)
    assert (job.state, job.reason, job.last_code) == (JobState.EXPIRED, Reason.SMTP_TEMPORARY, 451)
    assert world.sink.received == []


@pytest.mark.parametrize(
    ("rcpt", "data", "code"),
    [([], ["554 5.7.1 message refused"], 554), (["550 5.1.1 no such user"], [], 550)],
    ids=["5xx-after-data", "5xx-at-rcpt"],
)
async def test_a_5xx_fails_the_job_at_once(world, rcpt, data, code):
    job_id = await world.enqueue()
    world.sink.rcpt_replies += rcpt
    world.sink.data_replies += data
    [attempt] = await world.worker().run_once()
    assert (attempt.state, attempt.reason, attempt.code) == (JobState.FAILED, Reason.SMTP_PERMANENT, code)
    job = await world.queue.get(job_id)
    assert job.state is JobState.FAILED and str(code) in job.last_error
    world.clock.advance(timedelta(days=1))
    assert await world.worker().run_once() == []


async def test_no_certificate_for_the_recipient_fails_with_the_reason_and_sends_nothing(world):
    """Direct item 21: no valid certificate anywhere, so the message must not go out."""
    job_id = await world.enqueue(to=f"carol@{B}")
    [attempt] = await world.worker().run_once()
    assert (attempt.state, attempt.reason) == (JobState.FAILED, Reason.NO_CERTIFICATE)
    job = await world.queue.get(job_id)
    assert f"no usable certificate for carol@{B}" in job.last_error and "CERT" in job.last_error
    assert world.sink.received == []


async def test_a_recipient_domain_that_refuses_our_questions_is_a_temporary_failure(world):
    """Our responder answers REFUSED outside its zones: discovery could not ask, so retry."""
    await world.enqueue(to="dave@elsewhere.test")
    [attempt] = await world.worker().run_once()
    assert (attempt.state, attempt.reason) == (JobState.QUEUED, Reason.DISCOVERY_UNAVAILABLE)


async def test_a_sender_without_a_signing_key_fails(world):
    job_id = await world.queue.enqueue(None, JobKind.MAIL, "alice@unknown.test", f"bob@{B}", _message(),
                                       at=NOW, lifetime=timedelta(hours=1))
    [attempt] = await world.worker().run_once()
    assert (attempt.state, attempt.reason) == (JobState.FAILED, Reason.NO_SIGNING_KEY)
    assert (await world.queue.get(job_id)).state is JobState.FAILED and world.sink.received == []


async def test_a_destination_that_is_down_is_retried(world):
    job_id = await world.enqueue()
    [attempt] = await world.worker(route_port=free_port()).run_once()
    assert (attempt.state, attempt.reason) == (JobState.QUEUED, Reason.CONNECTION)
    world.clock.advance(timedelta(minutes=1))
    [again] = await world.worker().run_once()  # the server is back
    assert again.state is JobState.SENT and (await world.queue.get(job_id)).attempts == 2


async def test_starttls_required_but_not_offered_is_a_temporary_failure_and_nothing_is_sent(plain_world):
    await plain_world.enqueue()
    required = replace(SETTINGS, starttls_required=frozenset({B}))
    [attempt] = await plain_world.worker(required).run_once()
    assert (attempt.state, attempt.reason) == (JobState.QUEUED, Reason.TLS_UNAVAILABLE)
    assert plain_world.sink.received == []


async def test_opportunistic_tls_sends_in_the_clear_when_starttls_is_not_offered(plain_world):
    await plain_world.enqueue()
    [attempt] = await plain_world.worker(replace(SETTINGS, starttls=TlsMode.OPPORTUNISTIC)).run_once()
    assert attempt.state is JobState.SENT and not plain_world.sink.received[0].tls


async def test_a_job_claimed_after_its_lifetime_expires_unattempted(world):
    job_id = await world.enqueue(lifetime=timedelta(minutes=10))
    world.clock.advance(timedelta(minutes=10))
    [attempt] = await world.worker().run_once()
    assert attempt.state is JobState.EXPIRED and world.sink.received == []
    assert (await world.queue.get(job_id)).reason is Reason.LIFETIME


async def test_two_workers_on_one_database_never_send_a_job_twice(world, store_url):
    other_store = await open_store(store_url)
    try:
        ids = [await world.enqueue(n) for n in range(12)]
        small = replace(SETTINGS, batch=2)
        workers = [world.worker(small, owner="node-1"), world.worker(small, owner="node-2", store=other_store)]

        async def drain(worker: DeliveryWorker) -> int:
            done = 0
            while attempts := await worker.run_once():
                done += len(attempts)
            return done

        counts = await asyncio.gather(*(drain(w) for w in workers))
        assert sum(counts) == 12 and all(counts)  # both took part
        seen = sorted(open_inbound(r.data, [world.pki["bob"].pair], at=NOW).inner.message_id
                      for r in world.sink.received)
        assert seen == sorted(f"<m{n}@{A}>" for n in range(12))  # each exactly once
        assert [(await world.queue.get(i)).state for i in ids] == [JobState.SENT] * 12
    finally:
        await other_store.close()


async def test_a_crashed_workers_lease_runs_out_and_another_worker_sends_the_job(world):
    job_id = await world.enqueue()
    [stale] = await world.queue.claim("crashed-node", at=NOW, lease=SETTINGS.lease, limit=1)
    worker = world.worker(owner="survivor")
    world.clock.advance(SETTINGS.lease - timedelta(seconds=1))
    assert await worker.run_once() == []
    world.clock.advance(timedelta(seconds=1))
    [attempt] = await worker.run_once()
    assert attempt.state is JobState.SENT and len(world.sink.received) == 1
    assert await world.queue.sent(stale, at=world.clock(), code=250, peer="x", sent_message_id=None) is False
    assert await world.events(job_id) == ["queued", "claimed", "reclaimed", "sent"]


async def test_a_stopping_worker_hands_back_what_it_could_not_finish(world):
    job_id = await world.enqueue()
    world.sink.data_delay = 3.0  # the final dot's reply is slow
    stop = asyncio.Event()
    worker = world.worker()
    running = asyncio.create_task(worker.run(stop, grace=0.2))
    await asyncio.wait_for(world.sink.data_started.wait(), 5)
    stop.set()
    await asyncio.wait_for(running, 5)
    job = await world.queue.get(job_id)
    assert (job.state, job.lease_owner, job.attempts) == (JobState.QUEUED, None, 0)
    assert (await world.events(job_id))[-1] == "released"


async def test_a_worker_outlives_a_database_it_cannot_reach_and_still_stops(pki):
    """Every job lives in the database, so the loop waits for it rather than dying."""
    unreachable = await open_store(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none", migrate=False)
    try:
        queue = OutboundQueue(unreachable)
        worker = DeliveryWorker(
            queue, discovery=None, keys=LocalDomains(unreachable), router=None, transport=SmtpTransport(SETTINGS),
            settings=SETTINGS, clock=Clock(), owner="patient",
        )
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        await asyncio.sleep(0.3)  # several failed claims, SETTINGS.poll apart
        assert not running.done()
        stop.set()
        await asyncio.wait_for(running, 5)
    finally:
        await unreachable.close()


class _StalledDiscovery:
    """A CertificateFinder (our own Protocol) that never answers in time."""

    async def discover(self, address, *, local_domain, at):
        await asyncio.sleep(60)


async def test_an_attempt_ends_before_its_lease_does(world):
    """No second worker may take a job while the first could still be sending it."""
    quick = replace(SETTINGS, connect_timeout=0.1, command_timeout=0.1, data_timeout=0.1,
                    lease=timedelta(seconds=1))
    worker = world.worker(quick)
    worker.discovery = _StalledDiscovery()
    job_id = await world.enqueue()
    started = asyncio.get_running_loop().time()
    [attempt] = await worker.run_once()
    # cut at 0.9 s of the 1 s lease (the rest kept to record the outcome), not after the 60 s the
    # discovery would take; the bound here leaves room for a loaded machine's claim and commit
    assert asyncio.get_running_loop().time() - started < 10
    assert (attempt.state, attempt.reason) == (JobState.QUEUED, Reason.TIMEOUT) and "lease" in attempt.detail
    assert (await world.queue.get(job_id)).lease_owner is None


async def test_a_running_worker_delivers_what_is_queued_and_finishes_a_session_within_its_grace(world):
    stop = asyncio.Event()
    running = asyncio.create_task(world.worker().run(stop, grace=5.0))
    ids = [await world.enqueue(n) for n in range(3)]  # queued while the worker polls
    for _ in range(200):
        if len(world.sink.received) == 3:
            break
        await asyncio.sleep(0.05)
    world.sink.data_delay = 0.5
    world.sink.data_started.clear()
    ids.append(await world.enqueue(3))
    await asyncio.wait_for(world.sink.data_started.wait(), 5)
    stop.set()  # mid-DATA: the session has 5 s to finish, and needs 0.5
    await asyncio.wait_for(running, 10)
    assert [(await world.queue.get(i)).state for i in ids] == [JobState.SENT] * 4
    assert len(world.sink.received) == 4


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


async def test_a_job_committed_in_this_process_is_claimed_at_once_not_at_the_next_poll(world):
    stop = asyncio.Event()
    running = asyncio.create_task(world.worker(replace(SETTINGS, poll=3600)).run(stop))
    try:
        await asyncio.sleep(0.3)  # the loop's first claim found nothing; its next poll is an hour away
        await world.enqueue()  # commits, then wakes this process's loop (OutboundQueue.wake)
        await _until(lambda: len(world.sink.received) == 1)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)


async def test_a_slow_session_does_not_hold_back_a_job_queued_after_it(world):
    """Slots are refilled as they free: no round waits for its slowest session."""
    stop = asyncio.Event()
    running = asyncio.create_task(world.worker(replace(SETTINGS, poll=3600, batch=2)).run(stop, grace=5))
    try:
        world.sink.data_delay = 2.0
        slow = await world.enqueue(0)
        await asyncio.wait_for(world.sink.data_started.wait(), 5)
        world.sink.data_delay = 0.0  # read at each DATA: the first session is already waiting 2 s
        quick = await world.enqueue(1)
        await _until(lambda: len(world.sink.received) == 1, timeout=1.5)
        assert _opens_for_bob(world, world.sink.received[0].data, 1)
        assert (await world.queue.get(slow)).state is JobState.QUEUED  # still in its session
        await _until(lambda: len(world.sink.received) == 2)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
    assert [(await world.queue.get(i)).state for i in (slow, quick)] == [JobState.SENT] * 2  # both recorded


async def test_a_stopping_worker_claims_nothing_more_when_its_last_session_ends(world):
    stop = asyncio.Event()
    running = asyncio.create_task(world.worker(replace(SETTINGS, poll=3600, batch=1)).run(stop, grace=5))
    world.sink.data_delay = 0.5
    first = await world.enqueue(0)
    await asyncio.wait_for(world.sink.data_started.wait(), 5)
    second = await world.enqueue(1)  # due, but the one slot is busy
    stop.set()
    await asyncio.wait_for(running, 10)
    done, left = await world.queue.get(first), await world.queue.get(second)
    assert done.state is JobState.SENT
    assert (left.state, left.lease_owner, left.attempts) == (JobState.QUEUED, None, 0)  # for any worker, at once


class _CountingFinder:
    """The real discovery, its calls counted (our own CertificateFinder Protocol)."""

    def __init__(self, discovery) -> None:
        self.discovery = discovery
        self.asked = 0

    async def discover(self, address, *, local_domain, at):
        self.asked += 1
        return await self.discovery.discover(address, local_domain=local_domain, at=at)


async def test_a_recipient_s_certificates_are_reused_for_seconds_then_discovered_again(world):
    from gateway.outbound.worker import DISCOVERED_TTL

    worker = world.worker()
    worker.discovery = counting = _CountingFinder(worker.discovery)
    for n in (0, 1):  # one after the other (attempts in flight at once may each ask before the first answer)
        await world.enqueue(n)
        [attempt] = await worker.run_once()
        assert attempt.state is JobState.SENT
    assert counting.asked == 1
    world.clock.advance(DISCOVERED_TTL)
    await world.enqueue(2)
    [attempt] = await worker.run_once()
    assert attempt.state is JobState.SENT and counting.asked == 2
    assert len(world.sink.received) == 3
    for got in world.sink.received:  # sealed for bob each time, whichever certificates' copy was used
        opened = open_inbound(got.data, [world.pki["bob"].pair], at=NOW)
        assert isinstance(opened, Opened), opened
