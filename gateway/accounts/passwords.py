"""Account passwords: argon2id hashes (argon2-cffi), generated passwords, and what a chosen one must be.

The hash is argon2-cffi's encoded string, which carries its own parameters
and salt, so a later change of parameters still verifies old hashes
(``needs_rehash`` says when to store a new one). The parameters are
argon2-cffi's defaults, RFC 9106 section 4's second recommended option
(argon2id, t=3, 64 MiB, p=4): tens of milliseconds of CPU per check, which is
why the edge never verifies on the event loop and bounds how many checks run
at once (``gateway.accounts.authenticator``).

Nothing here logs, and a password is never part of an exception's text.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 15
"""NIST SP 800-63B-4 section 3.1.1.2: at least 15 characters for a password used alone.
An EHR stores it in its configuration, so a long one costs nobody anything."""
MAX_PASSWORD_LENGTH = 256
"""SP 800-63B-4 asks to accept at least 64; an AUTH PLAIN line carries this comfortably."""
GENERATED_BYTES = 24
"""A generated password: 192 random bits, 32 URL-safe characters."""


class PasswordRefused(ValueError):
    """A chosen password that cannot be used; the text never repeats it."""


def _hasher() -> PasswordHasher:
    # argon2-cffi's defaults are RFC 9106's recommendation (module docstring); one
    # place to name them, so hashing and rehash checks agree.
    return PasswordHasher()


def hash_password(password: str) -> str:
    """The encoded argon2id hash to store (CPU-heavy: run it off the event loop)."""
    return _hasher().hash(password)


def verify_password(encoded: str, password: bytes) -> bool:
    """Whether ``password`` matches ``encoded`` (CPU-heavy: run it off the event loop).

    A stored value that is not an argon2 hash never matches."""
    try:
        return _hasher().verify(encoded, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(encoded: str) -> bool:
    """The hash was made with other parameters than today's: store a new one at the next login."""
    try:
        return _hasher().check_needs_rehash(encoded)
    except InvalidHashError:
        return True


def generate_password() -> str:
    return secrets.token_urlsafe(GENERATED_BYTES)


def chosen_password(text: str) -> str:
    """A password read from a file: its first line, checked against the limits above."""
    lines = text.splitlines()
    password = lines[0] if lines else ""
    if any(line.strip() for line in lines[1:]):
        raise PasswordRefused("the password file must hold one line")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRefused(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRefused(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in password):
        raise PasswordRefused("a password holds no control characters (SASL PLAIN separates with NUL)")
    return password
