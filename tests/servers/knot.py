"""Knot DNS (knotd) serving test zones on 127.0.0.1, UDP and TCP, one port.

    knot = KnotServer(tmp_path, {"b.test": ["bob IN CERT PKIX 0 0 <base64>"]}).start()
    ... knot.nameserver == "127.0.0.1:PORT" ...
    knot.stop()

Each zone gets an SOA (negative TTL 60 s), an NS ``ns.<zone>`` and an A
record for it; the given lines follow, relative to the zone's origin.
Knot limits UDP answers to 1232 bytes, so a 4096-bit certificate's CERT
answer comes back truncated and must be asked again over TCP (TOOLING.md).
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

from .common import free_port, require_server_binary, wait_until

ZONE_TTL = 300
PORT_ATTEMPTS = 3


def cert_line(owner: str, der: bytes, ttl: int = ZONE_TTL, cert_type: str = "PKIX") -> str:
    """A zone-file CERT line (RFC 4398 section 6: type, key tag 0, algorithm 0, base64)."""
    return f"{owner} {ttl} IN CERT {cert_type} 0 0 {base64.b64encode(der).decode()}"


def url_cert_line(owner: str, url: str, ttl: int = ZONE_TTL, cert_type: str = "URI") -> str:
    """A CERT record whose data is a URL (IPKIX 4, URI 253)."""
    return f"{owner} {ttl} IN CERT {cert_type} 0 0 {base64.b64encode(url.encode()).decode()}"


def srv_line(service: str, priority: int, weight: int, port: int, target: str, ttl: int = ZONE_TTL) -> str:
    return f"{service} {ttl} IN SRV {priority} {weight} {port} {target}"


class KnotServer:
    def __init__(self, workdir: Path, zones: Mapping[str, Iterable[str]], *, port: int | None = None) -> None:
        self.knotd = require_server_binary("knotd")
        self.knotc = require_server_binary("knotc")
        self.dir = Path(workdir)
        self.zones = {z.rstrip(".").lower(): list(lines) for z, lines in zones.items()}
        self._auto_port = port is None
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        zone_entries = []
        for zone, lines in self.zones.items():
            path = self.dir / f"{zone}.zone"
            head = [
                f"$ORIGIN {zone}.",
                f"$TTL {ZONE_TTL}",
                f"@ IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60",
                f"@ IN NS ns.{zone}.",
                "ns IN A 127.0.0.1",
            ]
            path.write_text("\n".join([*head, *lines]) + "\n")
            zone_entries.append(f"  - domain: {zone}\n    file: {path}\n    storage: {self.dir}")
        conf = self.dir / "knot.conf"
        conf.write_text(
            "server:\n"
            f"    listen: 127.0.0.1@{self.port}\n"
            f"    rundir: {self.dir}\n"
            "database:\n"
            f"    storage: {self.dir}\n"
            "log:\n"
            "  - target: stderr\n"
            "    any: warning\n"
            "zone:\n" + "\n".join(zone_entries) + "\n"
        )
        return conf

    def _answers(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"knotd exited with status {self._proc.returncode}")
        if b"cannot bind" in (self.dir / "knotd.log").read_bytes():
            raise RuntimeError(f"knotd cannot bind port {self.port}")  # it stays up, serving nothing
        zone = next(iter(self.zones))
        try:
            r = dns.query.udp(dns.message.make_query(zone, "SOA"), "127.0.0.1", port=self.port, timeout=0.3)
        except (dns.exception.DNSException, OSError):
            return False
        return r.rcode() == dns.rcode.NOERROR and bool(r.answer)

    def start(self) -> KnotServer:
        # a free port found beforehand can be taken by another process before knotd binds it
        for attempt in range(PORT_ATTEMPTS if self._auto_port else 1):
            try:
                return self._start()
            except RuntimeError:
                if attempt == PORT_ATTEMPTS - 1 or not self._auto_port:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self) -> KnotServer:
        conf = self._write()
        check = subprocess.run([self.knotc, "-c", str(conf), "conf-check"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"knot.conf rejected: {check.stderr or check.stdout}")
        self._log = open(self.dir / "knotd.log", "wb")  # noqa: SIM115 -- held for the server's life
        self._proc = subprocess.Popen([self.knotd, "-c", str(conf)], stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_until(self._answers, f"knotd on port {self.port}")
        except RuntimeError:
            self.stop()
            raise RuntimeError((self.dir / "knotd.log").read_text(errors="replace")) from None
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
            self._log.close()

    def __enter__(self) -> KnotServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
