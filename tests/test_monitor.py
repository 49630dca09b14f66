"""The delivery monitor on SQLite and PostgreSQL: a submitted message's recipient moved by
the real outbound queue (its settled hook), by MDNs and DSNs as the receiving pipeline
hands them over, and by the timeout sweep; what reaches the submitter's mailbox (the
``notice`` jobs), for each order of events; and two nodes racing to send a final notice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import insert, select

from gateway.core.dsn import FailedRecipient, Failure, build_dsn
from gateway.core.mdn import Disposition, NotAReport, build_mdn, parse_dsn, parse_mdn
from gateway.core.outcomes import Headers, MessageKind
from gateway.monitor import TrackState, track_in
from gateway.monitor.mailboxes import ProviderMailboxes
from gateway.monitor.monitor import DeliveryMonitor
from gateway.monitor.schema import tracking
from gateway.monitor.settings import monitor_settings
from gateway.outbound import JobKind, JobState, OutboundQueue, Reason
from gateway.outbound.queue import enqueue_in
from gateway.store import Store, open_store
from gateway.store.messaging import audit, messages, outbound
from tests import messages as sample

from .storage_fixtures import store_fixture, store_url_fixture  # noqa: F401

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
EHR = "dr.who@hospital.test"
PATIENT = "patient@b.test"
TIMEOUT = timedelta(minutes=10)
SETTINGS = monitor_settings({"hospital.test": {"provider_smtp": "127.0.0.1:2525", "mdn_timeout": 600}})
LEASE = timedelta(minutes=5)


def _original(message_id: str, reliable: bool) -> bytes:
    extra = [("Message-ID", message_id)]
    if reliable:
        extra.append(("Disposition-Notification-Options", "X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true"))
    return sample.plain(sender=EHR, recipients=(PATIENT,), subject="Referral", extra_headers=tuple(extra))


class Gateway:
    """One node: the queue with the monitor's hook, as ``serve`` builds them."""

    def __init__(self, store: Store, node: str = "node-a") -> None:
        self.store = store
        self.monitor = DeliveryMonitor(SETTINGS, reporting_mta="gw.hospital.test", node=node)
        self.mailboxes = ProviderMailboxes(SETTINGS, self.monitor)
        self.queue = OutboundQueue(store, on_settled=self.mailboxes.job_settled)

    async def submit(self, message_id: str = "<s1@hospital.test>", *, reliable: bool = False,
                     lifetime: timedelta = timedelta(days=1)) -> int:
        original = _original(message_id, reliable)

        def work(conn) -> int:
            row = conn.execute(insert(messages).returning(messages.c.id), dict(
                direction="out", kind="message", received_at=T0, mail_from=EHR, message_id=message_id, sender=EHR,
                size=len(original), sha256="0" * 64, state="accepted", updated_at=T0)).scalar_one()
            job = enqueue_in(conn, JobKind.MAIL, EHR, PATIENT, original, at=T0, lifetime=lifetime, message_id=row)
            track_in(conn, message=row, job=job, sender=EHR, recipient=PATIENT, original_message_id=message_id,
                     reliable=reliable, at=T0)
            return row

        return await self.store.run(work)

    async def settle(self, how: str, at: datetime) -> None:
        [job] = await self.queue.claim("w", at=at, lease=LEASE, limit=1)
        if how == "sent":
            assert await self.queue.sent(job, at=at, code=250, peer="mx.b.test", sent_message_id="<s1@hospital.test>")
        elif how == "5xx":
            assert await self.queue.failed(job, at=at, reason=Reason.SMTP_PERMANENT, code=554,
                                           error="127.0.0.1:25: 554 5.7.1 signer not trusted (path)", peer="mx.b.test")
        elif how == "no-cert":
            assert await self.queue.failed(job, at=at, reason=Reason.NO_CERTIFICATE, code=None,
                                           error="no usable certificate for patient@b.test:\n  asked DNS CERT: none")
        else:
            assert how == "expire"
            assert await self.queue.retry(job, at=job.expires_at - timedelta(seconds=1), reason=Reason.CONNECTION,
                                          code=None, error="connection refused") is JobState.EXPIRED

    async def report(self, message: int, kind: str, at: datetime, *, message_id: str = "<s1@hospital.test>",
                     signer: str = PATIENT, to: str = EHR) -> int:
        original = Headers(from_=(EHR,), to=(PATIENT,), cc=(), subject="Referral", message_id=message_id, date=None)
        if kind == "dsn":
            raw = build_dsn(_original(message_id, False), to=EHR, reporting_mta="b.test", at=at, recipients=(
                FailedRecipient(PATIENT, Failure.REFUSED, "the record is closed", diagnostic="550 5.1.1 closed"),))
            report_kind = MessageKind.DSN
        else:
            disposition = {"processed": Disposition.PROCESSED, "dispatched": Disposition.DISPATCHED,
                           "failed-mdn": Disposition.FAILED}[kind]
            raw = build_mdn(disposition, original=original, final_recipient=PATIENT, reporting_domain="b.test", at=at,
                            failure="the record is closed" if disposition is Disposition.FAILED else None)
            report_kind = MessageKind.MDN
        return await self.store.run(lambda conn: self.monitor.report_in(
            conn, message, report_kind, raw, signer=signer, recipients=(to,), at=at))


async def _row(store: Store):
    return await store.read(lambda conn: conn.execute(select(tracking)).one())


async def _notices(store: Store) -> list[str]:
    """What the submitter's mailbox is sent, in order: each notice job read back."""
    rows = await store.read(lambda conn: conn.execute(
        select(outbound).where(outbound.c.kind == JobKind.NOTICE.value).order_by(outbound.c.id)).all())
    found = []
    for r in rows:
        assert (r.sender, r.recipient) == ("", EHR)  # MAIL FROM:<>, to the submitter
        mdn = parse_mdn(bytes(r.payload))
        if not isinstance(mdn, NotAReport):
            found.append(f"mdn:{mdn.disposition_text}")
            continue
        dsn = parse_dsn(bytes(r.payload))
        assert not isinstance(dsn, NotAReport), dsn
        found.append(f"dsn:{dsn.recipients[0].status}:{(dsn.reporting_mta or '').removeprefix('dns; ')}")
    return found


SCENARIOS = [
    pytest.param(False, ["sent", "processed"], TrackState.PROCESSED, "delivered", ["mdn:processed"],
                 id="general-processed"),
    pytest.param(True, ["sent", "processed", "dispatched"], TrackState.DISPATCHED, "delivered",
                 ["mdn:processed", "mdn:dispatched"], id="reliable-processed-dispatched"),
    pytest.param(True, ["sent", "dispatched", "processed"], TrackState.DISPATCHED, "delivered",
                 ["mdn:dispatched", "mdn:processed"], id="reliable-dispatched-first"),
    pytest.param(False, ["sent", "processed", "processed", "dispatched"], TrackState.PROCESSED, "delivered",
                 ["mdn:processed"], id="duplicate-mdns"),
    pytest.param(False, ["processed", "sent", "timeout"], TrackState.PROCESSED, "delivered", ["mdn:processed"],
                 id="mdn-before-our-send-was-recorded"),
    pytest.param(False, ["sent", "timeout", "processed", "processed"], TrackState.TIMED_OUT, "timed-out",
                 ["dsn:5.4.7:gw.hospital.test"], id="mdn-after-timeout"),
    pytest.param(True, ["sent", "processed", "timeout", "dispatched", "timeout"], TrackState.TIMED_OUT, "timed-out",
                 ["mdn:processed", "dsn:5.4.7:gw.hospital.test"], id="reliable-dispatched-after-timeout"),
    pytest.param(True, ["sent", "processed", "failed-mdn", "dispatched"], TrackState.FAILED, "failed",
                 ["mdn:processed", "mdn:failed"], id="failed-mdn"),
    pytest.param(False, ["sent", "dsn", "processed", "timeout"], TrackState.FAILED, "failed", ["dsn:5.0.0:b.test"],
                 id="dsn-then-mdn"),
    pytest.param(False, ["5xx", "timeout"], TrackState.FAILED, "failed", ["dsn:5.7.1:gw.hospital.test"],
                 id="refused-5xx"),
    pytest.param(False, ["no-cert"], TrackState.FAILED, "failed", ["dsn:5.7.0:gw.hospital.test"], id="no-certificate"),
    pytest.param(True, ["expire", "processed"], TrackState.FAILED, "failed", ["dsn:5.4.7:gw.hospital.test"],
                 id="lifetime"),
    pytest.param(True, ["sent", "processed"], TrackState.PROCESSED, None, ["mdn:processed"], id="reliable-waiting"),
]


@pytest.mark.parametrize(("reliable", "events", "state", "outcome", "notices"), SCENARIOS)
async def test_each_order_of_events_ends_in_one_final_word(store, reliable, events, state, outcome, notices):
    gw = Gateway(store)
    message = await gw.submit(reliable=reliable)
    at = T0
    for event in events:
        at += timedelta(minutes=1) if event != "timeout" else TIMEOUT + timedelta(minutes=1)
        if event in ("sent", "5xx", "no-cert", "expire"):
            await gw.settle(event, at)
        elif event == "timeout":
            await gw.monitor.sweep(store, at)
        else:
            await gw.report(message, event, at)
    row = await _row(store)
    assert (TrackState(row.state), row.final_outcome) == (state, outcome)
    assert (row.final_notice_at is not None) == (outcome is not None)
    assert await _notices(store) == notices


async def test_sent_starts_the_domains_timeout(store):
    gw = Gateway(store)
    await gw.submit()
    await gw.settle("sent", T0 + timedelta(minutes=1))
    row = await _row(store)
    assert (row.state, row.sent_at, row.deadline_at) == ("sent", T0 + timedelta(minutes=1), T0 + timedelta(minutes=11))
    assert await gw.monitor.sweep(store, T0 + timedelta(minutes=10)) == 0  # not yet
    assert await gw.monitor.sweep(store, T0 + timedelta(minutes=11)) == 1
    assert await gw.monitor.sweep(store, T0 + timedelta(minutes=30)) == 0  # once


async def test_a_timeout_notice_dates_the_submission_and_the_send(store):
    gw = Gateway(store)
    await gw.submit()  # at T0
    await gw.settle("sent", T0 + timedelta(minutes=1))
    await gw.monitor.sweep(store, T0 + timedelta(minutes=12))
    payload = await store.read(lambda conn: conn.execute(
        select(outbound.c.payload).where(outbound.c.kind == JobKind.NOTICE.value)).scalar_one())
    status = bytes(payload).split(b"message/delivery-status\r\n\r\n", 1)[1].decode()
    assert f"Arrival-Date: {format_datetime(T0)}\r\n" in status
    assert f"Last-Attempt-Date: {format_datetime(T0 + timedelta(minutes=1))}\r\n" in status


@pytest.mark.parametrize(
    ("kwargs", "audited"),
    [({"signer": "mailer@c.test"}, "report-refused"), ({"to": "someone.else@hospital.test"}, "report-unmatched"),
     ({"message_id": "<other@hospital.test>"}, "report-unmatched")],
    ids=["signer-speaks-for-another-domain", "addressed-to-another-submitter", "another-message"],
)
async def test_a_report_that_does_not_match_changes_nothing(store, kwargs, audited):
    gw = Gateway(store)
    message = await gw.submit()
    await gw.settle("sent", T0 + timedelta(minutes=1))
    assert await gw.report(message, "processed", T0 + timedelta(minutes=2), **kwargs) == 0
    assert (await _row(store)).state == "sent" and await _notices(store) == []
    events = await store.read(lambda conn: list(conn.execute(select(audit.c.event)).scalars()))
    assert audited in events


@pytest.mark.parametrize(
    ("how", "state", "outcome"),
    [("5xx", "failed", "failed"), ("sent", "sent", "delivered")],
    ids=["refused", "sent-then-never-times-out"],
)
async def test_a_submitted_mdn_gets_no_notice_either_way(store, how, state, outcome):
    """An EHR may submit its own MDNs: no MDN answers one and no DSN is written about one
    (Direct item 22), so it is settled when it is sent or refused, and nobody is told."""
    gw = Gateway(store)
    mdn = build_mdn(Disposition.PROCESSED, original=Headers((PATIENT,), (EHR,), (), "x", "<in@b.test>", None),
                    final_recipient=EHR, reporting_domain="hospital.test", at=T0)

    def work(conn) -> None:
        row = conn.execute(insert(messages).returning(messages.c.id), dict(
            direction="out", kind="mdn", received_at=T0, mail_from=EHR, size=1, sha256="0" * 64, state="accepted",
            updated_at=T0)).scalar_one()
        job = enqueue_in(conn, JobKind.MAIL, EHR, PATIENT, mdn, at=T0, lifetime=timedelta(days=1), message_id=row)
        track_in(conn, message=row, job=job, sender=EHR, recipient=PATIENT, original_message_id="<mdn@h>",
                 reliable=False, at=T0)

    await store.run(work)
    await gw.settle(how, T0 + timedelta(minutes=1))
    assert await gw.monitor.sweep(store, T0 + timedelta(days=1)) == 0
    row = await _row(store)
    assert (row.state, row.final_outcome) == (state, outcome) and await _notices(store) == []


async def test_two_nodes_racing_send_one_final_notice_per_recipient(store_url):
    """Two nodes on one database sweep the same overdue rows while MDNs for them arrive:
    every recipient gets exactly one final word (a timeout DSN or its processed MDN)."""
    first, second = await open_store(store_url), await open_store(store_url)
    try:
        a, b = Gateway(first, "node-a"), Gateway(second, "node-b")
        count = 12
        ids = [await a.submit(f"<race{i}@hospital.test>") for i in range(count)]
        jobs = await a.queue.claim("w", at=T0, lease=LEASE, limit=count)
        for job in jobs:
            await a.queue.sent(job, at=T0, code=250, peer="mx", sent_message_id=None)
        late = T0 + TIMEOUT + timedelta(minutes=1)
        await asyncio.gather(
            a.monitor.sweep(first, late), b.monitor.sweep(second, late),
            *(b.report(m, "processed", late, message_id=f"<race{i}@hospital.test>") for i, m in enumerate(ids)),
        )
        rows = await first.read(lambda conn: conn.execute(select(tracking)).all())
        notices = await first.read(lambda conn: conn.execute(
            select(outbound.c.message_id).where(outbound.c.kind == JobKind.NOTICE.value)).scalars().all())
        assert sorted(notices) == sorted(ids)  # one each
        assert all(r.final_notice_at is not None for r in rows)
        assert {r.final_outcome for r in rows} <= {"delivered", "timed-out"}
    finally:
        await first.close()
        await second.close()


async def test_a_sweep_settles_every_overdue_row_batch_after_batch(store, monkeypatch):
    monkeypatch.setattr("gateway.monitor.monitor.SWEEP_BATCH", 2)
    gw = Gateway(store)
    for i in range(5):
        await gw.submit(f"<batch{i}@hospital.test>")
    for job in await gw.queue.claim("w", at=T0, lease=LEASE, limit=5):
        await gw.queue.sent(job, at=T0, code=250, peer="mx", sent_message_id=None)
    assert await gw.monitor.sweep(store, T0 + TIMEOUT + timedelta(minutes=1)) == 5
    assert len(await _notices(store)) == 5
