"""The pipeline behind the submission port (587): an EHR's plain message becomes queued Direct mail.

The edge (gateway/smtp, ``start_submission``) has authenticated the session;
this pipeline answers its three questions:

- MAIL FROM: an address of the account's domain (else 550 5.7.1). The
  account's domain is looked up at MAIL and kept for ``ACCOUNT_TTL`` (the
  final dot asks again), so a removed account sends nothing more within
  seconds, and a busy EHR costs one lookup every few seconds, not two per
  message.
- RCPT: any Direct address, read by the core's strict address parser.
- The final dot: ``prepare`` (pure; off the event loop when large) checks the From and
  adds what Direct needs; then ONE transaction writes the ``messages`` row
  (direction "out"), an audit row, and per recipient an outbound job (sealed
  and sent later by the delivery worker) and the delivery monitor's tracking
  row. The 250 comes only after that commit: a crash before it leaves nothing
  (the EHR, without a 250, sends again), a crash after it loses nothing.

Failures follow the receiving pipeline's rules: storage down or a bug → 451
4.3.0, details only in the log; every refusal at the final dot is a
``messages`` row and an audit row with its reason.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import Connection, insert
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from gateway.common.ttl_cache import TtlCache
from gateway.core.limits import DEFAULT_LIMITS, Limits
from gateway.monitor.tracking import track_in
from gateway.outbound.queue import AUDIT_ROW
from gateway.smtp.interface import Received, SessionInfo, SmtpReply
from gateway.store import Store, StoreError
from gateway.store.messaging import audit, audit_row, messages
from gateway.store.prepared import Id
from gateway.store.prepared import Prepared as PreparedStatement

from . import replies
from .prepare import Prepared, Refused, prepare
from .prepare import address as direct_address

log = structlog.get_logger("directgw.submit")

STATE_SUBMITTED = "submitted"
"""The ``messages`` row of an accepted submission; each recipient's progress is its tracking row."""
STATE_REJECTED = "rejected"
EVENT_SUBMITTED = "submitted"
EVENT_REJECTED = "rejected"


class AccountDirectory(Protocol):
    async def domain_of(self, name: str) -> str | None:
        """The account's local domain, or None when there is no such account (any more)."""


class Outbox(Protocol):
    """Where jobs are queued (gateway/outbound's queue), inside the acceptance's own transaction."""

    def enqueue_in(
        self, conn: Connection, kind: str, sender: str, recipient: str, payload: bytes, *,
        at: datetime, lifetime: timedelta, relates_to: str | None = None, message_id: Id | None = None,
        trail: list[dict[str, Any]] | None = None, deferred_id: bool = False,
    ) -> Id: ...

    def wake(self) -> None:
        """After the commit of a transaction that queued jobs: the local delivery loop claims them now."""


@dataclass(frozen=True, slots=True)
class SubmitSettings:
    lifetime: timedelta
    """How long each recipient's job is retried ([outbound] lifetime); then one DSN."""
    limits: Limits = DEFAULT_LIMITS
    node: str = "directgw"


ACCOUNT_TTL = timedelta(seconds=5)
"""How long an account's domain is reused: as the outbound worker's signing pairs
(gateway.outbound.worker.SIGNING_PAIR_TTL), so a removed account is refused within seconds."""

PREPARE_INLINE_LIMIT = 256 * 1024
"""Submissions up to this size are prepared on the event loop: ``prepare`` reads the header
fields and copies the body (about 40 us for a 6 KB message here), less than the hop to a
thread and back (the hop was 2% of the gateway's GIL samples under bench/smtp_outbound.py);
larger ones (up to the message size limit) go to a thread so the loop keeps answering.
The receiving pipeline draws the same line (gateway.receive.pipeline.INLINE_LIMIT)."""

ACCOUNTS_HELD = 1024
"""Accounts whose domains are kept (LRU beyond): one per EHR system."""

_INSERT_MESSAGE = insert(messages).returning(messages.c.id)
_INSERT_AUDIT = insert(audit)
_ACCEPT_MESSAGE = PreparedStatement(_INSERT_MESSAGE, (
    "direction", "kind", "received_at", "peer", "helo", "mail_from", "message_id", "sender", "subject", "size",
    "sha256", "raw", "state", "reason", "detail", "updated_at"))
"""The acceptance's insert on the driver's cursor (gateway.store.prepared), as its audit row and jobs are."""
_STORAGE_ERRORS = (StoreError, OperationalError, DBAPIError, IntegrityError, OSError)


class SubmissionPipeline:
    def __init__(
        self, store: Store, accounts: AccountDirectory, outbox: Outbox, clock: Callable[[], datetime],
        settings: SubmitSettings,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._outbox = outbox
        self._clock = clock
        self._settings = settings
        self._domains: TtlCache[str] = TtlCache(max_entries=ACCOUNTS_HELD)

    async def _domain_of(self, account: str, at: datetime) -> str | None:
        """The account's domain, reused for ``ACCOUNT_TTL`` (module docstring); "no such
        account" is not kept, so an account added now can send at once."""
        domain = self._domains.get(account, at)
        if domain is None:
            domain = await self._accounts.domain_of(account)
            if domain is not None:
                self._domains.put(account, domain, at, ACCOUNT_TTL)
        return domain

    # ------------------------------------------------------------------ MAIL

    async def sender(self, session: SessionInfo, address: str) -> SmtpReply | None:
        if session.authenticated_as is None:
            return replies.NOT_AUTHENTICATED
        found = direct_address(address)
        if found is None:
            return replies.SENDER_SYNTAX
        try:
            domain = await self._domain_of(session.authenticated_as, self._clock())
        except (*_STORAGE_ERRORS, SQLAlchemyError) as exc:
            log.error("submit.storage-unavailable", at="mail", peer=session.peer, error=repr(exc))
            return replies.STORAGE_UNAVAILABLE
        if domain is None:
            log.info("submit.account-gone", account=session.authenticated_as, peer=session.peer)
            return replies.ACCOUNT_GONE
        if found.rpartition("@")[2] != domain:
            log.info("submit.sender-outside", account=session.authenticated_as, sender=found, domain=domain)
            return replies.SENDER_OUTSIDE
        return None

    # ------------------------------------------------------------------ RCPT

    async def recipient(self, session: SessionInfo, mail_from: str, address: str) -> SmtpReply | None:
        if session.authenticated_as is None:
            return replies.NOT_AUTHENTICATED  # the edge asks only after AUTH; never a relay regardless
        return None if direct_address(address) is not None else replies.RECIPIENT_SYNTAX

    # ------------------------------------------------------------------ DATA

    async def message(self, received: Received) -> SmtpReply:
        at = self._clock()
        structlog.contextvars.bind_contextvars(receipt=hashlib.sha256(received.data).hexdigest()[:16])
        bound = log.bind(peer=received.session.peer, account=received.session.authenticated_as,
                         mail_from=received.mail_from, size=len(received.data))
        try:
            return await self._message(received, at, bound)
        except (*_STORAGE_ERRORS, SQLAlchemyError) as exc:
            bound.error("storage-unavailable", error=repr(exc))
            return replies.STORAGE_UNAVAILABLE
        except Exception as exc:  # a bug is never a permanent rejection (STYLE.md item 4)
            bound.exception("internal-error", error=repr(exc))
            return replies.INTERNAL

    async def _message(self, received: Received, at: datetime, bound: Any) -> SmtpReply:
        account = received.session.authenticated_as
        if account is None:
            return replies.NOT_AUTHENTICATED
        domain = await self._domain_of(account, at)
        if domain is None:
            return await self._refuse(received, at, bound, "account-gone", f"account {account} was removed",
                                      replies.ACCOUNT_GONE)
        # Parsing and copying: on the loop for a typical message, off it for a large one.
        if len(received.data) <= PREPARE_INLINE_LIMIT:
            prepared = prepare(received.data, mail_from=received.mail_from, domain=domain, at=at,
                               limits=self._settings.limits)
        else:
            prepared = await asyncio.to_thread(prepare, received.data, mail_from=received.mail_from, domain=domain,
                                               at=at, limits=self._settings.limits)
        if isinstance(prepared, Refused):
            return await self._refuse(received, at, bound, prepared.problem.value, prepared.detail,
                                      replies.refused(prepared.problem))
        structlog.contextvars.bind_contextvars(message_id=prepared.message_id)
        message = int(await self._store.run(lambda conn: self._queue(conn, received, prepared, account, at)))
        self._outbox.wake()  # committed: the delivery loop claims the jobs now, not at its next poll
        bound.info("submitted", message=message, message_id=prepared.message_id, reliable=prepared.reliable,
                   recipients=list(received.rcpt_to), added=list(prepared.added), bcc_removed=prepared.bcc_removed)
        return replies.queued(message)

    def _queue(self, conn: Connection, received: Received, prepared: Prepared, account: str, at: datetime) -> Id:
        """The acceptance, in the caller's one transaction: message, audit, and per recipient job + tracking.
        Nothing here reads: on PostgreSQL it goes out as one statement, and one more for each further
        recipient (its tracking row is a second row of that table; the ids are ``Ref``s until then)."""
        session = received.session
        recipients = _distinct(received.rcpt_to)
        message = _ACCEPT_MESSAGE.later_returning(conn, dict(
            direction="out", kind="message", received_at=at, peer=session.peer[:64],
            helo=(session.helo or "")[:255] or None, mail_from=received.mail_from[:320],
            message_id=prepared.message_id, sender=prepared.sender, subject=prepared.subject,
            size=len(prepared.payload), sha256=prepared.sha256, raw=None, state=STATE_SUBMITTED, reason=None,
            detail=f"submitted by account {account}", updated_at=at,
        ))
        trail = [audit_row(
            at, EVENT_SUBMITTED, message_id=message, peer=session.peer, node=self._settings.node,
            detail=f"account {account}, {len(recipients)} recipient(s)"
            + (f", added {', '.join(prepared.added)}" if prepared.added else "")
            + (f", {prepared.bcc_removed} Bcc field(s) removed" if prepared.bcc_removed else "")
            + (", timely and reliable delivery requested" if prepared.reliable else ""),
        )]
        for rcpt in recipients:
            job = self._outbox.enqueue_in(conn, "mail", prepared.sender, rcpt, prepared.payload, at=at,
                                          lifetime=self._settings.lifetime, message_id=message, trail=trail,
                                          deferred_id=True)
            track_in(conn, message=message, job=job, sender=received.mail_from, recipient=rcpt,
                     original_message_id=prepared.message_id, reliable=prepared.reliable, at=at)
        AUDIT_ROW.later_many(conn, trail)
        return message

    async def _refuse(self, received: Received, at: datetime, bound: Any, reason: str, detail: str,
                      reply: SmtpReply) -> SmtpReply:
        session = received.session

        def work(conn: Connection) -> int:
            message = int(conn.execute(_INSERT_MESSAGE, dict(
                direction="out", kind="message", received_at=at, peer=session.peer[:64],
                helo=(session.helo or "")[:255] or None, mail_from=received.mail_from[:320], message_id=None,
                sender=None, subject=None, size=len(received.data),
                sha256=hashlib.sha256(received.data).hexdigest(), raw=None, state=STATE_REJECTED, reason=reason,
                detail=detail, updated_at=at,
            )).scalar_one())
            conn.execute(_INSERT_AUDIT, audit_row(at, EVENT_REJECTED, message_id=message, reason=reason,
                                                  detail=detail, peer=session.peer, node=self._settings.node))
            return message

        message = await self._store.run(work)
        bound.info("rejected", message=message, reason=reason, detail=detail, reply=reply.line())
        return reply


def _distinct(recipients: tuple[str, ...]) -> list[str]:
    """Each address once, compared without case (the first spelling kept): the delivery monitor
    tracks and matches recipients lower-cased, one row each, and Direct addresses are used
    without regard to case."""
    seen: dict[str, str] = {}
    for rcpt in recipients:
        seen.setdefault(rcpt.strip().lower(), rcpt)
    return list(seen.values())
