"""Issue 9's proof: an EHR sends through HISP A and hears, exactly once per recipient, whether
its message arrived. Two ``directgw serve`` processes on loopback; everything else real too:

- the EHR submits with ``smtplib`` (STARTTLS + AUTH) to A's submission port; its inbox is an
  aiosmtpd sink behind A's provider route (``[domains."a.test"] provider_smtp``);
- B delivers into the patient's record and its ``processed`` and ``dispatched`` MDNs come back
  to A, which passes them to the EHR's inbox; ``messages show`` says delivered;
- a provider at B (its own EHR account) writes to a provider at A: it arrives in A's provider
  inbox decrypted, with A's trust verdict on top;
- the failure paths, each ending in exactly one notice in the EHR's inbox: no certificate
  published (a DSN saying what was asked, nothing sent), the recipient's HISP untrusted at A
  (nothing sent), A's second domain untrusted at B (554 at B, a DSN), a HISP down past the
  lifetime (one DSN), a HISP that accepts but never sends an MDN (one failure notice after
  a short timeout), and duplicate and late MDNs after that timeout (no second notice).

A's discovery asks a DNS responder run by the test (it publishes B's, C's, the down and the
silent HISPs' certificates, and nothing for nocert.test); B's asks A's own responder.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import smtplib
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.core import seal_outbound
from gateway.core.mdn import Disposition, NotAReport, build_mdn, parse_dsn, parse_mdn
from gateway.core.outbound import SealOptions
from gateway.core.outcomes import Headers, Sealed
from gateway.publish.responder import start_responder
from gateway.publish.settings import DnsSettings
from gateway.publish.source import StaticPublished
from tests.outbound_sink import Sink, server_tls, start_sink
from tests.pki import Hisp, hisp
from tests.storage_fixtures import POSTGRES_DSN, _admin_connection, _sqlalchemy_url
from tests.test_serve_e2e import Served, _free_port

pytestmark = pytest.mark.slow

A, A2, B = hisp("a.test"), hisp("a2.test"), hisp("b.test")
C, DOWN, SILENT = hisp("c.test"), hisp("down.test"), hisp("silent.test")
EHR, EHR2, PATIENT = "dr.who@a.test", "dr.second@a2.test", "patient@b.test"
B_DOCTOR, A_DOCTOR = "dr.jones@b.test", "dr.house@a.test"
PASSWORD = "correct horse battery staple"
RELIABLE = ("Disposition-Notification-Options", "X-DIRECT-FINAL-DESTINATION-DELIVERY=optional,true")
LIFETIME = 6
"""Seconds A and B retry a submitted message: short, for the HISP that stays down."""
A2_TIMEOUT = 4
"""a2.test's MDN timeout: short, for the HISP that never answers."""
WAIT = 60.0


class Loop:
    """An event loop in a thread for the test's own servers (DNS, sinks), for the module's life."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Node:
    name: str
    site: Path
    smtp: int
    submission: int
    dns: int
    domains: tuple[Hisp, ...]
    served: Served | None = None
    inbox: Sink | None = None

    @property
    def config(self) -> str:
        return str(self.site / "directgw.toml")

    def cli(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "gateway.cli.main", *argv, "--config", self.config],
                              capture_output=True, text=True, timeout=60, cwd=self.site)
        assert done.returncode == 0 or not check, done.stderr
        return done

    def cli_json(self, *argv: str) -> Any:
        return json.loads(self.cli(*argv, "--json").stdout)


def _write_config(node: Node, *, nameserver: int, routes: dict[str, int], domains: str, storage: str) -> None:
    route_lines = "".join(f'"{d}" = "127.0.0.1:{p}"\n' for d, p in routes.items())
    zones = ", ".join(f'"{h.domain}"' for h in node.domains)
    (node.site / "directgw.toml").write_text(
        f"""data_dir = "data"
{storage}

[discovery]
nameservers = ["127.0.0.1:{nameserver}"]
ldap = false

[routes]
{route_lines}
[outbound]
poll = 0.2
first_retry = 1
max_retry = 1
lifetime = {LIFETIME}
connect_timeout = 2
command_timeout = 5
data_timeout = 10
lease = 60

[dns]
enabled = true
listen = "127.0.0.1:{node.dns}"
zones = [{zones}]

[smtp]
tls_certificate = "sink.crt"
tls_key = "sink.key"

[submission]
listen = "127.0.0.1:{node.submission}"

[http]
listen = "off"

[monitor]
sweep = 0.5

{domains}"""
    )


def _setup(node: Node, trusted: dict[str, tuple[Hisp, ...]], accounts: dict[str, str]) -> None:
    server_tls(node.site)  # sink.crt / sink.key: the STARTTLS pair of both ports
    for pki in node.domains:
        d = pki.domain
        (node.site / f"{d}.pem").write_bytes(pki.org.pem)
        (node.site / f"{d}.key").write_bytes(pki.org.key_pem())
        os.chmod(node.site / f"{d}.key", 0o600)
        node.cli("domains", "add", d, "--cert", f"{d}.pem", "--key", f"{d}.key")
        # a DNS CERT record carries the leaf alone: each peer's issuing CA is an anchor beside its
        # root; every peer's in one file (one CLI run: each is a Python start-up)
        anchor = node.site / f"anchors-{d}.pem"
        anchor.write_bytes(b"".join(peer.root.pem + peer.intermediate.pem for peer in trusted[d]))
        node.cli("anchors", "add", "--domain", d, "--direction", "both", anchor.name)
    (node.site / "password").write_text(PASSWORD + "\n")
    os.chmod(node.site / "password", 0o600)
    for name, domain in accounts.items():
        node.cli("accounts", "add", name, "--domain", domain, "--password-file", "password")


def _serve(node: Node) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "serve", "--config", node.config, "--smtp",
         f"127.0.0.1:{node.smtp}"],
        stderr=subprocess.PIPE, text=True, cwd=node.site,
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


@dataclass
class World:
    a: Node
    b: Node
    silent: Sink
    loop: Loop
    down_port: int


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("monitor-e2e")
    loop = Loop()
    storage = {"A": "", "B": ""}
    admin = None
    if request.param == "postgres":  # each gateway its own fresh database, dropped afterwards
        admin = loop.run(_admin_connection())
        for name in storage:
            database = f"directgw_e2e_{name.lower()}_{uuid.uuid4().hex[:12]}"
            loop.run(admin.execute(f'CREATE DATABASE "{database}"'))
            storage[name] = f'\n[storage]\nurl = "{_sqlalchemy_url(POSTGRES_DSN, database)}"\n'

    published = StaticPublished.of([B.org.ref, C.org.ref, DOWN.org.ref, SILENT.org.ref])
    responder = loop.run(start_responder(
        DnsSettings(zones=("b.test", "c.test", "down.test", "silent.test", "nocert.test")), published,
        host="127.0.0.1", port=0))
    a_inbox, b_inbox, silent = loop.run(start_sink()), loop.run(start_sink()), loop.run(start_sink())
    a = Node("A", root / "a", _free_port(), _free_port(), _free_port(), (A, A2), inbox=a_inbox)
    b = Node("B", root / "b", _free_port(), _free_port(), _free_port(), (B,), inbox=b_inbox)
    down = _free_port()  # nothing listens there
    for node in (a, b):
        (node.site / "data").mkdir(parents=True)
    _write_config(a, nameserver=int(str(responder.address).rpartition(":")[2]), routes={
        "b.test": b.smtp, "c.test": silent.port, "nocert.test": silent.port, "silent.test": silent.port,
        "down.test": down,
    }, storage=storage["A"], domains=(
        f'[domains."a.test"]\nprovider_smtp = "127.0.0.1:{a_inbox.port}"\n\n'
        f'[domains."a2.test"]\nprovider_smtp = "127.0.0.1:{a_inbox.port}"\nmdn_timeout = {A2_TIMEOUT}\n'
    ))
    _write_config(b, nameserver=a.dns, routes={"a.test": a.smtp, "a2.test": a.smtp}, storage=storage["B"],
                  domains=f'[domains."b.test"]\nprovider_smtp = "127.0.0.1:{b_inbox.port}"\n')
    _setup(a, {"a.test": (B, SILENT, DOWN), "a2.test": (B, SILENT)}, {"ehr": "a.test", "ehr2": "a2.test",
                                                                      "house": "a.test"})
    _setup(b, {"b.test": (A,)}, {"jones": "b.test"})  # A2's root is not trusted at B
    b.cli("records", "create", "--name", "Pat Patient", "--address", PATIENT)
    for node in (a, b):
        _serve(node)
    yield World(a, b, silent, loop, down)
    codes = []
    for node in (a, b):
        assert node.served is not None
        node.served.process.send_signal(signal.SIGTERM)
        codes.append(node.served.process.wait(60))
        node.served.close()
    for sink in (a_inbox, b_inbox, silent):
        loop.run(sink.close())
    loop.run(responder.close())
    if admin is not None:
        for url in storage.values():
            database = url.rsplit("/", 1)[1].split('"')[0]
            loop.run(admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        loop.run(admin.close())
    loop.close()
    assert codes == [0, 0]


def _submit(node: Node, account: str, sender: str, to: str, message_id: str, *, reliable: bool = False,
            body: str = "Please see the attached summary.") -> None:
    head = [f"From: {sender}", f"To: {to}", f"Subject: Summary {message_id}", f"Message-ID: {message_id}"]
    if reliable:
        head.append(f"{RELIABLE[0]}: {RELIABLE[1]}")
    data = ("\r\n".join(head) + "\r\n\r\n" + body + "\r\n").encode()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", node.submission, timeout=30) as client:
        client.ehlo("ehr.test")
        client.starttls(context=context)
        client.ehlo("ehr.test")
        client.login(account, PASSWORD)
        refused = client.sendmail(sender, [to], data)
        assert refused == {}


def _notice(raw: bytes) -> tuple[str, str | None]:
    """What one message in an EHR's inbox is: ("mdn:processed", original id) or ("dsn:5.7.0", ...)."""
    mdn = parse_mdn(raw)
    if not isinstance(mdn, NotAReport):
        return f"mdn:{mdn.disposition_text}", mdn.original_message_id
    dsn = parse_dsn(raw)
    if not isinstance(dsn, NotAReport):
        return f"dsn:{dsn.recipients[0].status}", dsn.original_message_id
    return "message", None


def _inbox(node: Node, message_id: str) -> list[str]:
    assert node.inbox is not None
    return sorted(kind for kind, about in (_notice(m.data) for m in list(node.inbox.received)) if about == message_id)


def _wait(what: str, node: Node, until: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = until()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} never happened:\n{node.served.log() if node.served else ''}")


def _tracked(node: Node, message_id: str) -> dict[str, Any]:
    [row] = [m for m in node.cli_json("messages", "list", "--direction", "out") if m["message_id"] == message_id]
    return node.cli_json("messages", "show", str(row["id"]))


def _settles(world: World, message_id: str, expected: list[str], *, node: Node | None = None) -> dict[str, Any]:
    """The EHR's inbox ends with exactly ``expected`` for ``message_id``, and stays so."""
    node = node or world.a
    _wait(f"{expected} for {message_id}", node, lambda: _inbox(node, message_id) == sorted(expected))
    time.sleep(A2_TIMEOUT + 1.5)  # past any timeout and a few sweeps: nothing more may come
    assert _inbox(node, message_id) == sorted(expected)
    return _tracked(node, message_id)


def test_delivered_to_the_record_with_processed_and_dispatched_passed_back(world):
    mid = "<happy@a.test>"
    _submit(world.a, "ehr", EHR, PATIENT, mid, reliable=True)
    shown = _settles(world, mid, ["mdn:processed", "mdn:dispatched"])
    assert shown["delivery"] == "delivered"
    [row] = shown["tracking"]
    assert (row["recipient"], row["state"], row["final_outcome"]) == (PATIENT, "dispatched", "delivered")
    assert "delivery: delivered" in world.a.cli("messages", "show", str(shown["message"]["id"])).stdout
    items = world.b.cli_json("records", "items", PATIENT)
    assert any(i["message_id"] == mid and i["sender"] == EHR for i in items)
    passed = [m for m in world.a.inbox.received if _notice(m.data)[1] == mid]
    assert all(m.mail_from == "<>" and m.rcpt_tos == (EHR,) for m in passed)


def test_a_providers_message_from_b_arrives_at_as_provider_decrypted(world):
    mid = "<b-to-a@b.test>"
    _submit(world.b, "jones", B_DOCTOR, A_DOCTOR, mid, body="Your patient Pat, seen today.")
    got = _wait("B's provider's message at A's provider inbox", world.a, lambda: [
        m for m in world.a.inbox.received if A_DOCTOR in m.rcpt_tos])
    [message] = got
    head, _, body = message.data.partition(b"\r\n\r\n")
    assert b"Your patient Pat, seen today." in body  # plain: decrypted
    assert head.startswith(b"X-Direct-Trust: trusted; ") and b"X-Direct-Sender: dr.jones@b.test" in head
    assert message.mail_from == B_DOCTOR
    # A's processed MDN goes back to B, whose monitor passes it to B's provider: the message is delivered
    shown = _settles(world, mid, ["mdn:processed"], node=world.b)
    assert shown["delivery"] == "delivered"


def test_no_certificate_published_means_one_dsn_and_nothing_sent(world):
    mid = "<nocert@a.test>"
    _submit(world.a, "ehr", EHR, "someone@nocert.test", mid)
    shown = _settles(world, mid, ["dsn:5.7.0"])
    [dsn] = [m for m in world.a.inbox.received if _notice(m.data)[1] == mid]
    assert b"NOT sent" in dsn.data and b"nocert.test" in dsn.data  # which sources were asked, in words
    assert not any("someone@nocert.test" in m.rcpt_tos for m in world.silent.received)
    [row] = shown["tracking"]
    assert (row["state"], row["reason"], shown["delivery"]) == ("failed", "no-certificate", "failed")


def test_a_hisp_untrusted_at_a_gets_nothing_and_the_ehr_one_dsn(world):
    mid = "<untrusted-c@a.test>"
    _submit(world.a, "ehr", EHR, "someone@c.test", mid)
    _settles(world, mid, ["dsn:5.7.0"])
    assert not any("someone@c.test" in m.rcpt_tos for m in world.silent.received)


def test_a_sender_untrusted_at_b_is_refused_there_and_the_ehr_gets_one_dsn(world):
    mid = "<untrusted-a2@a2.test>"
    _submit(world.a, "ehr2", EHR2, PATIENT, mid)
    shown = _settles(world, mid, ["dsn:5.7.1"])
    [row] = shown["tracking"]
    assert (row["state"], row["reason"]) == ("failed", "smtp-permanent") and "554" in row["detail"]
    refused = [m for m in world.b.cli_json("messages", "list", "--direction", "in") if m["state"] == "rejected"]
    assert refused, "B did not refuse A2's message"


def test_a_hisp_down_past_the_lifetime_gets_the_ehr_one_dsn(world):
    mid = "<down@a.test>"
    _submit(world.a, "ehr", EHR, "someone@down.test", mid)
    shown = _settles(world, mid, ["dsn:5.4.7"])
    [row] = shown["tracking"]
    assert (row["state"], row["reason"]) == ("failed", "lifetime")


def test_no_mdn_means_one_failure_notice_and_late_duplicates_change_nothing(world):
    mid = "<silent@a2.test>"
    _submit(world.a, "ehr2", EHR2, "someone@silent.test", mid)
    _wait("the silent HISP's 250", world.a, lambda: any("someone@silent.test" in m.rcpt_tos
                                                        for m in world.silent.received))
    shown = _settles(world, mid, ["dsn:5.4.7"])
    [row] = shown["tracking"]
    assert (row["state"], row["final_outcome"]) == ("timed-out", "timed-out")
    # the silent HISP wakes up: its processed MDN, twice, after the failure notice
    mdn = build_mdn(Disposition.PROCESSED, original=Headers((EHR2,), ("someone@silent.test",), (), "x", mid, None),
                    final_recipient="someone@silent.test", reporting_domain="silent.test", at=datetime.now(UTC))
    sealed = seal_outbound(mdn, SILENT.org.pair, [A2.org.ref],
                           SealOptions(at=datetime.now(UTC), chain=(SILENT.intermediate.ref,)))
    assert isinstance(sealed, Sealed)
    for _ in range(2):
        with smtplib.SMTP("127.0.0.1", world.a.smtp, timeout=30) as client:
            client.ehlo("silent.test")
            assert client.sendmail("<>", [EHR2], sealed.message) == {}
    time.sleep(2)
    assert _inbox(world.a, mid) == ["dsn:5.4.7"]  # no second notice
    [row] = _tracked(world.a, mid)["tracking"]
    assert row["state"] == "timed-out" and row["processed_at"] is not None  # noted, not passed on


def test_everything_in_the_providers_inboxes_is_plain(world):
    """Nothing in a provider's inbox is S/MIME: the EHR reads ordinary mail."""
    assert world.a.inbox is not None and world.b.inbox is not None
    for message in world.a.inbox.received + world.b.inbox.received:
        assert b"application/pkcs7-mime" not in message.data.split(b"\r\n\r\n", 1)[0]
