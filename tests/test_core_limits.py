"""The CMS read as a specification of its bounds and shapes: every limit is checked while
walking (one element past it is refused, the bound itself opens), streamed BER opens like
DER, AES-GCM tags are held to RFC 5084, and certificates or attributes that do not parse
are typed rejections. Each case reshapes one valid structure (tests/cms_vectors.py) at
the element level, so only the one thing under test differs from a message that opens."""

from __future__ import annotations

import copy
import os

import pytest
from asn1crypto import cms as acms
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as asym
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.core import (
    ContentCipher,
    KeyTransport,
    Limits,
    Opened,
    Rejected,
    RejectReason,
    SignatureReport,
    inspect_signature,
)
from gateway.core import cms as core_cms

from . import messages, pki, smime
from .cms_vectors import (
    ALICE,
    BOB,
    CBC,
    DETACHED_SIG,
    GCM,
    OPAQUE_SIG,
    SIGNED_ENTITY,
    detached_message,
    enveloped_message,
    opaque_message,
    open_as_bob,
)
from .tlv import Node, at, encode, parse, reshaped


def rejected(result, reason: RejectReason, *words: str) -> bool:
    assert isinstance(result, Rejected), result
    assert result.reason is reason, result
    for word in words:
        assert word in result.detail, result
    return True


def envelope_of(root: Node) -> Node:
    return at(root, 1, 0)  # ContentInfo -> [0] -> (Auth)EnvelopedData


def signed_data_of(root: Node) -> Node:
    return at(root, 1, 0)  # ContentInfo -> [0] -> SignedData


def pieces(node: Node, size: int, *, indefinite: bool = True) -> None:
    """An OCTET STRING re-encoded as BER constructed pieces of ``size`` bytes (X.690 8.7.3)."""
    assert isinstance(node.value, bytes)
    value = node.value
    node.tag |= 0x20
    node.value = [Node(0x04, value[i : i + size]) for i in range(0, len(value), size)]
    node.indefinite = indefinite


def ciphertext_of(root: Node) -> Node:
    return at(envelope_of(root), 2, 2)  # EncryptedContentInfo -> [0] encryptedContent


# ------------------------------------------------------------------ limits: the bound opens, one more is refused


def _more_recipients(n: int):
    def change(root: Node) -> None:
        infos = at(envelope_of(root), 1)
        assert isinstance(infos.value, list)
        infos.value.extend(copy.deepcopy(infos.value[0]) for _ in range(n - 1))

    return change


def _more_signers(n: int):
    def change(root: Node) -> None:
        signers = at(signed_data_of(root), 4)
        assert isinstance(signers.value, list)
        signers.value.extend(copy.deepcopy(signers.value[0]) for _ in range(n - 1))

    return change


LIMIT_CASES = [
    pytest.param(
        enveloped_message(reshaped(CBC, _more_recipients(4))), "max_cms_recipients", 4, "recipients", id="recipients"
    ),
    pytest.param(detached_message(DETACHED_SIG), "max_cms_certificates", 2, "certificates", id="certificates"),
    pytest.param(detached_message(reshaped(DETACHED_SIG, _more_signers(3))), "max_cms_signers", 3, "signers", id="signers"),
    pytest.param(detached_message(DETACHED_SIG), "max_cms_signed_attributes", 4, "signed attributes", id="signed-attributes"),
]


@pytest.mark.parametrize(("raw", "field", "count", "words"), LIMIT_CASES)
def test_a_count_at_its_limit_opens_and_one_over_is_too_large(raw, field, count, words):
    assert isinstance(open_as_bob(raw, Limits(**{field: count})), Opened)
    assert rejected(open_as_bob(raw, Limits(**{field: count - 1})), RejectReason.TOO_LARGE, words)


def test_ciphertext_pieces_are_bounded_by_count_for_their_size():
    in_64s = enveloped_message(reshaped(CBC, lambda root: pieces(ciphertext_of(root), 64)))
    in_1s = enveloped_message(reshaped(CBC, lambda root: pieces(ciphertext_of(root), 1)))
    assert isinstance(open_as_bob(in_64s), Opened)
    assert rejected(open_as_bob(in_1s), RejectReason.TOO_LARGE)
    assert rejected(open_as_bob(in_64s, Limits(min_cms_chunks=1, cms_chunk_bytes=1024)), RejectReason.TOO_LARGE)


def test_a_megabyte_in_cer_pieces_of_1000_bytes_opens():
    """Bouncy Castle's stream generators cut content in 1000-byte pieces (X.690 9.2, CER)."""
    entity = smime.detached(smime.wrap(messages.with_attachment(attachment=os.urandom(750_000))), ALICE.pair)
    der = core_cms.encrypt(entity, [BOB.ref], ContentCipher.AES256_CBC, KeyTransport.RSA_PKCS1V15)
    streamed = reshaped(der, lambda root: pieces(ciphertext_of(root), 1000))
    assert isinstance(open_as_bob(enveloped_message(streamed)), Opened)


def test_more_signers_than_one_verify_the_first():
    opened = open_as_bob(detached_message(reshaped(DETACHED_SIG, _more_signers(2))))
    assert isinstance(opened, Opened) and opened.signature.signer == ALICE.ref


# ------------------------------------------------------------------ BER: streamed shapes open, abusive ones are bounded


def _streamed(*paths: tuple[int, ...], content: tuple[int, ...]):
    """Indefinite lengths where ``openssl cms -stream`` writes them: the ContentInfo, its [0],
    the structure inside, the elements on ``paths`` below it, and the content cut in pieces.
    Names and certificates stay DER: they are compared and signed as DER."""

    def change(root: Node) -> None:
        for node in (root, at(root, 1), at(root, 1, 0), *(at(root, 1, 0, *p) for p in paths)):
            node.indefinite = True
        pieces(at(root, 1, 0, *content), 4096)

    return change


def _nest_ciphertext(depth: int):
    def change(root: Node) -> None:
        node = ciphertext_of(root)
        pieces(node, 4096)
        for _ in range(depth):
            assert isinstance(node.value, list)
            node.value = [Node(0x24, node.value, True)]

    return change


def _originator_info(content: list[Node]):
    def change(root: Node) -> None:
        env = envelope_of(root)
        assert isinstance(env.value, list)
        env.value.insert(1, Node(0xA0, content, True))

    return change


BER_OPENS = {
    "streamed-enveloped": enveloped_message(reshaped(CBC, _streamed((2,), content=(2, 2)))),
    "streamed-auth-enveloped": enveloped_message(reshaped(GCM, _streamed((2,), content=(2, 2)))),
    "streamed-opaque-signed-data": opaque_message(reshaped(OPAQUE_SIG, _streamed((2,), (2, 1), content=(2, 1, 0)))),
    "openssl-stream-pieces": enveloped_message(reshaped(CBC, lambda root: pieces(ciphertext_of(root), 4096))),
    "pieces-nested-five-deep": enveloped_message(reshaped(CBC, _nest_ciphertext(5))),
}


@pytest.mark.parametrize("raw", BER_OPENS.values(), ids=BER_OPENS.keys())
def test_streamed_ber_opens_like_der(raw):
    assert isinstance(open_as_bob(raw), Opened)


def deep(levels: int) -> Node:
    node = Node(0x05, b"")
    for _ in range(levels):
        node = Node(0x30, [node], True)
    return node


BER_REFUSED = {
    "pieces-nested-forty-deep": (enveloped_message(reshaped(CBC, _nest_ciphertext(40))), RejectReason.TOO_DEEP),
    "originator-info-forty-deep": (
        enveloped_message(reshaped(CBC, _originator_info([deep(40)]))),
        RejectReason.TOO_DEEP,
    ),
    "originator-info-of-many-small-elements": (
        enveloped_message(reshaped(CBC, _originator_info([Node(0x05, b"")] * 100_000))),
        RejectReason.TOO_LARGE,
    ),
    "originator-info-of-many-indefinite-elements": (
        enveloped_message(reshaped(CBC, _originator_info([Node(0x30, [], True)] * 1000))),
        RejectReason.TOO_LARGE,
    ),
}


@pytest.mark.parametrize(("raw", "reason"), BER_REFUSED.values(), ids=BER_REFUSED.keys())
def test_abusive_ber_is_refused_by_its_bound(raw, reason):
    assert rejected(open_as_bob(raw), reason)


# ------------------------------------------------------------------ AES-GCM tags (RFC 5084 section 3.2)


def gcm_with_tag(tag_length: int, icvlen: int | None = None) -> bytes:
    """SIGNED_ENTITY in AuthEnvelopedData whose tag is truncated to ``tag_length`` bytes."""
    key, nonce = os.urandom(16), os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, SIGNED_ENTITY, None)
    ciphertext, tag = sealed[:-16], sealed[-16:][:tag_length]
    info = acms.ContentInfo.load(GCM)
    auth = info["content"]
    ktri = auth["recipient_infos"][0].chosen
    ktri["key_encryption_algorithm"] = {"algorithm": "rsaes_pkcs1v15"}
    public = BOB.cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    ktri["encrypted_key"] = public.encrypt(key, asym.PKCS1v15())
    eci = auth["auth_encrypted_content_info"]
    params = core_cms.GcmParameters({"aes_nonce": nonce, "aes_icvlen": icvlen or tag_length})
    eci["content_encryption_algorithm"] = {"algorithm": "aes128_gcm", "parameters": params}
    eci["encrypted_content"] = ciphertext
    auth["mac"] = tag
    return info.dump(force=True)


@pytest.mark.parametrize("length", [12, 13, 14, 15, 16], ids=lambda n: f"{n}-bytes")
def test_gcm_tags_of_12_to_16_bytes_open(length):
    assert isinstance(open_as_bob(enveloped_message(gcm_with_tag(length))), Opened)


@pytest.mark.parametrize("length", [4, 8, 11], ids=lambda n: f"{n}-bytes")
def test_gcm_tags_shorter_than_12_bytes_are_refused_before_any_key_is_used(length):
    raw = enveloped_message(gcm_with_tag(length))
    assert rejected(open_as_bob(raw), RejectReason.MALFORMED, "RFC 5084")
    # The same answer without our key: nothing was decrypted to give it.
    assert rejected(core_result(raw, keys=[]), RejectReason.MALFORMED, "RFC 5084")


def test_a_gcm_tag_shorter_than_its_declared_length_is_refused():
    raw = enveloped_message(gcm_with_tag(12, icvlen=16))
    assert rejected(open_as_bob(raw), RejectReason.MALFORMED, "aes-ICVlen")


def core_result(raw: bytes, keys: list) -> Opened | Rejected:
    from gateway.core import open_inbound

    return open_inbound(raw, keys, at=pki.NOW)


def _flip_encrypted_key(root: Node) -> None:
    key = at(envelope_of(root), 1, 0, 3)
    assert isinstance(key.value, bytes)
    key.value = bytes([key.value[0] ^ 1]) + key.value[1:]


def _bad_padding(root: Node) -> None:
    """XOR the last plaintext byte to 0 through the previous ciphertext block (CBC): padding byte 0."""
    node = ciphertext_of(root)
    assert isinstance(node.value, bytes)
    pad = 16 - len(SIGNED_ENTITY) % 16
    value = bytearray(node.value)
    value[-17] ^= pad
    node.value = bytes(value)


def _flip_mac(root: Node) -> None:
    mac = at(envelope_of(root), 3)
    assert isinstance(mac.value, bytes)
    mac.value = bytes([mac.value[0] ^ 1]) + mac.value[1:]


def test_every_failure_after_a_recipient_matched_is_one_answer():
    """RFC 3218 section 2.3: key transport, padding and tag failures look the same."""
    results = [
        core_cms_failure(reshaped(CBC, _flip_encrypted_key)),
        core_cms_failure(reshaped(CBC, _bad_padding)),
        core_cms_failure(reshaped(GCM, _flip_mac)),
    ]
    assert {(r.reason, r.detail) for r in results} == {(RejectReason.DECRYPTION_FAILED, results[0].detail)}


def core_cms_failure(der: bytes) -> core_cms.CmsError:
    with pytest.raises(core_cms.CmsError) as caught:
        core_cms.decrypt(der, [BOB.pair], Limits())
    return caught.value


# ------------------------------------------------------------------ signed-data: types compared as OIDs


def oid_content(dotted: str) -> bytes:
    """X.690 8.19 content octets of an OBJECT IDENTIFIER."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        while arc := arc >> 7:
            chunk.append(0x80 | (arc & 0x7F))
        out += bytes(reversed(chunk))
    return bytes(out)


def signed_with_types(econtent_type: str, signed_type: str) -> bytes:
    """OPAQUE_SIG with the given eContentType and signed contentType attribute, signed again."""

    def change(root: Node) -> None:
        sd = signed_data_of(root)
        at(sd, 2, 0).value = oid_content(econtent_type)
        signer = at(sd, 4, 0)
        attrs = at(signer, 3)
        assert isinstance(attrs.value, list)
        for attr in attrs.value:
            if at(attr, 0).value == oid_content("1.2.840.113549.1.9.3"):
                at(attr, 1, 0).value = oid_content(signed_type)
        to_sign = b"\x31" + encode(attrs)[1:]  # signed as a SET OF (RFC 5652 section 5.4)
        at(signer, 5).value = ALICE.key.sign(to_sign, asym.PKCS1v15(), hashes.SHA256())

    return reshaped(OPAQUE_SIG, change)


CONTENT_TYPES = {
    "data-and-data": ("1.2.840.113549.1.7.1", "1.2.840.113549.1.7.1", True),
    "two-different-unknown-types": ("1.2.3.4", "1.2.3.5", False),
    "the-same-unknown-type": ("1.2.3.4", "1.2.3.4", True),
    "data-signed-as-unknown": ("1.2.840.113549.1.7.1", "1.2.3.4", False),
}


@pytest.mark.parametrize(("econtent", "signed", "opens"), CONTENT_TYPES.values(), ids=CONTENT_TYPES.keys())
def test_the_signed_content_type_must_be_the_content_type_by_oid(econtent, signed, opens):
    result = inspect_signature(signed_with_types(econtent, signed), pki.NOW)
    if opens:
        assert isinstance(result, SignatureReport), result
    else:
        assert rejected(result, RejectReason.MALFORMED, "contentType")


# ------------------------------------------------------------------ certificates that do not parse


def _signer_subject_not_utf8(blob: bytes) -> bytes:
    at_ = blob.index(b"\x0c\x0calice@a.test")  # the signer's subject CN, a UTF8String
    return blob[: at_ + 2] + b"\xff" + blob[at_ + 3 :]


def _intermediate_subject_not_utf8(blob: bytes) -> bytes:
    at_ = blob.index(b"\x0c\x11a.test Issuing CA", blob.index(b"\x0c\x0ea.test Root CA"))  # its subject
    return blob[: at_ + 2] + b"\xff" + blob[at_ + 3 :]


def _duplicate_extension(root: Node) -> None:
    """Found by the TLV fuzzer: cryptography raises DuplicateExtension, not a ValueError."""
    certificate = at(signed_data_of(root), 3, 1)  # the signer's certificate, after the intermediate
    extensions = at(certificate, 0, 7, 0)
    assert isinstance(extensions.value, list)
    extensions.value.insert(0, copy.deepcopy(extensions.value[0]))


def _signer_common_name_empty(root: Node) -> None:
    """Found by the TLV fuzzer: cryptography warns (an error under -W error) on every access."""
    for _, _, node in root.walk():
        if node.tag == 0x0C and node.value == b"alice@a.test":
            node.value = b""
            return


BAD_CERTIFICATES = {
    "signer-subject-not-utf8": _signer_subject_not_utf8(DETACHED_SIG),
    "carried-intermediate-subject-not-utf8": _intermediate_subject_not_utf8(DETACHED_SIG),
    "signer-extension-twice": reshaped(DETACHED_SIG, _duplicate_extension),
    "signer-common-name-empty": reshaped(DETACHED_SIG, _signer_common_name_empty),
}


@pytest.mark.parametrize("signature", BAD_CERTIFICATES.values(), ids=BAD_CERTIFICATES.keys())
def test_certificates_that_do_not_parse_are_malformed_not_exceptions(signature):
    assert rejected(open_as_bob(detached_message(signature)), RejectReason.MALFORMED, "does not parse")
    assert rejected(inspect_signature(signature, pki.NOW), RejectReason.MALFORMED, "does not parse")


# ------------------------------------------------------------------ shapes: missing, empty, extra children


def _drop(*path: int, last: int):
    def change(root: Node) -> None:
        parent = at(root, *path)
        assert isinstance(parent.value, list)
        del parent.value[last]

    return change


def _extra(*path: int):
    def change(root: Node) -> None:
        parent = at(root, *path)
        assert isinstance(parent.value, list)
        parent.value.append(Node(0x05, b""))

    return change


def _empty(*path: int):
    def change(root: Node) -> None:
        node = at(root, *path)
        node.value = [] if isinstance(node.value, list) else b""

    return change


SHAPES = {
    "content-info-without-content": (CBC, _drop(last=1)),
    "content-info-with-extra": (CBC, _extra()),
    "recipient-info-missing-key": (CBC, _drop(1, 0, 1, 0, last=3)),
    "recipient-identifier-empty": (CBC, _empty(1, 0, 1, 0, 1)),
    "issuer-and-serial-without-serial": (CBC, _drop(1, 0, 1, 0, 1, last=1)),
    "enveloped-data-with-extra": (CBC, _extra(1, 0)),
    "algorithm-identifier-empty": (CBC, _empty(1, 0, 2, 1)),
    "signer-info-empty": (DETACHED_SIG, _empty(1, 0, 4, 0)),
    "signer-info-extra": (DETACHED_SIG, _extra(1, 0, 4, 0)),
    "digest-algorithm-empty": (DETACHED_SIG, _empty(1, 0, 4, 0, 2)),
    "attribute-without-values": (DETACHED_SIG, _drop(1, 0, 4, 0, 3, 0, last=1)),
    "attribute-values-empty": (DETACHED_SIG, _empty(1, 0, 4, 0, 3, 0, 1)),
    "certificate-empty": (DETACHED_SIG, _empty(1, 0, 3, 1)),
    "tbs-certificate-empty": (DETACHED_SIG, _empty(1, 0, 3, 1, 0)),
    "signature-algorithm-empty": (DETACHED_SIG, _empty(1, 0, 4, 0, 4)),
    "signed-data-signer-infos-empty": (DETACHED_SIG, _empty(1, 0, 4)),
}


@pytest.mark.parametrize(("original", "change"), SHAPES.values(), ids=SHAPES.keys())
def test_missing_empty_and_extra_fields_are_typed_rejections(original, change):
    blob = reshaped(original, change)
    raw = enveloped_message(blob) if original is CBC else detached_message(blob)
    result = open_as_bob(raw)
    assert isinstance(result, Rejected), result
    assert result.reason in (RejectReason.MALFORMED, RejectReason.NOT_SIGNED, RejectReason.NO_KEY_FOR_RECIPIENT)
    if original is DETACHED_SIG:
        assert isinstance(inspect_signature(blob, pki.NOW), Rejected)


def test_the_vectors_encode_back_to_themselves():
    for blob in (CBC, GCM, DETACHED_SIG, OPAQUE_SIG):
        assert encode(parse(blob)) == blob


def test_carried_certificates_are_shared_but_large_ones_never_kept():
    """A peer's certificate is parsed once for all its messages; a crafted large one is not
    kept, so a flood of them holds no memory beyond the message that carries it."""
    from gateway.core.certs import CARRIED_MAX_BYTES, carried

    small = b"\x30\x03\x02\x01\x01"
    assert carried(small) is carried(bytes(small))
    large = b"\x30" + bytes(CARRIED_MAX_BYTES)
    assert carried(large) is not carried(bytes(large))
