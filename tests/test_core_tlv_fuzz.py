"""Property: whatever the shape of the CMS, open_inbound and inspect_signature answer, never raise.

A structure-aware fuzzer (tests/tlv.py): valid CMS structures are parsed into
a TLV tree, mutated at the element level (drop, duplicate, empty, retag,
swap, nest, indefinite lengths, BER-constructed strings) and re-encoded with
correct lengths, so the mutation reaches the field checks behind the headers.
Four targets: the enveloped-data (CBC) and authenticated-enveloped-data (GCM)
as received, and the detached and opaque signed-data inside a valid
envelope. The only allowed outcomes are Opened, SignatureReport or a typed
Rejected with a detail. Every crash found is pinned in tests/test_core_der.py.

The default profile runs a few hundred examples; the slow one (CI) many more.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings

from gateway.core import Opened, Rejected, SignatureReport, inspect_signature

from . import pki
from .cms_vectors import (
    CBC,
    DETACHED_SIG,
    GCM,
    OPAQUE_SIG,
    detached_message,
    enveloped_message,
    opaque_message,
    open_as_bob,
)
from .tlv import mutated_tree

DEFAULT = settings(
    max_examples=150,
    deadline=timedelta(seconds=10),  # a hang, not a loaded shared machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MANY = settings(DEFAULT, max_examples=3000)


def opened_or_rejected(raw: bytes) -> None:
    result = open_as_bob(raw)
    assert isinstance(result, Opened | Rejected), result
    if isinstance(result, Rejected):
        assert result.detail


def report_or_rejected(blob: bytes) -> None:
    result = inspect_signature(blob, pki.NOW)
    assert isinstance(result, SignatureReport | Rejected), result
    if isinstance(result, Rejected):
        assert result.detail


def check_enveloped(der: bytes) -> None:
    opened_or_rejected(enveloped_message(der))


def check_detached(signature: bytes) -> None:
    opened_or_rejected(detached_message(signature))
    report_or_rejected(signature)


def check_opaque(signed_data: bytes) -> None:
    opened_or_rejected(opaque_message(signed_data))
    report_or_rejected(signed_data)


def test_the_unmutated_targets_open():
    for raw in (
        enveloped_message(CBC),
        enveloped_message(GCM),
        detached_message(DETACHED_SIG),
        opaque_message(OPAQUE_SIG),
    ):
        assert isinstance(open_as_bob(raw), Opened)
    assert isinstance(inspect_signature(DETACHED_SIG, pki.NOW), SignatureReport)


TARGETS = [
    pytest.param(CBC, check_enveloped, id="enveloped-cbc"),
    pytest.param(GCM, check_enveloped, id="auth-enveloped-gcm"),
    pytest.param(DETACHED_SIG, check_detached, id="detached-signed-data"),
    pytest.param(OPAQUE_SIG, check_opaque, id="opaque-signed-data"),
]


@pytest.mark.parametrize(("original", "check"), TARGETS)
def test_tlv_mutations(original, check):
    @DEFAULT
    @given(mutated_tree(original))
    def run(blob):
        check(blob)

    run()


@pytest.mark.slow
@pytest.mark.parametrize(("original", "check"), TARGETS)
def test_tlv_mutations_many(original, check):
    @MANY
    @given(mutated_tree(original, max_mutations=8))
    def run(blob):
        check(blob)

    run()
