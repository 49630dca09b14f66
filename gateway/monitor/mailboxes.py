"""Providers' mailboxes: what the receiving pipeline and the queue hand to a provider's mail server.

A local address that is not a record's belongs to a provider (issue 9). When
its domain has a provider route (``[domains."D"] provider_smtp``):

- RCPT for it is accepted (``serves``);
- a verified Direct message for it is queued, in the acceptance's own
  transaction, as a ``provider`` job: the signed message in plain form with
  the trust decision in ``X-Direct-*`` fields (``gateway.core.forward``). The
  250 follows that commit, and the ``processed`` MDN is queued in it as for
  records; ``dispatched`` (when the sender asked for timely and reliable
  delivery) waits until the provider's server took the message, and
  ``failed`` is sent if it never does (Direct items 25, ETT MT 41);
- MDNs and DSNs for its submitters go to the delivery monitor, which passes
  them back as ``notice`` jobs.

``job_settled`` is the outbound queue's ``on_settled`` hook for both kinds of
job that end in a notice: mail (the monitor) and provider deliveries (the
dispatched or failed MDN).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select

from gateway.core.forward import headers_of, plain_message
from gateway.core.mdn import Disposition, ascii_line, build_mdn, mdn_request
from gateway.core.mime import MimeError
from gateway.core.outcomes import MessageKind, Opened
from gateway.outbound.queue import Job, JobKind, JobState, Settled, enqueue_in
from gateway.store.messaging import outbound
from gateway.store.prepared import Id
from trust.types import TrustDecision

from .monitor import DeliveryMonitor
from .settings import MonitorSettings

PROVIDER_LIFETIME = timedelta(days=4)
"""A provider's mail server down for days is an outage to outlast, as for any mail (RFC 5321 4.5.4.1)."""
MDN_LIFETIME = timedelta(days=1)
"""As the receiving pipeline's MDNs: the sender's monitor gives up on its own within hours."""


def trace_fields(opened: Opened, decision: TrustDecision) -> list[tuple[str, str]]:
    """The verdict a provider reads on top of the message (one-line ASCII, ours alone)."""
    signer = opened.signature.signer
    return [
        ("X-Direct-Trust", ascii_line(f"trusted; {decision}")),
        ("X-Direct-Signer", ascii_line(f"{signer.subject}; sha256={signer.sha256}")),
        ("X-Direct-Sender", ascii_line(opened.sender)),
    ]


class ProviderMailboxes:
    SETTLED_KINDS = frozenset({JobKind.MAIL, JobKind.PROVIDER})
    """The kinds of job ``job_settled`` acts on (the queue's ``settled_kinds``): an MDN's or a
    notice's end concerns nobody."""

    def __init__(self, settings: MonitorSettings, monitor: DeliveryMonitor, *,
                 lifetime: timedelta = PROVIDER_LIFETIME, mdn_lifetime: timedelta = MDN_LIFETIME) -> None:
        self.settings = settings
        self.monitor = monitor
        self.lifetime = lifetime
        self.mdn_lifetime = mdn_lifetime

    def serves(self, domain: str) -> bool:
        """RCPT for an address of ``domain`` that is no record's is accepted."""
        return self.settings.provider_route(domain) is not None

    def deliver_in(self, conn: Connection, message: Id, raw: bytes, opened: Opened, recipient: str,
                   decision: TrustDecision, at: datetime) -> bool:
        """Queue the verified message for ``recipient``'s provider; False when it was already
        queued (a sender's retry after a lost 250, recognised by its Message-ID from the same
        signer-bound sender: another sender's message with that Message-ID is a message)."""
        message_id = opened.inner.message_id
        if message_id is not None:
            known = conn.execute(
                select(outbound.c.id).where(
                    outbound.c.recipient == recipient, outbound.c.kind == JobKind.PROVIDER.value,
                    outbound.c.relates_to == message_id,
                    func.lower(outbound.c.sender) == opened.sender.lower(),
                ).limit(1)
            ).first()
            if known is not None:
                return False
        payload = plain_message(raw, opened, trace_fields(opened, decision))
        enqueue_in(conn, JobKind.PROVIDER, opened.sender, recipient, payload, at=at, lifetime=self.lifetime,
                   relates_to=message_id, message_id=message)
        return True

    def report_in(self, conn: Connection, message: int, raw: bytes, opened: Opened, *,
                  recipients: tuple[str, ...], at: datetime) -> None:
        """An MDN or DSN addressed to us: to the monitor, in plain form (what is passed back)."""
        try:
            plain = plain_message(raw, opened, [("X-Direct-Sender", ascii_line(opened.sender))])
        except MimeError as exc:  # the report is kept (state report); only matching it is impossible
            self.monitor.unreadable(conn, message, at, str(exc))
            return
        self.monitor.report_in(conn, message, opened.kind, plain, signer=opened.sender, recipients=recipients,
                               at=at)

    # ---------------------------------------------------------------- the queue's hook

    def job_settled(self, conn: Connection, job: Job, settled: Settled) -> None:
        if job.kind is JobKind.MAIL:
            self.monitor.mail_settled(conn, job, settled)
        elif job.kind is JobKind.PROVIDER:
            self._provider_settled(conn, job, settled)

    def _provider_settled(self, conn: Connection, job: Job, settled: Settled) -> None:
        """The provider's server took the message (``dispatched``) or never will (``failed``),
        for senders that asked for timely and reliable delivery (Direct item 25)."""
        try:
            original = headers_of(job.payload)
        except MimeError:
            return  # we wrote this payload from a parsed message: unreadable means nothing to answer
        request = mdn_request(MessageKind.MESSAGE, original)
        if request is None or not request.reliable:
            return
        if settled.state is JobState.SENT:
            disposition, failure = Disposition.DISPATCHED, None
        else:
            disposition = Disposition.FAILED
            failure = f"the provider's mail server did not take the message: {settled.detail or settled.state.value}"
        payload = build_mdn(disposition, original=original, final_recipient=job.recipient,
                            reporting_domain=job.domain, at=settled.at, notify=request.notify, failure=failure)
        for notify in request.notify:
            enqueue_in(conn, JobKind.MDN, job.recipient, notify, payload, at=settled.at, lifetime=self.mdn_lifetime,
                       relates_to=original.message_id, message_id=job.message_id)
