"""Where a message ends: DATA's final dot, read from the buffer in blocks within a size, or BDAT's chunks. No I/O.

RFC 5321 4.1.1.4: the message ends at a line holding a single dot, that is
``<CRLF>.<CRLF>``, the CRLF of the DATA command counting as the first (so
``.<CRLF>`` right after DATA is an empty message). ``MessageReader.feed``
looks for ``<CRLF>.<CRLF>`` in whatever the session's buffer holds (one
``find`` in C, whatever the number of lines), takes what precedes it and
leaves everything after the final dot in the buffer: commands pipelined
after it (RFC 2920) are the session's again. Without a terminator it takes
all but the last four bytes, which may begin one; so a terminator is always
found whole inside the buffer, however the writes split the stream.

Only ``<CRLF>.<CRLF>`` ends a message here; a bare CR or LF around a dot
(``<LF>.<LF>`` and the other smuggling sequences) is message content, which
data.py then refuses whole.
"""

from __future__ import annotations

_TERMINATOR = b"\r\n.\r\n"
_DOT_LINE = b".\r\n"
# A terminator may begin in the last len(_TERMINATOR) - 1 bytes of the buffer: they wait for more.
_HELD = len(_TERMINATOR) - 1


class MessageReader:
    """One message's bytes up to the final dot (dot-stuffed), or None when over ``max_size``.

    The size is the message's, without transparency dots (RFC 1870 5). Over
    the size, reading goes on to the final dot (RFC 1870 6.3, and so the
    session stays in step with the client) but nothing more is kept: memory
    stays bounded by ``max_size`` plus what one read brings."""

    __slots__ = ("_before", "_max_size", "_pieces", "_size", "_started")

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._pieces: list[bytes] = []
        self._size = 0
        # The two bytes before what is taken next: the stream starts at a line start.
        self._before = b"\r\n"
        self._started = False

    def feed(self, buffer: bytearray) -> bool:
        """Take the message's bytes from the front of ``buffer``; True once the final dot is taken too."""
        if not self._started:
            # The DATA command's CRLF begins the first terminator: ".<CRLF>" at once ends an empty message.
            if buffer.startswith(_DOT_LINE):
                del buffer[: len(_DOT_LINE)]
                return True
            if len(buffer) < len(_DOT_LINE) and _DOT_LINE.startswith(buffer):
                return False
            self._started = True
        end = buffer.find(_TERMINATOR)
        if end >= 0:
            self._take(buffer, end + 2)  # the CRLF before the dot ends the message's last line
            del buffer[: len(_DOT_LINE)]
            return True
        if len(buffer) > _HELD:
            self._take(buffer, len(buffer) - _HELD)
        return False

    def message(self) -> bytes | None:
        """After ``feed`` said True: the message as sent (still dot-stuffed), or None when over the size."""
        if self._size > self._max_size:
            return None
        pieces, self._pieces = self._pieces, []
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _take(self, buffer: bytearray, length: int) -> None:
        piece = bytes(buffer[:length])
        del buffer[:length]
        # RFC 1870 5: the size counts the message's octets, not the doubled
        # (transparency) dots, so each "." at a line start is taken off.
        self._size += length - _stuffed_dots(self._before, piece)
        if self._size <= self._max_size:
            self._pieces.append(piece)
        elif self._pieces:
            self._pieces.clear()
        self._before = piece[-2:] if length >= 2 else (self._before + piece)[-2:]


def _stuffed_dots(before: bytes, piece: bytes) -> int:
    """How many lines of ``piece`` begin with a dot: "<CRLF>." inside it, or across from ``before``."""
    edge = before + piece[:2]
    across = edge.startswith(b"\r\n.") or edge[1:].startswith(b"\r\n.")
    return piece.count(b"\r\n.") + across


class ChunkedMessage:
    """One message sent in BDAT chunks (RFC 3030): the octets as they come. Each BDAT says how
    many octets follow it, so there is no terminator to look for and no dot to unstuff; the
    session refuses a chunk that would take the message over its size before reading it,
    and reads such a chunk's octets without keeping them."""

    __slots__ = ("_pieces", "size")

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self.size = 0

    def take(self, buffer: bytearray, length: int) -> None:
        """Move ``length`` octets from the front of ``buffer`` into the message."""
        self._pieces.append(bytes(buffer[:length]))
        del buffer[:length]
        self.size += length

    def message(self) -> bytes:
        pieces, self._pieces = self._pieces, []
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)
