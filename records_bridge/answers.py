"""Secret answers: normalisation, validation and the scrypt verifier (spec section 3).

``normalize(s) = NFKC(s).casefold()``: "Fluffy", "FLUFFY" and "ﬂuﬀy" are
the same answer. It is whitespace-sensitive, as HealthVault was, so
creation refuses leading or trailing whitespace instead of trimming it:
" fluffy" could otherwise never be typed back.

At rest an answer is ``scrypt(normalize(answer), salt, n=2**15, r=8, p=1,
dklen=32)`` with a fresh 16-byte salt, compared with ``hmac.compare_digest``.
scrypt at these parameters costs tens of milliseconds of one core and 32 MiB
of memory: callers on an event loop run ``verify``/``hash_answer`` through
``asyncio.to_thread`` (the HTTP edge does).

Named ``answers`` rather than ``secrets`` so it never shadows the standard
library's module of that name.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

MIN_ANSWER = 6
MAX_ANSWER = 128
"""Answer length after normalisation, 6..128 characters (spec section 3; HV error 73 below 6)."""

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_DKLEN = 32
"""scrypt parameters of the spec (section 3): 2**15 * 8 * 128 bytes = 32 MiB per derivation."""
SCRYPT_MAXMEM = 64 * 1024 * 1024
"""OpenSSL's default ceiling (32 MiB) is exactly what n=2**15, r=8 needs, and it refuses at the
boundary; twice that leaves room without allowing an envelope to ask for much more."""
SALT_BYTES = 16
MAX_CONCURRENT_DERIVATIONS = os.cpu_count() or 1
"""scrypt is CPU-bound: running more at once than there are cores only queues them in threads,
each holding its 32 MiB, and crowds the default executor other work shares."""

P = ParamSpec("P")
T = TypeVar("T")


class InvalidAnswer(ValueError):
    """An answer that may not be set (length, surrounding whitespace)."""


def normalize(answer: str) -> str:
    return unicodedata.normalize("NFKC", answer).casefold()


def checked(answer: str) -> str:
    """The normalised answer, or ``InvalidAnswer`` when it may not be set."""
    if answer != answer.strip():
        raise InvalidAnswer("the answer may not begin or end with whitespace")
    norm = normalize(answer)
    if not MIN_ANSWER <= len(norm) <= MAX_ANSWER:
        raise InvalidAnswer(f"the answer must be {MIN_ANSWER} to {MAX_ANSWER} characters")
    return norm


def derive(
    normalized: str | bytes | bytearray, salt: bytes, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P,
) -> bytes:
    """scrypt of an already normalised answer (CPU-heavy: not on an event loop). A bytearray is
    passed through uncopied, so a caller can zero it afterwards."""
    secret = normalized.encode("utf-8") if isinstance(normalized, str) else normalized
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=SCRYPT_DKLEN, maxmem=SCRYPT_MAXMEM)


@dataclass(frozen=True, slots=True)
class AnswerHash:
    salt: bytes
    digest: bytes = field(repr=False)


def hash_answer(answer: str) -> AnswerHash:
    """The verifier stored for a new answer (validated first: ``InvalidAnswer``)."""
    salt = os.urandom(SALT_BYTES)
    return AnswerHash(salt, derive(checked(answer), salt))


def verify(answer: str, stored: AnswerHash) -> bool:
    """Whether a typed answer matches, in constant time over the digest.

    A typed answer is only normalised, never refused for its length: a wrong
    length is simply a wrong answer (and counts as one)."""
    if len(answer) > 4 * MAX_ANSWER:
        # NFKC can grow a string, casefold too, but never by 4x; hash a constant instead of megabytes
        answer = ""
    return hmac.compare_digest(derive(normalize(answer), stored.salt), stored.digest)


class Derivations:
    """Runs scrypt work in worker threads, at most ``slots`` at a time (one per process, shared by
    the connect and package flows): a burst of answers waits its turn instead of taking the
    memory and every thread of the default executor."""

    def __init__(self, slots: int = MAX_CONCURRENT_DERIVATIONS) -> None:
        self._slots = asyncio.Semaphore(slots)

    async def run(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._slots:
            return await asyncio.to_thread(work, *args, **kwargs)
