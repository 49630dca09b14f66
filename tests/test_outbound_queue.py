"""The outbound queue on SQLite and PostgreSQL: claiming with leases,
backoff, final states, the audit trail, and concurrent claimers that never
take one job twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from gateway.outbound import Backoff, JobKind, JobState, OutboundQueue, Reason
from gateway.store import open_store
from gateway.store.messaging import audit, outbound

from .storage_fixtures import sent_fixture, store_fixture, store_url_fixture, transactions_fixture  # noqa: F401

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)
DAY = timedelta(days=1)


async def _enqueue(queue: OutboundQueue, n: int = 1, *, at: datetime = T0, lifetime: timedelta = DAY) -> list[int]:
    return [
        await queue.enqueue(None, JobKind.MDN, "bob@b.test", f"r{i}@a.test", b"payload %d" % i, at=at,
                            lifetime=lifetime, relates_to=f"<m{i}@a.test>")
        for i in range(n)
    ]


async def _events(store, job_id: int | None = None) -> list[str]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(audit).order_by(audit.c.id))).all()
    return [r.event for r in rows if job_id is None or f"outbound #{job_id}" in (r.detail or "")]


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [(1, timedelta(minutes=1)), (2, timedelta(minutes=2)), (3, timedelta(minutes=4)),
     (5, timedelta(minutes=16)), (6, timedelta(minutes=30)), (10_000, timedelta(minutes=30))],
    ids=["first", "second", "third", "fifth", "capped", "many-attempts-capped-without-overflow"],
)
def test_backoff_doubles_up_to_its_cap(attempts, delay):
    assert Backoff(timedelta(minutes=1), timedelta(minutes=30)).delay(attempts) == delay


async def test_a_claimed_job_is_leased_counted_and_audited(store):
    queue = OutboundQueue(store)
    [job_id] = await _enqueue(queue)
    [job] = await queue.claim("w1", at=T0, lease=LEASE, limit=5)
    assert (job.id, job.kind, job.state, job.attempts) == (job_id, JobKind.MDN, JobState.QUEUED, 1)
    assert (job.lease_owner, job.lease_until, job.relates_to) == ("w1", T0 + LEASE, "<m0@a.test>")
    assert job.payload == b"payload 0" and job.expires_at == T0 + DAY
    assert await queue.claim("w2", at=T0 + LEASE / 2, lease=LEASE, limit=5) == []  # leased
    assert await _events(store, job_id) == ["queued", "claimed"]


async def test_enqueue_inside_a_rolled_back_transaction_queues_nothing(store):
    """The pipeline queues an MDN in the transaction that stores the message: both or neither."""
    queue = OutboundQueue(store)

    class Abort(Exception):
        pass

    def work(conn):
        queue.enqueue_in(conn, "mdn", "bob@b.test", "alice@a.test", b"x", at=T0, lifetime=DAY)
        raise Abort

    with pytest.raises(Abort):
        await store.run(work)
    assert await queue.claim("w", at=T0, lease=LEASE, limit=5) == []
    assert await _events(store) == []


async def test_a_job_is_not_claimed_before_it_is_due(store):
    queue = OutboundQueue(store)
    await _enqueue(queue, at=T0 + timedelta(minutes=5))
    assert await queue.claim("w", at=T0, lease=LEASE, limit=5) == []
    assert len(await queue.claim("w", at=T0 + timedelta(minutes=5), lease=LEASE, limit=5)) == 1


async def test_claims_take_the_oldest_due_first_up_to_the_limit(store):
    queue = OutboundQueue(store)
    ids = await _enqueue(queue, 5)
    first = await queue.claim("w", at=T0, lease=LEASE, limit=2)
    second = await queue.claim("w", at=T0, lease=LEASE, limit=10)
    assert [j.id for j in first] == ids[:2] and [j.id for j in second] == ids[2:]


async def test_retry_backs_off_then_expires_at_the_end_of_the_lifetime(store):
    queue = OutboundQueue(store, backoff=Backoff(timedelta(minutes=1), timedelta(minutes=30)))
    [job_id] = await _enqueue(queue, lifetime=timedelta(minutes=4))
    at = T0
    states = []
    while True:
        jobs = await queue.claim("w", at=at, lease=LEASE, limit=1)
        if not jobs:
            break
        state = await queue.retry(jobs[0], at=at, reason=Reason.SMTP_TEMPORARY, code=451, error="451 4.3.0 busy")
        states.append((at - T0, state))
        at = (await queue.get(job_id)).next_attempt_at
    # attempt 1 at 0 -> due at 1 min; attempt 2 at 1 -> due at 3; attempt 3 at 3 -> 3 + 4 > lifetime 4: expired
    assert states == [(timedelta(0), JobState.QUEUED), (timedelta(minutes=1), JobState.QUEUED),
                      (timedelta(minutes=3), JobState.EXPIRED)]
    job = await queue.get(job_id)
    assert (job.state, job.reason, job.last_code, job.attempts) == (JobState.EXPIRED, Reason.SMTP_TEMPORARY, 451, 3)
    assert job.lease_owner is None and "451 4.3.0 busy" in job.last_error
    assert await _events(store, job_id) == ["queued", "claimed", "deferred", "claimed", "deferred", "claimed", "expired"]
    assert await queue.claim("w", at=T0 + DAY, lease=LEASE, limit=5) == []  # final


@pytest.mark.parametrize(
    ("finish", "state", "reason", "event"),
    [
        (lambda q, j: q.sent(j, at=T0, code=250, peer="127.0.0.1:25", sent_message_id="<s@b.test>"),
         JobState.SENT, Reason.DELIVERED, "sent"),
        (lambda q, j: q.failed(j, at=T0, reason=Reason.SMTP_PERMANENT, code=554, error="554 5.7.1 no"),
         JobState.FAILED, Reason.SMTP_PERMANENT, "failed"),
        (lambda q, j: q.failed(j, at=T0, reason=Reason.NO_CERTIFICATE, code=None, error="no usable certificate"),
         JobState.FAILED, Reason.NO_CERTIFICATE, "failed"),
        (lambda q, j: q.expire(j, at=T0), JobState.EXPIRED, Reason.LIFETIME, "expired"),
    ],
    ids=["sent", "5xx-failed", "no-certificate-failed", "expired-unattempted"],
)
async def test_final_states_are_kept_with_their_reason_and_never_claimed_again(store, finish, state, reason, event):
    queue = OutboundQueue(store)
    [job_id] = await _enqueue(queue)
    [job] = await queue.claim("w", at=T0, lease=LEASE, limit=1)
    assert await finish(queue, job) is not False
    done = await queue.get(job_id)
    assert (done.state, done.reason, done.lease_owner) == (state, reason, None)
    assert await queue.claim("w", at=T0 + 2 * DAY, lease=LEASE, limit=5) == []
    assert (await _events(store, job_id))[-1] == event


async def test_a_lease_that_runs_out_returns_the_job_and_the_late_worker_changes_nothing(store):
    """A worker that died (or stalled past its lease) loses nothing and overwrites nothing."""
    queue = OutboundQueue(store)
    [job_id] = await _enqueue(queue)
    [stale] = await queue.claim("crashed", at=T0, lease=LEASE, limit=1)
    assert await queue.claim("alive", at=T0 + LEASE - timedelta(seconds=1), lease=LEASE, limit=1) == []
    [taken] = await queue.claim("alive", at=T0 + LEASE, lease=LEASE, limit=1)
    assert (taken.id, taken.lease_owner, taken.attempts) == (job_id, "alive", 2)
    assert await queue.sent(stale, at=T0 + LEASE, code=250, peer="x", sent_message_id=None) is False
    assert await queue.retry(stale, at=T0 + LEASE, reason=Reason.TIMEOUT, code=None, error="late") is None
    assert await queue.sent(taken, at=T0 + LEASE, code=250, peer="x", sent_message_id="<s@b.test>") is True
    assert await _events(store, job_id) == ["queued", "claimed", "reclaimed", "sent"]
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(audit).where(audit.c.event == "reclaimed"))).one()
    assert row.node == "alive" and "the lease of crashed ran out" in row.detail


async def test_released_jobs_are_due_at_once_and_the_claim_is_not_counted(store):
    queue = OutboundQueue(store)
    [job_id] = await _enqueue(queue)
    [job] = await queue.claim("stopping", at=T0, lease=LEASE, limit=1)
    assert await queue.release(job, at=T0) is True
    [again] = await queue.claim("other", at=T0, lease=LEASE, limit=1)
    assert (again.id, again.attempts) == (job_id, 1)
    assert await _events(store, job_id) == ["queued", "claimed", "released", "claimed"]


@pytest.mark.parametrize(("kinds", "told"), [((JobKind.MDN,), ["sent"]), ((JobKind.MAIL,), [])],
                         ids=["its kind is told", "another kind is not"])
async def test_the_settled_hook_is_told_of_the_kinds_it_asks_for_in_the_transition_s_transaction(
        store, kinds, told):
    told_of: list[str] = []

    def hook(conn, job, settled):
        told_of.append(settled.state.value)

    queue = OutboundQueue(store, on_settled=hook, settled_kinds=kinds)
    await _enqueue(queue)
    [job] = await queue.claim("w", at=T0, lease=LEASE, limit=1)
    assert await queue.sent(job, at=T0, code=250, peer="x", sent_message_id=None) is True
    assert told_of == told
    assert await _events(store, job.id) == ["queued", "claimed", "sent"]


@pytest.mark.parametrize("move", ["retry", "sent", "lost"])
async def test_a_transition_nobody_is_told_of_is_one_statement_on_postgresql(store, transactions, move):
    """On PostgreSQL the guarded UPDATE and its audit row go out together, without BEGIN or COMMIT
    (``Prepared.later_guarded``); on both databases a lease lost meanwhile changes nothing."""
    queue = OutboundQueue(store)
    [job_id] = await _enqueue(queue)
    [job] = await queue.claim("w", at=T0, lease=LEASE, limit=1)
    if move == "lost":
        await queue.claim("other", at=T0 + LEASE, lease=LEASE, limit=1)
    transactions.clear()
    if move == "retry":
        assert await queue.retry(job, at=T0, reason=Reason.TIMEOUT, code=None, error="slow") is JobState.QUEUED
    else:
        assert await queue.sent(job, at=T0, code=250, peer="x", sent_message_id=None) is (move == "sent")
    if store.dialect == "postgresql":
        assert transactions == []
    expected = {"retry": ["deferred"], "sent": ["sent"], "lost": ["reclaimed"]}[move]
    assert (await _events(store, job_id))[2:] == expected


async def test_a_claim_on_postgresql_is_its_locking_read_then_the_lease_carrying_its_audit_rows(
        store, sent, transactions):
    queue = OutboundQueue(store)
    ids = await _enqueue(queue, 3)
    sent.clear()
    transactions.clear()
    jobs = await queue.claim("w", at=T0, lease=LEASE, limit=5)
    assert [j.id for j in jobs] == ids
    if store.dialect == "postgresql":
        assert (sent, transactions) == (["SELECT", "WITH"], ["BEGIN", "COMMIT"])
    assert [await _events(store, i) for i in ids] == [["queued", "claimed"]] * 3
    async with store.engine.connect() as conn:
        details = list(await conn.scalars(select(audit.c.detail).where(audit.c.event == "claimed").order_by(audit.c.id)))
    assert details == [f"outbound #{i} attempt 1" for i in ids]


async def test_two_queues_on_one_database_claiming_concurrently_never_share_a_job(store_url):
    """Two nodes (two engines, two connection pools) racing for 40 jobs in small batches."""
    first, second = await open_store(store_url), await open_store(store_url)
    try:
        await _enqueue(OutboundQueue(first), 40)
        queues = {"node-1": OutboundQueue(first), "node-2": OutboundQueue(second)}
        claimed: dict[str, list[int]] = {owner: [] for owner in queues}

        async def drain(owner: str) -> None:
            while jobs := await queues[owner].claim(owner, at=T0, lease=LEASE, limit=3):
                claimed[owner] += [j.id for j in jobs]
                await asyncio.sleep(0)

        await asyncio.gather(*(drain(owner) for owner in queues for _ in range(3)))
        everything = claimed["node-1"] + claimed["node-2"]
        assert len(everything) == len(set(everything)) == 40
        async with first.engine.connect() as conn:
            owners = dict((await conn.execute(select(outbound.c.id, outbound.c.lease_owner))).all())
        assert all(owners[i] == "node-1" for i in claimed["node-1"])
        assert all(owners[i] == "node-2" for i in claimed["node-2"])
    finally:
        await first.close()
        await second.close()


async def test_an_unknown_kind_is_a_bug_not_a_row(store):
    with pytest.raises(ValueError):
        await OutboundQueue(store).enqueue(None, "fax", "a@a.test", "b@b.test", b"x", at=T0, lifetime=DAY)

