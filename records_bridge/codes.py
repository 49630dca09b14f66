"""Pickup and connect codes (shared/specs/records-bridge.md section 3).

A code is 20 letters drawn with ``secrets.choice`` from the 20 consonants
``BCDFGHJKMNPQRSTVWXYZ``: no vowels (no accidental words), no ``L`` (it
reads as 1 or I). 20 ** 20 is about 2 ** 86, so guessing one online, at ten
tries a minute per session, is hopeless; the lockout after three wrong
answers guards the answer, not the code.

People type codes by hand, so input is forgiving (any case, spaces and
hyphens anywhere) and everything else is refused as malformed before the
database is asked: a malformed code never counts as an attempt.

A code is never stored: ``code_hash`` is HMAC-SHA256 under a server pepper
(kept outside the database), so a stolen database does not hand out codes
and a code can still be looked up by its hash.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

ALPHABET = "BCDFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 20
"""20 symbols of a 20-letter alphabet: log2(20 ** 20) = 86.4 bits (spec section 3)."""
GROUP = 4
"""Shown as five groups of four, the way people read codes aloud."""
MAX_INPUT_LENGTH = 64
"""Far above a code with separators (24); longer input is malformed before it is scanned further."""
MIN_PEPPER_BYTES = 32
"""The HMAC key is as long as the SHA-256 output it keys (RFC 2104 section 3)."""

_ALLOWED = frozenset(ALPHABET)
_SEPARATORS = frozenset(" -")


class MalformedCode(ValueError):
    """Input that cannot be a code; never an attempt against any code."""


@dataclass(frozen=True, slots=True)
class Code:
    """A canonical code: 20 alphabet letters, no separators."""

    canonical: str

    def __post_init__(self) -> None:
        if len(self.canonical) != CODE_LENGTH or not set(self.canonical) <= _ALLOWED:
            raise MalformedCode("not a canonical code")

    @property
    def display(self) -> str:
        c = self.canonical
        return "-".join(c[i : i + GROUP] for i in range(0, CODE_LENGTH, GROUP))

    def __str__(self) -> str:
        return self.display

    def __repr__(self) -> str:
        return "Code(<redacted>)"


def new_code() -> Code:
    return Code("".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH)))


def parse_code(text: str) -> Code:
    """What a person typed, as a code: any case, spaces and hyphens ignored.

    Anything else (another letter, a digit, a tab, the wrong length) raises
    ``MalformedCode``."""
    if len(text) > MAX_INPUT_LENGTH:
        raise MalformedCode("too long")
    letters = [ch for ch in text.upper() if ch not in _SEPARATORS]
    canonical = "".join(letters)
    if len(canonical) != CODE_LENGTH or not set(canonical) <= _ALLOWED:
        raise MalformedCode("not a code")
    return Code(canonical)


def code_hash(pepper: bytes, code: Code) -> str:
    """HMAC-SHA256(pepper, canonical code), hex: how a code is stored and found."""
    if len(pepper) < MIN_PEPPER_BYTES:
        raise ValueError(f"the code pepper must be at least {MIN_PEPPER_BYTES} bytes")
    return hmac.new(pepper, code.canonical.encode("ascii"), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- what a code-guarded flow answers

MAX_FAILURES = 3
"""Three consecutive wrong answers lock a request or package (HealthVault's "three chances", spec 3 and 4)."""
CODE_LIFETIME = timedelta(days=28)
"""A connect request or package not used within four weeks expires (HV "four weeks", spec 3 and 4)."""


class Refusal(enum.Enum):
    """Why a code leads nowhere. The edge maps each to one status and error code."""

    UNKNOWN = "invalid_code"
    """No such code, or a deleted one (404: a deleted code is indistinguishable from a guess)."""
    EXPIRED = "expired"
    LOCKED = "locked"
    INCOMPLETE = "package_incomplete"
    """An allocated package nothing was dropped into yet (HV 95); not an attempt."""
    PICKED_UP = "picked_up"
    """A package redeemed already (one-time); told apart from an unknown code only after
    the code itself was right, which an enumerator never has."""


@dataclass(frozen=True, slots=True)
class Question:
    question: str


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Refusal


@dataclass(frozen=True, slots=True)
class WrongAnswer:
    attempts_remaining: int
    """0 means the request or package is now locked."""
