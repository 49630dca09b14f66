"""Plain messages a provider's EHR might submit, for the core's tests and benchmarks."""

from __future__ import annotations

import base64
import os

CCDA = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b'<ClinicalDocument xmlns="urn:hl7-org:v3">\r\n'
    b'  <templateId root="2.16.840.1.113883.10.20.22.1.1"/>\r\n'
    b"  <title>Continuity of Care Document</title>\r\n"
    b"</ClinicalDocument>\r\n"
)


def plain(
    sender: str = "alice@a.test",
    recipients: tuple[str, ...] = ("bob@b.test",),
    subject: str = "Referral",
    body: bytes = b"Please see the attached summary.\r\n",
    extra_headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    head = [f"From: {sender}", f"To: {', '.join(recipients)}", f"Subject: {subject}"]
    head += [f"{k}: {v}" for k, v in extra_headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def with_attachment(
    sender: str = "alice@a.test",
    recipients: tuple[str, ...] = ("bob@b.test",),
    attachment: bytes = CCDA,
    filename: str = "ccd.xml",
    content_type: str = "text/xml",
) -> bytes:
    boundary = "b1_" + os.urandom(6).hex()
    encoded = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
    body = (
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSummary attached.\r\n"
        f"--{boundary}\r\nContent-Type: {content_type}; name={filename}\r\n"
        f"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename={filename}\r\n\r\n"
    ).encode() + encoded + f"--{boundary}--\r\n".encode()
    return plain(
        sender,
        recipients,
        "Summary of care",
        body,
        (("MIME-Version", "1.0"), ("Content-Type", f'multipart/mixed; boundary="{boundary}"')),
    )


def ccda_of_size(size: int) -> bytes:
    """A C-CDA document padded to about ``size`` bytes with plausible XML."""
    entry = b"  <entry><observation classCode=\"OBS\" moodCode=\"EVN\"><code code=\"8480-6\"/></observation></entry>\r\n"
    head, tail = CCDA.split(b"</ClinicalDocument>")
    count = max(0, (size - len(CCDA)) // len(entry))
    return head + entry * count + b"</ClinicalDocument>" + tail
