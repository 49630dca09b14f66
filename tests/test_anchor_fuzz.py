"""Anchor files under fuzzing: whatever bytes an administrator uploads or a
bundle URL serves, ``read_anchor_file`` answers with certificates or a typed
``AnchorFileError`` carrying a message, never another exception.

And the property a signed bundle exists for: once a signer is configured, a
damaged ``.p7m`` either is refused or yields exactly the certificates the
signer signed, never anything an attacker could have slipped in.
"""

import base64
from datetime import timedelta

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from hypothesis import given, settings
from hypothesis import strategies as st

from anchors.importing import AnchorFileError, AnchorProblem, Imported, read_anchor_file
from tests import anchor_files as files
from tests.mutations import FUZZ, mutated
from tests.pki import NOW, hisp, issue

A = hisp("a.test")
SIGNER = issue("bundle signer", key_usage=True)
P7B = files.p7b(A.root, A.intermediate)
P7B_PEM = files.p7b(A.root, A.intermediate, pem=True)
P7M = files.p7m(P7B, SIGNER)
PEM_TWO = A.root.pem + b"\n" + A.intermediate.pem
SIGNED_CERTS = (A.root.ref, A.intermediate.ref)


def without_certificates(signed: bytes) -> bytes:
    """The same SignedData with its certificates field emptied (openssl cms -nocerts):
    the signature still verifies, but only against a signer given from outside."""
    info = asn1_cms.ContentInfo.load(signed)
    info["content"]["certificates"] = asn1_cms.CertificateSet([])
    return info.dump(force=True)


P7M_SIGNERLESS = without_certificates(P7M)





def read(data: bytes, **kw) -> Imported | AnchorFileError:
    try:
        imported = read_anchor_file(data, "upload", at=NOW, **kw)
    except AnchorFileError as exc:
        assert exc.source == "upload"
        assert exc.detail, "a refusal must say why"
        assert isinstance(exc.problem, AnchorProblem)
        return exc
    assert imported.certificates, "an accepted file holds at least one certificate"
    return imported


def damaged(der: bytes, at: int, value: int) -> bytes:
    data = bytearray(der)
    data[at] = value
    return bytes(data)


# Byte 12 of our certificates is the version INTEGER's value (30 82 .. .. 30 82 .. .. a0 03 02 01 02);
# byte 15 the serial number's first byte (02 02 10 xx); basicConstraints' value opens 30 03 01 01 ff.
ROOT = A.root.der
BASIC_CONSTRAINTS = ROOT.index(bytes.fromhex("30030101ff"))
def duplicated_extension(der: bytes) -> bytes:
    cert = asn1_x509.Certificate.load(der)
    extensions = cert["tbs_certificate"]["extensions"]
    extensions.append(extensions[-1])
    return cert.dump(force=True)


DAMAGED = {
    "version-4": damaged(ROOT, 12, 3),
    "negative-serial": damaged(ROOT, 15, 0x90),
    "basic-constraints-as-a-set": damaged(ROOT, BASIC_CONSTRAINTS, 0x31),
    "duplicate-extension": duplicated_extension(ROOT),  # RFC 5280 4.2: at most one of each
}


@pytest.mark.parametrize("pem", [False, True], ids=["der", "pem"])
@pytest.mark.parametrize("der", DAMAGED.values(), ids=DAMAGED.keys())
def test_damaged_certificate_refused_as_malformed(der, pem):
    """Found by the fuzzing below: each once escaped as an untyped exception."""
    data = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n" if pem else der
    result = read(data)
    assert isinstance(result, AnchorFileError)
    assert result.problem is AnchorProblem.MALFORMED


def test_ber_p7b_imports_quietly():
    """Java tools write PKCS#7 with indefinite (BER) lengths: a legitimate
    file, so it imports without a warning (found by the fuzzing below)."""
    ber = b"\x30\x80" + P7B[4:] + b"\x00\x00"
    imported = read(ber)
    assert isinstance(imported, Imported)
    assert imported.certificates == SIGNED_CERTS


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data):
    read(data)


@FUZZ
@given(st.sampled_from([b"-----BEGIN CERTIFICATE-----\n", b"-----BEGIN PKCS7-----\n", b"\x30\x82"]), st.binary(max_size=512))
def test_plausible_headers_with_garbage(head, tail):
    read(head + tail)


@pytest.mark.parametrize(
    "original", [A.root.der, PEM_TWO, P7B, P7B_PEM, P7M], ids=["der", "pem-two", "p7b", "p7b-pem", "p7m"]
)
@FUZZ
@given(data=st.data())
def test_mutated_accepted_files(original, data):
    read(data.draw(mutated(original)))


@FUZZ
@given(mutated(P7M))
def test_damaged_signed_bundle_never_yields_unsigned_certificates(data):
    result = read(data, signer=SIGNER.ref)
    if isinstance(result, Imported):
        assert result.certificates == SIGNED_CERTS
        assert result.signer == SIGNER.ref


def test_signerless_bundle_needs_the_configured_signer():
    imported = read(P7M_SIGNERLESS, signer=SIGNER.ref)
    assert isinstance(imported, Imported) and imported.certificates == SIGNED_CERTS
    assert isinstance(read(P7M_SIGNERLESS), AnchorFileError)
    assert isinstance(read(P7M_SIGNERLESS, signer=A.root.ref), AnchorFileError)


@FUZZ
@given(mutated(P7M_SIGNERLESS))
def test_damaged_signerless_bundle_never_yields_unsigned_certificates(data):
    result = read(data, signer=SIGNER.ref)
    if isinstance(result, Imported):
        assert result.certificates == SIGNED_CERTS


@settings(max_examples=60, deadline=timedelta(seconds=3))
@given(st.integers(0, len(P7M) - 1))
def test_every_truncation_of_a_signed_bundle_is_refused(n):
    assert isinstance(read(P7M[:n], signer=SIGNER.ref), AnchorFileError)
