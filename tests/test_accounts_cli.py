"""``directgw accounts`` through ``main``, as an administrator runs it: an account for a
local domain with a generated or chosen password, listed, re-passworded, removed;
what is stored is an argon2id hash, never the password."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select

from gateway.accounts import verify_password
from gateway.accounts.schema import accounts
from gateway.cli.main import main
from gateway.config import load_config
from gateway.store import open_store

PASSWORD = "a long password for the EHR"


@pytest.fixture(name="site")
def site_fixture(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIRECTGW_CONFIG", raising=False)
    assert main(["init", "--domain", "hospital.test"]) == 0
    return tmp_path


def _hashes(site) -> dict[str, str]:
    async def read():
        store = await open_store(load_config(site / "directgw.toml").storage_url)
        try:
            async with store.engine.connect() as conn:
                rows = (await conn.execute(select(accounts.c.name, accounts.c.password_hash))).all()
            return {r.name: r.password_hash for r in rows}
        finally:
            await store.close()

    return asyncio.run(read())


def test_add_with_a_password_file_list_passwd_remove(site, capsys):
    (site / "pw").write_text(PASSWORD + "\n")
    capsys.readouterr()
    assert main(["accounts", "add", "EHR-North", "--domain", "hospital.test", "--password-file", "pw"]) == 0
    out = capsys.readouterr().out
    assert "ehr-north" in out and PASSWORD not in out and "password" not in out.split("\n", 1)[1]
    stored = _hashes(site)["ehr-north"]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert verify_password(stored, PASSWORD.encode())

    assert main(["accounts", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["name"], listed["domain"]) == ("ehr-north", "hospital.test")
    assert "password_hash" not in listed

    assert main(["accounts", "passwd", "ehr-north"]) == 0
    generated = capsys.readouterr().out.rsplit(": ", 1)[1].strip()
    after = _hashes(site)["ehr-north"]
    assert after != stored and verify_password(after, generated.encode())
    assert not verify_password(after, PASSWORD.encode())

    assert main(["accounts", "remove", "ehr-north"]) == 0
    assert _hashes(site) == {}
    assert main(["accounts", "list"]) == 0
    assert "no accounts" in capsys.readouterr().out


def test_a_generated_password_is_printed_once_and_works(site, capsys):
    capsys.readouterr()
    assert main(["accounts", "add", "ehr", "--domain", "hospital.test"]) == 0
    out = capsys.readouterr().out
    password = out.rsplit(": ", 1)[1].strip()
    assert len(password) >= 32
    assert verify_password(_hashes(site)["ehr"], password.encode())
    assert main(["accounts", "list"]) == 0
    assert password not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["accounts", "add", "ehr", "--domain", "elsewhere.test"], 1, "not a local domain"),
        (["accounts", "add", "bad name", "--domain", "hospital.test"], 2, "not an account name"),
        (["accounts", "add", "ehr", "--domain", "not a domain"], 2, "not a domain name"),
        (["accounts", "add", "ehr", "--domain", "hospital.test", "--password-file", "short"], 1, "at least 15"),
        (["accounts", "add", "ehr", "--domain", "hospital.test", "--password-file", "missing"], 1, "cannot read"),
        (["accounts", "remove", "nobody"], 1, "no account named nobody"),
        (["accounts", "passwd", "nobody"], 1, "no account named nobody"),
    ],
    ids=["foreign-domain", "bad-name", "bad-domain", "short-password", "missing-file", "remove-unknown",
         "passwd-unknown"],
)
def test_refusals(site, capsys, argv, code, says):
    (site / "short").write_text("short\n")
    capsys.readouterr()
    assert main(argv) == code
    captured = capsys.readouterr()
    assert says in captured.err and "short\n" not in captured.err
    assert _hashes(site) == {}


def test_a_second_account_of_the_same_name_is_refused(site, capsys):
    assert main(["accounts", "add", "ehr", "--domain", "hospital.test"]) == 0
    capsys.readouterr()
    assert main(["accounts", "add", "EHR", "--domain", "hospital.test"]) == 1
    assert "already exists" in capsys.readouterr().err
