"""The delivery monitor's table, on the gateway's one ``MetaData`` (migration 0006).

One ``tracking`` row per submitted message and recipient: what the sending
HISP must learn about that recipient (Direct items 26-27): ``processed``, and
``dispatched`` when the submitter asked for timely and reliable delivery.

Every notification is recorded by a column that is set at most once
(``processed_at``, ``dispatched_at``, ``failed_at``, ``final_notice_at``), and
each is set by a conditional UPDATE (``... WHERE x IS NULL``) in the same
transaction as the work it licenses (passing an MDN back, queueing a DSN or
failure notice). So duplicates, late reports and several nodes sweeping
timeouts at once can never produce a second notice: the database decides which
transaction came first.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from gateway.store import messaging as _messaging  # noqa: F401 -- the tables referred to below
from gateway.store.schema import UtcDateTime, metadata

tracking = Table(
    "tracking",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # the submitted message (messages.direction 'out') and the outbound job carrying it to this recipient
    Column("message_id", Integer, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("job_id", Integer, ForeignKey("outbound.id", ondelete="SET NULL"), nullable=True),
    # the edge sender (the EHR's address) and the Direct recipient
    Column("sender", String(320), nullable=False),
    Column("recipient", String(320), nullable=False),
    # the submitted Message-ID, which MDNs and DSNs name as Original-Message-ID
    Column("original_message_id", Text, nullable=False),
    # Disposition-Notification-Options asked for X-DIRECT-FINAL-DESTINATION-DELIVERY
    Column("reliable", Boolean, nullable=False),
    # gateway.monitor.tracking.TrackState
    Column("state", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("detail", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    # when the timeout fires: set once the job was sent (before that, the queue's lifetime governs)
    Column("deadline_at", UtcDateTime, nullable=True),
    Column("processed_at", UtcDateTime, nullable=True),
    Column("dispatched_at", UtcDateTime, nullable=True),
    Column("failed_at", UtcDateTime, nullable=True),
    # the one final notice to the edge (success: the MDN passed back; failure: a DSN or failed notice)
    Column("final_notice_at", UtcDateTime, nullable=True),
    # gateway.monitor.tracking.Outcome: 'delivered', 'failed', 'timed-out'
    Column("final_outcome", String(16), nullable=True),
    UniqueConstraint("message_id", "recipient", name="uq_tracking_message_recipient"),
    Index("ix_tracking_original_message_id", "original_message_id"),
    Index("ix_tracking_deadline_at", "deadline_at"),
    Index("ix_tracking_job_id", "job_id"),
)
