"""The receiving pipeline behind port 25: what becomes of a message at the final dot.

In order (issue 8, "Receiving"): ``open_inbound`` with the keys of the
recipients' domains; the signer against the incoming anchors of each
recipient's domain; the envelope against the signed headers. A permanent
failure is a 5xx and nothing enters a record; a temporary one (revocation
status unknown, storage down) is a 4xx; an internal error is always a 4xx and
never shows internals.

An accepted message is stored, delivered into every recipient's record and
its MDNs queued in ONE transaction, and only after that commit is the 250
given: a crash at any point leaves the message either not accepted (the
sender retries, and the redelivery is recognised by Message-ID) or wholly
stored. MDNs are sealed and sent later, from the outbound queue.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import structlog
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from gateway.common.ttl_cache import TtlCache
from gateway.core.certs import KeyPair
from gateway.core.inbound import open_inbound
from gateway.core.limits import DEFAULT_LIMITS, Limits
from gateway.core.mdn import Disposition, build_mdn, mdn_request
from gateway.core.outcomes import Envelope, MessageKind, Observation, Opened, Rejected
from gateway.domains import LocalDomains
from gateway.smtp.interface import Received, SessionInfo, SmtpReply
from gateway.store import Store, StoreError
from gateway.store.prepared import Id
from records_bridge.store import Delivered, RecordStore, plan_delivery
from trust.inbound import InboundVerdict, sender_of
from trust.types import TrustDecision

from . import replies
from .delivery import delivery_of
from .journal import (
    Event,
    MessageState,
    Summary,
    event_row,
    record_event,
    record_events,
    record_message,
    record_recipient,
    update_state,
)

log = structlog.get_logger("directgw.receive")

T = TypeVar("T")

LOOKUP_TTL = timedelta(seconds=5)
"""How long the domains' names, their key rings and the addresses found at RCPT are
reused: each lookup is a database round trip on every message, and a new domain,
key or record shows within seconds (a missing address is never cached)."""

MDN_LIFETIME = timedelta(days=1)
"""How long an MDN is retried: the sender's delivery monitor times out on its own
(Direct's guide suggests about an hour for processed); a day covers an outage."""


INLINE_LIMIT = 256 * 1024
"""Messages up to this size are opened on the event loop itself: a typical Direct
message (tens of KB) costs about a millisecond to open, which other sessions can
wait. Larger ones (up to 64 MiB, seconds of work) go to a thread so the loop keeps
answering. ``cryptography`` (50) lets the GIL go during an RSA private-key
operation, but the rest of opening holds it; every message in a thread measured
worse on the loaded two-core bench (docs/receive.md, "Sixth round")."""


async def _off_loop_if_large(size: int, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    if size <= INLINE_LIMIT:
        return fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)


class Outbox(Protocol):
    """Where the pipeline queues what it must send (gateway/outbound's queue), inside
    the acceptance's own transaction."""

    def enqueue_in(
        self, conn: Connection, kind: str, sender: str, recipient: str, payload: bytes, *,
        at: datetime, lifetime: timedelta, relates_to: str | None = None, message_id: Id | None = None,
        trail: list[dict[str, Any]] | None = None, deferred_id: bool = False,
    ) -> Id: ...

    def wake(self) -> None:
        """After the commit of a transaction that queued jobs: the local delivery loop claims them now."""


class Mailboxes(Protocol):
    """Providers' mailboxes (gateway.monitor.mailboxes): addresses of a domain with a provider
    route that are no record's, and the MDNs and DSNs for the delivery monitor."""

    def serves(self, domain: str) -> bool: ...

    def deliver_in(self, conn: Connection, message: Id, raw: bytes, opened: Opened, recipient: str,
                   decision: TrustDecision, at: datetime) -> bool: ...

    def report_in(self, conn: Connection, message: int, raw: bytes, opened: Opened, *,
                  recipients: tuple[str, ...], at: datetime) -> None: ...


class TrustChecker(Protocol):
    async def check_inbound(self, opened: Opened, *, recipient: str, at: datetime) -> InboundVerdict: ...


@dataclass(frozen=True, slots=True)
class ReceiveSettings:
    limits: Limits = DEFAULT_LIMITS
    reject_header_mismatch: bool = True
    """MAIL FROM / RCPT TO must agree with the signed From / To (the reference implementation's tamper policy)."""
    mdn_lifetime: timedelta = MDN_LIFETIME
    node: str = "directgw"


class ReceivingPipeline:
    def __init__(
        self,
        store: Store,
        domains: LocalDomains,
        records: RecordStore,
        trust: TrustChecker,
        outbox: Outbox | None,
        clock: Callable[[], datetime],
        settings: ReceiveSettings = ReceiveSettings(),
        mailboxes: Mailboxes | None = None,
    ) -> None:
        self._store = store
        self._domains = domains
        self._records = records
        self._trust = trust
        self._outbox = outbox
        self._clock = clock
        self._settings = settings
        self._mailboxes = mailboxes
        self._lookups: TtlCache[Any] = TtlCache(max_entries=4096)

    # ------------------------------------------------------------------ RCPT

    async def recipient(self, session: SessionInfo, mail_from: str, address: str) -> SmtpReply | None:
        local, _, domain = address.strip().lower().rpartition("@")
        at = self._clock()
        names = self._lookups.get("names", at)
        if names is None:
            names = await self._domains.names()
            self._lookups.put("names", names, at, LOOKUP_TTL)
        if not local or domain not in names:
            return replies.RELAY_DENIED
        key = ("record", f"{local}@{domain}")
        if self._lookups.get(key, at) is None:
            if await self._records.record_for_address(address) is None and not (
                self._mailboxes is not None and self._mailboxes.serves(domain)  # a provider's address
            ):
                return replies.UNKNOWN_RECIPIENT
            self._lookups.put(key, True, at, LOOKUP_TTL)
        return None

    # ------------------------------------------------------------------ DATA

    async def message(self, received: Received) -> SmtpReply:
        at = self._clock()
        # Every line logged while this message is handled names it: a receipt id from the
        # first moment, the Message-ID once the signed headers are read (contextvars are per task).
        digest = hashlib.sha256(received.data).hexdigest()  # the receipt id here, the message row's sha256
        structlog.contextvars.bind_contextvars(receipt=digest[:16])
        bound = log.bind(peer=received.session.peer, mail_from=received.mail_from, size=len(received.data))
        try:
            return await self._message(received, at, bound, digest)
        except (StoreError, OperationalError, DBAPIError, IntegrityError, OSError) as exc:
            bound.error("storage-unavailable", error=repr(exc))
            return replies.STORAGE_UNAVAILABLE
        except Exception as exc:  # a bug is never a permanent rejection (STYLE.md item 4)
            bound.exception("internal-error", error=repr(exc))
            return replies.INTERNAL

    async def _keys(self, recipients: tuple[str, ...], at: datetime) -> list[KeyPair]:
        keys: list[KeyPair] = []
        for domain in dict.fromkeys(r.rpartition("@")[2].lower() for r in recipients):
            ring = self._lookups.get(("keys", domain), at)
            if ring is None:
                ring = await self._domains.key_ring(domain)
                self._lookups.put(("keys", domain), ring, at, LOOKUP_TTL)
            keys.extend(ring)
        return keys

    async def _message(self, received: Received, at: datetime, bound: structlog.BoundLogger,
                       digest: str) -> SmtpReply:
        keys = await self._keys(received.rcpt_to, at)
        envelope = Envelope(received.mail_from, received.rcpt_to)
        opened = await _off_loop_if_large(
            len(received.data), open_inbound, received.data, keys, self._settings.limits, at, envelope=envelope
        )
        if isinstance(opened, Rejected):
            return await self._refuse(received, at, bound, opened.reason.value, opened.detail,
                                      replies.for_rejection(opened.reason), Summary("message", sha256=digest))
        sender = sender_of(opened)
        summary = Summary(opened.kind.value, sender, opened.inner.message_id, opened.inner.subject, digest)
        structlog.contextvars.bind_contextvars(message_id=opened.inner.message_id)
        decisions: list[TrustDecision] = []
        for rcpt in received.rcpt_to:
            verdict = await self._trust.check_inbound(opened, recipient=rcpt, at=at)
            if not verdict.trusted:
                failure = verdict.decision.failure
                assert failure is not None
                reply = replies.for_untrusted(failure.check, verdict.decision.temporary)
                return await self._refuse(received, at, bound, failure.check.value, str(verdict.decision), reply,
                                          summary, temporary=verdict.decision.temporary)
            decisions.append(verdict.decision)
        mismatch = [f for f in opened.findings if f.observation is Observation.HEADER_MISMATCH]
        if mismatch and self._settings.reject_header_mismatch:
            return await self._refuse(received, at, bound, Observation.HEADER_MISMATCH.value,
                                      "; ".join(f.detail for f in mismatch), replies.HEADER_MISMATCH, summary)
        if opened.kind is not MessageKind.MESSAGE:
            return await self._keep_report(received, at, bound, summary, opened)
        return await self._deliver(received, at, bound, opened, sender, decisions, summary)

    async def _refuse(
        self, received: Received, at: datetime, bound: structlog.BoundLogger, reason: str, detail: str,
        reply: SmtpReply, summary: Summary, *, temporary: bool = False,
    ) -> SmtpReply:
        state, event = (MessageState.DEFERRED, Event.DEFERRED) if temporary else (MessageState.REJECTED, Event.REJECTED)
        def work(conn: Connection) -> int:
            message = int(record_message(conn, received, at=at, state=state, summary=summary, reason=reason,
                                         detail=detail))
            record_event(conn, at=at, event=event, message=message, reason=reason, detail=detail,
                         peer=received.session.peer, node=self._settings.node)
            return message

        message = await self._store.run(work)
        bound.info(event.value, message=message, reason=reason, detail=detail, reply=reply.line())
        return reply

    async def _keep_report(self, received: Received, at: datetime, bound: structlog.BoundLogger,
                           summary: Summary, opened: Opened) -> SmtpReply:
        def work(conn: Connection) -> int:
            message = int(record_message(conn, received, at=at, state=MessageState.REPORT, summary=summary,
                                         keep_raw=True))
            record_event(conn, at=at, event=Event.REPORT, message=message, peer=received.session.peer,
                         node=self._settings.node)
            if self._mailboxes is not None:  # the delivery monitor matches it and passes it back
                self._mailboxes.report_in(conn, message, received.data, opened, recipients=received.rcpt_to, at=at)
            return message

        message = await self._store.run(work)
        if self._mailboxes is not None and self._outbox is not None:
            self._outbox.wake()  # the report may have been passed back to a provider's mailbox
        bound.info("report-received", message=message, kind=summary.kind, message_id=summary.message_id)
        return replies.ACCEPTED

    async def _deliver(
        self, received: Received, at: datetime, bound: structlog.BoundLogger, opened: Opened, sender: str,
        decisions: list[TrustDecision], summary: Summary,
    ) -> SmtpReply:
        deliveries = [delivery_of(opened, sender, d, received.rcpt_to, at) for d in decisions]
        described = [str(d) for d in decisions]  # for the audit rows and the log line: once
        # What the attachments become (typing, XDM inflating) is the same for every
        # recipient: computed once, off the event loop and outside the write transaction.
        plan = await _off_loop_if_large(len(received.data), plan_delivery, deliveries[0]) if deliveries else ()

        def work(conn: Connection, assume_fresh: bool) -> tuple[Id, bool]:
            fresh = False
            events: list[dict[str, object]] = []  # the audit rows, written together at the end
            # Every read first: what follows only writes, and on PostgreSQL those writes wait and
            # go out as one statement (the message's id and its items' ids are Refs until then;
            # with assume_fresh the records too, looked up inside that statement).
            targets = [self._records.target_in(conn, rcpt, delivery, assume_fresh=assume_fresh)
                       for rcpt, delivery in zip(received.rcpt_to, deliveries, strict=True)]
            again = all(t is not None and t.earlier is not None for t in targets)
            # by record id; a Ref (looked up inside the write) is its own key, so two addresses of
            # one record there both deliver, break the record's key for the Message-ID, and the
            # long way, with the ids read first, delivers once
            into: dict[Id, Delivered] = {}
            message = record_message(conn, received, at=at, summary=summary, deferred_id=True,
                                     state=MessageState.DUPLICATE if again else MessageState.DELIVERED)
            for rcpt, decision, delivery, trust, target in zip(received.rcpt_to, decisions, deliveries, described,
                                                               targets, strict=True):
                if target is None and self._mailboxes is not None and self._mailboxes.serves(rcpt.rpartition("@")[2]):
                    fresh |= self._forward(conn, message, received, opened, rcpt, decision, trust, at, events)
                    continue
                if target is None:  # the address was removed between RCPT and the final dot
                    raise LookupError(f"{rcpt} has no record")
                done = into.get(target.record_id)  # two addresses of one record: its items once
                if done is None:
                    done = into[target.record_id] = self._records.deliver_to_target_in(conn, target, delivery,
                                                                                      plan=plan)
                state = MessageState.DUPLICATE if done.duplicate else MessageState.DELIVERED
                record_recipient(conn, message, rcpt, at=at, state=state, record_id=done.record_id)
                events.append(event_row(at=at, event=Event.DUPLICATE if done.duplicate else Event.DELIVERED,
                                        message=message, recipient=rcpt, detail=trust,
                                        peer=received.session.peer, node=self._settings.node))
                if not done.duplicate:
                    fresh = True
                    self._acknowledge(conn, message, opened, rcpt, at, events)
            if not fresh and not again:
                update_state(conn, message, MessageState.DUPLICATE, at)
            record_events(conn, events)
            return message, fresh

        # Every recipient a record's (no provider's domain among them): on PostgreSQL the records
        # are looked up inside the statement that writes, a first delivery assumed (one round trip
        # where two were). A redelivery, or an address gone since RCPT, fails that statement whole
        # (records_bridge.store: target_in); then the long way, which reads first and decides.
        records_only = self._mailboxes is None or not any(
            self._mailboxes.serves(rcpt.rpartition("@")[2]) for rcpt in received.rcpt_to)
        try:
            message_ref, fresh = await self._store.run(functools.partial(work, assume_fresh=records_only))
        except IntegrityError:
            if not records_only:
                raise
            bound.debug("delivery-looked-up-again")
            message_ref, fresh = await self._store.run(functools.partial(work, assume_fresh=False))
        message = int(message_ref)
        if fresh and self._outbox is not None:
            self._outbox.wake()  # its MDNs (and a provider's copy) are committed: send them now
        bound.info("delivered" if fresh else "duplicate", message=message, message_id=summary.message_id,
                   sender=sender, recipients=list(received.rcpt_to), trust=described)
        return replies.ACCEPTED if fresh else replies.DUPLICATE

    def _forward(self, conn: Connection, message: Id, received: Received, opened: Opened, rcpt: str,
                 decision: TrustDecision, trust: str, at: datetime, events: list[dict[str, object]]) -> bool:
        """A provider's address: queued for its mailbox in this same commit; ``dispatched``
        follows once the provider's server took it (gateway.monitor.mailboxes)."""
        assert self._mailboxes is not None
        fresh = self._mailboxes.deliver_in(conn, message, received.data, opened, rcpt, decision, at)
        record_recipient(conn, message, rcpt, at=at, state=MessageState.FORWARDED if fresh else MessageState.DUPLICATE)
        events.append(event_row(at=at, event=Event.FORWARDED if fresh else Event.DUPLICATE, message=message,
                                recipient=rcpt, detail=trust, peer=received.session.peer, node=self._settings.node))
        if fresh:
            self._acknowledge(conn, message, opened, rcpt, at, events, final_destination=False)
        return fresh

    def _acknowledge(self, conn: Connection, message: Id, opened: Opened, rcpt: str, at: datetime,
                     events: list[dict[str, object]], *, final_destination: bool = True) -> None:
        """``processed`` at once; ``dispatched`` too when timely and reliable delivery was asked
        for, because delivery into the record is part of this same commit (Direct's guide)."""
        request = mdn_request(opened.kind, opened.inner)
        if request is None or self._outbox is None:
            return
        reliable = request.reliable and final_destination
        dispositions = [Disposition.PROCESSED] + ([Disposition.DISPATCHED] if reliable else [])
        domain = rcpt.rpartition("@")[2]
        for disposition in dispositions:
            payload = build_mdn(disposition, original=opened.inner, final_recipient=rcpt, reporting_domain=domain,
                                at=at, notify=request.notify)
            for notify in request.notify:
                self._outbox.enqueue_in(
                    conn, "mdn", rcpt, notify, payload, at=at, lifetime=self._settings.mdn_lifetime,
                    relates_to=opened.inner.message_id, message_id=message, trail=events, deferred_id=True,
                )
            events.append(event_row(at=at, event=Event.MDN_QUEUED, message=message, recipient=rcpt,
                                    detail=f"{disposition.value} to {', '.join(request.notify)}",
                                    node=self._settings.node))
