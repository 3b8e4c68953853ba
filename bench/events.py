"""Paid orders per second through `memberkit serve`, against the stack floor, measured in the same run.

    /tmp/venv/bin/python bench/events.py [--duration 10] [--connections 8] [--threads 1] [--rounds 5]

memberkit: `memberkit serve --workers 1` on a fresh SQLite file with the repo's plugins.toml (demo shop);
wrk POSTs recordOrderPaid with a fresh order id per request (secret key, a few signed-up members).
floor: bench/floor_app.py, one strawberry mutation on the same stack (Starlette + strawberry + uvicorn, one
worker, writes in the threadpool) doing only the three raw writes (event row, ledger row, balance update)
with plain sqlite3, WAL and synchronous=FULL, in one BEGIN IMMEDIATE transaction.

The demo shop keeps its outbox: one webhook endpoint subscribed to every event type, delivered to a
receiver in this process (bench/receiver.py), so every order also writes its outbound events and
memberkit's delivery loop runs beside the orders, as in production (`--no-endpoint` leaves it out).

Each server is warmed up, then measured alone with the same wrk settings. Afterwards the rows written must
match the 2xx responses and no response may carry an error; otherwise the script exits non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TOTAL = 12800  # 128 yuan per order
console = Console()
BACKGROUND: list[subprocess.Popen] = []  # processes to stop when the bench ends, however it ends

ORDER_PAID = ("mutation($input: OrderPaidInput!) { recordOrderPaid(input: $input) "
              "{ duplicate errors { code } } }")
FLOOR_ORDER = ("mutation($orderId: String!, $memberId: String!, $total: Int!) "
               "{ recordOrder(orderId: $orderId, memberId: $memberId, total: $total) "
               "{ duplicate errors { code } } }")
CREATE_ENDPOINT = ("mutation($input: WebhookEndpointInput!) "
                   "{ createWebhookEndpoint(input: $input) { endpoint { id } errors { code message } } }")
SIGN_UP = ("mutation($input: SignUpMemberInput!) "
           "{ signUpMember(input: $input) { member { id } errors { code message } } }")

# What every bench script shares: thread numbering, and counting the responses that were not a clean 200,
# printed as one BENCH_JSON line. A script puts its constants and request() before it.
LUA_RUN = r"""
local threads = {}
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1] or "run"
  sent, ok, bad_status, gql_errors, sample = 0, 0, 0, 0, ""
end

function response(status, headers, body)
  if status ~= 200 then
    bad_status = bad_status + 1
    if sample == "" then sample = status .. " " .. string.sub(body, 1, 300) end
  elseif string.find(body, '"errors"%%s*:%%s*%%[%%s*{') then
    gql_errors = gql_errors + 1
    if sample == "" then sample = string.sub(body, 1, 300) end
  else
    ok = ok + 1
  end
end

local function escape(s)
  return (string.gsub(s, '[%%c"\\]', function(c) return string.format("\\u%%04x", string.byte(c)) end))
end

function done(summary, latency, requests)
  local t = { sent = 0, ok = 0, bad_status = 0, gql_errors = 0 }
  local sample_all = ""
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + thread:get(k) end
    if sample_all == "" then sample_all = thread:get("sample") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%%d,"responses":%%d,"sent":%%d,"ok":%%d,"bad_status":%%d,"gql_errors":%%d,' ..
    '"socket_errors":%%d,"p50_us":%%d,"p99_us":%%d,"sample":"%%s"}\n',
    summary.duration, summary.requests, t.sent, t.ok, t.bad_status, t.gql_errors,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99),
    escape(sample_all)))
end
"""

# The body is PRE .. order id .. MID .. member id .. POST; ids are prefix-threadid-counter, unique across
# threads (setup numbers them) and runs (the prefix). response() counts what was not a clean 200.
LUA = r"""
local PRE = [==[%(pre)s]==]
local MID = [==[%(mid)s]==]
local POST = [==[%(post)s]==]
local MEMBERS = { %(members)s }
local HEADERS = { ["Content-Type"] = "application/json", ["Authorization"] = [==[%(auth)s]==] }

function request()
  sent = sent + 1
  local member = MEMBERS[(sent %% #MEMBERS) + 1]
  local body = PRE .. prefix .. "-" .. tid .. "-" .. sent .. MID .. member .. POST
  return wrk.format("POST", "/graphql", HEADERS, body)
end

""" + LUA_RUN


def lua_script(query: str, variables: dict, order_marker: str, member_marker: str, auth: str,
               members: list[str]) -> str:
    body = json.dumps({"query": query, "variables": variables}, separators=(",", ":"))
    pre, rest = body.split(order_marker)
    mid, post = rest.split(member_marker)
    return LUA % {"pre": pre, "mid": mid, "post": post, "auth": auth,
                  "members": ", ".join(f'"{m}"' for m in members)}


@dataclass
class Run:
    target: str
    rate: float
    ok: int
    p50_ms: float
    p99_ms: float


class BenchError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"server not healthy after {timeout}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def server(cmd: list[str], env: dict, cwd: Path, port: int, log: Path, beside: list[str] | None = None):
    """The server, healthy, and `beside` it another process (a delivery worker) for as long."""
    procs = []
    try:
        with log.open("ab") as out:
            procs = [subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
                     for command in ([cmd, beside] if beside else [cmd])]
        wait_healthy(f"http://127.0.0.1:{port}", procs[0], log)
        yield procs[0]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def count_rows(db: Path, sql: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def settled_count(db: Path, sql: str) -> int:
    """The row count once requests wrk gave up on at the end (at most one per connection) have finished."""
    last, stable_since = count_rows(db, sql), time.monotonic()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = count_rows(db, sql)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= 0.5:
            break
    return last


def wrk(args, port: int, script: Path, prefix: str, seconds: int) -> dict:
    cmd = [args.wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--timeout", "10s",
           "-s", str(script), f"http://127.0.0.1:{port}", "--", prefix]
    done = subprocess.run(cmd, capture_output=True, text=True)  # noqa: S603
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1].removeprefix("BENCH_JSON "))


def measure(args, target: str, port: int, script: Path, db: Path, count_sql: str, prefix: str,
            seconds: int) -> Run:
    before = count_rows(db, count_sql)
    result = wrk(args, port, script, prefix, seconds)
    written = settled_count(db, count_sql) - before
    problems = []
    if result["bad_status"]:
        problems.append(f"{result['bad_status']} non-200 responses")
    if result["gql_errors"]:
        problems.append(f"{result['gql_errors']} responses with errors")
    if result["socket_errors"]:
        problems.append(f"{result['socket_errors']} socket errors (connect/read/write/timeout)")
    if result["ok"] + result["bad_status"] + result["gql_errors"] != result["responses"]:
        problems.append(f"wrk counted {result['responses']} responses, the script {result['ok']} ok + errors")
    # Rows for every 200 and, beyond those, only for requests still in flight when wrk stopped.
    if not result["ok"] <= written <= result["sent"]:
        problems.append(f"{written} rows written for {result['ok']} ok responses ({result['sent']} sent)")
    if problems:
        sample = f"\n  first bad response: {result['sample']}" if result["sample"] else ""
        raise BenchError(f"{target} ({prefix}): " + "; ".join(problems) + sample)
    seconds_run = result["duration_us"] / 1e6
    return Run(target, result["ok"] / seconds_run, result["ok"],
               result["p50_us"] / 1000, result["p99_us"] / 1000)


def memberkit_cmd() -> str:
    beside = Path(sys.executable).parent / "memberkit"
    found = str(beside) if beside.exists() else shutil.which("memberkit")
    if not found:
        raise BenchError("no `memberkit` command next to this python or on PATH")
    return found


def sign_up_members(url: str, key: str, count: int) -> list[str]:
    members = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        for n in range(count):
            response = client.post("/graphql", json={"query": SIGN_UP,
                                                     "variables": {"input": {"externalId": f"bench-{n}"}}})
            body = response.json()
            payload = (body.get("data") or {}).get("signUpMember") or {}
            if response.status_code != 200 or body.get("errors") or payload.get("errors"):
                raise BenchError(f"sign-up failed: {response.status_code} {body}")
            members.append(payload["member"]["id"])
    return members


def create_endpoint(url: str, key: str, receiver_url: str) -> str:
    """One endpoint subscribed to every type (no eventTypes), delivering to `receiver_url`."""
    response = httpx.post(url + "/graphql", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                          json={"query": CREATE_ENDPOINT, "variables": {"input": {"url": receiver_url}}})
    body = response.json()
    payload = (body.get("data") or {}).get("createWebhookEndpoint") or {}
    if response.status_code != 200 or body.get("errors") or payload.get("errors"):
        raise BenchError(f"createWebhookEndpoint failed: {response.status_code} {body}")
    return payload["endpoint"]["id"]


def memberkit_env(db: Path, config: Path) -> dict:
    """Production settings, except MEMBERKIT_ENV=test so webhooks may go to the loopback receiver."""
    return {**os.environ, "MEMBERKIT_DATABASE_URL": f"sqlite:///{db}", "MEMBERKIT_CONFIG": str(config),
            "MEMBERKIT_TOKEN_SECRETS": "bench-token-secret", "MEMBERKIT_PII_KEY": "bench-pii-key",
            "MEMBERKIT_WEBHOOK_KEYS": "bench-webhook-key", "MEMBERKIT_ENV": "test"}


def create_key(memberkit: str, env: dict, tmp: Path, shop: str) -> str:
    created = subprocess.run([memberkit, "keys", "create", "--shop", shop, "--label", "bench"],  # noqa: S603
                             env=env, cwd=tmp, capture_output=True, text=True)
    if created.returncode != 0:
        raise BenchError(f"memberkit keys create failed:\n{created.stdout}\n{created.stderr}")
    return created.stdout.strip().splitlines()[-1]


def run(args) -> int:
    if not shutil.which(args.wrk):
        raise BenchError(f"wrk not found ({args.wrk})")
    tmp = Path(tempfile.mkdtemp(prefix="memberkit-bench-", dir=args.dir))
    try:
        return bench(args, tmp)
    finally:
        for proc in BACKGROUND:
            proc.terminate()
        if args.keep:
            console.print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def bench(args, tmp: Path) -> int:
    config = tmp / "plugins.toml"
    shutil.copy(args.config, config)
    mk_db, floor_db = tmp / "bench.db", tmp / "floor.db"
    env = memberkit_env(mk_db, config)
    memberkit = memberkit_cmd()
    key = create_key(memberkit, env, tmp, args.shop)
    receiver = None
    if args.endpoint:  # the integrator's server, in the background of this 2-core VM like the deliverer
        receiver_port = free_port()
        receiver = subprocess.Popen(["nice", "-n", "10", sys.executable, str(BENCH / "receiver.py"),  # noqa: S603
                                     str(receiver_port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        BACKGROUND.append(receiver)
        receiver_url = f"http://127.0.0.1:{receiver_port}/hooks"

    mk_port, floor_port = free_port(), free_port()
    mk_cmd = [memberkit, "serve", "--port", str(mk_port), "--workers", "1", "--jobs-interval", "0"]
    floor_cmd = [sys.executable, str(BENCH / "floor_app.py"),
                 "--db", str(floor_db), "--port", str(floor_port)]

    # Sign up the members once (on a first start of the server), so both targets share the member ids.
    with server(mk_cmd, env, tmp, mk_port, tmp / "memberkit.log"):
        members = sign_up_members(f"http://127.0.0.1:{mk_port}", key, args.members)
        if receiver:
            create_endpoint(f"http://127.0.0.1:{mk_port}", key, receiver_url)
    floor_cmd += ["--members", ",".join(members)]

    marker_order, marker_member = "@@ORDER@@", "@@MEMBER@@"
    mk_script, floor_script = tmp / "memberkit.lua", tmp / "floor.lua"
    mk_script.write_text(lua_script(
        ORDER_PAID, {"input": {"orderId": marker_order, "memberId": marker_member, "total": TOTAL}},
        marker_order, marker_member, f"Bearer {key}", members))
    floor_script.write_text(lua_script(
        FLOOR_ORDER, {"orderId": marker_order, "memberId": marker_member, "total": TOTAL},
        marker_order, marker_member, "Bearer floor", members))

    mk_count = "SELECT count(*) FROM core_order"  # the demo shop is the only one with orders
    floor_count = "SELECT count(*) FROM floor_event"
    # The measured memberkit leaves delivery to a `memberkit webhooks deliver` process beside it, as a
    # deployment does that wants its workers for requests; "in-worker" is the default serve, delivering too.
    deliverer = ["nice", "-n", "10", memberkit, "webhooks", "deliver"] if receiver else None
    mk_log = tmp / "memberkit.log"
    targets = [("memberkit", mk_cmd + ["--no-services"], deliverer, env, mk_port, mk_script, mk_db, mk_count,
                mk_log),
               ("floor", floor_cmd, None, os.environ.copy(), floor_port, floor_script, floor_db, floor_count,
                tmp / "floor.log")]
    if receiver and args.in_worker:
        targets.append(("in-worker", mk_cmd, None, env, mk_port, mk_script, mk_db, mk_count, mk_log))
    runs: list[Run] = []
    console.print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s (warm-up {args.warmup}s), "
                  f"{args.rounds} round(s), {len(members)} members, shop {args.shop!r}, "
                  f"{'one webhook endpoint for every type' if receiver else 'no webhook endpoint'}, "
                  f"{os.cpu_count()} cores, databases in {tmp}")
    for round_no in range(1, args.rounds + 1):
        for name, cmd, beside, target_env, port, script, db, count_sql, log in targets:
            with server(cmd, target_env, tmp, port, log, beside):
                if args.warmup > 0:
                    measure(args, name, port, script, db, count_sql, f"{name}-warm{round_no}", args.warmup)
                result = measure(args, name, port, script, db, count_sql, f"{name}-run{round_no}", args.duration)
            runs.append(result)
            console.print(f"  round {round_no} {name:9} {result.rate:8.0f} orders/s  "
                          f"p50 {result.p50_ms:.1f} ms  p99 {result.p99_ms:.1f} ms  ({result.ok} orders)")

    check_floor(floor_db)
    if receiver:
        written = count_rows(mk_db, "SELECT count(*) FROM webhooks_event")
        received = httpx.get(receiver_url.replace("/hooks", "/count"), timeout=10).text
        console.print(f"webhooks: {int(received):,} deliveries received ({written:,} events written)")
    report(runs, args)
    return 0


def check_floor(db: Path) -> None:
    """The floor's three writes agree: one ledger row per event, balances add up to the ledger."""
    conn = sqlite3.connect(db)
    try:
        events, ledger, ledger_sum, balance_sum = conn.execute(
            "SELECT (SELECT count(*) FROM floor_event), (SELECT count(*) FROM floor_ledger), "
            "(SELECT coalesce(sum(delta), 0) FROM floor_ledger), "
            "(SELECT coalesce(sum(points), 0) FROM floor_balance)"
        ).fetchone()
    finally:
        conn.close()
    if events != ledger or ledger_sum != balance_sum:
        raise BenchError(f"floor inconsistent: {events} events, {ledger} ledger rows, "
                         f"ledger sum {ledger_sum}, balance sum {balance_sum}")


def report(runs: list[Run], args) -> None:
    def median(target: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in runs if r.target == target)

    # Each round measures both servers back to back; the ratio is taken per round, then the median.
    mks, floors = [r for r in runs if r.target == "memberkit"], [r for r in runs if r.target == "floor"]
    pairs = zip(mks, floors, strict=True)
    ratio = statistics.median(mk.rate / floor.rate for mk, floor in pairs)
    mk, floor = median("memberkit", "rate"), median("floor", "rate")
    table = Table(title=f"paid orders, SQLite (WAL, synchronous=FULL), one worker, "
                        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s"
                        + (f", median of {args.rounds} rounds" if args.rounds > 1 else ""))
    for column, justify in (("server", "left"), ("orders/s", "right"), ("p50 ms", "right"),
                            ("p99 ms", "right"), ("vs floor", "right")):
        table.add_column(column, justify=justify)
    table.add_row("memberkit serve", f"{mk:,.0f}", f"{median('memberkit', 'p50_ms'):.1f}",
                  f"{median('memberkit', 'p99_ms'):.1f}", f"{100 * ratio:.1f}%")
    if in_worker := [r for r in runs if r.target == "in-worker"]:
        worker_ratio = statistics.median(w.rate / floor.rate for w, floor in zip(in_worker, floors, strict=True))
        table.add_row("the same, delivering in the worker", f"{median('in-worker', 'rate'):,.0f}",
                      f"{median('in-worker', 'p50_ms'):.1f}", f"{median('in-worker', 'p99_ms'):.1f}",
                      f"{100 * worker_ratio:.1f}%")
    table.add_row("floor (3 raw writes)", f"{floor:,.0f}", f"{median('floor', 'p50_ms'):.1f}",
                  f"{median('floor', 'p99_ms'):.1f}", "100%")
    console.print(table)
    detail = (" (median of the per-round ratios)" if args.rounds > 1
              else f"  ({mk:,.0f} / {floor:,.0f} orders/s)")
    console.print(f"memberkit / floor = {100 * ratio:.1f}%{detail}")


def main() -> int:
    parser = argparse.ArgumentParser(description="memberkit paid orders/s against the stack floor, same run.")
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per server (default 10)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1; 2 cores in mind)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per server (default 2)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, median taken (default 5)")
    parser.add_argument("--members", type=int, default=5, help="members the orders are spread over")
    parser.add_argument("--shop", default="demo")
    parser.add_argument("--no-endpoint", dest="endpoint", action="store_false",
                        help="no webhook endpoint (by default one, subscribed to every type, receives)")
    parser.add_argument("--in-worker", action="store_true",
                        help="also measure the default serve, delivering webhooks in its worker")
    parser.add_argument("--config", default=str(ROOT / "plugins.toml"), help="settings file (repo's)")
    parser.add_argument("--wrk", default="wrk")
    parser.add_argument("--dir", default=None,
                        help="parent of the temp dir holding both databases (default: TMPDIR); "
                             "/dev/shm takes the disk out")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir: databases, logs, Lua scripts")
    args = parser.parse_args()
    if args.threads > args.connections:
        parser.error("--threads must not exceed --connections")
    try:
        return run(args)
    except BenchError as exc:
        console.print(f"[red]FAILED[/red] {exc}", highlight=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())
