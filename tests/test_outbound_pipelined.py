"""A pipelined transaction (RFC 2920): replies read however the server's bytes are cut,
hostile replies refused with a bound, and scripted servers that answer the group in one
write, answer garbage, go silent or hang up; the same with CHUNKING (RFC 3030), where the
message goes in the group's write after BDAT. The transport's behaviour against aiosmtpd
with and without PIPELINING, and against our own edge, is in test_outbound_transport.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiosmtplib
import pytest

from gateway.outbound import Destination, Permanent, Reason, Sent, SmtpTransport, Temporary, TlsMode
from gateway.outbound.pipelined import MAX_LINE, MAX_LINES, _Replies

from .test_outbound_transport import DATA, SETTINGS

REPLIES = {
    "one": (b"250 2.1.0 ok\r\n", [(250, "2.1.0 ok")]),
    "group-in-one-write": (b"250 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n", [(250, "ok"), (250, "2.1.5 ok"), (354, "go ahead")]),
    "multiline": (b"250-first\r\n250-second\r\n250 last\r\n", [(250, "first\nsecond\nlast")]),
    "code-only": (b"250\r\n354 \r\n", [(250, ""), (354, "")]),
    "bare-newlines": (b"250 ok\n550 no\n", [(250, "ok"), (550, "no")]),
    "not-utf8": (b"550 \xff\r\n", [(550, "\udcff")]),
}


def _fed(replies: _Replies, data: bytes, step: int) -> None:
    for start in range(0, len(data), step):
        replies.data_received(data[start:start + step])


async def _all(replies: _Replies, n: int) -> list[tuple[int, str]]:
    return [tuple(await replies.next()) for _ in range(n)]  # type: ignore[misc]


@pytest.mark.parametrize(("data", "want"), REPLIES.values(), ids=REPLIES.keys())
@pytest.mark.parametrize("step", [1, 2, 7, 1 << 20], ids=["bytewise", "pairs", "sevens", "whole"])
async def test_replies_are_read_however_the_bytes_are_cut(data, want, step):
    replies = _Replies()
    _fed(replies, data, step)
    assert await _all(replies, len(want)) == want


HOSTILE = {
    "not-a-code": b"abc ok\r\n",
    "short": b"25\r\n",
    "four-digits": b"2500 ok\r\n",
    "line-too-long": b"250 " + b"x" * MAX_LINE + b"\r\n",
    "endless-line": b"250 " + b"x" * (MAX_LINE + 1),
    "endless-continuation": b"250-x\r\n" * (MAX_LINES + 1),
}


@pytest.mark.parametrize("data", HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_hostile_reply_is_refused_not_buffered(data):
    replies = _Replies()
    _fed(replies, data, 4096)
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await replies.next()
    assert refused.value.code == -1
    _fed(replies, b"250 ok\r\n" * 10, 4096)  # nothing more is read after a refusal
    assert len(replies._buffer) <= len(data)


async def test_replies_before_a_hang_up_are_read_then_the_hang_up():
    replies = _Replies()
    replies.data_received(b"250 ok\r\n")
    replies.connection_lost(ConnectionResetError("reset"))
    assert tuple(await replies.next()) == (250, "ok")
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await replies.next()


async def test_a_reply_that_comes_later_wakes_the_reader():
    replies = _Replies()
    waiting = asyncio.ensure_future(replies.next())
    await asyncio.sleep(0)
    assert not waiting.done()
    replies.data_received(b"354 go")
    await asyncio.sleep(0)
    assert not waiting.done()
    replies.data_received(b" ahead\r\n")
    assert tuple(await waiting) == (354, "go ahead")


# -- scripted servers: what a real one might do after the group --

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _scripted(script: Script, *, chunking: bool = False) -> tuple[asyncio.Server, list[bytes]]:
    """A server that greets, offers PIPELINING (and CHUNKING), then runs ``script`` on the group it
    reads: up to DATA, or with CHUNKING up to BDAT's LAST and its chunk."""
    seen: list[bytes] = []
    offered = b"250-PIPELINING\r\n250 CHUNKING\r\n" if chunking else b"250 PIPELINING\r\n"

    async def group(reader: asyncio.StreamReader) -> bytes:
        if not chunking:
            return await reader.readuntil(b"DATA\r\n")
        commands = await reader.readuntil(b" LAST\r\n")
        size = int(commands.rsplit(b"BDAT ", 1)[1].split(b" ")[0])
        return commands + await reader.readexactly(size)

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted.test\r\n")
        await reader.readline()
        writer.write(b"250-scripted.test\r\n" + offered)
        seen.append(await group(reader))
        try:
            await script(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    return server, seen


async def _one_write(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")  # as our own edge answers a group
    seen = await reader.readuntil(b"\r\n.\r\n")
    writer.write(b"250 2.0.0 stored %d\r\n" % len(seen))
    await reader.read()


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    await reader.read()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"250 ok\r\n")  # then gone, before RCPT's reply


async def _refuse_recipient(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n")
    await reader.read()


CASES = {
    "one-write": (_one_write, Sent, None),
    "garbage": (_garbage, Temporary, Reason.CONNECTION),
    "silent": (_silent, Temporary, Reason.TIMEOUT),
    "hang-up": (_hang_up, Temporary, Reason.CONNECTION),
    "recipient-refused": (_refuse_recipient, Permanent, Reason.SMTP_PERMANENT),
}


async def _outcome(server: asyncio.Server, data: bytes, kind: type, reason: Reason | None) -> None:
    """The transport's one attempt at ``server`` is a ``kind`` (for ``reason``); the server is closed after."""
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(10):
            outcome = await SmtpTransport(SETTINGS).deliver(
                [Destination("127.0.0.1", "127.0.0.1", port, TlsMode.OPPORTUNISTIC)], "a@a.test", "b@b.test", data)
        assert isinstance(outcome, kind), outcome
        if reason is not None:
            assert outcome.reason is reason  # type: ignore[union-attr]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(("script", "kind", "reason"), CASES.values(), ids=CASES.keys())
async def test_what_the_server_does_after_the_group_decides_the_outcome(script, kind, reason):
    server, seen = await _scripted(script)
    await _outcome(server, DATA, kind, reason)
    assert seen == [b"MAIL FROM:<a@a.test>\r\nRCPT TO:<b@b.test>\r\nDATA\r\n"]


# -- CHUNKING: MAIL, RCPT, BDAT and the message in one write --

DOTTED = b"From: alice@a.test\r\n\r\n.a line with a dot\r\n.\r\nlast\r\n"


def _answers(replies: bytes) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(replies)
        await reader.read()
    return script


CHUNKED_CASES = {
    "stored": (_answers(b"250 ok\r\n250 ok\r\n250 2.0.0 stored\r\n"), Sent, None),
    "stored-replies-cut": (_answers(b"250 ok\r\n2"), Temporary, Reason.TIMEOUT),  # the rest never comes
    "sender-refused": (_answers(b"550 5.7.1 no\r\n503 5.5.1 no sender\r\n503 5.5.1 no sender\r\n"),
                       Permanent, Reason.SMTP_PERMANENT),
    "recipient-refused": (_answers(b"250 ok\r\n550 5.1.1 no such user\r\n554 5.5.1 no valid recipients\r\n"),
                          Permanent, Reason.SMTP_PERMANENT),
    "message-refused": (_answers(b"250 ok\r\n250 ok\r\n554 5.6.0 refused\r\n"), Permanent, Reason.SMTP_PERMANENT),
    "message-deferred": (_answers(b"250 ok\r\n250 ok\r\n451 4.3.0 try later\r\n"), Temporary,
                         Reason.SMTP_TEMPORARY),
    "garbage": (_garbage, Temporary, Reason.CONNECTION),
    "silent": (_silent, Temporary, Reason.TIMEOUT),
    "hang-up": (_hang_up, Temporary, Reason.CONNECTION),
}


@pytest.mark.parametrize(("script", "kind", "reason"), CHUNKED_CASES.values(), ids=CHUNKED_CASES.keys())
async def test_to_a_server_with_chunking_the_message_goes_with_the_group_verbatim(script, kind, reason):
    server, seen = await _scripted(script, chunking=True)
    await _outcome(server, DOTTED, kind, reason)
    # one write: no dot doubled, no final dot; the octets BDAT counts are the message's
    assert seen == [b"MAIL FROM:<a@a.test>\r\nRCPT TO:<b@b.test>\r\nBDAT %d LAST\r\n%s" % (len(DOTTED), DOTTED)]
