"""The delivery monitor (issue 9): per submitted message and recipient, which MDNs and
DSNs came back, the one final notice owed to the edge sender, and providers' mailboxes.
docs/monitor.md tells the whole story."""

from .tracking import Outcome, TrackState, track_in

__all__ = ["Outcome", "TrackState", "track_in"]
