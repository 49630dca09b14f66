"""examples/records_app.py against a real bridge: authorization code + PKCE with
a loopback redirect (RFC 8252), then the chosen record's documents through
FHIR. The system browser is replaced by an HTTP client that signs in and
consents through the bridge's real pages, then follows the redirect to the
app's loopback listener as a browser would."""

from __future__ import annotations

import html
import importlib.util
import re
import sys
from pathlib import Path

import aiohttp
import pytest

from records_bridge.types import Attachment
from tests.bridge_fixtures import Bridge, bridge_fixture  # noqa: F401 -- fixture
from tests.test_bridge_items_cda import SAMPLE_CCD
from tests.test_records_store import PDF, delivery

from .storage_fixtures import store_fixture, store_url_fixture  # noqa: F401

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "records_app.py"


def load_example():
    spec = importlib.util.spec_from_file_location("records_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def person_in_a_browser(bridge: Bridge, email: str, *, decision: str = "allow"):
    """The browser step: sign in, choose the (preselected) record, Allow, follow the redirect."""

    async def open_browser(url: str) -> None:
        browser = await bridge.browser()
        async with await browser.sign_in(email) as r:
            assert r.status == 303
        async with await browser.get(url) as r:
            page = await r.text()
            assert r.status == 200, page
        fields = {k: html.unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)}
        record = re.search(r'name="record"\s+value="(\d+)" checked', page)
        assert record, "no record preselected"
        async with await browser.post("/oauth/authorize", {**fields, "record": record.group(1), "decision": decision}) as r:
            assert r.status == 303, await r.text()
            location = r.headers["Location"]
        assert location.startswith("http://127.0.0.1:") and "/callback?" in location
        async with aiohttp.ClientSession() as http, http.get(location) as r:  # the browser lands on the app
            assert r.status == 200

    return open_browser


async def test_the_example_app_lists_the_chosen_records_documents(bridge):
    example = load_example()
    client = await bridge.client("Records example", public=True, redirect_uris=("http://127.0.0.1/callback",),
                                 scopes=("patient/DocumentReference.rs", "launch/patient"))
    _, record_id = await bridge.person("eve@example.com")
    _, other_record = await bridge.person("someone@example.com")
    await bridge.ctx.records.deliver(record_id, delivery(attachments=(
        Attachment("text/xml", "summary.xml", SAMPLE_CCD), Attachment("application/pdf", "lab.pdf", PDF))))
    await bridge.ctx.records.deliver(other_record, delivery(attachments=(Attachment("application/pdf", "x.pdf", PDF),)))
    found = await example.run(bridge.base_url, client.client.client_id, person_in_a_browser(bridge, "eve@example.com"))
    assert [(d.title, d.type, d.content_type) for d in found] == [
        ("summary.xml", "Summarization of episode note", "text/xml"),
        ("lab.pdf", "Details Document", "application/pdf"),
    ]
    assert all(d.url.startswith(bridge.base_url + "/fhir/r4/Binary/") for d in found)


async def test_a_person_who_cancels_leaves_the_app_without_a_token(bridge):
    example = load_example()
    client = await bridge.client("Records example", public=True, redirect_uris=("http://127.0.0.1/callback",),
                                 scopes=("patient/DocumentReference.rs", "launch/patient"))
    await bridge.person("eve@example.com")
    with pytest.raises(example.FlowError, match="access_denied"):
        await example.run(bridge.base_url, client.client.client_id,
                          person_in_a_browser(bridge, "eve@example.com", decision="deny"))
