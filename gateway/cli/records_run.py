"""The ``records`` and ``messages`` commands (registered in ``records``)."""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from gateway.domains import LocalDomains
from gateway.store import Store, messaging
from records_bridge.store import ItemInfo, RecordError, RecordInfo, RecordStore

from . import delivery
from .admin.common import AdminError, AdminUsageError, print_json, run, utc_now


def _address(value: str) -> str:
    local, at, domain = value.strip().lower().rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in value.strip()):
        raise AdminUsageError(f"--address {value!r} is not an address (local@domain)")
    return f"{local}@{domain}"


def address_arg(value: str) -> str:
    """``--address`` checked (the admin HTTP API checks its addresses with it too)."""
    return _address(value)


async def create_record(store: Store, name: str, addresses: tuple[str, ...], *, at: datetime) -> RecordInfo:
    """A record with addresses in local domains (``records create`` and the admin HTTP API). Raises AdminError."""
    ours = {d.name for d in await LocalDomains(store).all()}
    foreign = [a for a in addresses if a.rpartition("@")[2] not in ours]
    if foreign:
        raise AdminError(
            f"{', '.join(foreign)}: not in a local domain ({', '.join(sorted(ours)) or 'none yet: domains add'})"
        )
    try:
        return await RecordStore(store).create_record(name, addresses, at=at)
    except RecordError as exc:
        raise AdminError(str(exc)) from exc


def cmd_create(args: argparse.Namespace) -> int:
    addresses: tuple[str, ...] = ()

    def check() -> None:
        nonlocal addresses
        addresses = tuple(_address(a) for a in args.address)

    async def body(store: Store) -> int:
        record = await create_record(store, args.name, addresses, at=utc_now())
        if args.json:
            print_json({"id": record.id, "name": record.display_name, "addresses": list(record.addresses)})
        else:
            print(f"record {record.id} ({record.display_name}): {', '.join(record.addresses)}")
        return 0

    return run(args, body, check)


def cmd_list(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        records = await RecordStore(store).records()
        if args.json:
            print_json([
                {"id": r.id, "name": r.display_name, "addresses": list(r.addresses), "size_bytes": r.size_bytes,
                 "created_at": r.created_at.isoformat()}
                for r in records
            ])
        elif not records:
            print("no records (records create --name NAME --address ADDRESS)")
        for r in records if not args.json else ():
            print(f"{r.id}\t{r.display_name}\t{', '.join(r.addresses)}\t{r.size_bytes} bytes")
        return 0

    return run(args, body)


async def _record_id(records: RecordStore, given: str) -> int:
    if given.isdigit():
        if await records.record(int(given)) is None:
            raise AdminError(f"no record {given}")
        return int(given)
    found = await records.record_for_address(given)
    if found is None:
        raise AdminError(f"no record has the address {given}")
    return found


def item_json(item: ItemInfo) -> dict[str, Any]:
    """An item as ``records items --json`` (and the admin HTTP API) shows it."""
    return {
        "id": item.uid, "type": item.type.value, "content_type": item.content_type, "filename": item.filename,
        "size": item.size, "sha256": item.sha256, "sender": item.sender, "message_id": item.message_id,
        "received": item.created_at.isoformat(), "state": item.inbox_state.value,
        "source": item.source_kind.value, "data": item.data,
    }


def cmd_items(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        records = RecordStore(store)
        items = await records.items(await _record_id(records, args.record))
        if args.json:
            print_json([item_json(i) for i in items])
            return 0
        if not items:
            print("no items")
        for i in items:
            print(
                f"{i.uid}\t{i.type.value}\t{i.content_type or '-'}\t{i.filename or '-'}\t{i.size or 0}\t"
                f"{(i.sha256 or '-')[:16]}\t{i.sender or '-'}\t{i.created_at:%Y-%m-%d %H:%M:%S}\t{i.inbox_state.value}"
            )
        return 0

    return run(args, body)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    """A file name that stays in the export directory whatever the sender called it."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "item"
    return cleaned[:120]


def cmd_export(args: argparse.Namespace) -> int:
    directory: Path = args.directory

    async def body(store: Store) -> int:
        records = RecordStore(store)
        items = await records.items(await _record_id(records, args.record))
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AdminError(f"cannot create {directory}: {exc.strerror}") from exc
        written = 0
        for item in items:
            data = await records.blob(item.id)
            if data is None:
                continue
            target = directory / f"{item.uid[:8]}-{item.type.value}-{safe_name(item.filename or 'content')}"
            if target.exists():
                continue  # an earlier export: never overwrite
            target.write_bytes(data)
            written += 1
        print(f"wrote {written} of {len(items)} items to {directory}")
        return 0

    return run(args, body)


def _positive_limit(args: argparse.Namespace) -> None:
    if args.limit < 1:
        raise AdminUsageError(f"--limit {args.limit}: give a positive number")


async def list_messages(store: Store, *, direction: str | None, status: str | None, limit: int) -> list[Any]:
    """The newest ``limit`` messages (``messages list`` and the admin HTTP API)."""
    m = messaging.messages
    query = select(m.c.id, m.c.direction, m.c.kind, m.c.received_at, m.c.mail_from, m.c.sender, m.c.message_id,
                   m.c.subject, m.c.state, m.c.reason).order_by(m.c.id.desc()).limit(limit)
    if direction:
        query = query.where(m.c.direction == direction)
    if status:
        query = query.where(m.c.state == status)
    async with store.engine.connect() as conn:
        return list((await conn.execute(query)).all())


def cmd_messages_list(args: argparse.Namespace) -> int:

    async def body(store: Store) -> int:
        rows = await list_messages(store, direction=args.direction, status=args.status, limit=args.limit)
        watched = await delivery.tracked(store, [r.id for r in rows if r.direction == "out"])
        if args.json:
            print_json([{**row._asdict(), "received_at": row.received_at.isoformat(),
                         **delivery.list_json(watched.get(row.id, []))} for row in rows])
            return 0
        if not rows:
            print("no messages")
        for r in rows:
            print(f"{r.id}\t{r.direction}\t{r.kind}\t{r.received_at:%Y-%m-%d %H:%M:%S}\t{r.sender or r.mail_from}\t"
                  f"{r.state}{' (' + r.reason + ')' if r.reason else ''}\t{r.subject or ''}"
                  f"{delivery.list_text(watched.get(r.id, []))}")
        return 0

    return run(args, body, lambda: _positive_limit(args))


async def show_message(store: Store, message_id: int) -> dict[str, Any]:
    """One message with its recipients, outbound entries and audit trail, as JSON-ready values
    (``messages show`` and the admin HTTP API). Raises AdminError for an unknown id."""
    m, r, a, o = messaging.messages, messaging.message_recipients, messaging.audit, messaging.outbound
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(m).where(m.c.id == message_id))).first()
        if row is None:
            raise AdminError(f"no message {message_id}")
        recipients = (await conn.execute(select(r).where(r.c.message_id == message_id).order_by(r.c.id))).all()
        trail = (await conn.execute(select(a).where(a.c.message_id == message_id).order_by(a.c.id))).all()
        sends = (await conn.execute(select(o.c.id, o.c.kind, o.c.recipient, o.c.state, o.c.attempts, o.c.last_code,
                                           o.c.last_error).where(o.c.message_id == message_id).order_by(o.c.id))).all()
    watched = (await delivery.tracked(store, [message_id])).get(message_id, [])
    message = {k: v for k, v in row._asdict().items() if k != "raw"}
    return {
        "message": {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in message.items()},
        "recipients": [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in x._asdict().items()}
                       for x in recipients],
        "outbound": [x._asdict() for x in sends],
        "delivery": delivery.delivery(watched),
        "tracking": delivery.tracking_json(watched),
        "audit": [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in x._asdict().items()}
                  for x in trail],
    }


def cmd_messages_show(args: argparse.Namespace) -> int:
    async def body(store: Store) -> int:
        shown = await show_message(store, args.id)
        if args.json:
            print_json(shown)
            return 0
        msg = shown["message"]
        print(f"message {msg['id']} ({msg['direction']}, {msg['kind']}): {msg['state']}"
              f"{' - ' + str(msg['reason']) if msg['reason'] else ''}")
        print(f"  from {msg['sender'] or msg['mail_from']}  id {msg['message_id'] or '-'}  subject {msg['subject'] or '-'}")
        if msg["detail"]:
            print(f"  detail: {msg['detail']}")
        for x in shown["recipients"]:
            print(f"  to {x['recipient']}: {x['state']}{' - ' + str(x['reason']) if x['reason'] else ''}")
        for line in delivery.show_lines(shown):
            print(line)
        for x in shown["outbound"]:
            n = x["attempts"]
            tries = "no attempt yet" if not n else f"after {n} attempt{'' if n == 1 else 's'}"
            print(f"  outbound {x['id']} {x['kind']} to {x['recipient']}: {x['state']}, {tries}"
                  f"{' - ' + str(x['last_error']) if x['last_error'] else ''}")
        for x in shown["audit"]:
            print(f"  {x['at']} {x['event']}{' ' + str(x['recipient']) if x['recipient'] else ''}"
                  f"{' - ' + str(x['reason']) if x['reason'] else ''}")
        return 0

    return run(args, body)
