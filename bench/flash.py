"""Flash-sale reservations/s through `memberkit serve --workers 4` on PostgreSQL, against the stack floor,
measured in the same run on the same database, with an oversell check after every run.

    /tmp/venv/bin/python bench/flash.py [--duration 10] [--connections 64] [--threads 2] [--rounds 3]

memberkit: a fresh PostgreSQL database (created on 127.0.0.1:5432 as user postgres, dropped afterwards),
`memberkit migrate`, the repo's plugins.toml (demo shop), a sale of 1,000,000 units with a per-member limit
of 1,000,000, and many members (inserted directly; their member tokens minted here). wrk POSTs
reserveFlashSale (quantity 1, a fresh idempotency key per request) rotating through the members' tokens.
floor: bench/flash_floor_app.py, one strawberry mutation on the same stack (Starlette + strawberry + uvicorn
--workers 4, the DB call in the threadpool, SQLAlchemy Core) doing only the raw conditional UPDATE of one
stock row, in the same database.

After each run: held + sold <= stock, the HELD reservations add up to the sale's held (one unit each) and
to the 200 responses; the floor's held matches its 200 responses. Otherwise the script exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]
os.environ.setdefault("MEMBERKIT_TOKEN_SECRETS", "bench-token-secret")
os.environ.setdefault("MEMBERKIT_PII_KEY", "bench-pii-key")

import httpx  # noqa: E402
from events import LUA_RUN, BenchError, console, free_port, memberkit_cmd, server, wrk  # noqa: E402
from sqlalchemy import create_engine, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

STOCK = 1_000_000
RESERVE = ("mutation($input: ReserveFlashSaleInput!) { reserveFlashSale(input: $input) "
           "{ reservation { id } errors { code } } }")
FLOOR = ("mutation($saleId: String!, $quantity: Int!, $key: String!) "
         "{ reserve(saleId: $saleId, quantity: $quantity, key: $key) { held errors { code } } }")
CREATE = ("mutation($input: FlashSaleInput!) { createFlashSale(input: $input) "
          "{ flashSale { id } errors { code message } } }")

# Body = PRE .. key .. POST; the key is prefix-threadid-counter; the Authorization header rotates through
# the tokens. response() counts 200s whose body has no error (a payload error is `"errors":[{`).
LUA = r"""
local PRE = [==[%(pre)s]==]
local POST = [==[%(post)s]==]
local TOKENS = { %(tokens)s }

function request()
  sent = sent + 1
  local token = TOKENS[((sent * 7 + tid * 131) %% #TOKENS) + 1]
  local body = PRE .. prefix .. "-" .. tid .. "-" .. sent .. POST
  return wrk.format("POST", "/graphql", { ["Content-Type"] = "application/json",
                                          ["Authorization"] = "Bearer " .. token }, body)
end

""" + LUA_RUN


def lua(query: str, variables: dict, marker: str, tokens: list[str]) -> str:
    body = json.dumps({"query": query, "variables": variables}, separators=(",", ":"))
    pre, post = body.split(marker)
    return LUA % {"pre": pre, "post": post, "tokens": ", ".join(f'"{t}"' for t in tokens)}


def run_wrk(args, port: int, script: Path, prefix: str, seconds: int) -> dict:
    """events.py's wrk run, and no response may have failed."""
    result = wrk(args, port, script, prefix, seconds)
    problems = [f"{result[k]} {k}" for k in ("bad_status", "gql_errors", "socket_errors") if result[k]]
    if problems:
        raise BenchError(f"{prefix}: " + ", ".join(problems) + f"; first bad response: {result['sample']}")
    return result


def settled(engine, sql: str, params: dict) -> int:
    """A count once requests wrk gave up on at the end have finished."""
    last, since, deadline = None, time.monotonic(), time.monotonic() + 15
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            now = conn.execute(text(sql), params).scalar()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 0.5:
            break
        time.sleep(0.1)
    return last


def check_memberkit(engine, sale_id: str, ok: int, sent: int, before: int) -> None:
    held_rows = settled(engine, "SELECT count(*) FROM flash_sale_reservation WHERE sale_id = :s AND status = 'HELD'",
                        {"s": sale_id})
    with engine.connect() as conn:
        sale = conn.execute(text("SELECT stock, held, sold FROM flash_sale_sale WHERE id = :s"), {"s": sale_id}).one()
        units = conn.execute(text("SELECT coalesce(sum(quantity), 0) FROM flash_sale_reservation "
                                  "WHERE sale_id = :s AND status = 'HELD'"), {"s": sale_id}).scalar()
        members = conn.execute(text("SELECT coalesce(sum(held), 0) FROM flash_sale_member WHERE sale_id = :s"),
                               {"s": sale_id}).scalar()
    problems = []
    if sale.held + sale.sold > sale.stock:
        problems.append(f"OVERSOLD: held {sale.held} + sold {sale.sold} > stock {sale.stock}")
    if not sale.held == units == held_rows == members:
        problems.append(f"sale held {sale.held}, HELD units {units}, HELD rows {held_rows}, member counters {members}")
    if not ok <= held_rows - before <= sent:
        problems.append(f"{held_rows - before} reservations for {ok} ok responses ({sent} sent)")
    if problems:
        raise BenchError("memberkit: " + "; ".join(problems))


def check_floor(engine, ok: int, sent: int, before: int) -> int:
    held = settled(engine, "SELECT held FROM floor_stock WHERE id = 'floor-sale'", {})
    with engine.connect() as conn:
        stock, sold = conn.execute(text("SELECT stock, sold FROM floor_stock WHERE id = 'floor-sale'")).one()
    if held + sold > stock or not ok <= held - before <= sent:
        raise BenchError(f"floor: held {held} (+{held - before} for {ok} ok, {sent} sent), stock {stock}")
    return held


def main() -> int:
    parser = argparse.ArgumentParser(description="flash-sale reservations/s against the stack floor, same run.")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="rounds, median taken (default 3)")
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL server URL; a fresh database is created on it and dropped")
    parser.add_argument("--wrk", default="wrk")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not shutil.which(args.wrk):
        console.print(f"[red]FAILED[/red] wrk not found ({args.wrk})")
        return 1
    name = "mk_flash_bench_" + secrets.token_hex(4)
    admin = create_engine(args.server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(args.server).set(database=name).render_as_string(hide_password=False)
    tmp = Path(tempfile.mkdtemp(prefix="memberkit-flash-bench-"))
    try:
        return bench(args, url, tmp)
    except BenchError as exc:
        console.print(f"[red]FAILED[/red] {exc}", highlight=False)
        return 1
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        if args.keep:
            console.print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def bench(args, url: str, tmp: Path) -> int:
    from memberkit.core.models import Member
    from memberkit.schema import auth

    env = {**os.environ, "MEMBERKIT_DATABASE_URL": url, "MEMBERKIT_CONFIG": str(ROOT / "plugins.toml"),
           "MEMBERKIT_ENV": "production", "FLOOR_DATABASE_URL": url}
    memberkit = memberkit_cmd()
    for cmd in (["migrate"], ["keys", "create", "--shop", "demo", "--label", "bench"]):
        done = subprocess.run([memberkit, *cmd], env=env, cwd=tmp, capture_output=True, text=True)  # noqa: S603
        if done.returncode != 0:
            raise BenchError(f"memberkit {' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    key = done.stdout.strip().splitlines()[-1]
    engine = create_engine(url)
    now = datetime.now(UTC)
    members = [f"mem_bench{n:019d}" for n in range(args.members)]
    with engine.begin() as conn:
        conn.execute(insert(Member), [{"id": m, "shop": "demo", "external_id": m, "joined_at": now, "tags": [],
                                       "created_at": now} for m in members])
    tokens = [auth.mint_member_token("demo", m, 6 * 3600, "key_bench")[0] for m in members]

    mk_port, floor_port = free_port(), free_port()
    mk_cmd = [memberkit, "serve", "--port", str(mk_port), "--workers", str(args.workers), "--jobs-interval", "0"]
    floor_cmd = [sys.executable, str(BENCH / "flash_floor_app.py"), "--port", str(floor_port),
                 "--workers", str(args.workers), "--stock", str(STOCK)]
    with server(mk_cmd, env, tmp, mk_port, tmp / "memberkit.log"):
        created = httpx.post(f"http://127.0.0.1:{mk_port}/graphql", headers={"Authorization": f"Bearer {key}"},
                             json={"query": CREATE, "variables": {"input": {
                                 "sku": "BENCH-1", "title": "bench", "price": 8910,
                                 "startsAt": (now - timedelta(minutes=1)).isoformat(),
                                 "endsAt": (now + timedelta(hours=6)).isoformat(), "stock": STOCK,
                                 "perMemberLimit": STOCK, "membersOnly": True}}}, timeout=30).json()
    payload = (created.get("data") or {}).get("createFlashSale") or {}
    if created.get("errors") or payload.get("errors"):
        raise BenchError(f"createFlashSale failed: {created}")
    sale_id = payload["flashSale"]["id"]
    marker = "@@KEY@@"
    mk_script, floor_script = tmp / "memberkit.lua", tmp / "floor.lua"
    mk_script.write_text(lua(RESERVE, {"input": {"saleId": sale_id, "quantity": 1, "idempotencyKey": marker}},
                             marker, tokens))
    # The floor's body carries the key too, so both bodies have the same shape; the floor ignores it.
    floor_script.write_text(lua(FLOOR, {"saleId": "floor-sale", "quantity": 1, "key": marker}, marker, tokens[:1]))

    console.print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s (warm-up {args.warmup}s), "
                  f"{args.rounds} round(s), {len(members)} members, --workers {args.workers}, "
                  f"{os.cpu_count()} cores, PostgreSQL {make_url(url).database}")
    rates: dict[str, list[float]] = {"memberkit": [], "floor": []}
    latency: dict[str, list[tuple[float, float]]] = {"memberkit": [], "floor": []}
    for round_no in range(1, args.rounds + 1):
        for target in ("memberkit", "floor"):
            cmd, port, script = (mk_cmd, mk_port, mk_script) if target == "memberkit" else \
                (floor_cmd, floor_port, floor_script)
            with server(cmd, env, tmp, port, tmp / f"{target}.log"):
                for phase, seconds in (("warm", args.warmup), ("run", args.duration)):
                    if seconds <= 0:
                        continue
                    if target == "memberkit":
                        with engine.connect() as conn:
                            before = conn.execute(select(func.count()).select_from(text("flash_sale_reservation"))
                                                  .where(text("status = 'HELD'"))).scalar()
                    else:
                        before = settled(engine, "SELECT held FROM floor_stock WHERE id = 'floor-sale'", {})
                    result = run_wrk(args, port, script, f"{phase}{round_no}", seconds)
                    if target == "memberkit":
                        check_memberkit(engine, sale_id, result["ok"], result["sent"], before)
                    else:
                        check_floor(engine, result["ok"], result["sent"], before)
            rate = result["ok"] / (result["duration_us"] / 1e6)
            rates[target].append(rate)
            latency[target].append((result["p50_us"] / 1000, result["p99_us"] / 1000))
            console.print(f"  round {round_no} {target:9} {rate:8.0f} reservations/s  p50 "
                          f"{result['p50_us'] / 1000:.1f} ms  p99 {result['p99_us'] / 1000:.1f} ms  "
                          f"({result['ok']} ok, no oversell)")
    engine.dispose()
    ratio = statistics.median(m / f for m, f in zip(rates["memberkit"], rates["floor"], strict=True))
    mk, floor = statistics.median(rates["memberkit"]), statistics.median(rates["floor"])
    console.print(f"memberkit {mk:,.0f} reservations/s, floor {floor:,.0f}/s: memberkit / floor = {100 * ratio:.1f}%"
                  f" (target >= 50%); held + sold <= stock and HELD reservations = held after every run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
