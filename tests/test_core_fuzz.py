"""Property: whatever bytes arrive, open_inbound answers Opened or a typed Rejected.

Mutations are applied at three depths so they reach every parser: the raw
message, the DER of the enveloped-data (re-encoded in base64, so the CMS parser
sees it), and the signed entity inside a valid envelope (so the signature and
MIME walkers see it). A hang shows up as a hypothesis deadline failure.
"""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import (
    Limits,
    Opened,
    Rejected,
    SealOptions,
    SignatureReport,
    inspect_signature,
    open_inbound,
    seal_outbound,
)
from gateway.core.mime import base64_lines

from . import messages, pki, smime
from .mutations import FUZZ as _FUZZ
from .mutations import mutated

FUZZ = settings(_FUZZ, max_examples=400)

A = pki.hisp("a.test")
B = pki.hisp("b.test")
ALICE, BOB = A.address("alice"), B.address("bob")
SEALED = seal_outbound(messages.with_attachment(), ALICE.pair, [BOB.ref], SealOptions(at=pki.NOW)).message
HEAD, BODY = SEALED.split(b"\r\n\r\n", 1)
DER = base64.b64decode(BODY)
SIGNED_ENTITY = smime.detached(smime.wrap(messages.with_attachment()), ALICE.pair)
LIMITS = Limits(max_mime_depth=8, max_mime_parts=50)





def check(raw: bytes) -> None:
    result = open_inbound(raw, [BOB.pair], LIMITS, at=pki.NOW)
    assert isinstance(result, Opened | Rejected)
    if isinstance(result, Rejected):
        assert result.detail


@pytest.mark.slow
@FUZZ
@given(mutated(SEALED))
def test_mutated_raw_message(raw):
    check(raw)


@pytest.mark.slow
@FUZZ
@given(mutated(DER))
def test_mutated_cms_envelope(der):
    check(HEAD + b"\r\n\r\n" + base64_lines(der))


@pytest.mark.slow
@FUZZ
@given(mutated(SIGNED_ENTITY))
def test_mutated_signed_entity_inside_a_valid_envelope(entity):
    check(smime.envelope(entity, [BOB.ref]))


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(raw):
    check(raw)


@settings(max_examples=30, deadline=timedelta(seconds=3))
@given(st.integers(0, len(SEALED)))
def test_every_truncation(n):
    check(SEALED[:n])


SIGNATURE = base64.b64decode(SIGNED_ENTITY.split(b"Content-Transfer-Encoding: base64\r\n\r\n", 1)[1].split(b"--", 1)[0])


def check_signature(blob: bytes) -> None:
    result = inspect_signature(blob, pki.NOW)
    assert isinstance(result, SignatureReport | Rejected)
    if isinstance(result, Rejected):
        assert result.detail


@FUZZ
@given(mutated(SIGNATURE))
def test_mutated_bare_signature(blob):
    check_signature(blob)


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_as_a_bare_signature(blob):
    check_signature(blob)
