"""Packages: their states, and every operation on them (spec section 4, section 6's holding packages).

```
allocated --drop-off--> pending --right answer--> picked_up (one time; the envelope purged)
allocated|pending --28 days--> expired
pending --3rd consecutive wrong answer--> locked
any --DELETE--> deleted
```

The bridge holds only the envelope (``envelope.py``); the answer is its key,
so a wrong answer, a tampered ciphertext and an envelope moved to another
code all fail the same AES-GCM tag check and count the same: one attempt.
Redeeming reads the envelope, opens it and plans the items in a worker
thread (scrypt and XDM inflation stay off the event loop and out of any
transaction), then writes the items and ``picked_up`` in one transaction that
looks at the state again holding the row (``FOR UPDATE``), so two concurrent
redemptions import once.

Expired, locked and deleted envelopes are purged by ``sweep``, which the
service runs on an interval (``SWEEP_INTERVAL``); the row stays as the audit
trail. Holding packages (``PackageKind.HOLDING``) are messages to
``newuser@`` sealed by the bridge itself with the sender's answer, or with
the contact e-mail address when none was given.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, Update, select, update
from sqlalchemy.exc import IntegrityError

from gateway.store import Store

from .. import answers, documents
from ..codes import (
    CODE_LIFETIME,
    MAX_FAILURES,
    Code,
    Question,
    Refusal,
    Refused,
    WrongAnswer,
    code_hash,
    new_code,
)
from ..types import SourceKind
from . import content, envelope, importer
from .schema import packages as t

SWEEP_INTERVAL = timedelta(hours=1)
"""Dead envelopes are purged "within 24 h" (spec section 4); hourly leaves a wide margin."""
MAX_TEXT = 255
"""external_id, friendly_name, question: 1..255 characters (as connect requests, spec section 4)."""


class PackageState(enum.Enum):
    ALLOCATED = "allocated"
    PENDING = "pending"
    PICKED_UP = "picked_up"
    EXPIRED = "expired"
    LOCKED = "locked"
    DELETED = "deleted"


class PackageKind(enum.Enum):
    APP = "app"
    HOLDING = "holding"


def effective_state(state: PackageState, expires_at: datetime, at: datetime) -> PackageState:
    if state in (PackageState.ALLOCATED, PackageState.PENDING) and at > expires_at:
        return PackageState.EXPIRED
    return state


_REFUSALS = {
    PackageState.ALLOCATED: Refusal.INCOMPLETE,
    PackageState.PICKED_UP: Refusal.PICKED_UP,
    PackageState.EXPIRED: Refusal.EXPIRED,
    PackageState.LOCKED: Refusal.LOCKED,
    PackageState.DELETED: Refusal.UNKNOWN,
}


class PackageProblem(enum.Enum):
    INVALID_REQUEST = "invalid_request"
    INVALID_QUESTION = "invalid_question"
    INVALID_ANSWER = "invalid_answer"
    INVALID_ITEMS = "invalid_items"
    NOT_FOUND = "not_found"
    EXISTS = "package_exists"
    EXPIRED = "expired"


class PackageError(Exception):
    def __init__(self, problem: PackageProblem, detail: str) -> None:
        self.problem = problem
        self.detail = detail
        super().__init__(f"{problem.value}: {detail}")


@dataclass(frozen=True, slots=True)
class Created:
    id: int
    code: Code
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Redeemed:
    friendly_name: str | None
    imported: tuple[str, ...]
    """The uids of the items created, in order."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    """The envelope opened (the answer was right) but holds no valid items: the sender's fault,
    not an attempt; nothing is imported and the package stays as it is."""

    detail: str


@dataclass(frozen=True, slots=True)
class DropOff:
    """What an app says about a package, checked."""

    external_id: str
    friendly_name: str
    question: str

    @staticmethod
    def of(external_id: object, friendly_name: object, question: object) -> DropOff:
        return DropOff(
            _text(external_id, "external_id"), _text(friendly_name, "friendly_name"),
            _text(question, "question", PackageProblem.INVALID_QUESTION),
        )


def _text(value: object, name: str, problem: PackageProblem = PackageProblem.INVALID_REQUEST) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise PackageError(problem, f"{name} must be 1..{MAX_TEXT} characters, not blank")
    return value


class Packages:
    def __init__(self, store: Store, pepper: bytes, kdf: answers.Derivations | None = None) -> None:
        self.store = store
        self.pepper = pepper
        self.kdf = kdf or answers.Derivations()

    # ------------------------------------------------------------------ the app's side

    async def allocate(self, client_id: str, *, at: datetime) -> Created:
        code = new_code()
        expires = at + CODE_LIFETIME

        def insert(conn: Connection) -> int:
            return int(conn.execute(t.insert().returning(t.c.id).values(
                kind=PackageKind.APP.value, client_id=client_id, code_hash=code_hash(self.pepper, code),
                state=PackageState.ALLOCATED.value, failures=0, created_at=at, expires_at=expires,
            )).scalar_one())

        return Created(await self.store.run(insert), code, expires)

    async def drop_off(self, client_id: str, code: Code, about: DropOff, env: envelope.Envelope, *, at: datetime) -> Created:
        """An app-sealed envelope into the package it allocated (the envelope is bound to that code)."""
        data = env.to_bytes()

        def fill(conn: Connection) -> Created:
            row = self._allocated(conn, client_id, code, at, lock=True)
            expires = at + CODE_LIFETIME
            conn.execute(update(t).where(t.c.id == row.id).values(
                external_id=about.external_id, friendly_name=about.friendly_name, question=about.question,
                envelope=data, state=PackageState.PENDING.value, created_at=at, expires_at=expires,
            ))
            return Created(row.id, code, expires)

        return await self.store.run(fill)

    async def drop_off_sealing(
        self, client_id: str, code: Code | None, about: DropOff, answer: object, items: object, *, at: datetime,
    ) -> Created:
        """Convenience mode: the bridge seals ``items`` under ``answer`` itself. The answer lives only
        in this call's memory (normalised into a bytearray that is zeroed after the derivation; the
        ``str`` the JSON parser made cannot be wiped, which is why sealing on the app's side is preferred)."""
        if not isinstance(answer, str):
            raise PackageError(PackageProblem.INVALID_ANSWER, "answer must be a string")
        try:
            normalized = answers.checked(answer)
        except answers.InvalidAnswer as exc:
            raise PackageError(PackageProblem.INVALID_ANSWER, str(exc)) from None
        try:
            parsed = content.items_from_json(items)
        except content.ContentError as exc:
            raise PackageError(PackageProblem.INVALID_ITEMS, str(exc)) from None
        if code is None:
            code = new_code()
            fresh = True
        else:
            await self.store.read(lambda conn: self._allocated(conn, client_id, code, at))
            fresh = False
        env = await self.kdf.run(_seal, content.encode_plaintext(parsed), normalized, code, client_id)
        if not fresh:
            return await self.drop_off(client_id, code, about, env, at=at)
        return await self._insert(PackageKind.APP, client_id, code, about.external_id, about.friendly_name,
                                  about.question, env, at)

    async def hold(
        self, client_id: str, question: str, verifier: str, message: importer.InboundMessage, *, at: datetime,
    ) -> Created:
        """A holding package (spec section 6): ``message`` sealed under ``verifier`` (the sender's
        answer, or the contact e-mail address), for whoever has the code and the verifier."""
        code = new_code()
        plaintext = _holding_plaintext(message)
        env = await self.kdf.run(_seal, plaintext, answers.normalize(verifier), code, client_id)
        return await self._insert(PackageKind.HOLDING, client_id, code, None, f"Message from {message.sender}"[:MAX_TEXT],
                                  question, env, at)

    async def delete(self, client_id: str, code: Code, *, at: datetime) -> None:
        def delete(conn: Connection) -> None:
            done = conn.execute(_deleting(at).where(
                t.c.client_id == client_id, t.c.code_hash == code_hash(self.pepper, code),
                t.c.kind == PackageKind.APP.value, t.c.state != PackageState.DELETED.value,
            )).rowcount
            if not done:
                raise PackageError(PackageProblem.NOT_FOUND, "no such package")

        await self.store.run(delete)

    async def delete_external(self, client_id: str, external_id: str, *, at: datetime) -> int:
        def delete(conn: Connection) -> int:
            done = int(conn.execute(_deleting(at).where(
                t.c.client_id == client_id, t.c.external_id == external_id,
                t.c.kind == PackageKind.APP.value, t.c.state != PackageState.DELETED.value,
            )).rowcount)
            if not done:
                raise PackageError(PackageProblem.NOT_FOUND, "no package has this external_id")
            return done

        return await self.store.run(delete)

    async def rename(self, client_id: str, code: Code, new_external_id: object) -> None:
        new = _text(new_external_id, "new_external_id")

        def rename(conn: Connection) -> None:
            done = conn.execute(update(t).where(
                t.c.client_id == client_id, t.c.code_hash == code_hash(self.pepper, code),
                t.c.kind == PackageKind.APP.value, t.c.state != PackageState.DELETED.value,
            ).values(external_id=new)).rowcount
            if not done:
                raise PackageError(PackageProblem.NOT_FOUND, "no such package")

        await self.store.run(rename)

    # ------------------------------------------------------------------ the patient's side

    async def lookup(self, code: Code, *, at: datetime) -> Question | Refused:
        row = await self.store.read(lambda conn: self._by_code(conn, code))
        refused = _refusal(row, at)
        if refused is not None:
            return refused
        assert row is not None
        return Question(row.question)

    async def redeem(
        self, code: Code, answer: str, person_id: int, record_id: int, *, at: datetime,
    ) -> Redeemed | WrongAnswer | Refused | Unreadable:
        """Opens the package with ``answer`` and imports its items into ``record_id`` (which the
        caller checked ``person_id`` may write). No grant is created."""
        row = await self.store.read(lambda conn: self._by_code(conn, code))
        refused = _refusal(row, at)
        if refused is not None:
            return refused
        assert row is not None and row.envelope is not None
        opened = await self.kdf.run(_open_and_plan, PackageKind(row.kind), bytes(row.envelope), answer, code,
                                         row.client_id)

        def finish(conn: Connection) -> Redeemed | WrongAnswer | Refused | Unreadable:
            now = conn.execute(select(t).where(t.c.id == row.id).with_for_update()).one()
            again = _refusal(now, at)
            if again is not None:
                return again
            if opened is None:
                failures = now.failures + 1
                values: dict[str, Any] = {"failures": failures}
                if failures >= MAX_FAILURES:
                    values["state"] = PackageState.LOCKED.value
                conn.execute(update(t).where(t.c.id == row.id).values(**values))
                return WrongAnswer(max(0, MAX_FAILURES - failures))
            if isinstance(opened, Unreadable):
                return opened
            message, plans = opened
            source = importer.Source(SourceKind.PACKAGE, str(row.id), row.client_id,
                                     sender=message.sender if message is not None else None)
            writer = importer.ItemWriter(conn, record_id, source, at)
            if message is not None:
                importer.write_message(writer, message, plans)
            else:
                for planned in plans:
                    for item in planned:
                        writer.planned(item)
            imported = writer.finish()
            conn.execute(update(t).where(t.c.id == row.id).values(
                state=PackageState.PICKED_UP.value, failures=0, picked_up_at=at, picked_up_by=person_id,
                record_id=record_id, item_count=len(imported), envelope=None, purged_at=at,
            ))
            return Redeemed(now.friendly_name, imported)

        return await self.store.run(finish)

    # ------------------------------------------------------------------ housekeeping

    async def sweep(self, *, at: datetime) -> int:
        """Writes down expiry and purges the envelopes of expired, locked and deleted packages.
        Returns how many envelopes were purged."""

        def sweep(conn: Connection) -> int:
            conn.execute(update(t).where(
                t.c.state.in_((PackageState.ALLOCATED.value, PackageState.PENDING.value)), t.c.expires_at < at,
            ).values(state=PackageState.EXPIRED.value))
            return int(conn.execute(update(t).where(
                t.c.state.in_((PackageState.EXPIRED.value, PackageState.LOCKED.value, PackageState.DELETED.value)),
                t.c.envelope.is_not(None),
            ).values(envelope=None, purged_at=at)).rowcount)

        return await self.store.run(sweep)

    # ------------------------------------------------------------------ rows

    def _by_code(self, conn: Connection, code: Code, *, lock: bool = False) -> Row[Any] | None:
        query = select(t).where(t.c.code_hash == code_hash(self.pepper, code))
        return conn.execute(query.with_for_update() if lock else query).first()

    def _allocated(self, conn: Connection, client_id: str, code: Code, at: datetime, *, lock: bool = False) -> Row[Any]:
        row = self._by_code(conn, code, lock=lock)
        if row is None or row.client_id != client_id or row.kind != PackageKind.APP.value \
                or row.state == PackageState.DELETED.value:
            raise PackageError(PackageProblem.NOT_FOUND, "no package was allocated with this code")
        state = effective_state(PackageState(row.state), row.expires_at, at)
        if state is PackageState.EXPIRED:
            raise PackageError(PackageProblem.EXPIRED, "the allocated code has expired")
        if state is not PackageState.ALLOCATED:
            raise PackageError(PackageProblem.EXISTS, "a package was dropped off with this code already")
        return row

    async def _insert(
        self, kind: PackageKind, client_id: str, code: Code, external_id: str | None, friendly_name: str,
        question: str, env: envelope.Envelope, at: datetime,
    ) -> Created:
        expires = at + CODE_LIFETIME

        def insert(conn: Connection) -> int:
            return int(conn.execute(t.insert().returning(t.c.id).values(
                kind=kind.value, client_id=client_id, external_id=external_id, friendly_name=friendly_name,
                question=question, code_hash=code_hash(self.pepper, code), envelope=env.to_bytes(),
                state=PackageState.PENDING.value, failures=0, created_at=at, expires_at=expires,
            )).scalar_one())

        try:
            return Created(await self.store.run(insert), code, expires)
        except IntegrityError:
            raise PackageError(PackageProblem.EXISTS, "code collision; try again") from None


def _deleting(at: datetime) -> Update:
    return update(t).values(state=PackageState.DELETED.value, deleted_at=at, envelope=None, purged_at=at)


def _refusal(row: Row[Any] | None, at: datetime) -> Refused | None:
    if row is None:
        return Refused(Refusal.UNKNOWN)
    reason = _REFUSALS.get(effective_state(PackageState(row.state), row.expires_at, at))
    if reason is None and row.envelope is None:
        reason = Refusal.UNKNOWN
    return Refused(reason) if reason is not None else None


def _seal(plaintext: bytes, normalized: str, code: Code, client_id: str) -> envelope.Envelope:
    secret = bytearray(normalized.encode("utf-8"))
    try:
        return envelope.seal(plaintext, secret, code_canonical=code.canonical, client_id=client_id)
    finally:
        secret[:] = bytes(len(secret))


Plans = tuple[tuple[documents.PlannedItem, ...], ...]


def _open_and_plan(
    kind: PackageKind, raw: bytes, answer: str, code: Code, client_id: str,
) -> tuple[importer.InboundMessage | None, Plans] | Unreadable | None:
    """None for a wrong key; the items planned otherwise (runs in a worker thread)."""
    try:
        plaintext = envelope.open_envelope(envelope.from_bytes(raw), answer, code_canonical=code.canonical,
                                           client_id=client_id)
    except envelope.WrongKey:
        return None
    try:
        if kind is PackageKind.HOLDING:
            message = _holding_message(plaintext)
            return message, importer.plan_message(message)
        items = content.decode_plaintext(plaintext)
    except content.ContentError as exc:
        return Unreadable(str(exc))
    return None, tuple(importer.plan(i.content_type, i.filename, i.data, i.title) for i in items)


# --------------------------------------------------------------------------- holding packages' plaintext


def _holding_plaintext(message: importer.InboundMessage) -> bytes:
    """``{"items": [attachments...], "message": {...}}``: the same items shape as an app's package."""
    doc = {
        "items": [a.to_json() for a in message.attachments],
        "message": {
            "from": message.sender, "to": message.to, "subject": message.subject,
            "received_at": message.received_at.isoformat(), "body_text": message.body_text,
            "body_html": message.body_html,
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def _holding_message(plaintext: bytes) -> importer.InboundMessage:
    try:
        doc = json.loads(plaintext.decode("utf-8"))
        m = doc["message"]
        attachments: Sequence[content.PackageItem] = (
            tuple(content.item_from_json(x) for x in doc["items"]) if doc["items"] else ()
        )
        return importer.InboundMessage(
            sender=str(m["from"]), to=str(m["to"]), subject=str(m["subject"]),
            received_at=datetime.fromisoformat(m["received_at"]), body_text=m["body_text"], body_html=m["body_html"],
            attachments=tuple(attachments),
        )
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise content.ContentError(f"not a holding package: {exc}") from None
