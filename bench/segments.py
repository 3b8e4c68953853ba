"""The segments jobs at scale on PostgreSQL: RFM scoring against a bare SQL ntile over the same rows, in the
same run, and the lifecycle job; wall time and the growth of the process's peak memory for each.

    /tmp/venv/bin/python bench/segments.py [--members 1000000] [--orders 5000000] [--server URL]

A fresh database on the server (default postgresql://postgres@127.0.0.1:5432/postgres; created, migrated
with the repo's plugins.toml, dropped at the end) gets members, orders over the last 400 days and their
lifecycle rows by COPY. Then, in this process:

- rfm: the `segments.rfm` job (one INSERT … SELECT with count() over () and rank()), in its transaction;
- raw: the same aggregation with three bare `ntile(5)` window functions into a temporary table, the
  floor a scoring of the same rows cannot go below (ntile splits equal values, which RFM must not);
- lifecycle: the `segments.lifecycle` job, moving every member whose last order is now too old (with
  their history, hook calls, outbound events and win-back coupons).

Peak memory is ru_maxrss's growth during each step: flat in the number of members means the work stays
in the database.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
os.environ.setdefault("MEMBERKIT_TOKEN_SECRETS", "bench-token-secret")
os.environ.setdefault("MEMBERKIT_PII_KEY", "bench-pii-key")
os.environ.setdefault("MEMBERKIT_WEBHOOK_KEYS", "bench-webhook-key")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

console = Console()
SHOP = "demo"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def copy(raw, table: str, columns: str, rows) -> None:
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as out:
        buffer = io.StringIO()
        for n, row in enumerate(rows, 1):
            buffer.write("\t".join(row) + "\n")
            if n % 50_000 == 0:
                out.write(buffer.getvalue())
                buffer = io.StringIO()
        out.write(buffer.getvalue())


def seed(runtime, members: int, orders: int, now: datetime) -> None:
    rng = random.Random(7)
    raw = runtime.db.engine.raw_connection()
    try:
        joined = (now - timedelta(days=500)).isoformat()
        copy(raw.driver_connection, "core_member", "id, shop, external_id, joined_at, tags, created_at, paid_orders",
             ((f"mem_{n:012d}", SHOP, f"crm-{n}", joined, "[]", joined, "0") for n in range(members)))
        # Orders skewed like a real shop's: most members order once or twice, a few often; over 400 days.
        def order_rows():
            for n in range(orders):
                member = min(int(rng.paretovariate(1.2)) - 1, members - 1) if n % 3 else rng.randrange(members)
                paid = now - timedelta(days=rng.uniform(0, 400))
                total = rng.choice((1990, 4990, 12800, 29900, 59900))
                refunded = total if rng.random() < 0.03 else 0
                yield (SHOP, f"o-{n}", f"mem_{member:012d}", "CNY", str(total), str(refunded), paid.isoformat(), "{}")
        columns = "shop, order_id, member_id, currency, total, refunded, paid_at, detail"
        copy(raw.driver_connection, "core_order", columns, order_rows())
        with raw.driver_connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO segments_lifecycle (member_id, shop, stage, since, last_order_at) "
                "SELECT m.id, m.shop, CASE WHEN o.last IS NULL THEN 'NEW' ELSE 'ACTIVE' END, m.joined_at, o.last "
                "FROM core_member m LEFT JOIN (SELECT member_id, max(paid_at) AS last FROM core_order "
                "WHERE refunded < total GROUP BY member_id) o ON o.member_id = m.id")
            cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def timed(step):
    before, started = peak_mb(), time.perf_counter()
    result = step()
    return time.perf_counter() - started, peak_mb() - before, result


def bench(url: str, members: int, orders: int) -> int:
    from memberkit import config, migrate
    from memberkit.core import clock
    from memberkit.plugins.segments import lifecycle, rfm

    runtime = config.runtime(ROOT / "plugins.toml", url)
    migrate.upgrade(runtime)
    now = datetime.now(UTC).replace(microsecond=0)
    clock.set_now(now)
    started = time.perf_counter()
    seed(runtime, members, orders, now)
    console.print(f"seeded {members:,} members and {orders:,} orders by COPY in {time.perf_counter() - started:.0f} s")
    shop = runtime.shop(SHOP)

    def run_rfm():
        with runtime.transaction(shop, {"kind": "job", "job": "segments.rfm"}) as ctx:
            return rfm.compute(ctx)

    def run_raw():
        with runtime.db.write() as conn:
            conn.execute(text(
                "CREATE TEMP TABLE raw_rfm ON COMMIT DROP AS SELECT member_id, "
                "ntile(5) OVER (ORDER BY last) AS r, ntile(5) OVER (ORDER BY orders) AS f, "
                "ntile(5) OVER (ORDER BY spend) AS m FROM (SELECT member_id, max(paid_at) AS last, count(*) AS orders, "
                "sum(total - refunded) AS spend FROM core_order WHERE shop = :shop AND paid_at > :since "
                "AND paid_at <= :now AND refunded < total GROUP BY member_id) t"),
                {"shop": SHOP, "since": now - timedelta(days=365), "now": now})
            return conn.execute(text("SELECT count(*) FROM raw_rfm")).scalar()

    def run_lifecycle():
        with runtime.transaction(shop, {"kind": "job", "job": "segments.lifecycle"}) as ctx:
            return lifecycle.move_by_time(ctx)

    raw_time, raw_mb, raw_rows = timed(run_raw)
    rfm_time, rfm_mb, rfm_result = timed(run_rfm)
    raw_again, _, _ = timed(run_raw)  # before and after, so neither side alone gets a warm cache
    raw_time = min(raw_time, raw_again)
    life_time, life_mb, life_result = timed(run_lifecycle)

    table = Table(title=f"segments jobs, PostgreSQL, {members:,} members, {orders:,} orders")
    for column in ("step", "seconds", "peak memory growth", "what it did"):
        table.add_column(column, justify="left" if column in ("step", "what it did") else "right")
    table.add_row("raw: three ntile(5)", f"{raw_time:.1f}", f"{raw_mb:.0f} MB", f"{raw_rows:,} members")
    table.add_row("segments.rfm", f"{rfm_time:.1f}", f"{rfm_mb:.0f} MB", rfm_result or "nothing")
    table.add_row("segments.lifecycle", f"{life_time:.1f}", f"{life_mb:.0f} MB", life_result or "nothing")
    console.print(table)
    console.print(f"rfm / raw ntile = {rfm_time / raw_time:.2f}x (target: at most 3x)")
    runtime.db.dispose()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="segments jobs at scale on PostgreSQL")
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=5_000_000)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    name = "mk_segments_bench_" + secrets.token_hex(4)
    admin = create_engine(args.server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        return bench(make_url(args.server).set(database=name).render_as_string(hide_password=False),
                     args.members, args.orders)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
