"""cms.sign writes its SignedData with a small DER writer (for speed): it must be, byte for
byte, what asn1crypto's encoder writes for the same structure, and verify as before."""

from __future__ import annotations

import hashlib

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import devpki as pki
from gateway.core import cms
from gateway.core.algorithms import Digest
from gateway.core.limits import DEFAULT_LIMITS

ROOT = pki.root("Sign DER Root")
INTER = pki.intermediate(ROOT, "Sign DER Issuing CA")
RSA_SIGNER = pki.address_leaf(INTER, "alice@a.test")
EC_SIGNER = pki.address_leaf(INTER, "ecila@a.test", key_kind="ec", key_size=256)
CONTENT = b"Content-Type: text/plain\r\n\r\nA referral, with a summary.\r\n" * 40


def reference(content: bytes, signer: pki.Issued, digest: Digest, chain: tuple[pki.Issued, ...], detached: bool,
              signature: bytes) -> bytes:
    """The SignedData as asn1crypto's objects encode it (cms.sign's former implementation)."""
    attrs = [
        asn1_cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        asn1_cms.CMSAttribute({"type": "signing_time", "values": [asn1_cms.Time({"utc_time": pki.NOW})]}),
        asn1_cms.CMSAttribute({"type": "message_digest", "values": [hashlib.new(digest.value, content).digest()]}),
        asn1_cms.CMSAttribute({"type": "smime_capabilities", "values": [[
            {"capability_id": "2.16.840.1.101.3.4.1.42"}, {"capability_id": "2.16.840.1.101.3.4.1.2"},
            {"capability_id": "2.16.840.1.101.3.4.1.46"}]]}),
    ]
    attrs.sort(key=lambda a: a.dump())
    is_rsa = not isinstance(signer.key, ec.EllipticCurvePrivateKey)
    cert = asn1_x509.Certificate.load(signer.der)
    signer_info = asn1_cms.SignerInfo({
        "version": "v1",
        "sid": asn1_cms.SignerIdentifier({"issuer_and_serial_number": asn1_cms.IssuerAndSerialNumber(
            {"issuer": cert.issuer, "serial_number": cert.serial_number})}),
        "digest_algorithm": {"algorithm": digest.value},
        "signed_attrs": asn1_cms.CMSAttributes(attrs),
        "signature_algorithm": {"algorithm": "rsassa_pkcs1v15" if is_rsa else f"{digest.value}_ecdsa"},
        "signature": signature,
    })
    encap: dict[str, object] = {"content_type": "data"}
    if not detached:
        encap["content"] = content
    signed = asn1_cms.SignedData({
        "version": "v1",
        "digest_algorithms": [{"algorithm": digest.value}],
        "encap_content_info": encap,
        "certificates": [cert] + [asn1_x509.Certificate.load(c.der) for c in chain],
        "signer_infos": [signer_info],
    })
    return bytes(asn1_cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "encapsulated"])
@pytest.mark.parametrize("chain", [(), (INTER,), (INTER, ROOT)], ids=["no-chain", "issuer", "issuer-and-root"])
@pytest.mark.parametrize("digest", list(Digest), ids=[d.value for d in Digest])
@pytest.mark.parametrize("signer", [RSA_SIGNER, EC_SIGNER], ids=["rsa", "ec"])
def test_the_der_writer_encodes_what_asn1crypto_encodes(signer, digest, chain, detached):
    ours = cms.sign(CONTENT, signer.pair, digest, pki.NOW, chain=tuple(c.ref for c in chain), detached=detached)
    # RSA PKCS#1 v1.5 is deterministic; ECDSA is not, so the reference takes our signature
    signature = asn1_cms.ContentInfo.load(ours)["content"]["signer_infos"][0]["signature"].native
    assert ours == reference(CONTENT, signer, digest, chain, detached, signature)
    verified = cms.verify(ours, CONTENT if detached else None, DEFAULT_LIMITS)
    assert verified.signer.der == signer.der
