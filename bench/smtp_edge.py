"""The SMTP edge alone: server CPU per message and rate, against a bare aiosmtpd sink, in one run.

    .venv/bin/python bench/smtp_edge.py [--messages 3000] [--clients 20] [--size 10240]
                                        [--old DIR] [--uvloop]

Each server runs in its own process behind a pipeline that answers at once
(recipient: None, message: 250), so what is measured is the protocol layer:
greeting, EHLO, MAIL, RCPT, DATA, the final dot, QUIT, with a new connection
per message from ``--clients`` concurrent asyncio clients (as smtp-source
does). Server CPU comes from /proc (user + system of the server process).

``--old DIR`` also runs an earlier edge kept as a package ``oldsmtp`` in DIR
(a copy of gateway/smtp/ from before a change), so a before/after comparison
is one run. ``--uvloop`` runs the edge a second time on uvloop (if installed).
The machine is shared: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = r"""
import asyncio, sys
kind, extra = sys.argv[1], sys.argv[2]
sys.path.insert(0, {root!r})

class Pipeline:
    async def recipient(self, session, mail_from, address):
        return None
    async def message(self, received):
        return STORED

async def main():
    global STORED
    if kind == "sink":
        from aiosmtpd.smtp import SMTP
        class Handler:
            async def handle_DATA(self, server, session, envelope):
                return "250 OK"
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Handler(), hostname="sink.test"), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    else:
        if kind == "old":
            sys.path.insert(0, extra)
            from oldsmtp.interface import SmtpReply
            from oldsmtp.server import start_smtp
        else:
            from gateway.smtp.interface import SmtpReply
            from gateway.smtp.server import start_smtp
        STORED = SmtpReply(250, "2.0.0", "Stored")
        server = await start_smtp(Pipeline(), host="127.0.0.1", port=0, hostname="edge.test")
        port = server.port
    print("PORT", port, flush=True)
    await asyncio.Event().wait()

if len(sys.argv) > 3 and sys.argv[3] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def _client(port: int, count: list[int], wire: bytes) -> None:
    while count[0] > 0:
        count[0] -= 1
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _reply(reader) == 220
        for command in (b"EHLO client.test\r\n", b"MAIL FROM:<alice@a.test>\r\n",
                        b"RCPT TO:<bob@b.test>\r\n", b"DATA\r\n"):
            writer.write(command)
            code = await _reply(reader)
            assert code in (250, 354), code
        writer.write(wire)
        assert await _reply(reader) == 250
        writer.write(b"QUIT\r\n")
        assert await _reply(reader) == 221
        writer.close()
        await writer.wait_closed()


async def load(port: int, messages: int, clients: int, wire: bytes) -> float:
    count = [messages]
    started = time.perf_counter()
    await asyncio.gather(*(_client(port, count, wire) for _ in range(clients)))
    return time.perf_counter() - started


def measure(label: str, argv: list[str], messages: int, clients: int, wire: bytes) -> tuple[float, float]:
    server = subprocess.Popen([sys.executable, "-c", SERVER.format(root=str(ROOT)), *argv],
                              stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        while not line.startswith(b"PORT "):
            line = server.stdout.readline()
        port = int(line.split()[1])
        asyncio.run(load(port, min(200, messages), clients, wire))  # warm up
        before = cpu_seconds(server.pid)
        elapsed = asyncio.run(load(port, messages, clients, wire))
        cpu = cpu_seconds(server.pid) - before
    finally:
        server.terminate()
        server.wait()
    rate, per_message = messages / elapsed, 1000 * cpu / messages
    print(f"{label:28} {rate:8.0f} msgs/s {per_message:8.3f} ms CPU/msg", flush=True)
    return rate, per_message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--size", type=int, default=10 * 1024)
    parser.add_argument("--old", help="a directory holding an earlier edge as the package oldsmtp")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    line = b"QUJD" * 19 + b"\r\n"
    wire = b"Subject: bench\r\n\r\n" + line * (args.size // len(line)) + b".\r\n"
    rows = {"bare aiosmtpd sink": measure("bare aiosmtpd sink", ["sink", ""], args.messages, args.clients, wire)}
    if args.old:
        rows["old edge"] = measure("old edge", ["old", args.old], args.messages, args.clients, wire)
    rows["edge"] = measure("edge", ["new", ""], args.messages, args.clients, wire)
    if args.uvloop:
        rows["edge on uvloop"] = measure("edge on uvloop", ["new", "", "uvloop"], args.messages, args.clients, wire)
    sink_cpu = rows["bare aiosmtpd sink"][1]
    for label, (_, per_message) in rows.items():
        print(f"{label:28} CPU per message {per_message / sink_cpu:5.2f}x the sink's")


if __name__ == "__main__":
    main()
