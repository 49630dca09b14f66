"""End to end (issue 10, Proof): a message that ``openssl cms`` signed and
encrypted as a trusted remote HISP would arrives over SMTP at a real
``directgw serve`` running the bridge on ``[bridge] listen``, and the patient,
signed in, finds it in their inbox page, reads the C-CDA attachment readable,
and downloads it byte-identical."""

from __future__ import annotations

import asyncio
import html
import os
import re
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests import messages
from tests.bridge_fixtures import PASSWORD, csrf_from, free_port
from tests.interop import OpenSSL
from tests.pki import hisp
from tests.test_bridge_items_cda import SAMPLE_CCD
from tests.test_serve_e2e import Served

from .storage_fixtures import store_url_fixture  # noqa: F401 -- SQLite and PostgreSQL

pytestmark = [pytest.mark.slow, pytest.mark.interop]

A, B = hisp("a.test"), hisp("b.test")
RECORD_ADDRESS = "pat@b.test"
EMAIL = "pat@example.com"
START_SECONDS = 60
"""serve migrates the database and opens its listeners in a few seconds; a loaded CI machine takes longer."""


def cli(site: Path, *argv: str) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway.cli.main", *argv, "--config", str(site / "directgw.toml")],
                          capture_output=True, text=True, timeout=60, cwd=site)
    assert done.returncode == 0, done.stderr


def configure(site: Path, storage_url: str, bridge_port: int) -> None:
    (site / "directgw.toml").write_text(f"""data_dir = "data"

[storage]
url = "{storage_url}"

[discovery]
nameservers = ["127.0.0.1:{free_port()}"]
ldap = false

[bridge]
listen = "127.0.0.1:{bridge_port}"
base_url = "http://127.0.0.1:{bridge_port}"
cookie_secure = false
""")
    (site / "data").mkdir()
    files = {"b.pem": B.org.pem, "b.key": B.org.key_pem(), "a-roots.pem": A.root.pem + A.intermediate.pem,
             "pw": f"{PASSWORD}\n".encode()}
    for name, data in files.items():
        (site / name).write_bytes(data)
    os.chmod(site / "b.key", 0o600)
    os.chmod(site / "pw", 0o600)
    cli(site, "domains", "add", "b.test", "--cert", "b.pem", "--key", "b.key")
    cli(site, "anchors", "add", "--domain", "b.test", "--direction", "both", "a-roots.pem")
    cli(site, "records", "create", "--name", "Pat Patient", "--address", RECORD_ADDRESS)
    cli(site, "people", "add", EMAIL, "--password-file", "pw", "--record", RECORD_ADDRESS)


def start(site: Path, smtp_port: int) -> Served:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "serve", "--config", str(site / "directgw.toml"),
         "--smtp", f"127.0.0.1:{smtp_port}", "--http", "off"],
        stderr=subprocess.PIPE, text=True, cwd=site,
    )
    deadline = time.monotonic() + START_SECONDS
    assert process.stderr is not None
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen.append(line)
        if "SMTP on" in line:
            return Served(process)
        if not line and process.poll() is not None:
            break
    process.kill()
    process.wait()
    process.stderr.close()
    raise AssertionError(f"serve did not start: {''.join(seen)}")


def sealed_by_openssl(workdir: Path) -> bytes:
    """What a remote HISP sends: the message wrapped, signed (detached, with its CA), encrypted to b.test."""
    plain = messages.with_attachment(sender="alice@a.test", recipients=(RECORD_ADDRESS,), attachment=SAMPLE_CCD,
                                     filename="ccd.xml", content_type="text/xml")
    openssl = OpenSSL(workdir)
    signed = openssl.sign(b"Content-Type: message/rfc822\r\n\r\n" + plain, A.org, chain=(A.intermediate,))
    headers = (f"From: alice@a.test\r\nTo: {RECORD_ADDRESS}\r\nSubject: Summary of care\r\n"
               "Message-ID: <e2e-openssl@a.test>\r\n").encode()
    encrypted = openssl.encrypt(signed, [B.org], cipher="aes-256-cbc")
    # SMTP lines end in CRLF (RFC 5321 2.3.8): openssl ends its base64 lines with LF alone
    return headers + re.sub(rb"\r?\n", b"\r\n", encrypted)


async def test_an_openssl_sealed_message_reaches_the_inbox_page_and_downloads_identical(tmp_path, store_url):
    site = tmp_path / "site"
    site.mkdir()
    bridge_port, smtp_port = free_port(), free_port()
    base = f"http://127.0.0.1:{bridge_port}"
    await asyncio.to_thread(configure, site, store_url, bridge_port)
    message = await asyncio.to_thread(sealed_by_openssl, tmp_path)
    served = await asyncio.to_thread(start, site, smtp_port)
    try:
        def send() -> tuple[int, bytes]:
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
                client.ehlo("a.test")
                client.mail("alice@a.test")
                client.rcpt(RECORD_ADDRESS)
                return client.data(message)

        code, text = await asyncio.to_thread(send)
        assert code == 250, f"{text!r}\n{served.log()}"

        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(f"{base}/signin") as r:
                token = csrf_from(await r.text())
            async with browser.post(f"{base}/signin", data={"email": EMAIL, "password": PASSWORD,
                                                            "csrf_token": token, "next": "/"},
                                    allow_redirects=False) as r:
                assert r.status == 303, await r.text()
            async with browser.get(f"{base}/") as r:
                home = await r.text()
            inbox_path = re.search(r'href="(/records/\d+/inbox)"', home)
            assert inbox_path, home
            async with browser.get(base + inbox_path.group(1)) as r:
                inbox = await r.text()
            assert "Summary of care" in inbox and "alice@a.test" in inbox
            document = re.search(r'href="(/records/\d+/items/[0-9a-f-]+)"[^>]*>ccd\.xml</a>', inbox)
            assert document, inbox
            async with browser.get(base + document.group(1)) as r:
                page = await r.text()
            titles = [html.unescape(t) for t in re.findall(r'<h3 id="section-\d+">([^<]+)</h3>', page)]
            assert titles == ["Allergies and Adverse Reactions", "Medications", "Problems"]
            assert "ClinicalDocument" not in page
            async with browser.get(f"{base}{document.group(1)}/download/content") as r:
                assert r.status == 200 and r.headers["Content-Disposition"].startswith("attachment")
                assert await r.read() == SAMPLE_CCD
    finally:
        served.process.send_signal(signal.SIGTERM)
        try:
            exit_code = await asyncio.to_thread(served.process.wait, 60)
        finally:
            served.close()
    assert exit_code == 0, served.log()
