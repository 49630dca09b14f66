"""CHUNKING (RFC 3030) at the SMTP edge, as a client sees it: a real server on 127.0.0.1.

``BDAT <size> [LAST]`` is followed by exactly <size> octets, which are the
message verbatim: no dot is unstuffed and nothing in them is a terminator.
The octets are read whatever the reply, so a refused chunk leaves the
session in step with a pipelining client, and they are never run as
commands. A refusal ends the transaction. BDAT LAST hands the chunks, joined,
to the pipeline after the checks DATA makes (bare CR, bare LF, long lines),
and its reply is the pipeline's. Replies to the commands before a message
being stored go out with its reply, in one write. A BDAT whose size cannot be
read is 501 and the connection is closed. While a chunk's octets are awaited,
the data timeout runs.

The edge fixture, the recording pipeline and the constants are
tests/test_smtp_edge.py's; the submission port's fakes are
tests/test_submission_edge.py's.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest
import structlog

from gateway.smtp import SmtpLimits, SmtpReply, start_submission
from gateway.smtp.replies import (
    AUTH_REQUIRED,
    BDAT_SYNTAX,
    DATA_AFTER_BDAT,
    NEED_EHLO,
    NEED_HELO,
    NEED_MAIL,
    NEED_RECIPIENT,
    TOO_BIG,
)
from tests import test_smtp_edge
from tests import test_submission_edge as submission
from tests.smtp_client import RawSmtp, Reply, stuff
from tests.test_smtp_edge import (
    ALSO_OURS,
    FAST,
    HOSTNAME,
    MESSAGE,
    OURS,
    SENDER,
    SMUGGLING,
    STORED,
    RecordingPipeline,
    _client_tls,
    _tls,
    session,
    transaction,
)

# test_smtp_edge.py's fixture, used here by name (bound by assignment: a test's parameter shadows it).
edge = test_smtp_edge.edge

# A message whose lines a DATA reader would take for a transparency dot and for the final dot.
DOTTY = b"Subject: dots\r\n\r\n.a line that starts with a dot\r\n.\r\n..two dots\r\nlast line\r\n"
MAIL = f"MAIL FROM:<{SENDER}>"
RCPT = f"RCPT TO:<{OURS}>"
ENVELOPE = f"{MAIL}\r\n{RCPT}\r\n".encode()
# Octets of a chunk that a session out of step would run: a second sender, a second recipient, QUIT.
LOOKALIKE = f"MAIL FROM:<mallory@sender.test>\r\nRCPT TO:<{ALSO_OURS[0]}>\r\nRSET\r\nQUIT\r\n".encode()


def bdat(octets: bytes, *, last: bool = False) -> bytes:
    """One BDAT command and its octets, as a client writes them."""
    return b"BDAT %d%s\r\n%s" % (len(octets), b" LAST" if last else b"", octets)


def chunked(message: bytes, sizes: Sequence[int]) -> list[bytes]:
    """``message`` cut into chunks of ``sizes`` (which add up to its length), the last one LAST."""
    assert sum(sizes) == len(message)
    wires, start = [], 0
    for n, size in enumerate(sizes):
        wires.append(bdat(message[start : start + size], last=n == len(sizes) - 1))
        start += size
    return wires


def cut_at(message: bytes, *cuts: int) -> tuple[int, ...]:
    """The chunk sizes that cut ``message`` at these offsets."""
    edges = (0, *cuts, len(message))
    return tuple(b - a for a, b in itertools.pairwise(edges))


def is_reply(reply: Reply, expected: SmtpReply) -> bool:
    return (reply.code, reply.lines) == (expected.code, (f"{expected.enhanced} {expected.text}",))


def received(size: int) -> SmtpReply:
    return SmtpReply(250, "2.0.0", f"{size} octets received")


async def replies(client: RawSmtp, count: int) -> list[Reply]:
    return [await client.reply() for _ in range(count)]


async def one_write(client: RawSmtp) -> list[bytes]:
    """The reply lines of one read: what the server wrote at once."""
    chunk = await asyncio.wait_for(client.reader.read(65536), 5)
    return [line for line in chunk.split(b"\r\n") if line]


# -- the offer, and the message as sent --


async def test_ehlo_offers_chunking_beside_pipelining(edge) -> None:
    server = await edge(RecordingPipeline())
    client = await RawSmtp.connect(server.port)
    assert (await client.reply()).code == 220
    ehlo = await client.command("EHLO client.test")
    assert {"CHUNKING", "PIPELINING"} <= set(ehlo.lines)
    await client.close()


LAYOUTS = [
    pytest.param(DOTTY, (len(DOTTY),), id="one-LAST-chunk"),
    pytest.param(DOTTY, (10, 5, len(DOTTY) - 15, 0), id="10-5-rest-then-0-LAST"),
    pytest.param(DOTTY, (1,) * len(DOTTY), id="one-octet-each"),
    pytest.param(
        DOTTY,
        cut_at(DOTTY, DOTTY.index(b"\r\n.\r\n") + 1, DOTTY.index(b"\r\n.\r\n") + 2,
               DOTTY.index(b"\r\n.\r\n") + 5),
        id="cut-inside-a-CRLF-and-around-the-dot-line",
    ),
    pytest.param(b"", (0,), id="empty-message-0-LAST"),
    pytest.param(MESSAGE, (len(MESSAGE),), id="the-edge-tests-message"),
]


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "lock-step"])
@pytest.mark.parametrize(("message", "sizes"), LAYOUTS)
async def test_the_message_arrives_byte_for_byte_however_it_is_chunked(
    edge, message: bytes, sizes: tuple[int, ...], pipelined: bool
) -> None:
    """No dot is unstuffed and a line holding only a dot ends nothing: the octets are the message."""
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    wires = chunked(message, sizes)
    if pipelined:
        await client.send(ENVELOPE + b"".join(wires))
        envelope = await replies(client, 2)
        answers = await replies(client, len(wires))
    else:
        envelope = [await client.command(MAIL), await client.command(RCPT)]
        answers = []
        for wire in wires:
            await client.send(wire)
            answers.append(await client.reply())
    assert [reply.code for reply in envelope] == [250, 250]
    for reply, size in zip(answers[:-1], sizes, strict=False):
        assert is_reply(reply, received(size))
    assert is_reply(answers[-1], STORED)  # the pipeline's answer is the reply to BDAT LAST
    (stored,) = pipeline.messages
    assert stored.data == message
    assert (stored.mail_from, stored.rcpt_to) == (SENDER, (OURS,))
    # The session goes on: the next transaction is whole.
    assert (await client.command("NOOP")).code == 250
    await client.close()


async def test_octets_that_look_like_commands_are_message_content(edge) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    message = b"Subject: x\r\n\r\n" + LOOKALIKE + b".\r\n"
    await client.send(ENVELOPE + bdat(message[:20]) + bdat(message[20:], last=True))
    assert [reply.code for reply in await replies(client, 4)] == [250, 250, 250, 250]
    assert [m.data for m in pipeline.messages] == [message]
    assert pipeline.asked == [OURS]  # no second recipient was asked for
    assert (await client.command("NOOP")).code == 250  # and no QUIT ran
    await client.close()


@pytest.mark.parametrize(
    ("message", "sizes"),
    [
        pytest.param(b".\r\n..\r\nx\r\n", (4, 6), id="two-chunks"),
        pytest.param(b"a\r\n.\r\n", (6,), id="one-LAST-chunk-ending-in-a-dot-line"),
    ],
)
async def test_a_chunked_transaction_is_read_wherever_the_writes_split_the_stream(
    edge, message: bytes, sizes: tuple[int, ...]
) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    wire = ENVELOPE + b"".join(chunked(message, sizes))
    count = 2 + len(sizes)  # MAIL, RCPT and each BDAT
    for cut in range(1, len(wire)):
        await client.send(wire[:cut])
        await asyncio.sleep(0.02)  # the edge reads the first part alone
        await client.send(wire[cut:])
        assert [reply.code for reply in await replies(client, count)] == [250] * count, cut
    assert [m.data for m in pipeline.messages] == [message] * (len(wire) - 1)
    await client.close()


# -- replies held for a message --


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([bdat(MESSAGE, last=True)], id="BDAT-LAST"),
        pytest.param(chunked(MESSAGE, (10, len(MESSAGE) - 10)), id="BDAT-then-BDAT-LAST"),
    ],
)
async def test_a_pipelined_transaction_is_answered_in_one_write(edge, chunks: list[bytes]) -> None:
    """MAIL, RCPT, BDAT and the octets in one write: the client waits for every reply, which go
    out together once the message is stored, not one write (and one wake-up) each."""
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    await client.send(ENVELOPE + b"".join(chunks))
    lines = await one_write(client)
    assert [line[:3] for line in lines] == [b"250"] * (2 + len(chunks))
    assert lines[-1] == b"250 2.0.0 Stored"
    assert [m.data for m in pipeline.messages] == [MESSAGE]
    await client.close()


async def test_the_replies_before_a_message_wait_for_the_pipelines_answer(edge) -> None:
    pipeline = RecordingPipeline(gate=asyncio.Event())
    client = await session(edge, pipeline)
    await client.send(ENVELOPE + bdat(MESSAGE, last=True))
    await asyncio.wait_for(pipeline.started.wait(), 5)
    with pytest.raises(TimeoutError):  # MAIL's and RCPT's 250 are held, not written ahead
        await asyncio.wait_for(client.reader.read(65536), 0.2)
    pipeline.gate.set()
    assert await one_write(client) == [b"250 2.1.0 Sender OK", b"250 2.1.5 Recipient OK",
                                       b"250 2.0.0 Stored"]
    await client.close()


async def test_two_pipelined_transactions_are_stored_in_order(edge) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    second = MESSAGE.replace(b"hello", b"again")
    await client.send(ENVELOPE + bdat(MESSAGE, last=True) + ENVELOPE + bdat(second, last=True) + b"QUIT\r\n")
    assert [reply.code for reply in await replies(client, 7)] == [250] * 6 + [221]
    assert [m.data for m in pipeline.messages] == [MESSAGE, second]
    await client.close()


async def test_a_client_that_half_closes_after_bdat_last_still_gets_its_reply(edge) -> None:
    pipeline = RecordingPipeline(gate=asyncio.Event())
    client = await session(edge, pipeline)
    await client.send(ENVELOPE + bdat(MESSAGE, last=True))
    await asyncio.wait_for(pipeline.started.wait(), 5)
    client.writer.write_eof()
    pipeline.gate.set()
    assert [reply.code for reply in await replies(client, 3)] == [250, 250, 250]
    assert await client.read_to_end() == b""
    assert [m.data for m in pipeline.messages] == [MESSAGE]
    await client.close()


async def test_a_pipeline_slower_than_the_reply_timeout_gets_the_held_replies_then_421(edge) -> None:
    pipeline = RecordingPipeline(gate=asyncio.Event())
    client = await session(edge, pipeline, SmtpLimits(command_timeout=5, reply_timeout=0.3))
    await client.send(ENVELOPE + bdat(MESSAGE, last=True))
    answers = await replies(client, 3)
    assert [(reply.code, reply.enhanced) for reply in answers] == [(250, "2.1.0"), (250, "2.1.5"), (421, "4.4.2")]
    assert await client.read_to_end() == b""
    pipeline.gate.set()
    await asyncio.wait_for(pipeline.finished.wait(), 5)
    assert [m.data for m in pipeline.messages] == [MESSAGE]  # stored once; the client will resend
    await client.close()


async def test_a_failing_pipeline_is_451_to_bdat_last_and_the_session_goes_on(edge) -> None:
    client = await session(edge, RecordingPipeline(fail_message=True))
    with structlog.testing.capture_logs():
        await client.send(ENVELOPE + bdat(MESSAGE, last=True) + b"NOOP\r\n")
        answers = await replies(client, 4)
    assert [(reply.code, reply.enhanced) for reply in answers] == [
        (250, "2.1.0"), (250, "2.1.5"), (451, "4.3.0"), (250, "2.0.0")
    ]
    assert "secret" not in answers[2].text
    await client.close()


async def test_chunks_pipelined_behind_a_message_being_stored_wait_and_arrive_whole(edge) -> None:
    """More than the session buffers unread (64 KiB) behind a slow pipeline: reading stops, then resumes."""
    pipeline = RecordingPipeline(gate=asyncio.Event())
    client = await session(edge, pipeline, SmtpLimits(command_timeout=5, data_timeout=5))
    big = (b"x" * 998 + b"\r\n") * 300
    client.writer.write(ENVELOPE + bdat(MESSAGE, last=True) + ENVELOPE + b"".join(chunked(big, (100_000, 200_000))))
    await asyncio.wait_for(pipeline.started.wait(), 5)
    await asyncio.sleep(0.1)
    pipeline.gate.set()
    answers = await replies(client, 7)
    assert [reply.code for reply in answers] == [250] * 7
    assert is_reply(answers[5], received(100_000))
    assert [m.data for m in pipeline.messages] == [MESSAGE, big]
    await client.close()


# -- refusals: answered after the octets, which are dropped, never run --


REFUSALS = [
    # (greeting, commands before with their codes, octets of the refused chunk, its reply)
    pytest.param(None, (), LOOKALIKE, NEED_HELO, id="before-HELO"),
    pytest.param("HELO", (), LOOKALIKE, NEED_EHLO, id="after-HELO"),
    pytest.param("HELO", ((MAIL, 250), (RCPT, 250)), LOOKALIKE, NEED_EHLO, id="after-HELO-in-a-transaction"),
    pytest.param("EHLO", (), LOOKALIKE, NEED_MAIL, id="before-MAIL"),
    pytest.param("EHLO", ((MAIL, 250),), LOOKALIKE, NEED_RECIPIENT, id="before-RCPT"),
    pytest.param("EHLO", ((MAIL, 250), ("RCPT TO:<nobody@hisp.test>", 550)), LOOKALIKE, NEED_RECIPIENT,
                 id="no-accepted-RCPT"),
    pytest.param("EHLO", ((MAIL, 250), (RCPT, 250)),
                 (LOOKALIKE * 100)[: FAST.max_message_size + 1], TOO_BIG, id="over-the-size"),
    pytest.param("EHLO", ((MAIL, 250), (RCPT, 250)),
                 (b"RSET\r\nQUIT\r\n" * 400)[: FAST.max_message_size + 1], TOO_BIG, id="over-the-size-RSET-QUIT"),
]
# What a further chunk gets once the refusal has ended the transaction.
_AFTER = {None: NEED_HELO, "HELO": NEED_EHLO, "EHLO": NEED_MAIL}


@pytest.mark.parametrize(("greeting", "before", "octets", "refusal"), REFUSALS)
async def test_a_refused_chunk_is_read_dropped_and_ends_the_transaction(
    edge, greeting: str | None, before: tuple[tuple[str, int], ...], octets: bytes, refusal: SmtpReply
) -> None:
    pipeline = RecordingPipeline()
    server = await edge(pipeline)
    client = await RawSmtp.connect(server.port)
    assert (await client.reply()).code == 220
    if greeting is not None:
        assert (await client.command(f"{greeting} client.test")).code == 250
    for line, code in before:
        assert (await client.command(line)).code == code
    asked = list(pipeline.asked)
    # The refused chunk LAST, then a pipelined chunk of the same transaction, then HELP.
    await client.send(bdat(octets, last=True) + bdat(b"hello\r\n", last=True) + b"HELP\r\n")
    refused, further, helped = await replies(client, 3)
    assert is_reply(refused, refusal)
    assert is_reply(further, _AFTER[greeting])  # the transaction is over: no MAIL (or no EHLO) any more
    assert helped.code == 250 and "Supported commands" in helped.text  # no RSET, no QUIT ran
    assert pipeline.asked == asked  # no recipient of the octets was asked for
    assert pipeline.messages == []
    await client.close()


@pytest.mark.parametrize(
    ("sizes", "codes"),
    [
        pytest.param((FAST.max_message_size + 1,), [552, 503], id="one-chunk-over"),
        pytest.param((3000, FAST.max_message_size - 3000 + 1), [250, 552, 503], id="the-chunks-together-over"),
        pytest.param((1, FAST.max_message_size), [250, 552, 503], id="the-last-octet-over"),
    ],
)
async def test_a_chunk_over_the_size_is_552_and_the_next_one_503(
    edge, sizes: tuple[int, ...], codes: list[int]
) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    body = (b"x" * 78 + b"\r\n") * 60
    wires = [bdat(body[:size]) for size in sizes]  # not LAST: the next chunk is the pipeline's last
    await client.send(ENVELOPE + b"".join(wires) + bdat(b"tail\r\n", last=True))
    answers = await replies(client, 2 + len(sizes) + 1)
    assert [reply.code for reply in answers] == [250, 250, *codes]
    assert is_reply(answers[-2], TOO_BIG) and (answers[-2].code, answers[-2].enhanced) == (552, "5.3.4")
    assert is_reply(answers[-1], NEED_MAIL)
    assert pipeline.messages == []
    # In step: a fresh transaction delivers its own message, nothing of the refused one.
    await client.send(ENVELOPE + bdat(MESSAGE, last=True))
    assert [reply.code for reply in await replies(client, 3)] == [250, 250, 250]
    assert [m.data for m in pipeline.messages] == [MESSAGE]
    await client.close()


@pytest.mark.parametrize(
    "sizes",
    [
        pytest.param((FAST.max_message_size,), id="one-chunk"),
        pytest.param((3000, FAST.max_message_size - 3000), id="two-chunks"),
    ],
)
async def test_a_message_of_exactly_the_size_is_taken(edge, sizes: tuple[int, ...]) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    message = ((b"x" * 78 + b"\r\n") * 60)[: FAST.max_message_size - 2] + b"\r\n"
    await client.send(ENVELOPE + b"".join(chunked(message, sizes)))
    assert [reply.code for reply in await replies(client, 2 + len(sizes))] == [250] * (2 + len(sizes))
    assert [m.data for m in pipeline.messages] == [message]
    await client.close()


async def test_bdat_on_the_submission_port_waits_for_auth(tmp_path) -> None:
    """A server with an authenticator refuses BDAT before AUTH (530) and the session goes on."""
    authenticator, pipeline = submission.FakeAuthenticator(), submission.FakeSubmission()
    server = await start_submission(
        pipeline, authenticator, submission.LIMITS, tls_context=submission._tls(tmp_path),
        host="127.0.0.1", port=0, hostname=submission.HOSTNAME,
    )
    try:
        client = await RawSmtp.session(server.port)
        assert (await client.command("STARTTLS")).code == 220
        await client.writer.start_tls(submission._client_tls())
        ehlo = await client.command("EHLO ehr.hospital.test")
        assert "CHUNKING" in ehlo.lines
        await client.send(bdat(LOOKALIKE, last=True) + b"NOOP\r\n")
        refused, noop = await replies(client, 2)
        assert is_reply(refused, AUTH_REQUIRED)
        assert noop.lines == ("2.0.0 OK",)  # NOOP's, not the 530 of the octets' MAIL: they did not run
        auth = await client.command("AUTH PLAIN " + submission._plain(submission.ACCOUNT, submission.PASSWORD))
        assert auth.code == 235
        message = submission.MESSAGE
        await client.send(
            f"MAIL FROM:<{submission.SENDER}>\r\nRCPT TO:<{submission.RCPT}>\r\n".encode()
            + bdat(message[:7]) + bdat(message[7:], last=True)
        )
        answers = await replies(client, 4)
        assert [reply.code for reply in answers] == [250, 250, 250, 250]
        assert is_reply(answers[-1], submission.QUEUED)
        (stored,) = pipeline.messages
        assert stored.data == message
        assert stored.session.authenticated_as == submission.ACCOUNT
        await client.close()
    finally:
        await server.close(grace=0.5)


# -- DATA, RSET, EHLO and STARTTLS within a chunked transaction --


async def test_data_after_bdat_is_503_and_the_transaction_goes_on(edge) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    await client.send(ENVELOPE + bdat(MESSAGE[:10]))
    assert [reply.code for reply in await replies(client, 3)] == [250, 250, 250]
    refused = await client.command("DATA")
    assert is_reply(refused, DATA_AFTER_BDAT) and refused.enhanced == "5.5.1"
    await client.send(bdat(MESSAGE[10:], last=True))
    assert is_reply(await client.reply(), STORED)
    # DATA is refused in the transaction that used BDAT only: the next one may use it.
    await transaction(client)
    await client.send(stuff(DOTTY))
    assert is_reply(await client.reply(), STORED)
    assert [m.data for m in pipeline.messages] == [MESSAGE, DOTTY]
    await client.close()


async def test_bdat_after_a_message_sent_with_data_starts_afresh(edge) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    await transaction(client)
    await client.send(stuff(DOTTY))
    assert is_reply(await client.reply(), STORED)
    await client.send(ENVELOPE + bdat(DOTTY, last=True))
    assert [reply.code for reply in await replies(client, 3)] == [250, 250, 250]
    assert [m.data for m in pipeline.messages] == [DOTTY, DOTTY]
    await client.close()


@pytest.mark.parametrize("forget", ["RSET", "EHLO", "STARTTLS"])
async def test_rset_ehlo_and_starttls_forget_the_chunks(edge, tmp_path, forget: str) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline, tls=_tls(tmp_path))
    await client.send(ENVELOPE + bdat(b"Subject: the old message\r\n"))
    assert [reply.code for reply in await replies(client, 3)] == [250, 250, 250]
    if forget == "STARTTLS":
        assert (await client.command("STARTTLS")).code == 220
        await client.writer.start_tls(_client_tls())
        assert (await client.command("EHLO client.test")).code == 250
    else:
        assert (await client.command(f"{forget} client.test" if forget == "EHLO" else forget)).code == 250
    # The old chunks and the transaction are gone: a chunk alone has no MAIL.
    await client.send(bdat(b"\r\nthe old body\r\n", last=True))
    assert is_reply(await client.reply(), NEED_MAIL)
    await client.send(ENVELOPE + bdat(MESSAGE, last=True))
    assert [reply.code for reply in await replies(client, 3)] == [250, 250, 250]
    assert [m.data for m in pipeline.messages] == [MESSAGE]
    await client.close()


# -- BDAT's argument --


@pytest.mark.parametrize(
    "argument",
    [
        pytest.param("", id="no-size"),
        pytest.param("ten LAST", id="not-digits"),
        pytest.param("-1", id="negative"),
        pytest.param("+5", id="signed"),
        pytest.param("0x10", id="hex"),
        pytest.param("1" + "0" * 18, id="19-digits"),
        pytest.param("5 FIRST", id="marker-not-LAST"),
        pytest.param("5 LAST LAST", id="two-markers"),
        pytest.param("5\tLAST", id="tab-not-space"),
    ],
)
async def test_a_bdat_whose_size_cannot_be_read_is_501_and_the_connection_closes(
    edge, argument: str
) -> None:
    """Where its octets end is unknown, so nothing after it can be read as a command."""
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    await client.send(ENVELOPE + f"BDAT {argument}".rstrip().encode() + b"\r\nhello\r\nRSET\r\nNOOP\r\n")
    answers = await replies(client, 3)
    assert [reply.code for reply in answers] == [250, 250, 501]
    assert is_reply(answers[-1], BDAT_SYNTAX) and answers[-1].enhanced == "5.5.4"
    assert await client.read_to_end() == b""  # no reply to what followed, and closed
    assert pipeline.messages == []
    await client.close()


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(b"BDAT 0007 LAST", id="leading-zeros"),
        pytest.param(b"bdat 7 last", id="lower-case"),
        pytest.param(b"BDAT 7  LAST", id="two-spaces"),
    ],
)
async def test_bdat_arguments_that_are_read(edge, command: bytes) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    await client.send(ENVELOPE + command + b"\r\nhello\r\n")
    assert [reply.code for reply in await replies(client, 3)] == [250, 250, 250]
    assert [m.data for m in pipeline.messages] == [b"hello\r\n"]
    await client.close()


async def test_a_size_of_18_digits_is_a_size_whose_octets_are_awaited(edge) -> None:
    """Not a syntax error: the chunk is refused (over the size) once its octets are read, and
    what the client sends meanwhile is octets, not commands; a client that stops gets 421."""
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    await client.send(ENVELOPE + b"BDAT " + b"9" * 18 + b" LAST\r\nNOOP\r\nQUIT\r\n")
    answers = await replies(client, 3)
    assert [(reply.code, reply.enhanced) for reply in answers] == [(250, "2.1.0"), (250, "2.1.5"), (421, "4.4.2")]
    assert await client.read_to_end() == b""
    await client.close()


@pytest.mark.parametrize(
    ("line", "cut"),
    [
        pytest.param(b"BDAT %d LAST\xa0\r\n", None, id="non-ASCII-argument"),
        pytest.param(b"BDAT %d LAST\n", None, id="bare-LF-line-end"),
        pytest.param(b"bdat %d LAST\r\r\n", None, id="CR-CR-LF-line-end"),
        pytest.param(b"BDAT " + b"0" * 600 + b"%d LAST\r\n", None, id="over-512-octets"),
        # longer than any line kept: dropped as it arrives, before its verb is read as a command
        pytest.param(b"BDAT " + b"0" * 13_000 + b"%d LAST\r\n", 13_000, id="over-12288-octets-dropped"),
    ],
)
async def test_a_bdat_line_refused_as_a_command_line_also_closes_the_connection(
    edge, line: bytes, cut: int | None,
) -> None:
    """Whatever refuses a BDAT line, nobody knows where its octets end: none of them is run."""
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    octets = f"RCPT TO:<{ALSO_OURS[0]}>\r\nQUIT\r\n".encode()
    try:
        wire = ENVELOPE + line % len(octets) + octets
        if cut is not None:
            await client.send(wire[:cut])
            await asyncio.sleep(0.05)
            wire = wire[cut:]
        await client.send(wire)
        answers = await replies(client, 3)
        assert [reply.code for reply in answers[:2]] == [250, 250] and answers[2].code >= 500
        assert await client.read_to_end() == b""  # closed, with no reply to the octets' RCPT and QUIT
        assert pipeline.asked == [OURS]
    finally:
        await client.close()


# -- the checks DATA makes --


_BARE_LF = b"Subject: x\r\n\r\nbare\nLF\r\n"
_CRLF_SPLIT = b"Subject: x\r\n\r\nCRLF\r\nsplit\r\n"
_LONG_LINE = b"Subject: x\r\n\r\n" + b"y" * 999 + b"\r\n"  # 1001 octets with its CRLF


@pytest.mark.parametrize(
    ("message", "sizes", "reply"),
    [
        pytest.param(_BARE_LF, None, (550, "5.6.0"), id="bare-LF"),
        pytest.param(b"Subject: x\r\n\r\nbare\rCR\r\n", None, (550, "5.6.0"), id="bare-CR"),
        pytest.param(b"Subject: x\n\nonly LF line ends\n", None, (550, "5.6.0"), id="LF-line-ends"),
        pytest.param(b"Subject: x\r\n\r\nends in a bare CR\r", None, (550, "5.6.0"), id="final-bare-CR"),
        pytest.param(_BARE_LF, cut_at(_BARE_LF, _BARE_LF.index(b"\nLF")), (550, "5.6.0"),
                     id="bare-LF-starting-a-chunk"),
        pytest.param(_CRLF_SPLIT, cut_at(_CRLF_SPLIT, _CRLF_SPLIT.index(b"\r\nsplit") + 1), (250, "2.0.0"),
                     id="a-CRLF-split-by-chunks-is-a-CRLF"),
        pytest.param(_LONG_LINE[:-3] + b"\r\n", None, (250, "2.0.0"), id="1000-with-CRLF"),
        pytest.param(_LONG_LINE, None, (554, "5.6.0"), id="1001-with-CRLF"),
        pytest.param(_LONG_LINE, cut_at(_LONG_LINE, 500), (554, "5.6.0"), id="1001-across-two-chunks"),
    ],
)
async def test_bdat_last_checks_the_message_as_data_does(
    edge, message: bytes, sizes: tuple[int, ...] | None, reply: tuple[int, str]
) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    wires = chunked(message, sizes or (len(message),))
    await client.send(ENVELOPE + b"".join(wires))
    answers = await replies(client, 2 + len(wires))
    assert [r.code for r in answers[:-1]] == [250] * (1 + len(wires))
    assert (answers[-1].code, answers[-1].enhanced) == reply
    assert [m.data for m in pipeline.messages] == ([message] if reply[0] == 250 else [])
    # Refused or not, the transaction is over and the session in step.
    await client.send(bdat(b"x\r\n", last=True))
    assert is_reply(await client.reply(), NEED_MAIL)
    await client.close()


@pytest.mark.parametrize("terminator", [*SMUGGLING, pytest.param(b"\r\n.\r\n", id="CRLF.CRLF")])
async def test_no_terminator_ends_a_chunk_and_smuggling_is_refused_whole(
    edge, terminator: bytes
) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)
    smuggled = (
        b"From: alice@sender.test\r\nSubject: first\r\n\r\nfirst message"
        + terminator
        + b"MAIL FROM:<mallory@sender.test>\r\nRCPT TO:<carol@hisp.test>\r\nBDAT 34 LAST\r\n"
        + b"From: ceo@hisp.test\r\n\r\nsecond\r\n"
    )
    await client.send(ENVELOPE + bdat(smuggled, last=True))
    answers = await replies(client, 3)
    if terminator == b"\r\n.\r\n":  # a dot line like any other: one message, whole
        assert is_reply(answers[-1], STORED)
        assert [m.data for m in pipeline.messages] == [smuggled]
    else:
        assert (answers[-1].code, answers[-1].enhanced) == (550, "5.6.0")
        assert pipeline.messages == []
    assert pipeline.asked == [OURS]  # nothing in the octets ran as a command
    assert (await client.command("NOOP")).code == 250
    await client.close()


# -- timeouts --


@pytest.mark.parametrize("envelope", [ENVELOPE, b""], ids=["a-chunk-taken", "a-chunk-refused"])
async def test_a_stalled_chunk_gets_421_after_the_data_timeout(edge, envelope: bytes) -> None:
    """The data timeout, not the (longer) command timeout, runs while a chunk's octets are awaited."""
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline, SmtpLimits(command_timeout=5.0, data_timeout=0.3))
    loop = asyncio.get_running_loop()
    await client.send(envelope + b"BDAT 100 LAST\r\n" + b"ten octets")
    expected = [250, 250] if envelope else []
    assert [reply.code for reply in await replies(client, len(expected))] == expected
    start = loop.time()
    timeout = await client.reply()
    assert (timeout.code, timeout.enhanced) == (421, "4.4.2")
    assert HOSTNAME in timeout.text
    assert loop.time() - start < 3.0  # well before the command timeout
    assert await client.read_to_end() == b""
    assert pipeline.messages == []
    await client.close()


async def test_the_data_timeout_is_per_block_within_a_chunk(edge) -> None:
    pipeline = RecordingPipeline()
    client = await session(edge, pipeline)  # FAST: both timeouts 0.5 s
    blocks = [b"a line\r\n"] * 4
    await client.send(ENVELOPE + b"BDAT %d LAST\r\n" % sum(map(len, blocks)))
    # Four blocks 0.2 s apart: 0.8 s in all, over the 0.5 s timeout, none idle that long.
    for block in blocks:
        await asyncio.sleep(0.2)
        await client.send(block)
    assert [reply.code for reply in await replies(client, 3)] == [250, 250, 250]
    assert [m.data for m in pipeline.messages] == [b"".join(blocks)]
    await client.close()


async def test_a_graceful_close_waits_for_a_chunked_transaction(edge) -> None:
    pipeline = RecordingPipeline()
    server = await edge(pipeline, SmtpLimits(command_timeout=5, data_timeout=5, close_grace=5))
    client = await RawSmtp.session(server.port)
    await client.send(ENVELOPE + bdat(MESSAGE[:10]))
    assert [reply.code for reply in await replies(client, 3)] == [250, 250, 250]
    closing = asyncio.create_task(server.close())
    await asyncio.sleep(0.1)
    assert not closing.done()
    await client.send(bdat(MESSAGE[10:], last=True))
    assert is_reply(await client.reply(), STORED)
    bye = await client.reply()
    assert (bye.code, bye.enhanced) == (421, "4.3.2")
    await asyncio.wait_for(closing, 5)
    assert [m.data for m in pipeline.messages] == [MESSAGE]
    await client.close()
