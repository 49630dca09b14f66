"""CMS (RFC 5652) for Direct: decrypt, verify, sign, encrypt.

This is the one module that touches ``asn1crypto.cms`` and
``cryptography.hazmat``. ``cryptography``'s own S/MIME helpers cover only
DER, AES-CBC and RSA PKCS#1 v1.5, and verify nothing, so the structures are
read with asn1crypto (which reads BER as ``openssl cms -stream`` and gpgsm
write it) and the primitives come from ``cryptography``.

Failures raise ``CmsError`` carrying a ``RejectReason``. Every decryption
failure after a recipient matched is the same ``DECRYPTION_FAILED``, whatever
broke (key transport, padding, tag), as RFC 3218 advises against padding
oracles.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import der
from .algorithms import ContentCipher, Digest, KeyTransport, SignatureScheme
from .certs import CERTIFICATE_ERRORS, CertRef, KeyPair
from .limits import Limits
from .outcomes import RejectReason


class CmsError(Exception):
    def __init__(self, reason: RejectReason, detail: str, certificate: CertRef | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.certificate = certificate


class GcmParameters(core.Sequence):  # type: ignore[misc]
    """RFC 5084 section 3.2; asn1crypto 1.5 does not define it."""

    _fields = [  # noqa: RUF012 -- asn1crypto's declaration style
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


_CIPHERS: dict[str, ContentCipher] = {
    "aes128_cbc": ContentCipher.AES128_CBC,
    "aes192_cbc": ContentCipher.AES192_CBC,
    "aes256_cbc": ContentCipher.AES256_CBC,
    "aes128_gcm": ContentCipher.AES128_GCM,
    "aes192_gcm": ContentCipher.AES192_GCM,
    "aes256_gcm": ContentCipher.AES256_GCM,
    "tripledes_3key": ContentCipher.DES_EDE3_CBC,
}
_CIPHER_OIDS = {v: k for k, v in _CIPHERS.items()}

_DIGESTS: dict[str, Digest] = {
    "sha1": Digest.SHA1,
    "sha256": Digest.SHA256,
    "sha384": Digest.SHA384,
    "sha512": Digest.SHA512,
}


def _hash(d: Digest) -> hashes.HashAlgorithm:
    return {
        Digest.SHA1: hashes.SHA1(),
        Digest.SHA256: hashes.SHA256(),
        Digest.SHA384: hashes.SHA384(),
        Digest.SHA512: hashes.SHA512(),
    }[d]


T = TypeVar("T")


def _asn1(what: str, fn: Callable[[], T]) -> T:
    """Run an asn1crypto access; its lazy parser raises plain Python errors on bad input."""
    try:
        return fn()
    except CmsError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError) as exc:
        raise CmsError(RejectReason.MALFORMED, f"the {what} is not valid ASN.1/CMS: {exc}") from exc
    except RecursionError as exc:
        raise CmsError(RejectReason.TOO_DEEP, f"the {what} nests too deeply") from exc


_CONTENT_TYPES = {
    "1.2.840.113549.1.7.1": "data",
    "1.2.840.113549.1.7.2": "signed_data",
    "1.2.840.113549.1.7.3": "enveloped_data",
    "1.2.840.113549.1.9.16.1.23": "authenticated_enveloped_data",
    "1.2.840.113549.1.9.16.1.2": "authenticated_data",
    "1.2.840.113549.1.9.16.1.9": "compressed_data",
}
ENVELOPED = ("enveloped_data", "authenticated_enveloped_data")

Buffer = bytes | bytearray | memoryview


def _der(what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except der.DerError as exc:
        raise CmsError(RejectReason.MALFORMED, f"the {what} is not valid BER/DER: {exc}") from exc


def _content_info(buf: Buffer) -> tuple[str, der.Tlv]:
    """(content type name, the [0] EXPLICIT content element) of a ContentInfo (RFC 5652 section 3)."""
    top = der.read(buf, 0, len(buf))
    if top.tag != 0x30:
        raise der.DerError("a ContentInfo is a SEQUENCE")
    kids = der.children(buf, top)
    oid = der.oid(buf, next(kids, None) or _missing("contentType"))
    wrapper = next(kids, None) or _missing("content")
    if wrapper.tag != 0xA0:
        raise der.DerError("the content is not [0] EXPLICIT")
    return _CONTENT_TYPES.get(oid, oid), der.read(buf, wrapper.content_start, wrapper.content_end)


def _missing(what: str) -> der.Tlv:
    raise der.DerError(f"{what} is missing")


def content_type(buf: Buffer) -> tuple[str, bool]:
    """The CMS content type, and whether the encoding uses BER indefinite lengths."""
    name, _ = _der("CMS structure", lambda: _content_info(buf))
    return name, len(buf) > 1 and buf[1] == 0x80



# --------------------------------------------------------------------------- decrypt


@dataclass(frozen=True, slots=True)
class Decrypted:
    content: bytearray
    cipher: ContentCipher
    key_transport: KeyTransport
    recipient: CertRef
    recipient_count: int


def _key_transport(alg: Any) -> tuple[KeyTransport, asym.AsymmetricPadding]:
    name = alg["algorithm"].native
    if name == "rsaes_pkcs1v15":
        return KeyTransport.RSA_PKCS1V15, asym.PKCS1v15()
    if name == "rsaes_oaep":
        params = alg["parameters"]
        hash_name = params["hash_algorithm"]["algorithm"].native
        mgf = params["mask_gen_algorithm"]
        mgf_hash = mgf["parameters"]["algorithm"].native if mgf["algorithm"].native == "mgf1" else None
        label = params["p_source_algorithm"]["parameters"].native or b""
        if hash_name not in ("sha1", "sha256") or mgf_hash not in ("sha1", "sha256"):
            raise CmsError(
                RejectReason.UNSUPPORTED_ALGORITHM,
                f"RSA-OAEP with {hash_name} and MGF1-{mgf_hash} is not supported (SHA-1 and SHA-256 are)",
            )
        h = hashes.SHA256() if hash_name == "sha256" else hashes.SHA1()
        mh = hashes.SHA256() if mgf_hash == "sha256" else hashes.SHA1()
        kt = KeyTransport.RSA_OAEP_SHA256 if hash_name == "sha256" else KeyTransport.RSA_OAEP_SHA1
        return kt, asym.OAEP(mgf=asym.MGF1(mh), algorithm=h, label=label or None)
    raise CmsError(
        RejectReason.UNSUPPORTED_ALGORITHM,
        f"key transport {alg['algorithm'].dotted} is not supported (RSA PKCS#1 v1.5 and RSA-OAEP are)",
    )


@dataclass(frozen=True, slots=True)
class _Identifier:
    """A SignerIdentifier or RecipientIdentifier (RFC 5652 sections 5.3, 6.2.1)."""

    issuer: bytes | None
    serial: int | None
    key_id: bytes | None

    def names(self, cert: CertRef) -> bool:
        if self.key_id is not None:
            return self.key_id == cert.subject_key_identifier
        # Compare DER bytes, not parsed Names: normalising comparison is slow
        # (shared/PERFORMANCE.md) and DER is canonical anyway.
        return self.serial == cert.serial and self.issuer == cert.issuer_der


def _identifier(buf: Buffer, element: der.Tlv) -> _Identifier:
    if element.tag == 0x80:  # [0] subjectKeyIdentifier
        return _Identifier(None, None, bytes(buf[element.content_start : element.content_end]))
    if element.tag != 0x30:
        raise der.DerError("an identifier is issuerAndSerialNumber or [0] subjectKeyIdentifier")
    issuer, serial = list(der.children(buf, element))[:2]
    return _Identifier(der.encoded(buf, issuer), _integer(buf, serial), None)


def _integer(buf: Buffer, element: der.Tlv) -> int:
    if element.tag != 0x02:
        raise der.DerError("expected an INTEGER")
    return int.from_bytes(bytes(buf[element.content_start : element.content_end]), "big", signed=True)


@dataclass(frozen=True, slots=True)
class _KeyTransportRecipient:
    rid: _Identifier
    algorithm: bytes
    encrypted_key: bytes


def _recipients(buf: bytes, limits: Limits) -> tuple[list[_KeyTransportRecipient], int]:
    """The key-transport recipients (RFC 5652 section 6.2.1) and how many recipients there are."""
    top = der.read(buf, 0, len(buf))
    infos = list(der.children(buf, top))
    if len(infos) > limits.max_cms_recipients:
        raise CmsError(
            RejectReason.TOO_LARGE, f"{len(infos)} recipients exceed the limit of {limits.max_cms_recipients}"
        )
    out = []
    for info in infos:
        if info.tag != 0x30:
            continue  # kari [1], kekri [2], pwri [3], ori [4]: key agreement (EC) and others, not ours
        fields = list(der.children(buf, info))
        if len(fields) < 4:
            raise der.DerError("a KeyTransRecipientInfo has four fields")
        key = b"".join(bytes(c) for c in der.octet_chunks(buf, fields[3]))
        out.append(_KeyTransportRecipient(_identifier(buf, fields[1]), der.encoded(buf, fields[2]), key))
    return out, len(infos)


_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"


def _transport_for(encoding: bytes) -> tuple[KeyTransport, asym.AsymmetricPadding]:
    top = der.read(encoding, 0, len(encoding))
    if der.oid(encoding, next(der.children(encoding, top))) == _RSA_ENCRYPTION:
        return KeyTransport.RSA_PKCS1V15, asym.PKCS1v15()
    return _asn1("key transport", lambda: _key_transport(cms.KeyEncryptionAlgorithm.load(encoding)))


@dataclass(frozen=True, slots=True)
class _Envelope:
    """The parts of an (Auth)EnvelopedData, located by offset: small ones as encodings, the
    ciphertext as views into the received buffer (never copied)."""

    recipient_infos: bytes
    algorithm: bytes
    ciphertext: tuple[memoryview, ...]
    auth_attrs: bytes | None
    mac: bytes | None


def _envelope(buf: Buffer, authenticated: bool, content: der.Tlv) -> _Envelope:
    """RFC 5652 section 6.1 and RFC 5083 section 2.1, walked without copying the content."""
    kids = list(der.children(buf, content))
    i = 1  # version
    if i < len(kids) and kids[i].tag == 0xA0:  # originatorInfo [0]
        i += 1
    if i + 1 >= len(kids) or kids[i].tag != 0x31 or kids[i + 1].tag != 0x30:
        raise der.DerError("recipientInfos and encryptedContentInfo not where RFC 5652 puts them")
    recipients, eci = kids[i], kids[i + 1]
    auth_attrs = mac = None
    if authenticated:
        rest = kids[i + 2 :]
        if rest and rest[0].tag == 0xA1:
            # Authenticated as a DER SET OF, not under its [1] IMPLICIT tag (RFC 5083 section 2.1).
            auth_attrs = b"\x31" + der.encoded(buf, rest[0])[1:]
            rest = rest[1:]
        if not rest or rest[0].tag & 0xDF != 0x04:
            raise der.DerError("authEnvelopedData lacks its mac")
        mac = b"".join(bytes(c) for c in der.octet_chunks(buf, rest[0]))
    eci_kids = list(der.children(buf, eci))
    if len(eci_kids) < 3 or eci_kids[2].tag & 0xDF != 0x80:
        raise CmsError(RejectReason.MALFORMED, "the enveloped-data carries no encrypted content")
    return _Envelope(
        der.encoded(buf, recipients),
        der.encoded(buf, eci_kids[1]),
        tuple(der.octet_chunks(buf, eci_kids[2])),
        auth_attrs,
        mac,
    )


def _content_cipher(
    cipher: ContentCipher, cek: bytes, params: Any, mac: bytes | None, aad: bytes | None
) -> tuple[Any, int]:
    if len(cek) != cipher.key_bytes:
        raise ValueError("content-encryption key of the wrong length")
    if cipher.authenticated:
        gcm = params.parse(GcmParameters)
        nonce, icvlen = gcm["aes_nonce"].native, gcm["aes_icvlen"].native
        if mac is None or len(mac) != icvlen:
            raise ValueError("GCM tag length does not match aes-ICVlen")
        context = Cipher(algorithms.AES(cek), modes.GCM(nonce, mac, min_tag_length=icvlen)).decryptor()
        if aad:
            context.authenticate_additional_data(aad)
        return context, 0
    algorithm: algorithms.AES | TripleDES = (
        TripleDES(cek) if cipher is ContentCipher.DES_EDE3_CBC else algorithms.AES(cek)
    )
    return Cipher(algorithm, modes.CBC(params.native)).decryptor(), algorithm.block_size // 8


def _decrypt_content(
    cipher: ContentCipher, cek: bytes, params: Any, chunks: Sequence[memoryview], mac: bytes | None,
    aad: bytes | None,
) -> bytearray:
    """Decrypt into one buffer, chunk by chunk, and strip the padding in place (no copies)."""
    context, block = _content_cipher(cipher, cek, params, mac, aad)
    total = sum(len(c) for c in chunks)
    out = bytearray(total + 32)
    view = memoryview(out)
    n = 0
    for chunk in chunks:
        n += context.update_into(chunk, view[n:])
    tail = context.finalize()
    view.release()
    out[n : n + len(tail)] = tail
    n += len(tail)
    del out[n:]
    if block:  # CBC: PKCS#7 padding (RFC 5652 section 6.3)
        pad = out[-1] if out else 0
        if not 1 <= pad <= block or not hmac.compare_digest(out[-pad:], bytes([pad]) * pad):
            raise ValueError("bad padding")
        del out[-pad:]
    return out


def decrypt(buf: Buffer, keys: Sequence[KeyPair], limits: Limits) -> Decrypted:
    """Open EnvelopedData or AuthEnvelopedData (RFC 5652 section 6, RFC 5083) with one of our keys."""
    content_type_name, element = _der("CMS structure", lambda: _content_info(buf))
    if content_type_name not in ENVELOPED:
        raise CmsError(RejectReason.NOT_ENCRYPTED, f"the CMS content is {content_type_name}, not enveloped-data")
    authenticated = content_type_name == "authenticated_enveloped_data"
    envelope = _der("enveloped-data", lambda: _envelope(buf, authenticated, element))

    def structure() -> tuple[Any, ContentCipher]:
        alg = algos.EncryptionAlgorithm.load(envelope.algorithm)
        name = alg["algorithm"].native
        cipher = _CIPHERS.get(name)
        if cipher is None or cipher.authenticated != authenticated:
            raise CmsError(
                RejectReason.UNSUPPORTED_ALGORITHM,
                f"content encryption {alg['algorithm'].dotted} ({name}) is not supported "
                "(AES-CBC, AES-GCM and, for policy to judge, 3DES are)",
            )
        return alg["parameters"], cipher

    params, cipher = _asn1("enveloped-data", structure)
    recipients, count = _der("recipient infos", lambda: _recipients(envelope.recipient_infos, limits))
    matched = [
        (r, pair)
        for r in recipients
        for pair in keys
        if isinstance(pair.key, rsa.RSAPrivateKey) and r.rid.names(pair.cert)
    ]
    if not matched:
        raise CmsError(
            RejectReason.NO_KEY_FOR_RECIPIENT,
            f"none of the {count} recipients of this message is one of our "
            f"{len(keys)} certificates ({', '.join(k.cert.subject for k in keys) or 'no keys loaded'})",
        )
    last: CmsError | None = None
    for recipient, pair in matched:
        kt, pad = _der("key transport", lambda: _transport_for(recipient.algorithm))  # noqa: B023 -- called at once
        try:
            assert isinstance(pair.key, rsa.RSAPrivateKey)
            cek = pair.key.decrypt(recipient.encrypted_key, pad)
            content = _decrypt_content(cipher, cek, params, envelope.ciphertext, envelope.mac, envelope.auth_attrs)
        except (ValueError, InvalidTag, UnsupportedAlgorithm, TypeError):
            last = CmsError(
                RejectReason.DECRYPTION_FAILED,
                f"the message names our certificate {pair.cert.subject} (serial {pair.cert.serial:x}) "
                "but it could not be decrypted with that key (a key that does not match, "
                "or content altered in transit)",
                pair.cert,
            )
            continue
        return Decrypted(content, cipher, kt, pair.cert, count)
    assert last is not None
    raise last


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True, slots=True)
class Verified:
    content: Buffer
    digest: Digest
    scheme: SignatureScheme
    signer: CertRef
    certificates: tuple[CertRef, ...]
    signing_time: datetime | None


@dataclass(frozen=True, slots=True)
class _CarriedCert:
    """A certificate from the SignedData, with the two fields signer lookup needs,
    read by offset (parsing whole certificates with asn1crypto cost more than the RSA)."""

    encoding: bytes
    issuer: bytes
    serial: int


def _carried(buf: Buffer, element: der.Tlv) -> _CarriedCert:
    tbs = next(der.children(buf, element))
    fields = list(itertools.islice(der.children(buf, tbs), 4))
    i = 1 if fields and fields[0].tag == 0xA0 else 0  # [0] EXPLICIT version
    if len(fields) < i + 3 or fields[i].tag != 0x02:
        raise der.DerError("a certificate without serialNumber and issuer")
    serial = int.from_bytes(bytes(buf[fields[i].content_start : fields[i].content_end]), "big", signed=True)
    return _CarriedCert(der.encoded(buf, element), der.encoded(buf, fields[i + 2]), serial)


@dataclass(frozen=True, slots=True)
class _Signed:
    content_type: str
    content: Buffer | None
    certificates: tuple[_CarriedCert, ...]
    signer_info: bytes


def _signed_data(buf: Buffer, limits: Limits) -> _Signed:
    """RFC 5652 section 5.1, walked by offset; only the SignerInfo goes to asn1crypto."""
    name, content = _content_info(buf)
    if name != "signed_data":
        raise CmsError(RejectReason.NOT_SIGNED, f"the CMS content is {name}, not signed-data")
    kids = list(der.children(buf, content))
    if len(kids) < 4 or kids[2].tag != 0x30 or kids[-1].tag != 0x31:
        raise der.DerError("a SignedData without encapContentInfo or signerInfos")
    encap = list(der.children(buf, kids[2]))
    encap_type = _CONTENT_TYPES.get(der.oid(buf, encap[0]), "other") if encap else "other"
    encapsulated: Buffer | None = None
    if len(encap) > 1 and encap[1].tag == 0xA0:
        inner = der.read(buf, encap[1].content_start, encap[1].content_end)
        encapsulated = b"".join(bytes(c) for c in der.octet_chunks(buf, inner))
    certs: list[_CarriedCert] = []
    for element in kids[3:-1]:
        if element.tag != 0xA0:
            continue  # crls [1]
        for choice in der.children(buf, element):
            if choice.tag == 0x30:  # other choices (attribute certificates) cannot sign
                certs.append(_carried(buf, choice))
                if len(certs) > limits.max_cms_certificates:
                    raise CmsError(
                        RejectReason.TOO_LARGE,
                        f"more than {limits.max_cms_certificates} certificates in one signature",
                    )
    signers = list(der.children(buf, kids[-1]))
    if not signers:
        raise CmsError(RejectReason.NOT_SIGNED, "the signed-data has no signer")
    return _Signed(encap_type, encapsulated, tuple(certs), der.encoded(buf, signers[0]))


def _find_signer(sid: _Identifier, certs: Sequence[_CarriedCert]) -> bytes | None:
    for cert in certs:
        if sid.key_id is None:
            if sid.serial == cert.serial and sid.issuer == cert.issuer:
                return cert.encoding
        elif _key_identifier(cert.encoding) == sid.key_id:
            return cert.encoding
    return None


def _key_identifier(encoding: bytes) -> bytes | None:
    """A carried certificate's subjectKeyIdentifier; one that does not parse names no signer."""
    try:
        return CertRef(encoding).subject_key_identifier
    except CERTIFICATE_ERRORS:
        return None


@dataclass(frozen=True, slots=True)
class _SignerInfo:
    sid: _Identifier
    digest_oid: str
    signed_attrs: bytes | None
    """The [0] IMPLICIT SET OF as it travelled (the signature covers it re-tagged as SET)."""
    attributes: dict[str, bytes]
    """Attribute OID to the encoding of its one value."""
    signature_algorithm: bytes
    signature: bytes


_DIGEST_OIDS = {
    "1.3.14.3.2.26": Digest.SHA1,
    "2.16.840.1.101.3.4.2.1": Digest.SHA256,
    "2.16.840.1.101.3.4.2.2": Digest.SHA384,
    "2.16.840.1.101.3.4.2.3": Digest.SHA512,
}
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_SIGNING_TIME = "1.2.840.113549.1.9.5"


def _signer_info(buf: bytes) -> _SignerInfo:
    """RFC 5652 section 5.3, walked by offset."""
    top = der.read(buf, 0, len(buf))
    fields = list(der.children(buf, top))
    if len(fields) < 5:
        raise der.DerError("a SignerInfo has at least five fields")
    sid = _identifier(buf, fields[1])
    digest_oid = der.oid(buf, next(der.children(buf, fields[2])))
    i = 3
    signed_attrs = None
    attributes: dict[str, bytes] = {}
    if fields[i].tag == 0xA0:
        signed_attrs = der.encoded(buf, fields[i])
        for attr in der.children(buf, fields[i]):
            attr_type, values = list(der.children(buf, attr))[:2]
            name = der.oid(buf, attr_type)
            found = list(der.children(buf, values))
            if name in attributes or len(found) != 1:
                # RFC 5652 section 5.3: each of these attributes once, with one value.
                raise CmsError(RejectReason.MALFORMED, f"signed attribute {name} must appear once with one value")
            attributes[name] = der.encoded(buf, found[0])
        i += 1
    if len(fields) < i + 2:
        raise der.DerError("a SignerInfo lacks its signature")
    signature = b"".join(bytes(c) for c in der.octet_chunks(buf, fields[i + 1]))
    return _SignerInfo(sid, digest_oid, signed_attrs, attributes, der.encoded(buf, fields[i]), signature)


def _attribute_octets(encoding: bytes | None) -> bytes | None:
    if encoding is None:
        return None
    element = der.read(encoding, 0, len(encoding))
    if element.tag != 0x04:
        raise der.DerError("messageDigest is an OCTET STRING")
    return encoding[element.content_start : element.content_end]


def _attribute_oid(encoding: bytes | None) -> str | None:
    return None if encoding is None else der.oid(encoding, der.read(encoding, 0, len(encoding)))


def _signing_time(encoding: bytes | None) -> datetime | None:
    if encoding is None:
        return None
    value = (core.UTCTime if encoding[:1] == b"\x17" else core.GeneralizedTime).load(encoding).native
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_SIGNATURE_FAMILIES = {
    "1.2.840.113549.1.1.1": "rsa",  # rsaEncryption, as RFC 3370 section 3.2 allows
    "1.2.840.113549.1.1.5": "rsa",  # sha1WithRSAEncryption
    "1.2.840.113549.1.1.11": "rsa",  # sha256WithRSAEncryption
    "1.2.840.113549.1.1.12": "rsa",
    "1.2.840.113549.1.1.13": "rsa",
    "1.2.840.10045.4.1": "ecdsa",  # ecdsa-with-SHA1
    "1.2.840.10045.4.3.2": "ecdsa",  # ecdsa-with-SHA256
    "1.2.840.10045.4.3.3": "ecdsa",
    "1.2.840.10045.4.3.4": "ecdsa",
}


def _signature_params(
    encoding: bytes, digest: Digest, public_key: Any
) -> tuple[SignatureScheme, Callable[[bytes, Buffer], None]]:
    top = der.read(encoding, 0, len(encoding))
    family = _SIGNATURE_FAMILIES.get(der.oid(encoding, next(der.children(encoding, top))))
    h = _hash(digest)
    # The common algorithms by OID alone; parameters (RSASSA-PSS) need asn1crypto.
    if family == "rsa" and isinstance(public_key, rsa.RSAPublicKey):
        return SignatureScheme.RSA_PKCS1V15, lambda s, d: public_key.verify(s, d, asym.PKCS1v15(), h)
    if family == "ecdsa" and isinstance(public_key, ec.EllipticCurvePublicKey):
        return SignatureScheme.ECDSA, lambda s, d: public_key.verify(s, d, ec.ECDSA(h))
    alg = algos.SignedDigestAlgorithm.load(encoding)
    try:
        algo = alg.signature_algo
    except ValueError as exc:
        raise CmsError(
            RejectReason.UNSUPPORTED_ALGORITHM, f"signature algorithm {alg['algorithm'].dotted} is not supported"
        ) from exc
    if algo == "rsassa_pss" and isinstance(public_key, rsa.RSAPublicKey):
        params = alg["parameters"]
        pss_hash = _DIGESTS.get(params["hash_algorithm"]["algorithm"].native)
        mgf_hash = _DIGESTS.get(params["mask_gen_algorithm"]["parameters"]["algorithm"].native)
        if pss_hash is None or mgf_hash is None:
            raise CmsError(RejectReason.UNSUPPORTED_ALGORITHM, "RSASSA-PSS with an unsupported hash")
        pss = asym.PSS(mgf=asym.MGF1(_hash(mgf_hash)), salt_length=params["salt_length"].native)
        return SignatureScheme.RSA_PSS, lambda s, d: public_key.verify(s, d, pss, _hash(pss_hash))
    raise CmsError(
        RejectReason.UNSUPPORTED_ALGORITHM,
        f"signature algorithm {algo} does not fit the signer's {type(public_key).__name__} key",
    )


def verify(
    buf: Buffer, detached_content: Buffer | None, limits: Limits, *, content_known: bool = True
) -> Verified:
    """Check the one signature of a SignedData (RFC 5652 sections 5.4 and 5.6).

    ``detached_content`` is the exact signed bytes of a multipart/signed first
    part; ``None`` means the content is encapsulated (opaque signed-data).
    With ``content_known=False`` (a bare detached signature, for diagnosis)
    the signature over the signed attributes is still checked, but the
    messageDigest cannot be.
    """

    parsed = _der("signed-data", lambda: _signed_data(buf, limits))
    if detached_content is not None:
        content: Buffer = detached_content
    elif parsed.content is not None:
        content = parsed.content
    elif not content_known:
        content = b""
    else:
        raise CmsError(RejectReason.MALFORMED, "the signed-data carries no content and none was given")
    content_type = parsed.content_type
    certs = parsed.certificates
    si = _der("signer info", lambda: _signer_info(parsed.signer_info))
    digest = _DIGEST_OIDS.get(si.digest_oid)
    if digest is None:
        raise CmsError(RejectReason.UNSUPPORTED_ALGORITHM, f"digest {si.digest_oid} is not supported (SHA-1/2 are)")
    signer_der = _find_signer(si.sid, certs)
    if signer_der is None:
        raise CmsError(
            RejectReason.SIGNER_NOT_FOUND,
            f"the signer's certificate is not among the {len(certs)} certificates the message carries "
            "(Direct requires it to be included)",
        )
    signer = CertRef(signer_der)
    try:
        signer.x509.extensions  # noqa: B018 -- a signer certificate that does not parse is refused here
    except CERTIFICATE_ERRORS as exc:
        raise CmsError(RejectReason.MALFORMED, f"the signer's certificate does not parse: {exc}") from exc
    try:
        public_key = signer.x509.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CmsError(RejectReason.UNSUPPORTED_ALGORITHM, f"the signer's key cannot be used: {exc}", signer) from exc
    scheme, check_signature = _asn1(
        "signature algorithm", lambda: _signature_params(si.signature_algorithm, digest, public_key)
    )
    signing_time = None
    if si.signed_attrs is None:
        if not content_known:
            raise CmsError(RejectReason.MALFORMED, "a bare detached signature without signed attributes")
        to_verify: Buffer = content
    else:
        expected = _der("messageDigest", lambda: _attribute_octets(si.attributes.get(_MESSAGE_DIGEST)))
        if expected is None:
            raise CmsError(RejectReason.MALFORMED, "signed attributes lack messageDigest (RFC 5652 5.3)", signer)
        if content_known and expected != hashlib.new(digest.value, content).digest():
            raise CmsError(
                RejectReason.DIGEST_MISMATCH,
                f"the {digest.value} digest of the content does not match the signed messageDigest: "
                "the content was changed after signing",
                signer,
            )
        signed_type = _der("contentType", lambda: _attribute_oid(si.attributes.get(_CONTENT_TYPE)))
        if signed_type is None or _CONTENT_TYPES.get(signed_type, "other") != content_type:
            raise CmsError(
                RejectReason.MALFORMED,
                "the signed contentType attribute is missing or differs from the content (RFC 5652 11.1)",
                signer,
            )
        signing_time = _asn1("signingTime", lambda: _signing_time(si.attributes.get(_SIGNING_TIME)))
        # Signed over the DER SET OF, not the [0] IMPLICIT tag it travels under.
        to_verify = b"\x31" + si.signed_attrs[1:]
    try:
        check_signature(si.signature, to_verify)
    except InvalidSignature:
        raise CmsError(
            RejectReason.SIGNATURE_INVALID,
            f"the signature by {signer.subject} (serial {signer.serial:x}) does not verify",
            signer,
        ) from None
    others = tuple(CertRef(c.encoding) for c in certs if c.encoding != signer_der)
    return Verified(content, digest, scheme, signer, others, signing_time)


# --------------------------------------------------------------------------- sign


def _asn1_cert(cert: CertRef) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.der)


def _signed_attributes(content: bytes, digest: Digest, at: datetime) -> cms.CMSAttributes:
    attrs = [
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": at})]}),
        cms.CMSAttribute(
            {"type": "message_digest", "values": [hashlib.new(digest.value, content).digest()]}
        ),
        cms.CMSAttribute(
            {
                "type": "smime_capabilities",
                "values": [
                    [
                        {"capability_id": "2.16.840.1.101.3.4.1.42"},  # AES-256-CBC
                        {"capability_id": "2.16.840.1.101.3.4.1.2"},  # AES-128-CBC
                        {"capability_id": "2.16.840.1.101.3.4.1.46"},  # AES-256-GCM
                    ]
                ],
            }
        ),
    ]
    # DER orders a SET OF by encoding (X.690 11.6); verifiers such as OpenSSL
    # re-encode what they parsed, so an unsorted set would not verify there.
    attrs.sort(key=lambda a: a.dump())
    return cms.CMSAttributes(attrs)


def sign(
    content: bytes,
    pair: KeyPair,
    digest: Digest,
    at: datetime,
    *,
    chain: Sequence[CertRef] = (),
    detached: bool = True,
) -> bytes:
    """A DER SignedData over ``content`` with the signer's certificate included."""
    signed_attrs = _signed_attributes(content, digest, at)
    to_sign = signed_attrs.dump()
    key = pair.key
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(to_sign, asym.PKCS1v15(), _hash(digest))
        sig_alg = {"algorithm": "rsassa_pkcs1v15"}
    else:
        signature = key.sign(to_sign, ec.ECDSA(_hash(digest)))
        sig_alg = {"algorithm": f"{digest.value}_ecdsa"}
    cert = _asn1_cert(pair.cert)
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                        {"issuer": cert.issuer, "serial_number": cert.serial_number}
                    )
                }
            ),
            "digest_algorithm": {"algorithm": digest.value},
            "signed_attrs": signed_attrs,
            "signature_algorithm": sig_alg,
            "signature": signature,
        }
    )
    encap: dict[str, object] = {"content_type": "data"}
    if not detached:
        encap["content"] = content
    certificates = [cert] + [_asn1_cert(c) for c in chain if c != pair.cert]
    signed = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": digest.value}],
            "encap_content_info": encap,
            "certificates": certificates,
            "signer_infos": [signer_info],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


# --------------------------------------------------------------------------- encrypt


def _wrap_key(cek: bytes, recipient: CertRef, transport: KeyTransport) -> cms.RecipientInfo:
    public_key = recipient.x509.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise CmsError(
            RejectReason.UNSUITABLE_KEY,
            f"recipient certificate {recipient.subject} has a {recipient.key_algorithm} key; "
            "Direct key transport needs RSA",
            recipient,
        )
    if transport is KeyTransport.RSA_PKCS1V15:
        pad: asym.AsymmetricPadding = asym.PKCS1v15()
        kea: dict[str, object] = {"algorithm": "rsaes_pkcs1v15", "parameters": core.Null()}
    else:
        name = "sha256" if transport is KeyTransport.RSA_OAEP_SHA256 else "sha1"
        h = hashes.SHA256() if name == "sha256" else hashes.SHA1()
        pad = asym.OAEP(mgf=asym.MGF1(h), algorithm=h, label=None)
        kea = {
            "algorithm": "rsaes_oaep",
            "parameters": algos.RSAESOAEPParams(
                {
                    "hash_algorithm": {"algorithm": name},
                    "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": name}},
                }
            ),
        }
    cert = _asn1_cert(recipient)
    return cms.RecipientInfo(
        {
            "ktri": {
                "version": "v0",
                "rid": {
                    "issuer_and_serial_number": {
                        "issuer": cert.issuer,
                        "serial_number": cert.serial_number,
                    }
                },
                "key_encryption_algorithm": kea,
                "encrypted_key": public_key.encrypt(cek, pad),
            }
        }
    )


def encrypt(
    content: bytes,
    recipients: Sequence[CertRef],
    cipher: ContentCipher,
    transport: KeyTransport,
) -> bytes:
    """A DER EnvelopedData (CBC) or AuthEnvelopedData (GCM, RFC 5083/5084) for every recipient."""
    if cipher.weak:
        raise CmsError(RejectReason.UNSUPPORTED_ALGORITHM, "3DES is never used to send (Direct AS 1.2)")
    cek = os.urandom(cipher.key_bytes)
    infos = [_wrap_key(cek, r, transport) for r in recipients]
    oid = _CIPHER_OIDS[cipher]
    if cipher.authenticated:
        nonce = os.urandom(12)  # RFC 5084 section 3.2 recommends 12 octets
        gcm = Cipher(algorithms.AES(cek), modes.GCM(nonce)).encryptor()
        ciphertext = gcm.update(content) + gcm.finalize()
        auth = cms.AuthEnvelopedData(
            {
                "version": "v0",
                "recipient_infos": infos,
                "auth_encrypted_content_info": {
                    "content_type": "data",
                    "content_encryption_algorithm": {
                        "algorithm": oid,
                        "parameters": GcmParameters({"aes_nonce": nonce, "aes_icvlen": 16}),
                    },
                    "encrypted_content": ciphertext,
                },
                "mac": gcm.tag,
            }
        )
        info = cms.ContentInfo({"content_type": "authenticated_enveloped_data", "content": auth})
        return bytes(info.dump())
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    enveloped = cms.EnvelopedData(
        {
            "version": "v0",
            "recipient_infos": infos,
            "encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": {"algorithm": oid, "parameters": iv},
                "encrypted_content": ciphertext,
            },
        }
    )
    return bytes(cms.ContentInfo({"content_type": "enveloped_data", "content": enveloped}).dump())
