"""The outbound side: the queue of what the gateway must send (MDNs now,
providers' mail later), and the worker that seals and delivers it.

The composition root builds, once::

    settings = outbound_settings(config.section("outbound"), config.section("routes"), helo=first_domain)
    queue = OutboundQueue(store, backoff=settings.backoff)
    router = MxRouter(discovery.dns, static=settings.routes, tls_for=settings.tls_for, mx_port=settings.mx_port)
    worker = DeliveryWorker(queue, discovery=discovery, keys=LocalDomains(store), router=router,
                            transport=SmtpTransport(settings), settings=settings, clock=now, owner=node_name)
    await worker.run(stop_event)

and hands ``queue`` to the inbound pipeline, which calls ``enqueue`` inside
its own transaction. docs/outbound.md tells the whole story.
"""

from .queue import Event, Job, JobKind, JobState, OutboundQueue, Reason, Settled, SettledHook
from .routes import Destination, MxRouter, Routed, Router, Unroutable
from .settings import (
    Backoff,
    OutboundSettings,
    OutboundSettingsError,
    StaticRoute,
    TlsMode,
    outbound_settings,
)
from .transport import Delivery, Permanent, Sent, SmtpTransport, Temporary, Transport
from .worker import Attempt, CertificateFinder, DeliveryWorker, SigningKeys

__all__ = [
    "Attempt", "Backoff", "CertificateFinder", "Delivery", "DeliveryWorker", "Destination", "Event", "Job",
    "JobKind", "JobState", "MxRouter", "OutboundQueue", "OutboundSettings", "OutboundSettingsError", "Permanent",
    "Reason", "Routed", "Router", "Sent", "Settled", "SettledHook", "SigningKeys", "SmtpTransport", "StaticRoute", "Temporary", "TlsMode",
    "Transport", "Unroutable", "outbound_settings",
]
