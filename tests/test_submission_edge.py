"""The submission port's SMTP edge (gateway/smtp/server.py ``start_submission``, session.py) as an
EHR's client sees it: a real server on 127.0.0.1, Python's smtplib as the client, and
fakes of our own Protocols (``Authenticator``, ``Submission``) behind it.

STARTTLS before AUTH, AUTH (PLAIN, LOGIN) before MAIL, every RFC 4954 reply,
the sender check at MAIL, and no password in any log line."""

from __future__ import annotations

import asyncio
import base64
import datetime
import smtplib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import structlog

from gateway.smtp import (
    Authenticated,
    AuthRefusal,
    Credentials,
    Received,
    SessionInfo,
    SmtpLimits,
    SmtpReply,
    SmtpServer,
    start_smtp,
    start_submission,
)
from gateway.smtp.tls import self_signed, server_context

HOSTNAME = "submit.hospital.test"
ACCOUNT, PASSWORD = "ehr", "a long password for the EHR"
SENDER = "dr.who@hospital.test"
FOREIGN = "mallory@elsewhere.test"
RCPT = "bob@b.test"
MESSAGE = b"From: dr.who@hospital.test\r\nTo: bob@b.test\r\nSubject: hello\r\n\r\nbody\r\n"
QUEUED = SmtpReply(250, "2.6.0", "queued")
OUTSIDE = SmtpReply(550, "5.7.1", "sender not in the account's domain")
LIMITS = SmtpLimits(command_timeout=5, data_timeout=5, reply_timeout=5, close_grace=1)


@dataclass
class FakeAuthenticator:
    """Our Authenticator Protocol: ACCOUNT/PASSWORD pass; ``answer`` overrides; ``raises`` fails."""

    answer: AuthRefusal | None = None
    raises: bool = False
    asked: list[tuple[str, Credentials]] = field(default_factory=list)

    async def authenticate(self, peer: str, credentials: Credentials) -> Authenticated | AuthRefusal:
        self.asked.append((peer, credentials))
        if self.raises:
            raise RuntimeError("accounts table at /var/lib/directgw/secret.db is locked")
        if self.answer is not None:
            return self.answer
        if credentials == Credentials(ACCOUNT, PASSWORD.encode()):
            return Authenticated(ACCOUNT)
        return AuthRefusal.INVALID


@dataclass
class FakeSubmission:
    """Our Submission Protocol: senders of hospital.test only; records what it is asked."""

    senders: list[tuple[SessionInfo, str]] = field(default_factory=list)
    messages: list[Received] = field(default_factory=list)

    async def sender(self, session: SessionInfo, address: str) -> SmtpReply | None:
        self.senders.append((session, address))
        return None if address.endswith("@hospital.test") else OUTSIDE

    async def recipient(self, session: SessionInfo, mail_from: str, address: str) -> SmtpReply | None:
        return None

    async def message(self, received: Received) -> SmtpReply:
        self.messages.append(received)
        return QUEUED


def _tls(tmp_path) -> ssl.SSLContext:
    cert, key = self_signed(HOSTNAME, datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    (tmp_path / "smtp.crt").write_bytes(cert)
    (tmp_path / "smtp.key").write_bytes(key)
    return server_context(tmp_path / "smtp.crt", tmp_path / "smtp.key")


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate
    return context


@pytest.fixture
async def submit(tmp_path) -> AsyncIterator[Callable[..., object]]:
    servers: list[SmtpServer] = []

    async def start(authenticator: FakeAuthenticator, pipeline: FakeSubmission) -> SmtpServer:
        server = await start_submission(pipeline, authenticator, LIMITS, tls_context=_tls(tmp_path),
                                        host="127.0.0.1", port=0, hostname=HOSTNAME)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close(grace=0.5)


def _client(port: int, *, tls: bool = True) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, local_hostname="ehr.hospital.test", timeout=10)
    client.ehlo()
    if tls:
        client.starttls(context=_client_tls())
        client.ehlo()
    return client


def _plain(login: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{login}\0{password}".encode()).decode()


async def test_auth_is_offered_only_over_tls_and_mail_waits_for_it(submit):
    server = await submit(FakeAuthenticator(), FakeSubmission())

    def talk():
        with _client(server.port, tls=False) as client:
            before = dict(client.esmtp_features)
            auth = client.docmd("AUTH", "PLAIN " + _plain(ACCOUNT, PASSWORD))
            mail = client.docmd("MAIL", f"FROM:<{SENDER}>")
            client.starttls(context=_client_tls())
            client.ehlo()
            after = dict(client.esmtp_features)
            mail_tls = client.docmd("MAIL", f"FROM:<{SENDER}>")
            rcpt = client.docmd("RCPT", f"TO:<{RCPT}>")
            data = client.docmd("DATA")
            return before, auth, mail, after, mail_tls, rcpt, data

    before, auth, mail, after, mail_tls, rcpt, data = await asyncio.to_thread(talk)
    assert "auth" not in before and "starttls" in before
    assert auth == (538, b"5.7.11 Encryption required for requested authentication mechanism")
    assert mail[0] == 530 and mail[1].startswith(b"5.7.0")
    assert after["auth"].split() == ["LOGIN", "PLAIN"]
    assert {mail_tls[0], rcpt[0], data[0]} == {530}


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize("initial_response", [True, False], ids=["initial-response", "challenges"])
async def test_a_submission_with_auth(submit, mechanism, initial_response):
    authenticator, pipeline = FakeAuthenticator(), FakeSubmission()
    server = await submit(authenticator, pipeline)

    def talk():
        with _client(server.port) as client:
            client.user, client.password = ACCOUNT, PASSWORD
            method = client.auth_plain if mechanism == "PLAIN" else client.auth_login
            code, _ = client.auth(mechanism, method, initial_response_ok=initial_response)
            return code, client.sendmail(SENDER, [RCPT], MESSAGE)

    code, refused = await asyncio.to_thread(talk)
    assert code == 235 and refused == {}
    assert authenticator.asked == [("127.0.0.1", Credentials(ACCOUNT, PASSWORD.encode()))]
    ((session, address),) = pipeline.senders
    assert (session.authenticated_as, session.tls, address) == (ACCOUNT, True, SENDER)
    (received,) = pipeline.messages
    assert received.session.authenticated_as == ACCOUNT and received.data == MESSAGE


@pytest.mark.parametrize(
    ("refusal", "reply"),
    [
        (AuthRefusal.INVALID, (535, b"5.7.8 Authentication credentials invalid")),
        (AuthRefusal.LOCKED_OUT, (454, b"4.7.0 Too many failed logins from your address, try again later")),
        (AuthRefusal.UNAVAILABLE, (454, b"4.7.0 Temporary authentication failure")),
    ],
)
async def test_refused_logins_and_their_replies(submit, refusal, reply):
    server = await submit(FakeAuthenticator(answer=refusal), FakeSubmission())

    def talk():
        with _client(server.port) as client:
            return client.docmd("AUTH", "PLAIN " + _plain(ACCOUNT, PASSWORD)), client.docmd("MAIL", f"FROM:<{SENDER}>")

    answer, mail = await asyncio.to_thread(talk)
    assert answer == reply
    assert mail[0] == 530


@pytest.mark.parametrize(
    ("command", "then", "code", "enhanced"),
    [
        ("AUTH PLAIN " + _plain(ACCOUNT, PASSWORD, authzid="admin"), None, 535, b"5.7.8"),
        ("AUTH PLAIN not-base64!", None, 501, b"5.5.2"),
        ("AUTH PLAIN " + base64.b64encode(b"no-nuls-here").decode(), None, 501, b"5.5.2"),
        ("AUTH PLAIN " + _plain(ACCOUNT, ""), None, 501, b"5.5.2"),
        ("AUTH PLAIN", "*", 501, b"5.7.0"),
        ("AUTH LOGIN", "*", 501, b"5.7.0"),
        ("AUTH CRAM-MD5", None, 504, b"5.5.4"),
        ("AUTH", None, 501, b"5.5.2"),
        ("AUTH PLAIN a b", None, 501, b"5.5.2"),
    ],
    ids=["other-identity", "not-base64", "no-separators", "empty-password", "plain-cancelled", "login-cancelled",
         "unknown-mechanism", "no-mechanism", "too-many-words"],
)
async def test_malformed_exchanges_are_refused_unchecked(submit, command, then, code, enhanced):
    authenticator = FakeAuthenticator()
    server = await submit(authenticator, FakeSubmission())

    def talk():
        with _client(server.port) as client:
            verb, _, arg = command.partition(" ")
            answer = client.docmd(verb, arg)
            if then is not None:
                assert answer[0] == 334
                answer = client.docmd(then)
            return answer

    answer = await asyncio.to_thread(talk)
    assert answer[0] == code and answer[1].startswith(enhanced)
    assert authenticator.asked == []


async def test_a_failing_authenticator_is_temporary_and_shows_nothing(submit):
    server = await submit(FakeAuthenticator(raises=True), FakeSubmission())

    def talk():
        with _client(server.port) as client:
            return client.docmd("AUTH", "PLAIN " + _plain(ACCOUNT, PASSWORD))

    code, text = await asyncio.to_thread(talk)
    assert code == 454 and b"secret" not in text


async def test_auth_twice_is_refused(submit):
    server = await submit(FakeAuthenticator(), FakeSubmission())

    def talk():
        with _client(server.port) as client:
            first = client.docmd("AUTH", "PLAIN " + _plain(ACCOUNT, PASSWORD))
            again = client.docmd("AUTH", "PLAIN " + _plain(ACCOUNT, PASSWORD))
            return first, again

    first, again = await asyncio.to_thread(talk)
    assert first[0] == 235 and again[0] == 503


async def test_mail_from_is_judged_by_the_pipeline(submit):
    pipeline = FakeSubmission()
    server = await submit(FakeAuthenticator(), pipeline)

    def talk():
        with _client(server.port) as client:
            client.login(ACCOUNT, PASSWORD)
            outside = client.docmd("MAIL", f"FROM:<{FOREIGN}>")
            inside = client.docmd("MAIL", f"FROM:<{SENDER}>")
            return outside, inside

    outside, inside = await asyncio.to_thread(talk)
    assert outside == (550, b"5.7.1 sender not in the account's domain")
    assert inside[0] == 250
    assert [a for _, a in pipeline.senders] == [FOREIGN, SENDER]


async def test_an_over_long_response_line_ends_the_exchange(submit):
    authenticator = FakeAuthenticator()
    server = await submit(authenticator, FakeSubmission())

    def talk():
        with _client(server.port) as client:
            assert client.docmd("AUTH", "LOGIN")[0] == 334
            client.send(b"QUJD" * 4000 + b"\r\n")  # 16000 octets: over RFC 4954's 12288
            too_long = client.getreply()
            return too_long, client.docmd("NOOP"), client.docmd("MAIL", f"FROM:<{SENDER}>")

    too_long, noop, mail = await asyncio.to_thread(talk)
    assert too_long == (500, b"5.5.6 Authentication Exchange line is too long")
    assert noop[0] == 250 and mail[0] == 530
    assert authenticator.asked == []


async def test_commands_pipelined_after_auth_wait_for_its_answer(submit):
    pipeline = FakeSubmission()
    server = await submit(FakeAuthenticator(), pipeline)

    def talk():
        with _client(server.port) as client:
            client.send(f"AUTH PLAIN {_plain(ACCOUNT, PASSWORD)}\r\nMAIL FROM:<{SENDER}>\r\n".encode())
            return client.getreply(), client.getreply()

    auth, mail = await asyncio.to_thread(talk)
    assert auth[0] == 235 and mail[0] == 250
    assert [session.authenticated_as for session, _ in pipeline.senders] == [ACCOUNT]


async def test_no_password_in_any_log_line(submit):
    server = await submit(FakeAuthenticator(), FakeSubmission())

    def talk():
        with _client(server.port) as client:
            client.docmd("AUTH", "PLAIN " + _plain(ACCOUNT, "wrong password here"))
            client.login(ACCOUNT, PASSWORD)

    with structlog.testing.capture_logs() as logs:
        await asyncio.to_thread(talk)
    text = repr(logs)
    assert PASSWORD not in text and "wrong password here" not in text
    assert PASSWORD not in repr(Credentials(ACCOUNT, PASSWORD.encode()))


async def test_port_25_never_offers_or_takes_auth_even_over_tls(tmp_path):
    server = await start_smtp(FakeSubmission(), LIMITS, host="127.0.0.1", port=0, tls_context=_tls(tmp_path),
                              hostname=HOSTNAME)
    try:
        def talk():
            with _client(server.port) as client:
                return dict(client.esmtp_features), client.docmd("AUTH", "PLAIN " + _plain(ACCOUNT, PASSWORD))

        features, auth = await asyncio.to_thread(talk)
        assert "auth" not in features
        assert auth[0] == 502
    finally:
        await server.close(grace=0.5)


async def test_the_submission_port_needs_tls():
    with pytest.raises(ValueError, match="TLS"):
        await start_smtp(FakeSubmission(), LIMITS, host="127.0.0.1", port=0, authenticator=FakeAuthenticator())
