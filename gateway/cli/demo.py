"""``directgw demo``: the Direct story in one command, printed step by step.

Two HISPs, each with its own throwaway PKI, exchange one clinical message:
the hospital's EHR submits plain mail, our outbound side wraps, signs and
encrypts it, the clinic's inbound side decrypts and verifies it and sends a
processed MDN back the same way. Then the ways a message is refused. Later
issues grow this into SMTP, DNS discovery, the queue and the records bridge.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
from datetime import UTC, datetime

from anchors.source import StaticAnchors
from gateway import devpki
from gateway.core import (
    ContentCipher,
    KeyTransport,
    Opened,
    Rejected,
    SealOptions,
    open_inbound,
    seal_outbound,
)
from gateway.core.mdn import Disposition, Mdn, build_mdn, mdn_request, parse_mdn

CCDA = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n<ClinicalDocument xmlns="urn:hl7-org:v3">\r\n'
    b'  <templateId root="2.16.840.1.113883.10.20.22.1.1"/>\r\n'
    b"  <title>Summary of Care: Jane Doe</title>\r\n</ClinicalDocument>\r\n"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the Direct round trip between two HISPs, printing each step")
    p.set_defaults(func=cmd_demo)


class Story:
    def __init__(self) -> None:
        self.step = 0

    def say(self, title: str, *details: str) -> None:
        self.step += 1
        print(f"\n[{self.step}] {title}")
        for d in details:
            print(f"    {d}")


def submitted_message() -> bytes:
    attachment = base64.encodebytes(CCDA).replace(b"\n", b"\r\n")
    return (
        b"From: Dr. Alice Smith <alice@hospital.example>\r\n"
        b"To: Dr. Bob Jones <bob@clinic.example>\r\n"
        b"Subject: Referral: Jane Doe, summary of care\r\n"
        b"Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="ehr"\r\n\r\n'
        b"--ehr\r\nContent-Type: text/plain\r\n\r\nBob, please see Jane's summary of care attached.\r\n"
        b"--ehr\r\nContent-Type: text/xml; name=ccd.xml\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=ccd.xml\r\n\r\n" + attachment + b"--ehr--\r\n"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    return asyncio.run(story(datetime.now(UTC)))


async def story(at: datetime) -> int:
    # imported here, not at the top: building the parser (``--help``) must not load the HTTP client
    from trust import DomainPolicies, OfflineFetcher, TrustService

    story = Story()
    hospital = devpki.hisp("hospital.example")
    clinic = devpki.hisp("clinic.example")
    alice = hospital.address("alice")
    bob = clinic.address("bob")
    story.say(
        "Two HISPs, each with its own certificate authority",
        f"hospital.example: root {hospital.root.ref.subject}, issuing CA, org-bound and alice@ certificates",
        f"clinic.example:   root {clinic.root.ref.subject}, issuing CA, org-bound and bob@ certificates",
    )

    plain = submitted_message()
    story.say(
        "The hospital's EHR submits a plain message (C-CDA attached, reliable delivery requested)",
        *[line.decode() for line in plain.split(b"\r\n")[:4]],
        f"{len(plain)} bytes",
    )

    sealed = seal_outbound(
        plain,
        alice.pair,
        [bob.ref, clinic.org.ref],
        SealOptions(at=at, chain=(hospital.intermediate.ref,)),
    )
    if isinstance(sealed, Rejected):
        print(f"unexpected: {sealed}")
        return 1
    outer = sealed.message.split(b"\r\n\r\n", 1)[0].decode()
    story.say(
        "Our outbound side wraps it (message/rfc822), signs it, encrypts it to both clinic certificates",
        f"signature: {sealed.digest.value} by {alice.ref.subject}",
        f"encryption: {sealed.cipher.value}, key transport {sealed.key_transport.value}, "
        f"{len(sealed.recipients)} recipients",
        f"Message-ID {sealed.message_id}; {len(sealed.message)} bytes; outer headers (no Subject):",
        *["  " + h for h in outer.split("\r\n")],
    )

    opened = open_inbound(sealed.message, [clinic.org.pair, bob.pair], at=at)
    if isinstance(opened, Rejected):
        print(f"unexpected: {opened}")
        return 1
    story.say(
        "The clinic's inbound side decrypts with one of its keys and checks the signature over the exact bytes",
        f"decrypted with {opened.encryption.recipient.subject if opened.encryption else '-'}",
        f"signed by {opened.signature.signer.subject} ({opened.signature.digest.value}, "
        f"{opened.signature.scheme.value}); chain certificates carried: {len(opened.signature.certificates)}",
        f"inner From {', '.join(opened.inner.from_)}; Subject {opened.inner.subject!r}",
        *[
            f"part {p.content_type} {p.kind.value} {p.size} bytes sha256 {p.sha256[:16]}..."
            for p in opened.parts
        ],
        f"findings: {', '.join(str(f) for f in opened.findings) or 'none'}",
    )

    # The clinic trusts the hospital's root for mail coming in to clinic.example.
    trust = TrustService(StaticAnchors((hospital.root.ref,)), OfflineFetcher(), DomainPolicies())
    verdict = await trust.check_inbound(opened, recipient="bob@clinic.example", at=at)
    decision = verdict.decision
    story.say(
        "Trust: the signer's chain against the incoming anchors of clinic.example (RFC 5280, Direct policy)",
        f"{'TRUSTED' if verdict.trusted else 'NOT TRUSTED'}: {decision}",
    )
    stranger = devpki.hisp("elsewhere.example").address("eve")
    forged_from = plain.replace(b"alice@hospital.example", b"eve@elsewhere.example")
    other = seal_outbound(forged_from, stranger.pair, [bob.ref], SealOptions(at=at))
    assert not isinstance(other, Rejected)
    other_opened = open_inbound(other.message, [bob.pair], at=at)
    assert isinstance(other_opened, Opened)
    untrusted = await trust.check_inbound(other_opened, recipient="bob@clinic.example", at=at)
    failure = untrusted.decision.failure
    print(
        "    a message signed under a CA the clinic does not trust: "
        f"{'TRUSTED?!' if untrusted.trusted else 'NOT TRUSTED'}"
        + (f" ({failure.check.value}: {failure.detail})" if failure else "")
    )

    request = mdn_request(opened.kind, opened.inner)
    assert request is not None
    notes = [Disposition.PROCESSED] + ([Disposition.DISPATCHED] if request.reliable else [])
    lines = [f"reliable delivery requested: {'yes' if request.reliable else 'no'}"]
    for disposition in notes:
        mdn = build_mdn(
            disposition, original=opened.inner, final_recipient="bob@clinic.example",
            reporting_domain="clinic.example", at=at,
        )
        back = seal_outbound(mdn, bob.pair, [alice.ref], SealOptions(at=at))
        assert not isinstance(back, Rejected)
        received = open_inbound(back.message, [alice.pair], at=at)
        assert isinstance(received, Opened)
        parsed = parse_mdn(received.content.split(b"\r\n\r\n", 1)[1])
        assert isinstance(parsed, Mdn)
        lines.append(
            f"{disposition.value}: sealed by the clinic ({len(back.message)} bytes), opened by the hospital as "
            f"{received.kind.value} for {parsed.original_message_id}; answered with an MDN? "
            f"{'yes' if mdn_request(received.kind, received.inner) else 'never (no MDN to an MDN)'}"
        )
    story.say("The clinic acknowledges with MDNs, themselves signed and encrypted Direct messages", *lines)

    story.say("What is refused, and why (typed reasons, never a silent drop)")
    head, body = sealed.message.split(b"\r\n\r\n", 1)
    der = bytearray(base64.b64decode(body))
    der[-8] ^= 0x01  # inside the last AES-CBC block: its padding no longer checks out
    tampered = head + b"\r\n\r\n" + base64.encodebytes(bytes(der)).replace(b"\n", b"\r\n")
    wrong = devpki.hisp("elsewhere.example").address("eve")
    for label, raw, keys in [
        ("plain mail to the Direct port", plain, [bob.pair]),
        ("a message for someone else", sealed.message, [wrong.pair]),
        ("ciphertext changed in transit", tampered, [clinic.org.pair, bob.pair]),
    ]:
        result = open_inbound(raw, keys, at=at)
        outcome = f"{result.reason.value}: {result.detail}" if isinstance(result, Rejected) else "opened?!"
        print(f"    {label:34} -> {outcome}")
    for cipher, transport in [
        (ContentCipher.AES128_GCM, KeyTransport.RSA_OAEP_SHA256),
        (ContentCipher.AES128_CBC, KeyTransport.RSA_OAEP_SHA1),
    ]:
        again = seal_outbound(plain, alice.pair, [bob.ref], SealOptions(at=at, cipher=cipher, key_transport=transport))
        ok = not isinstance(again, Rejected) and isinstance(open_inbound(again.message, [bob.pair], at=at), Opened)
        print(f"    round trip {cipher.value} + {transport.value:16} -> {'opened' if ok else 'FAILED'}")
    print("\nDone: sealed, opened, verified, trusted, acknowledged; bad messages refused with typed reasons.")
    return 0
