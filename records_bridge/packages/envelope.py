"""Envelope v1: a package's content sealed under a key derived from the answer (spec section 4).

```json
{"v":1,"kdf":"scrypt","n":32768,"r":8,"p":1,"salt":"b64(16 bytes)",
 "alg":"A256GCM","nonce":"b64(12 bytes)","ct":"b64(ciphertext||tag)"}
```

key = scrypt(normalize(answer), salt, n, r, p, dklen=32); AES-256-GCM with
AAD ``"rb-package-v1|" + canonical code + "|" + client_id``, so an envelope
moved to another code or another client's package does not open. It replaces
HealthVault's Rijndael-256-CBC/PBKDF2-SHA1.

The bridge never sees an app-sealed answer; it checks the envelope's shape
and its KDF's strength when the package is dropped off (``parse``: below the
spec's n=2**15 is ``WEAK_KDF``; above ``MAX_N``, r other than 8 or p above
``MAX_P`` is refused too, because the server pays for every derivation an
envelope asks for) and opens it when the patient types the answer (``open``).
Every failure to open (wrong answer, tampered bytes, another code) is the
one ``WrongKey``, as AES-GCM's tag check cannot tell them apart either.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import os
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import answers

VERSION = 1
AAD_PREFIX = "rb-package-v1|"
MIN_N = 2**15
"""The spec's minimum KDF strength (section 4): weaker is ``weak_kdf``."""
MAX_N = 2**16
"""64 MiB per derivation at r=8 (answers.SCRYPT_MAXMEM): the most one pickup may cost the server."""
REQUIRED_R = 8
MAX_P = 2
"""p multiplies the CPU cost linearly; 2 doubles it at most."""
NONCE_BYTES = 12
MAX_ENVELOPE_BYTES = 40 * 1024 * 1024
"""20 MiB of content is base64 inside the JSON plaintext and base64 again in ``ct``: (4/3)**2 * 20 MiB
is 35.6 MiB, plus the JSON around it."""
_KEYS = frozenset({"v", "kdf", "n", "r", "p", "salt", "alg", "nonce", "ct"})


class EnvelopeProblem(enum.Enum):
    MALFORMED = "invalid_envelope"
    WEAK_KDF = "weak_kdf"


class EnvelopeError(ValueError):
    def __init__(self, problem: EnvelopeProblem, detail: str) -> None:
        self.problem = problem
        self.detail = detail
        super().__init__(f"{problem.value}: {detail}")


class WrongKey(Exception):
    """The envelope did not open: a wrong answer, or bytes that are not what was sealed."""


@dataclass(frozen=True, slots=True)
class Envelope:
    n: int
    r: int
    p: int
    salt: bytes
    nonce: bytes
    ct: bytes = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        b64 = base64.b64encode
        return {
            "v": VERSION, "kdf": "scrypt", "n": self.n, "r": self.r, "p": self.p,
            "salt": b64(self.salt).decode("ascii"), "alg": "A256GCM",
            "nonce": b64(self.nonce).decode("ascii"), "ct": b64(self.ct).decode("ascii"),
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode("ascii")


def aad(code_canonical: str, client_id: str) -> bytes:
    return (AAD_PREFIX + code_canonical + "|" + client_id).encode("utf-8")


def seal(plaintext: bytes, answer_normalized: str | bytearray, *, code_canonical: str, client_id: str, n: int = MIN_N) -> Envelope:
    """Seal with a fresh salt and nonce (CPU-heavy: scrypt)."""
    salt = os.urandom(answers.SALT_BYTES)
    key = answers.derive(answer_normalized, salt, n=n, r=REQUIRED_R, p=1)
    nonce = os.urandom(NONCE_BYTES)
    ct = AESGCM(key).encrypt(nonce, plaintext, aad(code_canonical, client_id))
    return Envelope(n, REQUIRED_R, 1, salt, nonce, ct)


def open_envelope(env: Envelope, answer: str, *, code_canonical: str, client_id: str) -> bytes:
    """The plaintext, or ``WrongKey`` (CPU-heavy: scrypt). ``answer`` is what was typed."""
    if len(answer) > 4 * answers.MAX_ANSWER:
        raise WrongKey()
    key = answers.derive(answers.normalize(answer), env.salt, n=env.n, r=env.r, p=env.p)
    try:
        return AESGCM(key).decrypt(env.nonce, env.ct, aad(code_canonical, client_id))
    except InvalidTag:
        raise WrongKey() from None


def parse(raw: object) -> Envelope:
    """An envelope from its JSON (decoded), checked for shape and KDF strength."""
    if not isinstance(raw, dict) or set(raw) != _KEYS:
        raise EnvelopeError(EnvelopeProblem.MALFORMED, "an envelope has exactly the keys " + ", ".join(sorted(_KEYS)))
    if raw["v"] != VERSION or raw["kdf"] != "scrypt" or raw["alg"] != "A256GCM":
        raise EnvelopeError(EnvelopeProblem.MALFORMED, 'only v=1, kdf="scrypt", alg="A256GCM"')
    n, r, p = raw["n"], raw["r"], raw["p"]
    if not all(type(x) is int for x in (n, r, p)):
        raise EnvelopeError(EnvelopeProblem.MALFORMED, "n, r and p are integers")
    if n < MIN_N or r < REQUIRED_R:
        raise EnvelopeError(EnvelopeProblem.WEAK_KDF, f"scrypt needs n >= {MIN_N} and r = {REQUIRED_R}")
    if n > MAX_N or n & (n - 1) or r != REQUIRED_R or not 1 <= p <= MAX_P:
        raise EnvelopeError(EnvelopeProblem.MALFORMED, f"n a power of two up to {MAX_N}, r = {REQUIRED_R}, p 1..{MAX_P}")
    salt, nonce, ct = (_b64(raw, k) for k in ("salt", "nonce", "ct"))
    if len(salt) != answers.SALT_BYTES or len(nonce) != NONCE_BYTES or len(ct) < 16:
        raise EnvelopeError(EnvelopeProblem.MALFORMED, "salt 16 bytes, nonce 12 bytes, ct at least the 16-byte tag")
    return Envelope(n, r, p, salt, nonce, ct)


def from_bytes(data: bytes) -> Envelope:
    return parse(json.loads(data))


def _b64(raw: dict[str, Any], key: str) -> bytes:
    value = raw[key]
    if not isinstance(value, str) or len(value) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(EnvelopeProblem.MALFORMED, f"{key} is base64")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(EnvelopeProblem.MALFORMED, f"{key} is base64") from None
