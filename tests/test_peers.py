"""The peer harness (tests/interop.py) proven peer to peer, without our core in the loop.

Before a peer can judge our outbound or feed our inbound, it has to agree with
the other peer: OpenSSL with itself across every cipher, key transport,
recipient identifier and encoding, and gpgsm with OpenSSL both ways. The
tables below are also the record of what GnuPG's gpgsm 2.2 (Debian 12) can
read, measured here: only RSA PKCS#1 v1.5 key transport to an
issuerAndSerialNumber recipient, with a CBC content cipher (AES or 3DES). It
refuses RSA-OAEP and subjectKeyIdentifier recipients ("No secret key"),
authEnveloped-data, RFC 5083 ("Buffer too short" from libksba), and cannot
even parse an OAEP recipient named by subjectKeyIdentifier ("BER error"), so an
interop test of our OAEP or GCM output can only use OpenSSL. The refusals are
asserted, not expected failures: a gpgsm that reads more fails them, and the
table is then updated to what it does.
"""

from __future__ import annotations

import enum
import re

import pytest

from . import pki
from .interop import Gpgsm, OpenSSL, PeerError, body_der, multipart_signed, pkcs7_mime

pytestmark = pytest.mark.interop

CONTENT = (
    b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    b"Summary of care for Bob.\r\nTrailing spaces stay   \r\n"
)
TRANSPORTS = {"pkcs1": None, "oaep-sha1": "sha1", "oaep-sha256": "sha256"}
GCM = ("aes-128-gcm", "aes-256-gcm")


@pytest.fixture(scope="module")
def world():
    a, b = pki.hisp("a.test"), pki.hisp("b.test")
    return a, b, a.address("alice"), b.address("bob")


@pytest.fixture(scope="module")
def openssl(tmp_path_factory):
    return OpenSSL(tmp_path_factory.mktemp("openssl"))


@pytest.fixture(scope="module")
def gpgsm(world, tmp_path_factory):
    a, b, alice, bob = world
    peer = Gpgsm(tmp_path_factory.mktemp("gnupg"), roots=[a.root, b.root], cas=[a.intermediate, b.intermediate])
    for pair in (alice, bob):
        add_key_with_retries(peer, pair)
    yield peer
    peer.close()


def add_key_with_retries(peer: Gpgsm, pair: pki.Issued, attempts: int = 3) -> None:
    """gpgsm's PKCS#12 import fails now and then ("data error at
    shrouded_key_bag.decrypted-text" with the right passphrase; shared/TOOLING.md).
    Gpgsm.add_key raises on the first failed run, so retry here, each time with a
    freshly exported PKCS#12 file."""
    for attempt in range(attempts):
        try:
            peer.add_key(pair)
            return
        except PeerError:
            if attempt == attempts - 1:
                raise


def is_indefinite_ber(der: bytes) -> bool:
    """An outer SEQUENCE with the indefinite length octet (X.690 section 8.1.3.6)."""
    return der[:2] == b"\x30\x80"


def split_signed(message: bytes) -> tuple[bytes, bytes]:
    """The signed entity and the DER signature of a multipart/signed (RFC 1847 section 2.1):
    the entity is the exact bytes between the first delimiter line and the CRLF before the next."""
    boundary = re.search(rb'boundary="?([^";\r\n]+)"?', message)
    assert boundary, message[:300]
    delimiter = b"--" + boundary.group(1)
    _, first, signature_part, *_ = message.split(delimiter)
    entity = first[2:-2]  # the CRLF after the delimiter, and the CRLF that belongs to the next one
    return entity, body_der(signature_part.lstrip(b"\r\n"))


def header_of(message: bytes) -> bytes:
    return message.split(b"\r\n\r\n", 1)[0]


# ------------------------------------------------------------------ OpenSSL with itself


@pytest.mark.parametrize("stream", [False, True], ids=["der", "ber-stream"])
@pytest.mark.parametrize("keyid", [False, True], ids=["issuer-serial", "keyid"])
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("cipher", OpenSSL.CIPHERS)
def test_openssl_decrypts_what_openssl_encrypts(world, openssl, cipher, transport, keyid, stream):
    _, _, _, bob = world
    message = openssl.encrypt(CONTENT, [bob], cipher=cipher, oaep_md=TRANSPORTS[transport], keyid=keyid, stream=stream)
    # RFC 5751 section 3.2.2 names enveloped-data; RFC 5083 content is authEnveloped-data.
    smime_type = b"authEnveloped-data" if cipher in GCM else b"enveloped-data"
    assert b"application/pkcs7-mime" in header_of(message) and smime_type in header_of(message)
    assert is_indefinite_ber(body_der(message)) is stream
    assert openssl.decrypt(message, bob) == CONTENT


def test_openssl_refuses_to_decrypt_for_someone_else(world, openssl):
    _, _, alice, bob = world
    with pytest.raises(PeerError, match="exited"):
        openssl.decrypt(openssl.encrypt(CONTENT, [bob]), alice)


@pytest.mark.parametrize("detached", [True, False], ids=["multipart-signed", "opaque"])
@pytest.mark.parametrize("md", ["sha256", "sha384", "sha512", "sha1"])
def test_openssl_verifies_what_openssl_signs(world, openssl, md, detached):
    a, _, alice, _ = world
    message = openssl.sign(CONTENT, alice, detached=detached, md=md, chain=[a.intermediate])
    expected = b"multipart/signed" if detached else b"signed-data"
    assert expected in header_of(message)
    assert openssl.verify(message, [a.root]).replace(b"\r\n", b"\n") == CONTENT.replace(b"\r\n", b"\n")


def test_openssl_verify_refuses_a_tampered_entity_and_a_foreign_root(world, openssl):
    a, b, alice, _ = world
    message = openssl.sign(CONTENT, alice, chain=[a.intermediate])
    with pytest.raises(PeerError, match="exited"):
        openssl.verify(message.replace(b"Summary", b"Summery"), [a.root])
    with pytest.raises(PeerError, match="exited"):
        openssl.verify(message, [b.root])


# ------------------------------------------------------------------ gpgsm and OpenSSL


class Gpgsm22(enum.Enum):
    """What gpgsm 2.2.40 does with OpenSSL's enveloped-data: decrypt it, or refuse (exit 2) with this error."""

    DECRYPTS = ""
    # It finds no key for an OAEP recipient, nor for one named by subjectKeyIdentifier (RFC 5652 6.2.1).
    NO_SECRET_KEY = "No secret key <GpgSM>"
    # "error getting IV": libksba wants the IV as a bare OCTET STRING; GCMParameters (RFC 5084 3.2) is a SEQUENCE.
    BUFFER_TOO_SHORT = "Buffer too short <KSBA>"
    # An OAEP recipient named by subjectKeyIdentifier: "ber-decoder: ... TLV length too large" before any key lookup.
    BER_ERROR = "BER error <KSBA>"


def gpgsm_2_2(cipher: str, transport: str, keyid: bool) -> Gpgsm22:
    """The verdict, measured over every cipher, transport, identifier and encoding (the encoding never matters)."""
    if transport != "pkcs1" and keyid:
        return Gpgsm22.BER_ERROR
    if cipher in GCM:
        return Gpgsm22.BUFFER_TOO_SHORT
    if transport != "pkcs1" or keyid:
        return Gpgsm22.NO_SECRET_KEY
    return Gpgsm22.DECRYPTS


def _decrypt_cases():
    rows = [(c, t, False, False) for c in OpenSSL.CIPHERS for t in TRANSPORTS]
    rows += [("aes-256-cbc", "pkcs1", True, False), ("aes-256-cbc", "pkcs1", False, True)]
    rows += [("aes-128-gcm", "pkcs1", False, True), ("aes-128-gcm", "pkcs1", True, False)]
    rows += [("aes-256-cbc", "oaep-sha256", True, True), ("aes-256-gcm", "oaep-sha1", True, False)]
    for cipher, transport, keyid, stream in rows:
        ident = f"{cipher}-{transport}-{'keyid' if keyid else 'isn'}-{'stream' if stream else 'der'}"
        yield pytest.param(cipher, transport, keyid, stream, gpgsm_2_2(cipher, transport, keyid), id=ident)


def test_the_gpgsm_table_is_for_gpgsm_2_2(gpgsm):
    """The verdicts below were measured on 2.2.40; on another version, measure again and update them."""
    assert gpgsm.version().startswith("2.2."), gpgsm.version()


@pytest.mark.parametrize(("cipher", "transport", "keyid", "stream", "verdict"), list(_decrypt_cases()))
def test_gpgsm_decrypts_what_openssl_encrypts_or_says_why_not(
    world, openssl, gpgsm, cipher, transport, keyid, stream, verdict
):
    _, _, _, bob = world
    message = openssl.encrypt(CONTENT, [bob], cipher=cipher, oaep_md=TRANSPORTS[transport], keyid=keyid, stream=stream)
    # gpgsm wants the raw CMS, not the MIME entity (shared/TOOLING.md).
    if verdict is Gpgsm22.DECRYPTS:
        assert gpgsm.decrypt(body_der(message)) == CONTENT
        return
    with pytest.raises(PeerError) as refusal:
        gpgsm.decrypt(body_der(message))
    assert refusal.value.returncode == 2
    assert refusal.value.stdout == b"", "no plaintext, not even a part of it"
    assert refusal.value.stderr.rstrip().endswith(f"message decryption failed: {verdict.value}"), refusal.value.stderr


def test_openssl_decrypts_what_gpgsm_encrypts(world, openssl, gpgsm):
    _, _, _, bob = world
    cms = gpgsm.encrypt(CONTENT, "bob@b.test")
    assert is_indefinite_ber(cms), "gpgsm writes indefinite-length BER"
    assert openssl.decrypt(pkcs7_mime(cms, "enveloped-data"), bob) == CONTENT


@pytest.mark.parametrize("detached", [True, False], ids=["multipart-signed", "opaque"])
def test_openssl_verifies_what_gpgsm_signs(world, openssl, gpgsm, detached):
    a, _, _, _ = world
    cms = gpgsm.sign(CONTENT, "alice@a.test", detached=detached)
    assert is_indefinite_ber(cms)
    message = multipart_signed(CONTENT, cms) if detached else pkcs7_mime(cms, "signed-data")
    # gpgsm's --include-certs -1 puts the chain in, so the root alone is enough.
    assert openssl.verify(message, [a.root]).replace(b"\r\n", b"\n") == CONTENT.replace(b"\r\n", b"\n")


@pytest.mark.parametrize("md", ["sha256", "sha384", "sha512"])
def test_gpgsm_verifies_what_openssl_signs(world, openssl, gpgsm, md):
    a, _, alice, _ = world
    entity, signature = split_signed(openssl.sign(CONTENT, alice, md=md, chain=[a.intermediate]))
    assert entity == CONTENT
    gpgsm.verify(signature, entity)  # PeerError unless gpgsm exits 0
    with pytest.raises(PeerError, match="exited"):
        gpgsm.verify(signature, entity.replace(b"Summary", b"Summery"))
