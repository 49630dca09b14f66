"""Typed core results as JSON-ready dicts and as lines for a terminal.

Strings are made here, at the edge; the core hands over values only.
"""

from __future__ import annotations

from typing import Any

from gateway.core import CertRef, Opened, Rejected, Sealed, SignatureReport


def cert(c: CertRef) -> dict[str, Any]:
    return {
        "subject": c.subject,
        "issuer": c.issuer,
        "serial": f"{c.serial:x}",
        "not_before": c.not_before.isoformat(),
        "not_after": c.not_after.isoformat(),
        "key": f"{c.key_algorithm}-{c.key_bits}",
        "emails": list(c.email_addresses),
        "dns_names": list(c.dns_names),
        "sha256": c.sha256,
    }


def rejected(r: Rejected) -> dict[str, Any]:
    out: dict[str, Any] = {"result": "rejected", "reason": r.reason.value, "detail": r.detail, "permanent": r.permanent}
    if r.certificate is not None:
        out["certificate"] = cert(r.certificate)
    return out


def opened(o: Opened) -> dict[str, Any]:
    sig = o.signature
    return {
        "result": "opened",
        "kind": o.kind.value,
        "wrapped": o.wrapped,
        "outer": _headers(o.outer),
        "inner": _headers(o.inner),
        "encryption": None
        if o.encryption is None
        else {
            "cipher": o.encryption.cipher.value,
            "key_transport": o.encryption.key_transport.value,
            "recipient": cert(o.encryption.recipient),
            "recipient_count": o.encryption.recipient_count,
            "ber": o.encryption.ber,
        },
        "signature": {
            "form": sig.form.value,
            "digest": sig.digest.value,
            "scheme": sig.scheme.value,
            "signer": cert(sig.signer),
            "certificates": [cert(c) for c in sig.certificates],
            "signing_time": sig.signing_time.isoformat() if sig.signing_time else None,
        },
        "parts": [
            {
                "content_type": p.content_type,
                "filename": p.filename,
                "kind": p.kind.value,
                "attachment": p.attachment,
                "size": p.size,
                "sha256": p.sha256,
            }
            for p in o.parts
        ],
        "findings": [{"observation": f.observation.value, "detail": f.detail} for f in o.findings],
    }


def signature_report(r: SignatureReport) -> dict[str, Any]:
    sig = r.signature
    return {
        "result": "signature",
        "content_checked": r.content_checked,
        "digest": sig.digest.value,
        "scheme": sig.scheme.value,
        "signer": cert(sig.signer),
        "certificates": [cert(c) for c in sig.certificates],
        "signing_time": sig.signing_time.isoformat() if sig.signing_time else None,
        "findings": [{"observation": f.observation.value, "detail": f.detail} for f in r.findings],
    }


def sealed(s: Sealed) -> dict[str, Any]:
    return {
        "message_id": s.message_id,
        "cipher": s.cipher.value,
        "key_transport": s.key_transport.value,
        "digest": s.digest.value,
        "recipients": [cert(c) for c in s.recipients],
        "bytes": len(s.message),
    }


def _headers(h: Any) -> dict[str, Any]:
    return {
        "from": list(h.from_),
        "to": list(h.to),
        "cc": list(h.cc),
        "subject": h.subject,
        "message_id": h.message_id,
        "date": h.date,
    }


def lines(data: dict[str, Any], indent: str = "") -> list[str]:
    """A readable, stable rendering of a nested dict for terminals."""
    out = []
    for key, value in data.items():
        if isinstance(value, dict):
            out.append(f"{indent}{key}:")
            out.extend(lines(value, indent + "  "))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            out.append(f"{indent}{key}:")
            for item in value:
                sub = lines(item, indent + "    ")
                out.append(indent + "  - " + sub[0].lstrip())
                out.extend(sub[1:])
        elif isinstance(value, list):
            out.append(f"{indent}{key}: {', '.join(map(str, value)) if value else '-'}")
        else:
            out.append(f"{indent}{key}: {value if value is not None else '-'}")
    return out
