"""The bridge's administration commands through ``main``, as an administrator runs them:
``clients add|list|remove``, ``people add``, and the bridge running alone (``directgw
bridge``) or inside ``serve`` on ``[bridge] listen``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime

import aiohttp
import pytest

from gateway.cli.main import main
from gateway.config import load_config
from gateway.service.settings import serve_settings
from gateway.store import open_store
from records_bridge.access import Role, role
from records_bridge.people import PersonStore
from records_bridge.store import RecordStore
from records_bridge.web.context import BridgeContext
from records_bridge.web.server import start_bridge
from records_bridge.web.settings import settings_from_config
from tests.bridge_fixtures import basic, free_port
from tests.storage_fixtures import store_url_fixture  # noqa: F401 -- fixture

PASSWORD = "a long enough password"


@pytest.fixture(name="site")
async def site_fixture(store_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIRECTGW_CONFIG", raising=False)
    assert await asyncio.to_thread(main, ["init", "--domain", "b.test", "--storage-url", store_url]) == 0
    return tmp_path


async def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, argv)
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_clients_add_prints_the_secret_once_and_it_works_at_the_token_endpoint(site, capsys):
    code, out, _ = await _run(capsys, ["clients", "add", "Clinic EHR", "--redirect-uri", "https://ehr.example/cb",
                                       "--scopes", "records.*.r", "packages", "--connect", "--json"])
    assert code == 0
    made = json.loads(out)
    assert made["type"] == "confidential" and made["client_secret"] and made["connect_enabled"]
    code, out, _ = await _run(capsys, ["clients", "list", "--json"])
    listed = json.loads(out)
    assert [c["client_id"] for c in listed] == [made["client_id"]] and "client_secret" not in listed[0]
    assert made["client_secret"] not in out
    config = load_config(site / "directgw.toml")
    store = await open_store(config.storage_url)
    settings = settings_from_config(config, listen_override="127.0.0.1:0")
    running = await start_bridge(BridgeContext(store, RecordStore(store), lambda: datetime.now(UTC), settings),
                                 "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{running.port}/oauth/token", data={"grant_type": "client_credentials"},
            headers=basic(made["client_id"], made["client_secret"]),
        ) as r:
            assert r.status == 200, await r.text()
            assert set((await r.json())["scope"].split()) == {"connect", "packages"}
    finally:
        await running.close()
        await store.close()


async def test_clients_add_public_has_no_secret(site, capsys):
    code, out, _ = await _run(capsys, ["clients", "add", "Phone", "--public", "--redirect-uri",
                                       "http://127.0.0.1/cb", "--scopes", "records.*.r", "--offline", "--json"])
    made = json.loads(out)
    assert code == 0 and made["type"] == "public" and made["client_secret"] is None and made["offline_allowed"]


async def test_clients_add_plain_output_names_id_and_secret(site, capsys):
    code, out, err = await _run(capsys, ["clients", "add", "Web", "--redirect-uri", "https://w.example/cb"])
    assert code == 0 and out.startswith("client ") and "client secret: " in out and "shown only now" in err


@pytest.mark.parametrize(("argv", "exit_code", "says"), [
    (["--public", "--redirect-uri", "http://127.0.0.1/cb", "--scopes", "packages"], 1, "public client may not"),
    (["--public", "--redirect-uri", "http://127.0.0.1/cb", "--connect"], 1, "public client may not"),
    (["--redirect-uri", "http://app.example/cb"], 1, "plain http only for loopback"),
    (["--redirect-uri", "https://a.example/cb", "--scopes", "records.bogus.r"], 1, "not a scope"),
    ([], 2, "--redirect-uri"),
], ids=["public-packages", "public-connect", "http", "bad-scope", "no-redirect"])
async def test_clients_add_refusals(site, capsys, argv, exit_code, says):
    code, _, err = await _run(capsys, ["clients", "add", "App", *argv])
    assert code == exit_code and says in err


async def test_clients_remove(site, capsys):
    _, out, _ = await _run(capsys, ["clients", "add", "Web", "--redirect-uri", "https://w.example/cb", "--json"])
    client_id = json.loads(out)["client_id"]
    assert (await _run(capsys, ["clients", "remove", client_id]))[0] == 0
    code, _, err = await _run(capsys, ["clients", "remove", client_id])
    assert code == 1 and "no client" in err
    assert json.loads((await _run(capsys, ["clients", "list", "--json"]))[1]) == []


async def test_people_add_gives_a_person_custodian_access_to_a_record(site, capsys):
    code, out, _ = await _run(capsys, ["records", "create", "--name", "Pat", "--address", "pat@b.test", "--json"])
    record_id = json.loads(out)["id"]
    (site / "pw").write_text(PASSWORD + "\n")
    code, out, _ = await _run(capsys, ["people", "add", "Pat@Example.com", "--password-file", "pw",
                                       "--record", "pat@b.test", "--json"])
    assert code == 0
    added = json.loads(out)
    assert added["created"] and added["record_id"] == record_id and added["role"] == "custodian"
    store = await open_store(load_config(site / "directgw.toml").storage_url)
    try:
        person = await PersonStore(store).authenticate("pat@example.com", PASSWORD)
        assert person is not None and person.id == added["person_id"]
        assert await role(store, person.id, record_id) is Role.CUSTODIAN
    finally:
        await store.close()
    code, out, _ = await _run(capsys, ["people", "add", "pat@example.com", "--record", str(record_id),
                                       "--role", "viewer", "--json"])
    assert code == 0 and not json.loads(out)["created"]


@pytest.mark.parametrize(("argv", "says"), [
    (["not-an-email"], "e-mail address"),
    (["x@example.com", "--record", "999"], "no record 999"),
    (["x@example.com", "--password-file", "short"], "at least"),
    (["x@example.com", "--password-file", "missing"], "cannot read"),
])
async def test_people_add_refusals(site, capsys, argv, says):
    (site / "short").write_text("abc\n")
    code, _, err = await _run(capsys, ["people", "add", *argv])
    assert code == 1 and says in err


async def test_serve_runs_the_bridge_on_bridge_listen(site, capsys):
    from gateway.service.app import start_service

    port = free_port()
    with open(site / "directgw.toml", "a") as f:
        f.write(f'\n[bridge]\nlisten = "127.0.0.1:{port}"\nbase_url = "https://records.example"\n')
    config = load_config(site / "directgw.toml")
    listeners = serve_settings({"smtp": {"listen": f"127.0.0.1:{free_port()}"},
                                "http": {"listen": f"127.0.0.1:{free_port()}"}}, site)
    settings = dataclasses.replace(serve_settings(config.tables, config.path.parent), http=listeners.http,
                                   smtp=listeners.smtp)
    running = await start_service(config, settings)
    try:
        assert running.bridge_port == port
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/.well-known/oauth-authorization-server") as r:
                meta = await r.json()
                assert meta["issuer"] == "https://records.example"
                assert r.headers["Strict-Transport-Security"].startswith("max-age=")
            async with http.get(f"http://127.0.0.1:{port}/oauth/authorize?client_id=nobody") as r:
                assert r.status == 400
            async with http.get(f"http://127.0.0.1:{running.http_port}/metrics") as r:
                assert "directgw_bridge_refused_unknown_client 1.0" in await r.text()
    finally:
        await running.stop()


async def test_serve_refuses_a_wrong_bridge_setting_before_listening(site):
    from gateway.config import ConfigError
    from gateway.service.app import start_service

    with open(site / "directgw.toml", "a") as f:
        f.write(f'\n[bridge]\nlisten = "127.0.0.1:{free_port()}"\nbase_url = "ftp://x"\n')
    config = load_config(site / "directgw.toml")
    settings = dataclasses.replace(serve_settings(config.tables, config.path.parent), http=None)
    with pytest.raises(ConfigError, match="base_url"):
        await start_service(config, settings)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_directgw_bridge_runs_alone_and_stops_on_sigterm(site):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli.main", "bridge", "--listen", f"127.0.0.1:{port}"],
                               cwd=site, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    try:
        for line in process.stderr:
            if "listening on" in line:
                break
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/.well-known/smart-configuration", timeout=10) as r:
            assert json.loads(r.read())["issuer"] == f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        process.stderr.close()
    assert code == 0


async def test_clients_add_without_scopes_may_read_what_it_is_given(site, capsys):
    code, out, _ = await _run(capsys, ["clients", "add", "Reader", "--redirect-uri", "https://r.example/cb", "--json"])
    made = json.loads(out)
    assert code == 0 and made["scopes"] == ["records.*.r"] and made["required_scopes"] == ["records.*.r"]


def test_a_client_id_never_reads_as_an_option_on_the_command_line():
    from records_bridge.oauth.clients import new_client_id

    # one in 64 URL-safe ids would start with "-": `clients remove ID` then failed (CI did once)
    ids = [new_client_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids) and all(len(i) == 22 for i in ids)
