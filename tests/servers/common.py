"""What the server fixtures share: binaries, free ports, waiting for readiness."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..prerequisites import require_peer

START_TIMEOUT_SECONDS = 15.0
"""knotd and slapd start in well under a second here; a loaded CI runner is slower."""


def require_server_binary(name: str) -> str:
    """The binary's path; skips (or fails under CI=true) when it is not installed (tests/prerequisites.py)."""
    return require_peer(name)


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 right now (DNS serves both).

    Taken below the kernel's ephemeral range: a port the kernel hands out for
    ``bind(0)`` is also what it hands any client socket, so between this check
    and the server's bind another test's connection could take it (CI once
    failed so). Each xdist worker draws from its own slice, in turn, so two
    workers, or two draws of one test, do not pick the same port.
    """
    for _ in range(200):
        port = next(_PORTS)
        if port is None:  # no room below the ephemeral range: the kernel's pick, as before
            return _kernel_port()
        if _free_for_both(port):
            return port
    raise RuntimeError("no free port on 127.0.0.1")


def _ports() -> Iterator[int | None]:
    low = _ephemeral_low()
    first = max(1024, low - 12_000)
    if low - first < 1000:
        while True:
            yield None
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % workers
    size = (low - first) // workers
    start = first + worker * size
    offset = random.randrange(size)
    while True:
        yield start + offset
        offset = (offset + 1) % size


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_PORTS = _ports()


def _free_for_both(port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", port))
            udp.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def _kernel_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
        if _free_for_both(port):
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
