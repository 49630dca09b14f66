"""Per submitted message and recipient: what the delivery monitor tracks.

The submission pipeline calls ``track_in`` inside its acceptance transaction,
once per recipient, beside the outbound job that carries the message there.
From then on the row moves through (Direct items 26-28)::

    queued --job sent--> sent --processed MDN--> processed --dispatched MDN--> dispatched
       |                   |                         |
       +-- job failed / expired (DSN) --> failed     +-- failed MDN / DSN --> failed
                           +-- no MDN before the deadline --> timed-out (failure notice)

``processed`` is final success unless the submitter asked for timely and
reliable delivery, when only ``dispatched`` is. ``failed`` and ``timed-out``
are final failures. The state table itself lives in ``gateway.monitor.states``
(a pure function of the row's facts); this module holds the row.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Connection, insert

from gateway.store.prepared import Id, Prepared

from .schema import tracking


class TrackState(enum.Enum):
    """What ``directgw messages`` shows per outbound recipient."""

    QUEUED = "queued"
    """In the outbound queue: not yet taken by the recipient's HISP."""
    SENT = "sent"
    """The recipient's HISP answered 250; waiting for its MDNs."""
    PROCESSED = "processed"
    """The recipient's HISP reported it opened and trusted the message."""
    DISPATCHED = "dispatched"
    """The recipient's HISP reported delivery to the final destination."""
    FAILED = "failed"
    """Not delivered: refused, no certificate, past its lifetime, or a failed MDN or DSN."""
    TIMED_OUT = "timed-out"
    """Sent, but the MDNs owed did not come before the deadline."""


class Outcome(enum.Enum):
    """The one final word the edge sender gets per recipient."""

    DELIVERED = "delivered"
    """processed (or processed and dispatched when reliable): the MDNs themselves went back."""
    FAILED = "failed"
    """A DSN or a failed MDN went back."""
    TIMED_OUT = "timed-out"
    """A failure notice went back: the MDNs owed never came."""


_INSERT = Prepared(insert(tracking), (
    "message_id", "job_id", "sender", "recipient", "original_message_id", "reliable", "state", "created_at",
    "updated_at"))
"""On the driver's cursor (gateway.store.prepared): one per submitted recipient, in the acceptance."""


def track_in(
    conn: Connection,
    *,
    message: Id,
    job: Id,
    sender: str,
    recipient: str,
    original_message_id: str,
    reliable: bool,
    at: datetime,
) -> None:
    """Start tracking ``recipient`` of submitted ``message`` (carried by outbound ``job``),
    in the caller's open write transaction so the tracking commits with the acceptance."""
    _INSERT.later(conn, dict(
        message_id=message, job_id=job, sender=sender.strip().lower(), recipient=recipient.strip().lower(),
        original_message_id=original_message_id.strip(), reliable=reliable, state=TrackState.QUEUED.value,
        created_at=at, updated_at=at,
    ))


class Delivery(enum.Enum):
    """A submitted message as a whole, for ``directgw messages``."""

    DELIVERED = "delivered"
    """Every recipient's final word was success."""
    FAILED = "failed"
    """Every recipient has its final word, and at least one is a failure or a timeout."""
    PENDING = "pending"
    """Some recipient is still queued, or waiting for its MDNs."""


def delivery_of(outcomes: list[Outcome | None]) -> Delivery | None:
    """None for a message nobody tracks (received mail, MDNs we send)."""
    if not outcomes:
        return None
    if any(o is None for o in outcomes):
        return Delivery.PENDING
    return Delivery.DELIVERED if all(o is Outcome.DELIVERED for o in outcomes) else Delivery.FAILED
