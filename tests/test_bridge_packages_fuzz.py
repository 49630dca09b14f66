"""The bridge's parsers of hostile input fail only with their typed rejection (hypothesis): codes,
envelopes, package plaintexts, newuser@ subjects and inbound messages; and the anti-enumeration
alarm raises on a flood of misses, not on people mistyping."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from records_bridge.codes import ALPHABET, MalformedCode, parse_code
from records_bridge.connect.edge import ALARM_MIN_LOOKUPS, FailureAlarm
from records_bridge.inbound import InboundError, parse_message, parse_newuser_subject
from records_bridge.packages import content, envelope

AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=20,
)


@given(st.text(alphabet=ALPHABET + ALPHABET.lower() + " -aeioul1_\t", max_size=40))
def test_codes_parse_or_are_malformed(text):
    try:
        code = parse_code(text)
    except MalformedCode:
        return
    assert len(code.canonical) == 20 and parse_code(code.display) == code


ENVELOPE_KEYS = st.fixed_dictionaries({
    "v": st.sampled_from([1, 2, "1"]), "kdf": st.sampled_from(["scrypt", "pbkdf2"]),
    "n": st.sampled_from([1, 2**14, 2**15, 2**16, 2**17, 2**15 + 1, -1, "x"]),
    "r": st.sampled_from([8, 1, 0]), "p": st.sampled_from([1, 2, 3, 0]),
    "salt": st.text(max_size=30), "alg": st.sampled_from(["A256GCM", "none"]),
    "nonce": st.text(max_size=20), "ct": st.text(max_size=60),
})


@settings(max_examples=200)
@given(ENVELOPE_KEYS | JSON)
def test_envelopes_parse_or_are_refused(raw):
    try:
        env = envelope.parse(raw)
    except envelope.EnvelopeError:
        return
    assert env.n >= envelope.MIN_N and len(env.salt) == 16 and len(env.nonce) == 12


@settings(max_examples=200)
@given(JSON | st.fixed_dictionaries({"items": st.lists(
    st.fixed_dictionaries({"content_type": st.text(max_size=20), "bytes_b64": st.text(max_size=20)}), max_size=3)}))
def test_plaintexts_parse_or_are_refused(doc):
    try:
        items = content.decode_plaintext(json.dumps(doc).encode())
    except content.ContentError:
        return
    assert 1 <= len(items) <= content.MAX_ITEMS


@given(st.text(max_size=80))
def test_newuser_subjects_parse_or_are_refused(subject):
    try:
        parsed = parse_newuser_subject(subject)
    except InboundError:
        return
    assert "@" in parsed.email and (parsed.question is None) == (parsed.answer is None)


@settings(max_examples=200)
@given(JSON)
def test_inbound_messages_parse_or_are_refused(doc):
    try:
        parse_message(doc)
    except InboundError:
        return


def test_the_alarm_raises_on_a_flood_of_misses_once_per_window():
    alarm = FailureAlarm()
    raised = [alarm.count(failed=n % 10 != 0, at=AT + timedelta(seconds=n)) for n in range(ALARM_MIN_LOOKUPS + 20)]
    assert raised.count(True) == 1 and raised.index(True) == ALARM_MIN_LOOKUPS - 1


def test_the_alarm_stays_quiet_for_people_mistyping():
    alarm = FailureAlarm()
    assert not any(alarm.count(failed=n % 3 == 0, at=AT + timedelta(seconds=n)) for n in range(500))
