"""``directgw messages list/show`` as an administrator reads the delivery monitor: each
outbound recipient's state (queued, sent, processed, dispatched, failed, timed out) with
its reason, and whether the message as a whole was delivered."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from gateway.cli.main import main
from gateway.config import load_config
from gateway.store import open_store
from tests.test_monitor import T0, TIMEOUT, Gateway


@pytest.fixture(name="site")
def site_fixture(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIRECTGW_CONFIG", raising=False)
    assert main(["init", "--domain", "hospital.test"]) == 0
    return tmp_path


async def _three_messages(config_path) -> dict[str, int]:
    """One delivered (processed came), one timed out, one still queued."""
    store = await open_store(load_config(config_path).storage_url)
    try:
        gw = Gateway(store)
        delivered = await gw.submit("<delivered@hospital.test>")
        await gw.settle("sent", T0 + timedelta(minutes=1))
        await gw.report(delivered, "processed", T0 + timedelta(minutes=2), message_id="<delivered@hospital.test>")
        silent = await gw.submit("<silent@hospital.test>")
        await gw.settle("sent", T0 + timedelta(minutes=1))
        await gw.monitor.sweep(store, T0 + TIMEOUT + timedelta(minutes=2))
        waiting = await gw.submit("<waiting@hospital.test>")
        return {"delivered": delivered, "timed-out": silent, "queued": waiting}
    finally:
        await store.close()


def _json(capsys, argv: list[str]):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_messages_show_each_recipients_state_and_the_delivery(site, capsys):
    ids = asyncio.run(_three_messages(site / "directgw.toml"))
    listed = {m["id"]: m for m in _json(capsys, ["messages", "list", "--direction", "out", "--json"])}
    assert {name: (listed[i]["delivery"], listed[i]["recipients"][0]["state"]) for name, i in ids.items()} == {
        "delivered": ("delivered", "processed"), "timed-out": ("failed", "timed-out"), "queued": ("pending", "queued"),
    }
    assert listed[ids["timed-out"]]["recipients"][0]["reason"] == "timeout"

    assert main(["messages", "list", "--direction", "out"]) == 0
    text = capsys.readouterr().out
    assert "patient@b.test: timed out (timeout)" in text and "patient@b.test: processed" in text

    assert main(["messages", "show", str(ids["timed-out"])]) == 0
    shown = capsys.readouterr().out
    assert "delivery: failed" in shown
    assert "to patient@b.test: timed out - timeout (sent " in shown and "none came." in shown

    assert main(["messages", "show", str(ids["queued"])]) == 0
    shown = capsys.readouterr().out
    assert "to patient@b.test: queued" in shown
    assert "mail to patient@b.test: queued, no attempt yet" in shown

    detail = _json(capsys, ["messages", "show", str(ids["delivered"]), "--json"])
    [row] = detail["tracking"]
    assert (detail["delivery"], row["state"], row["final_outcome"]) == ("delivered", "processed", "delivered")
    assert row["processed_at"] and row["final_notice_at"]
    assert any(a["event"] == "monitor-processed" for a in detail["audit"])
