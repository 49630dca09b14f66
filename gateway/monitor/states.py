"""The delivery monitor's state table: one pure function from (what is known, what happened) to what to do.

Direct items 26-27 and the Implementation Guide for Delivery Notification:
per recipient the sender is owed exactly one final word. Success is the
``processed`` MDN, or ``processed`` and ``dispatched`` when timely and
reliable delivery was asked for; the MDNs themselves are passed back to the
submitter (no extra notice). Failure is a ``failed`` MDN or a DSN from the
other side (passed back: it is the notice), our own DSN when the queue gave
up (5xx, no certificate, lifetime), or our DSN on timeout.

Events can arrive in any order and more than once: MDNs before our worker
recorded the send, a dispatched before its processed, the same MDN twice,
an MDN after the timeout's notice. ``decide`` is total over all of them:

- each disposition is noted once (``processed_at`` ... set only when empty);
  a repeat is ``duplicate`` and changes nothing;
- after the final notice nothing more goes to the submitter, whatever comes
  (late MDNs are noted in the row and the audit trail, not passed back);
- before it, a non-final MDN (``processed`` when reliable) is passed back as
  it comes, and the first final event sends the final notice.

The caller applies a ``Decision`` in one transaction holding the row's lock,
with a conditional ``UPDATE ... WHERE final_notice_at IS NULL`` guarding the
final notice (gateway/monitor/monitor.py), so two nodes deciding at once
still send one notice.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from .tracking import Outcome, TrackState


class Mark(enum.Enum):
    """A fact noted once per recipient: the column set to the event's time."""

    SENT = "sent_at"
    PROCESSED = "processed_at"
    DISPATCHED = "dispatched_at"
    FAILED = "failed_at"


class Notice(enum.Enum):
    """What goes to the submitter's mailbox for this event."""

    NONE = "none"
    PASS_BACK = "pass-back"
    """The report that arrived (an MDN, or the other side's DSN), as it came."""
    OUR_DSN = "our-dsn"
    """A DSN we write (gateway.core.dsn): the queue's failure, or the timeout."""


class Kind(enum.Enum):
    SENT = "sent"
    """Our worker handed the message to the recipient's HISP (250)."""
    NOT_SENT = "not-sent"
    """Our queue ended the job in failure or expiry: 5xx, no certificate, lifetime."""
    PROCESSED = "processed"
    DISPATCHED = "dispatched"
    FAILED = "failed"
    """A failed MDN, or a DSN with Action: failed, from the recipient's side."""
    TIMEOUT = "timeout"
    """The sweep found the row past its deadline."""


@dataclass(frozen=True, slots=True)
class Event:
    kind: Kind
    at: datetime
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """What the tracking row knows (``gateway.monitor.schema.tracking``)."""

    state: TrackState
    reliable: bool
    sent: bool = False
    processed: bool = False
    dispatched: bool = False
    failed: bool = False
    final: bool = False
    """The one final notice has gone (or was decided)."""
    deadline_passed: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    mark: Mark | None
    """The fact to note (None: nothing new)."""
    state: TrackState | None
    """The new state (None: unchanged)."""
    notice: Notice
    final: Outcome | None
    """This event is the final word: set ``final_notice_at`` (conditionally) with this outcome."""
    duplicate: bool = False
    """Already noted: nothing changes (an MDN sent twice, a second DSN)."""
    late: bool = False
    """Noted after the final notice: recorded, never passed on."""


_MARKS = {
    Kind.SENT: Mark.SENT,
    Kind.PROCESSED: Mark.PROCESSED,
    Kind.DISPATCHED: Mark.DISPATCHED,
    Kind.FAILED: Mark.FAILED,
    Kind.NOT_SENT: Mark.FAILED,
}

_NOTED = {
    Mark.SENT: lambda f: f.sent,
    Mark.PROCESSED: lambda f: f.processed,
    Mark.DISPATCHED: lambda f: f.dispatched,
    Mark.FAILED: lambda f: f.failed,
}

_RANK = {
    TrackState.QUEUED: 0, TrackState.SENT: 1, TrackState.PROCESSED: 2, TrackState.DISPATCHED: 3,
}
"""Progress only moves forward: a processed MDN arriving after dispatched leaves dispatched shown."""

NOTHING = Decision(None, None, Notice.NONE, None)


def _forward(current: TrackState, to: TrackState) -> TrackState | None:
    if current not in _RANK:  # failed, timed-out: final states keep their name
        return None
    return to if _RANK[to] > _RANK[current] else None


def decide(facts: Facts, event: Event) -> Decision:
    """What ``event`` does to a recipient whose row says ``facts``."""
    if event.kind is Kind.TIMEOUT:
        if facts.final or not facts.deadline_passed:
            return NOTHING
        return Decision(None, TrackState.TIMED_OUT, Notice.OUR_DSN, Outcome.TIMED_OUT)
    mark = _MARKS[event.kind]
    if _NOTED[mark](facts):
        return Decision(None, None, Notice.NONE, None, duplicate=True)
    if facts.final:
        # after the one final notice: noted, never passed on (Direct item 27)
        return Decision(mark, None, Notice.NONE, None, late=True)
    if event.kind is Kind.SENT:
        return Decision(mark, _forward(facts.state, TrackState.SENT), Notice.NONE, None)
    if event.kind is Kind.NOT_SENT:
        return Decision(mark, TrackState.FAILED, Notice.OUR_DSN, Outcome.FAILED)
    if event.kind is Kind.FAILED:
        return Decision(mark, TrackState.FAILED, Notice.PASS_BACK, Outcome.FAILED)
    processed = facts.processed or event.kind is Kind.PROCESSED
    dispatched = facts.dispatched or event.kind is Kind.DISPATCHED
    success = processed and (dispatched or not facts.reliable)
    to = TrackState.PROCESSED if event.kind is Kind.PROCESSED else TrackState.DISPATCHED
    return Decision(mark, _forward(facts.state, to), Notice.PASS_BACK, Outcome.DELIVERED if success else None)
