"""What ``directgw messages`` shows of the delivery monitor: each outbound recipient's
state (queued, sent, processed, dispatched, failed, timed out) with its reason, and the
message's delivery as a whole (gateway/monitor, docs/monitor.md)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from gateway.monitor.schema import tracking
from gateway.monitor.tracking import Outcome, TrackState, delivery_of
from gateway.store import Store


def state_words(state: str) -> str:
    """A recipient's state for a person: ``timed out`` rather than the stored ``timed-out``."""
    return TrackState(state).value.replace("-", " ")


async def tracked(store: Store, ids: list[int]) -> dict[int, list[Any]]:
    """Each message's recipients as the delivery monitor tracks them (submitted messages only)."""
    if not ids:
        return {}
    t = tracking
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(t).where(t.c.message_id.in_(ids)).order_by(t.c.id))).all()
    found: dict[int, list[Any]] = {}
    for row in rows:
        found.setdefault(row.message_id, []).append(row)
    return found


def delivery(rows: list[Any]) -> str | None:
    """``delivered``, ``failed`` or ``pending``; None when nothing is tracked."""
    summary = delivery_of([Outcome(r.final_outcome) if r.final_outcome else None for r in rows])
    return summary.value if summary else None


def tracking_json(rows: list[Any]) -> list[dict[str, Any]]:
    return [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r._asdict().items()
         if k not in ("id", "message_id")}
        for r in rows
    ]


def list_json(rows: list[Any]) -> dict[str, Any]:
    """What ``messages list --json`` adds to a tracked message."""
    if not rows:
        return {}
    return {"delivery": delivery(rows),
            "recipients": [{"recipient": r.recipient, "state": r.state, "reason": r.reason} for r in rows]}


def list_text(rows: list[Any]) -> str:
    """What ``messages list`` adds to a tracked message's line."""
    return "".join(f"\t{r.recipient}: {state_words(r.state)}{' (' + r.reason + ')' if r.reason else ''}"
                   for r in rows)


def show_lines(shown: dict[str, Any]) -> list[str]:
    """``messages show``: the delivery, then per recipient its state, what came when, and why."""
    out: list[str] = []
    if shown.get("delivery"):
        out.append(f"  delivery: {shown['delivery']}")
    for x in shown.get("tracking", ()):
        came = ", ".join(f"{name} {x[name + '_at']}" for name in ("sent", "processed", "dispatched")
                         if x[name + "_at"])
        waiting = f"; waiting until {x['deadline_at']}" if x["deadline_at"] and not x["final_notice_at"] else ""
        out.append(f"  to {x['recipient']}: {state_words(x['state'])}"
                   f"{' - ' + str(x['reason']) if x['reason'] else ''}{' (' + came + ')' if came else ''}{waiting}")
        if x["detail"]:
            out.append(f"    {' '.join(str(x['detail']).split())}")
    return out
