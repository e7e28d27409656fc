"""Statements run straight through the database driver, on a session's own connection and in
its transaction: for the few that every chat turn makes, where SQLAlchemy's execution (the
cache key of a statement with subqueries, a result's metadata, the ORM's loading and flush)
cost more than the round trip itself (`docs/benchmarks.md`, seventh round).

A `DriverStatement` is a SQLAlchemy Core statement compiled once per database. What goes in
and comes out is converted by the same column types SQLAlchemy would use (JSON, timestamps,
booleans on SQLite); the engine's `before_cursor_execute` listeners see the statement as any
other (with no execution context: `after_cursor_execute`, `handle_error` and echo logging
are not run); a driver's error comes out as SQLAlchemy's own exception (`IntegrityError`,
`OperationalError`), and a connection the server dropped is invalidated, not pooled again
(the pool's other connections are checked when next taken: `core.db.check_before_use`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, Column, Table, insert, inspect
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.sql import ClauseElement

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class Compiled:
    """A statement as one database takes it: its SQL, and how values are passed and read."""

    sql: str
    positional: tuple[str, ...] | None  # bind names in order, for a positional paramstyle
    defaults: Mapping[str, Any]  # values the statement carries itself (literals)
    binds: Mapping[str, Processor]  # by bind name, where the type converts the value
    results: tuple[Processor | None, ...]  # by result column
    # A bind whose name the SQL cannot carry as it is (a column "unit price", say) has
    # another there: the caller's name -> the SQL's.
    escaped: Mapping[str, str]

    def parameters(self, values: Mapping[str, Any]) -> dict[str, Any] | tuple[Any, ...]:
        """`values` by bind name, converted, in the form the driver takes."""
        if self.escaped:
            values = {self.escaped.get(name, name): value for name, value in values.items()}
        merged = {**self.defaults, **values}
        for name, process in self.binds.items():
            if name in merged:
                merged[name] = process(merged[name])
        if self.positional is None:
            return merged
        return tuple(merged[name] for name in self.positional)

    def row(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(value if process is None or value is None else process(value)
                     for process, value in zip(self.results, row, strict=True))


class DriverStatement:
    """A Core statement compiled once per database and run through the driver.

    `column_keys` names the columns an INSERT or UPDATE sets (binds named after them), as
    SQLAlchemy's own `compile(column_keys=...)`. Only plain binds are supported: no
    expanding `IN`, no values computed by Python defaults.
    """

    def __init__(self, statement: ClauseElement, *,
                 column_keys: Iterable[str] | None = None) -> None:
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._compiled: dict[tuple[Any, ...], Compiled] = {}

    def compiled(self, dialect: Dialect) -> Compiled:
        # The conversions depend on the dialect's settings too (an engine's own JSON
        # serializer); the SQL only on its kind and paramstyle.
        key = (type(dialect), dialect.paramstyle, getattr(dialect, "_json_serializer", None),
               getattr(dialect, "_json_deserializer", None))
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = self._compile(dialect)
        return found

    def _compile(self, dialect: Dialect) -> Compiled:
        compiled: Any = self.statement.compile(dialect=dialect, column_keys=self.column_keys)
        if compiled.post_compile_params:
            raise ValueError("an expanding IN cannot be compiled once: "
                             f"{sorted(p.key for p in compiled.post_compile_params)}")
        # A positional statement names its binds as the caller does.
        escaped = {} if compiled.positional else dict(compiled.escaped_bind_names or {})
        binds: dict[str, Processor] = {}
        defaults: dict[str, Any] = {}
        for bind, bind_name in compiled.bind_names.items():
            name = escaped.get(bind_name, bind_name)
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                binds[name] = process
            if not bind.required:
                defaults[name] = bind.effective_value
        columns = getattr(self.statement, "selected_columns", None)
        returning = getattr(compiled, "returning", None) or []
        results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None)
                        for c in (list(columns) if columns is not None else returning))
        return Compiled(sql=compiled.string,
                        positional=tuple(compiled.positiontup) if compiled.positional
                        else None,
                        defaults=defaults, binds=binds, results=results, escaped=escaped)

    def rows(self, session: Session, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows the statement reads, in the session's transaction."""
        conn = session.connection()
        compiled = self.compiled(conn.dialect)
        rows = run(conn, compiled.sql, compiled.parameters(values), fetch=True)
        return [compiled.row(r) for r in rows]

    def one(self, session: Session, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The one row the statement reads (a `LookupError` for none or several)."""
        found = self.rows(session, values)
        if len(found) != 1:
            raise LookupError(f"expected one row, got {len(found)}")
        return found[0]

    def execute(self, session: Session, values: Mapping[str, Any]) -> int:
        """Run the statement in the session's transaction; the rows it changed."""
        conn = session.connection()
        compiled = self.compiled(conn.dialect)
        return run(conn, compiled.sql, compiled.parameters(values))


def run(conn: Connection, sql: str, parameters: Any, *, fetch: bool = False) -> Any:
    """Execute `sql` on `conn`'s driver connection, as SQLAlchemy would for listeners and
    errors. Returns the rows when `fetch`, else the count of rows changed."""
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None, "the session's connection is closed"
    cursor = None
    try:
        cursor = dbapi_conn.cursor()
        conn.dispatch.before_cursor_execute(conn, cursor, sql, parameters, None, False)
        cursor.execute(sql, parameters)
        found = cursor.fetchall() if fetch else cursor.rowcount
    except conn.dialect.loaded_dbapi.Error as error:
        invalidated = conn.dialect.is_disconnect(error, dbapi_conn, cursor)
        if invalidated:
            conn.invalidate(error)
        elif cursor is not None:
            cursor.close()
        raise DBAPIError.instance(sql, parameters, error, conn.dialect.loaded_dbapi.Error,
                                  connection_invalidated=invalidated,
                                  dialect=conn.dialect) from error
    cursor.close()
    return found


def write_together(session: Session, statement: DriverStatement, values: Mapping[str, Any],
                   appended: Iterable[tuple[Table, Sequence[Mapping[str, Any]]]]) -> int:
    """Insert `appended`, rows of tables (by column key, in the order given), and run
    `statement` with `values`, in the session's transaction; the count of rows `statement`
    changed.

    On PostgreSQL that is one statement: each table's rows go in a `WITH` clause of
    `statement` as one JSON parameter, read into the table's own row type (so every value
    gets its column's type), ids given in the rows' order. Elsewhere each table's rows are
    inserted first (one executemany), then `statement` runs. Every row of a table gives
    the same columns, among them every column whose default is made in Python: only the
    database's own defaults (an id's sequence) apply here. JSON columns cannot be appended
    so (their None would not be JSON's null).
    """
    conn = session.connection()
    compiled = statement.compiled(conn.dialect)
    batches = [(table, rows) for table, rows in appended if rows]
    for table, rows in batches:
        if any(row.keys() != rows[0].keys() for row in rows):
            raise ValueError(f"rows appended to {table.name} give different columns")
    if batches and conn.dialect.name == "postgresql" and compiled.positional is None and \
            not compiled.sql.startswith("WITH"):
        parameters = compiled.parameters(values)
        assert isinstance(parameters, dict)
        clauses = []
        for number, (table, rows) in enumerate(batches):
            name = f"appended_{number}"
            columns = tuple(c for c in table.columns if c.key in rows[0])
            sql, spec = _insert_from_json(conn.dialect, table, columns, name)
            clauses.append(f"{name} AS ({sql})")
            # A value JSON carries as it is (most are: None, text, numbers) skips the call.
            parameters[name] = json.dumps([
                {column: value if (value := row[key]) is None or (
                    process is None and type(value) in _AS_IS) else _json_value(value, process)
                 for column, key, process in spec} for row in rows])
        return run(conn, f"WITH {', '.join(clauses)} {compiled.sql}", parameters)
    for table, rows in batches:
        conn.execute(insert(table), list(rows))
    return run(conn, compiled.sql, compiled.parameters(values))


@lru_cache(maxsize=128)
def _insert_from_json(dialect: Dialect, table: Table, columns: tuple[Column[Any], ...],
                      parameter: str
                      ) -> tuple[str, tuple[tuple[str, str, Processor | None], ...]]:
    """PostgreSQL: INSERT the rows of a JSON array parameter (keyed by column name) into
    `table`, in order; with each column's name, key, and conversion of a value in Python (a
    naive datetime refused, an aware one made UTC, as the ORM does)."""
    quote = dialect.identifier_preparer.quote
    for column in columns:
        if isinstance(column.type, JSON):
            raise ValueError(f"{table.name}.{column.name}: a JSON column is not appended")
    listed = ", ".join(quote(column.name) for column in columns)
    row_type = dialect.identifier_preparer.format_table(table)
    return (f"INSERT INTO {row_type} ({listed}) SELECT {listed} "
            f"FROM json_populate_recordset(NULL::{row_type}, %({parameter})s::json) "
            "WITH ORDINALITY AS appended ORDER BY appended.ordinality",
            tuple((column.name, column.key,
                   column.type.dialect_impl(dialect).bind_processor(dialect))
                  for column in columns))


# Values JSON carries as they are, with no conversion of their column's (the type itself:
# a subclass of `int` or `str`, an enum, goes through `_json_value`).
_AS_IS = frozenset({str, int, bool})


def _json_value(value: Any, process: Processor | None) -> Any:
    """A value as JSON carries it to PostgreSQL."""
    if process is not None and value is not None:
        value = process(value)
    if isinstance(value, date):  # datetimes too, with their offset
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf": PostgreSQL reads them, JSON has no such number
    return value


def loaded(session: Session, model: type, values: Mapping[str, Any]) -> Any:
    """An object of the mapped class `model` made from a row the caller read, in `session`
    as if the ORM had loaded it: persistent, unchanged, in the identity map. One the
    session holds already is returned as it is."""
    mapper: Any = inspect(model)
    key = mapper.identity_key_from_primary_key(
        tuple(values[c.key] for c in mapper.primary_key))
    held = session.identity_map.get(key)
    if held is not None:
        return held
    instance = mapper.class_manager.new_instance()
    instance.__dict__.update(values)
    make_transient_to_detached(instance)
    session.add(instance)
    return instance
