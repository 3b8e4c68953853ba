"""Migrations give exactly the models' schema; `memberkit migrate` and a server start migrate a database."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel
from typer.testing import CliRunner

import memberkit.core.models  # noqa: F401  (core's tables in SQLModel.metadata)
from memberkit import cli, migrate
from memberkit import config as settings_module
from memberkit.core import plugins as plugin_registry
from memberkit.core.db import Database, database_url
from memberkit.core.runtime import Runtime
from tests.conftest import ROOT, TEST_DATABASE_URL, TWO_SHOPS, postgres_only


@pytest.fixture
def fresh_database(tmp_path):
    """`new()` gives the URL of a new, empty database on the backend under test; all are dropped after."""
    created: list[str] = []
    server = database_url(TEST_DATABASE_URL) if TEST_DATABASE_URL else None
    admin = create_engine(server, isolation_level="AUTOCOMMIT") if server else None

    def new() -> str:
        if admin is None:
            return f"sqlite:///{tmp_path / f'fresh-{len(created)}.db'}"
        name = f"{make_url(admin.url).database}_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return make_url(server).set(database=name).render_as_string(hide_password=False)

    yield new
    if admin is not None:
        with admin.connect() as conn:
            for name in created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def fresh_runtime(fresh_database):
    """A Runtime for the repository's plugins.toml (which enables the built-in plugins) on a new database."""
    runtimes: list[Runtime] = []

    def make(config=ROOT / "plugins.toml") -> Runtime:
        runtime = Runtime(settings_module.load(config), Database(fresh_database()))
        runtimes.append(runtime)
        return runtime

    yield make
    for runtime in runtimes:
        runtime.db.dispose()
    plugin_registry.refresh()


def owned_tables(runtime: Runtime, metadata: sa.MetaData = SQLModel.metadata) -> set[str]:
    """The model tables the migrations must create: core's and those of the plugins some shop enables."""
    modules = [plugin_registry.load(name) for name in migrate.plugin_names(runtime)]
    prefixes = tuple(f"{getattr(m, '__name__', type(m).__module__)}." for m in modules)
    tables = {t for t in metadata.tables if t.startswith("core_")}
    for mapper in SQLModel._sa_registry.mappers:
        if mapper.class_.__module__.startswith(prefixes) and mapper.local_table is not None:
            tables.add(mapper.local_table.name)
    return tables


def schema_diff(runtime: Runtime, metadata: sa.MetaData | None = None) -> list:
    """Alembic's autogenerate comparison of the database with the models, types included.

    Every table in the database is compared (a fresh database holds only what the migrations made);
    a model table counts only if it is core's or an enabled plugin's. Types are compared as Alembic's
    dialect does: a TypeDecorator (UTCDateTime, sqlmodel's AutoString) by the type its impl compiles to.
    """
    metadata = SQLModel.metadata if metadata is None else metadata
    wanted = owned_tables(runtime, metadata)

    def include_object(obj, name, type_, reflected, compare_to):
        return type_ != "table" or reflected or name in wanted

    with runtime.db.engine.connect() as conn:
        opts = {"compare_type": True, "include_object": include_object}
        return compare_metadata(MigrationContext.configure(conn, opts=opts), metadata)


def tables(runtime: Runtime) -> set[str]:
    with runtime.db.engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def heads(runtime: Runtime) -> set[str]:
    with runtime.db.engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def test_migrations_give_exactly_the_models_schema(fresh_runtime):
    runtime = fresh_runtime()
    migrate.upgrade(runtime)
    assert owned_tables(runtime) <= tables(runtime)
    assert schema_diff(runtime) == []
    assert migrate.is_current(runtime)


def test_schema_comparison_catches_drift(fresh_runtime):
    """The comparison above can fail: a changed type, length, nullability, index or table is reported."""
    runtime = fresh_runtime()
    migrate.upgrade(runtime)
    drifted = sa.MetaData()
    for table in SQLModel.metadata.tables.values():
        table.to_metadata(drifted)
    lease = drifted.tables["core_job_lease"]
    lease.c.last_run_at.type = sa.Integer()  # was UTCDateTime
    lease.c.last_result.type = sa.String(400)  # was 500
    lease.c.owner.nullable = False
    sa.Index("ix_core_job_lease_owner", lease.c.owner)
    sa.Table("core_extra", drifted, sa.Column("id", sa.Integer, primary_key=True))

    found = {(d[0], d[2], d[3]) if d[0].startswith("modify") else (d[0], getattr(d[1], "name", None))
             for d in (x[0] if isinstance(x, list) else x for x in schema_diff(runtime, drifted))}
    assert found == {
        ("modify_type", "core_job_lease", "last_run_at"),
        ("modify_type", "core_job_lease", "last_result"),
        ("modify_nullable", "core_job_lease", "owner"),
        ("add_index", "ix_core_job_lease_owner"),
        ("add_table", "core_extra"),
    }


@postgres_only()
def test_schema_comparison_tells_timestamp_with_and_without_time_zone(fresh_runtime):
    runtime = fresh_runtime()
    migrate.upgrade(runtime)
    drifted = sa.MetaData()
    for table in SQLModel.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["core_event"].c.created_at.type = sa.DateTime(timezone=False)
    assert [(d[0][0], d[0][3]) for d in schema_diff(runtime, drifted)] == [("modify_type", "created_at")]


def test_core_branch_downgrades_to_base_and_back(fresh_runtime):
    runtime = fresh_runtime()
    migrate.upgrade(runtime)
    config = migrate.alembic_config(runtime)
    command.downgrade(config, "core@base")
    assert not {t for t in tables(runtime) if t.startswith("core_")}
    assert "core_0001" not in heads(runtime)
    assert not migrate.is_current(runtime)
    migrate.upgrade(runtime)
    assert migrate.is_current(runtime)  # core_0001 applied (a head itself, or under a plugin that depends on it)
    assert schema_diff(runtime) == []


def test_migrate_command_is_idempotent(fresh_database, settings_file, monkeypatch):
    url = fresh_database()
    config = settings_file(TWO_SHOPS)
    env = {"MEMBERKIT_CONFIG": str(config), "MEMBERKIT_DATABASE_URL": url}
    for _ in range(2):
        result = CliRunner().invoke(cli.app, ["migrate"], env=env)
        assert result.exit_code == 0, (result.output, result.exception)
        assert "database is up to date" in result.stdout
    runtime = Runtime(settings_module.load(config), Database(url))
    try:
        assert migrate.is_current(runtime) and heads(runtime) == {"checkout_0001", "core_0009", "kpis_0003"}
        assert schema_diff(runtime) == []
    finally:
        runtime.db.dispose()


def test_server_start_migrates_a_new_sqlite_file_in_wal_mode(tmp_path, settings_file):
    path = tmp_path / "new.db"
    runtime = Runtime(settings_module.load(settings_file(TWO_SHOPS)), Database(f"sqlite:///{path}"))
    try:
        assert not path.exists() or tables(runtime) == set()
        cli._ensure_migrated(runtime)
        assert path.exists()
        assert {"core_member", "core_coupon", "core_job_lease", "alembic_version"} <= tables(runtime)
        assert migrate.is_current(runtime) and schema_diff(runtime) == []
        cli._ensure_migrated(runtime)  # an up-to-date file is left as it is
        with runtime.db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        runtime.db.dispose()


@postgres_only()
def test_server_refuses_an_unmigrated_postgres_database(fresh_runtime, capsys):
    runtime = fresh_runtime()
    with pytest.raises(cli.typer.Exit) as stopped:
        cli._ensure_migrated(runtime)
    assert stopped.value.exit_code == 1
    assert "memberkit migrate" in capsys.readouterr().err
    assert tables(runtime) == set()
    migrate.upgrade(runtime)
    cli._ensure_migrated(runtime)  # now it starts


def test_database_url_is_taken_as_written():
    assert database_url("postgresql://user@host/db") == "postgresql+psycopg://user@host/db"
    assert database_url("postgres://user:pw@host:5433/db") == "postgresql+psycopg://user:pw@host:5433/db"
    assert database_url("sqlite:///memberkit.db") == "sqlite:///memberkit.db"


def test_a_shop_that_stops_enabling_a_plugin_keeps_migrating(fresh_database, settings_file):
    url = fresh_database()
    with_points = TWO_SHOPS.replace("[shops.alpha.coupons.TEN_OFF]",
                                    'plugins = ["points"]\n\n[shops.alpha.coupons.TEN_OFF]', 1)
    before = Runtime(settings_module.load(settings_file(with_points, "on.toml")), Database(url))
    migrate.upgrade(before)
    assert "points_lot" in tables(before)
    before.db.dispose()
    after = Runtime(settings_module.load(settings_file(TWO_SHOPS, "off.toml")), Database(url))
    migrate.upgrade(after)  # the points revision stays locatable: no "Can't locate revision"
    assert migrate.is_current(after) and "points_lot" in tables(after)  # and its data stays
    after.db.dispose()


def test_member_order_counts_are_backfilled_from_the_orders_already_paid(fresh_runtime):
    """core_0003 adds core_member.paid_orders; members who paid before it count their orders from then on."""
    runtime = fresh_runtime()
    config = migrate.alembic_config(runtime)
    command.upgrade(config, "core@core_0002")
    now = "2026-01-01 00:00:00"
    with runtime.db.engine.begin() as conn:
        for member in ("m1", "m2"):
            conn.execute(text("INSERT INTO core_member (id, shop, external_id, joined_at, tags, created_at) "
                              "VALUES (:m, 'demo', :m, :t, '[]', :t)"), {"m": member, "t": now})
        for n in range(3):
            conn.execute(text("INSERT INTO core_order (shop, order_id, member_id, currency, total, refunded, paid_at, "
                              "detail) VALUES ('demo', :o, 'm1', 'CNY', 100, 0, :t, '{}')"), {"o": f"o{n}", "t": now})
    migrate.upgrade(runtime)
    with runtime.db.engine.connect() as conn:
        counts = dict(conn.execute(text("SELECT id, paid_orders FROM core_member")).all())
    assert counts == {"m1": 3, "m2": 0}
    assert schema_diff(runtime) == []


# ---------------------------------------------------------------- every plugin's branch, from its models


@pytest.mark.parametrize("name", plugin_registry.builtin())
def test_each_plugin_migrates_to_exactly_its_declared_tables(fresh_runtime, name):
    """Upgrading gives the plugin's models exactly (autogenerate finds nothing left to write), and the plugin
    declares every table its modules define."""
    runtime = fresh_runtime()
    migrate.upgrade(runtime)
    plugin = plugin_registry.load(name)
    declared = {model.__table__.name for model in plugin.tables}
    package = plugin.hooks.__name__
    defined = {m.local_table.name for m in SQLModel._sa_registry.mappers
               if m.class_.__module__.startswith(package + ".") or m.class_.__module__ == package}
    assert declared == defined
    assert declared <= tables(runtime)
    assert migrate.pending_changes(runtime.db.engine, name) == []


NOTES_PLUGIN = '''
from memberkit.plugin import Plugin, hookimpl
from mk_notes.models import Note

plugin = Plugin("notes", tables=(Note,))


@hookimpl
def order_paid(ctx, order):
    ctx.conn.execute(Note.__table__.insert().values(member_id=order.member_id, text=order.order_id))
'''

NOTES_MODELS = '''
from sqlmodel import Field, SQLModel

from memberkit.plugin import member_column


class Note{version}(SQLModel, table=True):
    __tablename__ = "notes_note"
    id: int | None = Field(default=None, primary_key=True)
    member_id: str = Field(sa_column=member_column())
    text: str = Field(max_length=200)
{extra}
Note = Note{version}
'''


@pytest.fixture
def notes(tmp_path, monkeypatch, add_plugin):
    """A plugin package of the test's own, `mk_notes`, whose models the test can change: `notes(version,
    extra)` writes its models and (re)loads it."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(tmp_path))
    package = tmp_path / "mk_notes"
    package.mkdir()
    (package / "__init__.py").write_text(NOTES_PLUGIN)

    def load(version: int, extra: str = ""):
        for table in [t for t in SQLModel.metadata.tables.values() if t.name.startswith("notes_")]:
            SQLModel.metadata.remove(table)
        for module in [m for m in sys.modules if m.startswith("mk_notes")]:
            del sys.modules[module]
        (package / "models.py").write_text(NOTES_MODELS.format(version=version, extra=extra))
        importlib.invalidate_caches()
        return add_plugin(importlib.import_module("mk_notes"))

    yield load
    for table in [t for t in SQLModel.metadata.tables.values() if t.name.startswith("notes_")]:
        SQLModel.metadata.remove(table)
    for module in [m for m in sys.modules if m.startswith("mk_notes")]:
        del sys.modules[module]


def test_migrations_new_writes_each_revision_a_plugins_models_need(notes, fresh_database, settings_file):
    plugin = notes(1)
    runner = CliRunner()
    first = runner.invoke(cli.app, ["migrations", "new", "--plugin", "notes", "-m", "notes table"])
    assert first.exit_code == 0, first.output
    [written] = (Path(plugin.migrations)).glob("notes_0001_*.py")
    text_of_first = written.read_text()
    assert "branch_labels = ('notes',)" in text_of_first and "op.create_table('notes_note'" in text_of_first
    assert "depends_on = ['checkout_0001'" not in text_of_first and "core_0009" in text_of_first

    again = runner.invoke(cli.app, ["migrations", "new", "--plugin", "notes", "-m", "nothing"])
    assert again.exit_code == 1 and "nothing to write" in again.stderr

    config = settings_file(TWO_SHOPS.replace("[shops.alpha.coupons.TEN_OFF]",
                                             'plugins = ["notes"]\n\n[shops.alpha.coupons.TEN_OFF]', 1))
    url = fresh_database()
    runtime = Runtime(settings_module.load(config), Database(url))
    try:
        migrate.upgrade(runtime)
        assert "notes_note" in tables(runtime) and migrate.pending_changes(runtime.db.engine, "notes") == []

        notes(2, "    pinned: bool = False\n")  # the model changes: the next revision adds the column
        assert migrate.pending_changes(runtime.db.engine, "notes") != []
        second = runner.invoke(cli.app, ["migrations", "new", "--plugin", "notes", "-m", "pinned notes"])
        assert second.exit_code == 0, second.output
        [revision] = Path(plugin.migrations).glob("notes_0002_*.py")
        assert "down_revision = 'notes_0001'" in revision.read_text() and "'pinned'" in revision.read_text()
        migrate.upgrade(runtime)
        assert migrate.pending_changes(runtime.db.engine, "notes") == [] and migrate.is_current(runtime)
    finally:
        if TEST_DATABASE_URL:
            command.downgrade(migrate.alembic_config(runtime), "notes@base")
        runtime.db.dispose()


def test_migrations_new_names_what_is_wrong():
    unknown = CliRunner().invoke(cli.app, ["migrations", "new", "--plugin", "nope", "-m", "x"])
    assert unknown.exit_code == 1 and "unknown plugin 'nope'" in unknown.stderr
    no_tables = CliRunner().invoke(cli.app, ["migrations", "new", "--plugin", "perks", "-m", "x"])
    assert no_tables.exit_code == 1 and "nothing to write" in no_tables.stderr  # its tables and revisions agree
