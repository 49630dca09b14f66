"""What the edge checks in the bytes between DATA and the final dot, without I/O.

RFC 5321 2.3.8: a line ends with CRLF, and CR and LF MUST NOT appear
otherwise. Many servers (aiosmtpd among them) pass a bare CR or LF through inside a line; a relay
downstream that ends lines on a bare LF would then read ``<LF>.<LF>`` (or
``<CR>.<CR>``, ``<LF>.<CR><LF>`` ...) as the end of the message and what
follows as new commands: SMTP smuggling. The gateway does not relay what it
receives, but a message that frames differently for two readers is hostile,
so it is refused whole (never split) and never reaches the pipeline.

Each check is a few passes in C over the bytes (``count``, ``find``): linear,
no regular expression, no list of lines.
"""

from __future__ import annotations

import enum


class DataProblem(enum.Enum):
    BARE_CR = "bare CR"
    BARE_LF = "bare LF"
    LINE_TOO_LONG = "line too long"


def data_problem(data: bytes, max_line_length: int) -> DataProblem | None:
    """The first reason to refuse ``data`` (dot-unstuffed, CRLF line ends), or None."""
    crlf = data.count(b"\r\n")
    # Every CRLF holds one CR and one LF; any other CR or LF is bare.
    if data.count(b"\n") != crlf:
        return DataProblem.BARE_LF
    if data.count(b"\r") != crlf:
        return DataProblem.BARE_CR
    if _has_long_line(data, max_line_length):
        return DataProblem.LINE_TOO_LONG
    return None


def _has_long_line(data: bytes, max_line_length: int) -> bool:
    """Whether a line is longer than ``max_line_length`` with its CRLF (no bare CR or LF in ``data``).

    A line too long holds a run of ``run`` bytes without CR; any such run
    contains a whole aligned block of ``run // 2`` bytes, so only blocks
    without a CR need a closer look, and each look scans one line: linear."""
    run = max_line_length - 1
    block = max(run // 2, 1)
    size = len(data)
    for start in range(0, size, block):
        end = min(start + block, size)
        if data.find(b"\r", start, end) != -1:
            continue
        # The block may begin with the LF of a CRLF: the line starts after the last LF up to its end.
        line_start = data.rfind(b"\n", 0, end) + 1
        line_end = data.find(b"\r", end)
        if line_end == -1:
            line_end = size
        if line_end - line_start >= run:
            return True
    return False


def unstuff(wire: bytes) -> bytes:
    """RFC 5321 4.5.2: drop the first character of each line that begins with a dot.

    Every line but the first begins after a CRLF. Removing dots changes no CR
    or LF, so ``data_problem`` on the result still finds any bare one (and a
    message with one is refused whatever its dots became)."""
    data = wire.replace(b"\r\n.", b"\r\n")
    return data[1:] if data.startswith(b".") else data
