"""The delivery monitor: the tracking rows moved by what happens, and the one final notice each.

Three sources of events, each applied inside the transaction that carries it:

- the outbound queue's ``on_settled`` hook, in the transaction writing a
  mail job's final state: ``sent`` (the deadline starts), or failed/expired
  (our DSN to the submitter, in that same commit: it is queued exactly when
  the failure is written);
- the receiving pipeline, in the transaction keeping an inbound MDN or DSN:
  matched on Original-Message-ID, Final-Recipient and the submitter it is
  addressed to, then passed back to the submitter's mailbox;
- the timeout sweep (``sweep``, several nodes at once), for rows past their
  deadline.

Each application first updates the row and reads it back in the same
statement (``UPDATE ... RETURNING``: it takes the row's lock, so on
PostgreSQL a concurrent transaction on the same row waits for this one to
commit and then reads what it wrote; SQLite has one writer), lets the pure
``decide`` say what to do, and writes that in one more ``UPDATE``. The final
notice is guarded once more inside that write by ``WHERE final_notice_at IS
NULL``: whichever transaction sets it first queues the notice, any other finds
the row final and queues nothing. An event is two statements on the row, and
the audit rows it writes (with its notice's) go in one round trip at the end.

The statements are built once with parameters (a handful of write shapes,
cached): building and cache-keying them per event was most of the monitor's
CPU under load (py-spy, bench/smtp_outbound.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Update, and_, bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError

from gateway.core.dsn import FailedRecipient, Failure, build_dsn, notice_owed, returned_message_id
from gateway.core.mdn import Disposition, NotAReport, parse_dsn, parse_mdn
from gateway.core.outcomes import MessageKind
from gateway.outbound.queue import AUDIT_ROW, Job, JobKind, JobState, Reason, Settled, enqueue_in
from gateway.store import Store
from gateway.store.messaging import audit_row, outbound
from gateway.store.prepared import Prepared

from .schema import tracking
from .settings import MonitorSettings
from .states import Decision, Event, Facts, Kind, Notice, decide
from .tracking import Outcome, TrackState

log = structlog.get_logger("directgw.monitor")

NOTICE_LIFETIME = timedelta(days=4)
"""How long a notice for a submitter's mailbox is retried: like any mail (RFC 5321 4.5.4.1)."""
SWEEP_BATCH = 200
"""Rows past their deadline handled per sweep transaction round; the rest wait for the next round."""

_ENHANCED = re.compile(r"\b5\.\d{1,3}\.\d{1,3}\b")

_FAILURE_OF_REASON = {
    Reason.NO_CERTIFICATE: Failure.NO_CERTIFICATE,
    Reason.SMTP_PERMANENT: Failure.REFUSED,
    Reason.LIFETIME: Failure.LIFETIME,
}

_MDN_KINDS = {
    Disposition.PROCESSED: Kind.PROCESSED,
    Disposition.DISPATCHED: Kind.DISPATCHED,
    Disposition.FAILED: Kind.FAILED,
}


# Statements built once with parameters (module docstring), the hot ones on the driver's
# cursor (gateway.store.prepared): one or two run for every event.
def _locking(where: Any) -> Update:
    """Touch the rows ``where`` selects and return them whole: their locks, and what they say."""
    return update(tracking).where(where).values(updated_at=bindparam("touched")).returning(*tracking.c)


_LOCK_ROW = _locking(tracking.c.id == bindparam("row_id"))
_LOCK_JOB_ROW = Prepared(_locking(tracking.c.job_id == bindparam("of_job")))


def _reported_by(count: int) -> Any:
    """The rows a report names: its Original-Message-ID and Final-Recipient, submitted by one
    of ``count`` senders (the report's recipients; ``sender0``...)."""
    return and_(
        tracking.c.original_message_id == bindparam("original_id"),
        tracking.c.recipient == bindparam("final_recipient"),
        tracking.c.sender.in_([bindparam(f"sender{i}") for i in range(count)]),
    )


@functools.lru_cache(maxsize=16)
def _lock_reported(count: int) -> Prepared:
    return Prepared(_locking(_reported_by(count)))


@functools.lru_cache(maxsize=16)
def _reported(count: int) -> Prepared:
    return Prepared(select(tracking.c.id).where(_reported_by(count)).limit(1))


def _match(original_id: str, final_recipient: str, senders: list[str]) -> dict[str, Any]:
    return {"original_id": original_id, "final_recipient": final_recipient} | {
        f"sender{i}": sender for i, sender in enumerate(senders)}


_ORIGINAL = select(outbound.c.payload).where(outbound.c.id == bindparam("of_job"))


@functools.lru_cache(maxsize=32)
def _write(columns: tuple[str, ...], final: bool) -> Prepared:
    """The UPDATE writing ``columns`` of one row (parameters ``new_<column>``); with ``final``,
    only while no final notice is recorded (``final_notice_at IS NULL``). On the driver's
    cursor (gateway.store.prepared): one runs for every event."""
    where = tracking.c.id == bindparam("row_id")
    if final:
        where = and_(where, tracking.c.final_notice_at.is_(None))
    return Prepared(update(tracking).where(where).values({c: bindparam(f"new_{c}") for c in columns}))


def _write_row(conn: Connection, row_id: int, values: dict[str, Any], *, final: bool) -> bool:
    """Write ``values`` to the row; False when ``final`` and the row already had its final notice."""
    params = {f"new_{c}": v for c, v in values.items()}
    params["row_id"] = row_id
    cursor = _write(tuple(sorted(values)), final).execute(conn, params)
    try:
        return bool(cursor.rowcount == 1)
    finally:
        cursor.close()


def _write_trail(conn: Connection, trail: list[dict[str, Any]]) -> None:
    """The audit rows an event gathered, in one round trip."""
    AUDIT_ROW.later_many(conn, trail)


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _facts(row: Any, at: datetime) -> Facts:
    return Facts(
        state=TrackState(row.state), reliable=row.reliable, sent=row.sent_at is not None,
        processed=row.processed_at is not None, dispatched=row.dispatched_at is not None,
        failed=row.failed_at is not None, final=row.final_notice_at is not None,
        deadline_passed=row.deadline_at is not None and row.deadline_at <= at,
    )


def failure_of(settled: Settled, recipient: str) -> FailedRecipient:
    """Our DSN's words for a mail job the queue ended in failure or expiry."""
    failure = Failure.LIFETIME if settled.state is JobState.EXPIRED else _FAILURE_OF_REASON.get(
        settled.reason or Reason.INTERNAL, Failure.UNDELIVERABLE)
    detail = settled.detail or (settled.reason.value if settled.reason else "not delivered")
    status = None
    diagnostic = None
    if failure is Failure.REFUSED:
        # the remote reply is the Diagnostic-Code (RFC 3464 2.3.6); its enhanced code the Status
        diagnostic = detail.split(": ", 1)[-1] if settled.code else detail
        found = _ENHANCED.search(detail)
        status = found.group(0) if found else None
    return FailedRecipient(recipient, failure, detail, status, diagnostic, settled.peer)


class DeliveryMonitor:
    def __init__(
        self, settings: MonitorSettings, *, reporting_mta: str, node: str,
        notice_lifetime: timedelta = NOTICE_LIFETIME,
    ) -> None:
        self.settings = settings
        self.reporting_mta = reporting_mta
        """Our name in the DSNs we write (Reporting-MTA, the From's domain): the EHLO name."""
        self.node = node
        self.notice_lifetime = notice_lifetime

    # ---------------------------------------------------------------- the queue's hook

    def mail_settled(self, conn: Connection, job: Job, settled: Settled) -> None:
        """A submitted message's job was sent, or ended in failure (inside that transaction)."""
        rows = _LOCK_JOB_ROW.rows(conn, {"of_job": job.id, "touched": settled.at})
        if not rows:
            return  # mail queued without tracking (the CLI, tests): nobody to tell
        row = rows[0]
        trail: list[dict[str, Any]] = []
        if settled.state is JobState.SENT:
            self._apply(conn, row, Event(Kind.SENT, settled.at, None, settled.detail), trail)
            if not notice_owed(job.payload):
                # an MDN or DSN the EHR sent: no MDN answers it (Direct item 22), so the send is all
                # there is to learn; settled without a notice instead of timing out
                self._settle_quietly(conn, row, settled.at, "a notification: no MDN is owed for it", trail)
        else:
            failed = failure_of(settled, job.recipient)
            reason = Reason.LIFETIME.value if settled.state is JobState.EXPIRED else (
                settled.reason.value if settled.reason else None)
            self._apply(conn, row, Event(Kind.NOT_SENT, settled.at, reason, settled.detail), trail, failed=failed,
                        original=job.payload)
        _write_trail(conn, trail)

    # ---------------------------------------------------------------- inbound reports

    def report_in(self, conn: Connection, message: int, kind: MessageKind, plain: bytes, *, signer: str,
                  recipients: tuple[str, ...], at: datetime) -> int:
        """An MDN or DSN that arrived (verified and trusted) for ``recipients``: match it and
        apply it. ``signer`` is the address its signature binds: it speaks only for recipients
        of its own domain, so one trusted HISP cannot report on another's recipients.
        Returns how many tracked recipients it applied to."""
        trail: list[dict[str, Any]] = []
        applied = self._report(conn, message, kind, plain, signer, recipients, at, trail)
        _write_trail(conn, trail)
        return applied

    def _report(self, conn: Connection, message: int, kind: MessageKind, plain: bytes, signer: str,
                recipients: tuple[str, ...], at: datetime, trail: list[dict[str, Any]]) -> int:
        events: list[tuple[str | None, str | None, Kind | None, str]] = []
        if kind is MessageKind.MDN:
            mdn = parse_mdn(plain)
            if isinstance(mdn, NotAReport):
                trail.append(self._audit_row(at, "report-unreadable", message=message, detail=mdn.detail))
                return 0
            what = _MDN_KINDS.get(mdn.disposition) if mdn.disposition else None
            detail = f"{mdn.disposition_text} MDN from {mdn.final_recipient or signer}"
            if mdn.failure or mdn.error:
                detail += f": {mdn.failure or mdn.error}"
            events.append((mdn.final_recipient or signer, mdn.original_message_id, what, detail))
        else:
            dsn = parse_dsn(plain)
            if isinstance(dsn, NotAReport):
                trail.append(self._audit_row(at, "report-unreadable", message=message, detail=dsn.detail))
                return 0
            original_id = dsn.original_message_id or returned_message_id(plain)
            for r in dsn.recipients:
                detail = f"DSN {r.action or '?'} {r.status or ''}".rstrip() + (f": {r.diagnostic}" if r.diagnostic else "")
                events.append((r.final_recipient, original_id, Kind.FAILED if r.failed else None, detail))
        applied = 0
        to = [r.strip().lower() for r in recipients]
        for final_recipient, original_id, what, detail in events:
            if final_recipient is None or original_id is None:
                trail.append(self._audit_row(at, "report-unmatched", message=message,
                                             detail=f"{detail}: no Final-Recipient or Original-Message-ID"))
                continue
            if _domain(final_recipient) != _domain(signer):
                trail.append(self._audit_row(
                    at, "report-refused", message=message, recipient=final_recipient,
                    detail=f"{detail}: signed by {signer}, who does not speak for {final_recipient}"))
                continue
            match = _match(original_id.strip(), final_recipient, to)
            if what is None:  # nothing to apply: the rows are read, not locked
                known = bool(_reported(len(to)).rows(conn, match))
                trail.append(self._audit_row(
                    at, "report-ignored" if known else "report-unmatched", message=message, recipient=final_recipient,
                    detail=detail if known else f"{detail} for {original_id}: nothing tracked"))
                continue
            # the matching rows locked and read in one statement, applied in the order they were tracked
            rows = sorted(_lock_reported(len(to)).rows(conn, match | {"touched": at}), key=lambda r: r.id)
            if not rows:
                trail.append(self._audit_row(at, "report-unmatched", message=message, recipient=final_recipient,
                                             detail=f"{detail} for {original_id}: nothing tracked"))
                continue
            for row in rows:
                self._apply(conn, row, Event(what, at, f"{what.value}-reported", detail), trail, report=plain)
                applied += 1
        return applied

    def unreadable(self, conn: Connection, message: int, at: datetime, detail: str) -> None:
        AUDIT_ROW.later(conn, self._audit_row(at, "report-unreadable", message=message, detail=detail))

    # ---------------------------------------------------------------- timeouts

    async def sweep(self, store: Store, at: datetime) -> int:
        """Every row past its deadline without a final notice gets its one failure notice.
        Safe on several nodes at once: each row is decided under its lock (module docstring)."""
        done = 0
        while True:
            due = await store.read(lambda conn: list(conn.execute(
                select(tracking.c.id)
                .where(tracking.c.final_notice_at.is_(None), tracking.c.deadline_at <= at)
                .order_by(tracking.c.deadline_at, tracking.c.id)
                .limit(SWEEP_BATCH)
            ).scalars()))
            settled = 0
            for row_id in due:
                decision = await store.run(self._timeout(row_id, at))
                settled += decision.final is not None
            done += settled
            # a full batch may hide more; a batch another node settled first (settled == 0) ends the round
            if len(due) < SWEEP_BATCH or settled == 0:
                return done

    def _timeout(self, row_id: int, at: datetime) -> Callable[[Connection], Decision]:
        def work(conn: Connection) -> Decision:
            row = conn.execute(_LOCK_ROW, {"row_id": row_id, "touched": at}).one()
            trail: list[dict[str, Any]] = []
            decision = self._apply(conn, row, Event(Kind.TIMEOUT, at, Kind.TIMEOUT.value, None), trail)
            _write_trail(conn, trail)
            return decision

        return work

    async def run(self, store: Store, stop: asyncio.Event, clock: Callable[[], datetime], *,
                  wake: Callable[[], None] | None = None) -> None:
        """Sweep every ``settings.sweep`` seconds until ``stop`` is set; ``wake`` (the outbound
        queue's) after a sweep that queued failure notices, so they go out at once."""
        while not stop.is_set():
            try:
                timed_out = await self.sweep(store, clock())
                if timed_out:
                    log.info("monitor.timed-out", count=timed_out, node=self.node)
                    if wake is not None:
                        wake()
            except (SQLAlchemyError, OSError) as exc:
                # the database is away: the deadlines are in it, so the next round finds them
                log.warning("monitor.store-unavailable", node=self.node, error=str(exc).splitlines()[0][:300])
            except Exception:  # a bug: logged with its traceback; the sweep must outlive it (rows stay due)
                log.exception("monitor.internal-error", node=self.node)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.sweep)

    # ---------------------------------------------------------------- applying one event

    def _apply(
        self, conn: Connection, row: Any, event: Event, trail: list[dict[str, Any]], *, report: bytes | None = None,
        original: bytes | None = None, failed: FailedRecipient | None = None,
    ) -> Decision:
        """Apply ``event`` to ``row``, which this transaction has locked and read (``_locking``);
        its audit rows are added to ``trail``, for the caller to write in one round trip."""
        at = event.at
        if event.kind is Kind.TIMEOUT and event.detail is None:  # the row says what it waited for, and what came
            event = replace(event, detail=_waited(row, self.settings.mdn_timeout(row.sender)))
        decision = decide(_facts(row, at), event)
        values: dict[str, Any] = {}
        if decision.mark is not None:
            values[decision.mark.value] = at
        if event.kind is Kind.SENT and decision.mark is not None and row.final_notice_at is None:
            values["deadline_at"] = at + self.settings.mdn_timeout(row.sender)
        if decision.state is not None:
            values |= {"state": decision.state.value, "reason": event.reason, "detail": event.detail}
        notify = decision.notice is not Notice.NONE
        if decision.final is not None:
            # the row is locked and was read final_notice_at IS NULL (decide gives no final
            # otherwise), so this write wins; its guard is kept so that no second notice can
            # follow even if it did not
            final = values | {"final_notice_at": at, "final_outcome": decision.final.value}
            won = _write_row(conn, row.id, final, final=True)
            if not won and values:
                _write_row(conn, row.id, values, final=False)
            notify = notify and won
        elif values:
            _write_row(conn, row.id, values, final=False)
        what = ("duplicate" if decision.duplicate else "late" if decision.late else
                decision.state.value if decision.state else "noted")
        note = f"{event.kind.value}: {what}" + (f" ({event.detail})" if event.detail else "")
        if notify:
            payload = report if decision.notice is Notice.PASS_BACK else self._our_dsn(conn, row, event, original, failed)
            if payload is None:
                note += "; no notice: the original is itself a notification"
            else:
                job = enqueue_in(conn, JobKind.NOTICE, "", row.sender, payload, at=at, lifetime=self.notice_lifetime,
                                 relates_to=row.original_message_id, message_id=row.message_id, trail=trail)
                note += f"; {decision.notice.value} to {row.sender} (outbound #{job})"
        if decision.final is not None:
            note += f"; final: {decision.final.value}"
        trail.append(self._audit_row(at, f"monitor-{event.kind.value}", message=row.message_id,
                                     recipient=row.recipient, reason=event.reason, detail=note))
        # the audit row above is the record (``directgw messages show``); the log line repeats it for
        # debugging only (rendered in the writer thread, it was 1.5% of the gateway's GIL samples under load)
        log.debug("monitor.event", tracking=row.id, kind=event.kind.value, outcome=what,
                 final=decision.final.value if decision.final else None, node=self.node)
        return decision

    def _settle_quietly(self, conn: Connection, row: Any, at: datetime, note: str,
                        trail: list[dict[str, Any]]) -> None:
        values = {"final_notice_at": at, "final_outcome": Outcome.DELIVERED.value, "detail": note}
        if _write_row(conn, row.id, values, final=True):
            trail.append(self._audit_row(at, "monitor-settled", message=row.message_id, recipient=row.recipient,
                                         detail=note))

    def _our_dsn(self, conn: Connection, row: Any, event: Event, original: bytes | None,
                 failed: FailedRecipient | None) -> bytes | None:
        if original is None and row.job_id is not None:
            original = conn.execute(_ORIGINAL, {"of_job": row.job_id}).scalar()
        if original is None:
            original = f"Message-ID: {row.original_message_id}\r\n\r\n".encode("ascii", "replace")
        original = bytes(original)
        if not notice_owed(original):
            return None
        if failed is None:
            failed = FailedRecipient(row.recipient, Failure.TIMED_OUT, _waited(row, self.settings.mdn_timeout(row.sender)),
                                     last_attempt=row.sent_at)
        return build_dsn(original, to=row.sender, recipients=(failed,), reporting_mta=self.reporting_mta,
                         at=event.at, arrived=row.created_at)

    def _audit_row(self, at: datetime, event: str, *, message: int | None = None, recipient: str | None = None,
                   reason: str | None = None, detail: str | None = None) -> dict[str, Any]:
        return audit_row(at, event, message_id=message, recipient=recipient, reason=reason, detail=detail,
                         node=self.node)


def _waited(row: Any, timeout: timedelta) -> str:
    owed = "processed and dispatched MDNs" if row.reliable else "processed MDN"
    came = [f"{name} at {value.isoformat()}" for name, value in
            (("processed", row.processed_at), ("dispatched", row.dispatched_at)) if value is not None]
    return (f"sent at {row.sent_at.isoformat() if row.sent_at else '?'}; waited {timeout} for the {owed}; "
            + (f"only {', '.join(came)} came." if came else "none came."))
