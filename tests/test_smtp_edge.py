"""The SMTP edge (gateway/smtp/server.py) as a client sees it: a real server on 127.0.0.1.

Each test starts the edge with a small recording Pipeline (a fake of our own
Protocol, nothing of aiosmtpd's is replaced) and talks to it with raw bytes
(tests/smtp_client.py) or with smtplib, the way a sending HISP would.
"""

from __future__ import annotations

import asyncio
import datetime
import smtplib
import socket
import ssl
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smtp import Received, SessionInfo, SmtpLimits, SmtpReply, SmtpServer, start_smtp
from gateway.smtp.sockets import listening_socket
from gateway.smtp.tls import self_signed, server_context
from tests.smtp_client import RawSmtp, stuff

OURS = "bob@hisp.test"
ALSO_OURS = ("carol@hisp.test", "dave@hisp.test", "erin@hisp.test")
SENDER = "alice@sender.test"
HOSTNAME = "mx.hisp.test"
STORED = SmtpReply(250, "2.0.0", "Stored")
UNKNOWN = SmtpReply(550, "5.1.1", "No such user here")
MESSAGE = b"From: alice@sender.test\r\nTo: bob@hisp.test\r\nSubject: hello\r\n\r\nline one\r\n.dot line\r\n"
FAST = SmtpLimits(
    max_message_size=4096,
    max_recipients=3,
    command_timeout=0.5,
    data_timeout=0.5,
    reply_timeout=5.0,
    max_sessions=5,
    max_sessions_per_client=3,
    close_grace=2.0,
)


@dataclass
class RecordingPipeline:
    """Our Pipeline Protocol, recording what the edge asks; `gate` holds message() until set."""

    known: frozenset[str] = frozenset({OURS, *ALSO_OURS})
    answer: SmtpReply = STORED
    accepted: SmtpReply | None = None  # what recipient() answers for a known address
    fail_message: bool = False
    fail_recipient: bool = False
    gate: asyncio.Event | None = None
    asked: list[str] = field(default_factory=list)
    sessions: list[SessionInfo] = field(default_factory=list)
    messages: list[Received] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    async def recipient(
        self, session: SessionInfo, mail_from: str, address: str
    ) -> SmtpReply | None:
        self.asked.append(address)
        self.sessions.append(session)
        if self.fail_recipient:
            raise KeyError("recipients table at /var/lib/directgw/secret.db")
        return self.accepted if address in self.known else UNKNOWN

    async def message(self, received: Received) -> SmtpReply:
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_message:
            raise RuntimeError("database at /var/lib/directgw/secret.db is locked")
        self.messages.append(received)
        self.finished.set()
        return self.answer


@pytest.fixture
async def edge() -> AsyncIterator[Callable[..., Awaitable[SmtpServer]]]:
    """Starts edges on 127.0.0.1 (closed after the test): `await edge(pipeline, limits=..., tls=...)`."""
    servers: list[SmtpServer] = []

    async def start(
        pipeline: RecordingPipeline, limits: SmtpLimits = FAST, tls: ssl.SSLContext | None = None
    ) -> SmtpServer:
        server = await start_smtp(
            pipeline, limits, host="127.0.0.1", port=0, tls_context=tls, hostname=HOSTNAME
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close(grace=0.5)


async def session(
    edge: Callable[..., Awaitable[SmtpServer]], pipeline: RecordingPipeline, *args: object, **kwargs: object
) -> RawSmtp:
    """A client past EHLO on a new edge (``edge``'s arguments) that hands its messages to ``pipeline``."""
    server = await edge(pipeline, *args, **kwargs)
    return await RawSmtp.session(server.port)


async def transaction(client: RawSmtp, *recipients: str) -> None:
    assert (await client.command(f"MAIL FROM:<{SENDER}>")).code == 250
    for address in recipients or (OURS,):
        assert (await client.command(f"RCPT TO:<{address}>")).code == 250
    assert (await client.command("DATA")).code == 354


# -- the conversation --


async def test_greeting_and_ehlo_offer_size_pipelining_and_no_auth(edge, tmp_path) -> None:
    server = await edge(RecordingPipeline(), tls=_tls(tmp_path))
    client = await RawSmtp.connect(server.port)
    greeting = await client.reply()
    assert greeting.code == 220 and greeting.lines[0].startswith(HOSTNAME)
    assert "Python" not in greeting.text and "1.4" not in greeting.text  # no software version
    ehlo = await client.command("EHLO client.test")
    assert ehlo.code == 250
    assert f"SIZE {FAST.max_message_size}" in ehlo.lines
    assert {"PIPELINING", "8BITMIME", "STARTTLS"} <= set(ehlo.lines)
    assert not any(line.startswith("AUTH") for line in ehlo.lines)
    auth = await client.command("AUTH PLAIN AGFsaWNlAHNlY3JldA==")
    assert (auth.code, auth.enhanced) == (502, "5.5.1")
    await client.close()


async def test_a_message_arrives_with_its_exact_bytes(edge) -> None:
    pipeline = RecordingPipeline()
    server = await edge(pipeline)
    refused = await asyncio.to_thread(_smtplib_send, server.port, [OURS, *ALSO_OURS[:1]], MESSAGE)
    assert refused == {}
    (received,) = pipeline.messages
    # smtplib dot-stuffed ".dot line"; the pipeline gets the message as written, CRLF and all.
    assert received.data == MESSAGE
    assert received.mail_from == SENDER
    assert received.rcpt_to == (OURS, ALSO_OURS[0])
    assert received.session == SessionInfo(peer="127.0.0.1", helo="client.test", tls=False)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b".\r\n", b"", id="empty"),
        pytest.param(b"\r\n.\r\n", b"\r\n", id="one-empty-line"),
        pytest.param(b"..\r\n.\r\n", b".\r\n", id="a-lone-stuffed-dot"),
        pytest.param(b"a.\r\n..b.\r\n.\r\n", b"a.\r\n.b.\r\n", id="lines-ending-in-dots"),
        pytest.param(b"x\r\n...\r\n.\r\n", b"x\r\n..\r\n", id="two-dots"),
    ],
)
async def test_the_final_dot_is_found_and_dots_unstuffed(
    edge, data: bytes, expected: bytes
) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    await transaction(client)
    await client.send(data)
    assert (await client.reply()).code == 250
    assert [m.data for m in pipeline.messages] == [expected]
    await client.close()


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(b"a.\r\n.\r\n\r\n.b\r\n", id="dots-at-line-ends-and-starts"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\r\n", id="one-empty-line"),
    ],
)
async def test_the_final_dot_is_found_wherever_the_writes_split_the_stream(
    edge, message: bytes
) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    wire = stuff(message)
    for cut in range(1, len(wire)):
        await transaction(client)
        await client.send(wire[:cut])
        await asyncio.sleep(0.02)  # the edge reads the first part alone
        await client.send(wire[cut:])
        assert (await client.reply()).code == 250, cut
    assert [m.data for m in pipeline.messages] == [message] * (len(wire) - 1)
    await client.close()


async def test_the_null_reverse_path_reaches_the_pipeline_as_empty(edge) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    assert (await client.command("MAIL FROM:<>")).code == 250
    assert (await client.command(f"RCPT TO:<{OURS}>")).code == 250
    assert (await client.command("DATA")).code == 354
    await client.send(stuff(MESSAGE))
    assert (await client.reply()).code == 250
    assert pipeline.messages[0].mail_from == ""
    await client.close()


@pytest.mark.parametrize(
    ("before", "line", "code"),
    [
        pytest.param((), "FOO bar", 500, id="unknown-command"),
        pytest.param((), "", 500, id="empty-line"),
        pytest.param((), "EHLO", 501, id="ehlo-without-name"),
        pytest.param((), "RCPT TO:<bob@hisp.test>", 503, id="rcpt-before-mail"),
        pytest.param((), "DATA", 503, id="data-before-rcpt"),
        pytest.param((f"MAIL FROM:<{SENDER}>",), "DATA", 503, id="data-without-accepted-rcpt"),
        pytest.param((f"MAIL FROM:<{SENDER}>",), f"MAIL FROM:<{SENDER}>", 503, id="nested-mail"),
        pytest.param((), "MAIL FROM:<a@b> FOO=BAR", 555, id="unknown-mail-parameter"),
        pytest.param((), "MAIL FROM:<alice@@sender..test>", 553, id="malformed-address"),
        pytest.param((), "MAIL FROM:<alice@sender.test> SIZE=ten", 501, id="size-not-a-number"),
        pytest.param((), "MAIL FROM:<" + "a" * 600 + "@x.test>", 500, id="command-over-512"),
        pytest.param((), "MAIL FROM:<a@b> BODY=BINARYMIME", 501, id="unknown-body"),
    ],
)
async def test_bad_commands_are_refused_and_the_session_goes_on(
    edge, before: tuple[str, ...], line: str, code: int
) -> None:
    client = await session(edge, RecordingPipeline())
    for command in before:
        assert (await client.command(command)).code == 250
    assert (await client.command(line)).code == code
    assert (await client.command("NOOP")).code == 250
    await client.close()


async def test_commands_before_ehlo_are_refused(edge) -> None:
    server = await edge(RecordingPipeline())
    client = await RawSmtp.connect(server.port)
    assert (await client.reply()).code == 220
    assert (await client.command(f"MAIL FROM:<{SENDER}>")).code == 503
    await client.close()


async def test_never_an_open_relay(edge) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    assert (await client.command(f"MAIL FROM:<{SENDER}>")).code == 250
    relay = await client.command("RCPT TO:<victim@elsewhere.example>")
    assert (relay.code, relay.enhanced) == (550, "5.1.1")
    assert pipeline.asked == ["victim@elsewhere.example"]  # the pipeline decided, not the edge
    assert (await client.command("DATA")).code == 503
    assert pipeline.messages == []
    await client.close()


@pytest.mark.parametrize(
    ("accepted", "line"),
    [
        pytest.param(None, "2.1.5 Recipient OK", id="none-is-the-edges-250"),
        pytest.param(
            SmtpReply(251, "2.1.5", "Forwarded"), "2.1.5 Forwarded", id="pipelines-own-2xx"
        ),
    ],
)
async def test_a_recipient_the_pipeline_accepts_is_given(
    edge, accepted: SmtpReply | None, line: str
) -> None:
    pipeline = RecordingPipeline(accepted=accepted)
    client = await session(edge, pipeline)
    assert (await client.command(f"MAIL FROM:<{SENDER}>")).code == 250
    reply = await client.command(f"RCPT TO:<{OURS}>")
    assert reply.lines == (line,)
    assert (await client.command("DATA")).code == 354
    await client.send(stuff(MESSAGE))
    assert (await client.reply()).code == 250
    assert pipeline.messages[0].rcpt_to == (OURS,)
    await client.close()


# -- limits --


async def test_size_declared_over_the_limit_is_refused_at_mail(edge) -> None:
    client = await session(edge, RecordingPipeline())
    over = await client.command(f"MAIL FROM:<{SENDER}> SIZE={FAST.max_message_size + 1}")
    assert (over.code, over.enhanced) == (552, "5.3.4")
    within = await client.command(f"MAIL FROM:<{SENDER}> SIZE={FAST.max_message_size}")
    assert within.code == 250
    await client.close()


async def test_a_message_over_the_limit_is_refused_after_the_final_dot(edge) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    await transaction(client)
    await client.send(stuff((b"x" * 70 + b"\r\n") * 100))  # 7200 bytes, over 4096
    over = await client.reply()
    assert (over.code, over.enhanced) == (552, "5.3.4")
    assert pipeline.messages == []
    # The connection stayed in step: the next message goes through.
    await transaction(client)
    await client.send(stuff(MESSAGE))
    assert (await client.reply()).code == 250
    assert len(pipeline.messages) == 1
    await client.close()


async def test_recipients_over_the_limit_get_452_and_the_rest_go_through(edge) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    assert (await client.command(f"MAIL FROM:<{SENDER}>")).code == 250
    for address in (OURS, *ALSO_OURS[:2]):
        assert (await client.command(f"RCPT TO:<{address}>")).code == 250
    fourth = await client.command(f"RCPT TO:<{ALSO_OURS[2]}>")
    assert (fourth.code, fourth.enhanced) == (452, "4.5.3")
    assert ALSO_OURS[2] not in pipeline.asked
    assert (await client.command("DATA")).code == 354
    await client.send(stuff(MESSAGE))
    assert (await client.reply()).code == 250
    assert pipeline.messages[0].rcpt_to == (OURS, *ALSO_OURS[:2])
    await client.close()


async def test_a_recipient_named_twice_is_accepted_twice_and_given_once(edge) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    assert (await client.command(f"MAIL FROM:<{SENDER}>")).code == 250
    for address in (OURS, ALSO_OURS[0], OURS):
        assert (await client.command(f"RCPT TO:<{address}>")).code == 250
    assert (await client.command("DATA")).code == 354
    await client.send(stuff(MESSAGE))
    assert (await client.reply()).code == 250
    assert pipeline.messages[0].rcpt_to == (OURS, ALSO_OURS[0])
    assert pipeline.asked.count(OURS) == 1
    await client.close()


@pytest.mark.parametrize(
    ("line_length", "accepted"),
    [pytest.param(1000, True, id="1000-with-crlf"), pytest.param(1001, False, id="1001-with-crlf")],
)
async def test_text_lines_are_at_most_1000_octets(edge, line_length: int, accepted: bool) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    await transaction(client)
    await client.send(stuff(b"Subject: x\r\n\r\n" + b"y" * (line_length - 2) + b"\r\n"))
    reply = await client.reply()
    assert (reply.code == 250) is accepted
    if not accepted:
        assert (reply.code, reply.enhanced) == (554, "5.6.0")
    await client.close()


@pytest.mark.slow
async def test_a_25_mb_message_arrives_whole_within_twice_its_size_of_memory(edge) -> None:
    pipeline = RecordingPipeline()
    server = await edge(pipeline, SmtpLimits(command_timeout=30, data_timeout=30))
    line = b"QUJD" * 19 + b"\r\n"  # base64-like 78-octet lines, as S/MIME carries
    message = b"Subject: big\r\n\r\n" + line * (25 * 1024 * 1024 // len(line))
    wire = stuff(message)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        # A blocking client in a thread: sendall does not copy the message, so
        # what is traced is the server's.
        reply = await asyncio.to_thread(_raw_send, server.port, wire)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reply.startswith(b"250")
    assert pipeline.messages[0].data == message
    assert peak - before < 2.2 * len(message)


# -- bare CR, bare LF and SMTP smuggling --


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"Subject: x\r\n\r\nbare\nLF\r\n", id="bare-LF"),
        pytest.param(b"Subject: x\r\n\r\nbare\rCR\r\n", id="bare-CR"),
        pytest.param(b"Subject: x\n\nonly LF line ends\n", id="LF-line-ends"),
        pytest.param(b"Subject: x\r\n\r\nends with CR CR LF\r\r\n", id="CR-CR-LF"),
    ],
)
async def test_bare_cr_and_lf_are_refused(edge, body: bytes) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    await transaction(client)
    await client.send(body + b"\r\n.\r\n")
    reply = await client.reply()
    assert (reply.code, reply.enhanced) == (550, "5.6.0")
    assert pipeline.messages == []
    await client.close()


SMUGGLING = [
    pytest.param(b"\n.\n", id="LF.LF"),
    pytest.param(b"\r.\r", id="CR.CR"),
    pytest.param(b"\n.\r\n", id="LF.CRLF"),
    pytest.param(b"\r\n.\n", id="CRLF.LF"),
    pytest.param(b"\r\n.\r", id="CRLF.CR"),
    pytest.param(b"\r.\r\n", id="CR.CRLF"),
    pytest.param(b"\r\n.\r\r\n", id="CRLF.CRCRLF"),
    pytest.param(b"\n.\r", id="LF.CR"),
    pytest.param(b"\r.\n", id="CR.LF"),
]


@pytest.mark.parametrize("terminator", SMUGGLING)
async def test_smuggling_is_refused_whole_and_never_split(edge, terminator: bytes) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    await transaction(client)
    smuggled = (
        b"From: alice@sender.test\r\nSubject: first\r\n\r\nfirst message"
        + terminator
        + b"MAIL FROM:<mallory@sender.test>\r\nRCPT TO:<carol@hisp.test>\r\nDATA\r\n"
        + b"From: ceo@hisp.test\r\nSubject: smuggled\r\n\r\nsecond message\r\n"
    )
    await client.send(smuggled + b"\r\n.\r\n")
    reply = await client.reply()
    assert (reply.code, reply.enhanced) == (550, "5.6.0")
    # Nothing after the false terminator ran as a command: no second sender,
    # no second recipient asked of the pipeline, no message at all.
    assert pipeline.asked == [OURS]
    assert pipeline.messages == []
    # The session is still in step with the client and carries a real message.
    assert (await client.command("NOOP")).code == 250
    await transaction(client)
    await client.send(stuff(MESSAGE))
    assert (await client.reply()).code == 250
    assert [m.data for m in pipeline.messages] == [MESSAGE]
    await client.close()


# -- timeouts --


async def test_an_idle_client_gets_421_after_the_command_timeout(edge) -> None:
    server = await edge(RecordingPipeline())
    client = await RawSmtp.session(server.port)
    timeout = await client.reply()  # nothing sent: the server speaks first
    assert (timeout.code, timeout.enhanced) == (421, "4.4.2")
    assert await client.read_to_end() == b""
    await client.close()


async def test_a_stalled_data_transfer_gets_421_after_the_data_timeout(edge) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    await transaction(client)
    await client.send(b"Subject: half a message\r\n")
    timeout = await client.reply()
    assert (timeout.code, timeout.enhanced) == (421, "4.4.2")
    assert await client.read_to_end() == b""
    assert pipeline.messages == []
    await client.close()


async def test_the_data_timeout_is_per_block_not_per_message(edge) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline, SmtpLimits(command_timeout=1.0, data_timeout=1.0))
    await transaction(client)
    # Six blocks 0.3 s apart: 1.8 s in all, over both 1 s timeouts, none idle that long.
    for _ in range(6):
        await client.send(b"a line\r\n")
        await asyncio.sleep(0.3)
    await client.send(b".\r\n")
    assert (await client.reply()).code == 250
    assert pipeline.messages[0].data == b"a line\r\n" * 6
    await client.close()


# -- pipelining --


async def test_pipelined_commands_are_answered_in_order(edge) -> None:
    pipeline = RecordingPipeline()
    server = await edge(pipeline)
    client = await RawSmtp.connect(server.port)
    assert (await client.reply()).code == 220
    await client.send(
        b"EHLO client.test\r\n"
        + f"MAIL FROM:<{SENDER}>\r\n".encode()
        + f"RCPT TO:<{OURS}>\r\n".encode()
        + b"RCPT TO:<nobody@hisp.test>\r\n"
        + f"RCPT TO:<{ALSO_OURS[0]}>\r\n".encode()
        + b"DATA\r\n"
    )
    codes = [(await client.reply()).code for _ in range(6)]
    assert codes == [250, 250, 250, 550, 250, 354]
    # RFC 2920 3.1: the message, its final dot and the next commands in one write.
    await client.send(stuff(MESSAGE) + f"MAIL FROM:<{SENDER}>\r\nRSET\r\nQUIT\r\n".encode())
    codes = [(await client.reply()).code for _ in range(4)]
    assert codes == [250, 250, 250, 221]
    assert [m.rcpt_to for m in pipeline.messages] == [(OURS, ALSO_OURS[0])]
    assert pipeline.messages[0].data == MESSAGE
    await client.close()


async def test_a_pipelined_group_is_answered_in_one_write(edge) -> None:
    """RFC 2920 3.2: replies to a group go out together once the group is answered, not one
    write (and one wake-up of the client) each; a recipient the pipeline is asked about in
    between does not split them."""
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    await client.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{OURS}>\r\nRCPT TO:<nobody@hisp.test>\r\nDATA\r\n".encode())
    chunk = await asyncio.wait_for(client.reader.read(4096), 5)
    assert [line[:3] for line in chunk.split(b"\r\n") if line] == [b"250", b"250", b"550", b"354"]
    await client.send(stuff(MESSAGE))
    assert (await client.reply()).code == 250
    await client.close()


# -- STARTTLS --


async def test_starttls_then_a_message(edge, tmp_path) -> None:
    pipeline = RecordingPipeline()
    server = await edge(pipeline, tls=_tls(tmp_path))
    refused, ehlo_after = await asyncio.to_thread(_smtplib_send_tls, server.port)
    assert refused == {}
    assert "starttls" not in ehlo_after and "auth" not in ehlo_after
    (received,) = pipeline.messages
    assert received.session.tls is True
    assert received.data == MESSAGE


async def test_starttls_is_offered_not_required(edge, tmp_path) -> None:
    pipeline = RecordingPipeline()
    server = await edge(pipeline, tls=_tls(tmp_path))
    refused = await asyncio.to_thread(_smtplib_send, server.port, [OURS], MESSAGE)
    assert refused == {}
    assert pipeline.messages[0].session.tls is False


async def test_commands_sent_with_starttls_in_clear_are_dropped(edge, tmp_path) -> None:
    # RFC 3207 5 (the STARTTLS command injection of CVE-2011-0411): what
    # follows STARTTLS in the same cleartext write must not run after the handshake.
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline, tls=_tls(tmp_path))
    await client.send(f"STARTTLS\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<{OURS}>\r\n".encode())
    assert (await client.reply()).code == 220
    await client.writer.start_tls(_client_tls())
    ehlo = await client.command("EHLO client.test")
    assert ehlo.code == 250 and ehlo.lines[0] == HOSTNAME  # the first reply is EHLO's, not MAIL's
    assert pipeline.asked == []
    # After STARTTLS the session starts over (RFC 3207 4.2): a transaction needs MAIL again.
    assert (await client.command(f"RCPT TO:<{OURS}>")).code == 503
    await client.close()


async def test_a_failed_tls_handshake_closes_that_session_only(edge, tmp_path) -> None:
    server = await edge(RecordingPipeline(), tls=_tls(tmp_path))
    client = await RawSmtp.session(server.port)
    assert (await client.command("STARTTLS")).code == 220
    await client.send(b"this is not a TLS ClientHello\r\n" * 4)
    await client.read_to_end()  # closed, with no cleartext reply in between
    await client.close()
    await _until(lambda: server.sessions == 0)  # its slot is given back
    other = await RawSmtp.session(server.port)
    assert (await other.command("NOOP")).code == 250
    await other.close()


async def test_helo_clients_are_served(edge) -> None:
    pipeline = RecordingPipeline()
    server = await edge(pipeline)
    client = await RawSmtp.connect(server.port)
    assert (await client.reply()).code == 220
    assert (await client.command("HELO old.client.test")).code == 250
    await transaction(client)
    await client.send(stuff(MESSAGE))
    assert (await client.reply()).code == 250
    assert pipeline.messages[0].session.helo == "old.client.test"
    await client.close()


# -- the pipeline's answer --


async def test_a_client_that_half_closes_after_the_final_dot_still_has_its_message_stored_once(
    edge,
) -> None:
    pipeline = RecordingPipeline(gate=asyncio.Event())
    client = await session(edge, pipeline)
    await transaction(client)
    await client.send(stuff(MESSAGE))
    await asyncio.wait_for(pipeline.started.wait(), 5)
    client.writer.write_eof()  # half-close while the pipeline runs (aiosmtpd cancels the session)
    await asyncio.sleep(0.1)
    pipeline.gate.set()
    reply = await client.reply()  # a half-closed client can still read its answer
    assert reply.code == 250
    assert [m.data for m in pipeline.messages] == [MESSAGE]
    await client.close()


async def test_a_client_that_vanishes_after_the_final_dot_still_has_its_message_stored_once(
    edge,
) -> None:
    pipeline = RecordingPipeline(gate=asyncio.Event())
    client = await session(edge, pipeline)
    await transaction(client)
    await client.send(stuff(MESSAGE))
    await asyncio.wait_for(pipeline.started.wait(), 5)
    await client.close()
    await asyncio.sleep(0.1)
    pipeline.gate.set()
    await asyncio.wait_for(pipeline.finished.wait(), 5)
    assert [m.data for m in pipeline.messages] == [MESSAGE]


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(SmtpReply(554, "5.7.5", "Signature does not verify"), id="permanent"),
        pytest.param(SmtpReply(451, "4.7.5", "Revocation status unknown"), id="temporary"),
        pytest.param(SmtpReply(250, "2.6.0", "Queued as 42"), id="stored"),
    ],
)
async def test_the_pipelines_answer_is_the_reply_to_the_final_dot(edge, answer: SmtpReply) -> None:
    client = await session(edge, RecordingPipeline(answer=answer))
    await transaction(client)
    await client.send(stuff(MESSAGE))
    reply = await client.reply()
    assert (reply.code, reply.lines) == (answer.code, (f"{answer.enhanced} {answer.text}",))
    await client.close()


async def test_a_pipeline_slower_than_the_reply_timeout_loses_the_client_not_the_message(
    edge,
) -> None:
    pipeline = RecordingPipeline(gate=asyncio.Event())
    client = await session(edge, pipeline, SmtpLimits(command_timeout=5, reply_timeout=0.3))
    await transaction(client)
    await client.send(stuff(MESSAGE))
    timeout = await client.reply()
    assert (timeout.code, timeout.enhanced) == (421, "4.4.2")
    assert await client.read_to_end() == b""
    pipeline.gate.set()
    await asyncio.wait_for(pipeline.finished.wait(), 5)
    assert [m.data for m in pipeline.messages] == [MESSAGE]  # stored once; the client will resend
    await client.close()


@pytest.mark.parametrize("where", ["message", "recipient"])
async def test_a_failing_pipeline_gets_451_and_no_internals(edge, where: str) -> None:
    pipeline = RecordingPipeline(
        fail_message=where == "message", fail_recipient=where == "recipient"
    )
    client = await session(edge, pipeline)
    with structlog.testing.capture_logs() as logs:
        assert (await client.command(f"MAIL FROM:<{SENDER}>")).code == 250
        reply = await client.command(f"RCPT TO:<{OURS}>")
        if where == "message":
            assert reply.code == 250
            assert (await client.command("DATA")).code == 354
            await client.send(stuff(MESSAGE))
            reply = await client.reply()
    assert (reply.code, reply.enhanced) == (451, "4.3.0")
    for internal in ("secret", "Error", "/var", "locked", "recipients table"):
        assert internal not in reply.text
    # The details went to the log instead, with the exception.
    (logged,) = [entry for entry in logs if entry["log_level"] == "error"]
    assert (
        logged["event"]
        == {"message": "smtp.pipeline_failed", "recipient": "smtp.session_error"}[where]
    )
    assert logged["exc_info"]
    assert (await client.command("NOOP")).code == 250
    await client.close()


# -- sessions --


async def test_sessions_per_client_are_limited(edge) -> None:
    limits = SmtpLimits(max_sessions=10, max_sessions_per_client=2, command_timeout=5)
    server = await edge(RecordingPipeline(), limits)
    first, second = [await RawSmtp.session(server.port) for _ in range(2)]
    third = await RawSmtp.connect(server.port)
    refused = await third.reply()
    assert (refused.code, refused.enhanced) == (421, "4.7.0")
    assert "your address" in refused.text
    assert await third.read_to_end() == b""
    # Another address is still served.
    other = await RawSmtp.connect(server.port, local="127.0.0.2")
    assert (await other.reply()).code == 220
    # A slot freed is a slot again.
    await first.command("QUIT")
    await first.read_to_end()
    await _until(lambda: server.sessions == 2)
    fourth = await RawSmtp.connect(server.port)
    assert (await fourth.reply()).code == 220
    for client in (first, second, third, other, fourth):
        await client.close()


async def test_sessions_in_all_are_limited(edge) -> None:
    limits = SmtpLimits(max_sessions=2, max_sessions_per_client=5, command_timeout=5)
    server = await edge(RecordingPipeline(), limits)
    held = [await RawSmtp.session(server.port) for _ in range(2)]
    over = await RawSmtp.connect(server.port, local="127.0.0.3")
    refused = await over.reply()
    assert (refused.code, refused.enhanced) == (421, "4.7.0")
    assert await over.read_to_end() == b""
    for client in (*held, over):
        await client.close()


async def test_graceful_close_lets_a_message_in_flight_finish(edge) -> None:
    pipeline = RecordingPipeline(gate=asyncio.Event())
    limits = SmtpLimits(command_timeout=5, close_grace=5)
    server = await edge(pipeline, limits)
    idle = await RawSmtp.session(server.port)
    busy = await RawSmtp.session(server.port)
    await transaction(busy)
    await busy.send(stuff(MESSAGE))
    await asyncio.wait_for(pipeline.started.wait(), 5)
    closing = asyncio.create_task(server.close())
    # The idle session is told at once; new connections are refused.
    bye = await idle.reply()
    assert (bye.code, bye.enhanced) == (421, "4.3.2")
    with pytest.raises(OSError):
        await RawSmtp.connect(server.port)
    assert not closing.done()
    # The busy one gets its answer, then the 421.
    pipeline.gate.set()
    assert (await busy.reply()).code == 250
    assert (await busy.reply()).code == 421
    await asyncio.wait_for(closing, 5)
    assert len(pipeline.messages) == 1
    for client in (idle, busy):
        await client.close()


async def test_graceful_close_gives_up_after_the_grace(edge) -> None:
    pipeline = RecordingPipeline(gate=asyncio.Event())  # never opened
    server = await edge(pipeline, SmtpLimits(command_timeout=5))
    client = await RawSmtp.session(server.port)
    await transaction(client)
    await client.send(stuff(MESSAGE))
    await asyncio.wait_for(pipeline.started.wait(), 5)
    await asyncio.wait_for(server.close(grace=0.3), 5)
    bye = await client.reply()
    assert (bye.code, bye.enhanced) == (421, "4.3.2")
    assert pipeline.messages == []  # cancelled, so the client (without a 250) sends it again
    await client.close()


async def test_two_servers_on_one_port_with_so_reuseport_both_accept() -> None:
    first = listening_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = listening_socket("127.0.0.1", port)
    servers = [
        await start_smtp(RecordingPipeline(), FAST, sock=sock, hostname=name)
        for sock, name in ((first, "one.test"), (second, "two.test"))
    ]
    try:
        seen = set()
        for _ in range(64):
            client = await RawSmtp.connect(port)
            seen.add((await client.reply()).lines[0].split()[0])
            await client.command("QUIT")
            await client.close()
            if len(seen) == 2:
                break
        assert seen == {"one.test", "two.test"}
    finally:
        for server in servers:
            await server.close(grace=0.5)


def test_start_smtp_wants_an_address_or_a_socket() -> None:
    with pytest.raises(ValueError, match="host and port, or sock"):
        asyncio.run(start_smtp(RecordingPipeline(), host="127.0.0.1"))
    sock = socket.socket()
    try:
        with pytest.raises(ValueError, match="host and port, or sock"):
            asyncio.run(start_smtp(RecordingPipeline(), host="127.0.0.1", port=0, sock=sock))
    finally:
        sock.close()


# -- helpers --


def _tls(tmp_path) -> ssl.SSLContext:
    cert, key = self_signed(HOSTNAME, datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    (tmp_path / "smtp.crt").write_bytes(cert)
    (tmp_path / "smtp.key").write_bytes(key)
    return server_context(tmp_path / "smtp.crt", tmp_path / "smtp.key")


def _smtplib_send(port: int, recipients: list[str], message: bytes) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as smtp:
        return smtp.sendmail(SENDER, recipients, message)


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # port 25 TLS is opportunistic (RFC 7435)
    return context


def _smtplib_send_tls(port: int) -> tuple[dict[str, tuple[int, bytes]], dict[str, str]]:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as smtp:
        smtp.starttls(context=_client_tls())
        smtp.ehlo()
        return smtp.sendmail(SENDER, [OURS], MESSAGE), dict(smtp.esmtp_features)


def _raw_send(port: int, wire: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        replies = sock.makefile("rb")
        replies.readline()
        sock.sendall(b"EHLO client.test\r\n")
        while replies.readline()[3:4] == b"-":
            pass
        sock.sendall(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{OURS}>\r\nDATA\r\n".encode())
        for _ in range(3):
            replies.readline()
        sock.sendall(wire)
        return replies.readline()


async def _until(condition: Callable[[], bool], wait: float = 5.0) -> None:
    async with asyncio.timeout(wait):
        while not condition():
            await asyncio.sleep(0.01)


# -- hostile conversations --

_WORDS = st.sampled_from(
    [
        b"EHLO client.test",
        b"HELO x",
        f"MAIL FROM:<{SENDER}>".encode(),
        b"MAIL FROM:<>",
        b"MAIL FROM:<a@b> SIZE=99999999999",
        f"RCPT TO:<{OURS}>".encode(),
        b"RCPT TO:<victim@elsewhere.example>",
        b"RCPT TO:<@route:x@y>",
        b"DATA",
        b".",
        b"..",
        b"RSET",
        b"NOOP",
        b"VRFY bob",
        b"EXPN list",
        b"HELP",
        b"AUTH PLAIN AGEAYg==",
        b"STARTTLS",
        b"BDAT 10 LAST",
        b"Subject: x",
    ]
)
_NOISY = b"\r\n.<>:@ a\x00\xff"
_NOISE = st.binary(max_size=12).map(lambda b: bytes(_NOISY[x % len(_NOISY)] for x in b))
_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\n.\r\n", b"\n.\n"])
_CONVERSATION = st.lists(
    st.tuples(st.one_of(_WORDS, _NOISE), _ENDS).map(b"".join), min_size=1, max_size=20
).map(b"".join)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(conversation=_CONVERSATION)
def test_any_conversation_gets_well_formed_replies_and_no_internals(conversation: bytes) -> None:
    async def talk() -> tuple[bytes, RecordingPipeline]:
        pipeline = RecordingPipeline()
        server = await start_smtp(pipeline, FAST, host="127.0.0.1", port=0, hostname=HOSTNAME)
        try:
            client = await RawSmtp.connect(server.port)
            await client.send(conversation + b"\r\n.\r\nQUIT\r\n")
            heard = await client.read_to_end()
            await client.close()
        finally:
            await server.close(grace=0.5)
        return heard, pipeline

    heard, pipeline = asyncio.run(talk())
    lines = heard.split(b"\r\n")
    assert lines[-1] == b""
    for line in lines[:-1]:
        assert line[:3].isdigit() and line[3:4] in (b" ", b"-"), line
        assert not line.startswith(b"5") or b"Error: (" not in line  # aiosmtpd's exception text
    for message in pipeline.messages:
        assert message.data.count(b"\n") == message.data.count(b"\r") == message.data.count(b"\r\n")
