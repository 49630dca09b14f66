"""Following a running ``directgw serve`` through its JSON log lines.

Each gateway writes one JSON object per line on stderr (structlog). A thread
reads them into the event loop, where the story waits for the line that marks
the step it is telling; every line is also kept in ``serve.log`` beside the
gateway's data, for anyone who wants to read the whole of it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Event = dict[str, Any]


class Gateway:
    """One ``directgw serve`` process and what it has logged so far."""

    def __init__(self, name: str, config: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.events: list[Event] = []
        self._changed = asyncio.Condition()
        self._loop = loop
        self._log = (config.parent / "serve.log").open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "--log-json", "--log-level", "info", "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            cwd=config.parent,
        )
        self._reader = threading.Thread(target=self._read, name=f"log-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._log.write(line)
            self._log.flush()
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "text", "text": line.rstrip()}
            if not isinstance(event, dict):
                continue
            event["_seen"] = time.monotonic()  # when it happened, give or take a pipe's delay
            asyncio.run_coroutine_threadsafe(self._add(event), self._loop)
        asyncio.run_coroutine_threadsafe(self._add({"event": "exited", "code": self.process.wait()}), self._loop)

    async def _add(self, event: Event) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    async def wait_for(self, wanted: Callable[[Event], bool], timeout: float, *, after: int = 0) -> Event | None:
        """The first event from index ``after`` on that ``wanted`` picks, or None at the timeout
        (or when the process exits first)."""
        async def first() -> Event | None:
            async with self._changed:
                while True:
                    for event in self.events[after:]:
                        if wanted(event):
                            return event
                        if event.get("event") == "exited":
                            return None
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(first(), timeout)
        except TimeoutError:
            return None

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            code = self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(5)
        self._log.close()
        return code
