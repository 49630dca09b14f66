"""``directgw demo --once``: the README's first command tells the whole story and
every act ends as it should (issue 11's proof).

The demo itself checks what it shows: the exit status is 0 only when the
C-CDA reached Jane's record byte-identical, both MDNs reached the EHR, the
untrusted sender was refused with a DSN to its EHR, and the recipient without
a certificate produced a DSN and no send. The test also reads what was
printed, so a story that stops being told fails here."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_once_tells_every_act(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "demo", "--once", "--dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=600,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    for step in (
        "Submitted by the EHR",
        "Recipient's certificate discovered",
        "Sealed: signed, then encrypted",
        "Delivered to the PHR's HISP",
        "Decrypted and verified at phr.demo",
        "In Jane's record",
        "'processed' MDN back at the EHR",
        "'dispatched' MDN back at the EHR",
        "Refused by phr.demo",
        "DSN at the clinic's EHR",
        "DSN at the EHR",
        "every act ended as it should",
    ):
        assert step in out, f"{step!r} missing from:\n{out}"
    assert "matches the" in " ".join(out.split())  # the document in Jane's record is the EHR's file, byte for byte
    # it picked free loopback ports and said which
    assert "127.0.0.1:" in out and ":25 " not in out


def test_demo_keeps_janes_inbox_open_until_interrupted(tmp_path):
    """Without --once the demo keeps both gateways running; the bridge URL and login it prints
    open Jane's inbox, which holds the discharge summary; Ctrl-C stops everything."""
    import asyncio
    import re
    import signal

    import aiohttp

    from tests.bridge_fixtures import csrf_from

    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "demo", "--dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        told: list[str] = []
        for line in process.stdout:
            told.append(line)
            if "keep running" in line:
                break
        out = "".join(told)
        assert "every act ended as it should" in out, out
        found = re.search(r"Open (http://127\.0\.0\.1:\d+)/ and sign in as (\S+) / (\S+?):", out)
        assert found, out
        base, login, password = found.groups()

        async def janes_document() -> tuple[str, str]:
            """Sign in as a person would, open the record's inbox, then the discharge summary."""
            # unsafe: keep cookies from an IP-address host (127.0.0.1), as a browser does
            async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                async with http.get("/signin") as page:
                    token = csrf_from(await page.text())
                async with http.post("/signin", data={"email": login, "password": password,
                                                      "csrf_token": token, "next": "/"}) as home:
                    assert home.status == 200, await home.text()
                    record = re.search(r'href="(/records/\d+/inbox)"', await home.text())
                assert record, "Jane's record is not on her home page"
                async with http.get(record.group(1)) as inbox:
                    listing = await inbox.text()
                pages = []
                for item in dict.fromkeys(re.findall(r'href="(/records/\d+/items/[^"/]+)"', listing)):
                    async with http.get(item) as document:
                        pages.append(await document.text())
                # the inbox holds the message and the document it carried; the document's page
                return listing, next((p for p in pages if "Discharge Medications" in p), "\n".join(pages))

        listing, document = asyncio.run(janes_document())
        assert "Discharge" in listing
        # the C-CDA shown readable: its sections' titles, never its XML
        assert "Hospital Course" in document and "Discharge Medications" in document, document
        assert "ClinicalDocument" not in document
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=120)
    assert process.returncode in (0, 130), errors
    for site in ("hospital", "phr"):  # both gateways stopped cleanly on the way out
        assert '"serve.stopped"' in (tmp_path / "demo" / site / "serve.log").read_text()
