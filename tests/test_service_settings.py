"""What ``directgw serve`` reads from [smtp], [http] and [serve]: defaults that
work after ``init``, every limit a key, and one clear error per wrong value."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.outbound.settings import outbound_settings
from gateway.service.app import relative_paths
from gateway.service.settings import ServeSettingsError, parse_listen, serve_settings
from gateway.smtp.limits import SmtpLimits

BASE = Path("/etc/directgw")


def test_defaults():
    settings = serve_settings({}, BASE)
    assert str(settings.smtp) == "0.0.0.0:25" and str(settings.http) == "127.0.0.1:8025"
    assert settings.limits == SmtpLimits() and settings.tls_certificate is None


def test_every_limit_is_a_key_and_paths_are_relative_to_the_configuration():
    settings = serve_settings(
        {"smtp": {"max_recipients": 7, "data_timeout": 12, "tls_certificate": "tls/c.pem", "tls_key": "tls/k.pem",
                  "listen": "[::1]:2525"}, "http": {"listen": "off"}, "serve": {"node": "gw2"}},
        BASE,
    )
    assert settings.limits.max_recipients == 7 and settings.limits.data_timeout == 12.0
    assert settings.tls_certificate == BASE / "tls/c.pem" and settings.tls_key == BASE / "tls/k.pem"
    assert str(settings.smtp) == "[::1]:2525" and settings.http is None and settings.node == "gw2"


@pytest.mark.parametrize(
    ("tables", "key"),
    [
        ({"smtp": {"max_recipent": 5}}, "[smtp] max_recipent"),
        ({"smtp": {"max_recipients": 0}}, "[smtp] max_recipients"),
        ({"smtp": {"max_recipients": True}}, "[smtp] max_recipients"),
        ({"smtp": {"tls_certificate": "c.pem"}}, "[smtp] tls_certificate"),
        ({"smtp": {"listen": "localhost"}}, "[smtp] listen"),
        ({"http": {"listen": "1.2.3.4:99999"}}, "[http] listen"),
        ({"serve": {"node": ""}}, "[serve] node"),
        ({"serve": {"bundle_check": -1}}, "[serve] bundle_check"),
    ],
    ids=["unknown-key", "zero", "bool", "cert-without-key", "no-port", "port-range", "empty-node", "negative"],
)
def test_a_wrong_value_names_its_key(tables, key):
    with pytest.raises(ServeSettingsError) as err:
        serve_settings(tables, BASE)
    assert err.value.key == key


def test_listen_forms():
    assert (parse_listen("k", "127.0.0.1:25").host, parse_listen("k", "[::]:25").host) == ("127.0.0.1", "::")


def test_the_outbound_ca_file_is_relative_to_the_configuration():
    out = relative_paths(outbound_settings({"tls_ca_file": "ca.pem"}), BASE)
    assert out.tls_ca_file == BASE / "ca.pem"
    absolute = relative_paths(outbound_settings({"tls_ca_file": "/srv/ca.pem"}), BASE)
    assert absolute.tls_ca_file == Path("/srv/ca.pem")
