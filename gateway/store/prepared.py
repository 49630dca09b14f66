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

Only for fixed statements on hot paths; everything else uses ``Connection.execute``.
"""

from __future__ import annotations

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
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]
    """(position, processor) for the parameters whose type converts them."""


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
            found = self._compiled[dialect.name] = _Compiled(str(compiled), names, processors)
        return found

    def _row(self, compiled: _Compiled, params: Mapping[str, Any]) -> tuple[Any, ...]:
        row = [params[name] for name in compiled.names]
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
