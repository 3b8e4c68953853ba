"""The database: SQLite file by default (WAL, synchronous=FULL), PostgreSQL via MEMBERKIT_DATABASE_URL."""

from __future__ import annotations

import os
import threading
from collections import namedtuple
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, DateTime, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.types import TypeDecorator

DEFAULT_URL = "sqlite:///memberkit.db"


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: memberkit stores UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def database_url(url: str | None = None) -> str:
    """The URL as SQLAlchemy wants it: postgresql:// is served by psycopg 3."""
    raw = url or os.environ.get("MEMBERKIT_DATABASE_URL") or DEFAULT_URL
    parsed = make_url(raw)
    if parsed.get_backend_name() not in ("sqlite", "postgresql", "postgres"):
        raise ArgumentError(f"{parsed.get_backend_name()!r} is not a database memberkit runs on: expected "
                            "sqlite or postgresql")
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


class Database:
    """An engine plus the two ways memberkit uses it: a write transaction and a read transaction."""

    def __init__(self, url: str | None = None):
        self.url = database_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine = self._sqlite_engine() if self.is_sqlite else self._postgres_engine()
        # SQLite has one writer: queue writers of this process here instead of in SQLite's busy loop, and
        # keep that writer's connection open between transactions rather than checking one out each time.
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self._waiting: list[None] = []  # threads waiting for the writer (appended and popped atomically)
        self._writer: Connection | None = None

    def _sqlite_engine(self) -> Engine:
        engine = create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30},
                               hide_parameters=True)  # values are members' data: never in a log

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # transactions begun below, not by the driver
            cursor = dbapi_connection.cursor()
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000",
                           "secure_delete=ON"):  # erased rows' bytes are overwritten, not left in free pages
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection):
            # A write takes the lock at BEGIN so it never fails upgrading a read lock mid-transaction.
            mode = "DEFERRED" if conn.get_execution_options().get("memberkit_read") else "IMMEDIATE"
            conn.connection.driver_connection.execute(f"BEGIN {mode}")

        return engine

    def _postgres_engine(self) -> Engine:
        size = int(os.environ.get("MEMBERKIT_DB_POOL_SIZE", "10"))
        return create_engine(self.url, pool_size=size, max_overflow=size, pool_pre_ping=True, hide_parameters=True)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One transaction that commits on success and rolls back on any exception."""
        if self._write_lock is not None:
            self._waiting.append(None)
            with self._write_lock:
                self._waiting.pop()
                if self._writer is None or self._writer.closed or self._writer.invalidated:
                    self._writer = self.engine.connect()
                with self._writer.begin():
                    yield self._writer
        else:
            with self.engine.begin() as conn:
                yield conn

    @property
    def writing(self) -> bool:  # this process writes, or a thread waits to (SQLite): a write on the loop yields
        return self._write_lock is not None and (self._write_lock.locked() or bool(self._waiting))

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(memberkit_read=True)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        if self._write_lock is not None:
            with self._write_lock:
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
        self.engine.dispose()


class ByDialect(dict):
    """One statement per dialect name (what PostgreSQL and SQLite spell differently), for `Prepared` or
    ``conn.execute(statement.on(conn), params)``."""

    def on(self, conn: Connection):
        return self[conn.dialect.name]


def upsert(table: Table, *, on: list[str] | None = None, update: Any = None, where: Any = None,
           values: dict[str, Any] | None = None, returning: tuple = ()) -> ByDialect:
    """INSERT ... ON CONFLICT on both dialects: the unique constraint decides, never a read before the write.

    Without `update` a row that exists is left as it is (DO NOTHING; RETURNING then gives no row). `update`
    maps columns to their new values, or is a function of the proposed row (``excluded``) that does; `where`
    limits that UPDATE; `on` names the conflicting columns (default: the primary key).
    """
    statements = ByDialect()
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite)):
        statement = dialect.insert(table)
        if values is not None:
            statement = statement.values(values)
        if update is None:
            statement = statement.on_conflict_do_nothing(index_elements=on)
        else:
            on = on or [column.name for column in table.primary_key]
            set_ = update(statement.excluded) if callable(update) else update
            statement = statement.on_conflict_do_update(index_elements=on, set_=set_, where=where)
        statements[name] = statement.returning(*returning) if returning else statement
    return statements


_NO_VALUE = object()


class Prepared:
    """A Core statement (or one per dialect name) compiled once per dialect, run on the driver's cursor:
    for the few statements every order runs, SQLAlchemy's per-execution work costs more than the SQL. Values
    pass through the columns' own bind and result processors, exactly as with `Connection.execute`; constant
    defaults are filled in, other Python-side defaults are refused (give those values)."""

    __slots__ = ("_statements", "_plans")

    def __init__(self, statement):
        self._statements = statement
        self._plans: dict[tuple, tuple] = {}

    def _plan(self, conn: Connection, keys: tuple[str, ...]) -> tuple:
        dialect = conn.dialect
        statement = (self._statements[dialect.name] if isinstance(self._statements, dict)
                     else self._statements)
        # An INSERT takes its columns from the values given; other statements name every bind themselves
        # (an UPDATE would otherwise also SET any column whose name is among the values).
        compiled = statement.compile(dialect=dialect, column_keys=list(keys) if statement.is_insert else None)
        prefetch = [*compiled.insert_prefetch, *compiled.update_prefetch]
        defaults = {c.key: c.default.arg for c in prefetch if c.default is not None and c.default.is_scalar}
        if len(defaults) < len(prefetch):
            missing = [c.key for c in prefetch if c.key not in defaults]
            raise TypeError(f"Prepared statements take every value but constant defaults; give {missing} too")
        names = compiled.positiontup if compiled.positional else list(compiled.binds)
        binds = []
        for name in names:
            bind = compiled.binds[name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if name in keys:
                fixed = _NO_VALUE
            elif name in defaults:
                fixed = defaults[name]
            else:
                fixed = _NO_VALUE if bind.required else bind.effective_value
            binds.append((name, processor, fixed))
        columns = list(getattr(statement, "exported_columns", ()))
        results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
        row = namedtuple("Row", [c.key for c in columns], rename=True) if columns else tuple
        plan = (compiled.string, compiled.positional, tuple(binds), results, row)
        self._plans[(dialect.name, keys)] = plan
        return plan

    def cursor(self, conn: Connection, params: dict[str, Any]):
        """Execute; returns the driver's cursor (rowcount, raw rows)."""
        keys = tuple(params)
        sql, positional, binds, _, _ = self._plans.get((conn.dialect.name, keys)) or self._plan(conn, keys)
        values = []
        for name, processor, fixed in binds:
            value = params[name] if fixed is _NO_VALUE else fixed
            values.append(processor(value) if processor else value)
        driver = conn.connection.driver_connection
        if positional:
            return driver.execute(sql, values)
        return driver.execute(sql, dict(zip((b[0] for b in binds), values, strict=True)))

    def all(self, conn: Connection, params: dict[str, Any]) -> list[tuple]:
        """Every row, as named tuples with the selected (or returned) columns' names."""
        rows = self.cursor(conn, params).fetchall()
        _, _, _, results, row = self._plans[(conn.dialect.name, tuple(params))]
        return [row._make(p(v) if p else v for p, v in zip(results, values, strict=True)) for values in rows]

    def first(self, conn: Connection, params: dict[str, Any]) -> tuple | None:
        rows = self.all(conn, params)
        return rows[0] if rows else None

    def scalar(self, conn: Connection, params: dict[str, Any]) -> Any:
        row = self.first(conn, params)
        return None if row is None else row[0]
