"""Envelope v1 (records-bridge spec section 4): sealed by the app's helper, opened only with the
right answer, the same code and the same client; every tampering fails as one wrong key; weak or
costly KDF parameters refused."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from records_bridge.answers import InvalidAnswer
from records_bridge.client import PackageItem, seal_package
from records_bridge.codes import MalformedCode, new_code
from records_bridge.packages import content, envelope
from records_bridge.packages.envelope import EnvelopeError, EnvelopeProblem, WrongKey

CODE = new_code()
ITEMS = [PackageItem("application/pdf", b"%PDF-1.4 results", "results.pdf", "Lab results")]


@pytest.fixture(scope="module", name="sealed")
def sealed_fixture():
    return seal_package(ITEMS, "Fluffy1", code=CODE.display, client_id="app1")


def test_shape_is_envelope_v1(sealed):
    assert set(sealed) == {"v", "kdf", "n", "r", "p", "salt", "alg", "nonce", "ct"}
    assert (sealed["v"], sealed["kdf"], sealed["n"], sealed["r"], sealed["p"], sealed["alg"]) == (1, "scrypt", 2**15, 8, 1, "A256GCM")
    assert len(base64.b64decode(sealed["salt"])) == 16 and len(base64.b64decode(sealed["nonce"])) == 12


def test_opens_with_the_normalised_answer(sealed):
    env = envelope.parse(sealed)
    plaintext = envelope.open_envelope(env, "FLUFFY1", code_canonical=CODE.canonical, client_id="app1")
    assert content.decode_plaintext(plaintext) == tuple(ITEMS)
    assert json.loads(plaintext) == {"items": [i.to_json() for i in ITEMS]}


def _flip(b64: str, at: int = 0) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[at] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("change", "answer", "code", "client"),
    [
        (None, "Fluffy2", CODE.canonical, "app1"),
        (None, " Fluffy1", CODE.canonical, "app1"),
        (None, "Fluffy1", new_code().canonical, "app1"),
        (None, "Fluffy1", CODE.canonical, "app2"),
        (("ct", 0), "Fluffy1", CODE.canonical, "app1"),
        (("ct", -1), "Fluffy1", CODE.canonical, "app1"),
        (("nonce", 0), "Fluffy1", CODE.canonical, "app1"),
        (("salt", 0), "Fluffy1", CODE.canonical, "app1"),
    ],
    ids=["wrong-answer", "padded-answer", "other-code", "other-client", "ct-first-byte", "tag-last-byte",
         "nonce", "salt"],
)
def test_anything_else_is_one_wrong_key(sealed, change, answer, code, client):
    doc = copy.deepcopy(sealed)
    if change:
        doc[change[0]] = _flip(doc[change[0]], change[1])
    with pytest.raises(WrongKey):
        envelope.open_envelope(envelope.parse(doc), answer, code_canonical=code, client_id=client)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"n": 2**14}, EnvelopeProblem.WEAK_KDF),
        ({"r": 4}, EnvelopeProblem.WEAK_KDF),
        ({"n": 2**20}, EnvelopeProblem.MALFORMED),
        ({"n": 2**15 + 1}, EnvelopeProblem.MALFORMED),
        ({"p": 16}, EnvelopeProblem.MALFORMED),
        ({"n": "32768"}, EnvelopeProblem.MALFORMED),
        ({"v": 2}, EnvelopeProblem.MALFORMED),
        ({"alg": "A128GCM"}, EnvelopeProblem.MALFORMED),
        ({"salt": "AAAA"}, EnvelopeProblem.MALFORMED),
        ({"nonce": "!!"}, EnvelopeProblem.MALFORMED),
        ({"extra": 1}, EnvelopeProblem.MALFORMED),
    ],
    ids=["n-2^14", "r-4", "n-2^20", "n-not-power", "p-16", "n-string", "v2", "alg", "salt-short", "nonce-b64",
         "extra-key"],
)
def test_refused_envelopes(sealed, change, problem):
    with pytest.raises(EnvelopeError) as caught:
        envelope.parse({**sealed, **change})
    assert caught.value.problem is problem


@pytest.mark.parametrize(
    ("items", "answer", "code", "error"),
    [
        (ITEMS, "Fluff", CODE.display, InvalidAnswer),
        (ITEMS, "Fluffy1 ", CODE.display, InvalidAnswer),
        (ITEMS, "Fluffy1", "not-a-code", MalformedCode),
        ([], "Fluffy1", CODE.display, content.ContentError),
        ([PackageItem("text/plain", b"x")] * 101, "Fluffy1", CODE.display, content.ContentError),
        ([PackageItem("application/octet-stream", bytes(20 * 2**20 + 1))], "Fluffy1", CODE.display,
         content.ContentError),
    ],
    ids=["short-answer", "padded-answer", "bad-code", "no-items", "101-items", "over-20MiB"],
)
def test_seal_package_refuses(items, answer, code, error):
    with pytest.raises(error):
        seal_package(items, answer, code=code, client_id="app1")


@pytest.mark.parametrize(
    "items",
    [
        {"items": []},
        {"items": [{"content_type": "text/plain"}]},
        {"items": [{"content_type": "text/plain", "bytes_b64": "!!"}]},
        {"items": [{"content_type": "plain", "bytes_b64": ""}]},
        {"items": [{"content_type": "text/plain", "bytes_b64": "", "script": 1}]},
        {"items": [], "more": 1},
        [1, 2],
    ],
    ids=["none", "no-bytes", "bad-b64", "not-a-media-type", "unknown-key", "unknown-top-key", "not-an-object"],
)
def test_plaintext_parser_refuses(items):
    with pytest.raises(content.ContentError):
        content.decode_plaintext(json.dumps(items).encode())
