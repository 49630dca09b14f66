"""OpenLDAP slapd serving a test directory on 127.0.0.1 (anonymous read).

    ldap = SlapdServer(tmp_path, [person("bob@b.test", [cert_der])]).start()
    ... ldap.port ...
    ldap.stop()

The directory is one mdb database under ``suffix`` (its root entry and
``ou=people`` are added), with the core, cosine and inetOrgPerson schemas:
the attributes Direct names (RFC 2798 userSMIMECertificate, RFC 4523
userCertificate;binary). It is loaded offline with slapadd before slapd
starts; slapd daemonises, so it is stopped through its pid file.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from .common import free_port, require_server_binary, tcp_open, wait_until

DEFAULT_SUFFIX = "dc=test"
PORT_ATTEMPTS = 3


def _attr(name: str, value: bytes | str) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return f"{name}:: {base64.b64encode(raw).decode()}"


def person(
    mail: str,
    certs: Sequence[bytes] = (),
    *,
    uid: str | None = None,
    attribute: str = "userCertificate;binary",
    suffix: str = DEFAULT_SUFFIX,
) -> str:
    """An inetOrgPerson entry (LDIF) with ``mail`` and one certificate attribute per cert."""
    uid = uid or mail.replace("@", "-at-")
    lines = [
        f"dn: uid={uid},ou=people,{suffix}",
        "objectClass: inetOrgPerson",
        f"uid: {uid}",
        f"cn: {mail}",
        f"sn: {mail.partition('@')[0] or mail}",
        f"mail: {mail}",
        *(_attr(attribute, der) for der in certs),
    ]
    return "\n".join(lines) + "\n"


def base_entries(suffix: str = DEFAULT_SUFFIX) -> str:
    dc = suffix.split(",")[0].partition("=")[2]
    return (
        f"dn: {suffix}\nobjectClass: dcObject\nobjectClass: organization\ndc: {dc}\no: directgw tests\n\n"
        f"dn: ou=people,{suffix}\nobjectClass: organizationalUnit\nou: people\n"
    )


class SlapdServer:
    def __init__(
        self,
        workdir: Path,
        entries: Iterable[str] = (),
        *,
        suffix: str = DEFAULT_SUFFIX,
        port: int | None = None,
    ) -> None:
        self.slapd = require_server_binary("slapd")
        self.slapadd = require_server_binary("slapadd")
        self.dir = Path(workdir)
        self.suffix = suffix
        self.entries = list(entries)
        self._auto_port = port is None
        self.port = port or free_port()
        self._pid: int | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    def _write(self) -> Path:
        db = self.dir / "db"
        db.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "slapd.conf"
        conf.write_text(
            "include /etc/ldap/schema/core.schema\n"
            "include /etc/ldap/schema/cosine.schema\n"
            "include /etc/ldap/schema/inetorgperson.schema\n"
            f"pidfile {self.dir}/slapd.pid\n"
            f"argsfile {self.dir}/slapd.args\n"
            "modulepath /usr/lib/ldap\n"
            "moduleload back_mdb\n"
            "access to dn.base=\"\" by * read\n"
            "database mdb\n"
            "maxsize 104857600\n"
            f"suffix \"{self.suffix}\"\n"
            f"directory {db}\n"
            "access to * by * read\n"
        )
        ldif = self.dir / "data.ldif"
        ldif.write_text("\n".join([base_entries(self.suffix), *self.entries]))
        return conf

    def start(self) -> SlapdServer:
        conf = self._write()
        load = subprocess.run(
            [self.slapadd, "-f", str(conf), "-l", str(self.dir / "data.ldif")], capture_output=True, text=True
        )
        if load.returncode != 0:
            raise RuntimeError(f"slapadd failed: {load.stderr}")
        # a free port found beforehand can be taken by another process before slapd binds it
        for attempt in range(PORT_ATTEMPTS if self._auto_port else 1):
            try:
                return self._run(conf)
            except RuntimeError:
                if attempt == PORT_ATTEMPTS - 1 or not self._auto_port:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _run(self, conf: Path) -> SlapdServer:
        run = subprocess.run(
            [self.slapd, "-f", str(conf), "-h", self.url], capture_output=True, text=True
        )
        if run.returncode != 0:
            raise RuntimeError(f"slapd failed to start: {run.stderr}")
        wait_until(lambda: (self.dir / "slapd.pid").exists() and tcp_open(self.port), f"slapd on port {self.port}")
        self._pid = int((self.dir / "slapd.pid").read_text().split()[0])
        return self

    def stop(self) -> None:
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> SlapdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
