"""Sending for EHRs: submissions per second sealed and delivered, and submission to `processed` MDN.

    .venv/bin/python bench/smtp_outbound.py [--messages 300] [--rounds 3] [--clients 8] [--workers 1] [--quick]

What runs, all on loopback (issue 9's last Proof bullet):
- gateway A (``directgw serve``, SQLite, one worker, or ``--workers N``) with its submission port;
  its domain a.test has a provider route to the EHR's inbox, a sink in this process
  that notes when each passed-back MDN arrives (it answers as Postfix does: PIPELINING
  and CHUNKING offered, the replies to one read in one write);
- gateway B (the same, one worker: the peer, not the gateway measured), with a
  record for patient@b.test;
- each publishes its certificates on its own DNS responder ([dns]) where the
  other's discovery asks (warm after the first messages); static routes.
Concurrent EHR clients (asyncio; per connection STARTTLS and AUTH PLAIN once,
before the clock and the CPU counters start, then MAIL/RCPT/DATA per message) submit plain 4 KB C-CDA messages for one
recipient. A seals each (an RSA signature and a key transport) and delivers it
to B; B opens it, stores it in the record and sends its ``processed`` MDN; A
matches it and passes it back to the EHR's inbox. Measured: the rate at which
submissions complete that whole path, the time from MAIL to the 250, and the
time from MAIL to the ``processed`` MDN in the inbox (p50/p99): driven as
fast as the replies come (the clients outrun sealing, so submissions queue at
A and the time grows with the run: a queue's length, not a message's
latency), at half that rate offered on a schedule (``--clients``, each
submission timed from when it was due), and from one client; the CPU each
gateway spent per message (/proc). In the
same run, ``bench/smtp_inbound.py``'s inbound rate (SQLite, as many workers
as A has, as many clients, fresh sealed messages each time) for the ratio.

All three gateways start once. Then, in each of ``--rounds`` rounds (3 by
default), the inbound rate and the outbound run are measured in turn, the
first round inbound first, the next outbound first, and so on; figures are
means over the rounds, and each round's own ratio is printed too. While one
side is measured the other side's gateways are stopped (SIGSTOP): nothing
idle runs beside it. The machines' speed drifts by more than a third within
a minute (two inbound runs a minute apart gave 472 and 703 messages a second),
so one outbound run between two inbound ones measured the drift as much as
the gateways; alternating rounds cancel a steady drift and show the rest.
Two ratios are given: the rate through to the ``processed`` MDN in the inbox
(every message's whole path), and the rate at which A sealed and handed
messages to B (its jobs recorded sent, read from A's database), which is what
the target names; the first also holds the MDN work left after the last send.

Targets (issue 9): sealed-and-delivered submissions per second >= 0.4x the
inbound rate; p50 submission to ``processed`` under 100 ms with warm
discovery. Both gateways' outbound loops look for due work every ``POLL``
seconds when idle, and a message waits for three of them (A's send, B's MDN,
A's pass-back): that wait is part of what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.smtp_inbound import (
    Server,
    ccda,
    cli,
    free_port,
    mean_of,
    measure,
    percentile,
    sealed,
    tree_env,
    wait_port,
    warm_count,
)
from bench.smtp_inbound import site as inbound_site
from bench.smtp_inbound import start_gateway as start_inbound_gateway
from gateway import devpki
from gateway.core.mdn import Disposition, Mdn, parse_mdn
from gateway.smtp.data import unstuff
from gateway.smtp.tls import self_signed

A, B = devpki.hisp("a.test"), devpki.hisp("b.test")
EHR, PATIENT = "dr.who@a.test", "patient@b.test"
ACCOUNT, PASSWORD = "ehr", "a long password for the bench EHR"
POLL = 0.05
"""Seconds an idle outbound loop waits before looking again (the default is 5: far too slow to
show a latency, and 20 looks a second per gateway cost little against the work measured)."""
WAIT_PER_MESSAGE = 1.0
"""How long the run waits for the last MDN, per message, before it says what did not arrive."""


def plain(n: int, size: int = 4_000) -> tuple[str, bytes]:
    message_id = f"<bench-out-{n}-{uuid.uuid4().hex}@a.test>"
    encoded = base64.encodebytes(ccda(size)).replace(b"\n", b"\r\n")
    return message_id, (
        f"From: Dr Who <{EHR}>\r\nTo: {PATIENT}\r\nSubject: CCD {n}\r\nMessage-ID: {message_id}\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n'
        "--x\r\nContent-Type: text/plain\r\n\r\nSummary attached.\r\n"
        "--x\r\nContent-Type: text/xml; name=ccd.xml\r\nContent-Transfer-Encoding: base64\r\n"
        "Content-Disposition: attachment; filename=ccd.xml\r\n\r\n"
    ).encode() + encoded + b"--x--\r\n"


# --------------------------------------------------------------------------- the EHR's inbox


@dataclass
class Inbox:
    """Arrival times of ``processed`` MDNs by Original-Message-ID (written from the sink's thread)."""

    processed: dict[str, float] = field(default_factory=dict)
    other: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(i in self.processed for i in ids):
                    return
            time.sleep(0.02)


class _InboxSession(asyncio.Protocol):
    """One session at the EHR's mail server, which behaves as Postfix does: it offers PIPELINING
    and CHUNKING, and writes the replies to what one read brought in one write (aiosmtpd,
    which played it before, answers each command alone and offers neither)."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.chunk_left: int | None = None  # in a BDAT chunk: its octets still to come
        self.last = False
        self.in_data = False
        self.pieces: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(b"220 inbox.a.test ESMTP\r\n")  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out: list[bytes] = []
        while self._step(out):
            pass
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def _step(self, out: list[bytes]) -> bool:
        buffer = self.buffer
        if self.chunk_left is not None:
            take = min(self.chunk_left, len(buffer))
            self.pieces.append(bytes(buffer[:take]))
            del buffer[:take]
            self.chunk_left -= take
            if self.chunk_left:
                return False
            self.chunk_left = None
            out.append(self._delivered(b"".join(self.pieces)) if self.last else b"250 2.0.0 chunk\r\n")
            if self.last:
                self.pieces = []
            return True
        if self.in_data:
            end = (b"\r\n" + buffer).find(b"\r\n.\r\n")
            if end < 0:
                return False
            message = bytes(buffer[:end])
            del buffer[:end + 3]
            self.in_data = False
            out.append(self._delivered(unstuff(message)))
            return True
        end = buffer.find(b"\r\n")
        if end < 0:
            return False
        line = bytes(buffer[:end])
        del buffer[:end + 2]
        verb = line[:4].upper()
        if verb == b"EHLO":
            out.append(b"250-inbox.a.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n")
        elif verb == b"DATA":
            self.in_data = True
            out.append(b"354 go ahead\r\n")
        elif verb == b"BDAT":
            size, _, last = line[5:].partition(b" ")
            self.chunk_left, self.last = int(size), last.upper() == b"LAST"
        elif verb == b"QUIT":
            out.append(b"221 2.0.0 bye\r\n")
            if self.transport is not None:
                self.transport.write(b"".join(out))
                out.clear()
                self.transport.close()
            return False
        else:  # MAIL, RCPT, RSET, NOOP, HELO
            out.append(b"250 2.0.0 ok\r\n")
        return True

    def _delivered(self, message: bytes) -> bytes:
        arrived = time.perf_counter()
        report = parse_mdn(message)
        inbox = self.inbox
        with inbox.lock:
            if isinstance(report, Mdn) and report.disposition is Disposition.PROCESSED and report.original_message_id:
                inbox.processed.setdefault(report.original_message_id.strip(), arrived)
            else:
                inbox.other += 1
        return b"250 2.0.0 delivered to the EHR\r\n"


class InboxServer:
    """The EHR's inbox (``_InboxSession``) on its own event loop in a thread of this process."""

    def __init__(self, inbox: Inbox) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = free_port()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                self.loop.create_server(lambda: _InboxSession(inbox), "127.0.0.1", self.port))
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="ehr-inbox", daemon=True)
        self.thread.start()
        started.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start_inbox(inbox: Inbox) -> tuple[InboxServer, int]:
    server = InboxServer(inbox)
    return server, server.port


# --------------------------------------------------------------------------- the two gateways


@dataclass
class Node:
    domain: devpki.Hisp
    root: Path
    smtp: int
    submission: int
    dns: int


def configure(node: Node, peer: Node, inbox_port: int | None, tree: Path | None = None) -> None:
    provider = f'\n[domains."{node.domain.domain}"]\nprovider_smtp = "127.0.0.1:{inbox_port}"\n' if inbox_port else ""
    (node.root / "directgw.toml").write_text(f"""data_dir = "data"

[discovery]
nameservers = ["127.0.0.1:{peer.dns}"]
ldap = false

[routes]
"{peer.domain.domain}" = "127.0.0.1:{peer.smtp}"

[outbound]
poll = {POLL}

[dns]
enabled = true
listen = "127.0.0.1:{node.dns}"

[smtp]
tls_certificate = "tls.crt"
tls_key = "tls.key"

[submission]
listen = "127.0.0.1:{node.submission}"

[http]
listen = "off"
{provider}""")
    (node.root / "data").mkdir()
    cert, key = self_signed(f"mx.{node.domain.domain}", datetime.now(UTC))
    (node.root / "tls.crt").write_bytes(cert)
    (node.root / "tls.key").write_bytes(key)
    os.chmod(node.root / "tls.key", 0o600)
    d = node.domain.domain
    (node.root / "org.pem").write_bytes(node.domain.org.pem)
    (node.root / "org.key").write_bytes(node.domain.org.key_pem())
    os.chmod(node.root / "org.key", 0o600)
    cli(node.root, "domains", "add", d, "--cert", "org.pem", "--key", "org.key", tree=tree)
    # the peer's DNS CERT record carries its leaf alone: the issuing CA is an anchor beside the root
    (node.root / "peer.pem").write_bytes(peer.domain.root.pem + peer.domain.intermediate.pem)
    cli(node.root, "anchors", "add", "--domain", d, "--direction", "both", "peer.pem", tree=tree)


def serve(node: Node, workers: int, tree: Path | None = None) -> Server:
    """``directgw serve`` for ``node``, from this tree or from another source ``tree``."""
    log = node.root / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "--log-level", "warning", "serve", "--config",
             str(node.root / "directgw.toml"), "--smtp", f"127.0.0.1:{node.smtp}",
             "--workers", str(workers)],
            stdout=subprocess.DEVNULL, stderr=sink, cwd=node.root, env=tree_env(tree),
        )
    wait_port(node.submission, process, log)
    wait_port(node.smtp, process, log)
    return Server(process, node.smtp)


# --------------------------------------------------------------------------- the EHRs


async def _reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3]), line


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the bench's self-signed certificate
    return context


async def _login(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """One EHR connection: STARTTLS and AUTH PLAIN, before the clock starts (the argon2 check,
    tens of milliseconds of CPU by design, is paid once per connection, not per message)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 26)
    await _reply(reader)
    for command in (b"EHLO ehr.a.test", b"STARTTLS"):
        writer.write(command + b"\r\n")
        await _reply(reader)
    await writer.start_tls(_client_tls())
    writer.write(b"EHLO ehr.a.test\r\n")
    await _reply(reader)
    token = base64.b64encode(f"\0{ACCOUNT}\0{PASSWORD}".encode()).decode()
    writer.write(f"AUTH PLAIN {token}\r\n".encode())
    code, line = await _reply(reader)
    if code != 235:
        raise SystemExit(f"AUTH refused: {line!r}")
    return reader, writer


class _Submitter(asyncio.Protocol):
    """One EHR connection's submissions, after its login: MAIL, RCPT, DATA and the message, each
    sent once the reply before it came (an EHR's client does not pipeline), read as a protocol
    over the session's TLS transport: the load, kept light (stream readers cost about 0.1 ms of
    CPU a message more, on the cores the two gateways share)."""

    def __init__(self, transport: asyncio.Transport, queue: list[tuple[str, bytes]], started: dict[str, float],
                 accepted: list[float], failures: list[bytes], done: asyncio.Future[None],
                 pace: tuple[float, float] | None = None) -> None:
        self.transport, self.queue, self.started = transport, queue, started
        self.accepted, self.failures, self.done = accepted, failures, done
        self.buffer = b""
        self.step = 0
        self.start = 0.0
        self.data = b""
        self.commands = (f"MAIL FROM:<{EHR}>\r\n".encode(), f"RCPT TO:<{PATIENT}>\r\n".encode(), b"DATA\r\n")
        # (when the first submission is due, perf_counter time; the seconds between two)
        self.due, self.interval = pace if pace else (0.0, 0.0)

    def next(self) -> None:
        if not self.queue:
            self.transport.write(b"QUIT\r\n")
            self.transport.close()
            if not self.done.done():
                self.done.set_result(None)
            return
        wait = self.due - time.perf_counter()
        if self.interval and wait > 0:
            asyncio.get_running_loop().call_later(wait, self.begin)
        else:
            self.begin()

    def begin(self) -> None:
        if not self.queue:  # another client took the last one meanwhile
            self.next()
            return
        message_id, self.data = self.queue.pop()
        # Paced, a submission's times count from when it was due, not from when a client that
        # fell behind got to it: a slow gateway cannot hide its delay in the load's schedule.
        self.start = self.started[message_id] = self.due if self.interval else time.perf_counter()
        self.due += self.interval
        self.step = 0
        self.transport.write(self.commands[0])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
            if line[3:4] != b"-":
                self.reply(line)

    def reply(self, line: bytes) -> None:
        self.step += 1
        if self.step < 3:
            self.transport.write(self.commands[self.step])
        elif self.step == 3:
            self.transport.write(self.data.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        else:
            if line.startswith(b"250"):
                self.accepted.append(time.perf_counter() - self.start)
            else:
                self.failures.append(line)
            self.next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"the submission session closed: {exc}"))


async def _ehr(session: tuple[asyncio.StreamReader, asyncio.StreamWriter], queue: list[tuple[str, bytes]],
               started: dict[str, float], accepted: list[float], failures: list[bytes],
               pace: tuple[float, float] | None) -> None:
    _, writer = session
    transport = writer.transport
    assert isinstance(transport, asyncio.Transport)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    submitter = _Submitter(transport, queue, started, accepted, failures, done, pace)
    transport.set_protocol(submitter)
    submitter.next()
    await done


@dataclass
class Run:
    label: str
    count: int
    rate: float
    """Submissions whose processed MDN reached the inbox, per second from the first MAIL to the last MDN."""
    submit_p50: float
    submit_p99: float
    mdn_p50: float
    mdn_p99: float
    missing: int
    refused: int
    cpu_a: float
    cpu_b: float
    cpu_load: float
    """This process: the EHR clients and the EHR's inbox (the load, not the system measured)."""
    delivered_rate: float = float("nan")
    """Submissions sealed and handed to B (A's job recorded sent after B's 250), per second from
    the first MAIL to the last such hand-over: the rate issue 9's target names. ``rate`` runs on
    to the last MDN, so it also holds the tail of MDN work left when the last message is sent."""


def submit(label: str, port: int, inbox: Inbox, messages: list[tuple[str, bytes]], clients: int,
           a: Server | None = None, b: Server | None = None, a_db: Path | None = None,
           offered: float | None = None) -> Run:
    """``messages`` submitted by ``clients`` EHR connections, each as fast as its replies come, or
    with ``offered`` (submissions a second in all) spread evenly over them, on a schedule."""
    started: dict[str, float] = {}
    accepted: list[float] = []
    failures: list[bytes] = []

    async def go() -> tuple[tuple[float, float, float], float, datetime]:
        sessions = await asyncio.gather(*(_login(port) for _ in range(clients)))
        cpu = (a.cpu_seconds() if a else 0.0, b.cpu_seconds() if b else 0.0, time.process_time())
        wall, begin = datetime.now(UTC), time.perf_counter()
        queue = list(messages)
        paces = [(begin + i / offered, clients / offered) if offered else None for i in range(clients)]
        await asyncio.gather(*(_ehr(session, queue, started, accepted, failures, pace)
                               for session, pace in zip(sessions, paces, strict=True)))
        return cpu, begin, wall

    cpu, begin, wall_begin = asyncio.run(go())
    ids = [m for m, _ in messages]
    inbox.wait(ids, 10 + WAIT_PER_MESSAGE * len(ids))
    with inbox.lock:
        arrived = {i: inbox.processed[i] for i in ids if i in inbox.processed}
    last = max(arrived.values(), default=begin)
    latencies = [arrived[i] - started[i] for i in arrived]
    done = len(arrived)
    return Run(
        label, len(ids), done / (last - begin) if done else 0.0,
        percentile(accepted, 0.5) * 1000, percentile(accepted, 0.99) * 1000,
        percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000,
        len(ids) - done, len(failures),
        (a.cpu_seconds() - cpu[0]) / max(1, done) * 1000 if a else float("nan"),
        (b.cpu_seconds() - cpu[1]) / max(1, done) * 1000 if b else float("nan"),
        (time.process_time() - cpu[2]) / max(1, done) * 1000,
        _delivered_rate(a_db, wall_begin, len(ids)) if a_db else float("nan"),
    )


def _delivered_rate(db: Path, begin: datetime, count: int) -> float:
    """Sealed and delivered per second: A's mail jobs queued since ``begin`` and recorded sent
    (B answered 250 to the sealed message), over the time to the last of them."""
    import sqlite3

    since = begin.replace(tzinfo=None).isoformat(sep=" ")
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT updated_at FROM outbound WHERE kind = 'mail' AND state = 'sent' "
                            "AND created_at >= ?", (since,)).fetchall()
    if len(rows) < count:
        return float("nan")
    last = max(datetime.fromisoformat(r[0]) for r in rows)
    return count / (last - begin.replace(tzinfo=None)).total_seconds()


# --------------------------------------------------------------------------- the run


@contextlib.contextmanager
def paused(*servers: Server) -> Iterator[None]:
    """``servers`` stopped (SIGSTOP) for the block: while one gateway is measured, nothing idle
    (the others' outbound loops polling every ``POLL`` seconds) runs beside it."""
    pids = [pid for server in servers for pid in server.pids()]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


@dataclass
class Results:
    warm_up: Run
    outbound: list[Run]
    """One per round, ``clients`` EHR clients."""
    inbound: list[float]
    """The inbound gateway's rate, one per round."""
    single: Run
    paced: Run
    """``clients`` EHR clients offering half the rate the rounds reached, on a schedule."""


def run(count: int, clients: int, keep: bool, workers: int, rounds: int) -> Results:
    """Gateways A and B and the inbound gateway started once; then, ``rounds`` times, the inbound
    rate and the outbound run measured in turn (forwards, then backwards: ABBA...)."""
    scratch = Path(tempfile.mkdtemp(prefix="directgw-bench-out-"))
    inbox = Inbox()
    controller, inbox_port = start_inbox(inbox)
    a = Node(A, scratch / "a", free_port(), free_port(), free_port())
    b = Node(B, scratch / "b", free_port(), free_port(), free_port())
    warm_in = warm_count(clients)
    sealed_in = sealed(4_000, rounds * (warm_in + count), datetime.now(UTC))
    root_in = inbound_site(None)
    servers: list[Server] = []
    try:
        for node in (a, b):
            node.root.mkdir()
        configure(a, b, inbox_port)
        configure(b, a, None)
        (a.root / "password").write_text(PASSWORD + "\n")
        cli(a.root, "accounts", "add", ACCOUNT, "--domain", "a.test", "--password-file", "password")
        cli(b.root, "records", "create", "--name", "Pat", "--address", PATIENT)
        server_a, server_b = serve(a, workers), serve(b, 1)
        server_in = start_inbound_gateway(root_in, workers)
        servers += [server_a, server_b, server_in]
        with paused(server_in):
            warm = [plain(n) for n in range(2 * clients)]
            warm_up = submit("warm-up (discovery, TLS, caches)", a.submission, inbox, warm, clients)
        if warm_up.missing:
            raise SystemExit(f"warm-up: {warm_up.missing} MDNs never came back; logs in {a.root}, {b.root}:\n"
                             + (a.root / "serve.log").read_text()[-3000:] + (b.root / "serve.log").read_text()[-3000:])

        outbound: list[Run] = []
        inbound: list[float] = []

        def measure_inbound(round_: int) -> None:
            mine = sealed_in[round_ * (warm_in + count):(round_ + 1) * (warm_in + count)]
            with paused(server_a, server_b):
                inbound.append(measure("inbound", server_in, mine[:warm_in], mine[warm_in:], clients).rate)

        def measure_outbound(round_: int) -> None:
            first = 100 + round_ * count
            messages = [plain(n) for n in range(first, first + count)]
            with paused(server_in):
                outbound.append(submit(f"{clients} EHR clients", a.submission, inbox, messages, clients, server_a,
                                       server_b, a.root / "data" / "directgw.db"))

        for round_ in range(rounds):
            steps = (measure_inbound, measure_outbound) if round_ % 2 == 0 else (measure_outbound, measure_inbound)
            for step in steps:
                step(round_)
        with paused(server_in):
            half = sum(r.rate for r in outbound) / len(outbound) / 2
            offered = [plain(n) for n in range(50_000, 50_000 + max(40, count // 2))]
            paced = submit(f"{clients} EHR clients at {half:.0f}/s", a.submission, inbox, offered, clients,
                           server_a, server_b, offered=half)
            single = [plain(n) for n in range(100_000, 100_000 + max(20, count // 10))]
            last = submit("1 EHR client", a.submission, inbox, single, 1, server_a, server_b)
        return Results(warm_up, outbound, inbound, last, paced)
    finally:
        for server in servers:
            server.stop()
        controller.stop()
        shutil.rmtree(root_in, ignore_errors=True)
        if keep:
            print(f"sites kept (directgw messages show N --config {scratch}/a/directgw.toml): {scratch}",
                  file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300, help="per round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, help="rounds of inbound and outbound measured in turn (default 3; "
                        "1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer messages, one round")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes of A and of the inbound gateway it is compared with (default 1; "
                        "B, the peer, runs one)")
    parser.add_argument("--keep", action="store_true", help="keep both sites (databases, logs) to look at afterwards")
    args = parser.parse_args()
    count = 60 if args.quick else args.messages
    rounds = args.rounds or (1 if args.quick else 3)
    from gateway import logs

    logs.configure(json=True, level="warning")
    results = run(count, args.clients, args.keep, args.workers, rounds)
    loaded = mean_of(f"{args.clients} EHR clients" + (f", mean of {rounds}" if rounds > 1 else ""),
                     results.outbound, summed=("count", "missing", "refused"))
    rate_in = sum(results.inbound) / rounds
    print(f"\n{'':34} {'n':>5} {'per s':>7} {'250 p50':>8} {'250 p99':>8} {'MDN p50':>8} {'MDN p99':>8} "
          f"{'missing':>8} {'refused':>8} {'cpu A':>7} {'cpu B':>7} {'load':>6}")
    for r in (results.warm_up, loaded, results.paced, results.single):
        print(f"{r.label:34} {r.count:5d} {r.rate:7.1f} {r.submit_p50:8.1f} {r.submit_p99:8.1f} {r.mdn_p50:8.1f} "
              f"{r.mdn_p99:8.1f} {r.missing:8d} {r.refused:8d} {r.cpu_a:7.1f} {r.cpu_b:7.1f} {r.cpu_load:6.1f}")
    print("(times in ms from MAIL, paced: from when it was due; MDN = the processed MDN in the EHR's inbox; cpu = ms per\n"
          " message per gateway; load = this process's, the EHR clients and the EHR's inbox; 'at N/s': half the rate above,\n"
          " offered on a schedule)")
    workers = f"{args.workers} worker" + ("s" if args.workers > 1 else "")
    print(f"\ninbound (bench/smtp_inbound.py, sqlite, {workers}, {args.clients} clients): {rate_in:.1f} msgs/s")
    if rounds > 1:
        print("by round (inbound, then outbound, in the order measured: forwards, then backwards):")
        for i, (inbound, outbound) in enumerate(zip(results.inbound, results.outbound, strict=True)):
            print(f"  round {i + 1}: inbound {inbound:.1f}/s, sealed and delivered {outbound.delivered_rate:.1f}/s "
                  f"= {outbound.delivered_rate / inbound:.2f}x, through to processed {outbound.rate:.1f}/s "
                  f"= {outbound.rate / inbound:.2f}x")
    print(f"outbound / inbound = {loaded.rate / rate_in:.2f}x (target >= 0.4x); "
          f"p50 submission to processed = {results.single.mdn_p50:.1f} ms from one client, "
          f"{results.paced.mdn_p50:.1f} ms at half the rate, {loaded.mdn_p50:.1f} ms driven past it (target < 100 ms)")
    print(f"sealed and delivered to B: {loaded.delivered_rate:.1f}/s = {loaded.delivered_rate / rate_in:.2f}x the "
          f"inbound rate (to the last hand-over to B; the ratio above runs on to the last processed MDN)")


if __name__ == "__main__":
    main()
