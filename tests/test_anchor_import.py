"""Anchor files (Direct item 15): every accepted format imports, and every
wrong file is refused with a message saying what it is."""

import pytest

from anchors.importing import AnchorFileError, AnchorProblem, FileKind, Format, read_anchor_file
from tests import anchor_files as files
from tests.pki import NOW, hisp, issue

A = hisp("a.test")
SIGNER = issue("bundle signer", key_usage=True)
OTHER_SIGNER = issue("someone else")


def test_ri_test_bundle_imports(ri_vectors):
    imported = read_anchor_file((ri_vectors / "gateway" / "testBundle.p7b").read_bytes(), "testBundle.p7b", at=NOW)
    assert imported.format is Format.P7B
    assert [c.subject for c in imported.certificates] == ["ST=MO,C=US,CN=sm1.direct.com Root CA"]


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (A.root.pem, Format.PEM),
        (A.root.pem + b"\n" + A.intermediate.pem, Format.PEM),
        (A.root.der, Format.DER),
        (files.p7b(A.root, A.intermediate), Format.P7B),
        (files.p7b(A.root, A.intermediate, pem=True), Format.P7B),
    ],
    ids=["pem", "pem-two", "der", "p7b-der", "p7b-pem"],
)
def test_accepted_formats(data, fmt):
    imported = read_anchor_file(data, "file", at=NOW)
    assert imported.format is fmt
    assert imported.certificates[0] == A.root.ref
    assert imported.warnings == ()


def test_signed_bundle_checked_against_configured_signer():
    bundle = files.p7m(files.p7b(A.root, A.intermediate), SIGNER)
    imported = read_anchor_file(bundle, "bundle.p7m", at=NOW, signer=SIGNER.ref)
    assert imported.format is Format.P7M
    assert set(imported.certificates) == {A.root.ref, A.intermediate.ref}
    assert imported.signer == SIGNER.ref
    assert imported.warnings == ()


def test_signed_bundle_by_wrong_signer_refused():
    bundle = files.p7m(files.p7b(A.root), OTHER_SIGNER)
    with pytest.raises(AnchorFileError) as err:
        read_anchor_file(bundle, "bundle.p7m", at=NOW, signer=SIGNER.ref)
    assert err.value.problem is AnchorProblem.WRONG_SIGNER
    assert "CN=someone else" in str(err.value) and "CN=bundle signer" in str(err.value)


def test_signed_bundle_without_configured_signer_warns():
    imported = read_anchor_file(files.p7m(files.p7b(A.root), OTHER_SIGNER), "b.p7m", at=NOW)
    assert imported.certificates == (A.root.ref,)
    assert any("no bundle signer is configured" in w for w in imported.warnings)


def test_tampered_signed_bundle_refused():
    bundle = bytearray(files.p7m(files.p7b(A.root), SIGNER))
    i = bundle.find(A.root.der[200:220])
    bundle[i] ^= 0x01
    with pytest.raises(AnchorFileError) as err:
        read_anchor_file(bytes(bundle), "b.p7m", at=NOW, signer=SIGNER.ref)
    assert err.value.problem is AnchorProblem.INVALID_SIGNATURE


def test_unsigned_bundle_refused_when_a_signer_is_configured():
    with pytest.raises(AnchorFileError) as err:
        read_anchor_file(files.p7b(A.root), "b.p7b", at=NOW, signer=SIGNER.ref)
    assert err.value.problem is AnchorProblem.UNSIGNED


def test_end_entity_certificate_accepted_with_warning():
    imported = read_anchor_file(A.org.pem, "org.pem", at=NOW)
    assert imported.certificates == (A.org.ref,)
    assert any("not a CA certificate" in w for w in imported.warnings)


def test_expired_anchor_accepted_with_warning():
    import datetime as dt

    imported = read_anchor_file(A.root.pem, "root.pem", at=NOW + dt.timedelta(days=3650))
    assert any("not valid now" in w for w in imported.warnings)


WRONG_FILES = {
    "private-key-pem": (A.org.key_pem(), FileKind.PRIVATE_KEY),
    "private-key-der": (A.org.key_der(), FileKind.PRIVATE_KEY),
    "private-key-encrypted": (files.encrypted_key(A.org), FileKind.PRIVATE_KEY),
    "crl-pem": (files.crl(A.intermediate), FileKind.CRL),
    "crl-der": (files.crl(A.intermediate, files.serialization.Encoding.DER), FileKind.CRL),
    "pkcs12": (files.p12(A.org), FileKind.PKCS12),
    "pkcs12-no-password": (files.p12(A.org, None), FileKind.PKCS12),
    "csr": (files.csr(A.org), FileKind.CSR),
    "public-key": (files.public_key(A.org), FileKind.PUBLIC_KEY),
    "empty": (b"", FileKind.EMPTY),
    "whitespace": (b"\n  \r\n", FileKind.EMPTY),
    "html": (files.HTML, FileKind.HTML),
    "text": (b"Here is our anchor, as requested.\nRegards\n", FileKind.TEXT),
    "binary": (bytes(range(1, 200)), FileKind.UNKNOWN),
}


@pytest.mark.parametrize(("data", "kind"), WRONG_FILES.values(), ids=WRONG_FILES.keys())
def test_wrong_file_refused_saying_what_it_is(data, kind):
    with pytest.raises(AnchorFileError) as err:
        read_anchor_file(data, "upload.pem", at=NOW)
    assert err.value.problem is AnchorProblem.NOT_CERTIFICATES
    assert err.value.kind is kind
    assert f"this is {kind.value}" in str(err.value)
    assert str(err.value).startswith("upload.pem: ")


def test_broken_certificate_is_malformed():
    broken = A.root.pem.replace(b"MII", b"MIX", 1)
    with pytest.raises(AnchorFileError) as err:
        read_anchor_file(broken, "root.pem", at=NOW)
    assert err.value.problem is AnchorProblem.MALFORMED


def test_openssl_trusted_certificate_accepted_with_a_note():
    imported = read_anchor_file(files.trusted_certificate(A.root), "root.trusted.pem", at=NOW)
    assert imported.certificates == (A.root.ref,)  # the exact certificate, without OpenSSL's trust settings
    assert any("TRUSTED CERTIFICATE" in w for w in imported.warnings)


def test_openssl_trusted_certificate_that_rejects_uses_refused():
    with pytest.raises(AnchorFileError) as err:
        read_anchor_file(files.trusted_certificate(A.root, reject=True), "root.trusted.pem", at=NOW)
    assert err.value.problem is AnchorProblem.MALFORMED
    assert "reject" in str(err.value) and "openssl x509" in str(err.value)


def test_certificate_with_its_private_key_warns():
    imported = read_anchor_file(A.root.pem + A.root.key_pem(), "bundle.pem", at=NOW)
    assert imported.certificates == (A.root.ref,)
    assert any("private key" in w for w in imported.warnings)


def test_signed_bundle_without_its_signer_certificate():
    """``openssl cms -sign -nocerts``: verified with the configured signer."""
    bundle = files.p7m_without_certificates(files.p7b(A.root, A.intermediate), SIGNER)
    imported = read_anchor_file(bundle, "b.p7m", at=NOW, signer=SIGNER.ref)
    assert imported.certificates == (A.root.ref, A.intermediate.ref) and imported.signer == SIGNER.ref
    with pytest.raises(AnchorFileError) as err:
        read_anchor_file(bundle, "b.p7m", at=NOW, signer=OTHER_SIGNER.ref)
    assert err.value.problem is AnchorProblem.WRONG_SIGNER
    with pytest.raises(AnchorFileError) as err:
        read_anchor_file(bundle, "b.p7m", at=NOW)
    assert err.value.problem is AnchorProblem.INVALID_SIGNATURE and "give it as the bundle signer" in str(err.value)
