"""``memberkit import members``: a shop's customers from an offline CRM's CSV file (docs/importing.md).

The file is read twice, a row at a time, never whole: `check` finds every bad row (line, column, what was
expected) and writes nothing; `run` refuses a file with errors (unless told to skip them), then imports it
in batches, each one transaction: core's rows (hashed exactly as sign-up hashes them), then the
``members_imported`` hook, where each plugin stores what it keeps in a few multi-row statements. A member
whose externalId the shop already has (an earlier, interrupted run, or a sign-up) is skipped, so a rerun
resumes and writes nothing twice; the whole import emits one ``members.imported`` event when it completes.
"""

from __future__ import annotations

import csv
import hashlib
import re
import secrets
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from time import time_ns
from typing import IO, Any

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from memberkit.core import clock
from memberkit.core.checks import check_birthday, check_tags, email_hash, phone_hash, require_key, require_moment
from memberkit.core.intake import EventResult, run_event
from memberkit.core.models import Member, MemberPersonal
from memberkit.core.runtime import Runtime
from memberkit.core.settings import Shop
from memberkit.core.types import MAX_INT, ImportedMember, Refused
from memberkit.plugin import among, insert_rows
from memberkit.schema import erasure

COLUMNS = ("externalId", "phone", "email", "birthday", "joinedAt", "tier", "tags", "lifetimeSpend", "orderCount",
           "lastOrderAt", "points", "pointsEarnedAt", "pointsExpireAt")
ERROR_COLUMN = "error"  # what the errors file adds; ignored on import, so a corrected errors file imports as it is
TAG_SEPARATOR = "|"
BATCH, MAX_BATCH = 5000, 20000
WORKERS = 2  # PostgreSQL: batches written at once, each in its own transaction (one works while one waits)
MAX_FIELD = 10_000  # characters in one field: an unclosed quote stops here instead of reading on to the end
SQLITE_CACHE_KB = 65536  # the import's SQLite page cache (the default is 2 MB)
SHOWN_ERRORS = 50  # errors kept for the terminal; the errors file gets all of them
MEMBERS, PERSONAL, FRAUD = Member.__table__, MemberPersonal.__table__, erasure.FraudHash.__table__
_NUMBER = re.compile(r"[+-]?\d+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class ImportFileError(Exception):
    """The file cannot be read as an import at all (its header, its encoding, a broken quote)."""


@dataclass(frozen=True)
class RowError:
    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}" + (f", column {self.column}" if self.column else "") + f": {self.message}"


@dataclass(frozen=True)
class Row:
    """A valid row, parsed: personal data already as keyed hashes."""

    line: int
    external_id: str
    phone_hash: str | None
    email_hash: str | None
    birthday: date | None
    joined_at: datetime | None
    tier: str | None
    tags: tuple[str, ...]
    lifetime_spend: int
    order_count: int
    last_order_at: datetime | None
    points: int
    points_earned_at: datetime | None
    points_expire_at: datetime | None


@dataclass
class Report:
    """What a check or a run found and did. `errors` holds the first SHOWN_ERRORS; `invalid` counts the rows."""

    key: str = ""
    rows: int = 0
    invalid: int = 0
    errors: list[RowError] = field(default_factory=list)
    imported: int = 0
    skipped: int = 0  # members the shop already had (an earlier run, or a sign-up) or erased

    def add_error(self, error: RowError) -> None:
        if len(self.errors) < SHOWN_ERRORS:
            self.errors.append(error)


class _Parser:
    """Turns one CSV record into a Row, or the list of what is wrong with it, with core's own checks."""

    def __init__(self, shop: Shop, now: datetime, tiers: list[str] | None):
        self.shop, self.now, self.tiers = shop, now, tiers
        self.today = shop.local(now).date()
        self.midnights: dict[str, datetime] = {}
        moment, number = self.moment, self.number
        self.cells: list[tuple[str, Callable[[str], Any]]] = [  # each column's check, in the columns' order
            ("externalId", lambda v: require_key(v, "externalId")), ("phone", phone_hash), ("email", email_hash),
            ("birthday", self.birthday), ("joinedAt", lambda v: moment(v, "joinedAt")), ("tier", self.tier),
            ("tags", lambda v: check_tags(v.split(TAG_SEPARATOR))),
            ("lifetimeSpend", lambda v: number(v, "lifetimeSpend", MAX_INT)),
            ("orderCount", lambda v: number(v, "orderCount", MAX_INT)),
            ("lastOrderAt", lambda v: moment(v, "lastOrderAt")), ("points", lambda v: number(v, "points", MAX_INT)),
            ("pointsEarnedAt", lambda v: moment(v, "pointsEarnedAt")),
            ("pointsExpireAt", lambda v: moment(v, "pointsExpireAt", fact=False))]

    def moment(self, value: str, column: str, fact: bool = True) -> datetime:
        """ISO 8601 with an offset, or a date, read as midnight in the shop's timezone."""
        moment = self.midnights.get(value)  # a file repeats its dates: each converted once
        if moment is None:
            try:
                if _DATE.fullmatch(value):
                    moment = datetime.combine(date.fromisoformat(value), time(0), self.shop.timezone).astimezone(UTC)
                    require_moment(moment, column, self.now, fact)
                    self.midnights[value] = moment  # valid ones only: at most the days of the window, 36,500
                    return moment
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise Refused("INVALID_TIME", f'"{value}" is not a time: expected ISO 8601 with an offset, e.g. '
                              f"2026-11-23T20:00:00+08:00, or a date YYYY-MM-DD (midnight in "
                              f"{self.shop.timezone.key})", column) from None
        require_moment(moment, column, self.now, fact)
        return moment.astimezone(UTC)

    @staticmethod
    def number(value: str, column: str, most: int) -> int:
        if not _NUMBER.fullmatch(value) or not 0 <= int(value) <= most:
            raise Refused("INVALID_NUMBER", f'"{value}" is not a whole number from 0 to {most}', column)
        return int(value)

    def parse(self, line: int, record: dict[str, str]) -> Row | list[RowError]:
        errors: list[RowError] = []
        values: dict[str, Any] = {}
        for column, convert in self.cells:
            raw = record.get(column)
            raw = raw.strip() if raw else None
            try:
                values[column] = convert(raw) if raw else None
            except Refused as refusal:
                errors.append(RowError(line, column, refusal.message))
        if "externalId" in values and values["externalId"] is None:
            errors.insert(0, RowError(line, "externalId", "empty: expected the CRM's id of the customer"))
        errors += self.consistent(line, values)
        if errors:
            return errors
        return Row(line, values["externalId"], values["phone"], values["email"], values["birthday"],
                   values["joinedAt"], values["tier"], values["tags"] or (), values["lifetimeSpend"] or 0,
                   values["orderCount"] or 0, values["lastOrderAt"], values["points"] or 0,
                   values["pointsEarnedAt"], values["pointsExpireAt"])

    def birthday(self, value: str) -> date:
        try:
            born = date.fromisoformat(value) if _DATE.fullmatch(value) else None
        except ValueError:
            born = None
        if born is None:  # the value is personal data: not repeated in the message
            raise Refused("INVALID_BIRTHDAY", "not a date YYYY-MM-DD (e.g. 1990-03-15)", "birthday")
        check_birthday(born, self.today)
        return born

    def tier(self, value: str) -> str:
        if self.tiers is None:
            raise Refused("UNKNOWN_TIER", f'"{value}": this shop keeps no tiers (no tiering plugin): expected '
                          "the column empty", "tier")
        if value.upper() not in self.tiers:
            raise Refused("UNKNOWN_TIER", f'"{value}" is not a tier of this shop: expected one of '
                          f"{', '.join(self.tiers)}", "tier")
        return value.upper()

    def consistent(self, line: int, v: dict[str, Any]) -> list[RowError]:
        """What the columns say together: orders before the last order date, points before their dates."""
        errors = []
        if v.get("lastOrderAt") and not v.get("orderCount") and "orderCount" in v:
            errors.append(RowError(line, "orderCount", "empty or 0 while lastOrderAt is set: expected the number "
                                   "of orders, 1 or more"))
        if (v.get("pointsEarnedAt") or v.get("pointsExpireAt")) and not v.get("points") and "points" in v:
            errors.append(RowError(line, "points", "empty or 0 while pointsEarnedAt or pointsExpireAt is set: "
                                   "expected the balance those dates belong to"))
        expires, earned = v.get("pointsExpireAt"), v.get("pointsEarnedAt") or self.now
        if expires is not None and expires <= max(earned, self.now):
            errors.append(RowError(line, "pointsExpireAt", f"{expires.isoformat()} is not after the points were "
                                   f"earned and after now: expected a later time (expired points are not imported)"))
        return errors


def _records(stream: IO[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """The data records with their line numbers (a record's first line; the header is line 1)."""
    reader = csv.DictReader(stream)
    if reader.fieldnames is None:
        raise ImportFileError("the file is empty: expected a header line naming the columns")
    header = [name.strip() for name in reader.fieldnames]
    unknown = [name for name in header if name not in COLUMNS and name != ERROR_COLUMN]
    if unknown or "externalId" not in header or len(set(header)) != len(header):
        problem = (f"unknown column(s) {', '.join(repr(n) for n in unknown)}" if unknown else
                   "no externalId column" if "externalId" not in header else "a column named twice")
        raise ImportFileError(f"line 1: {problem}; the known columns are {', '.join(COLUMNS)}")
    reader.fieldnames = header
    start = reader.line_num + 1
    try:
        for record in reader:
            if None in record:
                raise ImportFileError(f"line {start}: more fields than the header's {len(header)} columns")
            yield start, record
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ImportFileError(f"line {start}: {exc} (a field longer than {MAX_FIELD} characters is an unclosed "
                              "quote, most likely)") from None


def _open(path: Path) -> IO[str]:
    csv.field_size_limit(MAX_FIELD)
    return path.open(newline="", encoding="utf-8-sig")  # a byte-order mark (spreadsheets write one) is skipped


def _rows(path: Path, parser: _Parser, report: Report, on_error: Callable[[list[RowError], dict], None] | None = None,
          check_duplicates: bool = False) -> Iterator[Row]:
    """The file's valid rows, streamed; bad ones counted in `report` (and handed to `on_error`)."""
    seen: set[int] = set()  # a 64-bit hash per externalId, not the ids: some 60 bytes a row, not the row
    with _open(path) as stream:
        try:
            for line, record in _records(stream):
                report.rows += 1
                parsed = parser.parse(line, record)
                if isinstance(parsed, Row) and check_duplicates:
                    digest = int.from_bytes(hashlib.blake2b(parsed.external_id.encode(), digest_size=8).digest())
                    if digest in seen:
                        parsed = [RowError(line, "externalId", f'"{parsed.external_id}" is on an earlier line '
                                           "too: expected each externalId once")]
                    seen.add(digest)
                if isinstance(parsed, Row):
                    yield parsed
                    continue
                report.invalid += 1
                for error in parsed:
                    report.add_error(error)
                if on_error:
                    on_error(parsed, record)
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"line {report.rows + 2}: not UTF-8 text ({exc.reason}): save the file as "
                                  "UTF-8 CSV") from None


def file_key(path: Path) -> str:
    """The import's key: a hash of the file's bytes, so the same file is one import however often it runs."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return "members:" + digest.hexdigest()[:32]


def _parser(runtime: Runtime, shop: Shop) -> _Parser:
    with runtime.reading(shop) as ctx:
        catalog = ctx.hook.tier_catalog(ctx=ctx)
    return _Parser(shop, clock.now(), [tier.code for tier in catalog] if catalog is not None else None)


def _batches(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _existing(conn, shop: Shop, rows: list[Row]) -> set[str]:
    """The rows' externalIds the shop has as members, or had as members it has since erased (their fraud
    hashes, kept for MEMBERKIT_FRAUD_HASH_DAYS): an erased person is not imported again from the same file."""
    found = set(conn.execute(select(MEMBERS.c.external_id).where(
        MEMBERS.c.shop == shop.slug, among(conn, MEMBERS.c.external_id, [row.external_id for row in rows])))
        .scalars())
    if conn.execute(select(FRAUD.c.hash).where(FRAUD.c.shop == shop.slug).limit(1)).first() is not None:
        by_hash = {h: row.external_id for row in rows for h in erasure.fraud_hashes_of(row.external_id, "external_id")}
        found.update(by_hash[h] for h in conn.execute(select(FRAUD.c.hash).where(
            FRAUD.c.shop == shop.slug, FRAUD.c.expires_at > clock.now(), among(conn, FRAUD.c.hash, list(by_hash))))
            .scalars())
    return found


def check(runtime: Runtime, shop: Shop, path: Path, errors_out: IO[str] | None = None) -> Report:
    """Read the whole file and report every bad row, and how many members the shop already has; writes
    nothing to the database (`errors_out`: the bad rows as CSV, each error in an ``error`` column)."""
    report = Report(file_key(path))
    writer = None
    if errors_out is not None:
        writer = csv.DictWriter(errors_out, [*COLUMNS, ERROR_COLUMN], extrasaction="ignore")
        writer.writeheader()

    def write(errors: list[RowError], record: dict) -> None:
        writer.writerow({**record, ERROR_COLUMN: "; ".join(map(str, errors))})

    rows = _rows(path, _parser(runtime, shop), report, write if writer else None, check_duplicates=True)
    for batch in _batches(rows, BATCH):
        with runtime.reading(shop) as ctx:
            report.skipped += len(_existing(ctx.conn, shop, batch))
    return report


def run(runtime: Runtime, shop: Shop, path: Path, *, batch: int = BATCH, skip_invalid: bool = False,
        progress: Callable[[int], None] | None = None, checked: Report | None = None) -> Report:
    """Import the file (checked first unless `checked` is that check's report): refused, with nothing
    written, if it has bad rows and `skip_invalid` is False. `progress(rows)` after each batch."""
    if not 1 <= batch <= MAX_BATCH:
        raise ImportFileError(f"--batch is {batch}: expected 1 to {MAX_BATCH}")
    checked = checked or check(runtime, shop, path)
    if checked.invalid and not skip_invalid:
        return checked
    report = Report(checked.key)
    parser = _parser(runtime, shop)
    if runtime.db.is_sqlite:  # random member ids land all over the indexes: keep more of them in memory
        with runtime.db.write() as conn:
            conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KB}")
    workers = 1 if runtime.db.is_sqlite else WORKERS  # SQLite has one writer
    pending: deque[tuple[list[Row], int, Future]] = deque()

    def finish_oldest() -> None:
        rows, read, future = pending.popleft()
        imported = future.result()
        report.imported += imported
        report.skipped += len(rows) - imported
        if progress:
            progress(read)

    with ThreadPoolExecutor(workers, thread_name_prefix="import") as pool:
        try:
            for rows in _batches(_rows(path, parser, report), batch):
                if not report.imported and not pending:  # the first batch alone, then fresh statistics
                    pending.append((rows, report.rows, pool.submit(import_batch, runtime, shop, rows, report.key)))
                    finish_oldest()
                    if report.imported:
                        _analyze(runtime)
                    continue
                if len(pending) >= workers:  # the next batch is read while `workers` are being written
                    finish_oldest()
                pending.append((rows, report.rows, pool.submit(import_batch, runtime, shop, rows, report.key)))
            while pending:
                finish_oldest()
            if progress:
                progress(report.rows)  # the bad rows read after the last batch too
        except BaseException:
            for _, _, future in pending:
                future.cancel()
            raise
    _finish(runtime, shop, report)
    return report


def _analyze(runtime: Runtime) -> None:
    """PostgreSQL's statistics once the first batch is in: planned on the empty tables the import may start
    from, each batch's lookups (who is a member already, the new members' tiers) scan every row of the shop
    instead of using an index, slower as the import goes on. Once the statistics know a table's rows per
    page, the planner scales them with its size by itself."""
    if not runtime.db.is_sqlite:
        with runtime.db.write() as conn:
            conn.execute(text("ANALYZE"))


def import_batch(runtime: Runtime, shop: Shop, rows: list[Row], key: str, attempts: int = 3) -> int:
    """One transaction: the rows whose externalId the shop does not have yet become members (core's rows,
    then each plugin's through ``members_imported``). Returns how many were imported. A sign-up of one of
    them between the look and the insert (PostgreSQL) fails the batch, which is then run again."""
    for attempt in range(1, attempts + 1):
        try:
            return _import_batch(runtime, shop, rows, key)
        except IntegrityError:
            if attempt == attempts:
                raise
    return 0


def _import_batch(runtime: Runtime, shop: Shop, rows: list[Row], key: str) -> int:
    with runtime.transaction(shop, cause={"kind": "members_import", "key": key}) as ctx:
        if not runtime.db.is_sqlite:  # a batch lost to a crash right after its commit is imported by the rerun
            ctx.conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        existing = _existing(ctx.conn, shop, rows)
        fresh: dict[str, Row] = {}
        for row in rows:
            if row.external_id not in existing:
                fresh.setdefault(row.external_id, row)  # a file's first row of an externalId wins
        if not fresh:
            return 0
        members = [_imported(member_id, shop, row, ctx.now) for member_id, row in zip(
            _member_ids(len(fresh)), fresh.values(), strict=True)]
        insert_rows(ctx.conn, MEMBERS, [
            {"id": m.id, "shop": shop.slug, "external_id": m.external_id, "joined_at": m.joined_at,
             "tags": list(m.tags), "created_at": ctx.now, "paid_orders": m.order_count} for m in members])
        insert_rows(ctx.conn, PERSONAL, [
            {"member_id": m.id, "shop": shop.slug, "phone_hash": row.phone_hash, "email_hash": row.email_hash,
             "birthday": row.birthday} for m, row in zip(members, fresh.values(), strict=True)])
        ctx.hook.members_imported(ctx=ctx, members=members)
        return len(members)


def _member_ids(count: int) -> list[str]:
    """A batch's new member ids, 24 hex digits as a sign-up's, but rising: 7 bytes of the time in microseconds
    (plus the member's place in the batch), then 5 random bytes. Rising ids are appended at the end of every
    index keyed by member, core's and each plugin's, instead of landing all over them: on SQLite the batch's
    inserts took half the time. (A clash of two batches' ids would be a key violation: the batch runs again.)"""
    start = time_ns() // 1000
    return [f"mem_{start + place:014x}{secrets.token_hex(5)}" for place in range(count)]


def _imported(member_id: str, shop: Shop, row: Row, now: datetime) -> ImportedMember:
    joined_at = row.joined_at or now
    return ImportedMember(member_id, shop.slug, row.external_id, joined_at, row.tags, row.tier, row.lifetime_spend,
                          row.order_count, row.last_order_at or (joined_at if row.order_count else None), row.points,
                          row.points_earned_at or (now if row.points else None), row.points_expire_at)


def _finish(runtime: Runtime, shop: Shop, report: Report) -> None:
    """The import's one outbound event, once per file (keyed by its hash), when every row has been through."""

    def handle(ctx) -> EventResult:
        ctx.emit("members.imported", None, key=report.key, rows=report.rows, imported=report.imported,
                 skipped=report.skipped, invalid=report.invalid)
        return EventResult(data={"imported": report.imported, "skipped": report.skipped})

    run_event(runtime, shop, "members_import", report.key, {"file": report.key}, handle)
