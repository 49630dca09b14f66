"""The systemd units: the gateway's hardening is what docs/deploy.md promises,
and systemd itself accepts the files (systemd-analyze verify, where present)."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

import pytest

from tests.prerequisites import require_peer

UNITS = Path(__file__).resolve().parent.parent / "systemd"


def _service(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("User", "directgw"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("StateDirectory", "directgw"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("KillSignal", "SIGTERM"),
        ("PrivateTmp", "yes"),
    ],
)
def test_the_gateway_runs_as_its_own_user_with_one_capability(key, value):
    assert _service("directgw.service")["Service"][key] == value


def test_the_gateway_unit_runs_serve():
    assert " serve " in _service("directgw.service")["Service"]["ExecStart"]


@pytest.mark.parametrize("unit", sorted(p.name for p in UNITS.glob("*.service")))
def test_systemd_accepts_the_unit(unit, tmp_path):
    analyze = require_peer("systemd-analyze")
    text = (UNITS / unit).read_text()
    # the installed path does not exist here: point ExecStart at a program that does
    lines = [("ExecStart=/bin/true" if line.startswith("ExecStart=") else line) for line in text.splitlines()]
    (tmp_path / unit).write_text("\n".join(lines) + "\n")
    done = subprocess.run([analyze, "verify", str(tmp_path / unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in done.stderr.splitlines() if unit in line and "timer" not in line]
    assert not problems, done.stderr
