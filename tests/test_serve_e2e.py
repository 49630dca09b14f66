"""``directgw serve`` as a process on loopback: HISP A (this test: its PKI, its
DNS CERT records on a responder, its SMTP server as a sink) sends a sealed
message to HISP B (a real ``directgw serve``); B answers 250 only once the
message is stored, puts it into the patient's record, and its outbound loop
seals the ``processed`` MDN to A's certificate, found through DNS, and
delivers it to A. Then SIGTERM: B stops gracefully and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.core import open_inbound, seal_outbound
from gateway.core.mdn import parse_mdn
from gateway.core.outbound import SealOptions
from gateway.core.outcomes import Opened, Sealed
from gateway.publish.responder import start_responder
from gateway.publish.settings import DnsSettings
from gateway.publish.source import StaticPublished
from tests import messages
from tests.outbound_sink import start_sink
from tests.pki import hisp
from tests.servers.common import free_port as _free_port
from tests.storage_fixtures import store_url_fixture  # noqa: F401 -- SQLite and PostgreSQL

pytestmark = pytest.mark.slow

A, B = hisp("a.test"), hisp("b.test")
PATIENT = "patient@b.test"


def _cli(site: Path, *argv: str) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway.cli.main", *argv, "--config", str(site / "directgw.toml")],
                          capture_output=True, text=True, timeout=60, cwd=site)
    assert done.returncode == 0, done.stderr


def _configure(site: Path, dns_port: int, sink_port: int, storage_url: str) -> None:
    (site / "directgw.toml").write_text(
        f"""data_dir = "data"

[storage]
url = "{storage_url}"

[discovery]
nameservers = ["127.0.0.1:{dns_port}"]
ldap = false

[routes]
"a.test" = "127.0.0.1:{sink_port}"

[outbound]
poll = 0.2
first_retry = 1
connect_timeout = 5
command_timeout = 5
data_timeout = 10
lease = 60
"""
    )
    (site / "data").mkdir()
    (site / "b.pem").write_bytes(B.org.pem)
    (site / "b.key").write_bytes(B.org.key_pem())
    os.chmod(site / "b.key", 0o600)
    # DNS CERT carries A's leaf alone: its issuing CA is an anchor beside the root
    (site / "a-root.pem").write_bytes(A.root.pem + A.intermediate.pem)
    _cli(site, "domains", "add", "b.test", "--cert", "b.pem", "--key", "b.key")
    _cli(site, "anchors", "add", "--domain", "b.test", "--direction", "both", "a-root.pem")
    _cli(site, "records", "create", "--name", "Pat Patient", "--address", PATIENT)


class Served:
    """A running ``directgw serve`` and its log lines (drained so a full pipe never blocks it)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def close(self) -> None:
        self._drain.join(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def log(self) -> str:
        return "".join(self.lines[-40:])


def _start(site: Path, smtp_port: int) -> Served:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "serve", "--config", str(site / "directgw.toml"),
         "--smtp", f"127.0.0.1:{smtp_port}", "--http", "off"],
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
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


async def test_a_message_lands_in_the_record_and_the_processed_mdn_comes_back(tmp_path, store_url):
    published = StaticPublished.of([A.org.ref])
    now = datetime.now(UTC)  # the served gateway reads the real clock; the test PKI is valid until mid-2027
    responder = await start_responder(DnsSettings(zones=("a.test",)), published, host="127.0.0.1", port=0)
    sink = await start_sink()
    smtp_port = _free_port()
    _configure(tmp_path, int(str(responder.address).rpartition(":")[2]), sink.port, store_url)
    served = _start(tmp_path, smtp_port)
    process = served.process
    try:
        plain = messages.with_attachment(sender="alice@a.test", recipients=(PATIENT,))
        sealed = seal_outbound(plain, A.org.pair, [B.org.ref], SealOptions(at=now, chain=(A.intermediate.ref,)))
        assert isinstance(sealed, Sealed)

        def send() -> tuple[int, bytes]:
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
                client.ehlo("a.test")
                client.mail("alice@a.test")
                client.rcpt(PATIENT)
                return client.data(sealed.message)

        code, text = await asyncio.to_thread(send)
        assert code == 250, text
        for _ in range(300):
            if sink.received:
                break
            await asyncio.sleep(0.1)
        assert sink.received, f"the processed MDN never reached HISP A:\n{served.log()}"
        mdn = sink.received[0]
        assert mdn.rcpt_tos == ("alice@a.test",)
        opened = open_inbound(mdn.data, [A.org.pair], at=datetime.now(UTC))
        assert isinstance(opened, Opened), opened
        assert opened.kind.value == "mdn" and opened.sender == PATIENT
        inner = opened.content.split(b"\r\n\r\n", 1)[1]  # the wrapped message/rfc822
        assert parse_mdn(inner).disposition.value == "processed"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(process.wait, 60)
        finally:
            served.close()
            await sink.close()
            await responder.close()
    assert code == 0
    items = subprocess.run([sys.executable, "-m", "gateway.cli.main", "records", "items", PATIENT, "--config",
                            str(tmp_path / "directgw.toml")], capture_output=True, text=True, timeout=60)
    assert items.returncode == 0 and "message" in items.stdout and "cda" in items.stdout, items.stdout
