"""The patient's inbox and document pages: accept and dismiss with CSRF-protected
forms, a C-CDA shown readable (never as XML), every file downloadable as an
attachment, and nothing of a record the person holds no role on."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest

from records_bridge.access import Role, give
from records_bridge.types import Attachment, InboxState
from records_bridge.web.refusals import Refusal
from tests.bridge_fixtures import T0, Bridge, bridge_fixture, csrf_from  # noqa: F401 -- fixture
from tests.test_bridge_items_cda import BILLION_LAUGHS, SAMPLE_CCD
from tests.test_records_store import PDF, delivery

from .storage_fixtures import store_fixture, store_url_fixture  # noqa: F401


async def record_with_mail(bridge: Bridge, *attachments: Attachment):
    browser, person, record_id = await bridge.signed_in()
    await bridge.ctx.records.deliver(record_id, delivery(attachments=attachments))
    items = await bridge.ctx.records.items(record_id)
    return browser, person, record_id, items


async def test_the_inbox_lists_what_arrived_with_forms_to_accept_or_dismiss(bridge):
    browser, _, record_id, items = await record_with_mail(bridge, Attachment("text/xml", "ccd.xml", SAMPLE_CCD))
    async with await browser.get(f"/records/{record_id}/inbox") as r:
        page = await r.text()
        assert r.status == 200
    assert "<h1>Inbox of" in page and "Waiting for your review" in page
    for item in items:
        assert f'action="/records/{record_id}/inbox/{item.uid}/accept"' in page
        assert f'action="/records/{record_id}/inbox/{item.uid}/dismiss"' in page
    assert "ccd.xml" in page and "Results" in page  # the attachment's name and the message's subject


@pytest.mark.parametrize("verb", ["accept", "dismiss"])
async def test_accept_and_dismiss_need_the_csrf_token(bridge, verb):
    browser, _, record_id, items = await record_with_mail(bridge, Attachment("text/xml", "ccd.xml", SAMPLE_CCD))
    ccd = items[1]
    async with await browser.post(f"/records/{record_id}/inbox/{ccd.uid}/{verb}", {"csrf_token": "forged"}) as r:
        assert r.status == 403
    async with await browser.post(f"/records/{record_id}/inbox/{ccd.uid}/{verb}", {}) as r:
        assert r.status == 403
    assert (await bridge.ctx.records.items(record_id))[1].inbox_state is InboxState.UNREVIEWED
    token = await browser.csrf(f"/records/{record_id}/inbox")
    async with await browser.post(f"/records/{record_id}/inbox/{ccd.uid}/{verb}", {"csrf_token": token}) as r:
        assert r.status == 303
        assert r.headers["Location"] == f"/records/{record_id}/inbox?done={verb}ed"
    expected = InboxState.ACCEPTED if verb == "accept" else InboxState.DISMISSED
    assert (await bridge.ctx.records.items(record_id))[1].inbox_state is expected
    async with await browser.get(f"/records/{record_id}/inbox?done={verb}ed") as r:
        page = await r.text()
    assert f'action="/records/{record_id}/inbox/{ccd.uid}/accept"' not in page
    assert 'role="status"' in page and "In the record" in page


def section_titles(page: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'<h[3-6] id="section-[\d-]+">([^<]+)</h', page)]


async def test_a_ccd_is_shown_readable_and_never_as_xml(bridge):
    browser, _, record_id, items = await record_with_mail(bridge, Attachment("text/xml", "ccd.xml", SAMPLE_CCD))
    async with await browser.get(f"/records/{record_id}/items/{items[1].uid}") as r:
        page = await r.text()
        assert r.status == 200
    assert "<h1>Summary of Care &amp; Visit</h1>" in page
    assert "Ms. Eve Maria Everywoman" in page and "Henry Seven MD, Good Health Clinic" in page
    assert "2026-12-01 14:30 +0100" in page
    assert section_titles(page) == ["Allergies and Adverse Reactions", "Medications", "Problems", "Problem details"]
    assert '<th scope="col">Substance</th>' in page and "<td>Penicillin G benzathine</td>" in page
    assert "Reviewed &lt;2026-12-01&gt; by Dr Seven." in page  # escaped text, not markup
    for xml in ("ClinicalDocument", "structuredBody", "templateId", "urn:hl7-org:v3"):
        assert xml not in page
    assert f'href="/records/{record_id}/items/{items[1].uid}/download/content"' in page


async def test_a_hostile_document_is_refused_with_words_and_still_downloadable(bridge):
    browser, _, record_id, items = await record_with_mail(
        bridge, Attachment("application/cda+xml", "bomb.xml", BILLION_LAUGHS))
    bomb = items[1]
    async with await browser.get(f"/records/{record_id}/items/{bomb.uid}") as r:
        page = await r.text()
    assert "XML features we do not process" in page and "lol" not in page
    async with await browser.get(f"/records/{record_id}/items/{bomb.uid}/download/content") as r:
        assert await r.read() == BILLION_LAUGHS


@pytest.mark.parametrize(
    ("attachment", "filename"),
    [(Attachment("application/pdf", "lab results.pdf", PDF), "lab results.pdf"),
     (Attachment("text/html", "x.html", b"<script>alert(1)</script>"), "x.html"),
     (Attachment("text/xml", "ccd.xml", SAMPLE_CCD), "ccd.xml")],
    ids=["pdf", "html", "ccd"],
)
async def test_files_download_byte_identical_as_attachments(bridge, attachment, filename):
    browser, _, record_id, items = await record_with_mail(bridge, attachment)
    async with await browser.get(f"/records/{record_id}/items/{items[1].uid}/download/content") as r:
        assert r.status == 200 and await r.read() == attachment.data
        assert r.headers["Content-Disposition"].startswith(f'attachment; filename="{filename}"')
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Content-Type"].startswith(attachment.content_type)


async def test_a_message_shows_its_subject_sender_text_and_attachments(bridge):
    browser, _, record_id, items = await record_with_mail(bridge, Attachment("application/pdf", "lab.pdf", PDF))
    async with await browser.get(f"/records/{record_id}/items/{items[0].uid}") as r:
        page = await r.text()
    assert "Results" in page and "alice@a.test" in page and "<p>See attached.</p>" in page
    assert f'<a href="/records/{record_id}/items/{items[1].uid}">lab.pdf</a> (File)' in page


async def test_another_persons_record_is_not_found(bridge):
    browser, _, _, _ = await record_with_mail(bridge)
    _, theirs = await bridge.person()
    await bridge.ctx.records.deliver(theirs, delivery(attachments=(Attachment("text/xml", "c.xml", SAMPLE_CCD),)))
    their_item = (await bridge.ctx.records.items(theirs))[1].uid
    token = await browser.csrf("/")
    for method, path in [("get", f"/records/{theirs}/inbox"), ("get", f"/records/{theirs}/items/{their_item}"),
                         ("get", f"/records/{theirs}/items/{their_item}/download/content"),
                         ("post", f"/records/{theirs}/inbox/{their_item}/accept"), ("get", "/records/nope/inbox")]:
        call = browser.get(path) if method == "get" else browser.post(path, {"csrf_token": token})
        async with await call as r:
            assert r.status == 404, path
    assert (await bridge.ctx.records.items(theirs))[1].inbox_state is InboxState.UNREVIEWED
    assert bridge.ctx.refusals.counts[Refusal.NO_ACCESS] == 5  # a person reading a record they have no access to


async def test_signed_out_visitors_are_sent_to_sign_in(bridge):
    _, record_id = await bridge.person()
    browser = await bridge.browser()
    async with await browser.get(f"/records/{record_id}/inbox") as r:
        assert r.status == 302 and r.headers["Location"].startswith("/signin?next=")


async def test_a_viewer_sees_but_cannot_accept(bridge):
    browser, viewer, _ = await bridge.signed_in()
    _, record_id = await bridge.person()
    await give(bridge.ctx.store, viewer.id, record_id, Role.VIEWER, at=T0)
    await bridge.ctx.records.deliver(record_id, delivery())
    uid = (await bridge.ctx.records.items(record_id))[0].uid
    async with await browser.get(f"/records/{record_id}/inbox") as r:
        page = await r.text()
    assert r.status == 200 and "/accept" not in page
    async with await browser.post(f"/records/{record_id}/inbox/{uid}/accept", {"csrf_token": csrf_from(page)}) as r:
        assert r.status == 403
    assert (await bridge.ctx.records.items(record_id))[0].inbox_state is InboxState.UNREVIEWED


@pytest.mark.parametrize(
    ("content_type", "filename", "sent_type", "sent_name"),
    [
        ("text/html\r\nSet-Cookie: x=1", "a\r\nb.html", "application/octet-stream", 'filename="ab.html"'),
        ("application/pdf; name=\"x\"", 'q"uo\\te.pdf', "application/pdf", 'filename="quote.pdf"'),
        ("not a type", "résumé.pdf", "application/octet-stream", "filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"),
    ],
    ids=["header-injection", "quotes", "non-ascii"],
)
async def test_a_senders_type_and_name_cannot_break_the_download_headers(bridge, content_type, filename, sent_type,
                                                                          sent_name):
    browser, _, record_id = await bridge.signed_in()
    await bridge.ctx.records.deliver(record_id, delivery(attachments=(Attachment(content_type, filename, PDF),)))
    attachment = (await bridge.ctx.records.items(record_id))[1]
    async with await browser.get(f"/records/{record_id}/items/{attachment.uid}/download/content") as r:
        assert r.status == 200 and await r.read() == PDF
        assert r.headers["Content-Type"].split(";")[0] == sent_type
        assert sent_name in r.headers["Content-Disposition"]
        assert "Set-Cookie" not in r.headers


class Outline(HTMLParser):
    """Headings, buttons and links of a page, as assistive technology lists them."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[int] = []
        self.buttons: list[str] = []
        self._button: list[str] | None = None
        self.skip_link = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        if tag == "button":
            self._button = []
        if tag == "a" and dict(attrs).get("href") == "#main":
            self.skip_link = True

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None:
            self.buttons.append("".join(self._button).strip())
            self._button = None


async def test_the_pages_outline_is_sound_for_assistive_technology(bridge):
    browser, _, record_id, items = await record_with_mail(bridge, Attachment("text/xml", "ccd.xml", SAMPLE_CCD))
    for path in (f"/records/{record_id}/inbox", f"/records/{record_id}/items/{items[1].uid}"):
        async with await browser.get(path) as r:
            outline = Outline()
            outline.feed(await r.text())
        assert outline.skip_link, path
        assert outline.headings.count(1) == 1 and outline.headings[0] == 1, path
        assert all(b - a <= 1 for a, b in zip(outline.headings, outline.headings[1:], strict=False)), outline.headings
        assert outline.buttons and all(outline.buttons), path  # every button says what it does
