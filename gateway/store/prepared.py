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

**An id a later write needs** (the message row's, an item's, a queued job's) can be
deferred too: ``later_returning`` gives the ``INSERT ... RETURNING id`` on SQLite
at once (its id), and on PostgreSQL a ``Ref`` that waits with the others. A
write given a ``Ref`` names it in SQL where both wait in one group (``(SELECT id
FROM w2)``: an INSERT of the same statement, whose foreign keys are checked
at its end), and the group's statement hands every such id back, so the
``Ref`` holds its value once flushed (``int(ref)``; before that it raises).
Text that names such an id (an audit row's "outbound #17") is ``id_text``.
So an accepted message needs its record lookup and one statement for all it
writes, four round trips with BEGIN and COMMIT, where it took eight.

**A value the writes need from a read** can wait with them too: ``later_selected``
holds a SELECT of one column of one table back as a CTE of the group and gives a
``Ref`` to what it finds, named like an INSERT's id. Named in a NOT NULL column, a
read that found nothing fails the statement whole. (The receiving pipeline looks its
records up this way: an accepted message is then one statement.)

**BEGIN only once something writes** (``reading_first``, PostgreSQL; ``Store.run`` and
``Store.read`` ask for it). Under READ COMMITTED every statement takes its own snapshot,
so a plain SELECT inside a transaction sees what it would see outside one, and holds no
lock after it. So a transaction's reads before its first write run on their own
(autocommit), and BEGIN goes out just before the first statement that writes or locks
(anything but a plain SELECT; ``FOR UPDATE``, advisory locks and sequences count as
writes). When everything the work wrote waits until it returns and goes out as one
statement, that statement runs on its own too: one statement is atomic by itself, so
there is no BEGIN and no COMMIT at all. The accepted message is then two round trips,
its lookup and its writes; a transaction that only reads is its reads. Only the final
flush may go alone: a write flushed while the work still runs begins the transaction, as
whatever follows it must be in the same one.
"""

from __future__ import annotations

import collections
import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event, exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.sql import Executable

LATER = "directgw.later"
"""Key of the deferred writes in the connection's ``info``: (SQL, parameters) in order."""

MAX_GROUP_PARAMETERS = 30_000
"""Parameters in one flushed statement at most (the PostgreSQL protocol allows 32767)."""

READING = "directgw.reading"
"""Key in the connection's ``info`` while a PostgreSQL transaction has not begun: its reads
run on their own (``reading_first``); the driver connection that goes back to transactions."""

_PLACEHOLDER = re.compile(r"\$(\d+)")
_LOCKS = re.compile(r"\bFOR\s+(?:NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b|pg_advisory|nextval|setval",
                    re.IGNORECASE)
_RETURNING = re.compile(r" RETURNING \w+\.(\w+)")
_SELECT_ONE = re.compile(r"SELECT (\w+)\.(\w+)\s+FROM (\w+)\s+WHERE ")
"""``later_selected``'s statements: one column of one table, by a condition (no join, no lock)."""


class UnresolvedId(RuntimeError):
    """A deferred id read (or used outside the writes that wait with it) before its INSERT ran."""


class Ref:
    """The id a deferred ``INSERT ... RETURNING`` (``later_returning``, PostgreSQL) is given,
    known once the writes waiting with it are flushed."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: int | None = None

    def __int__(self) -> int:
        if self.value is None:
            raise UnresolvedId("a deferred id was read before its INSERT was flushed")
        return self.value

    __index__ = __int__

    def __str__(self) -> str:
        return str(int(self))

    def __format__(self, spec: str) -> str:
        return format(int(self), spec)

    def __repr__(self) -> str:
        return f"Ref({self.value})"


@dataclass(frozen=True, slots=True)
class IdText:
    """Text with a deferred id in it: ``before`` + the id + ``after``."""

    before: str
    ref: Ref
    after: str

    def __str__(self) -> str:
        return f"{self.before}{int(self.ref)}{self.after}"


def id_text(before: str, ident: int | Ref, after: str = "") -> str | IdText:
    """``before{ident}after``, now when the id is known, else once its INSERT has run."""
    if isinstance(ident, Ref) and ident.value is None:
        return IdText(before, ident, after)
    return f"{before}{int(ident)}{after}"


Id = int | Ref
"""An id as ``later_returning`` gives it."""


def _known(value: Any) -> Any:
    """``value`` with a deferred id that has become known put in its place."""
    if type(value) is Ref:
        return value if value.value is None else value.value
    if type(value) is IdText:
        return value if value.ref.value is None else str(value)
    return value


def _waits(value: Any) -> bool:
    return (type(value) is Ref and value.value is None) or (type(value) is IdText and value.ref.value is None)


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
    deferrable: bool
    """The dialect holds writes back (PostgreSQL's ``$n`` placeholders): parameters may be ``Ref``s."""


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
            found = self._compiled[dialect.name] = _Compiled(
                str(compiled), names, defaults, processors, row, results, dialect.paramstyle == "numeric_dollar")
        return found

    def _row(self, compiled: _Compiled, params: Mapping[str, Any]) -> tuple[Any, ...]:
        defaults = compiled.defaults
        row = [params[name] if name in params else defaults[name] for name in compiled.names]
        waiting: set[int] = set()
        if compiled.deferrable:
            for position, value in enumerate(row):
                if type(value) is Ref or type(value) is IdText:
                    row[position] = value = _known(value)
                    if _waits(value):
                        waiting.add(position)  # named in SQL when flushed: no bind processing
        for position, process in compiled.processors:
            if position not in waiting:
                row[position] = process(row[position])
        return tuple(row)

    def _bound(self, conn: Connection, compiled: _Compiled, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """The row to run now: an id it names that still waits is made known first (a flush)."""
        row = self._row(compiled, params)
        if compiled.deferrable and any(_waits(v) for v in row):
            flush_later(conn)
            row = self._row(compiled, params)
            if any(_waits(v) for v in row):
                raise UnresolvedId("a statement names a deferred id that no waiting write gives")
        return row

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """Run once; the driver's cursor, for ``fetchone()`` of a RETURNING or SELECT."""
        compiled = self._for(conn.dialect)
        sql, row = compiled.sql, self._bound(conn, compiled, params)
        pending = conn.info.get(LATER)
        if pending:
            sql, row = _carrying(conn, pending, sql, row)
        _before_statement(conn, sql)
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
        shape = _Deferrable.of(compiled.sql) if compiled.deferrable else None
        if shape is None or shape.select or (not shape.insert and len(rows) > 1):  # several UPDATEs: as given, now
            if len(rows) == 1:
                self.run(conn, rows[0])
            else:
                self.run_many(conn, rows)
            return
        _wait(conn, _Waiting(shape, [self._row(compiled, params) for params in rows]))

    def later_returning(self, conn: Connection, params: Mapping[str, Any]) -> Id:
        """An ``INSERT ... RETURNING id`` whose id only other writes of this transaction use (and
        the caller after COMMIT): run at once on SQLite, its id; on PostgreSQL a ``Ref`` that
        waits with the other writes (see the module's docstring)."""
        compiled = self._for(conn.dialect)
        shape = _Deferrable.of(compiled.sql) if compiled.deferrable else None
        if shape is None or not shape.insert or shape.returning is None:
            return int(self.scalar(conn, params))
        ref = Ref()
        _wait(conn, _Waiting(shape, [self._row(compiled, params)], ref))
        return ref

    def later_selected(self, conn: Connection, params: Mapping[str, Any]) -> Ref | None:
        """This SELECT of one value (one column of at most one row), run with the writes that
        wait on PostgreSQL: a ``Ref`` those writes may name, so a value they need costs no round
        trip of its own. Named in a NOT NULL column, a SELECT that found nothing fails the whole
        statement (IntegrityError), and the caller can go the long way. None where writes do not
        wait (SQLite, where statements cost no round trip): the caller reads instead."""
        compiled = self._for(conn.dialect)
        shape = _Deferrable.of(compiled.sql) if compiled.deferrable else None
        if shape is None or not shape.select:
            return None
        ref = Ref()
        _wait(conn, _Waiting(shape, [self._row(compiled, params)], ref))
        return ref

    def later_guarded(self, conn: Connection, params: Mapping[str, Any], then: Prepared,
                      then_params: Mapping[str, Any]) -> int | Ref:
        """This UPDATE (of one row at most, by a guard such as a lease) and ``then``'s one-row
        INSERT only if it matched: a job's transition and its audit row. Returns how many rows
        the UPDATE matched: at once on SQLite; on PostgreSQL a ``Ref`` that waits with the other
        writes (``wN AS (UPDATE ... RETURNING 1), wN+1 AS (INSERT ... SELECT ... FROM wN)``), so
        a transition that is its work's only write is one statement, without BEGIN or COMMIT."""
        compiled, follows = self._for(conn.dialect), then._for(conn.dialect)
        shape = _Deferrable.of(compiled.sql) if compiled.deferrable else None
        then_shape = _Deferrable.of(follows.sql) if follows.deferrable else None
        if shape is None or shape.insert or then_shape is None or not then_shape.insert:
            cursor = self.execute(conn, params)
            try:
                matched = int(cursor.rowcount)
            finally:
                cursor.close()
            if matched:
                then.later(conn, then_params)
            return matched
        ref = Ref()
        _wait(conn, _Waiting(shape, [self._row(compiled, params)], ref,
                             (then_shape, then._row(follows, then_params))))
        return ref

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        flush_later(conn)
        _writing(conn)
        compiled = self._for(conn.dialect)
        values = [self._bound(conn, compiled, params) for params in rows]
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
    returning: str | None = None
    """The one column an INSERT returns (``RETURNING items.id``: ``id``), if it returns one;
    the one column a SELECT reads."""
    select: bool = False
    """A SELECT of one column of one table (``later_selected``), waiting with the writes."""

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
            returning = _RETURNING.fullmatch(sql[end + 1:])
            return _Deferrable(words[2], True, sql[:begin], sql[begin:end + 1], sql[end + 1:], width,
                               returning.group(1) if returning else None)
        if words[:1] == ["UPDATE"] and len(words) > 1:
            return _Deferrable(words[1], False, sql, "", "", width)
        selected = _SELECT_ONE.match(sql)
        if selected is not None and selected.group(1) == selected.group(3) and _LOCKS.search(sql) is None:
            return _Deferrable(selected.group(3), False, sql, "", "", width, selected.group(2), select=True)
        return None

    def selected(self) -> str:
        """An INSERT's one row as ``INSERT INTO t (...) SELECT $1, ...`` (a FROM goes after it)."""
        return self.head[:-len("VALUES ")] + "SELECT " + self.values[1:-1]


@dataclass(slots=True)
class _Waiting:
    shape: _Deferrable
    rows: list[tuple[Any, ...]]
    ref: Ref | None = None
    """The id this one-row INSERT gives (``later_returning``), or how many rows this guarded
    UPDATE matched (``later_guarded``)."""
    then: tuple[_Deferrable, tuple[Any, ...]] | None = None
    """The one-row INSERT that follows this guarded UPDATE only if it matched."""

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.shape.table,) if self.then is None else (self.shape.table, self.then[0].table)


def _wait(conn: Connection, waiting: _Waiting) -> None:
    pending: list[_Waiting] | None = conn.info.get(LATER)
    if pending and waiting.shape.select and any(waiting.shape.table in w.tables for w in pending):
        flush_later(conn)  # a CTE does not see its siblings' writes: those before it go first
        pending = None
    if pending and (waiting.then is not None or any(w.then is not None for w in pending)):
        # a guarded UPDATE shares its group with nothing that touches its tables: a CTE does
        # not see what a sibling wrote, and its INSERT's ids must follow the writes before it
        tables = set(waiting.tables)
        if any(tables.intersection(w.tables) for w in pending):
            flush_later(conn)
        conn.info.setdefault(LATER, []).append(waiting)
        return
    if pending:
        last, shape = pending[-1], waiting.shape
        if waiting.ref is None and last.ref is None and last.shape is shape and shape.insert:
            last.rows.extend(waiting.rows)  # more rows of the same INSERT: its VALUES list
            return
        same = [w for w in pending if w.shape.table == shape.table]
        # one statement per table in a group: the rows of a table keep the order they were
        # given in (ids, the audit trail), and no row is updated twice in one statement. One-row
        # INSERTs whose ids are asked for may share it: each is its own statement, in order.
        if same and not (waiting.ref is not None and all(w.ref is not None for w in same)):
            flush_later(conn)
    conn.info.setdefault(LATER, []).append(waiting)


def flush_later(conn: Connection) -> None:
    """Run the writes ``later`` left on this connection: one statement for all of them
    (data-modifying CTEs, INSERT rows as one VALUES list), unless their parameters
    outnumber what one statement may carry; the ids asked for become known."""
    pending: list[_Waiting] | None = conn.info.pop(LATER, None)
    if not pending:
        return
    _writing(conn)  # what follows a write flushed now must be in its transaction
    _flush(conn, pending)


def flush_last(conn: Connection) -> None:
    """The final flush of a transaction's work: when nothing has begun the transaction and the
    writes waiting are one statement, that statement runs on its own (atomic by itself)."""
    pending: list[_Waiting] | None = conn.info.pop(LATER, None)
    if not pending:
        return
    if READING not in conn.info or not _one_group(pending):
        _writing(conn)
    _flush(conn, pending)


def _one_group(pending: list[_Waiting]) -> bool:
    """``_groups`` makes one group of ``pending``: a second starts only past MAX_GROUP_PARAMETERS."""
    return sum(_waiting_cost(waiting) for waiting in pending) <= MAX_GROUP_PARAMETERS


def _waiting_cost(waiting: _Waiting) -> int:
    return sum(_cost(row) for row in waiting.rows) + (_cost(waiting.then[1]) if waiting.then else 0)


def _flush(conn: Connection, pending: list[_Waiting]) -> None:
    for sql, params, refs in _statements(pending):  # one group at a time: a later one may name ids the earlier gave
        cursor = _cursor(conn)
        try:
            cursor.execute(sql, params)
            if refs:
                for ref, value in zip(refs, cursor.fetchone(), strict=True):
                    ref.value = None if value is None else int(value)  # a SELECT that found nothing
        except conn.dialect.loaded_dbapi.Error as error:
            raise _translated(conn, sql, params, error) from error
        finally:
            cursor.close()


def reading_first(conn: Connection) -> None:
    """Run this PostgreSQL connection's statements on their own until one writes; BEGIN then
    (see the module's docstring). Call before its transaction's first statement; undo with
    ``done_reading`` when it ends."""
    adapted = conn.connection.dbapi_connection
    if adapted is not None and not adapted.autocommit:
        adapted.autocommit = True  # SQLAlchemy's asyncpg adapter: no BEGIN before the next statement
        conn.info[READING] = adapted


def done_reading(conn: Connection) -> None:
    """The connection back to transactions (``reading_first``), whatever happened."""
    _writing(conn)


def _writing(conn: Connection) -> None:
    adapted = conn.info.pop(READING, None)
    if adapted is not None:
        adapted.autocommit = False  # the adapter says BEGIN before the next statement


def _before_statement(conn: Connection, sql: str) -> None:
    """BEGIN goes out before ``sql`` unless it only reads (``reading_first``)."""
    if READING in conn.info and not _reads_only(sql):
        _writing(conn)


@functools.lru_cache(maxsize=1024)
def _reads_only(sql: str) -> bool:
    """A plain SELECT: it writes nothing and keeps no lock (READ COMMITTED), in a transaction or not."""
    return sql.lstrip()[:6].upper() == "SELECT" and _LOCKS.search(sql) is None


def discard_later(conn: Connection) -> None:
    """Forget the deferred writes of a transaction that rolls back."""
    conn.info.pop(LATER, None)


def _carrying(conn: Connection, pending: list[_Waiting], sql: str, row: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """``sql`` with the waiting writes before it as CTEs, one round trip for all, when it reads
    nothing they write: an INSERT ... VALUES (its foreign keys are checked at the end of the
    statement, after them) or an UPDATE without a subquery, of a table none of them touches,
    and no id they give is asked for (its result is the carrier's). Otherwise they go first,
    alone."""
    shape = _Deferrable.of(sql)
    if (shape is not None and "SELECT" not in sql
            and all(shape.table not in w.tables and w.ref is None for w in pending)):
        groups = list(_groups(pending))
        if len(groups) == 1 and len(groups[0][1]) + len(row) <= MAX_GROUP_PARAMETERS:
            del conn.info[LATER]
            parts, values, _refs = groups[0]
            return _with(parts) + " " + _renumbered(sql, len(values)), (*values, *row)
    flush_later(conn)
    return sql, row


def _statements(pending: list[_Waiting]) -> Iterator[tuple[str, tuple[Any, ...], list[Ref]]]:
    """Each group as one statement, with the ids it gives (read from its result, in order)."""
    for parts, values, refs in _groups(pending):
        if refs:
            given = ", ".join(f"(SELECT {column} FROM {name})" for _ref, name, column in refs)
            yield _with(parts) + f" SELECT {given}", tuple(values), [ref for ref, _n, _c in refs]
        else:
            yield (parts[0] if len(parts) == 1 else _with(parts) + " SELECT 1"), tuple(values), []


def _with(parts: list[str]) -> str:
    return "WITH " + ", ".join(f"w{n} AS ({p})" for n, p in enumerate(parts))


def _groups(pending: list[_Waiting]) -> Iterator[tuple[list[str], list[Any], list[tuple[Ref, str, str]]]]:
    """The waiting writes as statements (each INSERT's rows one VALUES list), in groups whose
    parameters one statement can carry, with the ids each group gives: (ref, CTE, column).
    Lazily: a group's rows are written out only once the groups before it have run, so an id
    an earlier group gave is a value here."""
    parts: list[str] = []
    values: list[Any] = []
    refs: list[tuple[Ref, str, str]] = []
    named: dict[Ref, str] = {}
    for waiting in pending:
        shape = waiting.shape
        if waiting.then is not None:  # a guarded UPDATE and the INSERT that follows it (later_guarded)
            if values and len(values) + _waiting_cost(waiting) > MAX_GROUP_PARAMETERS:
                yield parts, values, refs
                parts, values, refs, named = [], [], [], {}
            text, row_values = _written(shape.head, waiting.rows[0], len(values), named)
            values.extend(row_values)
            parts.append(text + " RETURNING 1")
            name = f"w{len(parts) - 1}"
            then_shape, then_row = waiting.then
            text, row_values = _written(then_shape.selected(), then_row, len(values), named)
            values.extend(row_values)
            parts.append(f"{text} FROM {name}{then_shape.tail}")
            assert waiting.ref is not None
            refs.append((waiting.ref, name, "count(*)"))
            continue
        tuples: list[str] = []
        for row in waiting.rows:
            if values and len(values) + _cost(row) > MAX_GROUP_PARAMETERS:
                if tuples:
                    parts.append(shape.head + ", ".join(tuples) + shape.tail)
                    tuples = []
                yield parts, values, refs
                parts, values, refs, named = [], [], [], {}
            text, row_values = _written(shape.values if shape.insert else shape.head, row, len(values), named)
            values.extend(row_values)
            if shape.insert:
                tuples.append(text)
            else:
                parts.append(text)  # an UPDATE: one statement per row
        if tuples:
            parts.append(shape.head + ", ".join(tuples) + shape.tail)
        if waiting.ref is not None:
            assert shape.returning is not None
            name = f"w{len(parts) - 1}"
            named[waiting.ref] = f"(SELECT {shape.returning} FROM {name})"
            refs.append((waiting.ref, name, shape.returning))
    if parts:
        yield parts, values, refs


def _cost(row: tuple[Any, ...]) -> int:
    """Parameters ``row`` takes in a statement: a text naming a waiting id takes one more."""
    return len(row) + sum(1 for v in row if type(v) is IdText and v.ref.value is None)


def _written(template: str, row: tuple[Any, ...], offset: int, named: dict[Ref, str]) -> tuple[str, list[Any]]:
    """``template`` (``$1``... for ``row``) with its placeholders numbered from ``offset``, and the
    values they carry. An id that waits in this group is named in SQL instead of carried."""
    waiting = tuple((n, type(v) is IdText, _named(v.ref if type(v) is IdText else v, named))
                    for n, v in enumerate(row, 1) if _waits(v))
    if not waiting:
        return _renumbered(template, offset), [_known(v) for v in row] if _deferred(row) else list(row)
    text, picks = _naming(template, offset, waiting)
    return text, [_known(row[n - 1]) if part is None else getattr(row[n - 1], part) for n, part in picks]


@functools.lru_cache(maxsize=1024)
def _naming(template: str, offset: int, waiting: tuple[tuple[int, bool, str], ...]) -> tuple[str, tuple[Any, ...]]:
    """``_written``'s SQL for one shape of row (the same few recur for every message: computed once
    each), and where each value it carries comes from: (placeholder, None for the value itself, or
    the ``IdText`` part)."""
    how = {n: (text, name) for n, text, name in waiting}
    picks: list[tuple[int, str | None]] = []
    written: dict[int, str] = {}

    def place(n: int, part: str | None) -> str:
        picks.append((n, part))
        return f"${offset + len(picks)}"

    def one(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if n not in written:
            if n not in how:
                written[n] = place(n, None)
            elif how[n][0]:
                written[n] = f"({place(n, 'before')}::text || {how[n][1]}::text || {place(n, 'after')}::text)"
            else:
                written[n] = how[n][1]
        return written[n]

    return _PLACEHOLDER.sub(one, template), tuple(picks)


def _deferred(row: tuple[Any, ...]) -> bool:
    return any(type(v) is Ref or type(v) is IdText for v in row)


def _named(ref: Ref, named: dict[Ref, str]) -> str:
    found = named.get(ref)
    if found is None:
        raise UnresolvedId("a deferred write names an id that no write waiting with it gives")
    return found


@functools.lru_cache(maxsize=8192)
def _renumbered(sql: str, offset: int) -> str:
    """``sql``'s placeholders moved up by ``offset`` (the same few shapes and offsets recur for
    every message: computed once each)."""
    return _PLACEHOLDER.sub(lambda m: f"${int(m.group(1)) + offset}", sql) if offset else sql


def flush_on_use(engine: Engine) -> None:
    """On a PostgreSQL engine: deferred writes flushed before any statement SQLAlchemy runs and
    before COMMIT, dropped at ROLLBACK, whoever runs the transaction."""

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if LATER in conn.info:
            flush_later(conn)
        _before_statement(conn, statement)

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
        _writing(conn)  # a savepoint lives in a transaction

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
