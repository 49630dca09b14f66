"""``[domains."D"]`` (provider_smtp, mdn_timeout) and ``[monitor]`` (sweep): defaults, every key,
one named error per wrong value; nothing is resolved when the configuration is read."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.monitor.settings import (
    DEFAULT_MDN_TIMEOUT,
    DEFAULT_SWEEP,
    MonitorSettingsError,
    monitor_settings,
)
from gateway.outbound.settings import StaticRoute


def test_defaults_without_any_table():
    settings = monitor_settings({})
    assert settings.sweep == DEFAULT_SWEEP and settings.provider_routes == {}
    assert settings.mdn_timeout("dr@hospital.example") == DEFAULT_MDN_TIMEOUT == timedelta(hours=1)
    assert settings.provider_route("hospital.example") is None


def test_a_domain_with_a_provider_route_and_its_own_timeout():
    settings = monitor_settings(
        {"Hospital.Example.": {"provider_smtp": "mail.hospital.example:2525", "mdn_timeout": 90},
         "clinic.example": {"mdn_timeout": 7200}},
        {"sweep": 2},
    )
    assert settings.provider_route("hospital.example") == StaticRoute("mail.hospital.example", 2525)
    assert settings.provider_routes == {"hospital.example": StaticRoute("mail.hospital.example", 2525)}
    assert settings.mdn_timeout("dr@hospital.example") == timedelta(seconds=90)
    assert settings.mdn_timeout("dr@clinic.example") == timedelta(hours=2)
    assert settings.provider_route("clinic.example") is None and settings.sweep == 2.0


def test_a_host_name_is_kept_as_written_not_resolved():
    route = monitor_settings({"h.example": {"provider_smtp": "no-such-host.invalid"}}).provider_route("h.example")
    assert route == StaticRoute("no-such-host.invalid", 25)


@pytest.mark.parametrize(
    ("domains", "monitor", "key"),
    [
        ({"h.example": {"provider_smtp": "host:0"}}, None, '[domains."h.example"] provider_smtp'),
        ({"h.example": {"provider_smtp": "host:port"}}, None, '[domains."h.example"] provider_smtp'),
        ({"h.example": {"provider_smtp": 25}}, None, '[domains."h.example"] provider_smtp'),
        ({"h.example": {"mdn_timeout": 0}}, None, '[domains."h.example"] mdn_timeout'),
        ({"h.example": {"mdn_timeout": "1h"}}, None, '[domains."h.example"] mdn_timeout'),
        ({"h.example": {"mdn_timeout": True}}, None, '[domains."h.example"] mdn_timeout'),
        ({"h.example": {"mdn_timeout": 30 * 86400}}, None, '[domains."h.example"] mdn_timeout'),
        ({"h.example": {"provider": "x:25"}}, None, '[domains."h.example"] provider'),
        ({"h.example": "x:25"}, None, '[domains."h.example"]'),
        ({"a@b": {}}, None, '[domains."a@b"]'),
        ({}, {"sweep": -1}, "[monitor] sweep"),
        ({}, {"interval": 5}, "[monitor] interval"),
    ],
    ids=["port-zero", "port-not-a-number", "route-not-a-string", "timeout-zero", "timeout-text", "timeout-bool",
         "timeout-a-month", "unknown-domain-key", "domain-not-a-table", "address-not-domain", "sweep-negative",
         "unknown-monitor-key"],
)
def test_each_wrong_value_is_named(domains, monitor, key):
    with pytest.raises(MonitorSettingsError) as caught:
        monitor_settings(domains, monitor)
    assert caught.value.key == key
