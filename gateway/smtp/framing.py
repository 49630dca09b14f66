"""Reading one message's DATA from the stream: up to the final dot, in blocks, within a size.

RFC 5321 4.1.1.4: the message ends at a line holding a single dot, that is
``.<CRLF>`` at a line start (right after DATA, or after a CRLF). aiosmtpd
reads DATA with one coroutine step per line; this reads up to the next
``.<CRLF>``, or a block of the reader's limit when there is none yet, and
decides from the two bytes before it, which were read already. So a 10 KB
message is one step, and nothing past the final dot is taken: commands
pipelined after it (RFC 2920) stay in the buffer for the command loop.

Only ``<CRLF>.<CRLF>`` ends a message here; a bare CR or LF around a dot
(``<LF>.<LF>`` and the other smuggling sequences) is message content, which
data.py then refuses whole.
"""

from __future__ import annotations

import asyncio

_DOT_LINE = b".\r\n"


async def read_message(reader: asyncio.StreamReader, max_size: int) -> bytes | None:
    """The bytes up to the final dot (still dot-stuffed, the dot line excluded), or None when over ``max_size``.

    The size is the message's, without transparency dots (RFC 1870 5).

    Over the size, reading goes on to the final dot (RFC 1870 6.3, and so the
    session stays in step with the client) but nothing more is kept: memory
    stays bounded by ``max_size`` plus one block. Raises what the reader
    raises when the connection ends first (IncompleteReadError)."""
    pieces: list[bytes] = []
    # RFC 1870 5: the size counts the message's octets, not the doubled
    # (transparency) dots, so each ".": at a line start is taken off.
    size = 0
    # The two bytes before what is read next; the stream starts at a line
    # start (after the DATA command's CRLF).
    before = b"\r\n"
    while True:
        try:
            piece = await reader.readuntil(_DOT_LINE)
        except asyncio.LimitOverrunError as over:
            # No ".<CRLF>" within the reader's limit: take what cannot hold one.
            piece = await reader.readexactly(over.consumed)
            end = False
        else:
            head = piece[-5:-3] if len(piece) >= 5 else (before + piece[:-3])[-2:]
            end = head == b"\r\n"
            if end:
                piece = piece[:-3]
        size += len(piece) - _stuffed_dots(before, piece)
        if size <= max_size:
            pieces.append(piece)
        elif pieces:
            pieces.clear()
        if end:
            return b"".join(pieces) if size <= max_size else None
        before = piece[-2:] if len(piece) >= 2 else (before + piece)[-2:]


def _stuffed_dots(before: bytes, piece: bytes) -> int:
    """How many lines of ``piece`` begin with a dot: "<CRLF>." inside it, or across from ``before``."""
    edge = before + piece[:2]
    across = edge.startswith(b"\r\n.") or edge[1:].startswith(b"\r\n.")
    return piece.count(b"\r\n.") + across
