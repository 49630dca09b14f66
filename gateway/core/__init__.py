"""The pure message core: bytes, keys and certificates in, typed results out.

No sockets, no database, no clock, no environment: the SMTP edge, the queue
workers, the CLI and the tests all drive these same functions.
"""

from .algorithms import ContentCipher, Digest, KeyTransport, SignatureScheme
from .certs import CertRef, KeyMaterialError, KeyPair
from .inbound import inspect_signature, open_inbound
from .limits import DEFAULT_LIMITS, Limits
from .outbound import SealOptions, seal_outbound
from .outcomes import (
    Encryption,
    Envelope,
    Finding,
    Headers,
    MessageKind,
    Observation,
    Opened,
    Part,
    PartKind,
    Rejected,
    RejectReason,
    Sealed,
    Signature,
    SignatureForm,
    SignatureReport,
)

__all__ = [
    "DEFAULT_LIMITS", "CertRef", "ContentCipher", "Digest", "Encryption", "Envelope", "Finding",
    "Headers", "KeyMaterialError", "KeyPair", "KeyTransport", "Limits", "MessageKind", "Observation",
    "Opened", "Part", "PartKind", "RejectReason", "Rejected", "SealOptions", "Sealed", "Signature",
    "SignatureForm", "SignatureReport", "SignatureScheme", "inspect_signature", "open_inbound", "seal_outbound",
]
