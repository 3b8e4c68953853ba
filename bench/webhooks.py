"""Outbound events delivered per second, and the latency from commit to first attempt, under order load.

    /tmp/venv/bin/python bench/webhooks.py [--duration 10] [--connections 8] [--rounds 3] [--dir /dev/shm]

The order load of bench/events.py (wrk POSTing recordOrderPaid to `memberkit serve --workers 1` on SQLite,
demo shop, every plugin) with one webhook endpoint subscribed to every type, delivering to a receiver in
this process (bench/receiver.py) that answers 200 and notes when each event arrived. Two set-ups, each
measured alone per round:

- in-worker: the default `memberkit serve`, whose worker delivers beside the orders;
- separate: `memberkit serve --no-services` with one `memberkit webhooks deliver` process.

Latency is the first arrival of an event minus its `created_at` (the time its transaction took, so a little
more than commit to first attempt). Every event committed during a run must arrive once the load stops
(within 60 s), or the script exits non-zero. The raw baseline measured in the same run is the receiver's
own rate: the same requests sent straight to it by one aiohttp client (the client memberkit uses), with
the same concurrency per endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from events import (
    ORDER_PAID,
    ROOT,
    TOTAL,
    BenchError,
    console,
    create_endpoint,
    create_key,
    free_port,
    lua_script,
    memberkit_cmd,
    memberkit_env,
    server,
    sign_up_members,
    wrk,
)
from receiver import Receiver
from rich.table import Table

DRAIN_SECONDS = 60


@dataclass
class Run:
    setup: str
    orders_per_s: float
    events: int
    delivered_per_s: float
    p50_ms: float
    p99_ms: float
    drain_s: float


def events_since(db: Path, first_id: int) -> dict[str, float]:
    """webhook-id → created_at (epoch seconds) of the events with an id above `first_id`."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT id, created_at FROM webhooks_event WHERE id > ?", (first_id,)).fetchall()
    finally:
        conn.close()
    return {f"evt_{event_id}": datetime.fromisoformat(created).replace(tzinfo=UTC).timestamp()
            for event_id, created in rows}


def last_event_id(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT coalesce(max(id), 0) FROM webhooks_event").fetchone()[0]
    finally:
        conn.close()


def measure(args, setup: str, port: int, script: Path, db: Path, receiver: Receiver, prefix: str) -> Run:
    first_id = last_event_id(db)
    start = time.time()
    result = wrk(args, port, script, prefix, args.duration)
    end = time.time()
    if result["bad_status"] or result["gql_errors"] or result["socket_errors"]:
        raise BenchError(f"{setup}: orders failed: {result}")
    # wait for every event of the run to arrive (the orders wrk gave up on may add a few more)
    deadline, created = time.monotonic() + DRAIN_SECONDS, {}
    while time.monotonic() < deadline:
        created = events_since(db, first_id)
        first = first_arrivals(receiver, created)
        if created and len(first) == len(created):
            break
        time.sleep(0.2)
    else:
        raise BenchError(f"{setup}: {len(created) - len(first)} of {len(created)} events not delivered "
                         f"{DRAIN_SECONDS}s after the load stopped")
    latencies = sorted(first[message_id] - created[message_id] for message_id in first)
    during = sum(1 for at in first.values() if at <= end)
    return Run(setup, result["ok"] / (result["duration_us"] / 1e6), len(created), during / (end - start),
               1000 * statistics.median(latencies), 1000 * latencies[int(0.99 * (len(latencies) - 1))],
               max(0.0, max(first.values()) - end))


def first_arrivals(receiver: Receiver, created: dict[str, float]) -> dict[str, float]:
    first: dict[str, float] = {}
    for message_id, at in list(receiver.arrivals):
        if message_id in created and message_id not in first:
            first[message_id] = at
    return first


async def raw_rate(url: str, seconds: float, concurrency: int) -> float:
    """Requests/s one aiohttp client gets from the receiver with `concurrency` in flight: the baseline."""
    body = b'{"type":"order.paid","data":{' + b'"x":"' + b"y" * 400 + b'"}}'
    headers = {"content-type": "application/json", "webhook-id": "raw", "webhook-timestamp": "0",
               "webhook-signature": "v1,raw"}
    done, stop = 0, time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        async def worker():
            nonlocal done
            while time.monotonic() < stop:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                done += 1
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.monotonic() - started)


def bench(args, tmp: Path) -> int:
    config = tmp / "plugins.toml"
    shutil.copy(args.config, config)
    db = tmp / "bench.db"
    env = memberkit_env(db, config)
    memberkit = memberkit_cmd()
    key = create_key(memberkit, env, tmp, args.shop)
    receiver = Receiver().start()
    port = free_port()
    serve = [memberkit, "serve", "--port", str(port), "--workers", "1", "--jobs-interval", "0"]
    log = tmp / "memberkit.log"
    with server(serve, env, tmp, port, log):
        members = sign_up_members(f"http://127.0.0.1:{port}", key, args.members)
        create_endpoint(f"http://127.0.0.1:{port}", key, receiver.url)
    script = tmp / "orders.lua"
    script.write_text(lua_script(
        ORDER_PAID, {"input": {"orderId": "@@ORDER@@", "memberId": "@@MEMBER@@", "total": TOTAL}},
        "@@ORDER@@", "@@MEMBER@@", f"Bearer {key}", members))
    setups = [("in-worker", serve, None), ("separate", serve + ["--no-services"], [memberkit, "webhooks", "deliver"])]
    console.print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.rounds} round(s), "
                  f"one endpoint for every type, {os.cpu_count()} cores, database in {tmp}")
    runs: list[Run] = []
    raw: list[float] = []
    for round_no in range(1, args.rounds + 1):
        for setup, cmd, beside in setups:
            with server(cmd, env, tmp, port, log, beside):
                wrk(args, port, script, f"{setup}-warm{round_no}", 2)
                run = measure(args, setup, port, script, db, receiver, f"{setup}-run{round_no}")
            runs.append(run)
            console.print(f"  round {round_no} {setup:9} {run.orders_per_s:6.0f} orders/s  "
                          f"{run.delivered_per_s:6.0f} delivered/s  commit→first attempt p50 {run.p50_ms:.0f} ms "
                          f"p99 {run.p99_ms:.0f} ms  ({run.events} events, drained {run.drain_s:.1f} s after)")
        raw.append(asyncio.run(raw_rate(receiver.url, 3, 8)))
        console.print(f"  round {round_no} raw       {raw[-1]:6.0f} requests/s straight to the receiver")
    report(runs, statistics.median(raw), args)
    return 0


def report(runs: list[Run], raw: float, args) -> None:
    table = Table(title=f"webhooks under order load, SQLite, one worker, wrk -t{args.threads} -c{args.connections} "
                        f"-d{args.duration}s, median of {args.rounds} round(s)")
    for column in ("delivery", "orders/s", "events/s", "delivered/s", "vs raw", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "delivery" else "right")
    for setup, label in (("in-worker", "in the serve worker"), ("separate", "memberkit webhooks deliver")):
        mine = [r for r in runs if r.setup == setup]

        def med(attr: str, rows=mine) -> float:
            return statistics.median(getattr(r, attr) for r in rows)
        events_per_s = statistics.median(r.events / args.duration for r in mine)
        table.add_row(label, f"{med('orders_per_s'):,.0f}", f"{events_per_s:,.0f}", f"{med('delivered_per_s'):,.0f}",
                      f"{100 * med('delivered_per_s') / raw:.1f}%", f"{med('p50_ms'):,.0f}", f"{med('p99_ms'):,.0f}")
    table.add_row("raw: aiohttp straight to the receiver", "", "", f"{raw:,.0f}", "100%", "", "")
    console.print(table)
    for setup in ("in-worker", "separate"):
        p50 = statistics.median(r.p50_ms for r in runs if r.setup == setup)
        behind = statistics.median(r.drain_s for r in runs if r.setup == setup)
        console.print(f"{setup}: commit → first attempt p50 {p50:,.0f} ms (target < 1000 ms), "
                      f"last event delivered {behind:.1f} s after the load stopped")


def main() -> int:
    parser = argparse.ArgumentParser(description="webhook deliveries/s and latency under memberkit's order load.")
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per run (default 10)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, median taken (default 3)")
    parser.add_argument("--members", type=int, default=5, help="members the orders are spread over")
    parser.add_argument("--shop", default="demo")
    parser.add_argument("--config", default=str(ROOT / "plugins.toml"), help="settings file (repo's)")
    parser.add_argument("--wrk", default="wrk")
    parser.add_argument("--dir", default=None, help="parent of the temp dir (default: TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    if not shutil.which(args.wrk):
        console.print(f"[red]FAILED[/red] wrk not found ({args.wrk})")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="memberkit-webhooks-", dir=args.dir))
    try:
        return bench(args, tmp)
    except BenchError as exc:
        console.print(f"[red]FAILED[/red] {exc}", highlight=False)
        return 1
    finally:
        if args.keep:
            console.print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
