"""The segments jobs and the member search at scale on PostgreSQL: RFM scoring against a bare SQL ntile over
the same rows, in the same run, the lifecycle job (wall time and the growth of the process's peak memory
for each), then the `members(filter)` search's pages and totalCount.

    /tmp/venv/bin/python bench/segments.py [--members 1000000] [--orders 5000000] [--rounds 25] [--keep]

A fresh database on the server (default postgresql://postgres@127.0.0.1:5432/postgres; created, migrated
with the repo's plugins.toml, dropped at the end unless --keep) gets by COPY members (joined over three
years, tagged, half with a birthday), orders over the last 400 days and lifecycle rows with a tier mirror.
Then, in this process:

- rfm, first run: the `segments.rfm` job a day earlier, into an empty table (every row inserted);
- raw: the same aggregation with three bare `ntile(5)` window functions into a temporary table, the
  floor a scoring of the same rows cannot go below (ntile splits equal values, which RFM must not);
- rfm, daily run: the job today, writing only the rows that differ from yesterday's (measured between
  two raw runs, the faster raw kept);
- lifecycle: the `segments.lifecycle` job, moving every member whose last order is now too old (with
  their history, hook calls, outbound events and win-back coupons) and refreshing the segments on stages;
- search: for each filter, the first page of 50, the page after it and the page after 95% of the matches
  without totalCount, and totalCount alone, through `rules.search`/`rules.count` with the resolver's
  `_where`, each in a read transaction of its own; p50 and p95.

Peak memory is ru_maxrss's growth during each step: flat in the number of members means the work stays
in the database.
"""

from __future__ import annotations

import argparse
import io
import json
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

console = Console(width=190)
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


def member_id(n: int) -> str:
    """The nth member's id: like core's (24 random-looking hex digits), so id order is not join order."""
    return f"mem_{n * 0x9E3779B97F4A7C15F39CC061 % (1 << 96):024x}"


# Tags and how often members have them: a common one, a rare one and a very rare one.
TAGS = (("newsletter", 0.4), ("app", 0.25), ("vip", 0.02), ("wholesale", 0.002))


def seed(runtime, members: int, orders: int, now: datetime) -> None:
    """Members (joined over three years, tagged, half with a birthday), orders over 400 days and the
    lifecycle rows with a tier mirror (REGULAR 70%, SILVER 20%, GOLD 8%, DIAMOND 2%), all by COPY."""
    rng = random.Random(7)
    raw = runtime.db.engine.raw_connection()
    try:
        def member_rows():
            for n in range(members):
                joined = (now - timedelta(days=rng.uniform(0, 1095))).isoformat()
                tags = json.dumps([tag for tag, share in TAGS if rng.random() < share])
                yield (member_id(n), SHOP, f"crm-{n}", joined, tags, joined, "0")
        copy(raw.driver_connection, "core_member", "id, shop, external_id, joined_at, tags, created_at, paid_orders",
             member_rows())
        copy(raw.driver_connection, "core_member_personal", "member_id, shop, birthday",
             ((member_id(n), SHOP, f"{1960 + n % 45}-{1 + n % 12:02d}-{1 + n % 28:02d}")
              for n in range(members) if n % 2))

        # Orders skewed like a real shop's: most members order once or twice, a few often; over 400 days.
        def order_rows():
            for n in range(orders):
                member = min(int(rng.paretovariate(1.2)) - 1, members - 1) if n % 3 else rng.randrange(members)
                paid = now - timedelta(days=rng.uniform(0, 400))
                total = rng.choice((1990, 4990, 12800, 29900, 59900))
                refunded = total if rng.random() < 0.03 else 0
                yield (SHOP, f"o-{n}", member_id(member), "CNY", str(total), str(refunded), paid.isoformat(), "{}")
        columns = "shop, order_id, member_id, currency, total, refunded, paid_at, detail"
        copy(raw.driver_connection, "core_order", columns, order_rows())
        with raw.driver_connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO segments_lifecycle (member_id, shop, stage, since, last_order_at, tier_code, tier_rank) "
                "SELECT m.id, m.shop, CASE WHEN o.last IS NULL THEN 'NEW' ELSE 'ACTIVE' END, m.joined_at, o.last, "
                "t.code, t.rank FROM core_member m "
                "LEFT JOIN (SELECT member_id, max(paid_at) AS last FROM core_order "
                "WHERE refunded < total GROUP BY member_id) o ON o.member_id = m.id "
                "CROSS JOIN LATERAL (SELECT CASE WHEN h < 2 THEN 'DIAMOND' WHEN h < 10 THEN 'GOLD' "
                "WHEN h < 30 THEN 'SILVER' ELSE 'REGULAR' END AS code, CASE WHEN h < 2 THEN 4 WHEN h < 10 THEN 3 "
                "WHEN h < 30 THEN 2 ELSE 1 END AS rank FROM (SELECT abs(hashtext(m.id)) % 100 AS h) h) t")
            cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def timed(step):
    before, started = peak_mb(), time.perf_counter()
    result = step()
    return time.perf_counter() - started, peak_mb() - before, result


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def search_filters(now: datetime) -> list[tuple[str, dict | None]]:
    """The member search's filters measured, as the GraphQL input's fields (None: no filter)."""
    from memberkit.plugins.segments.lifecycle import Stage

    return [
        ("no filter", None),
        ("lifecycle: DORMANT", {"lifecycle": Stage.DORMANT}),
        ("tier: GOLD", {"tier": "GOLD"}),
        ("tagsAny: vip, wholesale", {"tags_any": ["vip", "wholesale"]}),
        ("tagsAll: wholesale", {"tags_all": ["wholesale"]}),
        ("segment: vip_at_risk", {"segment": "vip_at_risk"}),
        ("rfmBand: CHAMPIONS", {"rfm_band": "CHAMPIONS"}),
        ("joinedFrom/joinedTo: 30 days", {"joined_from": now - timedelta(days=400),
                                          "joined_to": now - timedelta(days=370)}),
        ("joinedFrom/joinedTo: 1 day", {"joined_from": now - timedelta(days=400),
                                        "joined_to": now - timedelta(days=399)}),
        ("ACTIVE, GOLD, joined this year", {"lifecycle": Stage.ACTIVE, "tier": "GOLD",
                                            "joined_from": now - timedelta(days=365)}),
        ("ACTIVE, GOLD, tagsAny newsletter, joined this year",
         {"lifecycle": Stage.ACTIVE, "tier": "GOLD", "tags_any": ["newsletter"],
          "joined_from": now - timedelta(days=365)}),
    ]


def search(runtime, shop, now: datetime, rounds: int, count_rounds: int) -> Table:
    """Each filter's first page, the page after 50 members and the page after 95% of the matches (no
    totalCount), then totalCount, through the functions the `members` resolver calls, each in a read
    transaction of its own as a request gets.

    Planned with the filter's values each time (psycopg's prepare_threshold None): what a query gets the
    first five times a connection runs it. From the sixth, psycopg prepares it and PostgreSQL may switch to
    a generic plan, made without the values; the last column is the first page in that state, after ten
    runs on the connection."""
    from sqlalchemy import select

    from memberkit.plugins.segments import graphql, rules

    def call(fn, prepare_threshold=None):
        started = time.perf_counter()
        with runtime.reading(shop) as ctx:
            ctx.conn.connection.driver_connection.prepare_threshold = prepare_threshold
            result = fn(ctx)
        return time.perf_counter() - started, result

    def nth(ctx, given, n: int) -> str:
        """The id of the filter's nth member, a cursor deep into its matches."""
        return ctx.conn.execute(select(rules.MEMBERS.c.id).select_from(rules.facts()).where(graphql._where(ctx, given))
                                .order_by(rules.MEMBERS.c.id).offset(n).limit(1)).scalar_one()

    runtime.db.dispose()  # one connection from here on, without statements prepared before
    table = Table(title=f"members(filter, first: 50): {rounds} rounds a page, {count_rounds} counts")
    for column in ("filter", "first page p50 / p95", "after 50 p50 / p95", "after 95% p50 / p95",
                   "totalCount p50 / p95", "totalCount", "first page prepared"):
        table.add_column(column, justify="left" if column == "filter" else "right")
    for label, fields in search_filters(now):
        given = graphql.MemberFilter(**fields) if fields is not None else None

        def page(after, given=given):
            return lambda ctx: rules.search(ctx, graphql._where(ctx, given), 50, after)
        call(page(None))  # warm: the first call plans and reads what the rest find cached
        rows = call(page(None))[1]
        after = rows[49].id if len(rows) > 50 else None
        first = [call(page(None))[0] for _ in range(rounds)]
        second = [call(page(after))[0] for _ in range(rounds)] if after else []
        counts = [call(lambda ctx, given=given: rules.count(ctx, graphql._where(ctx, given)))
                  for _ in range(count_rounds)]
        total = counts[0][1]
        deep = call(lambda ctx, given=given, n=total * 95 // 100: nth(ctx, given, n))[1] if total > 100 else None
        third = [call(page(deep))[0] for _ in range(rounds)] if deep else []
        prepared = [call(page(None), prepare_threshold=0)[0] for _ in range(10 + rounds)][10:]

        def ms(samples):
            if not samples:
                return "no such page"
            return f"{percentile(samples, 0.5) * 1000:.1f} / {percentile(samples, 0.95) * 1000:.1f} ms"
        table.add_row(label, ms(first), ms(second), ms(third), ms([seconds for seconds, _ in counts]), f"{total:,}",
                      ms(prepared))
    return table


def bench(url: str, members: int, orders: int, rounds: int, count_rounds: int) -> int:
    from memberkit import config, migrate
    from memberkit.core import clock
    from memberkit.plugins.segments import lifecycle, rfm

    runtime = config.runtime(ROOT / "plugins.toml", url)
    migrate.upgrade(runtime)
    now = datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    seed(runtime, members, orders, now)
    console.print(f"seeded {members:,} members and {orders:,} orders by COPY in {time.perf_counter() - started:.0f} s")
    shop = runtime.shop(SHOP)

    def run_rfm(at: datetime):
        clock.set_now(at)
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

    # Yesterday's run writes every row (the table is empty); today's, the daily case, only what changed.
    first_time, first_mb, first_result = timed(lambda: run_rfm(now - timedelta(days=1)))
    raw_time, raw_mb, raw_rows = timed(run_raw)
    rfm_time, rfm_mb, rfm_result = timed(lambda: run_rfm(now))
    raw_again, _, _ = timed(run_raw)  # before and after, so neither side alone gets a warm cache
    raw_time = min(raw_time, raw_again)
    life_time, life_mb, life_result = timed(run_lifecycle)

    table = Table(title=f"segments jobs, PostgreSQL, {members:,} members, {orders:,} orders")
    for column in ("step", "seconds", "/ raw", "peak memory growth", "what it did"):
        table.add_column(column, justify="left" if column in ("step", "what it did") else "right")
    table.add_row("raw: three ntile(5)", f"{raw_time:.1f}", "1.00x", f"{raw_mb:.0f} MB", f"{raw_rows:,} members")
    table.add_row("segments.rfm, first run (yesterday)", f"{first_time:.1f}", f"{first_time / raw_time:.2f}x",
                  f"{first_mb:.0f} MB", first_result or "nothing")
    table.add_row("segments.rfm, daily run (today)", f"{rfm_time:.1f}", f"{rfm_time / raw_time:.2f}x",
                  f"{rfm_mb:.0f} MB", rfm_result or "nothing")
    table.add_row("segments.lifecycle", f"{life_time:.1f}", "", f"{life_mb:.0f} MB", life_result or "nothing")
    console.print(table)
    console.print(f"rfm / raw ntile = {rfm_time / raw_time:.2f}x the daily run (target: at most 3x), "
                  f"{first_time / raw_time:.2f}x the first")

    with runtime.db.write() as conn:
        conn.execute(text("ANALYZE"))  # what autovacuum would have done after the jobs' writes
    console.print(search(runtime, shop, now, rounds, count_rounds))
    runtime.db.dispose()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="segments jobs and the member search at scale on PostgreSQL")
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=5_000_000)
    parser.add_argument("--rounds", type=int, default=25, help="timings of each search page")
    parser.add_argument("--count-rounds", type=int, default=5, help="timings of each totalCount")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep", action="store_true", help="keep the database (its name is printed)")
    args = parser.parse_args()
    name = "mk_segments_bench_" + secrets.token_hex(4)
    admin = create_engine(args.server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        return bench(make_url(args.server).set(database=name).render_as_string(hide_password=False),
                     args.members, args.orders, args.rounds, args.count_rounds)
    finally:
        if args.keep:
            console.print(f"kept the database {name}")
        else:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
