"""Codes and answers as specified (records-bridge spec section 3): the code alphabet and its
forgiving input, answer normalisation (whitespace-sensitive) and the scrypt verifier."""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time

import pytest

from records_bridge import answers
from records_bridge.codes import ALPHABET, Code, MalformedCode, code_hash, new_code, parse_code

CODE_PATTERN = re.compile(r"^[BCDFGHJKMNPQRSTVWXYZ]{4}(-[BCDFGHJKMNPQRSTVWXYZ]{4}){4}$")
PEPPER = b"p" * 32


def test_alphabet_is_the_twenty_consonants_without_l():
    assert ALPHABET == "BCDFGHJKMNPQRSTVWXYZ"
    assert len(set(ALPHABET)) == 20 and not set(ALPHABET) & set("AEIOUL")


def test_new_codes_display_as_five_groups_of_four():
    codes = {new_code().display for _ in range(200)}
    assert len(codes) == 200
    assert all(CODE_PATTERN.match(c) for c in codes)


@pytest.mark.parametrize(
    "typed",
    [
        "BCDF-GHJK-MNPQ-RSTV-WXYZ",
        "bcdf-ghjk-mnpq-rstv-wxyz",
        "BCDFGHJKMNPQRSTVWXYZ",
        "bcdf ghjk mnpq rstv wxyz",
        " Bcdf-Ghjk mnpq--RSTV wxyz ",
    ],
    ids=["display", "lowercase", "no-hyphens", "spaces", "mixed"],
)
def test_input_is_canonicalised(typed):
    assert parse_code(typed) == Code("BCDFGHJKMNPQRSTVWXYZ")


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "BCDF-GHJK-MNPQ-RSTV-WXY",  # 19 letters
        "BCDF-GHJK-MNPQ-RSTV-WXYZB",  # 21 letters
        "BCDF-GHJK-MNPQ-RSTV-WXYA",  # a vowel
        "BCDF-GHJK-MNPQ-RSTV-WXYL",  # the missing L
        "BCDF-GHJK-MNPQ-RSTV-WXY1",  # a digit
        "BCDF_GHJK_MNPQ_RSTV_WXYZ",  # another separator
        "BCDF\tGHJK-MNPQ-RSTV-WXYZ",  # a tab
        "B" * 10_000,
        "".join(chr(ord(c) + 0xFEE0) for c in ALPHABET),  # full-width letters are not the alphabet
    ],
    ids=["empty", "short", "long", "vowel", "L", "digit", "underscore", "tab", "huge", "fullwidth"],
)
def test_anything_else_is_malformed(typed):
    with pytest.raises(MalformedCode):
        parse_code(typed)


def test_code_hash_is_keyed_and_never_the_code():
    code = new_code()
    h = code_hash(PEPPER, code)
    assert re.fullmatch(r"[0-9a-f]{64}", h)
    assert code.canonical not in h and h != code_hash(b"q" * 32, code)
    assert h == code_hash(PEPPER, parse_code(code.display.lower()))
    assert "redacted" in repr(code)
    with pytest.raises(ValueError):
        code_hash(b"short", code)


# ------------------------------------------------------------------ answers


@pytest.mark.parametrize(
    ("typed", "matches"),
    [("Fluffy", True), ("fluffy", True), ("FLUFFY", True), ("ﬂuﬀy", True),
     (" fluffy", False), ("fluffy ", False), ("flufy", False), ("x" * 100_000, False)],
    ids=["same", "lower", "upper", "nfkc-ligatures", "leading-space", "trailing-space", "other", "huge"],
)
def test_answers_are_normalised_but_whitespace_sensitive(typed, matches):
    stored = answers.hash_answer("Fluffy")
    assert answers.verify(typed, stored) is matches


@pytest.mark.parametrize(
    "answer",
    ["Fluff", " Fluffy", "Fluffy ", "\tFluffy", "x" * 129, ""],
    ids=["5-chars", "leading-space", "trailing-space", "leading-tab", "129-chars", "empty"],
)
def test_answers_that_may_not_be_set(answer):
    with pytest.raises(answers.InvalidAnswer):
        answers.hash_answer(answer)


@pytest.mark.parametrize("answer", ["Fluffy", "x" * 128, "two words"], ids=["6", "128", "inner-space"])
def test_answers_that_may(answer):
    assert answers.verify(answer, answers.hash_answer(answer))


def test_verifier_is_salted_scrypt():
    a, b = answers.hash_answer("Fluffy"), answers.hash_answer("Fluffy")
    assert len(a.salt) == 16 and len(a.digest) == 32 and a.salt != b.salt and a.digest != b.digest
    import hashlib

    assert a.digest == hashlib.scrypt(b"fluffy", salt=a.salt, n=2**15, r=8, p=1, dklen=32, maxmem=64 * 2**20)
    assert secrets.compare_digest(a.digest, answers.derive("fluffy", a.salt))


async def test_derivations_run_in_threads_a_bounded_number_at_a_time():
    running, most, lock = 0, 0, threading.Lock()

    def work(n):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return n, threading.get_ident()

    kdf = answers.Derivations(2)
    results = await asyncio.gather(*(kdf.run(work, n) for n in range(6)))
    assert [n for n, _ in results] == list(range(6))
    assert threading.get_ident() not in {t for _, t in results} and most == 2
