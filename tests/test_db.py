"""core.db.Prepared: statements run at driver level send and return what SQLAlchemy itself would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import JSON, Boolean, Column, Integer, MetaData, String, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from memberkit.core.db import Database, Prepared, UTCDateTime
from tests.conftest import TEST_DATABASE_URL

metadata = MetaData()
THINGS = Table("test_prepared_thing", metadata,
               Column("id", Integer, primary_key=True),
               Column("name", String(20), nullable=False),
               Column("count", Integer, nullable=False, default=7),
               Column("flag", Boolean, nullable=False, default=False),
               Column("at", UTCDateTime, nullable=True),
               Column("data", JSON, nullable=True))
STAMPED = Table("test_prepared_stamped", metadata,
                Column("id", Integer, primary_key=True),
                Column("at", UTCDateTime, nullable=False, default=lambda: datetime.now(UTC)))


@pytest.fixture
def db(tmp_path):
    database = Database(TEST_DATABASE_URL or f"sqlite:///{tmp_path / 'prepared.db'}")
    metadata.drop_all(database.engine)
    metadata.create_all(database.engine)
    yield database
    metadata.drop_all(database.engine)
    database.dispose()


ADD = Prepared(THINGS.insert().returning(THINGS.c.id))
BY_ID = Prepared(select(THINGS).where(THINGS.c.id == bindparam("p_id"), THINGS.c.name != "gone"))
BUMP = Prepared(update(THINGS).where(THINGS.c.id == bindparam("p_id"), THINGS.c.count < bindparam("cap"))
                .values(count=THINGS.c.count + 1).returning(THINGS.c.count))
UPSERT = Prepared({name: dialect.insert(THINGS).values(id=bindparam("p_id"), name=bindparam("p_name"))
                   .on_conflict_do_update(index_elements=["id"], set_={"count": THINGS.c.count + 1})
                   .returning(THINGS.c.count)
                   for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))})


def test_values_go_in_and_come_back_as_sqlalchemy_gives_them(db):
    moment = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    with db.write() as conn:
        shanghai = moment.astimezone(timezone(timedelta(hours=8)))  # stored as UTC, read back as UTC
        first = ADD.scalar(conn, {"name": "a", "at": shanghai, "data": {"k": [1, "二"]}})
        second = ADD.scalar(conn, {"name": "b"})  # constant defaults filled in, nullable columns left NULL
        row = BY_ID.first(conn, {"p_id": first})
        assert row == conn.execute(select(THINGS).where(THINGS.c.id == first)).one()
        assert (row.name, row.count, row.flag, row.at, row.data) == ("a", 7, False, moment, {"k": [1, "二"]})
        assert row.at.tzinfo is not None
        assert BY_ID.first(conn, {"p_id": second})[2:] == (7, False, None, None)
        assert BY_ID.first(conn, {"p_id": 999}) is None and BY_ID.all(conn, {"p_id": 999}) == []


def test_updates_set_only_their_own_columns_and_report_rows(db):
    with db.write() as conn:
        thing = ADD.scalar(conn, {"name": "a", "count": 1})
        assert BUMP.scalar(conn, {"p_id": thing, "cap": 3, "name": "not set"}) == 2
        assert BUMP.scalar(conn, {"p_id": thing, "cap": 3}) == 3
        assert BUMP.first(conn, {"p_id": thing, "cap": 3}) is None  # the condition refuses: no row
        assert Prepared(update(THINGS).where(THINGS.c.id == bindparam("p_id")).values(count=0)).cursor(
            conn, {"p_id": thing}).rowcount == 1
        assert conn.execute(select(THINGS.c.name, THINGS.c.count)).one() == ("a", 0)


def test_dialect_specific_statements_and_repeated_keys(db):
    with db.write() as conn:
        assert UPSERT.scalar(conn, {"p_id": 5, "p_name": "x"}) == 7
        assert UPSERT.scalar(conn, {"p_id": 5, "p_name": "x"}) == 8


def test_a_missing_value_or_a_computed_default_is_refused_not_guessed(db):
    with db.write() as conn:
        with pytest.raises(KeyError):
            BY_ID.first(conn, {})
        with pytest.raises(TypeError, match=r"give \['at'\]"):
            Prepared(STAMPED.insert()).cursor(conn, {"id": 1})
        Prepared(STAMPED.insert()).cursor(conn, {"id": 1, "at": datetime.now(UTC)})
