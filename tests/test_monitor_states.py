"""The delivery monitor's state table (gateway.monitor.states.decide), over every order of events.

A recipient's events are pushed through ``decide`` the way the monitor applies them
(each decision updates the facts the next one sees). Whatever the order, and
however often an MDN repeats: exactly one final word goes to the submitter, it is the
first final event's, nothing is passed back after it, and each disposition is passed
back at most once (Direct items 26-27)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from gateway.monitor.states import Event, Facts, Kind, Mark, Notice, decide
from gateway.monitor.tracking import Outcome, TrackState

AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
_FLAG = {Mark.SENT: "sent", Mark.PROCESSED: "processed", Mark.DISPATCHED: "dispatched", Mark.FAILED: "failed"}


def run(kinds: list[Kind], reliable: bool) -> tuple[Facts, list[tuple[Kind, Notice]], list[Outcome]]:
    """Apply ``kinds`` in order; a timeout counts only once the deadline exists (after sent)."""
    facts = Facts(TrackState.QUEUED, reliable)
    notices: list[tuple[Kind, Notice]] = []
    finals: list[Outcome] = []
    for kind in kinds:
        decision = decide(replace(facts, deadline_passed=facts.sent), Event(kind, AT))
        if facts.final:
            assert decision.notice is Notice.NONE and decision.state is None, "something after the final word"
        if decision.mark is not None:
            facts = replace(facts, **{_FLAG[decision.mark]: True})
        if decision.state is not None:
            facts = replace(facts, state=decision.state)
        if decision.final is not None:
            assert not facts.final, "a second final decision"
            facts = replace(facts, final=True)
            finals.append(decision.final)
        if decision.notice is not Notice.NONE:
            notices.append((kind, decision.notice))
    return facts, notices, finals


def expected_final(kinds: list[Kind], reliable: bool) -> Outcome | None:
    """The specification, written plainly: the first event that settles the recipient wins."""
    sent = processed = dispatched = False
    for kind in kinds:
        if kind in (Kind.FAILED, Kind.NOT_SENT):
            return Outcome.FAILED
        if kind is Kind.TIMEOUT and sent:
            return Outcome.TIMED_OUT
        sent |= kind is Kind.SENT
        processed |= kind is Kind.PROCESSED
        dispatched |= kind is Kind.DISPATCHED
        if processed and (dispatched or not reliable):
            return Outcome.DELIVERED
    return None


REPORTS = [Kind.PROCESSED, Kind.DISPATCHED, Kind.TIMEOUT, Kind.FAILED]
ORDERS = [
    [Kind.SENT, *order]
    for n in range(len(REPORTS) + 1)
    for order in itertools.permutations(REPORTS, n)
] + [
    # MDNs that arrive before our worker recorded its own send
    [Kind.PROCESSED, Kind.SENT, Kind.TIMEOUT], [Kind.DISPATCHED, Kind.PROCESSED, Kind.SENT, Kind.TIMEOUT],
    # duplicates everywhere
    [Kind.SENT, Kind.PROCESSED, Kind.PROCESSED, Kind.DISPATCHED, Kind.DISPATCHED, Kind.TIMEOUT, Kind.PROCESSED],
    [Kind.SENT, Kind.TIMEOUT, Kind.TIMEOUT, Kind.PROCESSED, Kind.PROCESSED, Kind.DISPATCHED],
    [Kind.SENT, Kind.FAILED, Kind.FAILED, Kind.PROCESSED],
    # our queue gave up: no send, then anything that wanders in
    [Kind.NOT_SENT, Kind.TIMEOUT, Kind.PROCESSED], [Kind.NOT_SENT, Kind.NOT_SENT],
    # a timeout before the send is not a timeout (no deadline yet)
    [Kind.TIMEOUT, Kind.SENT, Kind.PROCESSED, Kind.DISPATCHED],
]


def _id(kinds: list[Kind]) -> str:
    return "-".join(k.value for k in kinds) or "nothing"


@pytest.mark.parametrize("reliable", [False, True], ids=["general", "reliable"])
@pytest.mark.parametrize("kinds", ORDERS, ids=_id)
def test_one_final_word_whatever_the_order(kinds, reliable):
    facts, notices, finals = run(kinds, reliable)
    want = expected_final(kinds, reliable)
    assert finals == ([want] if want else [])
    passed = [k for k, n in notices if n is Notice.PASS_BACK]
    assert len(passed) == len(set(passed)), "a disposition passed back twice"
    if want is Outcome.TIMED_OUT:
        assert notices[-1] == (Kind.TIMEOUT, Notice.OUR_DSN) and facts.state is TrackState.TIMED_OUT
    if want is Outcome.FAILED:
        assert facts.state is TrackState.FAILED


@pytest.mark.parametrize(
    ("kinds", "reliable", "state", "notices"),
    [
        ([Kind.SENT, Kind.PROCESSED], False, TrackState.PROCESSED, [(Kind.PROCESSED, Notice.PASS_BACK)]),
        ([Kind.SENT, Kind.PROCESSED, Kind.DISPATCHED], True, TrackState.DISPATCHED,
         [(Kind.PROCESSED, Notice.PASS_BACK), (Kind.DISPATCHED, Notice.PASS_BACK)]),
        ([Kind.SENT, Kind.DISPATCHED, Kind.PROCESSED], True, TrackState.DISPATCHED,
         [(Kind.DISPATCHED, Notice.PASS_BACK), (Kind.PROCESSED, Notice.PASS_BACK)]),
        ([Kind.SENT, Kind.PROCESSED, Kind.TIMEOUT, Kind.DISPATCHED], True, TrackState.TIMED_OUT,
         [(Kind.PROCESSED, Notice.PASS_BACK), (Kind.TIMEOUT, Notice.OUR_DSN)]),
        ([Kind.SENT, Kind.TIMEOUT, Kind.PROCESSED, Kind.PROCESSED], False, TrackState.TIMED_OUT,
         [(Kind.TIMEOUT, Notice.OUR_DSN)]),
        ([Kind.SENT, Kind.PROCESSED, Kind.FAILED], True, TrackState.FAILED,
         [(Kind.PROCESSED, Notice.PASS_BACK), (Kind.FAILED, Notice.PASS_BACK)]),
        ([Kind.SENT, Kind.FAILED, Kind.PROCESSED], False, TrackState.FAILED, [(Kind.FAILED, Notice.PASS_BACK)]),
        ([Kind.NOT_SENT], False, TrackState.FAILED, [(Kind.NOT_SENT, Notice.OUR_DSN)]),
        ([Kind.SENT], True, TrackState.SENT, []),
    ],
    ids=["processed-general", "reliable-in-order", "reliable-dispatched-first", "reliable-timeout-after-processed",
         "late-and-duplicate-after-timeout", "failed-mdn-after-processed", "dsn-then-mdn", "queue-gave-up",
         "waiting"],
)
def test_what_the_submitter_receives(kinds, reliable, state, notices):
    facts, got, _ = run(kinds, reliable)
    assert (facts.state, got) == (state, notices)


def test_a_repeat_is_a_duplicate_and_a_late_report_is_noted_only():
    facts = Facts(TrackState.TIMED_OUT, reliable=False, sent=True, final=True, deadline_passed=True)
    late = decide(facts, Event(Kind.PROCESSED, AT))
    assert (late.mark, late.state, late.notice, late.final, late.late) == (Mark.PROCESSED, None, Notice.NONE, None, True)
    again = decide(replace(facts, processed=True), Event(Kind.PROCESSED, AT))
    assert again.duplicate and again.mark is None and again.notice is Notice.NONE
    assert decide(facts, Event(Kind.TIMEOUT, AT)).final is None  # the sweep on a second node
