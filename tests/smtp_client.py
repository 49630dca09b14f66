"""A raw SMTP client for the edge's tests: bytes exactly as written, replies as read.

smtplib corrects what a hostile client would not (it dot-stuffs, turns bare
LF into CRLF, waits for each reply); these helpers write what the test says.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

WAIT = 10.0  # seconds before a test gives up on the server


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def enhanced(self) -> str:
        """The RFC 3463 status of the last line ('' when it has none)."""
        first = self.lines[-1].split(" ", 1)[0]
        return first if first[:1].isdigit() and "." in first else ""


class RawSmtp:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls, port: int, host: str = "127.0.0.1", *, local: str | None = None
    ) -> RawSmtp:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(local, 0) if local else None), WAIT
        )
        return cls(reader, writer)

    @classmethod
    async def session(cls, port: int, helo: str = "client.test") -> RawSmtp:
        """Connected, greeted and past EHLO."""
        client = await cls.connect(port)
        assert (await client.reply()).code == 220
        assert (await client.command(f"EHLO {helo}")).code == 250
        return client

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> Reply:
        """One reply, all its lines ('250-...' continues, '250 ...' ends)."""
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), WAIT)
            if not raw:
                raise ConnectionError(f"closed after {lines!r}")
            line = raw.decode("ascii").rstrip("\r\n")
            lines.append(line[4:])
            if line[3:4] != "-":
                return Reply(int(line[:3]), tuple(lines))

    async def command(self, line: str) -> Reply:
        await self.send(line.encode("ascii") + b"\r\n")
        return await self.reply()

    async def read_to_end(self) -> bytes:
        """Everything until the server closes the connection (fails the test if it does not)."""
        return await asyncio.wait_for(self.reader.read(), WAIT)

    async def close(self) -> None:
        self.writer.close()
        # The server may have closed first (a 421): nothing left to say.
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def stuff(message: bytes) -> bytes:
    """The client's side of RFC 5321 4.5.2: a dot doubled at each line start, then the final dot."""
    body = message.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"
