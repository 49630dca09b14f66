"""The ``clients`` and ``people`` commands (registered in ``clients`` and ``people``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.service.settings import ServeSettingsError
from gateway.store import Store
from records_bridge.access import AccessError, Role, give
from records_bridge.oauth.clients import Client, ClientError, ClientSpec, ClientStore
from records_bridge.people import PeopleError, PersonStore
from records_bridge.store import RecordStore
from records_bridge.web.settings import settings_from_config

from .admin.common import AdminError, AdminUsageError, config_path, print_json, run, utc_now

DEFAULT_SCOPES = ("records.*.r",)
"""An app registered without scopes may read the records people give it, nothing more."""


def _clients(args: argparse.Namespace, store: Store) -> ClientStore:
    try:
        settings = settings_from_config(load_config(config_path(args)))
    except ServeSettingsError as exc:
        raise AdminError(str(exc)) from exc
    return ClientStore(store, settings.secret("client-secret"))


def client_json(c: Client) -> dict[str, Any]:
    return {
        "client_id": c.client_id, "name": c.name, "type": c.type.value, "redirect_uris": list(c.redirect_uris),
        "scopes": sorted(c.allowed_scopes), "required_scopes": sorted(c.required_scopes),
        "optional_scopes": sorted(c.optional_scopes), "multi_record": c.multi_record,
        "offline_allowed": c.offline_allowed, "connect_enabled": c.connect_enabled,
        "created_at": c.created_at.isoformat(),
    }


def cmd_add(args: argparse.Namespace) -> int:
    spec: ClientSpec | None = None

    def check() -> None:
        nonlocal spec
        if not args.redirect_uri and not args.scopes:
            raise AdminUsageError("give --redirect-uri URI (or --scopes for a client-credentials-only app)")
        given = args.scopes or args.required_scopes or args.optional_scopes or args.offline or args.connect
        spec = ClientSpec(
            args.name, tuple(args.redirect_uri), public=args.public,
            scopes=tuple(args.scopes) if given else DEFAULT_SCOPES,
            required_scopes=tuple(args.required_scopes) if args.required_scopes is not None else None,
            optional_scopes=tuple(args.optional_scopes), multi_record=args.multi_record, offline=args.offline,
            connect=args.connect,
        )

    async def body(store: Store) -> int:
        assert spec is not None
        try:
            made = await _clients(args, store).add(spec, at=utc_now())
        except ClientError as exc:
            raise AdminError(str(exc)) from exc
        if args.json:
            print_json({**client_json(made.client), "client_secret": made.secret})
            return 0
        print(f"client {made.client.client_id} ({made.client.name}, {made.client.type.value})")
        if made.secret is not None:
            print(f"client secret: {made.secret}")
            print("The secret is shown only now; store it in the app's configuration.", file=sys.stderr)
        return 0

    return run(args, body, check)


def cmd_list(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        clients = await _clients(args, store).list()
        if args.json:
            print_json([client_json(c) for c in clients])
            return 0
        if not clients:
            print("no clients (clients add NAME --redirect-uri URI)")
        for c in clients:
            print(f"{c.client_id}\t{c.name}\t{c.type.value}\t{' '.join(sorted(c.allowed_scopes))}\t"
                  f"{' '.join(c.redirect_uris)}")
        return 0

    return run(args, body)


def cmd_remove(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        if not await _clients(args, store).remove(args.client_id):
            raise AdminError(f"no client {args.client_id}")
        print(f"removed client {args.client_id} with its grants and tokens")
        return 0

    return run(args, body)


def _password(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminError(f"--password-file {path}: cannot read: {exc}") from exc
    return text.rstrip("\r\n")  # the file's final newline is not part of the password


def cmd_people_add(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        people = PersonStore(store)
        at = utc_now()
        password = _password(args.password_file)
        person = await people.by_email(args.email)
        created = person is None
        try:
            if person is None:
                person = await people.create(args.email, args.name or args.email.split("@")[0], password, at=at)
            elif password is not None:
                await people.set_password(person.id, password)
        except PeopleError as exc:
            raise AdminError(f"{args.email}: {exc}") from exc
        record_id = None
        if args.record is not None:
            record_id = await _record(RecordStore(store), args.record)
            try:
                await give(store, person.id, record_id, Role(args.role), at=at)
            except AccessError as exc:
                raise AdminError(str(exc)) from exc
        if args.json:
            print_json({"person_id": person.id, "email": person.email, "created": created,
                        "record_id": record_id, "role": args.role if record_id else None})
        else:
            said = "added" if created else "found"
            grant = f"; {args.role} of record {record_id}" if record_id is not None else ""
            print(f"person {person.id} ({person.email}) {said}{grant}")
        return 0

    return run(args, body)


async def _record(records: RecordStore, given: str) -> int:
    if given.isdigit():
        if await records.record(int(given)) is None:
            raise AdminError(f"no record {given}")
        return int(given)
    found = await records.record_for_address(given)
    if found is None:
        raise AdminError(f"no record has the address {given}")
    return found
