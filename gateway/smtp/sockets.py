"""Listening sockets for the SMTP edge, shared by worker processes through SO_REUSEPORT."""

from __future__ import annotations

import socket


def listening_socket(
    host: str, port: int, *, reuse_port: bool = True, backlog: int = 128
) -> socket.socket:
    """A bound, listening, non-blocking TCP socket for ``start_smtp(sock=...)``.

    With ``reuse_port`` (SO_REUSEPORT), several processes each bind their own
    socket to one port and the kernel spreads connections among them: how
    ``serve --workers N`` uses N cores (``cryptography`` holds the GIL).
    Resolves ``host``, so call it before serving, not on a busy loop."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
