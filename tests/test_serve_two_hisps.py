"""Two ``directgw serve`` processes on loopback, each its own HISP with its
own PKI, anchors, records and DNS CERT records (served by ``serve`` itself).

A message sealed by ``openssl cms`` with HISP A's key arrives at B, lands in
the patient's record with its C-CDA byte-identical, and B's ``processed`` and
``dispatched`` MDNs reach A (found through A's DNS, sealed to A's
certificate). The same with B's reply to A. Then the refusals a sender meets:
an untrusted signer (554, nothing stored), a signer whose revocation status
cannot be established (451), an unknown recipient (550)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import smtplib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import messages, smime
from tests.interop import OpenSSL
from tests.pki import Hisp, Issued, hisp, issue
from tests.test_serve_e2e import Served, _cli, _free_port

pytestmark = [pytest.mark.slow, pytest.mark.interop]

A, B, C = hisp("a.test"), hisp("b.test"), hisp("c.test")
ALICE, PATIENT = "alice@a.test", "patient@b.test"
RELIABLE = ("Disposition-Notification-Options", "X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true")


@dataclass
class Node:
    pki: Hisp
    site: Path
    smtp: int
    dns: int
    served: Served | None = None

    @property
    def config(self) -> str:
        return str(self.site / "directgw.toml")

    def cli_json(self, *argv: str):
        done = subprocess.run([sys.executable, "-m", "gateway.cli.main", *argv, "--json", "--config", self.config],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def _setup(node: Node, peer: Node, record: str) -> None:
    domain, other = node.pki.domain, peer.pki.domain
    node.site.mkdir()
    (node.site / "data").mkdir()
    (node.site / "directgw.toml").write_text(
        f"""data_dir = "data"

[discovery]
nameservers = ["127.0.0.1:{peer.dns}"]
ldap = false

[routes]
"{other}" = "127.0.0.1:{peer.smtp}"

[outbound]
poll = 0.2
first_retry = 1
connect_timeout = 5
command_timeout = 5
data_timeout = 10
lease = 60

[dns]
enabled = true
listen = "127.0.0.1:{node.dns}"
zones = ["{domain}"]

[http]
listen = "off"
"""
    )
    (node.site / "org.pem").write_bytes(node.pki.org.pem)
    (node.site / "org.key").write_bytes(node.pki.org.key_pem())
    os.chmod(node.site / "org.key", 0o600)
    # the peer's DNS CERT record carries its leaf alone: its issuing CA is an anchor beside its root
    (node.site / "peer.pem").write_bytes(peer.pki.root.pem + peer.pki.intermediate.pem)
    _cli(node.site, "domains", "add", domain, "--cert", "org.pem", "--key", "org.key")
    _cli(node.site, "anchors", "add", "--domain", domain, "--direction", "both", "peer.pem")
    _cli(node.site, "records", "create", "--name", "Someone", "--address", record)


def _serve(node: Node) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "serve", "--config", node.config, "--smtp", f"127.0.0.1:{node.smtp}"],
        stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "SMTP on" in line:
            node.served = Served(process)
            return
    process.wait()
    raise AssertionError("".join(seen))


@pytest.fixture(scope="module")
def hisps(tmp_path_factory):
    root = tmp_path_factory.mktemp("hisps")
    a = Node(A, root / "a", _free_port(), _free_port())
    b = Node(B, root / "b", _free_port(), _free_port())
    _setup(a, b, ALICE)
    _setup(b, a, PATIENT)
    for node in (a, b):
        _serve(node)
    yield a, b
    for node in (a, b):
        assert node.served is not None
        node.served.process.send_signal(signal.SIGTERM)
        code = node.served.process.wait(60)
        node.served.close()
        assert code == 0, node.served.log()


def _openssl_sealed(tmp: Path, signer: Issued, chain: tuple[Issued, ...], recipient: Issued, plain: bytes,
                    sender: str, to: str) -> bytes:
    ssl = OpenSSL(tmp)
    signed = ssl.sign(smime.wrap(plain), signer, chain=chain)
    enveloped = ssl.encrypt(signed, [recipient])
    message = f"From: {sender}\r\nTo: {to}\r\nSubject: Direct message\r\n".encode() + enveloped
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # SMTP's line ends (openssl writes LF)


def _send(port: int, sender: str, to: str, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo(sender.rpartition("@")[2])
        client.mail(sender)
        code, text = client.rcpt(to)
        if code != 250:
            return code, text
        return client.data(data)


def _reports(node: Node, count: int) -> list[dict]:
    for _ in range(300):
        reports = [m for m in node.cli_json("messages", "list", "--direction", "in") if m["kind"] == "mdn"]
        if len(reports) >= count:
            return reports
        time.sleep(0.2)
    raise AssertionError(f"{count} MDNs never arrived: {node.served.log() if node.served else ''}")


def test_a_to_b_lands_in_the_record_and_both_mdns_come_back(hisps, tmp_path):
    a, b = hisps
    plain = messages.with_attachment(sender=ALICE, recipients=(PATIENT,))
    plain = plain.replace(b"Subject:", f"{RELIABLE[0]}: {RELIABLE[1]}\r\nMessage-ID: <a2b@a.test>\r\nSubject:".encode(), 1)
    data = _openssl_sealed(tmp_path, A.org, (A.intermediate,), B.org, plain, ALICE, PATIENT)
    code, text = _send(b.smtp, ALICE, PATIENT, data)
    assert code == 250, text
    items = b.cli_json("records", "items", PATIENT)
    assert [i["type"] for i in items] == ["message", "cda"] and items[0]["sender"] == ALICE
    assert items[1]["sha256"] == hashlib.sha256(messages.CCDA).hexdigest()  # byte-identical
    subjects = sorted(r["subject"].split(":")[0] for r in _reports(a, 2))
    assert subjects == ["Dispatched", "Processed"]


def test_b_replies_to_a_the_same_way(hisps, tmp_path):
    a, b = hisps
    before = len([m for m in b.cli_json("messages", "list", "--direction", "in") if m["kind"] == "mdn"])
    plain = messages.plain(sender=PATIENT, recipients=(ALICE,), subject="Re: Summary of care",
                           extra_headers=(("Message-ID", "<b2a@b.test>"),))
    data = _openssl_sealed(tmp_path, B.org, (B.intermediate,), A.org, plain, PATIENT, ALICE)
    code, text = _send(a.smtp, PATIENT, ALICE, data)
    assert code == 250, text
    assert [i["type"] for i in a.cli_json("records", "items", ALICE)] == ["message"]
    assert len(_reports(b, before + 1)) == before + 1


@pytest.mark.parametrize(
    ("case", "expected"),
    [("untrusted-signer", (554, b"5.7.1")), ("revocation-unknown", (451, b"4.7.0")), ("unknown-recipient", (550, b"5.1.1"))],
)
def test_refusals_reach_the_sender_and_nothing_is_stored(hisps, tmp_path, case, expected):
    _a, b = hisps
    before = len(b.cli_json("records", "items", PATIENT))
    to = "nobody@b.test" if case == "unknown-recipient" else PATIENT
    signer, chain = A.org, (A.intermediate,)
    if case == "untrusted-signer":
        signer, chain = C.org, (C.intermediate,)
    elif case == "revocation-unknown":
        # a CRL that cannot be fetched (a loopback URL is never fetched from a peer's certificate)
        signer = issue("a.test", issuer=A.intermediate, dns="a.test", crl_urls=("http://127.0.0.1:9/a.crl",))
    data = _openssl_sealed(tmp_path, signer, chain, B.org, messages.plain(sender=ALICE, recipients=(to,)), ALICE, to)
    code, text = _send(b.smtp, ALICE, to, data)
    assert (code, text[:5]) == expected, text
    assert len(b.cli_json("records", "items", PATIENT)) == before
