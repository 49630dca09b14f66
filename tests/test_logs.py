"""The log configuration, run in a child process (it is process-wide and, for a service,
fixed at first use): JSON lines on stderr at the level asked for, with the context bound
through module-level loggers, whether they are made at every call (the CLI) or once (a
service)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import structlog
    from gateway import logs

    logs.configure(json=False, level="debug")  # the CLI's first configuration, replaced
    logs.configure(json=True, level="{level}", service={service})
    log = structlog.get_logger("gateway.example")
    for n in range(3):
        log.debug("example.debug", n=n)
        log.bind(peer="192.0.2.1").warning("example.warning", n=n)
""")


def _lines(level: str, service: bool) -> list[dict[str, object]]:
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(level=level, service=service)],
                          capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in done.stderr.splitlines()]


@pytest.mark.parametrize("service", [False, True], ids=["cli", "service"])
@pytest.mark.parametrize(("level", "events"), [("warning", ["example.warning"] * 3),
                                               ("debug", ["example.debug", "example.warning"] * 3)])
def test_a_service_logs_json_lines_at_its_level_with_bound_context(service, level, events):
    lines = _lines(level, service)
    assert [line["event"] for line in lines] == events
    assert all(line["peer"] == "192.0.2.1" for line in lines if line["event"] == "example.warning")
    assert [line["n"] for line in lines if line["event"] == "example.warning"] == [0, 1, 2]
