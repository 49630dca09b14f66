"""A patient in a real browser (headless Chromium through Selenium, Debian's
chromium and chromium-driver), the whole way through the pages:

sign up; Patient Connect (enter the code as a person types it, answer the
secret question, choose the record, connect); a Drop-Off pickup (code,
answer, record); the inbox shows the picked-up discharge summary and its
document page shows the C-CDA's section titles (never its XML).

The app is on the other side of the same bridge: it created the connect
request and dropped the package off with its client-credentials token, polls
``/v1/connect-requests/authorized`` until the patient's connect shows up,
and, with nobody at the browser any more, acts on the offline grant the
connect gave it (client credentials naming the record, as HealthVault's
offline access did): it reads the document through the items API and
through FHIR, byte for byte what it dropped off.

A second walk signs a person in to an app in the browser (authorization
code + PKCE, RFC 8252 loopback redirect): only a real browser enforces the
consent page's Content-Security-Policy ``form-action`` on the redirect the
Allow button leads to.

The browser is driven from a worker thread (Selenium blocks), the bridge
answers on the test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from records_bridge.access import records_of
from records_bridge.people import PersonStore
from records_bridge.types import Attachment
from tests.bridge_fixtures import Bridge, basic, bridge_fixture  # noqa: F401 -- fixture
from tests.prerequisites import require_chromium
from tests.test_records_store import delivery

from .storage_fixtures import store_fixture, store_url_fixture  # noqa: F401

pytestmark = pytest.mark.slow

DISCHARGE = (Path(__file__).resolve().parent.parent / "examples" / "discharge-summary.xml").read_bytes()
SECTIONS = ["Hospital Course", "Discharge Diagnosis", "Discharge Medications", "Allergies", "Plan of Treatment"]
PAGE_WAIT_SECONDS = 20
"""A page of the bridge renders in milliseconds; Chromium's first start on a busy 2-core machine takes seconds."""
EMAIL, PASSWORD = "jane.doe@example.com", "a long enough passphrase"


@pytest.fixture(name="chrome")
async def chrome_fixture() -> AsyncIterator[WebDriver]:
    chromium, chromedriver = require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start; the pages are our own
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = await asyncio.to_thread(webdriver.Chrome, service=Service(chromedriver), options=options)
    try:
        yield driver
    finally:
        await asyncio.to_thread(driver.quit)


class Page:
    """Blocking steps in the browser; each is run in a worker thread."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.d = driver
        self.base = base_url

    def heading(self) -> str:
        return str(self.d.find_element(By.TAG_NAME, "h1").text)

    def wait_heading(self, starts: str) -> str:
        """The heading once the page showing one that starts with `starts` has replaced the last."""
        def shown(d: WebDriver) -> str | None:
            try:
                text = str(d.find_element(By.TAG_NAME, "h1").text)
            except WebDriverException as e:
                if not _replaced_while_read(e):
                    raise
                return None
            return text if text.startswith(starts) else None
        return str(WebDriverWait(self.d, PAGE_WAIT_SECONDS).until(shown))

    def open(self, path: str) -> None:
        self.d.get(path if path.startswith("http") else self.base + path)

    def type(self, field_id: str, text: str) -> None:
        element = self.d.find_element(By.ID, field_id)
        element.clear()
        element.send_keys(text)

    def press(self, label: str) -> None:
        """Click the main form's button by its visible label (as a person does, or a screen reader names it)."""
        buttons = self.d.find_elements(By.CSS_SELECTOR, "main button")
        match = [b for b in buttons if b.text.strip() == label]
        assert match, f"no button {label!r} among {[b.text for b in buttons]}"
        match[0].click()

    def choose(self, field_id: str) -> None:
        element = self.d.find_element(By.ID, field_id)
        if not element.is_selected():
            self.d.find_element(By.CSS_SELECTOR, f"label[for='{field_id}']").click()

    def follow(self, link_text: str) -> None:
        WebDriverWait(self.d, PAGE_WAIT_SECONDS).until(
            expected_conditions.element_to_be_clickable((By.PARTIAL_LINK_TEXT, link_text))).click()


def _replaced_while_read(e: WebDriverException) -> bool:
    """The element read belonged to the page being replaced.

    Chromium reports this either as a stale element or, when the navigation lands between
    finding the node and reading it, as an inspector error naming the node.
    """
    return isinstance(e, StaleElementReferenceException) or "does not belong to the document" in (e.msg or "")


async def in_browser(page: Page, step: Callable[[Page], Any]) -> Any:
    return await asyncio.to_thread(step, page)


# --------------------------------------------------------------------------- the app's side


async def app_post(bridge: Bridge, token: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.post(
        bridge.url(path), json=body, headers={"Authorization": f"Bearer {token}"},
    ) as r:
        answer: dict[str, Any] = await r.json()
        assert r.status == 201, answer
        return answer


async def app_get(bridge: Bridge, token: str, path: str, accept: str = "application/json") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(
        bridge.url(path), headers={"Authorization": f"Bearer {token}", "Accept": accept},
    ) as r:
        return r.status, (await r.json(content_type=None) if "json" in r.content_type else await r.read())


async def poll_authorized(bridge: Bridge, token: str, *, tries: int = 50) -> list[dict[str, Any]]:
    """What an app does: ask every so often which connect requests were authorized."""
    for _ in range(tries):
        status, listed = await app_get(bridge, token, "/v1/connect-requests/authorized?since=2026-01-01T00:00:00Z")
        assert status == 200, listed
        if listed:
            return list(listed)
        await asyncio.sleep(0.1)
    raise AssertionError("the connect request never showed up as authorized")


async def loopback_redirect() -> tuple[str, asyncio.Future[dict[str, str]], web.AppRunner]:
    """The app's redirect listener on 127.0.0.1 (RFC 8252 7.3)."""
    got: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def callback(request: web.Request) -> web.Response:
        if not got.done():
            got.set_result(dict(request.query))
        return web.Response(text="<h1>Signed in to the clinic app</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/cb", callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}/cb", got, runner


# --------------------------------------------------------------------------- the walk


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the flows run on both databases elsewhere
async def test_a_patient_connects_picks_up_and_reads_and_the_app_reads_too(bridge, chrome):
    page = Page(chrome, bridge.base_url)
    app = await bridge.client("Springfield Clinic", redirect_uris=("http://127.0.0.1/cb",), connect=True,
                              scopes=("records.*.r", "patient/DocumentReference.rs", "packages"))
    app_token = await bridge.client_token(app, ["connect", "packages"])
    invitation = await app_post(bridge, app_token, "/v1/connect-requests", {
        "external_id": "MRN-554433", "friendly_name": "Jane at Springfield Clinic",
        "question": "Your favourite pet's name?", "answer": "Fluffy"})
    package = await app_post(bridge, app_token, "/v1/packages", {
        "external_id": "MRN-554433", "friendly_name": "Discharge papers", "question": "Your town of birth?",
        "answer": "Springfield", "items": [{"content_type": "application/cda+xml", "filename": "discharge.xml",
                                            "title": "Discharge summary",
                                            "bytes_b64": base64.b64encode(DISCHARGE).decode()}]})

    # Sign up.
    def sign_up(p: Page) -> str:
        p.open("/signup")
        p.type("name", "Jane Doe")
        p.type("email", EMAIL)
        p.type("password", PASSWORD)
        p.press("Create account")
        return p.wait_heading("Your records")

    assert await in_browser(page, sign_up) == "Your records"
    person = await PersonStore(bridge.ctx.store).by_email(EMAIL)
    assert person is not None
    (record,) = await records_of(bridge.ctx.store, person.id)

    # Patient Connect: the code as a person types it (lower case, spaces for hyphens).
    typed_code = invitation["code"].lower().replace("-", " ")

    def connect(p: Page) -> str:
        p.open("/connect")
        p.type("code", typed_code)
        p.press("Continue")
        p.wait_heading("Answer the secret question")
        assert "Your favourite pet's name?" in p.d.find_element(By.CSS_SELECTOR, "label[for='answer']").text
        p.type("answer", "fluffy")
        p.press("Continue")
        p.wait_heading("Connect")
        p.choose(f"record-{record.record_id}")
        p.press("Connect")
        return p.wait_heading("Jane at Springfield Clinic is connected")

    assert await in_browser(page, connect)

    # Drop-Off pickup into the same record.
    def pick_up(p: Page) -> str:
        p.open("/pickup")
        p.type("code", package["code"])
        p.press("Continue")
        p.wait_heading("Answer the secret question")
        p.type("answer", "springfield")
        p.choose(f"record-{record.record_id}")
        p.press("Pick up")
        return p.wait_heading("Picked up")

    assert await in_browser(page, pick_up) == "Picked up: Discharge papers"

    # The inbox shows the document; its page shows the C-CDA readable.
    def read_it(p: Page) -> tuple[list[str], list[str], str]:
        p.open("/")
        p.follow(record.display_name)
        p.wait_heading("Inbox of")
        waiting = [a.text for a in p.d.find_elements(By.CSS_SELECTOR, "ul[aria-labelledby='waiting-heading'] li > a")]
        p.follow("Discharge summary")
        p.wait_heading("Discharge Summary: Jane Doe")
        titles = [h.text for h in p.d.find_elements(By.CSS_SELECTOR, "main section > h3")]
        return waiting, titles, p.d.page_source

    waiting, titles, source = await in_browser(page, read_it)
    assert "Discharge summary" in waiting
    assert titles == SECTIONS
    assert "Dr. Alice Smith, Springfield General Hospital" in source
    assert "ClinicalDocument" not in source and "templateId" not in source

    # The app: the connect shows up as authorized ...
    (authorized,) = await poll_authorized(bridge, app_token)
    assert (authorized["external_id"], authorized["record_id"]) == ("MRN-554433", str(record.record_id))

    # ... and acts on the offline grant it was given, with its own credentials and the record's id ...
    async with aiohttp.ClientSession() as http, http.post(bridge.url("/oauth/token"), data={
        "grant_type": "client_credentials", "record_id": authorized["record_id"]},
            headers=basic(app.client.client_id, app.secret or "")) as r:
        token = await r.json()
        assert r.status == 200, token
    assert (token["person"], token["patient"]) == (authorized["person_id"], str(record.record_id))
    assert set(token["scope"].split()) == {"records.*.r", "patient/DocumentReference.rs"}
    access = token["access_token"]

    # ... and reads the document through the items API ...
    status, listed = await app_get(bridge, access, f"/v1/records/{record.record_id}/items")
    assert status == 200
    (document,) = [i for i in listed["items"] if i["source"]["kind"] == "package"]
    assert (document["type"], document["inbox_state"], document["created"]["by_client"]) == (
        "discharge_summary", "unreviewed", app.client.client_id)
    status, data = await app_get(bridge, access, f"/v1/records/{record.record_id}/items/{document['id']}/blobs/content")
    assert (status, data) == (200, DISCHARGE)

    # ... and through FHIR.
    status, bundle = await app_get(bridge, access, f"/fhir/r4/DocumentReference?patient={record.record_id}",
                                   "application/fhir+json")
    assert status == 200 and bundle["total"] == 1
    ref = bundle["entry"][0]["resource"]
    assert ref["type"]["coding"][0]["code"] == "18842-5"
    assert ref["meta"]["tag"][0]["code"] == "inbox:unreviewed"
    status, data = await app_get(bridge, access, ref["content"][0]["attachment"]["url"], "*/*")
    assert (status, data) == (200, DISCHARGE)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_person_signs_in_to_an_app_through_the_browser_and_comes_back_to_it(bridge, chrome):
    page = Page(chrome, bridge.base_url)
    app = await bridge.client("Springfield Clinic", redirect_uris=("http://127.0.0.1/cb",),
                              scopes=("records.*.r", "patient/DocumentReference.rs"))
    person, record_id = await bridge.person(EMAIL, password=PASSWORD)
    await bridge.ctx.records.deliver(record_id, delivery(attachments=(
        Attachment("application/cda+xml", "discharge.xml", DISCHARGE),)))

    redirect_uri, got, runner = await loopback_redirect()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    state = secrets.token_urlsafe(12)
    query = urlencode({"response_type": "code", "client_id": app.client.client_id, "redirect_uri": redirect_uri,
                       "scope": "records.*.r patient/DocumentReference.rs", "state": state,
                       "code_challenge": challenge, "code_challenge_method": "S256"})

    # Signed out: the authorization request goes through sign-in and back to the consent page.
    def consent(p: Page) -> str:
        p.open(f"/oauth/authorize?{query}")
        p.wait_heading("Sign in")
        p.type("email", EMAIL)
        p.type("password", PASSWORD)
        p.press("Sign in")
        p.wait_heading("Allow Springfield Clinic")
        p.choose(f"record-{record_id}")
        p.press("Allow")
        return p.wait_heading("Signed in to the clinic app")

    try:
        await in_browser(page, consent)
        answer = await asyncio.wait_for(got, PAGE_WAIT_SECONDS)
    finally:
        await runner.cleanup()
    assert answer["state"] == state
    async with aiohttp.ClientSession() as http, http.post(bridge.url("/oauth/token"), data={
        "grant_type": "authorization_code", "code": answer["code"], "redirect_uri": redirect_uri,
        "code_verifier": verifier}, headers=basic(app.client.client_id, app.secret or "")) as r:
        token = await r.json()
        assert r.status == 200, token
    assert (token["person"], token["patient"]) == (str(person.id), str(record_id))
    status, bundle = await app_get(bridge, token["access_token"], f"/fhir/r4/DocumentReference?patient={record_id}",
                                   "application/fhir+json")
    assert status == 200 and bundle["total"] == 1
