"""cms.sign and cms.encrypt write their structures with a small DER writer (for speed): each
must be, byte for byte, what asn1crypto's encoder writes for the same structure (their former
implementation, kept here as the reference), and verify or decrypt as before."""

from __future__ import annotations

import hashlib

import pytest
from asn1crypto import algos, core
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.asymmetric import ec

from gateway import devpki as pki
from gateway.core import cms
from gateway.core.algorithms import ContentCipher, Digest, KeyTransport
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


BOB = pki.address_leaf(INTER, "bob@b.test")
CAROL = pki.address_leaf(INTER, "carol@c.test")
KEY_ALGORITHMS = {
    "rsaes_pkcs1v15": {"algorithm": "rsaes_pkcs1v15", "parameters": core.Null()},
    **{f"rsaes_oaep_{h}": {"algorithm": "rsaes_oaep", "parameters": algos.RSAESOAEPParams({
        "hash_algorithm": {"algorithm": h},
        "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": h}}})} for h in ("sha1", "sha256")},
}


def enveloped_reference(ours: bytes, recipients: list[pki.Issued], transport: KeyTransport) -> bytes:
    """Our EnvelopedData's random parts (wrapped keys, IV or nonce, ciphertext, tag) put back
    into asn1crypto's objects the way cms.encrypt used to build them."""
    info = asn1_cms.ContentInfo.load(ours)
    content = info["content"]
    kea = KEY_ALGORITHMS["rsaes_pkcs1v15" if transport is KeyTransport.RSA_PKCS1V15
                         else f"rsaes_oaep_{'sha256' if transport is KeyTransport.RSA_OAEP_SHA256 else 'sha1'}"]
    wrapped = {bytes(ri.chosen["rid"].chosen["serial_number"].contents): ri.chosen["encrypted_key"].native
               for ri in content["recipient_infos"]}
    infos = []
    for r in recipients:
        cert = asn1_x509.Certificate.load(r.der)
        infos.append(asn1_cms.RecipientInfo({"ktri": {
            "version": "v0",
            "rid": {"issuer_and_serial_number": {"issuer": cert.issuer, "serial_number": cert.serial_number}},
            "key_encryption_algorithm": kea,
            "encrypted_key": wrapped[bytes(cert.serial_number.to_bytes((cert.serial_number.bit_length() + 8) // 8,
                                                                        "big", signed=True))],
        }}))
    if info["content_type"].native == "authenticated_enveloped_data":
        eci = content["auth_encrypted_content_info"]
        auth = asn1_cms.AuthEnvelopedData({
            "version": "v0", "recipient_infos": infos,
            "auth_encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": {
                    "algorithm": eci["content_encryption_algorithm"]["algorithm"].dotted,
                    "parameters": cms.GcmParameters.load(eci["content_encryption_algorithm"]["parameters"].dump()),
                },
                "encrypted_content": eci["encrypted_content"].native,
            },
            "mac": content["mac"].native,
        })
        return bytes(asn1_cms.ContentInfo({"content_type": "authenticated_enveloped_data", "content": auth}).dump())
    eci = content["encrypted_content_info"]
    enveloped = asn1_cms.EnvelopedData({
        "version": "v0", "recipient_infos": infos,
        "encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": {"algorithm": eci["content_encryption_algorithm"]["algorithm"].dotted,
                                             "parameters": eci["content_encryption_algorithm"]["parameters"].native},
            "encrypted_content": eci["encrypted_content"].native,
        },
    })
    return bytes(asn1_cms.ContentInfo({"content_type": "enveloped_data", "content": enveloped}).dump())


@pytest.mark.parametrize("recipients", [[BOB], [BOB, CAROL]], ids=["one-recipient", "two-recipients"])
@pytest.mark.parametrize("transport", list(KeyTransport), ids=[t.value for t in KeyTransport])
@pytest.mark.parametrize("cipher", [c for c in ContentCipher if not c.weak], ids=lambda c: c.value)
def test_the_der_writer_envelopes_what_asn1crypto_envelopes(cipher, transport, recipients):
    ours = cms.encrypt(CONTENT, [r.ref for r in recipients], cipher, transport)
    assert ours == enveloped_reference(ours, recipients, transport)
    for r in recipients:
        opened = cms.decrypt(ours, [r.pair], DEFAULT_LIMITS)
        assert (bytes(opened.content), opened.cipher, opened.key_transport) == (CONTENT, cipher, transport)
