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
    assert "matches the EHR's file" in out
    # it picked free loopback ports and said which
    assert "127.0.0.1:" in out and ":25 " not in out
