"""The acts of the demo, each step told when the gateways' logs show it happened.

Act 1: a discharge summary travels from the hospital's EHR to Jane's record:
submitted (authenticated, over TLS), the recipient's certificate discovered in
DNS, sealed (signed, then encrypted), verified at the PHR's HISP against its
anchors and stored in Jane's record before its 250 reaches the hospital (the
steps are told in the order they happen), and acknowledged by the
``processed`` and ``dispatched`` MDNs the EHR receives back.
Act 2: a clinic whose certificate no member of the trust community vouches
for sends to Jane: refused, and its EHR gets a DSN that says why.
Act 3: a recipient who never published a certificate: nothing is sent, and
the EHR gets a DSN that says which sources were asked.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import smtplib
import ssl
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from .inbox import Delivered, EhrInbox
from .pki import CLINIC, DOCTOR, loopback_tls, make_pki
from .sites import (
    EHR_ACCOUNT,
    EHR_PASSWORD,
    NO_CERT_DOMAIN,
    OUTSIDER_ACCOUNT,
    OUTSIDER_PASSWORD,
    PATIENT,
    PATIENT_LOGIN,
    PATIENT_PASSWORD,
    SetupError,
    Site,
    prepare,
)
from .watch import Event, Gateway

STEP_TIMEOUT = 60.0
"""Seconds any one step may take before the demo says it did not happen."""

DOCUMENT_NAME = "discharge-summary.xml"
WIDTH = 100


def document() -> bytes:
    """The C-CDA the project ships in examples/ (installed under share/directgw/examples)."""
    for place in (Path(__file__).resolve().parents[2] / "examples",
                  Path(sys.prefix) / "share" / "directgw" / "examples"):
        if (place / DOCUMENT_NAME).is_file():
            return (place / DOCUMENT_NAME).read_bytes()
    raise FileNotFoundError(f"{DOCUMENT_NAME} is neither in the source tree's examples/ nor installed")


def message(sender: str, recipient: str, subject: str, body: str, attachment: bytes | None) -> bytes:
    """What an EHR submits: plain RFC 5322 mail asking for timely and reliable delivery."""
    domain = sender.rpartition("@")[2]
    head = (
        f"From: {sender}\r\nTo: {recipient}\r\nSubject: {subject}\r\n"
        f"Date: {format_datetime(dt.datetime.now(dt.UTC))}\r\nMessage-ID: <{uuid.uuid4().hex}@{domain}>\r\n"
        "Disposition-Notification-Options: X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true\r\n"
        "MIME-Version: 1.0\r\n"
    )
    if attachment is None:
        return (head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n").encode()
    encoded = base64.encodebytes(attachment).decode().replace("\n", "\r\n")
    return (
        head + 'Content-Type: multipart/mixed; boundary="ehr-boundary"\r\n\r\n'
        "--ehr-boundary\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n"
        f'--ehr-boundary\r\nContent-Type: text/xml; name="{DOCUMENT_NAME}"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="{DOCUMENT_NAME}"\r\n\r\n' + encoded + "--ehr-boundary--\r\n"
    ).encode()


@dataclass
class Outcome:
    """What ``--once`` checks and the test reads: did each act end as it should."""

    delivered_identical: bool = False
    processed_mdn: bool = False
    dispatched_mdn: bool = False
    untrusted_refused: bool = False
    untrusted_dsn: bool = False
    no_certificate_dsn: bool = False
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and all((self.delivered_identical, self.processed_mdn, self.dispatched_mdn,
                                         self.untrusted_refused, self.untrusted_dsn, self.no_certificate_dsn))


class Teller:
    """Prints numbered steps with the seconds since the act began, and one sentence of why."""

    def __init__(self, out: Callable[[str], None] = print) -> None:
        self.out = out
        self.step = 0
        self.started = time.monotonic()

    def act(self, title: str, why: str) -> None:
        self.started = time.monotonic()
        self.out(f"\n=== {title}\n    {why}")

    def say(self, title: str, why: str, *details: str, at: float | None = None) -> None:
        """One step; ``at`` is when it happened (monotonic), if not now."""
        self.step += 1
        self.out(f"\n[{self.step}] +{(at or time.monotonic()) - self.started:6.2f}s  {title}")
        for detail in details:
            for line in detail.splitlines():
                self.out(textwrap.fill(line.strip(), WIDTH, initial_indent="      ", subsequent_indent="        "))
        self.out(textwrap.fill(f"why: {why}", WIDTH, initial_indent="      ", subsequent_indent="           "))

    def missed(self, outcome: Outcome, what: str) -> None:
        outcome.missing.append(what)
        self.out(f"\n[!] {what} did not happen within {STEP_TIMEOUT:.0f}s; see the gateways' serve.log files")


def _submit(port: int, tls_file: Path, account: str, password: str, sender: str, recipient: str,
            data: bytes) -> None:
    context = ssl.create_default_context(cafile=str(tls_file))
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.starttls(context=context)
        client.login(account, password)
        client.sendmail(sender, [recipient], data)


def _is(kind: str, **fields: Any) -> Callable[[Event], bool]:
    def wanted(event: Event) -> bool:
        return event.get("event") == kind and all(event.get(k) == v for k, v in fields.items())
    return wanted


def _mdn_for(message_id: str, disposition: str) -> Callable[[Delivered], bool]:
    def wanted(d: Delivered) -> bool:
        mdn = d.mdn
        return (mdn is not None and mdn.disposition is not None and mdn.disposition.value == disposition
                and (mdn.original_message_id or "").strip("<> ") == message_id.strip("<> "))
    return wanted


def _dsn_about(recipient: str) -> Callable[[Delivered], bool]:
    def wanted(d: Delivered) -> bool:
        dsn = d.dsn
        return dsn is not None and any(r.final_recipient == recipient for r in dsn.recipients)
    return wanted


def _message_id(data: bytes) -> str:
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise ValueError("no Message-ID")


class Demo:
    def __init__(self, directory: Path, teller: Teller) -> None:
        self.directory = directory
        self.tell = teller
        self.outcome = Outcome()
        self.inbox = EhrInbox()
        self.gateways: list[Gateway] = []
        self.hospital: Site
        self.phr: Site
        self.hospital_gw: Gateway
        self.phr_gw: Gateway
        self.tls: tuple[Path, Path]

    async def setup(self) -> None:
        at = dt.datetime.now(dt.UTC)
        pki = make_pki(at)
        self.tls = loopback_tls(self.directory, at)
        inbox_port = await self.inbox.start()
        self.hospital, self.phr = await asyncio.to_thread(prepare, self.directory, pki, self.tls, inbox_port)
        loop = asyncio.get_running_loop()
        self.hospital_gw = Gateway("hospital", self.hospital.config, loop)
        self.phr_gw = Gateway("phr", self.phr.config, loop)
        self.gateways = [self.hospital_gw, self.phr_gw]
        for gw in self.gateways:
            if await gw.wait_for(_is("serve.started"), STEP_TIMEOUT) is None:
                raise SetupError(f"the {gw.name} gateway did not start; see {self.directory / gw.name / 'serve.log'}")
        self.tell.out(
            f"Throw-away data directory: {self.directory}\n"
            f"Trust community: 'Demo Trust Community Root' (both HISPs hold it as their anchor)\n"
            f"{self.hospital.name}: SMTP 127.0.0.1:{self.hospital.smtp}, submission 127.0.0.1:{self.hospital.submission}, "
            f"DNS 127.0.0.1:{self.hospital.dns}\n"
            f"{self.phr.name}: SMTP 127.0.0.1:{self.phr.smtp}, DNS 127.0.0.1:{self.phr.dns}, "
            f"records bridge http://127.0.0.1:{self.phr.bridge}/\n"
            f"The EHR's inbox (the hospital's provider route): 127.0.0.1:{inbox_port}"
        )

    async def close(self) -> None:
        for gw in self.gateways:
            await asyncio.to_thread(gw.stop)
        await self.inbox.close()

    async def submit(self, account: str, password: str, sender: str, recipient: str, data: bytes) -> None:
        assert self.hospital.submission is not None
        await asyncio.to_thread(_submit, self.hospital.submission, self.tls[0], account, password, sender,
                                recipient, data)

    # ------------------------------------------------------------------ act 1

    async def act_delivery(self) -> None:
        t = self.tell
        ccda = document()
        t.act("Act 1: a discharge summary goes from the hospital's EHR to Jane's personal health record",
              "Dr. Smith's EHR speaks plain SMTP; the HISPs turn it into Direct: signed, encrypted, verified, acknowledged.")
        data = message(DOCTOR, PATIENT, "Discharge summary: Jane Doe",
                       "Jane, your discharge summary from Springfield General is attached. - Dr. Smith", ccda)
        message_id = _message_id(data)
        h_mark, p_mark = len(self.hospital_gw.events), len(self.phr_gw.events)
        await self.submit(EHR_ACCOUNT, EHR_PASSWORD, DOCTOR, PATIENT, data)
        t.say("Submitted by the EHR", "authenticated submission over TLS: only the hospital's accounts may send as its domain, "
              "and the 250 came only once the message was stored durably.",
              f"{DOCTOR} -> {PATIENT}, {len(data)} bytes, Message-ID {message_id}",
              f"SMTP AUTH as '{EHR_ACCOUNT}' after STARTTLS on port {self.hospital.submission}")

        found = await self.hospital_gw.wait_for(_is("outbound.discovered", recipient=PATIENT), STEP_TIMEOUT, after=h_mark)
        if found is None:
            t.missed(self.outcome, "certificate discovery")
        else:
            t.say("Recipient's certificate discovered", "Direct encrypts to the recipient's own certificate, "
                  "found where its HISP published it, and judged against the anchors the hospital trusts for phr.demo.",
                  f"from a {str(found.get('source')).upper()} CERT record ({found.get('binding')}-bound): "
                  + "; ".join(str(c) for c in found.get("certificates") or []), at=found.get("_seen"))
        sealed = await self.hospital_gw.wait_for(_is("outbound.sealed", recipient=PATIENT), STEP_TIMEOUT, after=h_mark)
        if sealed is None:
            t.missed(self.outcome, "sealing")
        else:
            t.say("Sealed: signed, then encrypted (S/MIME)", "the signature proves who sent it and that nothing changed; "
                  "the encryption lets only Jane's HISP read it.",
                  f"signed by {sealed.get('signer')} with {sealed.get('digest')}",
                  f"encrypted with {sealed.get('cipher')}, key transport {sealed.get('key_transport')}",
                  at=sealed.get("_seen"))
        verified = await self.phr_gw.wait_for(_is("delivered"), STEP_TIMEOUT, after=p_mark)
        if verified is None:
            t.missed(self.outcome, "verification at phr.demo")
        else:
            trust = verified.get("trust") or []
            t.say("Decrypted and verified at phr.demo, then stored in Jane's record",
                  "the signer's chain must end at an anchor phr.demo trusts, and the certificate must name the sender.",
                  *(f"{d}" for d in (trust if isinstance(trust, list) else [trust])), at=verified.get("_seen"))
        self.outcome.delivered_identical = await self._check_record(ccda, verified.get("_seen") if verified else None)
        sent = await self.hospital_gw.wait_for(
            _is("outbound.attempt", recipient=PATIENT, state="sent"), STEP_TIMEOUT, after=h_mark)
        if sent is None:
            t.missed(self.outcome, "delivery to phr.demo")
        else:
            t.say("Delivered to the PHR's HISP over SMTP: its 250",
                  "phr.demo answered 250 only after it had verified and stored the message "
                  "(until then the hospital's queue keeps it and retries).",
                  f"{sent.get('peer')}: {str(sent.get('detail', ''))[:200]}", at=sent.get("_seen"))
        processed = await self.inbox.wait_for(_mdn_for(message_id, "processed"), STEP_TIMEOUT)
        if processed is None:
            t.missed(self.outcome, "the processed MDN")
        else:
            self.outcome.processed_mdn = True
            t.say("'processed' MDN back at the EHR", "the receiving HISP confirms, signed, that it accepted the message; "
                  "the hospital's delivery monitor matched it and passed it to the EHR.",
                  f"from {processed.mdn.final_recipient if processed.mdn else '?'}: {processed.header('Subject')}",
                  at=processed.arrived)
        dispatched = await self.inbox.wait_for(_mdn_for(message_id, "dispatched"), STEP_TIMEOUT)
        if dispatched is None:
            t.missed(self.outcome, "the dispatched MDN")
        else:
            self.outcome.dispatched_mdn = True
            t.say("'dispatched' MDN back at the EHR", "timely and reliable delivery was asked for: this says the "
                  "document reached its final destination, Jane's record.",
                  f"{dispatched.header('Subject')}", at=dispatched.arrived)

    async def _check_record(self, ccda: bytes, at: float | None) -> bool:
        items = json.loads(await asyncio.to_thread(self.phr.cli, "records", "items", PATIENT, "--json"))
        digest = hashlib.sha256(ccda).hexdigest()
        same = [i for i in items if i.get("sha256") == digest]
        if same:
            kinds = ", ".join(sorted({str(i.get("type")) for i in items}))
            self.tell.say("In Jane's record", "the C-CDA is stored byte for byte as it was signed, typed as a clinical "
                          "document, unreviewed in Jane's inbox until she looks.",
                          f"{len(items)} items ({kinds}); the document's SHA-256 {digest[:16]}... matches the EHR's file",
                          at=at)
            return True
        self.tell.missed(self.outcome, "the document in Jane's record, byte-identical")
        return False

    # ------------------------------------------------------------------ act 2

    async def act_untrusted(self) -> None:
        t = self.tell
        t.act("Act 2: a sender outside the trust community",
              "clinic.demo's certificate comes from a CA that phr.demo does not trust: its message must be refused.")
        sender = f"front.desk@{CLINIC}"
        data = message(sender, PATIENT, "Appointment", "Please call us about your appointment.", None)
        h_mark, p_mark = len(self.hospital_gw.events), len(self.phr_gw.events)
        await self.submit(OUTSIDER_ACCOUNT, OUTSIDER_PASSWORD, sender, PATIENT, data)
        t.say("Submitted by the clinic's EHR", "the hospital's HISP hosts clinic.demo too, with a key from another CA.")
        refused = await self.phr_gw.wait_for(_is("rejected"), STEP_TIMEOUT, after=p_mark)
        if refused is None:
            t.missed(self.outcome, "the refusal at phr.demo")
        else:
            self.outcome.untrusted_refused = True
            t.say("Refused by phr.demo", "nothing enters Jane's record from a signer no anchor vouches for.",
                  f"reason: {refused.get('reason')}: {refused.get('detail', '')}",
                  f"reply: {refused.get('reply')}", at=refused.get("_seen"))
        failed = await self.hospital_gw.wait_for(_is("outbound.attempt", recipient=PATIENT, state="failed"),
                                                 STEP_TIMEOUT, after=h_mark)
        if failed is not None:
            t.say("The hospital's HISP records the permanent failure", "a 5xx is final: no retries.",
                  f"{failed.get('code')} {str(failed.get('detail', ''))[:160]}", at=failed.get("_seen"))
        dsn = await self.inbox.wait_for(lambda d: _dsn_about(PATIENT)(d) and d.recipients == (sender,), STEP_TIMEOUT)
        if dsn is None:
            t.missed(self.outcome, "the DSN for the refused message")
        else:
            self.outcome.untrusted_dsn = True
            t.say("DSN at the clinic's EHR", "the sender learns, once, that it failed and why.", *self._dsn_lines(dsn),
                  at=dsn.arrived)

    # ------------------------------------------------------------------ act 3

    async def act_no_certificate(self) -> None:
        t = self.tell
        recipient = f"results@{NO_CERT_DOMAIN}"
        t.act("Act 3: a recipient who never published a certificate",
              "Direct forbids sending without the recipient's certificate: nothing leaves the hospital.")
        data = message(DOCTOR, recipient, "Lab order", "Please run a CBC for Jane Doe.", None)
        h_mark = len(self.hospital_gw.events)
        await self.submit(EHR_ACCOUNT, EHR_PASSWORD, DOCTOR, recipient, data)
        t.say("Submitted by the EHR", "the EHR cannot know whether a recipient can receive Direct; its HISP finds out.")
        failed = await self.hospital_gw.wait_for(_is("outbound.attempt", recipient=recipient, state="failed"),
                                                 STEP_TIMEOUT, after=h_mark)
        if failed is not None:
            t.say("No certificate found: not sent", "DNS CERT for the address and the domain answered nothing usable.",
                  f"{failed.get('reason')}: {failed.get('detail', '')}", at=failed.get("_seen"))
        dsn = await self.inbox.wait_for(_dsn_about(recipient), STEP_TIMEOUT)
        if dsn is None:
            t.missed(self.outcome, "the DSN for the recipient without a certificate")
        else:
            self.outcome.no_certificate_dsn = True
            t.say("DSN at the EHR", "it says which sources were asked and why nothing qualified.", *self._dsn_lines(dsn),
                  at=dsn.arrived)

    def _dsn_lines(self, dsn: Delivered) -> list[str]:
        report = dsn.dsn
        lines = [f"Subject: {dsn.header('Subject')}"]
        lines += [f"| {line}" for line in dsn.words()]
        if report is not None:
            for r in report.recipients:
                lines.append(f"delivery-status: {r.final_recipient}: {r.action} {r.status} {r.diagnostic or ''}".rstrip())
        return lines

    def epilogue(self) -> None:
        self.tell.out(
            "\n=== Jane's side\n"
            f"    Open http://127.0.0.1:{self.phr.bridge}/ and sign in as {PATIENT_LOGIN} / {PATIENT_PASSWORD}:\n"
            "    the discharge summary waits in her inbox, readable as a document, never as raw XML.\n"
            f"    Each gateway's full log: {self.directory}/hospital/serve.log and {self.directory}/phr/serve.log"
        )


async def run(*, once: bool, directory: Path | None = None, out: Callable[[str], None] = print) -> Outcome:
    """The whole demo. With ``once`` it ends after the acts; otherwise it keeps both gateways
    (and the bridge) running until interrupted."""
    scratch = directory or Path(tempfile.mkdtemp(prefix="directgw-demo-"))
    demo = Demo(scratch, Teller(out))
    try:
        await demo.setup()
        await demo.act_delivery()
        await demo.act_untrusted()
        await demo.act_no_certificate()
        demo.epilogue()
        verdict = "every act ended as it should" if demo.outcome.ok else f"missing: {', '.join(demo.outcome.missing)}"
        out(f"\n=== {verdict}")
        if not once:
            out("    Both gateways keep running; Ctrl-C stops them.")
            await asyncio.Event().wait()
    finally:
        await demo.close()
    return demo.outcome
