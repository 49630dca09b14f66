"""Providers' mailboxes, on SQLite and PostgreSQL: HISP B's receiving pipeline with a
provider route for b.test, the real outbound queue with the monitor's hook, the real
delivery worker and an aiosmtpd sink as the provider's mail server.

- RCPT for an address of b.test that is no record's is accepted; other domains' are not;
- a verified message for it is queued in plain form with the trust verdict on top
  (the sender's own X-Direct-* fields removed), ``processed`` queued at once, and
  ``dispatched`` only once the provider's server took it (failed if it never does);
- an MDN for one of our submitters, sealed by the recipient's HISP, moves the tracking
  and is passed back in plain form with MAIL FROM:<>."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from anchors.source import StaticAnchors
from gateway.core import seal_outbound
from gateway.core.mdn import Disposition, build_mdn, parse_mdn
from gateway.core.outbound import SealOptions
from gateway.core.outcomes import Headers, Sealed
from gateway.domains import LocalDomains
from gateway.monitor import track_in
from gateway.monitor.mailboxes import ProviderMailboxes
from gateway.monitor.monitor import DeliveryMonitor
from gateway.monitor.schema import tracking
from gateway.monitor.settings import monitor_settings
from gateway.outbound import (
    DeliveryWorker,
    JobKind,
    JobState,
    OutboundQueue,
    OutboundSettings,
    SmtpTransport,
)
from gateway.outbound.queue import enqueue_in
from gateway.receive import ReceivingPipeline
from gateway.smtp.interface import Received, SessionInfo
from gateway.store.messaging import message_recipients, messages, outbound
from records_bridge.store import RecordStore
from tests import messages as sample
from tests.outbound_sink import start_sink
from tests.pki import NOW, hisp
from tests.storage_fixtures import store_fixture, store_url_fixture  # noqa: F401 -- fixtures
from trust import OfflineFetcher, TrustService

A, B = hisp("a.test"), hisp("b.test")
SESSION = SessionInfo(peer="127.0.0.9", helo="hisp-a.test", tls=True)
DOCTOR = "dr.jones@b.test"  # a provider's address at B: no record holds it
PATIENT = "patient@b.test"
RELIABLE = ("Disposition-Notification-Options", "X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true")
LATER = NOW + timedelta(minutes=1)


class NoRoutes:
    async def route(self, domain, *, at):  # plain jobs never ask the MX router
        raise AssertionError(f"routed {domain}")


class NoKeys:
    async def signing_pair(self, address, at):
        raise AssertionError("a plain job is not signed")


class NoDiscovery:
    async def discover(self, address, *, local_domain, at):
        raise AssertionError("a plain job needs no certificate")


async def _gateway(store, sink_port: int):
    domains = LocalDomains(store)
    await domains.create("b.test", at=NOW)
    await domains.add_key("b.test", B.org.pair, at=NOW)
    records = RecordStore(store)
    await records.create_record("Pat Patient", (PATIENT,), at=NOW)
    settings = monitor_settings({"b.test": {"provider_smtp": f"127.0.0.1:{sink_port}"}})
    mailboxes = ProviderMailboxes(settings, DeliveryMonitor(settings, reporting_mta="gw.b.test", node="b"))
    queue = OutboundQueue(store, on_settled=mailboxes.job_settled)
    trust = TrustService(StaticAnchors((A.root.ref,)), OfflineFetcher())
    pipeline = ReceivingPipeline(store, domains, records, trust, queue, clock=lambda: LATER, mailboxes=mailboxes)
    out = OutboundSettings(connect_timeout=5, command_timeout=5, data_timeout=5, lease=timedelta(minutes=1))
    worker = DeliveryWorker(queue, discovery=NoDiscovery(), keys=NoKeys(), router=NoRoutes(),
                            transport=SmtpTransport(out), settings=out, clock=lambda: LATER, owner="w",
                            providers=settings.provider_routes)
    return pipeline, queue, worker


def _sealed(plain: bytes, signer=A.org) -> bytes:
    sealed = seal_outbound(plain, signer.pair, [B.org.ref], SealOptions(at=NOW, chain=(A.intermediate.ref,)))
    assert isinstance(sealed, Sealed), sealed
    return sealed.message


async def _jobs(store, kind: JobKind | None = None):
    query = select(outbound).order_by(outbound.c.id)
    if kind is not None:
        query = query.where(outbound.c.kind == kind.value)
    return await store.read(lambda conn: conn.execute(query).all())


async def test_rcpt_is_accepted_for_a_providers_address_only_in_a_routed_domain(store):
    sink = await start_sink()
    try:
        pipeline, _, _ = await _gateway(store, sink.port)
        assert await pipeline.recipient(SESSION, "alice@a.test", DOCTOR) is None
        assert await pipeline.recipient(SESSION, "alice@a.test", PATIENT) is None
        relay = await pipeline.recipient(SESSION, "alice@a.test", "someone@c.test")
        assert (relay.code, relay.enhanced) == (550, "5.7.1")
    finally:
        await sink.close()


@pytest.mark.parametrize("reliable", [False, True], ids=["general", "reliable"])
async def test_a_verified_message_reaches_the_providers_mailbox_in_plain_form(store, reliable):
    sink = await start_sink()
    try:
        pipeline, queue, worker = await _gateway(store, sink.port)
        extra = [("Message-ID", "<to-doctor@a.test>"), ("X-Direct-Trust", "trusted; forged by the sender")]
        if reliable:
            extra.append(RELIABLE)
        plain = sample.plain(sender="alice@a.test", recipients=(DOCTOR,), subject="Consult",
                             body=b"Please see Pat tomorrow.\r\n", extra_headers=tuple(extra))
        reply = await pipeline.message(Received(SESSION, "alice@a.test", (DOCTOR,), _sealed(plain)))
        assert (reply.code, reply.enhanced) == (250, "2.6.0")
        states = await store.read(lambda conn: conn.execute(select(message_recipients.c.state)).scalars().all())
        assert states == ["forwarded"]
        jobs = await _jobs(store)
        assert [j.kind for j in jobs] == ["provider", "mdn"]  # processed at once; dispatched waits
        assert parse_mdn(jobs[1].payload).disposition is Disposition.PROCESSED

        [job] = await queue.claim("w", at=LATER, lease=timedelta(minutes=1), limit=1)
        attempt = await worker.attempt(job)
        assert attempt.state is JobState.SENT, attempt
        [got] = sink.received
        assert (got.mail_from, got.rcpt_tos) == ("alice@a.test", (DOCTOR,))
        head, _, body = got.data.partition(b"\r\n\r\n")
        assert body == b"Please see Pat tomorrow.\r\n"  # decrypted, as signed
        fields = [line.split(b":", 1)[0] for line in head.split(b"\r\n")]
        assert fields[:3] == [b"X-Direct-Trust", b"X-Direct-Signer", b"X-Direct-Sender"]
        assert b"forged by the sender" not in head and fields.count(b"X-Direct-Trust") == 1
        assert b"X-Direct-Trust: trusted; trusted for" in head and b"Subject: Consult" in head

        mdns = [parse_mdn(j.payload) for j in await _jobs(store, JobKind.MDN)]
        want = [Disposition.PROCESSED, Disposition.DISPATCHED] if reliable else [Disposition.PROCESSED]
        assert [m.disposition for m in mdns] == want
        assert all(m.final_recipient == DOCTOR for m in mdns)
        # a retry of the same message after a lost 250: accepted, nothing queued twice
        again = await pipeline.message(Received(SESSION, "alice@a.test", (DOCTOR,), _sealed(plain)))
        assert again.code == 250 and len(await _jobs(store, JobKind.PROVIDER)) == 1
    finally:
        await sink.close()


async def test_another_senders_message_with_the_same_message_id_is_queued_too(store):
    """A Message-ID is its sender's word: a retry is one from the same sender (in any case),
    and another sender's message that happens to carry it is a message of its own."""
    sink = await start_sink()
    try:
        pipeline, _, _ = await _gateway(store, sink.port)

        async def send(sender: str, body: bytes) -> int:
            plain = sample.plain(sender=sender, recipients=(DOCTOR,), body=body,
                                 extra_headers=(("Message-ID", "<12345@localhost>"),))
            return (await pipeline.message(Received(SESSION, sender, (DOCTOR,), _sealed(plain)))).code

        assert await send("alice@a.test", b"From Alice.\r\n") == 250
        assert await send("bob@a.test", b"From Bob.\r\n") == 250
        assert await send("Alice@A.test", b"From Alice.\r\n") == 250  # a retry
        jobs = await _jobs(store, JobKind.PROVIDER)
        assert [j.sender for j in jobs] == ["alice@a.test", "bob@a.test"]
        states = await store.read(lambda conn: conn.execute(
            select(message_recipients.c.state).order_by(message_recipients.c.message_id)).scalars().all())
        assert states == ["forwarded", "forwarded", "duplicate"]
    finally:
        await sink.close()


async def test_a_provider_server_that_refuses_gets_the_sender_a_failed_mdn(store):
    sink = await start_sink()
    sink.rcpt_replies.append("550 5.1.1 no such mailbox")
    try:
        pipeline, queue, worker = await _gateway(store, sink.port)
        plain = sample.plain(sender="alice@a.test", recipients=(DOCTOR,),
                             extra_headers=(("Message-ID", "<refused@a.test>"), RELIABLE))
        assert (await pipeline.message(Received(SESSION, "alice@a.test", (DOCTOR,), _sealed(plain)))).code == 250
        [job] = await queue.claim("w", at=LATER, lease=timedelta(minutes=1), limit=1)
        assert (await worker.attempt(job)).state is JobState.FAILED
        mdns = [parse_mdn(j.payload) for j in await _jobs(store, JobKind.MDN)]
        assert [m.disposition for m in mdns] == [Disposition.PROCESSED, Disposition.FAILED]
        assert "550 5.1.1" in (mdns[1].failure or "")
    finally:
        await sink.close()


async def test_an_mdn_for_our_submitter_is_matched_and_passed_back(store):
    """Here B is the submitter's side: its provider sent to alice@a.test; A's processed MDN comes back."""
    sink = await start_sink()
    try:
        pipeline, queue, worker = await _gateway(store, sink.port)
        original = sample.plain(sender=DOCTOR, recipients=("alice@a.test",),
                                extra_headers=(("Message-ID", "<from-doctor@b.test>"),))

        def submitted(conn) -> int:
            row = conn.execute(insert(messages).returning(messages.c.id), dict(
                direction="out", kind="message", received_at=NOW, mail_from=DOCTOR, message_id="<from-doctor@b.test>",
                sender=DOCTOR, size=len(original), sha256="0" * 64, state="accepted", updated_at=NOW)).scalar_one()
            job = enqueue_in(conn, JobKind.MAIL, DOCTOR, "alice@a.test", original, at=NOW,
                             lifetime=timedelta(days=1), message_id=row)
            conn.execute(outbound.update().where(outbound.c.id == job).values(state="sent"))
            track_in(conn, message=row, job=job, sender=DOCTOR, recipient="alice@a.test",
                     original_message_id="<from-doctor@b.test>", reliable=False, at=NOW)
            return row

        await store.run(submitted)
        mdn = build_mdn(Disposition.PROCESSED, final_recipient="alice@a.test", reporting_domain="a.test", at=NOW,
                        original=Headers((DOCTOR,), ("alice@a.test",), (), "x", "<from-doctor@b.test>", None))
        sealed = seal_outbound(mdn, A.org.pair, [B.org.ref], SealOptions(at=NOW, chain=(A.intermediate.ref,)))
        assert isinstance(sealed, Sealed)
        reply = await pipeline.message(Received(SESSION, "", (DOCTOR,), sealed.message))
        assert reply.code == 250
        row = await store.read(lambda conn: conn.execute(select(tracking)).one())
        assert (row.state, row.final_outcome) == ("processed", "delivered")
        [notice] = await queue.claim("w", at=LATER, lease=timedelta(minutes=1), limit=1)
        assert notice.kind is JobKind.NOTICE
        assert (await worker.attempt(notice)).state is JobState.SENT
        [got] = sink.received
        assert (got.mail_from, got.rcpt_tos) == ("<>", (DOCTOR,))  # MAIL FROM:<>: nothing answers it
        assert parse_mdn(got.data).disposition is Disposition.PROCESSED
        assert b"X-Direct-Sender: alice@a.test" in got.data
    finally:
        await sink.close()
