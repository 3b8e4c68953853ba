"""The `memberkit` command: check settings, migrate, serve, print the schema, manage keys, run jobs, and
write a plugin's migrations or a new plugin."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, InterfaceError, NoSuchModuleError, OperationalError

from memberkit import config as settings_module
from memberkit import logs
from memberkit.secrets import ensure_secrets

app = typer.Typer(help="memberkit: a headless, plugin-based membership programme.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
keys_app = typer.Typer(help="Create, list and revoke shop keys.", no_args_is_help=True)
jobs_app = typer.Typer(help="Run plugins' time-driven jobs.", no_args_is_help=True)
members_app = typer.Typer(help="A shop's members.", no_args_is_help=True)
import_app = typer.Typer(help="Bring data in from elsewhere.", no_args_is_help=True)
migrations_app = typer.Typer(help="Write plugins' Alembic revisions from their tables.", no_args_is_help=True)
plugin_app = typer.Typer(help="Start a plugin of your own.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(jobs_app, name="jobs")
app.add_typer(members_app, name="members")
app.add_typer(import_app, name="import")
app.add_typer(migrations_app, name="migrations")
app.add_typer(plugin_app, name="plugin")

err = Console(stderr=True)
ConfigOption = Annotated[Optional[str], typer.Option("--config", "-c", envvar="MEMBERKIT_CONFIG",
                                                      help="Settings file (default: plugins.toml).")]


def _runtime(config: str | None, announce: bool = False):
    from memberkit.core.db import Database
    from memberkit.core.runtime import Runtime

    try:
        settings = settings_module.load(config)
    except settings_module.SettingsError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/red] {escape(str(problem))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if config:
        os.environ["MEMBERKIT_CONFIG"] = config  # the development secrets live beside it
    ensure_secrets(announce)
    return Runtime(settings, Database())


def _ensure_migrated(runtime) -> None:
    from memberkit import migrate

    try:
        if runtime.db.is_sqlite:
            migrate.upgrade(runtime)  # a new or older SQLite file is brought up to date by itself
        elif not migrate.is_current(runtime):
            err.print("[red]error[/red] the database is not up to date: run `memberkit migrate` first")
            raise typer.Exit(1)
    except migrate.MigrationError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _shop(runtime, slug: str):
    if slug not in runtime.settings.shops:
        err.print(f"[red]error[/red] no shop {slug!r} in {runtime.settings.path}; its shops: "
                  f"{', '.join(runtime.settings.shops)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    return runtime.settings.shops[slug]


@app.command()
def check(file: Annotated[Optional[str], typer.Argument(help="Settings file (default: plugins.toml).")] = None):
    """Validate a settings file; print every problem with file, shop, plugin, key and what was expected."""
    try:
        loaded = settings_module.load(file)
    except settings_module.SettingsError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/red] {escape(str(problem))}", highlight=False, soft_wrap=True)
        err.print(f"{len(exc.problems)} problem(s)")
        raise typer.Exit(1) from None
    for shop in loaded.shops.values():
        typer.echo(f"{loaded.path}: shop {shop.slug!r} ok ({', '.join(shop.plugins) or 'no plugins'})")


@app.command()
def migrate(config: ConfigOption = None):
    """Upgrade the database to every head: core's branch and each enabled plugin's."""
    from memberkit import migrate as migrations

    runtime = _runtime(config)
    try:
        applied = migrations.upgrade(runtime)
    except migrations.MigrationError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if applied:
        typer.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    typer.echo("database is up to date")


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    dev: Annotated[bool, typer.Option("--dev", help="Development: GraphiQL and unmasked errors.")] = False,
    jobs_interval: Annotated[float, typer.Option(help="Seconds between job runs; 0 turns the timer off.")] = 60,
    services: Annotated[bool, typer.Option(
        help="Run the plugins' services (webhook delivery) in every worker; --no-services when separate "
             "processes run them (memberkit webhooks deliver), keeping the workers for requests.")] = True,
):
    """Serve /graphql and /healthz with uvicorn; a new SQLite database is migrated first."""
    import uvicorn

    runtime = _runtime(config, announce=True)
    _ensure_migrated(runtime)
    runtime.db.dispose()  # _runtime set MEMBERKIT_CONFIG and the secrets: the workers inherit them
    if dev:
        os.environ["MEMBERKIT_ENV"] = "development"
    os.environ["MEMBERKIT_JOBS_INTERVAL"] = str(jobs_interval)
    os.environ["MEMBERKIT_SERVICES"] = "1" if services else "0"
    uvicorn.run("memberkit.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="info", access_log=False)


@app.command()
def schema(shop: Annotated[str, typer.Option("--shop", help="Shop slug.")], config: ConfigOption = None):
    """Print the GraphQL SDL the shop's storefronts and integrators see."""
    from memberkit.schema.builder import build_schema

    runtime = _runtime(config)
    typer.echo(build_schema(_shop(runtime, shop).plugins).as_str())


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@keys_app.command("create")
def keys_create(
    shop: Annotated[str, typer.Option("--shop", help="Shop slug.")],
    kind: Annotated[Optional[str], typer.Option(
        "--kind", help="secret (the integration's), publishable (a storefront's: reads only) or staff (the "
                       "operator console's, with --role).")] = None,
    role: Annotated[Optional[str], typer.Option(
        "--role", help="A staff key's role: viewer (reads) or operator (also adjusts points, sets tiers, "
                       "redelivers webhooks).")] = None,
    publishable: Annotated[bool, typer.Option("--publishable", help="Same as --kind publishable.")] = False,
    label: Annotated[str, typer.Option(help="A note to tell keys apart (a staff key's names its holder in the "
                                            "audit log).")] = "",
    config: ConfigOption = None,
):
    """Make a key; it is printed once, alone on the last line, and only its hash is stored."""
    from memberkit.schema import auth

    kind = kind or ("publishable" if publishable else "secret")
    if publishable and kind != "publishable":
        _fail(f"--publishable and --kind {kind} disagree: give one of them")
    try:
        runtime = _runtime(config)
        _shop(runtime, shop)
        _ensure_migrated(runtime)
        with runtime.db.write() as conn:
            key_id, key = auth.create_key(conn, shop, kind, label, role)  # type: ignore[arg-type]
    except ValueError as e:
        _fail(str(e).replace("kind is", "--kind is").replace("role is", "--role is"))
    described = f"staff key ({role})" if kind == "staff" else f"{kind} key"
    typer.echo(f"created {described} {key_id} for shop {shop}; store it now, it cannot be shown again:")
    typer.echo(key)


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="The key id (key_...) or the key itself.")],
                config: ConfigOption = None):
    """End a key: calls with it fail from now on."""
    from memberkit.schema import auth

    runtime = _runtime(config)
    _ensure_migrated(runtime)
    with runtime.db.write() as conn:
        row = auth.revoke_key(conn, key)
    if row is None:
        err.print("[red]error[/red] no such key")
        raise typer.Exit(1)
    typer.echo(f"revoked key {row.id} of shop {row.shop}")


@keys_app.command("list")
def keys_list(shop: Annotated[Optional[str], typer.Option("--shop")] = None, config: ConfigOption = None):
    """List keys (id, shop, kind, prefix, created, revoked); never the keys themselves."""
    from memberkit.schema import auth

    runtime = _runtime(config)
    if shop is not None:
        _shop(runtime, shop)
    _ensure_migrated(runtime)
    with runtime.db.read() as conn:
        rows = auth.list_keys(conn, shop)
    # Plain columns, never cut to the terminal's width: an id is pasted into `keys revoke`.
    lines = [("id", "shop", "kind", "prefix", "created", "revoked", "label")] + [
        (row.id, row.shop, f"{row.kind} ({row.role})" if row.role else row.kind, row.prefix + "...",
         f"{row.created_at:%Y-%m-%d %H:%M}", f"{row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "-",
         row.label) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(6)]
    for line in lines:
        typer.echo("  ".join(value.ljust(width) for value, width in zip(line, widths, strict=False)) + "  " + line[6])


def printable(text: str | None) -> str | None:
    """Text with its control characters (newlines, terminal escapes) shown as escapes, not acted on."""
    return None if text is None else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@app.command()
def audit(
    shop: Annotated[str, typer.Option("--shop", help="The shop.")],
    limit: Annotated[int, typer.Option(help="How many entries, newest first (1 to 1000).", min=1, max=1000)] = 50,
    config: ConfigOption = None,
):
    """The audit log of staff writes (adjust points, set a tier, redeliver webhooks), newest first: when, the
    staff key (id, label, role), the operation, its arguments and the reason given."""
    import json

    from sqlalchemy import select

    from memberkit.schema.audit import AUDIT

    runtime = _runtime(config)
    _shop(runtime, shop)
    _ensure_migrated(runtime)
    with runtime.db.read() as conn:
        rows = conn.execute(select(AUDIT).where(AUDIT.c.shop == shop).order_by(AUDIT.c.id.desc()).limit(limit)).all()
    for row in rows:
        who = f"{row.key_id} ({printable(row.key_label) or '-'}, {row.role})"  # staff typed these: no forged lines
        typer.echo(f"{row.created_at:%Y-%m-%d %H:%M:%S}  {who}  {row.operation} "
                   f"{json.dumps(row.arguments, ensure_ascii=False)}  reason: {printable(row.reason) or '-'}")


@app.command()
def kpis(
    shop: Annotated[str, typer.Option("--shop", help="The shop.")],
    from_: Annotated[Optional[str], typer.Option("--from", help="Start, ISO 8601 with offset, on a local hour "
                                                 "(default: 7 days before --to).")] = None,
    to: Annotated[Optional[str], typer.Option(help="End (default: the end of the current local hour).")] = None,
    csv_file: Annotated[Optional[Path], typer.Option("--csv", help="Also write the rows to this CSV file.")] = None,
    config: ConfigOption = None,
):
    """The programme's figures over a period and their change against the period of the same length before."""
    from datetime import datetime

    from rich.table import Table

    from memberkit import kpis_report

    runtime = _runtime(config)
    found = _shop(runtime, shop)
    _ensure_migrated(runtime)
    start, end = kpis_report.default_period(found)
    span = end - start
    try:  # one end given: the other is a default period's length away
        if from_ or to:
            start = datetime.fromisoformat(from_) if from_ else datetime.fromisoformat(to) - span
            end = datetime.fromisoformat(to) if to else start + span
        table = kpis_report.rows(runtime, found, start, end)
    except (ValueError, kpis_report.KpisError) as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    shown = Table(title=f"{found.name}: {start.isoformat()} to {end.isoformat()}")
    for column in kpis_report.COLUMNS:
        shown.add_column(column, justify="left" if column == "figure" else "right")
    for row in table:
        shown.add_row(*("-" if cell is None else f"{cell:+}%" if i == 3 else str(cell) for i, cell in enumerate(row)))
    Console().print(shown)
    if csv_file is not None:
        with csv_file.open("w", newline="", encoding="utf-8") as out:
            kpis_report.write_csv(table, out)
        err.print(f"{len(table)} row(s) written to {csv_file}", highlight=False)


@members_app.command("export")
def members_export(
    shop: Annotated[str, typer.Option("--shop", help="The shop.")],
    csv_file: Annotated[Path, typer.Option("--csv", help="The CSV file to write ('-': standard output).")],
    segment: Annotated[Optional[str], typer.Option(help="Members of this segment.")] = None,
    tier: Annotated[Optional[str], typer.Option(help="Members of this tier.")] = None,
    lifecycle: Annotated[Optional[str], typer.Option(help="NEW, ACTIVE, DORMANT or CHURNED.")] = None,
    rfm_band: Annotated[Optional[str], typer.Option(help="Members of this RFM band.")] = None,
    tag: Annotated[Optional[list[str]], typer.Option(help="Members with this tag (repeat: with all of them).")] = None,
    any_tag: Annotated[Optional[list[str]], typer.Option(help="Members with any of these tags (repeat).")] = None,
    joined_from: Annotated[Optional[str], typer.Option(help="Joined at or after (ISO 8601 with offset).")] = None,
    joined_to: Annotated[Optional[str], typer.Option(help="Joined before (ISO 8601 with offset).")] = None,
    config: ConfigOption = None,
):
    """Stream the members a filter matches to CSV (the members query's filter, a page at a time), with a
    progress bar; the columns never carry personal data."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from memberkit import export as exporting

    runtime = _runtime(config)
    found = _shop(runtime, shop)
    _ensure_migrated(runtime)
    member_filter = {key: value for key, value in {
        "segment": segment, "tier": tier, "lifecycle": lifecycle and lifecycle.upper(), "rfmBand": rfm_band,
        "tagsAll": tag or None, "tagsAny": any_tag or None, "joinedFrom": joined_from,
        "joinedTo": joined_to}.items() if value is not None}
    out = sys.stdout if str(csv_file) == "-" else csv_file.open("w", newline="", encoding="utf-8")
    try:
        with Progress(TextColumn("members"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err) as bars:
            task = bars.add_task("export", total=None)
            count = exporting.export(runtime, found, member_filter, out,
                                     lambda done, total: bars.update(task, completed=done, total=total))
    except exporting.ExportError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        if out is not sys.stdout:
            out.close()
    err.print(f"{count} member(s) written to {csv_file}", highlight=False)


@members_app.command("erase")
def members_erase(
    shop: Annotated[str, typer.Option("--shop", help="The shop.")],
    member: Annotated[str, typer.Option("--member", help="The member's memberkit id (mem_...).")],
    idempotency_key: Annotated[str, typer.Option(help="The erasure's key (a retry with it changes nothing).")] = "cli",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = None,
):
    """Erase a member (eraseMember): personal data and tags gone, ledger and orders kept, the externalId free
    to sign up afresh. It cannot be undone."""
    from memberkit.schema.erasure import erase_member

    runtime = _runtime(config)
    found = _shop(runtime, shop)
    _ensure_migrated(runtime)
    if not yes and not typer.confirm(f"Erase member {member} of shop {shop}? This cannot be undone"):
        raise typer.Exit(1)
    result = erase_member(runtime, found, None, member_id=member, idempotency_key=idempotency_key)
    if result.errors:
        for error in result.errors:
            err.print(f"[red]error[/red] {error.code}: {escape(error.message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    typer.echo(f"member {member} erased" + (" (already, by this key)" if result.duplicate else ""))


@import_app.command("members")
def import_members(
    file: Annotated[Path, typer.Argument(help="The CSV file (columns: docs/importing.md).", exists=True,
                                         dir_okay=False)],
    shop: Annotated[str, typer.Option("--shop", help="The shop.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the whole file and write nothing.")] = False,
    errors: Annotated[Optional[Path], typer.Option("--errors", help="Write the bad rows here, as CSV with an "
                                                   "error column.")] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Import the good rows of a file that has "
                                               "bad ones (default: refuse the file).")] = False,
    batch: Annotated[int, typer.Option(min=1, max=20000, help="Rows per transaction.")] = 5000,
    config: ConfigOption = None,
):
    """Import members from an offline CRM's CSV: every bad row reported with its line and column; a rerun
    (after a crash or Ctrl-C) skips the members already imported."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from memberkit import importer

    runtime = _runtime(config)
    found = _shop(runtime, shop)
    _ensure_migrated(runtime)
    out = errors.open("w", newline="", encoding="utf-8") if errors else None
    try:
        report = importer.check(runtime, found, file, out)
    except importer.ImportFileError as exc:
        err.print(f"[red]error[/red] {escape(str(file))}: {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        if out is not None:
            out.close()
    for problem in report.errors:
        err.print(f"[red]error[/red] {escape(str(problem))}", highlight=False, soft_wrap=True)
    if report.invalid > len(report.errors):
        err.print(f"... and more: {report.invalid} bad row(s) in all" + (f", every one in {errors}" if errors else
                  " (--errors FILE writes them all)"), highlight=False)
    fresh = report.rows - report.invalid - report.skipped
    typer.echo(f"{file}: {report.rows} row(s), {report.invalid} bad, {report.skipped} already member(s) of "
               f"{shop}, {fresh} to import")
    if dry_run:
        raise typer.Exit(1 if report.invalid else 0)
    if report.invalid and not skip_invalid:
        err.print("[red]error[/red] nothing imported: correct the bad rows, or import the others with "
                  "--skip-invalid", highlight=False)
        raise typer.Exit(1)
    with Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]} rows/s"), TimeRemainingColumn(), console=err) as bars:
        task = bars.add_task("import", total=report.rows, rate="-")

        def show(rows: int) -> None:
            bars.update(task, completed=rows)
            speed = bars.tasks[task].speed
            bars.update(task, rate=f"{speed:,.0f}" if speed else "-")

        try:
            done = importer.run(runtime, found, file, batch=batch, skip_invalid=skip_invalid, progress=show,
                                checked=report)
        except importer.ImportFileError as exc:
            err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted: the batches written so far stay; run the same command again to import the "
                      "rest", highlight=False)
            raise typer.Exit(130) from None
    typer.echo(f"imported {done.imported} member(s); {done.skipped} already member(s), {done.invalid} bad row(s) "
               f"skipped (import {done.key})")


@jobs_app.command("run")
def jobs_run(shop: Annotated[Optional[str], typer.Option("--shop", help="Only this shop.")] = None,
             force: Annotated[bool, typer.Option(help="Run jobs that are not due yet.")] = False,
             config: ConfigOption = None):
    """Run every due job of every enabled plugin, then the queued one-off jobs (campaigns, imports) with a
    progress bar (safe to repeat, and beside running servers)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from memberkit import jobs

    runtime = _runtime(config)
    if shop is not None:
        _shop(runtime, shop)
    _ensure_migrated(runtime)
    runs = jobs.run_due(runtime, shop, force)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=False) as bars:
        tasks: dict[str, int] = {}

        def show(run_id: str, done: int, total: int | None) -> None:
            if run_id not in tasks:
                tasks[run_id] = bars.add_task(f"job {run_id}", total=total)
            bars.update(tasks[run_id], completed=done, total=max(total or 0, done) or None)

        runs += jobs.run_queued(runtime, shop, show)
    for run in runs:
        typer.echo(f"{run.shop} {run.job}: {run.status}" + (f" ({run.result})" if run.result else ""))
    if not runs:
        typer.echo("no jobs: no enabled plugin has any")
    if any(run.status == "failed" for run in runs):
        raise typer.Exit(1)


@migrations_app.command("new")
def migrations_new(plugin: Annotated[str, typer.Option("--plugin", help="The plugin whose tables changed.")],
                   message: Annotated[str, typer.Option("--message", "-m", help="What the revision does.")]):
    """Write the plugin's next revision into its migrations folder, generated from its declared tables
    (Alembic autogenerate on the plugin's branch); no database or settings file is needed."""
    from memberkit import migrate
    from memberkit.core import plugins as plugin_registry

    try:
        path = migrate.new_revision(plugin, message)
    except (migrate.MigrationError, plugin_registry.UnknownPlugin) as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {path}")


@plugin_app.command("new")
def plugin_new(name: Annotated[str, typer.Argument(help="The plugin's name, e.g. loyalty_club.")],
               directory: Annotated[str, typer.Option("--dir", help="Where to write mk-NAME/.")] = "."):
    """Write a plugin package: pyproject with its entry point, the declaration with one setting, one table
    and its first migration, one Member field, one hook, and a test on memberkit.testing that passes."""
    from pathlib import Path

    from memberkit import scaffold

    try:
        root = scaffold.new_plugin(name, Path(directory))
    except scaffold.ScaffoldError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {root}: cd there, `pip install -e .` and run `pytest`")


def _service_command(service):
    def command(config: ConfigOption = None):
        import asyncio
        import signal

        runtime = _runtime(config, announce=True)
        _ensure_migrated(runtime)

        async def run() -> None:
            stopping = asyncio.Event()
            for number in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(number, stopping.set)
            await service.run(runtime, stopping)

        try:  # the event loop `memberkit serve` runs its services on (uvicorn takes uvloop where installed)
            from uvloop import run as run_loop
        except ImportError:
            run_loop = asyncio.run
        run_loop(run())
        runtime.db.dispose()

    command.__doc__ = service.help or f"Run the {service.name} service until Ctrl-C or SIGTERM."
    return command


def _add_service_commands() -> None:
    """`memberkit PLUGIN SERVICE` for each installed plugin's services, e.g. `memberkit webhooks deliver`
    (what `memberkit serve` also runs in every worker), for a process of its own."""
    from memberkit.core import plugins as registry

    taken = {group.name for group in app.registered_groups} | {c.name for c in app.registered_commands}
    for name in registry.installed():
        try:
            plugin = registry.load(name)
        except Exception as exc:  # a broken third-party plugin must not break every command
            logging.getLogger("memberkit.cli").debug("plugin %s not loaded: %s", name, exc)
            continue
        if not plugin.services or name in taken:
            continue
        group = typer.Typer(help=f"The {name} plugin's services.", no_args_is_help=True)
        for service in plugin.services:
            group.command(service.name)(_service_command(service))
        app.add_typer(group, name=name)


_add_service_commands()


def main() -> None:
    logs.configure()
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrations print their own one-line outcome
    try:
        app()
    except (ArgumentError, NoSuchModuleError, OperationalError, InterfaceError) as exc:
        # one line, never a traceback: what failed, where, and how to fix it
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        err.print(f"[red]error[/red] cannot use the database {escape(_shown_url())}: {escape(reason)}; set "
                  "MEMBERKIT_DATABASE_URL to sqlite:///path.db or postgresql://user@host:5432/db and check that "
                  "the server runs", highlight=False, soft_wrap=True)
        sys.exit(1)


def _shown_url() -> str:
    from memberkit.core.db import DEFAULT_URL

    raw = os.environ.get("MEMBERKIT_DATABASE_URL") or DEFAULT_URL
    try:
        return make_url(raw).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(raw)


if __name__ == "__main__":
    sys.exit(main())
