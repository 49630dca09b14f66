"""The admin HTTP API: the CLI's operations behind the admin token, through the
same library functions, described route by route by /admin/openapi.json."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from records_bridge.admin.token import AdminTokenError, load_admin_token, matches
from records_bridge.store import RecordStore
from records_bridge.web.app import build_app
from records_bridge.web.context import BridgeContext
from records_bridge.web.refusals import Refusal
from records_bridge.web.settings import BridgeSettings
from tests import anchor_files as files
from tests.bridge_fixtures import Bridge, Clock, free_port
from tests.pki import hisp, issue

from .storage_fixtures import store_fixture, store_url_fixture  # noqa: F401

A, B = hisp("a.test"), hisp("b.test")
SIGNER = issue("Bundle signer")
TOKEN = secrets.token_hex(32)


@pytest.fixture(name="admin")
async def admin_fixture(store) -> AsyncIterator[Bridge]:
    """A bridge whose admin token is TOKEN."""
    port = free_port()
    settings = BridgeSettings(base_url=f"http://127.0.0.1:{port}", key=secrets.token_bytes(32), cookie_secure=False,
                              admin_token_sha256=hashlib.sha256(TOKEN.encode()).digest())
    clock = Clock()
    ctx = BridgeContext(store=store, records=RecordStore(store), clock=clock, settings=settings)
    runner = web.AppRunner(build_app(ctx), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Bridge(ctx, settings.base_url, clock)
    finally:
        await runner.cleanup()


async def call(bridge: Bridge, method: str, path: str, body: Any = None, *, token: str | None = TOKEN,
               ) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as http, http.request(method, bridge.url(path), json=body, headers=headers) as r:
        text = await r.text()
        return r.status, json.loads(text) if text else None


async def test_every_admin_route_is_described_by_a_valid_openapi_document(admin):
    async with aiohttp.ClientSession() as http, http.get(admin.url("/admin/openapi.json")) as r:
        assert r.status == 200 and r.content_type == "application/json"
        doc = json.loads(await r.text())
    assert doc["openapi"].startswith("3.1.") and doc["info"]["title"] and doc["info"]["version"]
    assert doc["components"]["securitySchemes"]["adminToken"] == {
        "type": "http", "scheme": "bearer", "description": "the token in [bridge] admin_token_file"}
    routes = set()
    for resource in build_app(admin.ctx).router.resources():
        path = resource.canonical
        if path.startswith("/admin/v1/"):
            routes |= {(path, route.method.lower()) for route in resource if route.method != "HEAD"}
    described = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes == described and len(routes) >= 20
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert op["summary"] and op["responses"] and "401" in op["responses"]
            named = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert named == {part[1:-1] for part in path.split("/") if part.startswith("{")}, path


@pytest.mark.parametrize("presented", [None, "", TOKEN[:-1], TOKEN + "x", "x" * 600, TOKEN.upper()],
                         ids=["none", "empty", "prefix", "longer", "huge", "case"])
async def test_calls_without_the_admin_token_are_refused(admin, presented):
    status, body = await call(admin, "GET", "/admin/v1/records", token=presented)
    assert (status, body["error"]) == (401, "invalid_token")
    assert admin.ctx.refusals.counts[Refusal.ADMIN_TOKEN] == 1


async def test_without_a_configured_token_every_call_is_refused(bridge_without_admin):
    status, body = await call(bridge_without_admin, "GET", "/admin/v1/records")
    assert (status, body["error"]) == (401, "invalid_token")


@pytest.fixture(name="bridge_without_admin")
async def bridge_without_admin_fixture(store) -> AsyncIterator[Bridge]:
    from tests.bridge_fixtures import start_bridge

    bridge, runner = await start_bridge(store)
    try:
        yield bridge
    finally:
        await runner.cleanup()


def test_the_token_file_must_be_private_and_long(tmp_path: Path):
    path = tmp_path / "admin.token"
    path.write_text(TOKEN + "\n")
    os.chmod(path, 0o644)
    with pytest.raises(AdminTokenError, match="chmod 600"):
        load_admin_token(path)
    os.chmod(path, 0o600)
    digest = load_admin_token(path)
    assert matches(digest, TOKEN) and not matches(digest, TOKEN[:-1]) and not matches(None, TOKEN)
    path.write_text("short")
    with pytest.raises(AdminTokenError, match="32"):
        load_admin_token(path)
    with pytest.raises(AdminTokenError, match="cannot read"):
        load_admin_token(tmp_path / "missing")


async def test_domains_records_and_items(admin):
    status, body = await call(admin, "POST", "/admin/v1/records", {"name": "Pat", "addresses": ["pat@a.test"]})
    assert (status, body["error"]) == (400, "refused") and "not in a local domain" in body["error_description"]
    status, key = await call(admin, "POST", "/admin/v1/domains/a.test/keys",
                             {"certificate": A.org.pem.decode(), "key": A.org.key_pem().decode()})
    assert status == 201, key
    assert key["subject"] == A.org.ref.subject and key["signing"] is True
    status, body = await call(admin, "POST", "/admin/v1/domains/a.test/keys",
                              {"certificate": A.org.pem.decode(), "key": A.org.key_pem().decode()})
    assert status == 400 and "already" in body["error_description"]
    status, record = await call(admin, "POST", "/admin/v1/records", {"name": "Pat", "addresses": ["Pat@A.test"]})
    assert status == 201 and record["addresses"] == ["pat@a.test"]
    status, listed = await call(admin, "GET", "/admin/v1/records")
    assert [(r["id"], r["name"]) for r in listed] == [(record["id"], "Pat")]
    status, items = await call(admin, "GET", f"/admin/v1/records/{record['id']}/items")
    assert (status, items) == (200, [])
    status, _ = await call(admin, "GET", "/admin/v1/records/999/items")
    assert status == 404
    status, domains = await call(admin, "GET", "/admin/v1/domains")
    assert [d["domain"] for d in domains] == ["a.test"]
    status, _ = await call(admin, "DELETE", "/admin/v1/domains/a.test")
    assert status == 204
    status, domains = await call(admin, "GET", "/admin/v1/domains")
    assert domains == []


async def test_clients(admin):
    status, added = await call(admin, "POST", "/admin/v1/clients", {
        "name": "Notes", "redirect_uris": ["https://notes.example/cb"], "scopes": ["records.*.r"], "offline": True})
    assert status == 201, added
    secret = added.pop("client_secret")
    assert secret and added["type"] == "confidential" and "offline_access" in added["scopes"]
    status, listed = await call(admin, "GET", "/admin/v1/clients")
    assert listed == [added] and secret not in json.dumps(listed)
    status, body = await call(admin, "POST", "/admin/v1/clients", {
        "name": "Phone", "redirect_uris": ["http://127.0.0.1/cb"], "public": True, "scopes": ["packages"]})
    assert status == 400 and "public client" in body["error_description"]
    status, _ = await call(admin, "DELETE", f"/admin/v1/clients/{added['client_id']}")
    assert status == 204
    status, _ = await call(admin, "DELETE", f"/admin/v1/clients/{added['client_id']}")
    assert status == 404


async def test_accounts(admin):
    from gateway.domains import LocalDomains

    await LocalDomains(admin.ctx.store).create("a.test", at=admin.clock())
    status, added = await call(admin, "POST", "/admin/v1/accounts", {"name": "EHR1", "domain": "a.test"})
    assert status == 201, added
    assert added["name"] == "ehr1" and len(added["password"]) >= 16
    status, body = await call(admin, "POST", "/admin/v1/accounts", {"name": "ehr1", "domain": "a.test"})
    assert status == 409
    status, body = await call(admin, "POST", "/admin/v1/accounts", {"name": "ehr2", "domain": "b.test"})
    assert status == 400 and "not a local domain" in body["error_description"]
    status, body = await call(admin, "POST", "/admin/v1/accounts/ehr1/password", {"password": "a new long password!"})
    assert (status, body) == (200, {"name": "ehr1"})
    status, listed = await call(admin, "GET", "/admin/v1/accounts")
    assert [a["name"] for a in listed] == ["ehr1"] and "password" not in listed[0]
    assert (await call(admin, "DELETE", "/admin/v1/accounts/ehr1"))[0] == 204
    assert (await call(admin, "DELETE", "/admin/v1/accounts/ehr1"))[0] == 404
    assert (await call(admin, "POST", "/admin/v1/accounts/ehr1/password", {}))[0] == 404


async def test_anchors(admin):
    from gateway.domains import LocalDomains

    await LocalDomains(admin.ctx.store).create("a.test", at=admin.clock())
    upload = {"domain": "a.test", "direction": "incoming",
              "files": [{"name": "b-roots.p7b", "data": base64.b64encode(files.p7b(B.root, B.intermediate)).decode()}]}
    status, added = await call(admin, "POST", "/admin/v1/anchors", upload)
    assert status == 201, added
    assert sorted(a["subject"] for a in added["added"]) == sorted([B.root.ref.subject, B.intermediate.ref.subject])
    status, again = await call(admin, "POST", "/admin/v1/anchors", upload)
    assert status == 201 and again["added"] == [] and len(again["already_present"]) == 2
    status, body = await call(admin, "POST", "/admin/v1/anchors", {**upload, "files": [
        {"name": "junk", "data": base64.b64encode(b"not a certificate").decode()}]})
    assert status == 400 and "junk" in body["error_description"]
    status, listed = await call(admin, "GET", "/admin/v1/anchors?domain=a.test")
    assert len(listed) == 2
    first = listed[0]["id"]
    assert (await call(admin, "DELETE", f"/admin/v1/anchors/{first}"))[0] == 204
    assert (await call(admin, "DELETE", f"/admin/v1/anchors/{first}"))[0] == 404


async def test_bundles(admin, http):
    from gateway.domains import LocalDomains

    await LocalDomains(admin.ctx.store).create("a.test", at=admin.clock())
    http.files["/community.p7m"] = files.p7m(files.p7b(B.root), SIGNER)
    status, added = await call(admin, "POST", "/admin/v1/bundles", {
        "url": http.url("/community.p7m"), "domain": "a.test", "direction": "incoming", "refresh": "30m",
        "signer": SIGNER.pem.decode()})
    assert status == 201, added
    assert added["certificates"] == 1 and added["refresh_seconds"] == 1800 and added["signer"] == SIGNER.ref.subject
    status, body = await call(admin, "POST", "/admin/v1/bundles", {"url": http.url("/missing.p7b"), "domain": "a.test"})
    assert status == 400 and "not added" in body["error_description"]
    status, listed = await call(admin, "GET", "/admin/v1/bundles")
    assert [b["url"] for b in listed] == [http.url("/community.p7m")]  # the failed add left nothing
    status, refreshed = await call(admin, "POST", "/admin/v1/bundles/refresh")
    assert status == 200 and [r["status"] for r in refreshed] == ["unchanged"]
    assert (await call(admin, "DELETE", f"/admin/v1/bundles/{added['id']}"))[0] == 204
    assert (await call(admin, "DELETE", f"/admin/v1/bundles/{added['id']}"))[0] == 404


async def test_messages(admin):
    status, listed = await call(admin, "GET", "/admin/v1/messages?direction=in&limit=10")
    assert (status, listed) == (200, [])
    assert (await call(admin, "GET", "/admin/v1/messages/42"))[0] == 404
    assert (await call(admin, "GET", "/admin/v1/messages?limit=0"))[0] == 400


def test_bridge_settings_read_the_admin_token_file(tmp_path: Path):
    from gateway.service.settings import ServeSettingsError
    from records_bridge.web.settings import bridge_settings

    assert bridge_settings({}, base=tmp_path, data_dir=tmp_path).admin_token_sha256 is None
    (tmp_path / "admin.token").write_text(TOKEN)
    os.chmod(tmp_path / "admin.token", 0o600)
    settings = bridge_settings({"admin_token_file": "admin.token"}, base=tmp_path, data_dir=tmp_path)
    assert settings.admin_token_sha256 == hashlib.sha256(TOKEN.encode()).digest()
    assert TOKEN not in repr(settings)
    os.chmod(tmp_path / "admin.token", 0o640)
    with pytest.raises(ServeSettingsError, match="admin_token_file"):
        bridge_settings({"admin_token_file": "admin.token"}, base=tmp_path, data_dir=tmp_path)
    with pytest.raises(ServeSettingsError, match="admin_token_file"):
        bridge_settings({"admin_token_file": 7}, base=tmp_path, data_dir=tmp_path)
