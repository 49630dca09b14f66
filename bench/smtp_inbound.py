"""Receiving over SMTP: messages per second and time to 250, against a bare sink, in one run.

    .venv/bin/python bench/smtp_inbound.py [--messages 600] [--clients 20] [--postgres] [--quick]

What runs, all on loopback, each server in its own process:
- the ceiling: a bare aiosmtpd server that only stores each message's bytes
  durably (SQLite WAL, synchronous=FULL, one commit per message); with
  ``--postgres`` the same sink storing into PostgreSQL too (one INSERT per
  message on a pool of connections, committed), the ceiling for the gateway
  on PostgreSQL, whose ratio is given against both sinks;
- ``directgw serve`` with 1 and with 2 workers, on SQLite (and PostgreSQL with
  ``--postgres``), receiving pre-sealed 10 KB Direct messages for one record.
Concurrent clients (asyncio, one connection each, MAIL/RCPT/DATA per message;
20 by default, the sessions shared/PERFORMANCE.md's reference figures were
measured with) measure the rate and the time from MAIL to the 250, and their
own CPU per message ("load cpu": this process, to show the load is not what
limits). With fewer, two workers share them and each sees half the
concurrency: at 8 clients a worker's batches (one commit, one loop pass for
several messages) are about half as large, its CPU per message higher, and
the two-worker figure measures the clients more than the gateway
(docs/receive.md, "Eighth round"). Server CPU per message
comes from /proc (the server's process tree; for PostgreSQL also the database
server's own processes, "db cpu", when it runs on this machine: it shares the
same cores), and is split by measuring the
pipeline's parts in this process on the same messages: MIME and CMS
(``open_inbound`` less the crypto floor), crypto floor, trust, storage; the
SMTP layer is what the server spent beyond them. Last, one 25 MB message and
the server's peak resident memory growth.

Every server is measured in each of ``--rounds`` rounds (2 by default),
forwards in the first and backwards in the second, and each figure is the
mean over the rounds: the machine's speed drifts over the minutes a run
takes, and a ratio of means taken in this order cancels a steady drift
(one round, as in ``--quick``, leaves the later servers at its mercy).

Targets (issue 8): 1 worker >= 0.5x the bare sink's rate; 2 workers >= 1.1x
one worker; single-connection p50 time to 250 <= 5 ms; the 25 MB message's
peak memory growth < 4x its size. The machines are shared and noisy: compare
ratios from one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import devpki
from gateway.core import Opened, SealOptions, open_inbound, seal_outbound

PATIENT = "patient@b.test"
A, B = devpki.hisp("a.test"), devpki.hisp("b.test")
POSTGRES_ADMIN = os.environ.get("DIRECTGW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ccda(size: int) -> bytes:
    entry = b'  <entry><observation classCode="OBS" moodCode="EVN"><code code="8480-6"/></observation></entry>\r\n'
    head = b'<?xml version="1.0"?>\r\n<ClinicalDocument xmlns="urn:hl7-org:v3">\r\n'
    return head + entry * max(1, (size - len(head)) // len(entry)) + b"</ClinicalDocument>\r\n"


def plain(size: int, n: int) -> bytes:
    encoded = base64.encodebytes(ccda(size)).replace(b"\n", b"\r\n")
    return (
        f"From: alice@a.test\r\nTo: {PATIENT}\r\nSubject: CCD {n}\r\nMessage-ID: <bench-{n}-{uuid.uuid4().hex}@a.test>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n'
        "--x\r\nContent-Type: text/plain\r\n\r\nSummary attached.\r\n"
        "--x\r\nContent-Type: text/xml; name=ccd.xml\r\nContent-Transfer-Encoding: base64\r\n"
        "Content-Disposition: attachment; filename=ccd.xml\r\n\r\n"
    ).encode() + encoded + b"--x--\r\n"


def sealed(size: int, count: int, at: datetime) -> list[bytes]:
    options = SealOptions(at=at, chain=(A.intermediate.ref,))
    out = []
    for n in range(count):
        s = seal_outbound(plain(size, n), A.org.pair, [B.org.ref], options)
        out.append(s.message)  # type: ignore[union-attr]
    return out


# --------------------------------------------------------------------------- servers


def tree_env(tree: Path | None) -> dict[str, str] | None:
    """The environment of a server from another source ``tree`` (its modules ahead of the installed
    ones), or None for this one. Servers run from their site's directory, never the project's:
    ``python -m`` puts the working directory first on the path."""
    return None if tree is None else {**os.environ, "PYTHONPATH": str(tree)}


def cli(site: Path, *argv: str, tree: Path | None = None) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway.cli.main", *argv, "--config", str(site / "directgw.toml")],
                          capture_output=True, text=True, cwd=site, timeout=120, env=tree_env(tree))
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: {done.stderr}")


def postgres_url() -> str:
    """A fresh database for one measurement, as a SQLAlchemy URL (``drop_postgres`` removes it)."""
    import asyncpg

    name = f"directgw_bench_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    asyncio.run(create())
    return POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"


def drop_postgres(url: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN)
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        await conn.close()

    asyncio.run(drop())


def site(storage_url: str | None, tree: Path | None = None) -> Path:
    root = Path(tempfile.mkdtemp(prefix="directgw-bench-"))
    dead = free_port()
    storage = f'\n[storage]\nurl = "{storage_url}"\n' if storage_url else ""
    (root / "directgw.toml").write_text(
        f'data_dir = "data"\n{storage}\n[discovery]\nnameservers = ["127.0.0.1:{dead}"]\nldap = false\n\n'
        f'[routes]\n"a.test" = "127.0.0.1:{dead}"\n\n[outbound]\npoll = 30\n'
    )
    (root / "data").mkdir()
    (root / "b.pem").write_bytes(B.org.pem)
    (root / "b.key").write_bytes(B.org.key_pem())
    os.chmod(root / "b.key", 0o600)
    (root / "a-root.pem").write_bytes(A.root.pem)
    cli(root, "domains", "add", "b.test", "--cert", "b.pem", "--key", "b.key", tree=tree)
    cli(root, "anchors", "add", "--domain", "b.test", "--direction", "incoming", "a-root.pem", tree=tree)
    cli(root, "records", "create", "--name", "Pat", "--address", PATIENT, tree=tree)
    return root


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int

    def pids(self) -> list[int]:
        """The server process and its children (workers)."""
        pids = [self.process.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.process.pid:
                    pids.append(int(entry.name))
        return pids

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def memory(self, key: str) -> int:
        """VmRSS or VmHWM of the first process doing the work, in bytes."""
        pids = self.pids()
        pid = pids[-1] if len(pids) > 1 else pids[0]
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wait_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {process.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("server did not start")


def start_gateway(root: Path, workers: int, tree: Path | None = None) -> Server:
    port = free_port()
    log = root / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "--log-level", "warning", "serve", "--config",
             str(root / "directgw.toml"), "--smtp", f"127.0.0.1:{port}", "--http", "off", "--workers", str(workers)],
            stdout=subprocess.DEVNULL, stderr=sink, cwd=root, env=tree_env(tree),
        )
    wait_port(port, process, log)
    time.sleep(1.0 if workers > 1 else 0.2)  # every worker listening
    return Server(process, port)


def start_sink(directory: Path, postgres: str | None = None) -> Server:
    """The bare sink storing into SQLite in ``directory``, or into the PostgreSQL database ``postgres``."""
    port = free_port()
    log = directory / "sink.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, __file__, "--sink", str(port), postgres or str(directory / "sink.db")],
                                   stdout=subprocess.DEVNULL, stderr=out)
    wait_port(port, process, log)
    return Server(process, port)


def run_sink(port: int, db: str) -> None:
    """The ceiling: aiosmtpd storing each message's bytes durably, nothing else
    (``db``: a SQLite file, or a PostgreSQL URL)."""
    from aiosmtpd.controller import Controller

    handler = _postgres_sink(db) if db.startswith("postgresql") else _sqlite_sink(db)
    controller = Controller(handler, hostname="127.0.0.1", port=port, data_size_limit=64 * 1024 * 1024)
    controller.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


def _sqlite_sink(db: str) -> object:
    import sqlite3

    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS m (id INTEGER PRIMARY KEY, data BLOB)")

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # aiosmtpd's hook name
            conn.execute("INSERT INTO m (data) VALUES (?)", (envelope.original_content,))
            return "250 2.0.0 stored"

    return Handler()


def _postgres_sink(url: str) -> object:
    """One INSERT per message, autocommitted (a durable commit: synchronous_commit is on), on a
    pool made in aiosmtpd's own event loop at the first message."""
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)

    class Handler:
        pool: asyncpg.Pool | None = None
        ready = asyncio.Lock()  # the first sessions arrive together: one of them makes the pool and table

        async def handle_DATA(self, server, session, envelope):  # aiosmtpd's hook name
            if self.pool is None:
                async with self.ready:
                    if self.pool is None:
                        pool = await asyncpg.create_pool(dsn, min_size=16, max_size=16)
                        await pool.execute("CREATE TABLE IF NOT EXISTS m (id BIGSERIAL PRIMARY KEY, data BYTEA)")
                        self.pool = pool
            await self.pool.execute("INSERT INTO m (data) VALUES ($1)", envelope.original_content)
            return "250 2.0.0 stored"

    return Handler()


# --------------------------------------------------------------------------- load


async def _reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def _client(port: int, queue: list[bytes], latencies: list[float], failures: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 26)
    await _reply(reader)
    writer.write(b"EHLO bench.a.test\r\n")
    await _reply(reader)
    while queue:
        data = queue.pop()
        start = time.perf_counter()
        writer.write(b"MAIL FROM:<alice@a.test>\r\n")
        await _reply(reader)
        writer.write(f"RCPT TO:<{PATIENT}>\r\n".encode())
        await _reply(reader)
        writer.write(b"DATA\r\n")
        await _reply(reader)
        stuffed = data.replace(b"\r\n.", b"\r\n..")
        writer.write(stuffed + (b"" if stuffed.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        code = await _reply(reader)
        if code == 250:
            latencies.append(time.perf_counter() - start)
        else:
            failures.append(code)
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()


async def load(port: int, messages: list[bytes], clients: int) -> tuple[float, list[float], list[int]]:
    queue = list(messages)
    latencies: list[float] = []
    failures: list[int] = []
    start = time.perf_counter()
    await asyncio.gather(*(_client(port, queue, latencies, failures) for _ in range(clients)))
    return len(latencies) / (time.perf_counter() - start), latencies, failures


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


@dataclass
class Row:
    label: str
    rate: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float
    failures: int
    db_cpu_ms: float = 0.0
    """The PostgreSQL server's own CPU per message (its processes on this machine; 0 for SQLite)."""
    load_cpu_ms: float = 0.0
    """The clients' CPU per message (this process)."""


def postgres_cpu_seconds() -> float:
    """CPU time of the PostgreSQL server's processes on this machine (the postmaster and its backends)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


SINGLE = 100
"""Messages one connection sends for its latency."""


def warm_count(clients: int) -> int:
    return max(clients * 2, 20)


def needed(count: int, clients: int) -> int:
    """Sealed messages one server's round takes (``portions``)."""
    return warm_count(clients) + count + warm_count(1) + SINGLE


def portions(messages: list[bytes], count: int, clients: int) -> tuple[list[bytes], list[bytes], list[bytes], list[bytes]]:
    """Disjoint runs of ``messages``: warm-up and measured for ``clients``, warm-up and measured for one
    connection. Disjoint, because the gateway keeps a message once per record: one sent again
    (a warm-up's, measured a second time) would take the cheaper duplicate path."""
    w, w1 = warm_count(clients), warm_count(1)
    if len(messages) < needed(count, clients):
        raise ValueError(f"{needed(count, clients)} messages needed, {len(messages)} given")
    return (messages[:w], messages[w:w + count], messages[w + count:w + count + w1],
            messages[w + count + w1:w + count + w1 + SINGLE])


def measure(label: str, server: Server, warm: list[bytes], messages: list[bytes], clients: int) -> Row:
    asyncio.run(load(server.port, warm, clients))  # warm up
    cpu0, db0, load0 = server.cpu_seconds(), postgres_cpu_seconds(), time.process_time()
    rate, latencies, failures = asyncio.run(load(server.port, messages, clients))
    done = max(1, len(latencies))
    cpu = (server.cpu_seconds() - cpu0) / done
    db = (postgres_cpu_seconds() - db0) / done if "postgres" in label else 0.0
    return Row(label, rate, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000, cpu * 1000,
               len(failures), db * 1000, (time.process_time() - load0) / done * 1000)


# --------------------------------------------------------------------------- CPU split


def cpu_split(messages: list[bytes], at: datetime) -> dict[str, float]:
    """Milliseconds of CPU per message for the pipeline's parts, in this process."""
    from bench.core import crypto_floor

    opened = open_inbound(messages[0], [B.org.pair], at=at)
    assert isinstance(opened, Opened), opened
    ciphertext = len(base64.b64decode(messages[0].split(b"\r\n\r\n", 1)[1]))
    floor = crypto_floor(B.org, A.org, ciphertext, len(opened.content))
    start = time.process_time()
    for _ in range(50):
        floor()
    floor_ms = (time.process_time() - start) / 50 * 1000
    parts = asyncio.run(pipeline_parts(messages[:200], at))
    return {"crypto": floor_ms, "mime+cms": parts["open"] - floor_ms, "trust": parts["trust"],
            "storage": parts["storage"], "pipeline": parts["total"]}


async def pipeline_parts(messages: list[bytes], at: datetime) -> dict[str, float]:
    """The receiving pipeline in this process on a fresh SQLite store: CPU ms per message,
    in total, in open_inbound and in the trust check (warm, as under load); storage is the rest."""
    from anchors.source import StaticAnchors
    from gateway.domains import LocalDomains
    from gateway.receive import ReceivingPipeline
    from gateway.smtp.interface import Received, SessionInfo
    from gateway.store import open_store
    from records_bridge.store import RecordStore
    from trust import OfflineFetcher, TrustService

    directory = Path(tempfile.mkdtemp(prefix="directgw-split-"))
    store = await open_store(f"sqlite+aiosqlite:///{directory / 'split.db'}")
    try:
        domains = LocalDomains(store)
        await domains.create("b.test", at=at)
        await domains.add_key("b.test", B.org.pair, at=at)
        records = RecordStore(store)
        await records.create_record("Pat", (PATIENT,), at=at)
        trust = TrustService(StaticAnchors((A.root.ref,)), OfflineFetcher())
        pipeline = ReceivingPipeline(store, domains, records, trust, None, clock=lambda: at)
        session = SessionInfo("127.0.0.1", "bench", False)
        await pipeline.message(Received(session, "alice@a.test", (PATIENT,), messages[-1]))  # warm
        start = time.process_time()
        for data in messages[:-1]:
            await pipeline.message(Received(session, "alice@a.test", (PATIENT,), data))
        total = (time.process_time() - start) / (len(messages) - 1)
        start = time.process_time()
        opened = [open_inbound(m, [B.org.pair], at=at) for m in messages[:-1]]
        open_cpu = (time.process_time() - start) / len(opened)
        start = time.process_time()
        for o in opened:
            await trust.check_inbound(o, recipient=PATIENT, at=at)  # type: ignore[arg-type]
        trust_cpu = (time.process_time() - start) / len(opened)
    finally:
        await store.close()
        shutil.rmtree(directory, ignore_errors=True)
    return {"total": total * 1000, "open": open_cpu * 1000, "trust": trust_cpu * 1000,
            "storage": (total - open_cpu - trust_cpu) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL at $DIRECTGW_TEST_POSTGRES")
    parser.add_argument("--rounds", type=int, help="rounds over every server, in turn forwards and backwards "
                        "(default 2; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer messages, one round, no 25 MB message")
    parser.add_argument("--sink", nargs=2, metavar=("PORT", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink(int(args.sink[0]), args.sink[1])
        return
    count = 150 if args.quick else args.messages
    rounds = args.rounds or (1 if args.quick else 2)
    at = datetime.now(UTC)
    from gateway import logs

    logs.configure(json=True, level="warning")  # the in-process pipeline's info lines would be measured too
    messages = sealed(4_000, needed(count, args.clients), at)  # a 4 KB C-CDA seals to a ~10 KB message
    print(f"{len(messages)} sealed messages of {len(messages[0]) / 1000:.1f} KB", file=sys.stderr)
    servers = [sink_rows(None)] + ([sink_rows(postgres_url)] if args.postgres else [])
    databases = ["sqlite"] + (["postgresql"] if args.postgres else [])
    servers += [gateway_rows(db, workers) for db in databases for workers in (1, 2)]
    measured: dict[str, list[Row]] = {}
    for round_ in range(rounds):
        # forwards, then backwards: the machine's speed drifts over minutes, and a
        # ratio of means taken in this order cancels a steady drift
        for measure_server in servers if round_ % 2 == 0 else servers[::-1]:
            for row in measure_server(messages, count, args.clients):
                measured.setdefault(row.label, []).append(row)
    order = [SINK, SINK_SINGLE, PG_SINK]
    order += [label for db in databases for label in (_label(db, 1), _label(db, 1, single=True), _label(db, 2))]
    rows = [mean_of(label, measured[label]) for label in order if label in measured]
    results = {r.label: r for r in rows}
    print(f"\n{'':33} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/msg':>11} {'load cpu':>9} {'refused':>8}"
          f" {'db cpu':>7}")
    for r in rows:
        print(f"{r.label:33} {r.rate:8.1f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.cpu_ms:11.2f} {r.load_cpu_ms:9.2f}"
              f" {r.failures:8d}" + (f" {r.db_cpu_ms:7.2f}" if r.db_cpu_ms else ""))
    if rounds > 1:
        print(f"(each the mean of {rounds} rounds; per round, msgs/s: "
              + "; ".join(f"{label} {', '.join(f'{x.rate:.0f}' for x in runs)}" for label, runs in measured.items()
                          if "1 connection" not in label) + ")")
    sink = results[SINK].rate
    print(f"\nratios (one run{f', means of {rounds} rounds' if rounds > 1 else ''}):")
    for db in databases:
        one, two, single = results[_label(db, 1)], results[_label(db, 2)], results[_label(db, 1, single=True)]
        print(f"  {db}: 1 worker / bare sink = {one.rate / sink:.2f}x (target >= 0.5x); "
              f"2 workers / 1 worker = {two.rate / one.rate:.2f}x (target >= 1.1x); "
              f"1-connection p50 = {single.p50_ms:.2f} ms (target <= 5 ms)")
        if db == "postgresql":
            print(f"  postgresql: 1 worker / bare sink into postgresql = {one.rate / results[PG_SINK].rate:.2f}x "
                  f"(the same ceiling storing where the gateway does)")
    split = cpu_split(messages, at)
    smtp_layer = results[_label("sqlite", 1)].cpu_ms - split["pipeline"]
    # the split stores one message per commit, the server several (group commit): when that
    # saves more than the SMTP layer costs, the difference says nothing and is not printed
    rest = f"SMTP layer and the rest {smtp_layer:.2f}" if smtp_layer >= 0 else (
        "SMTP layer and the rest not measurable (the server's group commit stored for less than the split's "
        "one commit per message)")
    print("\nCPU per message, ms (sqlite, 1 worker): "
          + ", ".join(f"{k} {v:.2f}" for k, v in split.items() if k != "pipeline")
          + f", {rest} (server total {results[_label('sqlite', 1)].cpu_ms:.2f})")
    if not args.quick:
        big_message(at)


SINK = "bare aiosmtpd sink"
SINK_SINGLE = "bare sink, 1 connection"
PG_SINK = "bare sink into postgresql"


def _label(db: str, workers: int, *, single: bool = False) -> str:
    if single:
        return f"directgw {db}, 1 connection"
    return f"directgw {db}, {workers} worker{'s' if workers > 1 else ''}"


Measure = Callable[[list[bytes], int, int], list[Row]]


def sink_rows(postgres: Callable[[], str] | None) -> Measure:
    """One round of a bare sink: storing into SQLite (and one connection's latency), or into PostgreSQL."""

    def run(messages: list[bytes], count: int, clients: int) -> list[Row]:
        scratch = Path(tempfile.mkdtemp(prefix="directgw-sink-"))
        url = postgres() if postgres else None
        sink = start_sink(scratch, url)
        try:
            warm, timed, warm_single, single = portions(messages, count, clients)
            if url:
                return [measure(PG_SINK, sink, warm, timed, clients)]
            return [measure(SINK, sink, warm, timed, clients),
                    measure(SINK_SINGLE, sink, warm_single, single, 1)]
        finally:
            sink.stop()
            if url:
                drop_postgres(url)
            shutil.rmtree(scratch, ignore_errors=True)

    return run


def gateway_rows(db: str, workers: int) -> Measure:
    """One round of ``directgw serve`` with ``workers`` on ``db`` (and, with one, one connection's latency)."""

    def run(messages: list[bytes], count: int, clients: int) -> list[Row]:
        url = postgres_url() if db == "postgresql" else None
        root = site(url)
        server = start_gateway(root, workers)
        try:
            warm, timed, warm_single, single = portions(messages, count, clients)
            rows = [measure(_label(db, workers), server, warm, timed, clients)]
            if workers == 1:
                rows.append(measure(_label(db, 1, single=True), server, warm_single, single, 1))
            return rows
        finally:
            server.stop()
            shutil.rmtree(root, ignore_errors=True)
            if url:
                drop_postgres(url)

    return run


R = TypeVar("R")


def mean_of(label: str, runs: list[R], *, summed: tuple[str, ...] = ("failures",)) -> R:
    """One row of the same kind for several rounds' rows: ``summed`` fields (counts) added up,
    every other number the mean, ``label`` its label."""
    n = len(runs)
    values: dict[str, Any] = {"label": label}
    for f in dataclasses.fields(runs[0]):  # type: ignore[arg-type]  # Row or smtp_outbound.Run
        if f.name != "label":
            total = sum(getattr(r, f.name) for r in runs)
            values[f.name] = total if f.name in summed else total / n
    return dataclasses.replace(runs[0], **values)  # type: ignore[type-var]


def big_message(at: datetime) -> None:
    size = 25 * 1024 * 1024
    message = sealed(size * 3 // 4, 1, at)[0]  # base64 and CMS bring the raw message to ~25 MB
    root = site(None)
    server = start_gateway(root, 1)
    try:
        before = server.memory("VmRSS")
        _rate, latencies, failures = asyncio.run(load(server.port, [message], 1))
        peak = server.memory("VmHWM")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    growth = peak - before
    print(f"\n{len(message) / 1e6:.1f} MB message: {'250' if latencies else failures} in "
          f"{(latencies or [float('nan')])[0]:.2f} s; peak memory growth {growth / 1e6:.0f} MB = "
          f"{growth / len(message):.2f}x its size (target < 4x)")


if __name__ == "__main__":
    main()
