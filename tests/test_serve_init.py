"""``directgw init`` then ``directgw serve`` work as they are: the starter
configuration has [smtp] and [http], init makes a STARTTLS pair, and the
served gateway offers STARTTLS, answers /healthz and stops on SIGTERM with 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import smtplib
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace

import pytest

from gateway.config import load_config
from gateway.service.settings import serve_settings
from tests.test_serve_e2e import Served, _free_port

pytestmark = pytest.mark.slow


def _init(site) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway.cli.main", "init", "--domain", "b.test"],
                          cwd=site, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_init_then_serve_offers_starttls_and_health(tmp_path):
    _init(tmp_path)
    config = load_config(tmp_path / "directgw.toml")
    settings = serve_settings(config.tables, config.path.parent)
    assert str(settings.smtp) == "0.0.0.0:25" and str(settings.http) == "127.0.0.1:8025"
    assert settings.tls_key is not None and stat.S_IMODE(os.stat(settings.tls_key).st_mode) == 0o600
    smtp_port, http_port = _free_port(), _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "serve", "--smtp", f"127.0.0.1:{smtp_port}",
         "--http", f"127.0.0.1:{http_port}"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "SMTP on" in line:
            break
    served = Served(process)
    try:
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=20) as client:
            client.ehlo("a.test")
            assert client.has_extn("starttls") and client.has_extn("pipelining") and client.has_extn("size")
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # self-signed, opportunistic
            code, _ = client.starttls(context=context)
            assert code == 220
            client.ehlo("a.test")
            assert client.rcpt("nobody@elsewhere.test")[0] == 503  # no MAIL yet: the session still works
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=10) as response:
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        served.close()
    assert code == 0, served.log()


@pytest.mark.parametrize(("flags", "info_logged"), [
    ((), True),                               # a service logs what it does by default
    (("--log-level", "info"), True),
    (("--log-level", "warning"), False),      # asked for by name: warnings and worse only
])
def test_serve_log_level(tmp_path, flags, info_logged):
    _init(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", *flags, "serve", "--smtp", f"127.0.0.1:{_free_port()}",
         "--http", "off"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    served = Served(process)
    try:
        deadline = time.monotonic() + 60
        while not any("SMTP on" in line for line in served.lines) and time.monotonic() < deadline:
            assert process.poll() is None, served.log()
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        served.close()
    assert code == 0, served.log()
    events = [json.loads(line) for line in served.lines if line.startswith("{")]
    assert any(event["event"] == "serve.started" for event in events) is info_logged, served.log()
    assert all(event["level"] != "info" for event in events) is not info_logged


def _held() -> socket.socket:
    """A port some other program listens on."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    return held


@pytest.mark.parametrize("listener", ["SMTP", "submission", "HTTP"])
def test_serve_names_the_listener_whose_port_is_taken(tmp_path, listener):
    _init(tmp_path)
    with _held() as held:
        taken = held.getsockname()[1]
        ports = {name: taken if name == listener else _free_port() for name in ("SMTP", "submission", "HTTP")}
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", "serve", "--smtp", f"127.0.0.1:{ports['SMTP']}",
             "--submission", f"127.0.0.1:{ports['submission']}", "--http", f"127.0.0.1:{ports['HTTP']}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 1, done.stderr
    assert f"directgw serve: cannot listen for {listener} on 127.0.0.1:{taken}: " in done.stderr, done.stderr


async def test_a_listener_that_cannot_bind_leaves_nothing_running(tmp_path):
    from gateway.service.app import start_service
    from gateway.service.settings import CannotListen, Listen

    _init(tmp_path)
    config = load_config(tmp_path / "directgw.toml")
    smtp_port = _free_port()
    with _held() as held:
        taken = held.getsockname()[1]
        settings = replace(serve_settings(config.tables, config.path.parent), smtp=Listen("127.0.0.1", smtp_port),
                           http=Listen("127.0.0.1", taken))
        with pytest.raises(CannotListen) as raised:
            await start_service(config, settings)
    assert (raised.value.listener, raised.value.port) == ("HTTP", taken)
    # the SMTP listener that had started is closed again, and no loop of the service is left running
    with socket.socket() as again:
        again.bind(("127.0.0.1", smtp_port))
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
