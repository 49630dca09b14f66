"""The receiving pipeline behind port 25, on SQLite and PostgreSQL: what a
message becomes at the final dot. Real stores, real PKI, real sealing; only
the outbox is a recording implementation of our own ``Outbox`` protocol
(the outbound queue has its own tests). What it queued is read back from the
database: a transaction that failed (and was tried again) queued nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, event, select, update

from anchors.source import StaticAnchors
from gateway.core import seal_outbound
from gateway.core.mdn import parse_mdn
from gateway.core.outbound import SealOptions
from gateway.core.outcomes import Sealed
from gateway.domains import LocalDomains
from gateway.outbound.queue import OutboundQueue, enqueue_in
from gateway.receive import ReceivingPipeline
from gateway.smtp.interface import Received, SessionInfo
from gateway.store import messaging
from records_bridge import schema as records_schema
from records_bridge.store import RecordStore
from records_bridge.types import ItemType
from tests import messages
from tests.pki import NOW, Hisp, hisp
from tests.storage_fixtures import (  # noqa: F401 -- fixtures
    sent_fixture,
    store_fixture,
    store_url_fixture,
    transactions_fixture,
)
from trust import OfflineFetcher, TrustService

SESSION = SessionInfo(peer="127.0.0.9", helo="hisp-a.test", tls=True)
PATIENT = "patient@b.test"


@dataclass
class RecordingOutbox:
    wakes: int = 0

    def enqueue_in(self, conn, kind, sender, recipient, payload, *, at, lifetime, relates_to=None, message_id=None,
                   trail=None, deferred_id=False):
        # the job row in the caller's transaction, its own audit row left out (the queue's tests cover it)
        return enqueue_in(conn, kind, sender, recipient, payload, at=at, lifetime=lifetime, relates_to=relates_to,
                          message_id=message_id, trail=[], deferred_id=deferred_id)

    def wake(self):
        self.wakes += 1


async def _queued(store) -> list[dict]:
    """The jobs committed, in the order they were queued."""
    o = messaging.outbound
    rows = await store.read(lambda conn: list(conn.execute(
        select(o.c.kind, o.c.sender, o.c.recipient, o.c.payload, o.c.relates_to).order_by(o.c.id))))
    return [{"kind": r.kind, "sender": r.sender, "recipient": r.recipient, "payload": bytes(r.payload),
             "relates_to": r.relates_to} for r in rows]


@dataclass
class Exchange:
    a: Hisp
    b: Hisp
    pipeline: ReceivingPipeline
    records: RecordStore
    outbox: RecordingOutbox
    record_id: int
    store: object

    def sealed(self, plain: bytes, *, signer=None, chain=None) -> bytes:
        signer = signer or self.a.org
        sealed = seal_outbound(
            plain, signer.pair, [self.b.org.ref],
            SealOptions(at=NOW, chain=tuple(chain if chain is not None else (self.a.intermediate.ref,))),
        )
        assert isinstance(sealed, Sealed), sealed
        return sealed.message


_PKI: dict[str, tuple[Hisp, Hisp]] = {}


def _hisps() -> tuple[Hisp, Hisp]:
    if "ab" not in _PKI:
        _PKI["ab"] = (hisp("a.test"), hisp("b.test"))
    return _PKI["ab"]


async def _exchange(store, anchors=None, trust=None, outbox=None) -> Exchange:
    a, b = _hisps()
    domains = LocalDomains(store)
    await domains.create("b.test", at=NOW)
    await domains.add_key("b.test", b.org.pair, at=NOW)
    records = RecordStore(store)
    record = await records.create_record("Pat Patient", (PATIENT,), at=NOW)
    service = trust or TrustService(StaticAnchors(anchors if anchors is not None else (a.root.ref,)), OfflineFetcher())
    outbox = outbox if outbox is not None else RecordingOutbox()
    pipeline = ReceivingPipeline(store, domains, records, service, outbox, clock=lambda: NOW + timedelta(minutes=1))
    return Exchange(a, b, pipeline, records, outbox, record.id, store)


def _received(data: bytes, mail_from: str = "alice@a.test", rcpt=(PATIENT,)) -> Received:
    return Received(SESSION, mail_from, tuple(rcpt), data)


async def _audit(store) -> list[tuple[str, str | None]]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(messaging.audit.c.event, messaging.audit.c.reason).order_by(messaging.audit.c.id))).all()
    return [(r.event, r.reason) for r in rows]


async def _message_states(store) -> list[str]:
    async with store.engine.connect() as conn:
        return list((await conn.scalars(select(messaging.messages.c.state).order_by(messaging.messages.c.id))).all())


async def test_recipients_outside_our_domains_or_records_are_refused(store):
    ex = await _exchange(store)
    assert await ex.pipeline.recipient(SESSION, "alice@a.test", PATIENT) is None
    assert await ex.pipeline.recipient(SESSION, "alice@a.test", "Patient@B.TEST") is None
    unknown = await ex.pipeline.recipient(SESSION, "alice@a.test", "nobody@b.test")
    relay = await ex.pipeline.recipient(SESSION, "alice@a.test", "someone@elsewhere.test")
    assert (unknown.code, unknown.enhanced) == (550, "5.1.1")
    assert (relay.code, relay.enhanced) == (550, "5.7.1")


async def test_a_trusted_message_lands_in_the_record_and_is_acknowledged(store):
    ex = await _exchange(store)
    plain = messages.with_attachment(sender="alice@a.test", recipients=(PATIENT,))
    reply = await ex.pipeline.message(_received(ex.sealed(plain)))
    assert (reply.code, reply.enhanced) == (250, "2.6.0")
    items = await ex.records.items(ex.record_id)
    assert [i.type for i in items] == [ItemType.MESSAGE, ItemType.CDA]
    assert await ex.records.blob(items[1].id) == messages.CCDA  # byte-identical
    assert all(i.sender == "alice@a.test" for i in items)
    (mdn,) = await _queued(ex.store)
    assert (mdn["kind"], mdn["sender"], mdn["recipient"]) == ("mdn", PATIENT, "alice@a.test")
    parsed = parse_mdn(mdn["payload"])
    assert parsed.disposition.value == "processed"
    assert await _message_states(store) == ["delivered"]
    assert [e for e, _ in await _audit(store)] == ["delivered", "mdn-queued"]


async def test_an_accepted_message_is_one_statement_on_postgresql(store, sent, transactions):
    """Its record is looked up inside the statement that writes it: the message, items, blobs,
    MDN jobs and audit rows wait and go out together with that lookup, one statement, atomic by
    itself, with no BEGIN or COMMIT around it (docs/storage.md)."""
    ex = await _exchange(store, outbox=OutboundQueue(store))
    plain = (b"Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\n"
             + messages.with_attachment(sender="alice@a.test", recipients=(PATIENT,)))
    first = await ex.pipeline.message(_received(ex.sealed(messages.plain(recipients=(PATIENT,)))))
    assert first.code == 250  # the domain's keys and the trust decision are cached from here on
    first_id = await store.read(lambda conn: conn.scalar(select(messaging.messages.c.id)))
    sent.clear()
    transactions.clear()
    through_sqlalchemy: list[str] = []
    event.listen(store.engine.sync_engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_a: through_sqlalchemy.append(sql.split()[0]))
    reply = await ex.pipeline.message(_received(ex.sealed(plain)))
    assert reply.code == 250
    if store.dialect == "postgresql":
        assert (sent, through_sqlalchemy, transactions) == (["WITH"], [], [])
    items = (await ex.records.items(ex.record_id))[-2:]
    assert [i.type for i in items] == [ItemType.MESSAGE, ItemType.CDA]
    assert await ex.records.blob(items[1].id) == messages.CCDA
    async with store.engine.connect() as conn:
        message = await conn.scalar(select(messaging.messages.c.id).where(messaging.messages.c.id != first_id))
        jobs = (await conn.execute(select(messaging.outbound.c.id, messaging.outbound.c.message_id)
                                   .where(messaging.outbound.c.message_id == message)
                                   .order_by(messaging.outbound.c.id))).all()
        trail = (await conn.execute(select(messaging.audit.c.event, messaging.audit.c.message_id,
                                           messaging.audit.c.detail)
                                    .where(messaging.audit.c.message_id == message)
                                    .order_by(messaging.audit.c.id))).all()
    assert [m for _j, m in jobs] == [message, message]  # processed and dispatched
    assert [(e, m) for e, m, _d in trail] == [("delivered", message)] + [("queued", message), ("mdn-queued", message)] * 2
    assert [d for e, _m, d in trail if e == "queued"] == [f"outbound #{j} (mdn)" for j, _m in jobs]


async def test_reliable_delivery_requested_gets_processed_and_dispatched(store):
    ex = await _exchange(store)
    plain = messages.plain(
        sender="alice@a.test", recipients=(PATIENT,),
        extra_headers=(("Disposition-Notification-Options", "X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true"),
                       ("Message-ID", "<reliable-1@a.test>")),
    )
    assert (await ex.pipeline.message(_received(ex.sealed(plain)))).code == 250
    dispositions = [parse_mdn(q["payload"]).disposition.value for q in await _queued(ex.store)]
    assert dispositions == ["processed", "dispatched"]
    assert all(q["relates_to"] == "<reliable-1@a.test>" for q in await _queued(ex.store))


async def test_a_redelivered_message_adds_nothing_and_is_not_acknowledged_twice(store):
    ex = await _exchange(store)
    plain = messages.plain(sender="alice@a.test", recipients=(PATIENT,), extra_headers=(("Message-ID", "<once@a.test>"),))
    data = ex.sealed(plain)
    first = await ex.pipeline.message(_received(data))
    again = await ex.pipeline.message(_received(ex.sealed(plain)))
    assert first.code == again.code == 250 and "already" in again.text
    assert await ex.records.count_items(ex.record_id) == 1
    assert len(await _queued(ex.store)) == 1
    assert await _message_states(store) == ["delivered", "duplicate"]


async def test_another_senders_message_with_a_reused_message_id_is_delivered_not_taken_for_a_retry(store):
    """The signature binds each message to its sender; a Message-ID is only that sender's word."""
    ex = await _exchange(store)

    def plain(sender: str, body: bytes) -> bytes:
        return messages.plain(sender=sender, recipients=(PATIENT,), body=body,
                              extra_headers=(("Message-ID", "<12345@localhost>"),))

    first = await ex.pipeline.message(_received(ex.sealed(plain("alice@a.test", b"Alice's results.\r\n"))))
    other = await ex.pipeline.message(_received(ex.sealed(plain("bob@a.test", b"Bob's referral.\r\n")),
                                                mail_from="bob@a.test"))
    assert first.code == other.code == 250 and "already" not in other.text
    assert await ex.records.count_items(ex.record_id) == 2
    assert len(await _queued(ex.store)) == 2  # each sender gets its MDN
    assert await _message_states(store) == ["delivered", "delivered"]


async def test_a_redelivery_on_postgresql_fails_the_first_delivery_s_statement_then_reads_first(store, sent):
    """The one statement assumes a first delivery; the record's key for the Message-ID refuses a
    second, the statement writes nothing, and the long way (lookup, then writes) decides."""
    ex = await _exchange(store)
    plain = messages.plain(sender="alice@a.test", recipients=(PATIENT,), extra_headers=(("Message-ID", "<twice@a.test>"),))
    assert (await ex.pipeline.message(_received(ex.sealed(plain)))).code == 250
    sent.clear()
    again = await ex.pipeline.message(_received(ex.sealed(plain)))
    assert again.code == 250 and "already" in again.text
    if store.dialect == "postgresql":
        assert sent == ["WITH", "SELECT", "WITH"]
    assert await ex.records.count_items(ex.record_id) == 1
    assert await _message_states(store) == ["delivered", "duplicate"]


async def test_an_address_moved_to_another_record_after_rcpt_delivers_into_the_record_it_has_now(store):
    ex = await _exchange(store)
    other = await ex.records.create_record("Pat Again", (), at=NOW)
    plain = messages.plain(sender="alice@a.test", recipients=(PATIENT,))
    data = ex.sealed(plain)  # sealed before the move: RCPT was accepted for the old record
    await store.run(lambda conn: conn.execute(
        update(records_schema.record_addresses).where(records_schema.record_addresses.c.address == PATIENT)
        .values(record_id=other.id)))
    assert (await ex.pipeline.message(_received(data))).code == 250
    assert await ex.records.count_items(ex.record_id) == 0
    assert await ex.records.count_items(other.id) == 1


async def test_an_address_removed_after_rcpt_is_a_temporary_failure_that_stores_nothing(store):
    ex = await _exchange(store)
    data = ex.sealed(messages.plain(sender="alice@a.test", recipients=(PATIENT,)))
    await store.run(lambda conn: conn.execute(
        delete(records_schema.record_addresses).where(records_schema.record_addresses.c.address == PATIENT)))
    reply = await ex.pipeline.message(_received(data))
    assert 400 <= reply.code < 500, reply  # never a permanent refusal for our own change of mind
    assert await ex.records.count_items(ex.record_id) == 0
    assert await _queued(ex.store) == [] and await _message_states(store) == []


@pytest.mark.parametrize(
    ("case", "code", "enhanced", "reason"),
    [
        ("untrusted-signer", 554, "5.7.1", "chain"),
        ("not-encrypted", 554, "5.7.1", "not-encrypted"),
        ("garbage", 554, None, None),
        ("sender-mismatch", 554, "5.7.1", None),
    ],
)
async def test_refused_messages_enter_no_record_and_are_audited(store, case, code, enhanced, reason):
    other_root = hisp("c.test").root.ref
    ex = await _exchange(store, anchors=(other_root,) if case == "untrusted-signer" else None)
    plain = messages.plain(sender="alice@a.test", recipients=(PATIENT,))
    data = {
        "untrusted-signer": lambda: ex.sealed(plain),
        "not-encrypted": lambda: plain,
        "garbage": lambda: b"From: x@a.test\r\nContent-Type: application/pkcs7-mime\r\n\r\nnot base64 at all!\r\n",
        "sender-mismatch": lambda: ex.sealed(plain),
    }[case]()
    mail_from = "mallory@a.test" if case == "sender-mismatch" else "alice@a.test"
    reply = await ex.pipeline.message(_received(data, mail_from=mail_from))
    assert reply.code == code and (enhanced is None or reply.enhanced == enhanced), reply
    assert await ex.records.count_items(ex.record_id) == 0
    assert await _queued(ex.store) == []
    assert await _message_states(store) == ["rejected"]
    (event, why), = await _audit(store)
    assert event == "rejected" and why
    if reason:
        assert reason in why


async def test_revocation_status_unknown_is_a_temporary_refusal(store):
    a, _b = _hisps()
    from tests.pki import issue

    leaf = issue("a.test", issuer=a.intermediate, dns="a.test", crl_urls=("http://127.0.0.1:9/none.crl",))
    ex = await _exchange(store)
    plain = messages.plain(sender="alice@a.test", recipients=(PATIENT,))
    reply = await ex.pipeline.message(_received(ex.sealed(plain, signer=leaf)))
    assert (reply.code, reply.enhanced) == (451, "4.7.0"), reply
    assert await ex.records.count_items(ex.record_id) == 0
    assert await _message_states(store) == ["deferred"]


class ExplodingTrust:
    async def check_inbound(self, opened, *, recipient: str, at: datetime):
        raise RuntimeError("secret internal state /var/lib/directgw")


async def test_an_internal_error_is_temporary_and_shows_no_internals(store):
    ex = await _exchange(store, trust=ExplodingTrust())
    plain = messages.plain(sender="alice@a.test", recipients=(PATIENT,))
    reply = await ex.pipeline.message(_received(ex.sealed(plain)))
    assert (reply.code, reply.enhanced) == (451, "4.3.0")
    assert "secret" not in reply.text and "/var" not in reply.text
    assert await ex.records.count_items(ex.record_id) == 0


async def test_an_mdn_addressed_to_us_is_kept_for_the_monitor_and_never_answered(store):
    from gateway.core.mdn import Disposition, build_mdn
    from gateway.core.outcomes import Headers

    ex = await _exchange(store)
    original = Headers(from_=(PATIENT,), to=("alice@a.test",), cc=(), subject="Hello", message_id="<ours@b.test>", date=None)
    mdn = build_mdn(Disposition.PROCESSED, original=original, final_recipient="alice@a.test",
                    reporting_domain="a.test", at=NOW)
    reply = await ex.pipeline.message(_received(ex.sealed(mdn)))
    assert reply.code == 250
    assert await _queued(ex.store) == [] and await ex.records.count_items(ex.record_id) == 0
    assert await _message_states(store) == ["report"]


def test_every_reason_the_core_gives_has_its_own_reply():
    from gateway.core.outcomes import RejectReason
    from gateway.receive import replies

    outbound_only = {RejectReason.NO_RECIPIENT_CERTIFICATE, RejectReason.UNSUITABLE_KEY}
    for reason in set(RejectReason) - outbound_only:
        reply = replies.for_rejection(reason)
        assert reply is not replies._CORE_DEFAULT, reason
        assert reply.permanent and reply.enhanced.startswith("5.")


async def test_a_record_created_after_a_refused_rcpt_is_accepted_at_once(store):
    ex = await _exchange(store)
    assert (await ex.pipeline.recipient(SESSION, "alice@a.test", "late@b.test")).code == 550
    await ex.records.create_record("Late", ("late@b.test",), at=NOW)
    assert await ex.pipeline.recipient(SESSION, "alice@a.test", "late@b.test") is None


async def test_a_message_to_two_addresses_of_one_record_lands_in_it_once(store):
    """Once into the record, acknowledged for each address (it broke the record's key for the
    Message-ID, a 451 at every attempt, until this was specified)."""
    ex = await _exchange(store)
    second = "pat.other@b.test"
    await store.run(lambda conn: conn.execute(records_schema.record_addresses.insert().values(
        record_id=ex.record_id, address=second, created_at=NOW)))
    plain = messages.plain(sender="alice@a.test", recipients=(PATIENT, second))
    reply = await ex.pipeline.message(_received(ex.sealed(plain), rcpt=(PATIENT, second)))
    assert reply.code == 250, reply
    assert await ex.records.count_items(ex.record_id) == 1
    assert await _message_states(store) == ["delivered"]
    assert sorted(parse_mdn(q["payload"]).final_recipient for q in await _queued(ex.store)) == sorted([PATIENT, second])


@pytest.mark.parametrize("rcpt", [(PATIENT, PATIENT), (PATIENT, PATIENT.upper())], ids=["twice", "in-another-case"])
async def test_one_recipient_named_twice_in_the_envelope_is_one_delivery(store, rcpt):
    ex = await _exchange(store)
    plain = messages.plain(sender="alice@a.test", recipients=(PATIENT,))
    reply = await ex.pipeline.message(_received(ex.sealed(plain), rcpt=rcpt))
    assert reply.code == 250, reply
    assert await ex.records.count_items(ex.record_id) == 1
    assert await _message_states(store) == ["delivered"]
