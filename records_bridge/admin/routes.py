"""The admin HTTP API (issue 10): what the CLI does, over HTTP, behind the admin token.

Records, OAuth clients, EHR submission accounts, local domains and their
keys, trust anchors, trust bundles and messages. Every handler calls the
same library functions the ``directgw`` commands call (``gateway.cli``'s
``records_run``, ``accounts_run``'s helpers, ``admin/bundles.add_bundle``,
and the stores under them), so the two can never disagree; the JSON shapes
are the commands' ``--json`` shapes.

Each operation is one ``Operation`` in ``OPERATIONS``: the router is built
from that table and so is the OpenAPI document (``openapi.document``),
which therefore describes every route by construction (a test checks the
router against the document anyway).

Authentication: ``Authorization: Bearer <admin token>`` (``token.matches``,
constant time). Expected failures of the libraries answer with the JSON
error shape of the whole bridge: 400 ``refused``, 404 ``not_found``, 409
``conflict``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from anchors.bundles import BundleDefinitionError, Bundles
from anchors.importing import AnchorFileError, read_anchor_file
from anchors.store import DbAnchors
from gateway.accounts import (
    AccountError,
    AccountProblem,
    Accounts,
    PasswordRefused,
    account_name,
    chosen_password,
    generate_password,
    hash_password,
)
from gateway.cli import delivery
from gateway.cli.admin import DIRECTION_CHOICES
from gateway.cli.admin.anchors import anchor_json
from gateway.cli.admin.bundles import add_bundle, bundle_json
from gateway.cli.admin.common import DIRECTIONS, AdminUsageError, duration_arg
from gateway.cli.admin.domains import key_record_json, key_warnings
from gateway.cli.args import CommandFailed
from gateway.cli.clients_run import client_json
from gateway.cli.records_run import (
    address_arg,
    create_record,
    item_json,
    list_messages,
    show_message,
)
from gateway.core.certs import CertRef, KeyMaterialError, load_certificates, load_key_pair
from gateway.domains import DomainError, LocalDomains
from gateway.store import StoreError, StoreProblem
from gateway.store.lookups import normalise_domain
from records_bridge.oauth.clients import ClientError, ClientSpec, ClientStore
from records_bridge.web.context import BridgeContext, context
from records_bridge.web.errors import JsonError
from records_bridge.web.refusals import Refusal
from trust.policy import PolicyError

from .openapi import document
from .token import matches

MESSAGES_DEFAULT_LIMIT = 50
MESSAGES_MAX_LIMIT = 1000
"""``messages list``'s default page, and a bound on one answer."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: str
    """path or query"""
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    status: int = 200
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None
    """JSON schema of the request body."""
    result: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    """JSON schema of the success body (ignored for 204)."""


# --------------------------------------------------------------------------- plumbing


def _authorized(request: web.Request) -> None:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    ctx = context(request)
    if scheme.lower() != "bearer" or not matches(ctx.settings.admin_token_sha256, presented.strip()):
        ctx.refusals.count(Refusal.ADMIN_TOKEN, path=request.path, ip=request.remote)
        raise JsonError(401, "invalid_token", "the admin API needs Authorization: Bearer <admin token> "
                        "([bridge] admin_token_file)", headers={"WWW-Authenticate": 'Bearer realm="admin"'})


def _failure(exc: Exception) -> JsonError:
    """An expected failure of the libraries as the bridge's JSON error."""
    if isinstance(exc, StoreError) and exc.problem is StoreProblem.NOT_FOUND:
        return JsonError(404, "not_found", exc.detail)
    if isinstance(exc, StoreError) and exc.problem is StoreProblem.CONFLICT:
        return JsonError(409, "conflict", exc.detail)
    if isinstance(exc, AccountError) and exc.problem is AccountProblem.NO_SUCH_ACCOUNT:
        return JsonError(404, "not_found", exc.detail)
    if isinstance(exc, AccountError) and exc.problem is AccountProblem.EXISTS:
        return JsonError(409, "conflict", exc.detail)
    return JsonError(400, "refused", str(exc))


_EXPECTED = (CommandFailed, AdminUsageError, StoreError, DomainError, KeyMaterialError, PolicyError, AnchorFileError,
             BundleDefinitionError, ClientError, AccountError, PasswordRefused)


def admin(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        _authorized(request)
        try:
            return await handler(request)
        except _EXPECTED as exc:
            raise _failure(exc) from None

    return wrapped


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise JsonError(400, "invalid_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise JsonError(400, "invalid_request", "the body is a JSON object")
    return body


def _str(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise JsonError(400, "invalid_request", f"{name}: a non-empty string is required")
    return value


def _strs(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise JsonError(400, "invalid_request", f"{name}: a list of strings")
    return value


def _domain(text: str | None) -> str:
    try:
        return normalise_domain(text or "")
    except ValueError as exc:
        raise JsonError(400, "invalid_request", str(exc)) from None


def _int_path(request: web.Request, name: str) -> int:
    value = request.match_info[name]
    if not value.isdigit() or len(value) > 18:
        raise JsonError(404, "not_found", f"no such {name}")
    return int(value)


def _direction(body: dict[str, Any]) -> str:
    direction = body.get("direction", "both")
    if direction not in DIRECTION_CHOICES:
        raise JsonError(400, "invalid_request", f"direction: one of {', '.join(DIRECTION_CHOICES)}")
    return str(direction)


def _signer(body: dict[str, Any]) -> CertRef | None:
    pem = _str(body, "signer", required=False)
    if pem is None:
        return None
    certs = load_certificates(pem.encode())
    if len(certs) != 1:
        raise JsonError(400, "invalid_request", "signer: one PEM certificate")
    return certs[0]


def _ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


# --------------------------------------------------------------------------- records


async def records_list(request: web.Request) -> web.Response:
    records = await context(request).records.records()
    return _ok([{"id": r.id, "name": r.display_name, "addresses": list(r.addresses), "size_bytes": r.size_bytes,
                 "created_at": r.created_at.isoformat()} for r in records])


async def records_create(request: web.Request) -> web.Response:
    body = await _body(request)
    name = _str(body, "name")
    assert name is not None
    addresses = tuple(address_arg(a) for a in _strs(body, "addresses"))
    ctx = context(request)
    record = await create_record(ctx.store, name, addresses, at=ctx.clock())
    return _ok({"id": record.id, "name": record.display_name, "addresses": list(record.addresses)}, 201)


async def records_items(request: web.Request) -> web.Response:
    records = context(request).records
    record_id = _int_path(request, "rid")
    if await records.record(record_id) is None:
        raise JsonError(404, "not_found", f"no record {record_id}")
    return _ok([item_json(i) for i in await records.items(record_id)])


# --------------------------------------------------------------------------- clients


def _clients(request: web.Request) -> ClientStore:
    ctx = context(request)
    return ClientStore(ctx.store, ctx.settings.secret("client-secret"))


async def clients_list(request: web.Request) -> web.Response:
    return _ok([client_json(c) for c in await _clients(request).list()])


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise JsonError(400, "invalid_request", f"{name}: true or false")
    return value


async def clients_add(request: web.Request) -> web.Response:
    body = await _body(request)
    name = _str(body, "name")
    assert name is not None
    required = body.get("required_scopes")
    spec = ClientSpec(
        name=name, redirect_uris=tuple(_strs(body, "redirect_uris")), public=_flag(body, "public", False),
        scopes=tuple(_strs(body, "scopes")),
        required_scopes=tuple(_strs(body, "required_scopes")) if required is not None else None,
        optional_scopes=tuple(_strs(body, "optional_scopes")), multi_record=_flag(body, "multi_record", False),
        offline=_flag(body, "offline", False), connect=_flag(body, "connect", False),
        writes_to_inbox=_flag(body, "writes_to_inbox", True),
    )
    added = await _clients(request).add(spec, at=context(request).clock())
    shown = client_json(added.client)
    if added.secret is not None:
        shown["client_secret"] = added.secret  # shown once, never stored
    return _ok(shown, 201)


async def clients_remove(request: web.Request) -> web.Response:
    client_id = request.match_info["client_id"]
    if not await _clients(request).remove(client_id):
        raise JsonError(404, "not_found", f"no client {client_id}")
    return web.Response(status=204)


# --------------------------------------------------------------------------- accounts


def account_json(a: Any) -> dict[str, Any]:
    return {"name": a.name, "domain": a.domain, "created_at": a.created_at.isoformat(),
            "password_changed_at": a.password_changed_at.isoformat()}


async def accounts_list(request: web.Request) -> web.Response:
    return _ok([account_json(a) for a in await Accounts(context(request).store).all()])


async def _password(body: dict[str, Any]) -> tuple[str, bool, str]:
    """(password, generated, argon2id hash); the hash off the event loop."""
    given = _str(body, "password", required=False)
    password, generated = (chosen_password(given), False) if given is not None else (generate_password(), True)
    return password, generated, await asyncio.to_thread(hash_password, password)


async def accounts_add(request: web.Request) -> web.Response:
    body = await _body(request)
    ctx = context(request)
    name = account_name(_str(body, "name") or "")
    domain = _domain(_str(body, "domain"))
    password, generated, hashed = await _password(body)
    ours = await LocalDomains(ctx.store).names()
    if domain not in ours:
        raise JsonError(400, "refused", f"{domain} is not a local domain")
    account = await Accounts(ctx.store).add(name, domain, hashed, at=ctx.clock())
    shown = account_json(account)
    if generated:
        shown["password"] = password  # shown once, never stored
    return _ok(shown, 201)


async def accounts_remove(request: web.Request) -> web.Response:
    await Accounts(context(request).store).remove(account_name(request.match_info["name"]))
    return web.Response(status=204)


async def accounts_passwd(request: web.Request) -> web.Response:
    body = await _body(request)
    ctx = context(request)
    name = account_name(request.match_info["name"])
    password, generated, hashed = await _password(body)
    await Accounts(ctx.store).set_password(name, hashed, at=ctx.clock())
    return _ok({"name": name, **({"password": password} if generated else {})})


# --------------------------------------------------------------------------- domains


async def domains_list(request: web.Request) -> web.Response:
    domains = await LocalDomains(context(request).store).all()
    return _ok([{"domain": d.name, "created_at": d.created_at.isoformat(),
                 "keys": [key_record_json(k) for k in d.keys]} for d in domains])


async def domains_add_key(request: web.Request) -> web.Response:
    body = await _body(request)
    ctx = context(request)
    domain = _domain(request.match_info["domain"])
    cert, key = _str(body, "certificate"), _str(body, "key")
    assert cert is not None and key is not None
    address = _str(body, "address", required=False)
    pair = load_key_pair(key.encode(), cert.encode())
    at = ctx.clock()
    record = await LocalDomains(ctx.store).add_key(domain, pair, at=at, address=address)
    return _ok({**key_record_json(record), "warnings": key_warnings(record.certificate, at)}, 201)


async def domains_remove(request: web.Request) -> web.Response:
    await LocalDomains(context(request).store).remove(_domain(request.match_info["domain"]))
    return web.Response(status=204)


# --------------------------------------------------------------------------- anchors


async def anchors_list(request: web.Request) -> web.Response:
    domain = request.query.get("domain")
    records = await DbAnchors(context(request).store).all(_domain(domain) if domain else None)
    return _ok([anchor_json(a) for a in records])


async def anchors_add(request: web.Request) -> web.Response:
    body = await _body(request)
    ctx = context(request)
    domain = _domain(_str(body, "domain"))
    directions = DIRECTIONS[_direction(body)]
    signer = _signer(body)
    files = body.get("files")
    if not isinstance(files, list) or not files:
        raise JsonError(400, "invalid_request", "files: a list of {name, data (base64)}")
    at = ctx.clock()
    certs: list[CertRef] = []
    warnings: list[str] = []
    for n, f in enumerate(files):  # every file is checked before anything is stored, as the command does
        if not isinstance(f, dict) or not isinstance(f.get("data"), str):
            raise JsonError(400, "invalid_request", f"files[{n}]: {{name, data (base64)}}")
        try:
            data = base64.b64decode(f["data"], validate=True)
        except (binascii.Error, ValueError):
            raise JsonError(400, "invalid_request", f"files[{n}].data is not base64") from None
        source = str(f.get("name") or f"files[{n}]")
        imported = read_anchor_file(data, source, at=at, signer=signer)
        warnings += [f"{source}: {w}" for w in imported.warnings]
        certs.extend(imported.certificates)
    result = await DbAnchors(ctx.store).add(domain, directions, certs, at=at)
    return _ok({"added": [anchor_json(a) for a in result.added],
                "already_present": [{"direction": d.value, "subject": c.subject} for d, c in result.already_present],
                "warnings": warnings}, 201)


async def anchors_remove(request: web.Request) -> web.Response:
    await DbAnchors(context(request).store).remove(_int_path(request, "id"))
    return web.Response(status=204)


# --------------------------------------------------------------------------- bundles


async def bundles_list(request: web.Request) -> web.Response:
    return _ok([bundle_json(b) for b in await Bundles(context(request).store).all()])


async def bundles_add(request: web.Request) -> web.Response:
    body = await _body(request)
    ctx = context(request)
    url = _str(body, "url")
    assert url is not None
    domain = _domain(_str(body, "domain"))
    refresh = duration_arg(str(body.get("refresh", "6h")))
    signer = _signer(body)
    async with aiohttp.ClientSession() as session:
        record, outcome = await add_bundle(Bundles(ctx.store, session), url, domain, DIRECTIONS[_direction(body)],
                                           refresh=refresh, signer=signer, at=ctx.clock())
    return _ok({**bundle_json(await Bundles(ctx.store).get(record.id)), "warnings": list(outcome.warnings)}, 201)


async def bundles_refresh(request: web.Request) -> web.Response:
    due = request.query.get("due") in ("1", "true")
    ctx = context(request)
    async with aiohttp.ClientSession() as session:
        outcomes = await Bundles(ctx.store, session).refresh_due(ctx.clock(), force=not due)
    return _ok([{"bundle_id": o.bundle_id, "url": o.url, "status": o.status.value, "certificates": o.certificates,
                 "problem": o.problem.value if o.problem else None, "detail": o.detail, "warnings": list(o.warnings)}
                for o in outcomes])


async def bundles_remove(request: web.Request) -> web.Response:
    await Bundles(context(request).store).remove(_int_path(request, "id"))
    return web.Response(status=204)


# --------------------------------------------------------------------------- messages


async def messages_list(request: web.Request) -> web.Response:
    q = request.query
    raw_limit = q.get("limit", str(MESSAGES_DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MESSAGES_MAX_LIMIT:
        raise JsonError(400, "invalid_request", f"limit is 1..{MESSAGES_MAX_LIMIT}")
    store = context(request).store
    rows = await list_messages(store, direction=q.get("direction"), status=q.get("status"), limit=int(raw_limit))
    watched = await delivery.tracked(store, [r.id for r in rows if r.direction == "out"])
    return _ok([{**row._asdict(), "received_at": row.received_at.isoformat(),
                 **delivery.list_json(watched.get(row.id, []))} for row in rows])


async def messages_show(request: web.Request) -> web.Response:
    message_id = _int_path(request, "id")
    try:
        return _ok(await show_message(context(request).store, message_id))
    except CommandFailed as exc:  # the only failure: no such message
        raise JsonError(404, "not_found", str(exc)) from None


# --------------------------------------------------------------------------- the table

_S = {"type": "string"}
_ID = Param("id", "path", {"type": "integer"}, "the id, as the list shows it", True)
_LIST = {"type": "array", "items": {"type": "object"}}
_DIRECTION = {"type": "string", "enum": list(DIRECTION_CHOICES), "default": "both"}

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/admin/v1/records", records_list, "List records (records list)", "records", result=_LIST),
    Operation("POST", "/admin/v1/records", records_create, "Create a record with Direct addresses in local domains "
              "(records create)", "records", 201,
              body={"type": "object", "required": ["name"], "properties": {
                  "name": _S, "addresses": {"type": "array", "items": _S}}}),
    Operation("GET", "/admin/v1/records/{rid}/items", records_items, "A record's items with provenance (records items)",
              "records", params=(Param("rid", "path", {"type": "integer"}, "the record id", True),), result=_LIST),
    Operation("GET", "/admin/v1/clients", clients_list, "List OAuth clients (clients list)", "clients", result=_LIST),
    Operation("POST", "/admin/v1/clients", clients_add, "Register an OAuth client; a confidential client's secret is "
              "in the answer, once (clients add)", "clients", 201,
              body={"type": "object", "required": ["name", "redirect_uris"], "properties": {
                  "name": _S, "redirect_uris": {"type": "array", "items": _S}, "public": {"type": "boolean"},
                  "scopes": {"type": "array", "items": _S}, "required_scopes": {"type": "array", "items": _S},
                  "optional_scopes": {"type": "array", "items": _S}, "multi_record": {"type": "boolean"},
                  "offline": {"type": "boolean"}, "connect": {"type": "boolean"},
                  "writes_to_inbox": {"type": "boolean"}}}),
    Operation("DELETE", "/admin/v1/clients/{client_id}", clients_remove, "Remove a client and its grants "
              "(clients remove)", "clients", 204, params=(Param("client_id", "path", _S, "the client id", True),)),
    Operation("GET", "/admin/v1/accounts", accounts_list, "List EHR submission accounts (accounts list)", "accounts",
              result=_LIST),
    Operation("POST", "/admin/v1/accounts", accounts_add, "Add an EHR submission account; a generated password is in "
              "the answer, once (accounts add)", "accounts", 201,
              body={"type": "object", "required": ["name", "domain"], "properties": {
                  "name": _S, "domain": _S, "password": {"type": "string", "description": "omit to generate one"}}}),
    Operation("DELETE", "/admin/v1/accounts/{name}", accounts_remove, "Remove an account (accounts remove)",
              "accounts", 204, params=(Param("name", "path", _S, "the account name", True),)),
    Operation("POST", "/admin/v1/accounts/{name}/password", accounts_passwd, "Set a new password (accounts passwd)",
              "accounts", params=(Param("name", "path", _S, "the account name", True),),
              body={"type": "object", "properties": {"password": {"type": "string",
                                                                  "description": "omit to generate one"}}}),
    Operation("GET", "/admin/v1/domains", domains_list, "List local domains and their keys (domains list)", "domains",
              result=_LIST),
    Operation("POST", "/admin/v1/domains/{domain}/keys", domains_add_key, "Add a domain, or a key for it or one of "
              "its addresses (domains add, domains add-address)", "domains", 201,
              params=(Param("domain", "path", _S, "the local domain", True),),
              body={"type": "object", "required": ["certificate", "key"], "properties": {
                  "certificate": {"type": "string", "description": "PEM"},
                  "key": {"type": "string", "description": "PEM, unencrypted"},
                  "address": {"type": "string", "description": "for an address-bound certificate"}}}),
    Operation("DELETE", "/admin/v1/domains/{domain}", domains_remove, "Remove a domain with its keys, anchors and "
              "bundles (domains remove)", "domains", 204, params=(Param("domain", "path", _S, "the local domain", True),)),
    Operation("GET", "/admin/v1/anchors", anchors_list, "List trust anchors (anchors list)", "anchors",
              params=(Param("domain", "query", _S, "only this local domain's anchors"),), result=_LIST),
    Operation("POST", "/admin/v1/anchors", anchors_add, "Add anchors from PEM, DER, .p7b or .p7m files (anchors add)",
              "anchors", 201,
              body={"type": "object", "required": ["domain", "files"], "properties": {
                  "domain": _S, "direction": _DIRECTION,
                  "signer": {"type": "string", "description": "PEM certificate a signed .p7m must be signed by"},
                  "files": {"type": "array", "items": {"type": "object", "required": ["data"], "properties": {
                      "name": _S, "data": {"type": "string", "contentEncoding": "base64"}}}}}}),
    Operation("DELETE", "/admin/v1/anchors/{id}", anchors_remove, "Remove a manually added anchor (anchors remove)",
              "anchors", 204, params=(_ID,)),
    Operation("GET", "/admin/v1/bundles", bundles_list, "List trust bundles and their last refresh (bundles list)",
              "bundles", result=_LIST),
    Operation("POST", "/admin/v1/bundles", bundles_add, "Add a trust bundle URL and fetch it; a failed first fetch "
              "adds nothing (bundles add)", "bundles", 201,
              body={"type": "object", "required": ["url", "domain"], "properties": {
                  "url": _S, "domain": _S, "direction": _DIRECTION,
                  "refresh": {"type": "string", "default": "6h", "description": "e.g. 30m, 6h, 1d"},
                  "signer": {"type": "string", "description": "PEM certificate the bundle must be signed by"}}}),
    Operation("POST", "/admin/v1/bundles/refresh", bundles_refresh, "Refresh every bundle now, or only those due "
              "(bundles refresh)", "bundles",
              params=(Param("due", "query", {"type": "boolean"}, "only bundles whose refresh time has come"),),
              result=_LIST),
    Operation("DELETE", "/admin/v1/bundles/{id}", bundles_remove, "Remove a bundle and its anchors (bundles remove)",
              "bundles", 204, params=(_ID,)),
    Operation("GET", "/admin/v1/messages", messages_list, "The newest messages with their state (messages list)",
              "messages", result=_LIST, params=(
                  Param("direction", "query", {"type": "string", "enum": ["in", "out"]}, "only this direction"),
                  Param("status", "query", _S, "only messages in this state (e.g. rejected)"),
                  Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MESSAGES_MAX_LIMIT,
                                           "default": MESSAGES_DEFAULT_LIMIT}, "how many"))),
    Operation("GET", "/admin/v1/messages/{id}", messages_show, "One message: recipients, outbound entries, delivery "
              "tracking, audit trail (messages show)", "messages", params=(_ID,)),
)


def setup(app: web.Application, ctx: BridgeContext) -> None:
    spec = document(OPERATIONS, base_url=ctx.settings.base_url)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(spec)

    app.router.add_get("/admin/openapi.json", openapi)
    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, admin(op.handler))
