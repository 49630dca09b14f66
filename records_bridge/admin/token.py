"""The admin API's bearer token: read from a file the configuration names
(``[bridge] admin_token_file``), never from the configuration itself.

The file must be private to its owner (mode 0600, like the domains' key
files: a token others could read is not one to trust) and hold at least
``MIN_TOKEN_CHARS`` characters; only its SHA-256 is kept in memory, and a
presented token is hashed and compared with ``hmac.compare_digest``, so the
comparison takes the same time whatever the guess and its length.
"""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

MIN_TOKEN_CHARS = 32
"""32 random characters (e.g. ``openssl rand -hex 32`` gives 64) are 128 bits and more."""
MAX_TOKEN_CHARS = 512
"""A header value this long is not a token we issued; refused before hashing."""


class AdminTokenError(ValueError):
    """The token file is missing, readable by others, or too short."""


def load_admin_token(path: Path) -> bytes:
    """The SHA-256 of the token in ``path``."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminTokenError(f"{path}: cannot read it ({exc})") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AdminTokenError(f"{path} is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
                              f"run `chmod 600 {path}`")
    if not MIN_TOKEN_CHARS <= len(text) <= MAX_TOKEN_CHARS or any(c.isspace() for c in text):
        raise AdminTokenError(f"{path}: the token must be {MIN_TOKEN_CHARS}..{MAX_TOKEN_CHARS} characters "
                              "without spaces (e.g. openssl rand -hex 32)")
    return hashlib.sha256(text.encode()).digest()


def matches(expected_sha256: bytes | None, presented: str) -> bool:
    """Whether ``presented`` is the admin token, in constant time."""
    if expected_sha256 is None or len(presented) > MAX_TOKEN_CHARS:
        return False
    return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), expected_sha256)
