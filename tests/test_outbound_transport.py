"""The SMTP transport against aiosmtpd servers on loopback: destinations tried
in order (RFC 5321 5.1), the reply classes, bounded timeouts, and server
certificates verified when a CA file is configured; and against our own edge,
which offers CHUNKING (RFC 3030), so each message goes with its commands."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiosmtplib
import pytest

from gateway.outbound import (
    Destination,
    OutboundSettings,
    Permanent,
    Reason,
    Sent,
    SmtpTransport,
    Temporary,
    TlsMode,
)
from gateway.outbound.settings import StaticRoute
from gateway.outbound.transport import transmission_form
from gateway.smtp import SmtpLimits, SmtpReply, start_smtp

from .outbound_sink import server_tls, start_sink
from .servers.common import free_port

SETTINGS = OutboundSettings(helo="gw.a.test", connect_timeout=0.5, command_timeout=1.0, data_timeout=1.0,
                            lease=OutboundSettings().lease)
DATA = b"From: alice@a.test\r\nTo: bob@b.test\r\n\r\nsealed, in real life\r\n"


def _to(port: int, host: str = "127.0.0.1", tls: TlsMode = TlsMode.OPPORTUNISTIC) -> Destination:
    return Destination(host, host, port, tls)


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelined"])
async def sink(request):
    """Every test against both kinds of server: one that offers PIPELINING and one that does not."""
    s = await start_sink(pipelining=request.param)
    yield s
    await s.close()


async def test_a_destination_that_cannot_be_reached_passes_to_the_next(sink):
    dead = free_port()
    outcome = await SmtpTransport(SETTINGS).deliver([_to(dead), _to(sink.port)], "alice@a.test", "bob@b.test", DATA)
    assert isinstance(outcome, Sent) and outcome.destination.port == sink.port and outcome.code == 250
    assert sink.received[0].data == DATA


async def test_a_5xx_is_final_and_the_next_destination_is_not_tried(sink):
    other = await start_sink()
    try:
        sink.data_replies.append("554 5.7.1 not from you")
        outcome = await SmtpTransport(SETTINGS).deliver([_to(sink.port), _to(other.port)], "a@a.test", "b@b.test",
                                                         DATA)
        assert isinstance(outcome, Permanent) and (outcome.reason, outcome.code) == (Reason.SMTP_PERMANENT, 554)
        assert "554 5.7.1 not from you" in outcome.text and other.received == []
    finally:
        await other.close()


async def test_when_every_destination_fails_the_last_reason_is_kept():
    outcome = await SmtpTransport(SETTINGS).deliver([_to(free_port()), _to(free_port())], "a@a.test", "b@b.test",
                                                     DATA)
    assert isinstance(outcome, Temporary) and outcome.reason is Reason.CONNECTION
    assert outcome.text.startswith("2 destinations tried")


@pytest.mark.parametrize(
    ("reply", "kind", "reason", "code"),
    [("250 2.0.0 ok", Sent, None, 250), ("452 4.3.1 disk full", Temporary, Reason.SMTP_TEMPORARY, 452),
     ("552 5.3.4 too big", Permanent, Reason.SMTP_PERMANENT, 552)],
    ids=["2xx-sent", "4xx-temporary", "5xx-permanent"],
)
async def test_the_reply_to_the_final_dot_decides(sink, reply, kind, reason, code):
    sink.data_replies.append(reply)
    outcome = await SmtpTransport(SETTINGS).deliver([_to(sink.port)], "a@a.test", "b@b.test", DATA)
    assert isinstance(outcome, kind) and outcome.code == code
    assert getattr(outcome, "reason", None) == reason


# What goes after DATA: each vector sent through the transport and through aiosmtplib's own
# SMTP.data must arrive the same (the transport sends CRLF-only bytes itself, undoing nothing).
WIRE_VECTORS = {
    "crlf-throughout": DATA,
    "leading-dots": b"Subject: dots\r\n\r\n.\r\n..two\r\n.three\r\nend\r\n",
    "dot-first-line": b".starts with a dot\r\n\r\nbody\r\n",
    "no-final-crlf": b"Subject: x\r\n\r\nlast line without its end",
    "bare-lf": b"Subject: lf\r\n\r\nline\n.dotted\nend\n",
    "bare-cr": b"Subject: cr\r\n\r\nline\rmore\r\n",
    "empty": b"",
}


@pytest.mark.parametrize("data", WIRE_VECTORS.values(), ids=WIRE_VECTORS.keys())
async def test_the_message_arrives_as_aiosmtplib_itself_would_send_it(sink, data):
    import aiosmtplib

    outcome = await SmtpTransport(SETTINGS).deliver([_to(sink.port)], "a@a.test", "b@b.test", data)
    assert isinstance(outcome, Sent)
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, start_tls=False) as client:
        await client.sendmail("a@a.test", ["b@b.test"], data)
    assert [r.data for r in sink.received[:1]] == [r.data for r in sink.received[1:]]


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"a\r\n", b"a\r\n.\r\n"),
        (b"a\r\n.b\r\n", b"a\r\n..b\r\n.\r\n"),
        (b".a", b"..a\r\n.\r\n"),
        (b"", b"\r\n.\r\n"),
        (b"a\nb", None),  # bare LF: left to aiosmtplib, which rewrites line ends
        (b"a\rb\r\n", None),  # bare CR
    ],
)
def test_the_transmission_form_of_a_message(data, wire):
    assert transmission_form(data) == wire


async def test_a_server_that_never_greets_times_out_within_the_connect_timeout():
    done = asyncio.Event()

    async def silent(reader, writer):
        await done.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = asyncio.get_running_loop().time()
        outcome = await SmtpTransport(SETTINGS).deliver([_to(port)], "a@a.test", "b@b.test", DATA)
        assert asyncio.get_running_loop().time() - started < SETTINGS.connect_timeout + 5  # not the 30 s default
        assert isinstance(outcome, Temporary) and outcome.reason is Reason.TIMEOUT
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def test_a_slow_final_dot_times_out_within_the_data_timeout(sink):
    sink.data_delay = 5.0
    outcome = await SmtpTransport(SETTINGS).deliver([_to(sink.port)], "a@a.test", "b@b.test", DATA)
    assert isinstance(outcome, Temporary) and outcome.reason is Reason.TIMEOUT


@pytest.mark.parametrize(("trusted", "sent"), [(True, True), (False, False)],
                         ids=["certificate-from-the-configured-ca", "certificate-from-another-ca"])
async def test_with_a_ca_file_the_servers_certificate_is_verified(tmp_path, trusted, sent):
    tls = server_tls(tmp_path, name="localhost")
    sink = await start_sink(tls=tls)
    try:
        ca = tmp_path / "sink-ca.pem"
        if not trusted:
            other = tmp_path / "other"
            other.mkdir()
            server_tls(other)  # only for its CA, which did not issue the sink's certificate
            ca = other / "sink-ca.pem"
        settings = replace(SETTINGS, tls_ca_file=ca, routes={"b.test": StaticRoute("localhost", sink.port)})
        outcome = await SmtpTransport(settings).deliver(
            [Destination("localhost", "127.0.0.1", sink.port, TlsMode.REQUIRED)], "a@a.test", "b@b.test", DATA
        )
        if sent:
            assert isinstance(outcome, Sent) and sink.received[0].tls
        else:
            assert isinstance(outcome, Temporary) and outcome.reason is Reason.TLS_UNAVAILABLE
            assert sink.received == []
    finally:
        await sink.close()


KEEPING = replace(SETTINGS, session_idle=5.0)


async def test_a_kept_session_carries_the_next_message_to_the_same_destination(sink):
    transport = SmtpTransport(KEEPING)
    try:
        for n in range(3):
            outcome = await transport.deliver([_to(sink.port)], "a@a.test", "b@b.test", DATA + b"%d\r\n" % n)
            assert isinstance(outcome, Sent)
        assert [r.data for r in sink.received] == [DATA + b"%d\r\n" % n for n in range(3)]
        assert len(sink._sessions) == 1  # one connection, one greeting, one EHLO for the three
    finally:
        await transport.close()


async def test_without_session_idle_each_message_has_its_own_session(sink):
    transport = SmtpTransport(SETTINGS)
    for _ in range(2):
        assert isinstance(await transport.deliver([_to(sink.port)], "a@a.test", "b@b.test", DATA), Sent)
    assert len(sink._sessions) == 2


@pytest.mark.parametrize("how", ["closed", "421"])
async def test_a_kept_session_the_peer_ended_is_replaced_within_the_same_attempt(sink, how):
    transport = SmtpTransport(KEEPING)
    try:
        assert isinstance(await transport.deliver([_to(sink.port)], "a@a.test", "b@b.test", DATA), Sent)
        if how == "closed":
            sink._sessions[0].transport.close()  # the peer dropped it while it was idle
            await asyncio.sleep(0.1)
        else:
            sink.mail_replies.append("421 4.4.2 idle too long, closing")
        outcome = await transport.deliver([_to(sink.port)], "a@a.test", "b@b.test", DATA)
        assert isinstance(outcome, Sent), outcome  # not a failed attempt: nothing had been sent over it
        assert len(sink.received) == 2 and len(sink._sessions) == 2
    finally:
        await transport.close()


async def test_a_kept_session_that_refuses_a_recipient_is_not_kept(sink):
    transport = SmtpTransport(KEEPING)
    try:
        assert isinstance(await transport.deliver([_to(sink.port)], "a@a.test", "b@b.test", DATA), Sent)
        sink.rcpt_replies.append("550 5.1.1 no such user")
        outcome = await transport.deliver([_to(sink.port)], "a@a.test", "nobody@b.test", DATA)
        assert isinstance(outcome, Permanent) and outcome.code == 550
        assert isinstance(await transport.deliver([_to(sink.port)], "a@a.test", "b@b.test", DATA), Sent)
        assert len(sink._sessions) == 2  # a fresh session after the refusal
    finally:
        await transport.close()


async def test_closing_the_transport_says_goodbye_on_every_kept_session(sink):
    transport = SmtpTransport(KEEPING)
    assert isinstance(await transport.deliver([_to(sink.port)], "a@a.test", "b@b.test", DATA), Sent)
    await transport.close()
    await asyncio.sleep(0.1)
    assert sink.quits == 1


async def test_to_a_server_that_offers_pipelining_mail_rcpt_and_data_go_in_one_write(sink):
    """RFC 2920: two round trips a message instead of four, on fresh sessions and kept ones."""
    transport = SmtpTransport(KEEPING)
    try:
        for _ in range(2):
            assert isinstance(await transport.deliver([_to(sink.port)], "a@a.test", "b@b.test", DATA), Sent)
        grouped = sum(chunk == b"MAIL FROM:<a@a.test>\r\nRCPT TO:<b@b.test>\r\nDATA\r\n" for chunk in sink.chunks)
        assert grouped == (2 if sink.pipelining else 0)
        assert [r.data for r in sink.received] == [DATA, DATA] and len(sink._sessions) == 1
    finally:
        await transport.close()


@pytest.mark.parametrize(("sender", "command", "grouped"), [
    ("", b"MAIL FROM:<>", True),
    ("a@a.test", b"MAIL FROM:<a@a.test>", True),
    ('"a b"@a.test', b'MAIL FROM:<"a b"@a.test>', False),  # a space: aiosmtplib writes it, one by one
], ids=["null-sender", "plain", "quoted-space"])
async def test_which_senders_go_pipelined_and_how_they_are_written(sink, sender, command, grouped):
    transport = SmtpTransport(SETTINGS)
    assert isinstance(await transport.deliver([_to(sink.port)], sender, "b@b.test", DATA), Sent)
    assert sink.received[0].mail_from == (sender or "<>")  # aiosmtpd keeps the null path as "<>"
    assert any(chunk.startswith(command + b"\r\n") for chunk in sink.chunks)
    assert any(chunk.startswith(command + b"\r\nRCPT") for chunk in sink.chunks) is (grouped and sink.pipelining)


# -- against our own edge: PIPELINING and CHUNKING, so MAIL, RCPT, BDAT and the message in one write --


class _Pipeline:
    """What our edge hands a gateway's pipeline, recorded; ``answers`` says what the next messages get."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.answers: list[SmtpReply] = []

    async def recipient(self, session, mail_from, address):
        return None

    async def message(self, received):
        answer = self.answers.pop(0) if self.answers else SmtpReply(250, "2.0.0", "stored")
        if answer.code == 250:
            self.received.append(received.data)
        return answer


@pytest.fixture
async def edge():
    pipeline = _Pipeline()
    server = await start_smtp(pipeline, SmtpLimits(), host="127.0.0.1", port=0, hostname="edge.b.test")
    yield server, pipeline
    await server.close(grace=0.5)


@pytest.mark.parametrize("data", WIRE_VECTORS.values(), ids=WIRE_VECTORS.keys())
async def test_to_our_edge_the_message_arrives_as_aiosmtplib_itself_would_send_it(edge, data):
    server, pipeline = edge
    transport = SmtpTransport(KEEPING)
    try:
        assert isinstance(await transport.deliver([_to(server.port)], "a@a.test", "b@b.test", data), Sent)
    finally:
        await transport.close()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, start_tls=False) as client:
        await client.sendmail("a@a.test", ["b@b.test"], data)
    assert pipeline.received[0] == pipeline.received[1]


@pytest.mark.parametrize(("answer", "kind"), [
    (SmtpReply(250, "2.0.0", "stored"), Sent),
    (SmtpReply(451, "4.3.0", "try later"), Temporary),
    (SmtpReply(554, "5.7.1", "not from you"), Permanent),
], ids=["stored", "deferred", "refused"])
async def test_to_our_edge_its_answer_to_the_chunk_decides_and_the_session_goes_on(edge, answer, kind):
    server, pipeline = edge
    pipeline.answers.append(answer)
    transport = SmtpTransport(KEEPING)
    try:
        outcome = await transport.deliver([_to(server.port)], "a@a.test", "b@b.test", DATA)
        assert isinstance(outcome, kind) and outcome.code == answer.code, outcome
        assert isinstance(await transport.deliver([_to(server.port)], "a@a.test", "b@b.test", DATA + b"2\r\n"), Sent)
        assert pipeline.received[-1] == DATA + b"2\r\n"
    finally:
        await transport.close()


async def test_to_our_edge_a_kept_session_it_closed_is_replaced_within_the_same_attempt(edge):
    server, pipeline = edge
    transport = SmtpTransport(KEEPING)
    try:
        assert isinstance(await transport.deliver([_to(server.port)], "a@a.test", "b@b.test", DATA), Sent)
        await server.close(grace=0.1)  # every idle session gets 421 and is closed
        restarted = await start_smtp(pipeline, SmtpLimits(), host="127.0.0.1", port=server.port,
                                     hostname="edge.b.test")
        try:
            await asyncio.sleep(0.1)
            outcome = await transport.deliver([_to(server.port)], "a@a.test", "b@b.test", DATA)
            assert isinstance(outcome, Sent), outcome
            assert pipeline.received == [DATA, DATA]
        finally:
            await restarted.close(grace=0.5)
    finally:
        await transport.close()
