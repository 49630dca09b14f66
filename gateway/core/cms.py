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

import functools
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
from .certs import CERTIFICATE_ERRORS, CertRef, KeyPair, carried
from .limits import Limits
from .outcomes import RejectReason, decryption_failed


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


_HASHES = {Digest.SHA1: hashlib.sha1, Digest.SHA256: hashlib.sha256, Digest.SHA384: hashlib.sha384, Digest.SHA512: hashlib.sha512}
"""hashlib's constructors (``hashlib.new`` finds one by name at each call)."""


_HASH_ALGORITHMS: dict[Digest, hashes.HashAlgorithm] = {
    Digest.SHA1: hashes.SHA1(),
    Digest.SHA256: hashes.SHA256(),
    Digest.SHA384: hashes.SHA384(),
    Digest.SHA512: hashes.SHA512(),
}


def _hash(d: Digest) -> hashes.HashAlgorithm:
    return _HASH_ALGORITHMS[d]


def _tlv(tag: int, body: bytes) -> bytes:
    """One DER element (X.690 8.1: definite length, short form under 128 octets)."""
    n = len(body)
    if n < 0x80:
        return bytes((tag, n)) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + body


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

Buffer = der.Buffer


def _der(what: str, fn: Callable[[], T]) -> T:
    """Run a walk; its failures become the typed rejection they carry (MALFORMED, TOO_LARGE, TOO_DEEP)."""
    try:
        return fn()
    except der.DerError as exc:
        if exc.reason is RejectReason.MALFORMED:
            raise CmsError(exc.reason, f"the {what} is not valid BER/DER: {exc.detail}") from exc
        raise CmsError(exc.reason, f"the {what}: {exc.detail}") from exc


def _content_info(walk: der.Walk) -> tuple[str, der.Tlv]:
    """(content type OID, the content inside [0] EXPLICIT) of a ContentInfo (RFC 5652 section 3)."""
    top = walk.top()
    if top.tag != 0x30:
        raise der.DerError("a ContentInfo is a SEQUENCE")
    type_element, wrapper = walk.fields(top, 2, 2, "a ContentInfo")
    if wrapper.tag != 0xA0:
        raise der.DerError("the content is not [0] EXPLICIT")
    return walk.oid(type_element), walk.only(wrapper, "the [0] EXPLICIT content")


def content_type(buf: Buffer) -> tuple[str, bool]:
    """The CMS content type (its name, or its OID when unknown), and whether the encoding uses BER
    indefinite lengths."""

    def peek() -> str:
        # Only the contentType, the ContentInfo's first field: a streamed message's end is found
        # once, by decrypt or verify, not here as well.
        walk = der.Walk(buf)
        tag, first = walk.peek(0, len(buf))
        if tag != 0x30:
            raise der.DerError("a ContentInfo is a SEQUENCE")
        return walk.oid(walk.read(first, len(buf)))

    oid = _der("CMS structure", peek)
    return _CONTENT_TYPES.get(oid, oid), len(buf) > 1 and buf[1] == 0x80


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


def _identifier(walk: der.Walk, element: der.Tlv) -> _Identifier:
    if element.tag == 0x80:  # [0] subjectKeyIdentifier
        return _Identifier(None, None, walk.content(element))
    if element.tag != 0x30:
        raise der.DerError("an identifier is issuerAndSerialNumber or [0] subjectKeyIdentifier")
    issuer, serial = walk.fields(element, 2, 2, "an IssuerAndSerialNumber")
    if issuer.tag != 0x30:
        raise der.DerError("an issuer is a Name (a SEQUENCE)")
    return _Identifier(walk.encoded(issuer), walk.integer(serial), None)


@dataclass(frozen=True, slots=True)
class _KeyTransportRecipient:
    rid: _Identifier
    algorithm: bytes
    encrypted_key: bytes


def _recipients(walk: der.Walk, infos: der.Tlv, limits: Limits) -> tuple[list[_KeyTransportRecipient], int]:
    """The key-transport recipients (RFC 5652 section 6.2.1) and how many recipients there are,
    counted against the limit as they are met."""
    out = []
    count = 0
    for info in walk.take(infos, limits.max_cms_recipients, "recipients"):
        count += 1
        if info.tag != 0x30:
            continue  # kari [1], kekri [2], pwri [3], ori [4]: key agreement (EC) and others, not ours
        version, rid, algorithm, key = walk.fields(info, 4, 4, "a KeyTransRecipientInfo")
        if version.tag != 0x02 or algorithm.tag != 0x30:
            raise der.DerError("a KeyTransRecipientInfo is version, rid, algorithm, encryptedKey")
        out.append(_KeyTransportRecipient(_identifier(walk, rid), walk.encoded(algorithm), walk.octets(key)))
    return out, count


_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"


def _algorithm_encodings(oid: str) -> tuple[bytes, bytes]:
    """An AlgorithmIdentifier for ``oid`` as DER writes it, with NULL parameters and without."""
    encoded = core.ObjectIdentifier(oid).dump()
    return _tlv(0x30, encoded + b"\x05\x00"), _tlv(0x30, encoded)


_RSA_TRANSPORT = (KeyTransport.RSA_PKCS1V15, asym.PKCS1v15())
_RSA_TRANSPORT_ENCODINGS = frozenset(_algorithm_encodings(_RSA_ENCRYPTION))
"""rsaEncryption as senders write it, known without a walk (what the walk below finds in them)."""


def _transport_for(encoding: bytes) -> tuple[KeyTransport, asym.AsymmetricPadding]:
    if encoding in _RSA_TRANSPORT_ENCODINGS:
        return _RSA_TRANSPORT
    walk, top = der.read_one(encoding)
    if der.oid(encoding, walk.fields(top, 1, 2, "an AlgorithmIdentifier")[0]) == _RSA_ENCRYPTION:
        return KeyTransport.RSA_PKCS1V15, asym.PKCS1v15()
    return _asn1("key transport", lambda: _key_transport(cms.KeyEncryptionAlgorithm.load(encoding)))


@dataclass(frozen=True, slots=True)
class _Envelope:
    """The parts of an (Auth)EnvelopedData, located by offset: small ones as encodings, the
    ciphertext as views into the received buffer (never copied)."""

    recipient_infos: der.Tlv
    algorithm: bytes
    ciphertext: tuple[memoryview, ...]
    auth_attrs: bytes | None
    mac: bytes | None


def _envelope(walk: der.Walk, authenticated: bool, content: der.Tlv, limits: Limits) -> _Envelope:
    """RFC 5652 section 6.1 and RFC 5083 section 2.1, walked without copying the content.

    EnvelopedData is version, [0] originatorInfo?, recipientInfos, encryptedContentInfo,
    [1] unprotectedAttrs?; AuthEnvelopedData puts [1] authAttrs?, mac, [2] unauthAttrs? after it."""
    kids = walk.fields(content, 3, 7 if authenticated else 5, "an (Auth)EnvelopedData")
    if kids[0].tag != 0x02:
        raise der.DerError("an (Auth)EnvelopedData starts with its version")
    i = 2 if kids[1].tag == 0xA0 else 1  # originatorInfo [0]
    if i + 1 >= len(kids) or kids[i].tag != 0x31 or kids[i + 1].tag != 0x30:
        raise der.DerError("recipientInfos and encryptedContentInfo not where RFC 5652 puts them")
    recipients, eci = kids[i], kids[i + 1]
    rest = list(kids[i + 2 :])
    auth_attrs = mac = None
    if authenticated:
        if rest and rest[0].tag == 0xA1:
            # Authenticated as a DER SET OF, not under its [1] IMPLICIT tag (RFC 5083 section 2.1).
            auth_attrs = b"\x31" + walk.encoded(rest.pop(0))[1:]
        if not rest or rest[0].tag & 0xDF != 0x04:
            raise der.DerError("authEnvelopedData lacks its mac")
        mac = walk.octets(rest.pop(0))
        unexpected = [e for e in rest if e.tag != 0xA2]
    else:
        unexpected = [e for e in rest if e.tag != 0xA1]
    if unexpected or len(rest) > 1:
        raise der.DerError("fields after the encrypted content that RFC 5652 and RFC 5083 do not define")
    eci_kids = walk.fields(eci, 2, 3, "an EncryptedContentInfo")
    if len(eci_kids) < 3 or eci_kids[2].tag & 0xDF != 0x80 or eci_kids[1].tag != 0x30:
        raise CmsError(RejectReason.MALFORMED, "the enveloped-data carries no encrypted content")
    piece = eci_kids[2]
    at_most = limits.max_cms_chunks(piece.end - piece.start)
    return _Envelope(
        recipients,
        walk.encoded(eci_kids[1]),
        tuple(walk.octet_chunks(piece, at_most, implicit=True)),
        auth_attrs,
        mac,
    )


@dataclass(frozen=True, slots=True)
class _ContentAlgorithm:
    """A content-encryption algorithm and its parameters, checked before any key is used."""

    cipher: ContentCipher
    iv: bytes
    """The CBC IV, or the GCM nonce."""
    tag_length: int
    """The GCM tag length (aes-ICVlen); 0 for CBC."""


_GCM_TAG_LENGTHS = range(12, 17)  # RFC 5084 section 3.2: AES-GCM-ICVlen ::= INTEGER (12 | 13 | 14 | 15 | 16)
_GCM_NONCE_LENGTHS = range(8, 129)  # 12 recommended (RFC 5084 3.2); what cryptography's GCM accepts


def _cbc_prefixes() -> dict[bytes, ContentCipher]:
    """The DER of each CBC AlgorithmIdentifier up to its IV, by cipher."""
    out = {}
    for name, cipher in _CIPHERS.items():
        if not cipher.authenticated:
            iv = bytes(8 if cipher is ContentCipher.DES_EDE3_CBC else 16)
            encoding = algos.EncryptionAlgorithm({"algorithm": name, "parameters": iv}).dump()
            out[encoding[: -len(iv)]] = cipher
    return out


_CBC_PREFIXES = _cbc_prefixes()
"""A CBC algorithm with its IV as every sender writes it (DER, an OCTET STRING of one
block) is read from these without asn1crypto; any other encoding is read by asn1crypto."""


def _content_algorithm(encoding: bytes, authenticated: bool, mac: bytes | None) -> _ContentAlgorithm:
    if not authenticated and len(encoding) in (22, 31):  # 3DES with its 8-byte IV, AES with 16
        iv_length = 8 if len(encoding) == 22 else 16
        cbc = _CBC_PREFIXES.get(encoding[:-iv_length])
        if cbc is not None:
            return _ContentAlgorithm(cbc, encoding[-iv_length:], 0)
    alg = algos.EncryptionAlgorithm.load(encoding)
    name = alg["algorithm"].native
    cipher = _CIPHERS.get(name)
    if cipher is None or cipher.authenticated != authenticated:
        raise CmsError(
            RejectReason.UNSUPPORTED_ALGORITHM,
            f"content encryption {alg['algorithm'].dotted} ({name}) is not supported "
            "(AES-CBC, AES-GCM and, for policy to judge, 3DES are)",
        )
    if cipher.authenticated:
        gcm = alg["parameters"].parse(GcmParameters)
        nonce, tag_length = gcm["aes_nonce"].native, gcm["aes_icvlen"].native
        if tag_length not in _GCM_TAG_LENGTHS:
            # A short tag makes forgery cheap (NIST SP 800-38D appendix C); RFC 5084 allows 12 to 16.
            raise CmsError(
                RejectReason.MALFORMED, f"an AES-GCM tag of {tag_length} bytes (RFC 5084 3.2 allows 12 to 16)"
            )
        if mac is None or len(mac) != tag_length:
            raise CmsError(RejectReason.MALFORMED, "the AES-GCM mac is not as long as aes-ICVlen says")
        if len(nonce) not in _GCM_NONCE_LENGTHS:
            raise CmsError(RejectReason.UNSUPPORTED_ALGORITHM, f"an AES-GCM nonce of {len(nonce)} bytes")
        return _ContentAlgorithm(cipher, nonce, tag_length)
    iv = alg["parameters"].native
    block = 8 if cipher is ContentCipher.DES_EDE3_CBC else 16
    if not isinstance(iv, bytes) or len(iv) != block:
        raise CmsError(RejectReason.MALFORMED, f"a CBC IV is one {block}-byte block (RFC 3565 4.1, RFC 3370 5.1)")
    return _ContentAlgorithm(cipher, iv, 0)


def _content_cipher(algorithm: _ContentAlgorithm, cek: bytes, mac: bytes | None, aad: bytes | None) -> tuple[Any, int]:
    cipher = algorithm.cipher
    if len(cek) != cipher.key_bytes:
        raise ValueError("content-encryption key of the wrong length")
    if cipher.authenticated:
        mode = modes.GCM(algorithm.iv, mac, min_tag_length=algorithm.tag_length)
        context = Cipher(algorithms.AES(cek), mode).decryptor()
        if aad:
            context.authenticate_additional_data(aad)
        return context, 0
    primitive: algorithms.AES | TripleDES = (
        TripleDES(cek) if cipher is ContentCipher.DES_EDE3_CBC else algorithms.AES(cek)
    )
    return Cipher(primitive, modes.CBC(algorithm.iv)).decryptor(), primitive.block_size // 8


def _decrypt_content(
    algorithm: _ContentAlgorithm, cek: bytes, chunks: Sequence[memoryview], mac: bytes | None, aad: bytes | None
) -> bytearray:
    """Decrypt into one buffer, chunk by chunk, and strip the padding in place (no copies)."""
    context, block = _content_cipher(algorithm, cek, mac, aad)
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
    """Open EnvelopedData or AuthEnvelopedData (RFC 5652 section 6, RFC 5083) with one of our keys.

    Everything that can be judged without a key (structure, limits, algorithms and
    their parameters, a GCM tag length) is judged first, each with its own reason;
    after a recipient matched one of our keys, every failure is the same
    DECRYPTION_FAILED with the same detail (RFC 3218 section 2.3)."""
    walk = der.Walk(buf)
    oid, element = _der("CMS structure", lambda: _content_info(walk))
    name = _CONTENT_TYPES.get(oid, oid)
    if name not in ENVELOPED:
        raise CmsError(RejectReason.NOT_ENCRYPTED, f"the CMS content is {name}, not enveloped-data")
    authenticated = name == "authenticated_enveloped_data"
    envelope = _der("enveloped-data", lambda: _envelope(walk, authenticated, element, limits))
    algorithm = _asn1("enveloped-data", lambda: _content_algorithm(envelope.algorithm, authenticated, envelope.mac))
    recipients, count = _der("recipient infos", lambda: _recipients(walk, envelope.recipient_infos, limits))
    matched: list[tuple[_KeyTransportRecipient, KeyPair]] = []
    used: set[int] = set()
    for r in recipients:
        for n, pair in enumerate(keys):
            # One attempt per key of ours: recipients naming the same certificate twice cost one RSA decrypt.
            if n not in used and isinstance(pair.key, rsa.RSAPrivateKey) and r.rid.names(pair.cert):
                used.add(n)
                matched.append((r, pair))
    if not matched:
        raise CmsError(
            RejectReason.NO_KEY_FOR_RECIPIENT,
            f"none of the {count} recipients of this message is one of our "
            f"{len(keys)} certificates ({', '.join(k.cert.subject for k in keys) or 'no keys loaded'})",
        )
    transports = [_der("key transport", lambda: _transport_for(r.algorithm)) for r, _ in matched]  # noqa: B023
    last: CmsError | None = None
    for (recipient, pair), (kt, pad) in zip(matched, transports, strict=True):
        key = pair.key
        assert isinstance(key, rsa.RSAPrivateKey)
        try:
            cek = key.decrypt(recipient.encrypted_key, pad)
            content = _decrypt_content(algorithm, cek, envelope.ciphertext, envelope.mac, envelope.auth_attrs)
        except (ValueError, InvalidTag, UnsupportedAlgorithm, TypeError):
            failed = decryption_failed(pair.cert)  # the same outcome inbound gives later failures
            last = CmsError(failed.reason, failed.detail, failed.certificate)
            continue
        return Decrypted(content, algorithm.cipher, kt, pair.cert, count)
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


CARRIED_KEPT = 256
"""Carried certificates whose fields are kept between messages: a peer signs every message
with the same certificate and chain (as ``certs.CARRIED_CERTIFICATES``)."""
CARRIED_KEPT_BYTES = 16 * 1024
"""Only certificates up to this size are kept (real ones are 1-2 KB), so the kept ones hold
at most CARRIED_KEPT times this."""
_carried_kept: dict[bytes, tuple[_CarriedCert, int]] = {}


def _carried(walk: der.Walk, element: der.Tlv) -> _CarriedCert:
    """The certificate at ``element``; one seen before in another message is not walked
    again, but its steps still count against this walk's budget (so a message is refused,
    or not, exactly as if it had been walked)."""
    encoding = walk.encoded(element)
    kept = _carried_kept.get(encoding)
    if kept is not None:
        walk.charge(kept[1])
        return kept[0]
    steps, indefinite = walk.steps, walk.indefinite
    cert = _walk_carried(walk, element, encoding)
    if walk.indefinite == indefinite and len(encoding) <= CARRIED_KEPT_BYTES:
        # DER throughout: the walk remembered no end, so the same bytes walk the same anywhere.
        if len(_carried_kept) >= CARRIED_KEPT:
            _carried_kept.clear()  # a flood of distinct certificates costs their walks, as before
        _carried_kept[encoding] = (cert, walk.steps - steps)
    return cert


def _walk_carried(walk: der.Walk, element: der.Tlv, encoding: bytes) -> _CarriedCert:
    tbs = walk.fields(element, 3, 3, "a Certificate")[0]  # tbsCertificate, signatureAlgorithm, signature
    if tbs.tag != 0x30:
        raise der.DerError("a certificate without its tbsCertificate")
    fields = list(itertools.islice(walk.children(tbs), 4))
    i = 1 if fields and fields[0].tag == 0xA0 else 0  # [0] EXPLICIT version
    if len(fields) < i + 3 or fields[i].tag != 0x02 or fields[i + 2].tag != 0x30:
        raise der.DerError("a certificate without serialNumber and issuer")
    return _CarriedCert(encoding, walk.encoded(fields[i + 2]), walk.integer(fields[i]))


@dataclass(frozen=True, slots=True)
class _Signed:
    content_type: str
    """The encapsulated content's type, as an OID (compared with the signed contentType attribute)."""
    content: Buffer | None
    certificates: tuple[_CarriedCert, ...]
    signer_info: der.Tlv


def _signed_data(walk: der.Walk, limits: Limits) -> _Signed:
    """RFC 5652 section 5.1, walked by offset, every count checked as it is met.

    SignedData is version, digestAlgorithms, encapContentInfo, [0] certificates?, [1] crls?,
    signerInfos. CRLs are skipped unread: nothing here uses them (revocation is the trust
    layer's, from its own sources), so they cost one header however many there are."""
    oid, content = _content_info(walk)
    name = _CONTENT_TYPES.get(oid, oid)
    if name != "signed_data":
        raise CmsError(RejectReason.NOT_SIGNED, f"the CMS content is {name}, not signed-data")
    kids = walk.fields(content, 4, 6, "a SignedData")
    if kids[0].tag != 0x02 or kids[1].tag != 0x31 or kids[2].tag != 0x30 or kids[-1].tag != 0x31:
        raise der.DerError("a SignedData is version, digestAlgorithms, encapContentInfo, ..., signerInfos")
    optional = [k.tag for k in kids[3:-1]]
    if optional not in ([], [0xA0], [0xA1], [0xA0, 0xA1]):
        raise der.DerError("a SignedData holds [0] certificates and [1] crls at most once each, in that order")
    encap = walk.fields(kids[2], 1, 2, "an EncapsulatedContentInfo")
    encap_type = walk.oid(encap[0])
    encapsulated: Buffer | None = None
    if len(encap) > 1:
        if encap[1].tag != 0xA0:
            raise der.DerError("the eContent is not [0] EXPLICIT")
        inner = walk.only(encap[1], "the [0] EXPLICIT eContent")
        at_most = limits.max_cms_chunks(inner.end - inner.start)
        encapsulated = b"".join(walk.octet_chunks(inner, at_most))
    certs: list[_CarriedCert] = []
    if optional[:1] == [0xA0]:
        for choice in walk.take(kids[3], limits.max_cms_certificates, "certificates in one signature"):
            if choice.tag == 0x30:  # other choices (attribute certificates) cannot sign
                certs.append(_carried(walk, choice))
    first: der.Tlv | None = None
    for signer in walk.take(kids[-1], limits.max_cms_signers, "signers"):
        # Direct sends one signer; the first is the one verified and bound (limits.MAX_CMS_SIGNERS).
        if first is None:
            first = signer
    if first is None:
        raise CmsError(RejectReason.NOT_SIGNED, "the signed-data has no signer")
    return _Signed(encap_type, encapsulated, tuple(certs), first)


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
        return carried(bytes(encoding)).subject_key_identifier
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


def _signer_info(walk: der.Walk, element: der.Tlv, limits: Limits) -> _SignerInfo:
    """RFC 5652 section 5.3, walked by offset: version, sid, digestAlgorithm, [0] signedAttrs?,
    signatureAlgorithm, signature, [1] unsignedAttrs? (the last never read)."""
    fields = walk.fields(element, 5, 7, "a SignerInfo")
    if fields[0].tag != 0x02 or fields[2].tag != 0x30:
        raise der.DerError("a SignerInfo starts with version, sid and digestAlgorithm")
    sid = _identifier(walk, fields[1])
    digest_oid = walk.oid(walk.fields(fields[2], 1, 2, "an AlgorithmIdentifier")[0])
    i = 3
    signed_attrs = None
    attributes: dict[str, bytes] = {}
    if fields[i].tag == 0xA0:
        signed_attrs = walk.encoded(fields[i])
        for attr in walk.take(fields[i], limits.max_cms_signed_attributes, "signed attributes"):
            attr_type, values = walk.fields(attr, 2, 2, "an Attribute")
            name = walk.oid(attr_type)
            if values.tag != 0x31:
                raise der.DerError("an Attribute's values are a SET")
            found = list(itertools.islice(walk.children(values), 2))
            if name in attributes or len(found) != 1:
                # RFC 5652 section 5.3: each of these attributes once, with one value.
                raise CmsError(RejectReason.MALFORMED, f"signed attribute {name} must appear once with one value")
            attributes[name] = walk.encoded(found[0])
        i += 1
    rest = fields[i:]
    if len(rest) < 2 or rest[0].tag != 0x30 or (len(rest) == 3 and rest[2].tag != 0xA1) or len(rest) > 3:
        raise der.DerError("a SignerInfo ends with signatureAlgorithm, signature and [1] unsignedAttrs?")
    signature = walk.octets(rest[1])
    return _SignerInfo(sid, digest_oid, signed_attrs, attributes, walk.encoded(rest[0]), signature)


def _attribute_octets(encoding: bytes | None) -> bytes | None:
    if encoding is None:
        return None
    walk, element = der.read_one(encoding)
    if element.tag != 0x04:
        raise der.DerError("messageDigest is an OCTET STRING")
    return walk.content(element)


def _attribute_oid(encoding: bytes | None) -> str | None:
    if encoding is None:
        return None
    walk, element = der.read_one(encoding)
    return walk.oid(element)


def _signing_time(encoding: bytes | None) -> datetime | None:
    if encoding is None:
        return None
    if len(encoding) == 15 and encoding[:2] == b"\x17\x0d" and encoding[14] == 0x5A and encoding[2:14].isdigit():
        # UTCTime YYMMDDHHMMSSZ, the form RFC 5280 4.1.2.5.1 prescribes and senders write, read as
        # asn1crypto reads it (years 50-99 are 19xx); a date that does not exist is left to it.
        year = int(encoding[2:4])
        try:
            return datetime(
                year + (1900 if year >= 50 else 2000),
                int(encoding[4:6]), int(encoding[6:8]), int(encoding[8:10]), int(encoding[10:12]), int(encoding[12:14]),
                tzinfo=UTC,
            )
        except ValueError:
            pass
    value = (core.UTCTime if encoding[:1] == b"\x17" else core.GeneralizedTime).load(encoding, strict=True).native
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


_FAMILY_ENCODINGS = {
    encoding: family for oid, family in _SIGNATURE_FAMILIES.items() for encoding in _algorithm_encodings(oid)
}
"""The same algorithms as senders write them (with NULL parameters or none), known without a walk."""


def _signature_family(encoding: bytes) -> str | None:
    family = _FAMILY_ENCODINGS.get(encoding)
    if family is not None:
        return family
    walk, top = der.read_one(encoding)
    return _SIGNATURE_FAMILIES.get(walk.oid(walk.fields(top, 1, 2, "an AlgorithmIdentifier")[0]))


def _signature_params(
    encoding: bytes, digest: Digest, public_key: Any
) -> tuple[SignatureScheme, Callable[[bytes, Buffer], None]]:
    family = _signature_family(encoding)
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


def _readable(cert: CertRef, role: str) -> CertRef:
    """The certificate, once every field the gateway reads from it parses (names as UTF-8 and
    the like); otherwise a MALFORMED rejection, never an exception later in a finding or a log."""
    problem = cert.problem
    if problem is not None:
        raise CmsError(RejectReason.MALFORMED, f"{role} does not parse: {problem}")
    return cert


def verify(
    buf: Buffer, detached_content: Buffer | None, limits: Limits, *, content_known: bool = True
) -> Verified:
    """Check the one signature of a SignedData (RFC 5652 sections 5.4 and 5.6).

    ``detached_content`` is the exact signed bytes of a multipart/signed first
    part; ``None`` means the content is encapsulated (opaque signed-data).
    With ``content_known=False`` (a bare detached signature, for diagnosis)
    the signature over the signed attributes is still checked, but the
    messageDigest cannot be; content the SignedData encapsulates is always
    known, and checked.
    """
    walk = der.Walk(buf)
    parsed = _der("signed-data", lambda: _signed_data(walk, limits))
    content_known = content_known or parsed.content is not None
    if detached_content is not None:
        content: Buffer = detached_content
    elif parsed.content is not None:
        content = parsed.content
    elif not content_known:
        content = b""
    else:
        raise CmsError(RejectReason.MALFORMED, "the signed-data carries no content and none was given")
    certs = parsed.certificates
    si = _der("signer info", lambda: _signer_info(walk, parsed.signer_info, limits))
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
    signer = _readable(carried(bytes(signer_der)), "the signer's certificate")
    others = tuple(
        _readable(carried(bytes(c.encoding)), "a certificate carried with the signature")
        for c in certs
        if c.encoding != signer_der
    )
    try:
        public_key = signer.public_key
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CmsError(RejectReason.UNSUPPORTED_ALGORITHM, f"the signer's key cannot be used: {exc}", signer) from exc
    scheme, check_signature = _der(
        "signature algorithm",
        lambda: _asn1("signature algorithm", lambda: _signature_params(si.signature_algorithm, digest, public_key)),
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
        if content_known and expected != _HASHES[digest](content).digest():
            raise CmsError(
                RejectReason.DIGEST_MISMATCH,
                f"the {digest.value} digest of the content does not match the signed messageDigest: "
                "the content was changed after signing",
                signer,
            )
        signed_type = _der("contentType", lambda: _attribute_oid(si.attributes.get(_CONTENT_TYPE)))
        # Compared as OIDs: two different unknown types are different (RFC 5652 section 11.1).
        if signed_type is None or signed_type != parsed.content_type:
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
    except (InvalidSignature, ValueError):
        raise CmsError(
            RejectReason.SIGNATURE_INVALID,
            f"the signature by {signer.subject} (serial {signer.serial:x}) does not verify",
            signer,
        ) from None
    return Verified(content, digest, scheme, signer, others, signing_time)


# --------------------------------------------------------------------------- sign


# The parts of a signature that do not change between messages, encoded once by asn1crypto
# (so they are exactly what its encoder writes); sign() puts them together with _tlv. Building
# the whole SignedData through asn1crypto's objects cost about 1.7 ms per message, more than
# five times the RSA signature itself (bench/smtp_outbound.py, docs/outbound.md).
_CONTENT_TYPE_ATTRIBUTE = cms.CMSAttribute({"type": "content_type", "values": ["data"]}).dump()
_CAPABILITIES_ATTRIBUTE = cms.CMSAttribute(
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
).dump()
_SIGNING_TIME_OID = core.ObjectIdentifier("1.2.840.113549.1.9.5").dump()
_MESSAGE_DIGEST_OID = core.ObjectIdentifier("1.2.840.113549.1.9.4").dump()
_DATA_OID = core.ObjectIdentifier("1.2.840.113549.1.7.1").dump()
_SIGNED_DATA_OID = core.ObjectIdentifier("1.2.840.113549.1.7.2").dump()
_VERSION_0 = core.Integer(0).dump()
_VERSION_1 = core.Integer(1).dump()
_ENVELOPED_DATA_OID = core.ObjectIdentifier("1.2.840.113549.1.7.3").dump()
_AUTH_ENVELOPED_DATA_OID = core.ObjectIdentifier("1.2.840.113549.1.9.16.1.23").dump()


@functools.cache
def _digest_algorithm(digest: Digest) -> bytes:
    return bytes(algos.DigestAlgorithm({"algorithm": digest.value}).dump())


@functools.cache
def _signature_algorithm(name: str) -> bytes:
    return bytes(algos.SignedDigestAlgorithm({"algorithm": name}).dump())


@functools.lru_cache(maxsize=256)
def _issuer_and_serial(cert_der: bytes) -> bytes:
    """The signer's IssuerAndSerialNumber (RFC 5652 5.3), per certificate (a gateway signs with a few)."""
    cert = asn1_x509.Certificate.load(cert_der)
    return bytes(
        cms.IssuerAndSerialNumber({"issuer": cert.issuer, "serial_number": cert.serial_number}).dump()
    )


def _signed_attributes(content: bytes, digest: Digest, at: datetime) -> list[bytes]:
    """The signed attributes' encodings, in DER's SET OF order."""
    signing_time = _tlv(0x30, _SIGNING_TIME_OID + _tlv(0x31, core.UTCTime(at).dump()))
    message_digest = _tlv(
        0x30, _MESSAGE_DIGEST_OID + _tlv(0x31, _tlv(0x04, hashlib.new(digest.value, content).digest()))
    )
    # DER orders a SET OF by encoding (X.690 11.6); verifiers such as OpenSSL
    # re-encode what they parsed, so an unsorted set would not verify there.
    return sorted([_CONTENT_TYPE_ATTRIBUTE, signing_time, message_digest, _CAPABILITIES_ATTRIBUTE])


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
    attributes = b"".join(_signed_attributes(content, digest, at))
    key = pair.key
    if isinstance(key, rsa.RSAPrivateKey):
        # RFC 5652 5.4: the signature is over the attributes' DER with the SET OF tag
        signature = key.sign(_tlv(0x31, attributes), asym.PKCS1v15(), _hash(digest))
        sig_alg = _signature_algorithm("rsassa_pkcs1v15")
    else:
        signature = key.sign(_tlv(0x31, attributes), ec.ECDSA(_hash(digest)))
        sig_alg = _signature_algorithm(f"{digest.value}_ecdsa")
    digest_algorithm = _digest_algorithm(digest)
    signer_info = _tlv(0x30, b"".join((
        _VERSION_1,
        _issuer_and_serial(pair.cert.der),
        digest_algorithm,
        _tlv(0xA0, attributes),  # signedAttrs [0] IMPLICIT
        sig_alg,
        _tlv(0x04, signature),
    )))
    encapsulated = _DATA_OID if detached else _DATA_OID + _tlv(0xA0, _tlv(0x04, content))
    certificates = [pair.cert.der] + [c.der for c in chain if c != pair.cert]
    signed = _tlv(0x30, b"".join((
        _VERSION_1,
        _tlv(0x31, digest_algorithm),
        _tlv(0x30, encapsulated),
        _tlv(0xA0, b"".join(sorted(certificates))),  # [0] IMPLICIT SET OF: DER order, as asn1crypto writes it
        _tlv(0x31, signer_info),
    )))
    return _tlv(0x30, _SIGNED_DATA_OID + _tlv(0xA0, signed))


# --------------------------------------------------------------------------- encrypt


@functools.cache
def _transport_padding(transport: KeyTransport) -> tuple[asym.AsymmetricPadding, bytes]:
    """The padding and its KeyEncryptionAlgorithmIdentifier (encoded once by asn1crypto)."""
    if transport is KeyTransport.RSA_PKCS1V15:
        algorithm = cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_pkcs1v15", "parameters": core.Null()})
        return asym.PKCS1v15(), bytes(algorithm.dump())
    name = "sha256" if transport is KeyTransport.RSA_OAEP_SHA256 else "sha1"
    h = hashes.SHA256() if name == "sha256" else hashes.SHA1()
    algorithm = cms.KeyEncryptionAlgorithm({
        "algorithm": "rsaes_oaep",
        "parameters": algos.RSAESOAEPParams(
            {
                "hash_algorithm": {"algorithm": name},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": name}},
            }
        ),
    })
    return asym.OAEP(mgf=asym.MGF1(h), algorithm=h, label=None), bytes(algorithm.dump())


def _wrap_key(cek: bytes, recipient: CertRef, transport: KeyTransport) -> bytes:
    """A KeyTransRecipientInfo (RFC 5652 6.2.1) for ``recipient``, DER."""
    public_key = recipient.x509.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise CmsError(
            RejectReason.UNSUITABLE_KEY,
            f"recipient certificate {recipient.subject} has a {recipient.key_algorithm} key; "
            "Direct key transport needs RSA",
            recipient,
        )
    pad, algorithm = _transport_padding(transport)
    return _tlv(0x30, b"".join((
        _VERSION_0,
        _issuer_and_serial(recipient.der),
        algorithm,
        _tlv(0x04, public_key.encrypt(cek, pad)),
    )))


_ICV_LENGTH_16 = core.Integer(16).dump()


@functools.cache
def _cipher_oid(name: str) -> bytes:
    """A content cipher's OBJECT IDENTIFIER, encoded once by asn1crypto."""
    return bytes(algos.EncryptionAlgorithmId(name).dump())


def encrypt(
    content: bytes,
    recipients: Sequence[CertRef],
    cipher: ContentCipher,
    transport: KeyTransport,
) -> bytes:
    """A DER EnvelopedData (CBC) or AuthEnvelopedData (GCM, RFC 5083/5084) for every recipient.

    Written with ``_tlv`` around parts asn1crypto encodes (as ``sign``): what its encoder
    wrote for the whole structure, for a fraction of the CPU."""
    if cipher.weak:
        raise CmsError(RejectReason.UNSUPPORTED_ALGORITHM, "3DES is never used to send (Direct AS 1.2)")
    cek = os.urandom(cipher.key_bytes)
    # recipientInfos is a SET OF: DER order (X.690 11.6), as asn1crypto writes it
    infos = _tlv(0x31, b"".join(sorted(_wrap_key(cek, r, transport) for r in recipients)))
    oid = _CIPHER_OIDS[cipher]
    if cipher.authenticated:
        nonce = os.urandom(12)  # RFC 5084 section 3.2 recommends 12 octets
        gcm = Cipher(algorithms.AES(cek), modes.GCM(nonce)).encryptor()
        ciphertext = gcm.update(content) + gcm.finalize()
        # GCMParameters (RFC 5084 3.2): the nonce, and the ICV length, 16, not the default 12
        algorithm = _tlv(0x30, _cipher_oid(oid) + _tlv(0x30, _tlv(0x04, nonce) + _ICV_LENGTH_16))
        auth = _tlv(0x30, b"".join((
            _VERSION_0,
            infos,
            _tlv(0x30, _DATA_OID + algorithm + _tlv(0x80, ciphertext)),  # encryptedContent [0] IMPLICIT
            _tlv(0x04, gcm.tag),  # mac
        )))
        return _tlv(0x30, _AUTH_ENVELOPED_DATA_OID + _tlv(0xA0, auth))
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    algorithm = _tlv(0x30, _cipher_oid(oid) + _tlv(0x04, iv))  # CBC's parameters: the IV (RFC 3565 4.1)
    enveloped = _tlv(0x30, b"".join((
        _VERSION_0,
        infos,
        _tlv(0x30, _DATA_OID + algorithm + _tlv(0x80, ciphertext)),  # encryptedContent [0] IMPLICIT
    )))
    return _tlv(0x30, _ENVELOPED_DATA_OID + _tlv(0xA0, enveloped))
