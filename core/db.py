"""The database: SQLite file by default (WAL, synchronous=FULL), PostgreSQL via MEMBERKIT_DATABASE_URL."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Connection, DateTime, create_engine, event
from sqlalchemy.engine import Engine, make_url
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
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


class Database:
    """An engine plus the two ways memberkit uses it: a write transaction and a read transaction."""

    def __init__(self, url: str | None = None):
        self.url = database_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine = self._sqlite_engine() if self.is_sqlite else self._postgres_engine()
        # SQLite has one writer: queue writers of this process here instead of in SQLite's busy loop.
        self._write_lock = threading.Lock() if self.is_sqlite else None

    def _sqlite_engine(self) -> Engine:
        engine = create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # transactions begun below, not by the driver
            cursor = dbapi_connection.cursor()
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection):
            # A write takes the lock at BEGIN so it never fails upgrading a read lock mid-transaction.
            mode = "DEFERRED" if conn.get_execution_options().get("memberkit_read") else "IMMEDIATE"
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine

    def _postgres_engine(self) -> Engine:
        size = int(os.environ.get("MEMBERKIT_DB_POOL_SIZE", "10"))
        return create_engine(self.url, pool_size=size, max_overflow=size, pool_pre_ping=True)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One transaction that commits on success and rolls back on any exception."""
        if self._write_lock is not None:
            with self._write_lock, self.engine.begin() as conn:
                yield conn
        else:
            with self.engine.begin() as conn:
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(memberkit_read=True)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()
