"""Connect requests: their states, and every operation on them (spec section 3).

```
pending --authorize--> authorized --authorize again--> authorized (retrievable_until reset)
pending --28 days--> expired
pending|authorized --3rd consecutive wrong answer--> locked
any --DELETE--> deleted (the code and the verifier are destroyed)
```

Expiry needs no timer: a pending request whose ``expires_at`` has passed *is*
expired (``expires_at``, ``retrievable_until`` and a ticket's expiry are the last instants
that still count: 28 days + 1 s is expired) (``effective_state``); the purge sweep only writes that down and
clears the verifier. An authorized request stays usable (code and answer)
until deleted or locked, as HealthVault's were; it leaves the app's
"authorized" list ``RETRIEVAL_WINDOW`` after its last authorization, while the
grant it created lives on.

Answering is two steps so that scrypt never runs inside a transaction or on
the event loop: read the verifier, derive in a worker thread, then count the
outcome in a write transaction that looks at the state again, holding the row
(``FOR UPDATE`` on PostgreSQL; SQLite has one writer and renders nothing), so
parallel guesses are counted one after the other. A request
locked meanwhile (parallel guesses) refuses even the right answer.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, Row, and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from gateway.store import Store

from .. import answers
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
from .schema import connect_requests as t

RETRIEVAL_WINDOW = timedelta(days=90)
"""An authorized request is listed to its app for 90 days after (re)authorization (spec section 3)."""
TICKET_LIFETIME = timedelta(minutes=5)
"""A verified answer is good for one authorization within five minutes (spec section 3)."""
MAX_TEXT = 255
"""external_id, friendly_name and question: 1..255 characters (spec section 3)."""
MAX_PAGE = 500
DEFAULT_PAGE = 100
"""Pages of the authorized list, as /v1/authorized-people's (spec section 2)."""


class ConnectState(enum.Enum):
    PENDING = "pending"
    AUTHORIZED = "authorized"
    EXPIRED = "expired"
    LOCKED = "locked"
    DELETED = "deleted"


def effective_state(state: ConnectState, expires_at: datetime, at: datetime) -> ConnectState:
    if state is ConnectState.PENDING and at > expires_at:
        return ConnectState.EXPIRED
    return state


_REFUSALS = {
    ConnectState.EXPIRED: Refusal.EXPIRED,
    ConnectState.LOCKED: Refusal.LOCKED,
    ConnectState.DELETED: Refusal.UNKNOWN,
}


class ConnectProblem(enum.Enum):
    INVALID_REQUEST = "invalid_request"
    INVALID_QUESTION = "invalid_question"
    INVALID_ANSWER = "invalid_answer"
    DUPLICATE_EXTERNAL_ID = "duplicate_external_id"
    NOT_FOUND = "not_found"


class ConnectError(Exception):
    def __init__(self, problem: ConnectProblem, detail: str) -> None:
        self.problem = problem
        self.detail = detail
        super().__init__(f"{problem.value}: {detail}")


@dataclass(frozen=True, slots=True)
class Created:
    code: Code
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Verified:
    ticket: str
    friendly_name: str


@dataclass(frozen=True, slots=True)
class Ticketed:
    """What a valid ticket stands for, read before authorizing (the client's scopes come from it)."""

    request_id: int
    client_id: str
    friendly_name: str


@dataclass(frozen=True, slots=True)
class Authorized:
    grant_id: int
    again: bool
    """The same record and client were authorized before (idempotent, HV 84 handled gracefully)."""
    friendly_name: str = ""


@dataclass(frozen=True, slots=True)
class AuthorizedRequest:
    id: int
    external_id: str
    person_id: int
    record_id: int
    client_record_id: str
    authorized_at: datetime


GrantWriter = Callable[[Connection, str, int, int, datetime], tuple[int, bool]]
"""``(conn, client_id, person_id, record_id, at) -> (grant id, existed already)``: creates or renews the
offline grant inside the authorizing transaction (the OAuth module's grants)."""


def _text(value: object, name: str, problem: ConnectProblem = ConnectProblem.INVALID_REQUEST) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise ConnectError(problem, f"{name} must be 1..{MAX_TEXT} characters, not blank")
    return value


def _ticket_hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode("utf-8")).hexdigest()


class ConnectRequests:
    def __init__(self, store: Store, pepper: bytes, kdf: answers.Derivations | None = None) -> None:
        self.store = store
        self.pepper = pepper
        self.kdf = kdf or answers.Derivations()

    # ------------------------------------------------------------------ the app's side

    async def create(
        self, client_id: str, external_id: object, friendly_name: object, question: object, answer: object,
        *, at: datetime,
    ) -> Created:
        ext = _text(external_id, "external_id")
        name = _text(friendly_name, "friendly_name")
        q = _text(question, "question", ConnectProblem.INVALID_QUESTION)
        if not isinstance(answer, str):
            raise ConnectError(ConnectProblem.INVALID_ANSWER, "answer must be a string")
        try:
            verifier = await self.kdf.run(answers.hash_answer, answer)
        except answers.InvalidAnswer as exc:
            raise ConnectError(ConnectProblem.INVALID_ANSWER, str(exc)) from None
        code = new_code()
        expires = at + CODE_LIFETIME

        def insert(conn: Connection) -> None:
            _expire_due(conn, at, client_id=client_id, external_id=ext)
            if conn.scalar(select(t.c.id).where(_live(client_id, ext))) is not None:
                raise ConnectError(ConnectProblem.DUPLICATE_EXTERNAL_ID, "a pending or authorized request has this external_id")
            conn.execute(t.insert().values(
                client_id=client_id, external_id=ext, friendly_name=name, question=q,
                code_hash=code_hash(self.pepper, code), answer_salt=verifier.salt, answer_hash=verifier.digest,
                state=ConnectState.PENDING.value, failures=0, created_at=at, expires_at=expires,
            ))

        try:
            await self.store.run(insert)
        except IntegrityError:
            # a concurrent create for the same external_id won (the live index); a code collision
            # (2**-86) would land here too and is reported the same: the app retries
            raise ConnectError(ConnectProblem.DUPLICATE_EXTERNAL_ID, "a pending or authorized request has this external_id") from None
        return Created(code, expires)

    async def delete(self, client_id: str, external_id: str, *, at: datetime) -> None:
        """Deletes the live request for ``external_id`` (else the latest one), destroying its code."""

        def delete(conn: Connection) -> None:
            row = conn.execute(
                select(t.c.id).where(t.c.client_id == client_id, t.c.external_id == external_id,
                                     t.c.state != ConnectState.DELETED.value)
                .order_by(t.c.id.desc()).limit(1)
            ).first()
            if row is None:
                raise ConnectError(ConnectProblem.NOT_FOUND, "no such connect request")
            conn.execute(update(t).where(t.c.id == row.id).values(
                state=ConnectState.DELETED.value, deleted_at=at, code_hash=None, answer_salt=None,
                answer_hash=None, ticket_hash=None, ticket_person_id=None, ticket_expires_at=None,
            ))

        await self.store.run(delete)

    async def rename(self, client_id: str, external_id: str, new_external_id: object, *, at: datetime) -> None:
        new = _text(new_external_id, "new_external_id")

        def rename(conn: Connection) -> None:
            _expire_due(conn, at, client_id=client_id, external_id=external_id)
            _expire_due(conn, at, client_id=client_id, external_id=new)
            row = conn.execute(
                select(t.c.id, t.c.state).where(t.c.client_id == client_id, t.c.external_id == external_id,
                                                t.c.state != ConnectState.DELETED.value)
                .order_by(t.c.id.desc()).limit(1)
            ).first()
            if row is None:
                raise ConnectError(ConnectProblem.NOT_FOUND, "no such connect request")
            if new != external_id and row.state in (ConnectState.PENDING.value, ConnectState.AUTHORIZED.value) and (
                conn.scalar(select(t.c.id).where(_live(client_id, new))) is not None
            ):
                raise ConnectError(ConnectProblem.DUPLICATE_EXTERNAL_ID, "a pending or authorized request has new_external_id")
            conn.execute(update(t).where(t.c.id == row.id).values(external_id=new))

        try:
            await self.store.run(rename)
        except IntegrityError:
            raise ConnectError(ConnectProblem.DUPLICATE_EXTERNAL_ID, "a pending or authorized request has new_external_id") from None

    async def authorized(
        self, client_id: str, *, since: datetime | None, after_id: int | None = None, limit: int = DEFAULT_PAGE,
        at: datetime,
    ) -> tuple[list[AuthorizedRequest], bool]:
        """Requests authorized after ``since`` and still within their retrieval window, oldest first.

        Paged by (authorized_at, id): ``after_id`` continues after that request. Returns the page and
        whether more follow."""
        limit = max(1, min(limit, MAX_PAGE))

        def read(conn: Connection) -> tuple[list[AuthorizedRequest], bool]:
            query = select(t).where(
                t.c.client_id == client_id, t.c.state == ConnectState.AUTHORIZED.value, t.c.retrievable_until >= at,
            )
            if since is not None:
                query = query.where(t.c.authorized_at > since)
            if after_id is not None:
                anchor = conn.scalar(select(t.c.authorized_at).where(t.c.id == after_id, t.c.client_id == client_id))
                if anchor is not None:
                    query = query.where(or_(t.c.authorized_at > anchor, and_(t.c.authorized_at == anchor, t.c.id > after_id)))
            rows = conn.execute(query.order_by(t.c.authorized_at, t.c.id).limit(limit + 1)).all()
            return [
                AuthorizedRequest(r.id, r.external_id, r.person_id, r.record_id, str(r.grant_id), r.authorized_at)
                for r in rows[:limit]
            ], len(rows) > limit

        return await self.store.read(read)

    # ------------------------------------------------------------------ the patient's side

    async def lookup(self, code: Code, *, at: datetime) -> Question | Refused:
        row = await self.store.read(lambda conn: self._by_code(conn, code))
        refused = _refusal(row, at)
        if refused is not None:
            return refused
        assert row is not None
        return Question(row.question)

    async def verify(self, code: Code, answer: str, person_id: int, *, at: datetime) -> Verified | WrongAnswer | Refused:
        row = await self.store.read(lambda conn: self._by_code(conn, code))
        refused = _refusal(row, at)
        if refused is not None:
            return refused
        assert row is not None and row.answer_salt is not None and row.answer_hash is not None
        right = await self.kdf.run(
            answers.verify, answer, answers.AnswerHash(bytes(row.answer_salt), bytes(row.answer_hash))
        )
        ticket = secrets.token_urlsafe(32)

        def count(conn: Connection) -> Verified | WrongAnswer | Refused:
            now = conn.execute(select(t).where(t.c.id == row.id).with_for_update()).one()
            again = _refusal(now, at)
            if again is not None:
                return again
            if not right:
                failures = now.failures + 1
                values: dict[str, object] = {"failures": failures}
                if failures >= MAX_FAILURES:
                    values.update(state=ConnectState.LOCKED.value, ticket_hash=None, ticket_person_id=None)
                conn.execute(update(t).where(t.c.id == row.id).values(**values))
                return WrongAnswer(max(0, MAX_FAILURES - failures))
            conn.execute(update(t).where(t.c.id == row.id).values(
                failures=0, ticket_hash=_ticket_hash(ticket), ticket_person_id=person_id,
                ticket_expires_at=at + TICKET_LIFETIME,
            ))
            return Verified(ticket, now.friendly_name)

        return await self.store.run(count)

    async def ticket(self, ticket: str, person_id: int, *, at: datetime) -> Ticketed | None:
        """What a ticket stands for, if it is valid for this person now (it stays unused)."""
        row = await self.store.read(lambda conn: self._by_ticket(conn, ticket))
        if not _ticket_valid(row, person_id, at):
            return None
        assert row is not None
        return Ticketed(row.id, row.client_id, row.friendly_name)

    async def authorize(
        self, ticket: str, person_id: int, record_id: int, grant: GrantWriter, *, at: datetime,
    ) -> Authorized | None:
        """Uses the ticket (once): creates or renews the grant and marks the request authorized.
        None when the ticket is unknown, used, expired, someone else's, or its request is no
        longer live."""

        def authorize(conn: Connection) -> Authorized | None:
            row = self._by_ticket(conn, ticket, lock=True)
            if not _ticket_valid(row, person_id, at):
                return None
            assert row is not None
            grant_id, existed = grant(conn, row.client_id, person_id, record_id, at)
            again = existed and row.state == ConnectState.AUTHORIZED.value and row.record_id == record_id
            conn.execute(update(t).where(t.c.id == row.id).values(
                state=ConnectState.AUTHORIZED.value, authorized_at=at, retrievable_until=at + RETRIEVAL_WINDOW,
                person_id=person_id, record_id=record_id, grant_id=grant_id,
                ticket_hash=None, ticket_person_id=None, ticket_expires_at=None,
            ))
            return Authorized(grant_id, again, row.friendly_name)

        return await self.store.run(authorize)

    # ------------------------------------------------------------------ housekeeping

    async def sweep(self, *, at: datetime) -> int:
        """Writes down expiry and destroys the verifiers of expired and locked requests (their
        codes' hashes stay, so a late visitor is told "expired" or "locked", not "unknown")."""

        def sweep(conn: Connection) -> int:
            expired = _expire_due(conn, at)
            conn.execute(update(t).where(
                t.c.state.in_((ConnectState.EXPIRED.value, ConnectState.LOCKED.value)),
                t.c.answer_hash.is_not(None),
            ).values(answer_salt=None, answer_hash=None, ticket_hash=None, ticket_person_id=None, ticket_expires_at=None))
            return expired

        return await self.store.run(sweep)

    # ------------------------------------------------------------------ rows

    def _by_code(self, conn: Connection, code: Code) -> Row | None:
        return conn.execute(select(t).where(t.c.code_hash == code_hash(self.pepper, code))).first()

    @staticmethod
    def _by_ticket(conn: Connection, ticket: str, *, lock: bool = False) -> Row | None:
        query = select(t).where(t.c.ticket_hash == _ticket_hash(ticket))
        return conn.execute(query.with_for_update() if lock else query).first()


def _live(client_id: str, external_id: str) -> ColumnElement[bool]:
    return and_(t.c.client_id == client_id, t.c.external_id == external_id,
                t.c.state.in_((ConnectState.PENDING.value, ConnectState.AUTHORIZED.value)))


def _expire_due(conn: Connection, at: datetime, *, client_id: str | None = None, external_id: str | None = None) -> int:
    """Pending requests past their expiry become ``expired`` (so they leave the live index)."""
    query = update(t).where(t.c.state == ConnectState.PENDING.value, t.c.expires_at < at)
    if client_id is not None:
        query = query.where(t.c.client_id == client_id, t.c.external_id == external_id)
    return conn.execute(query.values(state=ConnectState.EXPIRED.value)).rowcount


def _refusal(row: Row | None, at: datetime) -> Refused | None:
    if row is None:
        return Refused(Refusal.UNKNOWN)
    state = effective_state(ConnectState(row.state), row.expires_at, at)
    reason = _REFUSALS.get(state)
    if reason is None and row.answer_hash is None:
        reason = Refusal.UNKNOWN  # cannot happen for a live request; refuse rather than guess
    return Refused(reason) if reason is not None else None


def _ticket_valid(row: Row | None, person_id: int, at: datetime) -> bool:
    if row is None or row.ticket_person_id != person_id or row.ticket_expires_at is None or at > row.ticket_expires_at:
        return False
    return effective_state(ConnectState(row.state), row.expires_at, at) in (ConnectState.PENDING, ConnectState.AUTHORIZED)


