"""What the server fixtures share: binaries, free ports, waiting for readiness."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from ..prerequisites import require_peer

START_TIMEOUT_SECONDS = 15.0
"""knotd and slapd start in well under a second here; a loaded CI runner is slower."""


def require_server_binary(name: str) -> str:
    """The binary's path; skips (or fails under CI=true) when it is not installed (tests/prerequisites.py)."""
    return require_peer(name)


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 right now (DNS serves both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port on 127.0.0.1")


def wait_until(ready: Callable[[], bool], what: str, timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready within {timeout} s")


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
