"""The two HISPs' data directories: configuration, keys, anchors, records, accounts.

Everything is set up through the same ``directgw`` commands an administrator
would type (run as subprocesses), so the demo shows the real procedure and
exercises it.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .pki import CLINIC, DOCTOR, HOSPITAL, PHR, DemoPki, write_pair

PATIENT = f"jane@{PHR}"
PATIENT_LOGIN = "jane.doe@example.com"
PATIENT_PASSWORD = "demo-patient-password"
EHR_ACCOUNT, EHR_PASSWORD = "springfield-ehr", "demo-ehr-password"
OUTSIDER_ACCOUNT, OUTSIDER_PASSWORD = "clinic-ehr", "demo-clinic-password"
NO_CERT_DOMAIN = "lab.demo"
"""A zone the PHR's DNS answers for but where nobody published a certificate."""

MDN_TIMEOUT = 60
"""Seconds the hospital waits for MDNs (Direct's default is an hour; the demo's
story is over long before either)."""


class SetupError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Site:
    name: str
    domain: str
    root: Path
    smtp: int = field(default_factory=free_port)
    dns: int = field(default_factory=free_port)
    submission: int | None = None
    bridge: int | None = None

    @property
    def config(self) -> Path:
        return self.root / "directgw.toml"

    def cli(self, *argv: str) -> str:
        """One ``directgw`` command against this site; its output, or SetupError with its message."""
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", *argv, "--config", str(self.config)],
            capture_output=True, text=True, cwd=self.root, timeout=120,
        )
        if done.returncode != 0:
            raise SetupError(f"{self.name}: directgw {' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout


def _common(site: Site, peer: Site, tls: tuple[Path, Path], zones: list[str], routes: dict[str, int]) -> str:
    route_lines = "\n".join(f'"{d}" = "127.0.0.1:{port}"' for d, port in routes.items())
    zone_list = ", ".join(f'"{z}"' for z in zones)
    return f"""# directgw demo: {site.name} ({site.domain}). Throw-away: made by `directgw demo`.
data_dir = "data"

[smtp]
listen = "127.0.0.1:{site.smtp}"
hostname = "mx.{site.domain}"
tls_certificate = "{tls[0]}"
tls_key = "{tls[1]}"

[http]
listen = "off"

[dns]
enabled = true
listen = "127.0.0.1:{site.dns}"
zones = [{zone_list}]

[discovery]
nameservers = ["127.0.0.1:{peer.dns}"]
ldap = false

[routes]
{route_lines}

[outbound]
poll = 0.2
first_retry = 1
max_retry = 5
lifetime = 600
connect_timeout = 5
command_timeout = 10
data_timeout = 20

[monitor]
sweep = 1
"""


def prepare(directory: Path, pki: DemoPki, tls: tuple[Path, Path], ehr_inbox: int) -> tuple[Site, Site]:
    """Both sites, configured and loaded; neither is running yet."""
    hospital = Site("Springfield General Hospital's HISP", HOSPITAL, directory / "hospital", submission=free_port())
    phr = Site("the personal health record service's HISP", PHR, directory / "phr", bridge=free_port())
    for site in (hospital, phr):
        (site.root / "data").mkdir(parents=True)
        (site.root / "community.pem").write_bytes(pki.anchors)

    hospital.config.write_text(
        _common(hospital, phr, tls, [HOSPITAL, CLINIC], {PHR: phr.smtp, NO_CERT_DOMAIN: phr.smtp})
        + f"""
[submission]
listen = "127.0.0.1:{hospital.submission}"

[domains."{HOSPITAL}"]
provider_smtp = "127.0.0.1:{ehr_inbox}"
mdn_timeout = {MDN_TIMEOUT}

[domains."{CLINIC}"]
provider_smtp = "127.0.0.1:{ehr_inbox}"
mdn_timeout = {MDN_TIMEOUT}
"""
    )
    phr.config.write_text(
        _common(phr, hospital, tls, [PHR, NO_CERT_DOMAIN], {HOSPITAL: hospital.smtp, CLINIC: hospital.smtp})
        + f"""
[bridge]
listen = "127.0.0.1:{phr.bridge}"
base_url = "http://127.0.0.1:{phr.bridge}"
cookie_secure = false
"""
    )

    write_pair(hospital.root, "hospital", pki.hospital)
    write_pair(hospital.root, "doctor", pki.doctor)
    write_pair(hospital.root, "clinic", pki.clinic)
    hospital.cli("domains", "add", HOSPITAL, "--cert", "hospital.pem", "--key", "hospital.key")
    hospital.cli("domains", "add-address", DOCTOR, "--cert", "doctor.pem", "--key", "doctor.key")
    hospital.cli("domains", "add", CLINIC, "--cert", "clinic.pem", "--key", "clinic.key")
    for domain in (HOSPITAL, CLINIC):
        hospital.cli("anchors", "add", "--domain", domain, "--direction", "both", "community.pem")
    (hospital.root / "ehr.password").write_text(EHR_PASSWORD + "\n")
    (hospital.root / "clinic.password").write_text(OUTSIDER_PASSWORD + "\n")
    hospital.cli("accounts", "add", EHR_ACCOUNT, "--domain", HOSPITAL, "--password-file", "ehr.password")
    hospital.cli("accounts", "add", OUTSIDER_ACCOUNT, "--domain", CLINIC, "--password-file", "clinic.password")

    write_pair(phr.root, "phr", pki.phr)
    phr.cli("domains", "add", PHR, "--cert", "phr.pem", "--key", "phr.key")
    phr.cli("anchors", "add", "--domain", PHR, "--direction", "both", "community.pem")
    phr.cli("records", "create", "--name", "Jane Doe", "--address", PATIENT)
    (phr.root / "jane.password").write_text(PATIENT_PASSWORD + "\n")
    phr.cli("people", "add", PATIENT_LOGIN, "--password-file", "jane.password", "--record", PATIENT)
    return hospital, phr
