"""Hot statements run on the driver's cursor: compiled by SQLAlchemy once per dialect, then
executed without SQLAlchemy's per-execution machinery.

An accepted message costs a dozen statements in one transaction. Through
``Connection.execute`` each paid 25-90 us of CPU in SQLAlchemy (cache-key
lookup, execution context, result proxy) against about 7 us on the driver's
cursor (bench figures in docs/receive.md). A ``Prepared`` statement is the
same Core construct, compiled by SQLAlchemy for the connection's dialect (so
the SQL text, the parameter style and every column type's bind processing are
SQLAlchemy's, for SQLite and PostgreSQL alike), and run on the DBAPI cursor
of the transaction's own connection. Driver errors are raised as SQLAlchemy's
(``IntegrityError``, ``OperationalError``...), as ``Connection.execute`` would.

Statements that return rows (SELECT, ``RETURNING``) can be read back through
``rows``: each column converted by its type's result processing, as SQLAlchemy's
own result would (SQLite hands timestamps back as text), as named tuples.

Only for fixed statements on hot paths; everything else uses ``Connection.execute``.
A list parameter (``IN``) has no fixed shape: build one ``Prepared`` per length
(``functools.lru_cache`` over the length), each with its own ``bindparam``s.

**Writes whose result nothing reads** (an audit row, a blob, a counter) can be
given with ``later``/``later_many``. On SQLite they run at once (no round trip
to save). On PostgreSQL each statement is a round trip to the server (twelve
per accepted message before this), and each costs CPU on both sides (docs/receive.md); so
there they wait on the connection and go together as one statement, data-
modifying CTEs (``WITH w0 AS (INSERT ...), w1 AS (UPDATE ...) SELECT 1``),
just before the next statement of the transaction or its COMMIT, whichever
comes first: ``Prepared``'s own statements flush first, SQLAlchemy's
(``Connection.execute``) through ``flush_on_use``'s engine events, and
``Store.run`` flushes when the work returns. So a read, in the same
transaction, always sees every write given before it; what changes is only
that the writes of one group run in one statement (one snapshot): a group
holds one statement per table (rows of one INSERT join its VALUES list, in
the order given, so ids keep that order; no row is updated twice), and an error of a deferred
write (a constraint) is raised by the statement that flushes it, still
inside the transaction, which then rolls back whole.
"""

from __future__ import annotations

import collections
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event, exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.sql import Executable

LATER = "directgw.later"
"""Key of the deferred writes in the connection's ``info``: (SQL, parameters) in order."""

MAX_GROUP_PARAMETERS = 30_000
"""Parameters in one flushed statement at most (the PostgreSQL protocol allows 32767)."""

_PLACEHOLDER = re.compile(r"\$(\d+)")


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    defaults: dict[str, Any]
    """Values of the statement's own literals (``state == "queued"``, SQLite's ``OFFSET 0``)."""
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]
    """(position, processor) for the parameters whose type converts them."""
    row: Callable[..., tuple[Any, ...]] | None
    """What ``rows`` makes of a result row (None: the statement returns none)."""
    results: tuple[tuple[int, Callable[[Any], Any]], ...]
    """(position, processor) for the result columns whose type converts them."""


class Prepared:
    """``statement`` with its parameters named by ``keys`` (the columns an insert sets, or
    the names of its ``bindparam``s), compiled once per dialect."""

    def __init__(self, statement: Executable, keys: Sequence[str] = ()) -> None:
        self._statement = statement
        self._keys = list(keys)
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self._statement.compile(dialect=dialect, column_keys=self._keys or None)  # type: ignore[attr-defined]
            names = tuple(compiled.positiontup or ())
            binds = compiled.binds
            processors = tuple(
                (position, process)
                for position, name in enumerate(names)
                if name in binds
                and (process := binds[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None
            )
            columns = getattr(compiled, "_result_columns", None) or []
            row = collections.namedtuple("Row", [c.keyname for c in columns]) if columns else None
            results = tuple(
                (position, process)
                for position, column in enumerate(columns)
                if (process := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None
            )
            defaults = {name: binds[name].effective_value for name in names
                        if name in binds and not binds[name].required}
            found = self._compiled[dialect.name] = _Compiled(str(compiled), names, defaults, processors, row, results)
        return found

    def _row(self, compiled: _Compiled, params: Mapping[str, Any]) -> tuple[Any, ...]:
        defaults = compiled.defaults
        row = [params[name] if name in params else defaults[name] for name in compiled.names]
        for position, process in compiled.processors:
            row[position] = process(row[position])
        return tuple(row)

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """Run once; the driver's cursor, for ``fetchone()`` of a RETURNING or SELECT."""
        compiled = self._for(conn.dialect)
        sql, row = compiled.sql, self._row(compiled, params)
        pending = conn.info.get(LATER)
        if pending:
            sql, row = _carrying(conn, pending, sql, row)
        cursor = _cursor(conn)
        try:
            cursor.execute(sql, row)
        except conn.dialect.loaded_dbapi.Error as error:
            raise _translated(conn, sql, row, error) from error
        return cursor

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        cursor = self.execute(conn, params)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        return tuple(row) if row is not None else None

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Every row the statement returns, its columns converted as SQLAlchemy's result would,
        as named tuples (``row.id``, ``row._asdict()``)."""
        compiled = self._for(conn.dialect)
        if compiled.row is None:
            raise TypeError("rows() of a statement that returns none")
        cursor = self.execute(conn, params)
        try:
            fetched = cursor.fetchall()
        finally:
            cursor.close()
        make, results = compiled.row, compiled.results
        if not results:
            return [make(*r) for r in fetched]
        out = []
        for r in fetched:
            values = list(r)
            for position, process in results:
                values[position] = process(values[position])
            out.append(make(*values))
        return out

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        row = self.first(conn, params)
        return row[0] if row is not None else None

    def run(self, conn: Connection, params: Mapping[str, Any]) -> None:
        self.execute(conn, params).close()

    def later(self, conn: Connection, params: Mapping[str, Any]) -> None:
        """A write nothing in this transaction reads the result of: at once on SQLite, with the
        transaction's next statement or its COMMIT on PostgreSQL (see the module's docstring)."""
        self.later_many(conn, (params,))

    def later_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        compiled = self._for(conn.dialect)
        shape = _Deferrable.of(compiled.sql) if conn.dialect.paramstyle == "numeric_dollar" else None
        if shape is None or (not shape.insert and len(rows) > 1):  # several UPDATEs: as given, now
            if len(rows) == 1:
                self.run(conn, rows[0])
            else:
                self.run_many(conn, rows)
            return
        values = [self._row(compiled, params) for params in rows]
        pending: list[_Waiting] | None = conn.info.get(LATER)
        if pending:
            last = pending[-1]
            if last.shape is shape and shape.insert:  # more rows of the same INSERT: its VALUES list
                last.rows.extend(values)
                return
            if any(w.shape.table == shape.table for w in pending):
                # one statement per table in a group: the rows of a table keep the order they
                # were given in (ids, the audit trail), and no row is updated twice in one statement
                flush_later(conn)
        conn.info.setdefault(LATER, []).append(_Waiting(shape, values))

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        flush_later(conn)
        compiled = self._for(conn.dialect)
        values = [self._row(compiled, params) for params in rows]
        cursor = _cursor(conn)
        try:
            cursor.executemany(compiled.sql, values)
        except conn.dialect.loaded_dbapi.Error as error:
            raise _translated(conn, compiled.sql, values, error) from error
        finally:
            cursor.close()


@dataclass(frozen=True, slots=True)
class _Deferrable:
    """A statement ``later`` can hold back: an INSERT of one row (whose VALUES tuple repeats
    for more) or an UPDATE, with ``$n`` placeholders (asyncpg) and no quoted literal (a ``$``
    inside one would not be a placeholder)."""

    table: str
    insert: bool
    head: str
    """The INSERT up to its VALUES tuple, or the whole UPDATE."""
    values: str
    """The INSERT's one VALUES tuple, parenthesised (empty for an UPDATE)."""
    tail: str
    width: int
    """Placeholders in one row."""

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def of(sql: str) -> _Deferrable | None:
        if "'" in sql:
            return None
        words = sql.split(None, 3)
        width = len(set(_PLACEHOLDER.findall(sql)))
        if words[:2] == ["INSERT", "INTO"] and len(words) > 2:
            at = sql.find(" VALUES (")
            if at < 0:
                return None
            begin = at + len(" VALUES ")
            depth, end = 0, begin
            for end in range(begin, len(sql)):
                depth += {"(": 1, ")": -1}.get(sql[end], 0)
                if depth == 0:
                    break
            return _Deferrable(words[2], True, sql[:begin], sql[begin:end + 1], sql[end + 1:], width)
        if words[:1] == ["UPDATE"] and len(words) > 1:
            return _Deferrable(words[1], False, sql, "", "", width)
        return None


@dataclass(slots=True)
class _Waiting:
    shape: _Deferrable
    rows: list[tuple[Any, ...]]


def flush_later(conn: Connection) -> None:
    """Run the writes ``later`` left on this connection: one statement for all of them
    (data-modifying CTEs, INSERT rows as one VALUES list), unless their parameters
    outnumber what one statement may carry."""
    pending: list[_Waiting] | None = conn.info.pop(LATER, None)
    if not pending:
        return
    for sql, params in _statements(pending):
        cursor = _cursor(conn)
        try:
            cursor.execute(sql, params)
        except conn.dialect.loaded_dbapi.Error as error:
            raise _translated(conn, sql, params, error) from error
        finally:
            cursor.close()


def discard_later(conn: Connection) -> None:
    """Forget the deferred writes of a transaction that rolls back."""
    conn.info.pop(LATER, None)


def _carrying(conn: Connection, pending: list[_Waiting], sql: str, row: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """``sql`` with the waiting writes before it as CTEs, one round trip for all, when it reads
    nothing they write: an INSERT ... VALUES into a table none of them touches (its foreign keys
    are checked at the end of the statement, after them). Otherwise they go first, alone."""
    shape = _Deferrable.of(sql)
    if (shape is not None and shape.insert and "SELECT" not in sql
            and all(w.shape.table != shape.table for w in pending)):
        groups = _groups(pending)
        if len(groups) == 1 and len(groups[0][1]) + len(row) <= MAX_GROUP_PARAMETERS:
            del conn.info[LATER]
            parts, values = groups[0]
            return _with(parts) + " " + _renumbered(sql, len(values)), (*values, *row)
    flush_later(conn)
    return sql, row


def _statements(pending: list[_Waiting]) -> list[tuple[str, tuple[Any, ...]]]:
    return [(parts[0] if len(parts) == 1 else _with(parts) + " SELECT 1", tuple(values))
            for parts, values in _groups(pending)]


def _with(parts: list[str]) -> str:
    return "WITH " + ", ".join(f"w{n} AS ({p})" for n, p in enumerate(parts))


def _groups(pending: list[_Waiting]) -> list[tuple[list[str], list[Any]]]:
    """The waiting writes as statements (each INSERT's rows one VALUES list), in groups whose
    parameters one statement can carry."""
    parts: list[str] = []
    values: list[Any] = []
    out: list[tuple[list[str], list[Any]]] = []
    for waiting in pending:
        shape = waiting.shape
        rows: list[Any] = waiting.rows if shape.insert else [[row] for row in waiting.rows]
        per_statement = max(1, MAX_GROUP_PARAMETERS // max(1, shape.width))
        chunks = [rows[i:i + per_statement] for i in range(0, len(rows), per_statement)] if shape.insert else rows
        for chunk in chunks:
            width = shape.width * len(chunk)
            if values and len(values) + width > MAX_GROUP_PARAMETERS:
                out.append((parts, values))
                parts, values = [], []
            offset = len(values)
            if shape.insert:
                tuples = ", ".join(_renumbered(shape.values, offset + n * shape.width) for n in range(len(chunk)))
                parts.append(_renumbered(shape.head, offset) + tuples + shape.tail)
                for row in chunk:
                    values.extend(row)
            else:
                parts.append(_renumbered(shape.head, offset))
                values.extend(chunk[0])
    if parts:
        out.append((parts, values))
    return out


@functools.lru_cache(maxsize=8192)
def _renumbered(sql: str, offset: int) -> str:
    """``sql``'s placeholders moved up by ``offset`` (the same few shapes and offsets recur for
    every message: computed once each)."""
    return _PLACEHOLDER.sub(lambda m: f"${int(m.group(1)) + offset}", sql) if offset else sql


def flush_on_use(engine: Engine) -> None:
    """On a PostgreSQL engine: deferred writes flushed before any statement SQLAlchemy runs and
    before COMMIT, dropped at ROLLBACK, whoever runs the transaction."""

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Connection, *_args: Any) -> None:
        if LATER in conn.info:
            flush_later(conn)

    @event.listens_for(engine, "commit")
    def _commit(conn: Connection) -> None:
        if LATER in conn.info:
            flush_later(conn)

    @event.listens_for(engine, "rollback")
    def _rollback(conn: Connection) -> None:
        discard_later(conn)

    # a SAVEPOINT scopes what was written inside it: what came before goes out first, what
    # waits at RELEASE goes out inside it, what waits at ROLLBACK TO was never run
    @event.listens_for(engine, "savepoint")
    def _savepoint(conn: Connection, _name: str) -> None:
        if LATER in conn.info:
            flush_later(conn)

    @event.listens_for(engine, "release_savepoint")
    def _release(conn: Connection, _name: str, _context: Any) -> None:
        if LATER in conn.info:
            flush_later(conn)

    @event.listens_for(engine, "rollback_savepoint")
    def _rollback_to(conn: Connection, _name: str, _context: Any) -> None:
        discard_later(conn)


def _cursor(conn: Connection) -> Any:
    # the DBAPI connection of the transaction SQLAlchemy began (BEGIN IMMEDIATE on SQLite)
    return conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]


def _translated(conn: Connection, sql: str, params: Any, error: Exception) -> exc.StatementError:
    return exc.DBAPIError.instance(sql, params, error, conn.dialect.loaded_dbapi.Error,
                                   dialect=conn.dialect)
