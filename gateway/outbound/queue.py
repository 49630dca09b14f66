"""The outbound queue: what the gateway must send, claimed by workers with leases.

A job is one message to one recipient (the ``outbound`` table). Its life::

    queued --claim--> queued, leased --sent--> sent          (final)
                                     --retry--> queued, due later (backoff)
                                     --retry past expires_at--> expired (final)
                                     --failed--> failed      (final)
                                     --release--> queued, lease cleared (graceful stop)
                      lease runs out --> claimable again (a crashed worker loses nothing)

Claiming takes due rows whose lease is free or run out and stamps them with
the worker's name and a lease end, in one write transaction. On PostgreSQL
the rows are read ``FOR UPDATE SKIP LOCKED``, so concurrent workers (on
several nodes) pass over each other's rows instead of waiting; on SQLite the
``BEGIN IMMEDIATE`` of ``Store.begin`` holds the single write lock for the
whole claim. Every later transition names the lease it holds: a worker whose
lease ran out (and was taken by another) changes nothing and is told so.

Every transition writes an ``audit`` row in the same transaction.
"""

from __future__ import annotations

import asyncio
import enum
import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    insert,
    literal_column,
    or_,
    select,
    update,
)

from gateway.store import Store
from gateway.store.messaging import audit, audit_row, outbound
from gateway.store.prepared import Id, IdText, Prepared, id_text

from .settings import Backoff


class JobKind(enum.Enum):
    MAIL = "mail"
    """A provider's message, sealed for a Direct recipient."""
    MDN = "mdn"
    DSN = "dsn"
    PROVIDER = "provider"
    """A verified Direct message, in plain form, for a provider's mailbox (its domain's provider route)."""
    NOTICE = "notice"
    """An MDN passed back, a DSN or a failure notice, in plain form, for a provider's mailbox."""

    @property
    def null_sender(self) -> bool:
        """Notifications go out with MAIL FROM:<> so nothing answers them
        (RFC 3798 section 3 for MDNs, RFC 5321 4.5.5 and RFC 3464 for DSNs)."""
        return self not in (JobKind.MAIL, JobKind.PROVIDER)

    @property
    def plain(self) -> bool:
        """Delivered as is to a local domain's provider route: no certificate, no sealing
        (the provider's mail server is ours to trust; the route is configured, not looked up)."""
        return self in (JobKind.PROVIDER, JobKind.NOTICE)


class JobState(enum.Enum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self is not JobState.QUEUED


class Reason(enum.Enum):
    """Why a job was deferred or ended, kept on the job and in the audit trail."""

    DELIVERED = "delivered"
    NO_CERTIFICATE = "no-certificate"
    """Direct item 21: no valid certificate for the recipient anywhere: never sent."""
    DISCOVERY_UNAVAILABLE = "discovery-unavailable"
    """A certificate source could not be asked, or a status was unknown: asked again later."""
    NO_SIGNING_KEY = "no-signing-key"
    SEAL_REJECTED = "seal-rejected"
    NO_SUCH_DOMAIN = "no-such-domain"
    NULL_MX = "null-mx"
    """RFC 7505: the domain publishes that it accepts no mail."""
    DNS_UNAVAILABLE = "dns-unavailable"
    CONNECTION = "connection"
    """Refused, reset, unreachable, or closed by the server mid-session."""
    TIMEOUT = "timeout"
    TLS_UNAVAILABLE = "tls-unavailable"
    """STARTTLS was required but not offered, or its handshake failed."""
    SMTP_TEMPORARY = "smtp-temporary"
    SMTP_PERMANENT = "smtp-permanent"
    LIFETIME = "lifetime"
    NO_PROVIDER_ROUTE = "no-provider-route"
    """A provider's mailbox in a domain without ``provider_smtp``: nowhere to deliver it."""
    INTERNAL = "internal"
    """A bug on our side: never a final failure, the job is retried."""


class Event(enum.Enum):
    """The audit trail's name for each transition."""

    QUEUED = "queued"
    CLAIMED = "claimed"
    RECLAIMED = "reclaimed"
    """Claimed after another worker's lease ran out (that worker died or stalled)."""
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    EXPIRED = "expired"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class Settled:
    """How a job ended (or that it was sent), handed to the queue's ``on_settled`` hook."""

    state: JobState
    """SENT, FAILED or EXPIRED."""
    reason: Reason | None
    code: int | None
    detail: str | None
    peer: str | None
    at: datetime


SettledHook = Callable[[Connection, "Job", Settled], None]
"""Runs inside the transaction that writes a job's SENT, FAILED or EXPIRED state, so what
it writes (the delivery monitor's tracking, a DSN to queue) commits with that state or not at all."""


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    kind: JobKind
    sender: str
    recipient: str
    payload: bytes = field(repr=False)
    state: JobState
    attempts: int
    """Claims so far, this one included."""
    next_attempt_at: datetime
    expires_at: datetime
    lease_owner: str | None
    lease_until: datetime | None
    message_id: int | None
    relates_to: str | None
    created_at: datetime
    last_code: int | None = None
    last_error: str | None = None
    reason: Reason | None = None
    sent_message_id: str | None = None

    @property
    def domain(self) -> str:
        return self.recipient.rpartition("@")[2].lower()


def lock_for_claim(query: Select[Any], dialect: str) -> Select[Any]:
    """The one dialect difference of claiming (module docstring): PostgreSQL
    locks the due rows and skips those another claim holds; SQLite already
    holds the database's single write lock (``BEGIN IMMEDIATE``)."""
    if dialect == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def _job(r: Any) -> Job:
    """A job from a row read by name (SQLAlchemy's ``Row`` or ``Prepared.rows``'s named tuple)."""
    return Job(
        id=r.id, kind=JobKind(r.kind), sender=r.sender, recipient=r.recipient,
        payload=bytes(r.payload), state=JobState(r.state), attempts=r.attempts,
        next_attempt_at=r.next_attempt_at, expires_at=r.expires_at, lease_owner=r.lease_owner,
        lease_until=r.lease_until, message_id=r.message_id, relates_to=r.relates_to,
        created_at=r.created_at, last_code=r.last_code, last_error=r.last_error,
        reason=Reason(r.reason) if r.reason is not None else None, sent_message_id=r.sent_message_id,
    )


MAX_ERROR_TEXT = 2000
"""What is kept of a server's reply or a discovery report on the job (the audit row keeps the same)."""


# Fixed statements with parameters, built once: a claim runs after every attempt under load,
# and building its statements each time was most of its CPU (py-spy, bench/smtp_outbound.py).
_DUE = (
    select(outbound.c.id, outbound.c.lease_owner, outbound.c.lease_until, outbound.c.attempts,
           outbound.c.message_id, outbound.c.recipient)
    .where(outbound.c.state == JobState.QUEUED.value)
    .where(outbound.c.next_attempt_at <= bindparam("at"))
    .where(or_(outbound.c.lease_until.is_(None), outbound.c.lease_until <= bindparam("at")))
    .order_by(outbound.c.next_attempt_at, outbound.c.id)
    .limit(bindparam("limit"))
)


@functools.lru_cache(maxsize=64)
def _lease(count: int) -> Prepared:
    """Lease ``count`` jobs by id and read them back whole (one shape per count: a claim takes
    up to ``batch``, so a handful of shapes, each compiled once)."""
    ids: list[Any] = [bindparam(f"id{i}") for i in range(count)]
    return Prepared(
        update(outbound)
        .where(outbound.c.id.in_(ids))
        .values(lease_owner=bindparam("owner"), lease_until=bindparam("until"),
                attempts=outbound.c.attempts + 1, updated_at=bindparam("at"))
        .returning(*outbound.c)
    )


_HELD = and_(
    outbound.c.id == bindparam("held_id"),
    outbound.c.state == bindparam("held_state"),
    outbound.c.lease_owner == bindparam("held_owner"),
    outbound.c.lease_until == bindparam("held_until"),
)
"""A transition's guard: the job is still queued and leased to the worker moving it."""


_ONE_ATTEMPT_LESS = outbound.c.attempts - literal_column("1")
"""``release``'s uncounted claim; one object, so its statement's shape is cached like the others."""


@functools.lru_cache(maxsize=32)
def _shaped_transition(columns: tuple[tuple[str, Any], ...]) -> Prepared:
    values = {name: expression if expression is not None else bindparam(f"new_{name}")
              for name, expression in columns}
    return Prepared(update(outbound).where(_HELD).values(values))


def _transition_statement(values: dict[str, Any]) -> Prepared:
    """The UPDATE for a transition writing ``values``' columns (a handful of shapes, each built
    once); SQL expressions (``attempts - 1``) stay in the statement, the rest are parameters."""
    return _shaped_transition(tuple(sorted(
        (name, value if isinstance(value, ColumnElement) else None) for name, value in values.items()
    )))


_INSERT_JOB = insert(outbound).returning(outbound.c.id)
_INSERT_AUDIT = insert(audit)
# on the driver's cursor (gateway.store.prepared): every submission, MDN and transition writes these
_JOB_COLUMNS = ("message_id", "kind", "sender", "recipient", "payload", "state", "attempts", "next_attempt_at",
                "expires_at", "relates_to", "created_at", "updated_at")
_QUEUE_JOB = Prepared(_INSERT_JOB, _JOB_COLUMNS)
AUDIT_ROW = Prepared(_INSERT_AUDIT, ("at", "message_id", "recipient", "event", "reason", "detail", "peer", "node"))
"""One ``audit`` row (``run``) or several (``run_many``), as ``gateway.store.messaging.audit_row`` writes them."""


class OutboundQueue:
    """Built once per process over the shared ``Store``; several queues (or nodes)
    on one database never hand one job to two workers at once."""

    def __init__(self, store: Store, *, backoff: Backoff | None = None, on_settled: SettledHook | None = None,
                 settled_kinds: Collection[JobKind] = tuple(JobKind)) -> None:
        self._store = store
        self.backoff = backoff or Backoff()
        self._on_settled = on_settled
        self._settled_kinds = frozenset(settled_kinds)
        """The kinds of job whose end ``on_settled`` is told of: another's transition writes only
        itself and its audit row (one statement on PostgreSQL, ``Prepared.later_guarded``)."""
        self._woken = asyncio.Event()
        self._due: dict[str, Prepared] = {}

    async def enqueue(
        self,
        conn: None,
        kind: JobKind | str,
        sender: str,
        recipient: str,
        payload: bytes,
        *,
        at: datetime,
        lifetime: timedelta,
        relates_to: str | None = None,
        message_id: int | None = None,
    ) -> int:
        """Queue ``payload`` (a plain RFC 5322 message, sealed at send time) for one
        recipient, due now, in a transaction of its own. (``conn`` is always None:
        inside a caller's transaction, use ``enqueue_in``.)"""
        assert conn is None
        job_id = await self._store.run(
            lambda c: self.enqueue_in(c, kind, sender, recipient, payload, at=at, lifetime=lifetime,
                                      relates_to=relates_to, message_id=message_id)
        )
        self.wake()
        return int(job_id)


    def enqueue_in(
        self,
        conn: Connection,
        kind: JobKind | str,
        sender: str,
        recipient: str,
        payload: bytes,
        *,
        at: datetime,
        lifetime: timedelta,
        relates_to: str | None = None,
        message_id: Id | None = None,
        trail: list[dict[str, Any]] | None = None,
        deferred_id: bool = False,
    ) -> Id:
        """``enqueue`` inside the caller's open write transaction (``Store.run``), so an
        MDN is queued atomically with the acceptance it reports. With ``trail``, its audit
        row is added there for the caller to write with its own."""
        return enqueue_in(conn, kind, sender, recipient, payload, at=at, lifetime=lifetime, relates_to=relates_to,
                          message_id=message_id, trail=trail, deferred_id=deferred_id)

    @property
    def woken(self) -> asyncio.Event:
        """Set by ``wake``; the delivery loop of this process waits on it between claims."""
        return self._woken

    def wake(self) -> None:
        """A transaction of this process that queued jobs has committed: the local
        delivery loop claims now instead of at its next poll. Called after the
        commit (never inside it): a claim that ran before the commit would not
        see the job. Jobs other nodes queue are found by the poll."""
        self._woken.set()

    async def claim(self, owner: str, *, at: datetime, lease: timedelta, limit: int) -> list[Job]:
        """Up to ``limit`` due jobs, leased to ``owner`` until ``at + lease``."""
        # Not durable (Store.run): a claim lost in a power cut leaves its jobs due, as they were.
        return await self._store.run(lambda conn: self._claim_in(conn, owner, at, lease, limit), durable=False)

    def _claim_in(self, conn: Connection, owner: str, at: datetime, lease: timedelta, limit: int) -> list[Job]:
        due = self._due.get(self._store.dialect)
        if due is None:
            due = self._due[self._store.dialect] = Prepared(lock_for_claim(_DUE, self._store.dialect))
        rows = due.rows(conn, {"at": at, "limit": limit})
        if not rows:
            return []
        trail = []
        for r in rows:  # written before the lease, which carries them on PostgreSQL (one round trip)
            detail = f"outbound #{r.id} attempt {r.attempts + 1}"
            if r.lease_owner is not None:
                detail += f": the lease of {r.lease_owner} ran out at {r.lease_until.isoformat() if r.lease_until else '?'}"
            trail.append(_audit_row(at, r.message_id, r.recipient,
                                    Event.CLAIMED if r.lease_owner is None else Event.RECLAIMED, None, detail,
                                    node=owner))
        AUDIT_ROW.later_many(conn, trail)
        params: dict[str, Any] = {f"id{i}": r.id for i, r in enumerate(rows)}
        jobs = [_job(r) for r in _lease(len(rows)).rows(conn, params | {"owner": owner, "until": at + lease, "at": at})]
        if len(jobs) != len(rows):  # the due rows are locked (PostgreSQL) or the database is (SQLite)
            raise RuntimeError(f"claimed {len(jobs)} of the {len(rows)} jobs found due and locked")
        jobs.sort(key=lambda j: (j.next_attempt_at, j.id))
        return jobs

    async def sent(self, job: Job, *, at: datetime, code: int, peer: str, sent_message_id: str | None) -> bool:
        """Delivered; False when ``job``'s lease was no longer held (another worker has it)."""
        return await self._transition(
            job, at, JobState.SENT, Event.SENT, Reason.DELIVERED, code, None, peer,
            sent_message_id=sent_message_id,
        )

    async def retry(
        self, job: Job, *, at: datetime, reason: Reason, code: int | None, error: str, peer: str | None = None
    ) -> JobState | None:
        """A temporary failure: due again after the backoff, or ``EXPIRED`` (final)
        when that would pass the job's lifetime. None when the lease was lost."""
        due = at + self.backoff.delay(job.attempts)
        if due >= job.expires_at:
            detail = f"{error} (no attempt left before {job.expires_at.isoformat()})"
            done = await self._transition(job, at, JobState.EXPIRED, Event.EXPIRED, reason, code, detail, peer)
            return JobState.EXPIRED if done else None
        done = await self._transition(
            job, at, JobState.QUEUED, Event.DEFERRED, reason, code, f"{error} (next attempt {due.isoformat()})",
            peer, next_attempt_at=due,
        )
        return JobState.QUEUED if done else None

    async def failed(
        self, job: Job, *, at: datetime, reason: Reason, code: int | None, error: str, peer: str | None = None
    ) -> bool:
        """A permanent failure (final)."""
        return await self._transition(job, at, JobState.FAILED, Event.FAILED, reason, code, error, peer)

    async def expire(self, job: Job, *, at: datetime) -> bool:
        """Claimed after its lifetime ran out (the gateway was down): final, not attempted."""
        detail = f"not delivered before {job.expires_at.isoformat()}"
        if job.last_error:
            detail += f"; last error: {job.last_error}"
        return await self._transition(
            job, at, JobState.EXPIRED, Event.EXPIRED, job.reason or Reason.LIFETIME, job.last_code, detail, None
        )

    async def release(self, job: Job, *, at: datetime) -> bool:
        """Hand the job back unattempted (graceful stop): due at once for any worker,
        and this claim not counted as an attempt."""
        return await self._transition(
            job, at, JobState.QUEUED, Event.RELEASED, job.reason, job.last_code, "handed back on shutdown", None,
            keep_outcome=True, attempts=_ONE_ATTEMPT_LESS,
        )

    async def get(self, job_id: int) -> Job | None:
        async with self._store.engine.connect() as conn:
            row = (await conn.execute(select(outbound).where(outbound.c.id == job_id))).first()
        return _job(row) if row is not None else None

    async def _transition(
        self,
        job: Job,
        at: datetime,
        state: JobState,
        event: Event,
        reason: Reason | None,
        code: int | None,
        detail: str | None,
        peer: str | None,
        *,
        keep_outcome: bool = False,
        **extra: Any,
    ) -> bool:
        detail = detail[:MAX_ERROR_TEXT] if detail is not None else None
        values: dict[str, Any] = {"state": state.value, "lease_owner": None, "lease_until": None, "updated_at": at}
        if not keep_outcome:
            values |= {"reason": reason.value if reason else None, "last_code": code, "last_error": detail}
        values |= extra
        if job.lease_owner is None or job.lease_until is None:
            raise ValueError(f"outbound #{job.id} was not claimed: only a lease holder moves a job")
        statement = _transition_statement(values)
        params = {f"new_{k}": v for k, v in values.items() if not isinstance(v, ColumnElement)}
        params |= {"held_id": job.id, "held_state": JobState.QUEUED.value, "held_owner": job.lease_owner,
                   "held_until": job.lease_until}
        hook = self._on_settled if state is not JobState.QUEUED and job.kind in self._settled_kinds else None
        trail = _audit_row(
            at, job.message_id, job.recipient, event, reason,
            f"outbound #{job.id}" + (f": {detail}" if detail else "")
            + (f" [{code}]" if code is not None and not keep_outcome else ""),
            peer=peer, node=job.lease_owner,
        )

        def work(conn: Connection) -> Id:
            """How many rows the transition moved: 1, or 0 when the lease was lost."""
            if hook is None:
                return statement.later_guarded(conn, params, AUDIT_ROW, trail)
            cursor = statement.execute(conn, params)
            try:
                if cursor.rowcount != 1:
                    return 0
            finally:
                cursor.close()
            hook(conn, job, Settled(state, reason, code, detail, peer, at))
            AUDIT_ROW.later(conn, trail)
            return 1

        # One transaction: the hook is synchronous and its writes commit with the job's state.
        # Not durable (Store.run): lost in a power cut, the job is claimed again when its lease
        # runs out and attempted again, as after a crash between the peer's reply and the commit;
        # what the hook queued is queued again with that outcome (a notice sent in the lost
        # second may then go twice: at least once, as SMTP itself promises).
        done = int(await self._store.run(work, durable=False)) == 1
        if done and hook is not None:
            self.wake()  # the hook may have queued a notice (a DSN, the dispatched MDN)
        return done



def enqueue_in(
    conn: Connection,
    kind: JobKind | str,
    sender: str,
    recipient: str,
    payload: bytes,
    *,
    at: datetime,
    lifetime: timedelta,
    relates_to: str | None = None,
    message_id: Id | None = None,
    trail: list[dict[str, Any]] | None = None,
    deferred_id: bool = False,
) -> Id:
    """Queue one job in the caller's open write transaction (``OutboundQueue.enqueue_in``;
    also for writers that run inside the queue's own transitions, such as the delivery
    monitor's notices). With ``trail``, its audit row is added there for the caller to
    write with its own (one round trip) instead of being written now. With ``deferred_id``
    (a caller that only hands the job's id to other writes), the job waits with the
    transaction's other writes on PostgreSQL and its id is a ``Ref`` (``Prepared.later_returning``)."""
    kind = JobKind(kind)  # "mdn" or JobKind.MDN; anything else is a bug here, not a queued row
    # fixed statements with parameters: compiled once, on the receiving hot path
    values = dict(
        message_id=message_id, kind=kind.value, sender=sender, recipient=recipient, payload=payload,
        state=JobState.QUEUED.value, attempts=0, next_attempt_at=at, expires_at=at + lifetime,
        relates_to=relates_to, created_at=at, updated_at=at,
    )
    job_id = _QUEUE_JOB.later_returning(conn, values) if deferred_id else int(_QUEUE_JOB.scalar(conn, values))
    row = _audit_row(at, message_id, recipient, Event.QUEUED, None, id_text("outbound #", job_id, f" ({kind.value})"))
    if trail is not None:
        trail.append(row)
    else:
        AUDIT_ROW.later(conn, row)
    return job_id


def _audit_row(
    at: datetime,
    message_id: Id | None,
    recipient: str,
    event: Event,
    reason: Reason | None,
    detail: str | IdText,
    *,
    peer: str | None = None,
    node: str | None = None,
) -> dict[str, Any]:
    return audit_row(at, event.value, message_id=message_id, recipient=recipient,
                     reason=reason.value if reason else None, detail=detail, peer=peer, node=node)

