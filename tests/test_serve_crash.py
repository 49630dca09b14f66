"""A 250 means stored: ``kill -9`` the receiving gateway while 200 messages
arrive, restart it, let the client re-send every message that got no 250 (as
an SMTP client must), and every message is in the record exactly once."""

from __future__ import annotations

import json
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

from gateway.core import seal_outbound
from gateway.core.outbound import SealOptions
from gateway.core.outcomes import Sealed
from tests import messages
from tests.pki import hisp
from tests.storage_fixtures import store_url_fixture  # noqa: F401 -- SQLite and PostgreSQL
from tests.test_serve_e2e import PATIENT, Served, _cli, _free_port, _start

pytestmark = pytest.mark.slow

A, B = hisp("a.test"), hisp("b.test")
COUNT = 200
CLIENTS = 4


def _site(site: Path, dead_port: int, storage_url: str) -> None:
    (site / "directgw.toml").write_text(
        f"""data_dir = "data"

[storage]
url = "{storage_url}"

[discovery]
nameservers = ["127.0.0.1:{dead_port}"]
ldap = false

[routes]
"a.test" = "127.0.0.1:{dead_port}"
"""
    )
    (site / "data").mkdir()
    (site / "b.pem").write_bytes(B.org.pem)
    (site / "b.key").write_bytes(B.org.key_pem())
    os.chmod(site / "b.key", 0o600)
    (site / "a-root.pem").write_bytes(A.root.pem)
    _cli(site, "domains", "add", "b.test", "--cert", "b.pem", "--key", "b.key")
    _cli(site, "anchors", "add", "--domain", "b.test", "--direction", "incoming", "a-root.pem")
    _cli(site, "records", "create", "--name", "Pat Patient", "--address", PATIENT)


def _sealed(n: int, now: datetime) -> bytes:
    plain = messages.plain(sender="alice@a.test", recipients=(PATIENT,), subject=f"message {n}",
                           extra_headers=(("Message-ID", f"<crash-{n}@a.test>"),))
    sealed = seal_outbound(plain, A.org.pair, [B.org.ref], SealOptions(at=now, chain=(A.intermediate.ref,)))
    assert isinstance(sealed, Sealed)
    return sealed.message


REFUSED: dict[int, str] = {}
RETRIES: dict[int, int] = {}


def _send_all(port: int, pending: list[int], bodies: dict[int, bytes], accepted: set[int], lock: threading.Lock,
              stop_after: float | None) -> None:
    """Send each pending message on fresh sessions; record the 250s. Any error: that message is not accepted."""
    started = time.monotonic()
    while True:
        with lock:
            if not pending:
                return
            n = pending.pop()
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
                client.ehlo("a.test")
                client.mail("alice@a.test")
                client.rcpt(PATIENT)
                code, text = client.data(bodies[n])
            with lock:
                if code == 250:
                    accepted.add(n)
                else:
                    REFUSED[n] = f"{code} {text!r}"
                    if 400 <= code < 500 and RETRIES.setdefault(n, 0) < 3:
                        RETRIES[n] += 1  # a temporary refusal: a client tries again (RFC 5321 4.5.4.1)
                        pending.insert(0, n)
        except (OSError, smtplib.SMTPException):
            pass  # the server died under us: no 250, so the message is still the client's to send
        if stop_after is not None and time.monotonic() - started > stop_after:
            return


def test_kill_9_mid_stream_loses_nothing_and_duplicates_nothing(tmp_path, store_url):
    now = datetime.now(UTC)
    _site(tmp_path, _free_port(), store_url)
    bodies = {n: _sealed(n, now) for n in range(COUNT)}
    port = _free_port()
    served: Served = _start(tmp_path, port)
    accepted: set[int] = set()
    lock = threading.Lock()
    pending = list(range(COUNT))
    threads = [threading.Thread(target=_send_all, args=(port, pending, bodies, accepted, lock, None))
               for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while len(accepted) < COUNT // 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    served.process.send_signal(signal.SIGKILL)  # mid-stream: sessions in DATA, transactions open
    served.process.wait(30)
    served.close()
    for t in threads:
        t.join(60)
    first_run = set(accepted)
    assert 0 < len(first_run) < COUNT, "the kill should land while messages are arriving"

    served = _start(tmp_path, port)
    try:
        # the client re-sends everything that got no 250 (RFC 5321 4.5.4.1), and a few that did
        resend = [n for n in range(COUNT) if n not in first_run] + sorted(first_run)[:5]
        threads = [threading.Thread(target=_send_all, args=(port, resend, bodies, accepted, lock, None))
                   for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        problems = [line for line in served.lines if "error" in line]
        assert accepted == set(range(COUNT)), ({n: REFUSED.get(n) for n in set(range(COUNT)) - accepted}, problems)
    finally:
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(60)
        served.close()
    listing = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "records", "items", PATIENT, "--json", "--config",
         str(tmp_path / "directgw.toml")], capture_output=True, text=True, timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    ids = [item["message_id"] for item in json.loads(listing.stdout) if item["type"] == "message"]
    assert sorted(ids) == sorted(f"<crash-{n}@a.test>" for n in range(COUNT))  # each exactly once
