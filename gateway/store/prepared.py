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
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable


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
        row = self._row(compiled, params)
        cursor = _cursor(conn)
        try:
            cursor.execute(compiled.sql, row)
        except conn.dialect.loaded_dbapi.Error as error:
            raise _translated(conn, compiled.sql, row, error) from error
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

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        compiled = self._for(conn.dialect)
        values = [self._row(compiled, params) for params in rows]
        cursor = _cursor(conn)
        try:
            cursor.executemany(compiled.sql, values)
        except conn.dialect.loaded_dbapi.Error as error:
            raise _translated(conn, compiled.sql, values, error) from error
        finally:
            cursor.close()


def _cursor(conn: Connection) -> Any:
    # the DBAPI connection of the transaction SQLAlchemy began (BEGIN IMMEDIATE on SQLite)
    return conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]


def _translated(conn: Connection, sql: str, params: Any, error: Exception) -> exc.StatementError:
    return exc.DBAPIError.instance(sql, params, error, conn.dialect.loaded_dbapi.Error,
                                   dialect=conn.dialect)
