"""Typed results of the message core.

``open_inbound`` answers ``Opened`` or ``Rejected``; ``seal_outbound`` answers
``Sealed`` or ``Rejected``. A rejection names its reason as an enum and says,
in ``detail``, what a person can do about it (which certificate, which
algorithm, which limit). Strings are for people; code matches on the enum.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from .algorithms import ContentCipher, Digest, KeyTransport, SignatureScheme
from .certs import CertRef


class RejectReason(enum.Enum):
    NOT_ENCRYPTED = "not-encrypted"
    NOT_SIGNED = "not-signed"
    NO_KEY_FOR_RECIPIENT = "no-key-for-recipient"
    DECRYPTION_FAILED = "decryption-failed"
    SIGNER_NOT_FOUND = "signer-not-found"
    SIGNATURE_INVALID = "signature-invalid"
    DIGEST_MISMATCH = "digest-mismatch"
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"
    MALFORMED = "malformed"
    TOO_LARGE = "too-large"
    TOO_DEEP = "too-deep"
    # the sender the signature binds (issue 7 section 1; RFC 5322 section 3.6.2)
    SENDER_MISSING = "sender-missing"
    """The message (or its wrapped message) has no From field."""
    SENDER_AMBIGUOUS = "sender-ambiguous"
    """Several From fields, several mailboxes, or a From inside the signed content naming someone else."""
    SENDER_MALFORMED = "sender-malformed"
    """A From field that is not an RFC 5322 mailbox-list."""
    NESTED_LAYER = "nested-layer"
    """A second enveloped-data or signature layer: Direct has one of each, and an
    inner layer would escape the algorithm policy applied to the outer one."""
    # outbound
    NO_RECIPIENT_CERTIFICATE = "no-recipient-certificate"
    UNSUITABLE_KEY = "unsuitable-key"

    @property
    def permanent(self) -> bool:
        """Every reason the core can give is a property of the message itself,
        so sending it again will not help (SMTP 5.7.x). Temporary failures
        (revocation status unknown, a lookup timed out) come from the trust
        and discovery layers, which carry their own flag."""
        return True


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: RejectReason
    detail: str
    certificate: CertRef | None = None

    @property
    def permanent(self) -> bool:
        return self.reason.permanent

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


def decryption_failed(recipient: CertRef) -> Rejected:
    """The one outcome of every failure after one of our keys was tried (RFC 3218
    section 2.3): the same reason, detail and certificate whatever broke, so that
    the answer says nothing about the plaintext."""
    return Rejected(
        RejectReason.DECRYPTION_FAILED,
        f"the message names our certificate {recipient.subject} (serial {recipient.serial:x}) "
        "but it could not be decrypted with that key (a key that does not match, "
        "or content altered in transit)",
        recipient,
    )


class Observation(enum.Enum):
    """Facts about an otherwise intact message that policy may refuse."""

    SHA1_DIGEST = "sha1-digest"
    WEAK_CIPHER = "weak-cipher"
    SHORT_RSA_KEY = "short-rsa-key"
    SIGNER_EXPIRED = "signer-expired"
    SIGNER_NOT_YET_VALID = "signer-not-yet-valid"
    NOT_WRAPPED = "not-wrapped"
    HEADER_MISMATCH = "header-mismatch"
    NOT_ENCRYPTED = "not-encrypted"


@dataclass(frozen=True, slots=True)
class Finding:
    observation: Observation
    detail: str

    def __str__(self) -> str:
        return f"{self.observation.value}: {self.detail}"


class SignatureForm(enum.Enum):
    DETACHED = "multipart/signed"
    OPAQUE = "application/pkcs7-mime; smime-type=signed-data"


@dataclass(frozen=True, slots=True)
class Encryption:
    cipher: ContentCipher
    key_transport: KeyTransport
    recipient: CertRef
    """The certificate of ours whose key opened the message."""
    recipient_count: int
    ber: bool
    """True when the CMS arrived with indefinite lengths (openssl -stream, gpgsm)."""


@dataclass(frozen=True, slots=True)
class Signature:
    form: SignatureForm
    digest: Digest
    scheme: SignatureScheme
    signer: CertRef
    certificates: tuple[CertRef, ...]
    """Every other certificate the CMS carried, for path building."""
    signing_time: datetime | None


class PartKind(enum.Enum):
    TEXT = "text"
    CCDA = "c-cda"
    PDF = "pdf"
    XDM = "xdm"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Part:
    content_type: str
    filename: str | None
    kind: PartKind
    attachment: bool
    size: int
    sha256: str
    data: bytes = field(repr=False)


class MessageKind(enum.Enum):
    MESSAGE = "message"
    MDN = "mdn"
    DSN = "dsn"


@dataclass(frozen=True, slots=True)
class Headers:
    """The headers that matter to routing, tracking and display, decoded."""

    from_: tuple[str, ...]
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str | None
    message_id: str | None
    date: str | None
    disposition_notification_to: tuple[str, ...] = ()
    disposition_notification_options: str | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the SMTP session said: MAIL FROM and RCPT TO."""

    mail_from: str
    rcpt_to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Opened:
    outer: Headers
    inner: Headers
    wrapped: bool
    kind: MessageKind
    encryption: Encryption | None
    signature: Signature
    sender: str
    """The address the signature binds (lower-cased addr-spec): the single mailbox
    of the single From of the wrapped message, or of the outer message when the
    signed content is not wrapped; read by the core's one strict parser."""
    content: bytes = field(repr=False)
    """The signed MIME entity, exactly as signed (CRLF line ends)."""
    parts: tuple[Part, ...] = ()
    findings: tuple[Finding, ...] = ()

    def has(self, observation: Observation) -> bool:
        return any(f.observation is observation for f in self.findings)


@dataclass(frozen=True, slots=True)
class Sealed:
    message: bytes = field(repr=False)
    message_id: str
    cipher: ContentCipher
    key_transport: KeyTransport
    digest: Digest
    recipients: tuple[CertRef, ...]


@dataclass(frozen=True, slots=True)
class SignatureReport:
    """A bare CMS signature read on its own (``inspect_signature``), for diagnosis."""

    signature: Signature
    content_checked: bool
    """False for a detached signature read without its content: the signature
    over the signed attributes was checked, the messageDigest could not be."""
    findings: tuple[Finding, ...]
    sender: str | None = None
    """The sender the signature binds, read from the encapsulated content by the
    rules of ``Opened.sender``; None when detached or when the content names no
    single From (``sender_problem`` says why)."""
    sender_problem: str | None = None
