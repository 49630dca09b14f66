"""Port 587 end to end inside ``start_service`` (the composition root), on SQLite and
PostgreSQL: an EHR (Python's smtplib) submits over STARTTLS + AUTH; the 250 comes only
once the message, its outbound jobs and their tracking rows are committed. Bad
passwords are refused and counted, a lockout follows, a success resets; MAIL FROM
outside the account's domain is refused; port 25 never relays without AUTH."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.accounts import Accounts, hash_password
from gateway.accounts.schema import auth_lockouts
from gateway.config import load_config
from gateway.domains import LocalDomains
from gateway.monitor.schema import tracking
from gateway.outbound.queue import OutboundQueue
from gateway.service.app import Running, start_service
from gateway.service.settings import Listen, serve_settings
from gateway.smtp.interface import Received, SessionInfo
from gateway.smtp.tls import self_signed
from gateway.store import Store, messaging, open_store
from gateway.submit import SubmissionPipeline, SubmitSettings
from tests.storage_fixtures import store_url_fixture  # noqa: F401 -- SQLite and PostgreSQL

ACCOUNT, PASSWORD = "ehr-north", "a long password for the EHR"
SENDER = "dr.who@hospital.test"
TO, HIDDEN = "bob@b.test", "carol@c.test"
MAX_FAILURES = 3


def _message(*, sender: str = SENDER, extra: str = "") -> bytes:
    return (f"From: Dr Who <{sender}>\r\nTo: {TO}\r\nBcc: {HIDDEN}\r\nSubject: Referral\r\n{extra}\r\n"
            "Please see the attached summary.\r\n").encode()


def _configure(site: Path, storage_url: str) -> Path:
    cert, key = self_signed("submit.hospital.test", datetime.now(UTC) - timedelta(days=1))
    (site / "tls").mkdir()
    (site / "tls" / "smtp.crt").write_bytes(cert)
    (site / "tls" / "smtp.key").write_bytes(key)
    path = site / "directgw.toml"
    path.write_text(f"""data_dir = "data"

[storage]
url = "{storage_url}"

[discovery]
nameservers = ["127.0.0.1:9"]
ldap = false

[smtp]
listen = "127.0.0.1:0"
hostname = "mx.hospital.test"
tls_certificate = "tls/smtp.crt"
tls_key = "tls/smtp.key"

[http]
listen = "off"

[submission]
listen = "127.0.0.1:0"
max_auth_failures = {MAX_FAILURES}

[outbound]
poll = 3600
""")
    (site / "data").mkdir()
    return path


@pytest.fixture(name="service")
async def service_fixture(tmp_path, store_url):
    """A running gateway with the local domain hospital.test and the account ehr-north; and a store to look with."""
    config = load_config(_configure(tmp_path, store_url))
    store = await open_store(store_url)
    await LocalDomains(store).create("hospital.test", at=datetime.now(UTC))
    await Accounts(store).add(ACCOUNT, "hospital.test", hash_password(PASSWORD), at=datetime.now(UTC))
    settings = serve_settings(config.tables, config.path.parent)
    assert settings.submission == Listen("127.0.0.1", 0)
    running = await start_service(config, settings, first_worker=False)
    try:
        yield running, store
    finally:
        await running.stop()
        await store.close()


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate
    return context


def _ehr(port: int, *, tls: bool = True) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, local_hostname="ehr.hospital.test", timeout=20)
    client.ehlo()
    if tls:
        client.starttls(context=_tls())
        client.ehlo()
    return client


def _port(running: Running) -> int:
    assert running.submission is not None
    return running.submission.port


async def _rows(store: Store, query):
    async with store.engine.connect() as conn:
        return (await conn.execute(query)).all()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_a_submission_is_queued_before_its_250(service, mechanism):
    running, store = service

    def submit():
        with _ehr(_port(running)) as client:
            client.user, client.password = ACCOUNT, PASSWORD
            code, _ = client.auth(mechanism, client.auth_plain if mechanism == "PLAIN" else client.auth_login)
            assert code == 235
            assert client.mail(SENDER)[0] == 250
            assert client.rcpt(TO)[0] == 250
            assert client.rcpt(HIDDEN)[0] == 250
            return client.data(_message(extra="Disposition-Notification-Options: "
                                              "X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\n"))

    code, text = await asyncio.to_thread(submit)
    assert code == 250, text
    message = int(text.decode().rsplit(" ", 1)[1])
    m, o = messaging.messages, messaging.outbound
    (row,) = await _rows(store, select(m).where(m.c.id == message))
    assert (row.direction, row.kind, row.state, row.sender, row.mail_from) == ("out", "message", "submitted", SENDER,
                                                                                SENDER)
    jobs = await _rows(store, select(o).where(o.c.message_id == message, o.c.kind == "mail").order_by(o.c.recipient))
    # states not asserted: the delivery loop, woken by the acceptance's commit, may already have
    # tried them (the audit trail below shows what that commit wrote)
    assert [(j.kind, j.sender, j.recipient) for j in jobs] == [("mail", SENDER, TO), ("mail", SENDER, HIDDEN)]
    for job in jobs:
        payload = bytes(job.payload)
        assert b"Bcc" not in payload and HIDDEN.encode() not in payload  # no recipient sees a Bcc
        assert f"Message-ID: {row.message_id}\r\n".encode() in payload and b"\r\nDate: " in payload
    tracked = await _rows(store, select(tracking).where(tracking.c.message_id == message))
    assert sorted((t.recipient, t.job_id, t.original_message_id, t.reliable) for t in tracked) == sorted(
        (j.recipient, j.id, row.message_id, True) for j in jobs)
    trail = [a.event for a in await _rows(store, select(messaging.audit).where(
        messaging.audit.c.message_id == message).order_by(messaging.audit.c.id))]
    # the acceptance's one commit; the delivery loop, woken by that commit, may already have claimed the jobs
    assert trail[:3] == ["submitted", "queued", "queued"]


async def test_auth_without_tls_is_refused(service):
    running, _ = service

    def talk():
        with _ehr(_port(running), tls=False) as client:
            return "auth" in client.esmtp_features, client.docmd("AUTH", "PLAIN AGVoci1ub3J0aABw"), \
                client.docmd("MAIL", f"FROM:<{SENDER}>")

    offered, auth, mail = await asyncio.to_thread(talk)
    assert not offered
    assert auth[0] == 538 and mail[0] == 530


async def test_bad_passwords_are_counted_a_lockout_follows_and_a_success_resets(service):
    running, store = service

    def login(password: str) -> int:
        # one AUTH PLAIN per try (smtplib's login() would go on to LOGIN after a 535: two failures)
        with _ehr(_port(running)) as client:
            client.user, client.password = ACCOUNT, password
            try:
                return client.auth("PLAIN", client.auth_plain)[0]
            except smtplib.SMTPAuthenticationError as exc:
                return exc.smtp_code

    async def row():
        return (await _rows(store, select(auth_lockouts)))

    for _ in range(MAX_FAILURES - 1):
        assert await asyncio.to_thread(login, "wrong password") == 535
    (counted,) = await row()
    assert (counted.client, counted.failures, counted.locked_until) == ("127.0.0.1", MAX_FAILURES - 1, None)
    assert await asyncio.to_thread(login, PASSWORD) == 235
    assert await row() == []  # a success clears the count
    for _ in range(MAX_FAILURES):
        assert await asyncio.to_thread(login, "wrong password") == 535
    (locked,) = await row()
    assert locked.locked_until is not None
    # locked out: the right password too gets 454 4.7.0, on any new connection
    assert await asyncio.to_thread(login, PASSWORD) == 454
    assert await asyncio.to_thread(login, "wrong password") == 454
    (still,) = await row()
    assert still.locked_until == locked.locked_until  # not extended


@pytest.mark.parametrize(
    ("mail_from", "data", "at"),
    [
        ("mallory@elsewhere.test", None, "MAIL"),
        ("dr.who@b.test", None, "MAIL"),
        ("dr.who@[192.0.2.1]", None, "MAIL"),
        (SENDER, _message(sender="nurse@hospital.test"), "DATA"),
    ],
    ids=["foreign-domain", "a-recipients-domain", "address-literal", "from-not-mail-from"],
)
async def test_senders_outside_the_account_are_refused(service, mail_from, data, at):
    running, store = service

    def talk():
        with _ehr(_port(running)) as client:
            client.login(ACCOUNT, PASSWORD)
            mail = client.docmd("MAIL", f"FROM:<{mail_from}>")
            if at == "MAIL":
                return mail
            assert mail[0] == 250 and client.rcpt(TO)[0] == 250
            return client.data(data)

    code, text = await asyncio.to_thread(talk)
    assert code in (550, 553) and text.startswith(b"5.7.1" if code == 550 else b"5.1.7")
    assert await _rows(store, select(messaging.outbound)) == []
    if at == "DATA":
        (refused,) = await _rows(store, select(messaging.messages))
        assert (refused.direction, refused.state, refused.reason) == ("out", "rejected", "from-not-sender")


async def test_port_25_never_relays_without_auth(service):
    running, store = service

    def talk():
        with _ehr(running.smtp_port) as client:  # STARTTLS too: port 25 offers it
            features = dict(client.esmtp_features)
            auth = client.docmd("AUTH", "PLAIN AGVoci1ub3J0aABw")
            mail = client.docmd("MAIL", f"FROM:<{SENDER}>")
            rcpt = client.docmd("RCPT", f"TO:<{TO}>")
            return features, auth, mail, rcpt

    features, auth, mail, rcpt = await asyncio.to_thread(talk)
    assert "auth" not in features and auth[0] == 502
    assert mail[0] == 250
    assert rcpt[0] == 550 and rcpt[1].startswith(b"5.7.1")
    assert await _rows(store, select(messaging.outbound)) == []


# -- the pipeline's failure rules, behind the edge --

class _BrokenOutbox:
    """Our Outbox Protocol failing mid-transaction, as a bug would."""

    def enqueue_in(self, conn, kind, sender, recipient, payload, *, at, lifetime, relates_to=None, message_id=None,
                   trail=None, deferred_id=False):
        raise RuntimeError("outbound table at /var/lib/directgw/secret.db")


class _Directory:
    async def domain_of(self, name: str) -> str | None:
        return "hospital.test" if name == ACCOUNT else None


def _received(data: bytes, rcpt_to: tuple[str, ...] = (TO,)) -> Received:
    session = SessionInfo(peer="192.0.2.7", helo="ehr.hospital.test", tls=True, authenticated_as=ACCOUNT)
    return Received(session=session, mail_from=SENDER, rcpt_to=rcpt_to, data=data)


async def test_one_recipient_in_two_spellings_is_sent_once(store_url):
    """Addresses are compared without case, as the delivery monitor matches them: one job and
    one tracked recipient (the second tracking row was a 451 at every attempt)."""
    store = await open_store(store_url)
    try:
        pipeline = SubmissionPipeline(store, _Directory(), OutboundQueue(store), lambda: datetime.now(UTC),
                                      SubmitSettings(lifetime=timedelta(days=4)))
        reply = await pipeline.message(_received(_message(), rcpt_to=(TO, TO.upper(), HIDDEN)))
        assert reply.code == 250, reply
        jobs = await _rows(store, select(messaging.outbound.c.recipient).order_by(messaging.outbound.c.id))
        assert [j.recipient for j in jobs] == [TO, HIDDEN]
        assert sorted(r.recipient for r in await _rows(store, select(tracking.c.recipient))) == [TO, HIDDEN]
    finally:
        await store.close()


async def test_a_bug_mid_transaction_is_a_451_and_leaves_nothing(store_url):
    store = await open_store(store_url)
    try:
        pipeline = SubmissionPipeline(store, _Directory(), _BrokenOutbox(), lambda: datetime.now(UTC),
                                      SubmitSettings(lifetime=timedelta(days=4)))
        reply = await pipeline.message(_received(_message()))
        assert (reply.code, reply.enhanced) == (451, "4.3.0") and "secret" not in reply.text
        assert await _rows(store, select(messaging.messages)) == []
    finally:
        await store.close()


async def test_storage_down_is_a_451(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"
    store = await open_store(url)
    await store.close()
    (tmp_path / "gw.db").unlink()
    (tmp_path / "gw.db").mkdir()  # every statement now fails
    pipeline = SubmissionPipeline(store, _Directory(), _BrokenOutbox(), lambda: datetime.now(UTC),
                                  SubmitSettings(lifetime=timedelta(days=4)))
    reply = await pipeline.message(_received(_message()))
    assert (reply.code, reply.enhanced) == (451, "4.3.0")
    await store.close()


def test_submission_needs_the_tls_pair(tmp_path):
    from gateway.service.settings import ServeSettingsError

    with pytest.raises(ServeSettingsError, match="tls_certificate"):
        serve_settings({"submission": {}}, tmp_path)
    settings = serve_settings({"submission": {"listen": "127.0.0.1:2587", "auth_lockout": 60},
                               "smtp": {"tls_certificate": "c", "tls_key": "k"}}, tmp_path)
    assert settings.submission == Listen("127.0.0.1", 2587)
    assert settings.lockout.lock_for == timedelta(seconds=60)
    assert replace(settings, submission=None).submission is None
    assert serve_settings({}, tmp_path).submission is None
    with pytest.raises(ServeSettingsError, match="unknown"):
        serve_settings({"submission": {"lsten": "x"}, "smtp": {"tls_certificate": "c", "tls_key": "k"}}, tmp_path)


def test_serve_submission_flag_needs_the_tls_pair(tmp_path):
    from gateway.service.settings import ServeSettingsError, with_submission

    with pytest.raises(ServeSettingsError, match="--submission"):
        with_submission(serve_settings({}, tmp_path), "127.0.0.1:2587")
    on = with_submission(serve_settings({"smtp": {"tls_certificate": "c", "tls_key": "k"}}, tmp_path), "[::1]:2587")
    assert on.submission == Listen("::1", 2587)


class _CountingDirectory:
    """An account directory whose account can be removed, counting the lookups."""

    def __init__(self) -> None:
        self.present = True
        self.asked = 0

    async def domain_of(self, name: str) -> str | None:
        self.asked += 1
        return "hospital.test" if self.present and name == ACCOUNT else None


async def test_the_account_domain_is_reused_for_seconds_and_a_removed_account_is_refused_after(tmp_path):
    from gateway.submit.pipeline import ACCOUNT_TTL

    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}")
    now = [datetime(2026, 12, 2, 9, 0, tzinfo=UTC)]
    directory = _CountingDirectory()
    pipeline = SubmissionPipeline(store, directory, _BrokenOutbox(), lambda: now[0],
                                  SubmitSettings(lifetime=timedelta(days=4)))
    session = _received(_message()).session
    try:
        for _ in range(3):
            assert await pipeline.sender(session, SENDER) is None  # MAIL accepted
        assert directory.asked == 1  # one lookup for the three MAILs
        directory.present = False  # `directgw accounts remove`, from another process
        now[0] += ACCOUNT_TTL - timedelta(seconds=1)
        assert await pipeline.sender(session, SENDER) is None  # still within the TTL
        now[0] += timedelta(seconds=1)
        reply = await pipeline.sender(session, SENDER)
        assert reply is not None and reply.code == 550 and directory.asked == 2
        directory.present = True  # "no such account" is not kept: an account added again sends at once
        assert await pipeline.sender(session, SENDER) is None and directory.asked == 3
    finally:
        await store.close()
