"""Importing members from a CRM file: rows/s against the bar of 5,000, and peak memory at two file sizes.

    /tmp/venv/bin/python bench/import.py [--rows 100000] [--compare 200000] [--rounds 3] [--batch 5000]
                                         [--db sqlite,postgresql] [--server postgresql://...] [--dir /dev/shm]

Writes a CSV of `--rows` generated customers (every column of docs/importing.md: a phone on each, an email
on 70%, a birthday on 60%, tags, a tier given on a third, lifetime spend, orders and a last order on 80%,
opening points with dates on half), then imports it into a fresh database with the repo's plugins.toml
(demo shop: points, tiering, referral, perks, segments, webhooks, ...) in a child process, as
`memberkit import members` does: the check pass over the whole file, then the batched import. Each round
imports once per database (alternating, so a busy moment of the machine hits both); the median of the
rounds' rows/s for the whole command (check included) is printed with its ratio to the bar of 5,000 rows/s.
The first round also imports a file of `--compare` rows: the child's peak RSS at both sizes shows whether
memory stays flat. Every import is checked: one member, tier history row, lifecycle row and referral code
per row, one points lot per row with points, one members.imported event. PostgreSQL gets a database of its
own on `--server`, dropped afterwards. Not part of the tests or CI.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
BAR = 5000  # rows/s, the issue's


def generate(path: Path, rows: int, seed: int = 14) -> int:
    """The CSV of `rows` customers; returns how many have points."""
    from memberkit.importer import COLUMNS

    rng = random.Random(seed)
    today = date(2026, 11, 30)
    with_points = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for i in range(rows):
            joined = today - timedelta(days=rng.randrange(30, 2000))
            orders = rng.randrange(1, 60) if rng.random() < 0.8 else 0
            last = (joined + timedelta(days=rng.randrange(0, (today - joined).days))) if orders else None
            points = rng.randrange(1, 20000) if rng.random() < 0.5 else 0
            with_points += bool(points)
            earned = today - timedelta(days=rng.randrange(0, 300)) if points else None
            writer.writerow([
                f"crm-{i:08d}", f"13{rng.randrange(10**9):09d}",
                f"customer{i}@example.com" if rng.random() < 0.7 else "",
                date(rng.randrange(1950, 2005), rng.randrange(1, 13), rng.randrange(1, 29)).isoformat()
                if rng.random() < 0.6 else "",
                joined.isoformat(), rng.choice(["REGULAR", "SILVER", "GOLD"]) if rng.random() < 0.33 else "",
                "|".join(rng.sample(["vip", "sneakers", "newsletter", "outlet", "wechat"], rng.randrange(0, 3))),
                rng.randrange(0, 800000) if orders else 0, orders,
                datetime.combine(last, datetime.min.time(), UTC).replace(hour=rng.randrange(24)).isoformat()
                if last else "",
                points or "", earned.isoformat() if earned else "",
                (earned + timedelta(days=500)).isoformat() if earned and rng.random() < 0.5 else ""])
    return with_points


def child(args) -> None:
    """One import, in this process: the check pass, then the import; prints its figures as JSON."""
    from sqlalchemy import func, select

    from memberkit import config, importer, migrate
    from memberkit.core.models import Member
    from memberkit.plugins.points.models import PointsLot
    from memberkit.plugins.referral.models import ReferralCode
    from memberkit.plugins.segments.models import SegmentsLifecycle
    from memberkit.plugins.tiering.models import TierChange
    from memberkit.plugins.webhooks.models import WebhookEvent

    runtime = config.runtime()
    migrate.upgrade(runtime)
    shop = runtime.shop("demo")
    path = Path(args.file)
    started = time.perf_counter()
    checked = importer.check(runtime, shop, path)
    checked_at, cpu_before = time.perf_counter(), time.process_time()
    report = importer.run(runtime, shop, path, batch=args.batch, checked=checked)
    done, cpu = time.perf_counter(), time.process_time() - cpu_before
    with runtime.db.read() as conn:
        counts = {table.__tablename__: conn.execute(select(func.count()).select_from(table)).scalar()
                  for table in (Member, TierChange, SegmentsLifecycle, ReferralCode, PointsLot, WebhookEvent)}
    runtime.db.dispose()
    print("BENCH_JSON " + json.dumps({
        "rows": report.rows, "imported": report.imported, "invalid": checked.invalid, "check_s": checked_at - started,
        "import_s": done - checked_at, "import_cpu_s": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "counts": counts}))


def measure(url: str, file: Path, batch: int, workdir: Path) -> dict:
    env = {**os.environ, "MEMBERKIT_DATABASE_URL": url, "MEMBERKIT_CONFIG": str(ROOT / "plugins.toml"),
           "MEMBERKIT_PII_KEY": "bench-pii-key", "MEMBERKIT_TOKEN_SECRETS": "bench-token",
           "MEMBERKIT_WEBHOOK_KEYS": "bench-webhook"}
    done = subprocess.run([sys.executable, __file__, "--child", "--file", str(file), "--batch", str(batch)],
                          env=env, cwd=workdir, capture_output=True, text=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode or line is None:
        raise SystemExit(f"FAILED: the import exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(line.removeprefix("BENCH_JSON "))


def verify(result: dict, rows: int, with_points: int) -> None:
    counts = result["counts"]
    expected = {"core_member": rows, "tiering_history": rows, "segments_lifecycle": rows, "referral_code": rows,
                "points_lot": with_points, "webhooks_event": 1}
    if counts != expected or result["imported"] != rows:
        raise SystemExit(f"FAILED: rows written {counts}, expected {expected}")


def database(kind: str, server: str, workdir: Path, label: str):
    """A fresh database URL of `kind`, and how to drop it."""
    if kind == "sqlite":
        path = workdir / f"{label}.db"
        return f"sqlite:///{path}", lambda: None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"mk_import_bench_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(server).set(database=name).render_as_string(hide_password=False), drop


def main() -> int:
    parser = argparse.ArgumentParser(description="members imported/s from a CRM file, and peak memory")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--compare", type=int, default=200_000, help="a second file size for memory (0: none)")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3, help="imports of --rows per database, median taken")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--dir", default=None, help="where the files and SQLite databases go (e.g. /dev/shm)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="memberkit-import-bench-", dir=args.dir))
    try:
        sizes = [args.rows] + ([args.compare] if args.compare else [])
        files = {}
        for rows in sizes:
            files[rows] = (workdir / f"crm-{rows}.csv", generate(workdir / f"crm-{rows}.csv", rows))
        kinds = args.db.split(",")
        rates: dict[str, list[float]] = {kind: [] for kind in kinds}
        peaks: dict[str, dict[int, float]] = {kind: {} for kind in kinds}
        for round_ in range(1, args.rounds + 1):
            for kind in kinds:  # the databases alternate, so a busy moment of the machine hits both
                for rows in sizes if round_ == 1 else sizes[:1]:
                    url, drop = database(kind, args.server, workdir, f"{kind}-{rows}-{round_}")
                    try:
                        result = measure(url, files[rows][0], args.batch, workdir)
                    finally:
                        drop()
                    verify(result, rows, files[rows][1])
                    whole = rows / (result["check_s"] + result["import_s"])
                    if rows == args.rows:
                        rates[kind].append(whole)
                    peaks[kind][rows] = max(peaks[kind].get(rows, 0), result["peak_rss_mb"])
                    print(f"round {round_} {kind:10} {rows:>7} rows: {whole:7,.0f} rows/s in all, import pass "
                          f"{rows / result['import_s']:7,.0f} rows/s; check pass {result['check_s']:.1f} s, import "
                          f"pass {result['import_s']:.1f} s ({result['import_cpu_s']:.1f} s of CPU in the importer), "
                          f"peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
        for kind in kinds:
            median = statistics.median(rates[kind])
            line = (f"{kind:10} {args.rows:,} rows: median {median:,.0f} rows/s in all = {median / BAR:.2f}x the bar "
                    f"of {BAR:,} (rounds: {', '.join(f'{r:,.0f}' for r in rates[kind])})")
            if len(sizes) == 2:
                small, large = peaks[kind][sizes[0]], peaks[kind][sizes[1]]
                line += (f"; peak RSS {small:.0f} MB at {sizes[0]:,} rows, {large:.0f} MB at {sizes[1]:,} "
                         f"({large / small:.2f}x)")
            print(line)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
