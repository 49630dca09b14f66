"""The configuration reference is one source of truth, and it is true.

``gateway.config_reference`` gathers the TOML block each settings module
documents itself with. These tests hold that file to the parsers: it parses
as one configuration, every parser accepts its table, every key a parser
knows is documented, the documented numbers are the parsers' defaults, and
the README carries the current copy."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from gateway import config_reference
from gateway.accounts.lockout import LOCKOUT_KEYS, LockoutPolicy
from gateway.discovery import settings as discovery_settings
from gateway.monitor import settings as monitor_settings
from gateway.outbound import settings as outbound_settings
from gateway.publish.settings import dns_settings
from gateway.service import settings as serve_settings
from gateway.smtp.limits import SmtpLimits
from records_bridge.web import settings as bridge_settings
from trust import settings as trust_settings

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def documented() -> dict:
    return tomllib.loads(config_reference.reference())


def test_every_module_documents_a_block():
    for module in config_reference.MODULES:
        assert tomllib.loads(config_reference.block(module)), module


def test_the_reference_is_accepted_by_every_parser(documented, tmp_path):
    token = tmp_path / documented["bridge"]["admin_token_file"]
    token.write_text("t" * 40)
    token.chmod(0o600)
    serve_settings.serve_settings(documented, tmp_path)
    outbound_settings.outbound_settings(documented["outbound"], documented["routes"], helo="gw.example")
    monitor_settings.monitor_settings(documented["domains"], documented["monitor"])
    discovery_settings.settings_from_mapping(documented["discovery"])
    dns_settings(documented["dns"])
    trust_settings.settings_from_mapping(documented["trust"])
    bridge_settings.bridge_settings(documented["bridge"], base=tmp_path, data_dir=tmp_path)


@pytest.mark.parametrize(
    ("table", "known"),
    [
        ("smtp", serve_settings._SMTP_KEYS),
        ("submission", serve_settings._SUBMISSION_KEYS),
        ("outbound", outbound_settings.KNOWN),
        ("monitor", monitor_settings.MONITOR_KEYS),
        ("discovery", discovery_settings.KNOWN),
        ("bridge", bridge_settings._KEYS),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_key_a_parser_knows_is_documented(documented, table, known):
    assert set(documented[table]) == set(known)


def test_every_domain_key_is_documented(documented):
    (domain,) = documented["domains"].values()
    assert set(domain) == monitor_settings.DOMAIN_KEYS


def _seconds(value) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def test_documented_numbers_are_the_defaults(documented):
    limits = SmtpLimits()
    for key, value in documented["smtp"].items():
        if hasattr(limits, key):
            assert value == getattr(limits, key), f"[smtp] {key}"
    out = outbound_settings.OutboundSettings()
    for key in ("lifetime", "first_retry", "max_retry", "connect_timeout", "command_timeout", "data_timeout",
                "lease", "batch", "poll", "mx_port"):
        assert _seconds(documented["outbound"][key]) == _seconds(getattr(out, key)), f"[outbound] {key}"
    assert documented["outbound"]["starttls"] == out.starttls.value
    assert documented["outbound"]["session_idle"] == outbound_settings.DEFAULT_SESSION_IDLE
    lockout = LockoutPolicy()
    assert len(LOCKOUT_KEYS) == 3
    assert documented["submission"]["max_auth_failures"] == lockout.max_failures
    assert _seconds(documented["submission"]["auth_failure_window"]) == _seconds(lockout.window)
    assert _seconds(documented["submission"]["auth_lockout"]) == _seconds(lockout.lock_for)
    (domain,) = documented["domains"].values()
    assert _seconds(domain["mdn_timeout"]) == _seconds(monitor_settings.DEFAULT_MDN_TIMEOUT)
    assert documented["monitor"]["sweep"] == monitor_settings.DEFAULT_SWEEP
    d = discovery_settings.DiscoverySettings(nameservers=())
    assert documented["discovery"]["dns_timeout"] == d.dns_timeout
    assert documented["discovery"]["ldap_timeout"] == d.ldap_timeout
    assert _seconds(documented["discovery"]["negative_ttl"]) == _seconds(d.negative_ttl)


def test_the_readme_carries_the_current_reference():
    text = README.read_text()
    start, end = text.index(config_reference.README_START), text.index(config_reference.README_END)
    current = text[start:end + len(config_reference.README_END)] + "\n"
    assert current == config_reference.markdown(), "run: directgw config-reference --markdown, and paste it"
