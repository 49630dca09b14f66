"""``directgw records`` and ``directgw messages`` through ``main``, as an
administrator runs them: create a record for a local address, see what was
delivered into it, export it, and follow a message through its audit trail."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from gateway.cli.main import main
from gateway.config import load_config
from gateway.store import messaging, open_store
from records_bridge.store import RecordStore
from records_bridge.types import Attachment
from tests.pki import NOW, hisp
from tests.test_records_store import CCD, delivery

A = hisp("b.test")


@pytest.fixture(name="site")
def site_fixture(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIRECTGW_CONFIG", raising=False)
    (tmp_path / "org.pem").write_bytes(A.org.pem)
    (tmp_path / "org.key").write_bytes(A.org.key_pem())
    os.chmod(tmp_path / "org.key", 0o600)
    assert main(["init", "--domain", "b.test"]) == 0
    assert main(["domains", "add", "b.test", "--cert", "org.pem", "--key", "org.key"]) == 0
    return tmp_path


def _json(capsys, argv: list[str]):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


async def _deliver(config_path, address: str) -> None:
    store = await open_store(load_config(config_path).storage_url)
    try:
        records = RecordStore(store)
        record = await records.record_for_address(address)
        await records.deliver(record, delivery(attachments=(Attachment("text/xml", "../../ccd.xml", CCD),)))
        async with store.begin() as conn:
            message = (await conn.execute(messaging.messages.insert().values(
                direction="in", kind="message", received_at=NOW, mail_from="alice@a.test", sender="alice@a.test",
                message_id="<m1@a.test>", subject="Results", size=10, sha256="0" * 64, state="rejected",
                reason="chain", detail="not trusted", updated_at=NOW,
            ).returning(messaging.messages.c.id))).scalar_one()
            await conn.execute(messaging.audit.insert().values(at=NOW, message_id=message, event="rejected", reason="chain"))
    finally:
        await store.close()


def test_a_record_for_a_local_address_receives_and_exports(site, capsys):
    created = _json(capsys, ["records", "create", "--name", "Pat Patient", "--address", "Pat@b.test", "--json"])
    assert created["addresses"] == ["pat@b.test"]
    assert _json(capsys, ["records", "list", "--json"])[0]["name"] == "Pat Patient"
    asyncio.run(_deliver(site / "directgw.toml", "pat@b.test"))
    items = _json(capsys, ["records", "items", "pat@b.test", "--json"])
    assert [(i["type"], i["state"]) for i in items] == [("message", "unreviewed"), ("ccd", "unreviewed")]
    assert items[1]["sender"] == "alice@a.test" and items[1]["filename"] == "../../ccd.xml"
    assert main(["records", "export", str(created["id"]), "out"]) == 0
    written = sorted(p.name for p in (site / "out").iterdir())
    assert len(written) == 2 and all("/" not in n and not n.startswith(".") for n in written)
    assert any(n.endswith("ccd.xml") and (site / "out" / n).read_bytes() == CCD for n in written)


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["records", "create", "--name", "X", "--address", "x@elsewhere.test"], 1, "not in a local domain"),
        (["records", "create", "--name", "X", "--address", "not an address"], 2, "not an address"),
        (["records", "items", "99"], 1, "no record 99"),
        (["records", "items", "nobody@b.test"], 1, "no record has the address"),
        (["messages", "show", "42"], 1, "no message 42"),
        (["messages", "list", "--limit", "0"], 2, "positive"),
    ],
    ids=["foreign-domain", "malformed-address", "unknown-id", "unknown-address", "unknown-message", "bad-limit"],
)
def test_mistakes_are_one_line_with_the_convention_exit_code(site, capsys, argv, code, says):
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_message_can_be_followed_through_its_audit_trail(site, capsys):
    main(["records", "create", "--name", "Pat", "--address", "pat@b.test"])
    asyncio.run(_deliver(site / "directgw.toml", "pat@b.test"))
    listed = _json(capsys, ["messages", "list", "--direction", "in", "--status", "rejected", "--json"])
    assert [m["reason"] for m in listed] == ["chain"]
    shown = _json(capsys, ["messages", "show", str(listed[0]["id"]), "--json"])
    assert shown["message"]["state"] == "rejected" and [a["event"] for a in shown["audit"]] == ["rejected"]
    capsys.readouterr()
    assert main(["messages", "show", str(listed[0]["id"])]) == 0
    assert "rejected - chain" in capsys.readouterr().out
