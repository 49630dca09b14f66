"""Who may open one more SMTP session: a global and a per-client count.

Pure bookkeeping (no sockets, no clock): the server asks ``admit`` when a
connection arrives and calls ``release`` when it ends; a refused client gets
421 4.7.0 as its greeting (RFC 5321 3.1, 4.2.3) and the connection closes.
"""

from __future__ import annotations

import enum


class Refusal(enum.Enum):
    TOO_MANY_SESSIONS = "too many sessions"
    TOO_MANY_FROM_CLIENT = "too many sessions from your address"


class Admission:
    def __init__(self, max_sessions: int, max_per_client: int) -> None:
        self._max_sessions = max_sessions
        self._max_per_client = max_per_client
        self._per_client: dict[str, int] = {}
        self._active = 0

    @property
    def active(self) -> int:
        return self._active

    def admit(self, client: str) -> Refusal | None:
        """Count one more session from ``client``, or say why not (and count nothing)."""
        if self._active >= self._max_sessions:
            return Refusal.TOO_MANY_SESSIONS
        held = self._per_client.get(client, 0)
        if held >= self._max_per_client:
            return Refusal.TOO_MANY_FROM_CLIENT
        self._per_client[client] = held + 1
        self._active += 1
        return None

    def release(self, client: str) -> None:
        held = self._per_client.get(client, 0)
        if held <= 0:
            raise ValueError(f"release without admit for {client!r}")
        if held == 1:
            # Drop the entry: the table must not grow with every address ever seen.
            del self._per_client[client]
        else:
            self._per_client[client] = held - 1
        self._active -= 1
