"""Reading a member's points over HTTP: a member with 10,000 ledger entries against one with 10, same run.

    /tmp/venv/bin/python bench/points_reads.py [--duration 5] [--connections 8] [--rounds 3] [--dir /dev/shm]

Builds a fresh SQLite database with the repo's plugins.toml (demo shop) and two members whose ledgers are
written directly through plugins/points/ledger.py (alternate earns and spends of 10 points: the small
member has 10 entries, the large one 10,000, both a few open lots), then starts `memberkit serve --workers 1`
and has wrk POST, for each member in turn,

    member(id) { points { balance history(first: 20) { edges { node { delta } } } } }

It prints both rates and the ratio large / small: the history is keyset-paged and the balance is one row
plus the lots that are due, so the ratio should be near 1. Any non-200 or GraphQL error fails the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from events import BenchError, console, free_port, memberkit_cmd, server  # noqa: E402

QUERY = "query($id: ID) { member(id: $id) { points { balance history(first: 20) { edges { node { delta } } } } } }"

LUA = r"""
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = [==[%(auth)s]==]
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok, bad = 0, 0 end
function response(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"') or not string.find(body, '"edges"') then
    bad = bad + 1
  else
    ok = ok + 1
  end
end
function done(summary, latency, requests)
  local ok_all, bad_all = 0, 0
  for _, thread in ipairs(threads) do
    ok_all = ok_all + thread:get("ok")
    bad_all = bad_all + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"duration_us":%%d,"ok":%%d,"bad":%%d,"socket_errors":%%d,"p50_us":%%d,' ..
    '"p99_us":%%d}\n', summary.duration, ok_all, bad_all, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def seed(env: dict, entries: dict[str, int]) -> dict[str, str]:
    """Sign up one member per name and write `entries[name]` ledger entries for each; returns the ids."""
    os.environ.update(env)
    from memberkit import config, migrate
    from memberkit.core import members
    from memberkit.plugins.points import ledger

    runtime = config.runtime()
    migrate.upgrade(runtime)
    shop = runtime.shop("demo")
    ids = {}
    for name, count in entries.items():
        member_id = members.sign_up_member(runtime, shop, None, external_id=name).member_id
        ids[name] = member_id
        done = 0
        while done < count:
            with runtime.transaction(shop) as ctx:
                for _ in range(min(1000, count - done) // 2):
                    ledger.earn(ctx, member_id, 10, "ADJUST", "manual", ledger.lock(ctx, member_id), note="bench")
                    ledger.spend(ctx, member_id, 10, "SPEND", "reward:bench", note="bench")
                    done += 2
        with runtime.reading(shop) as ctx:
            written = len(ledger.history(ctx, member_id, 100, None))
        if count >= 100 and written != 101:
            raise BenchError(f"seeding {name}: expected more than 100 entries")
    runtime.db.dispose()
    return ids


def wrk(args, port: int, script: Path) -> dict:
    cmd = [args.wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "10s",
           "-s", str(script), f"http://127.0.0.1:{port}/graphql"]
    done = subprocess.run(cmd, capture_output=True, text=True)  # noqa: S603
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(lines[-1].removeprefix("BENCH_JSON "))
    if result["bad"] or result["socket_errors"] or not result["ok"]:
        raise BenchError(f"wrk: {result}")
    return result


def bench(args, tmp: Path) -> int:
    config = tmp / "plugins.toml"
    shutil.copy(args.config, config)
    env = {"MEMBERKIT_DATABASE_URL": f"sqlite:///{tmp / 'reads.db'}", "MEMBERKIT_CONFIG": str(config),
           "MEMBERKIT_TOKEN_SECRETS": "bench-token-secret", "MEMBERKIT_PII_KEY": "bench-pii-key",
           "MEMBERKIT_ENV": "production"}
    started = time.monotonic()
    sizes = {"small": 10, "large": args.entries}
    ids = seed(env, sizes)
    console.print(f"seeded 10 and {args.entries:,} entries in {time.monotonic() - started:.1f}s")
    full_env = {**os.environ, **env}
    memberkit = memberkit_cmd()
    created = subprocess.run([memberkit, "keys", "create", "--shop", "demo", "--label", "bench"],  # noqa: S603
                             env=full_env, cwd=tmp, capture_output=True, text=True)
    if created.returncode != 0:
        raise BenchError(f"memberkit keys create failed:\n{created.stdout}\n{created.stderr}")
    key = created.stdout.strip().splitlines()[-1]
    scripts = {}
    for name, member_id in ids.items():
        body = json.dumps({"query": QUERY, "variables": {"id": member_id}}, separators=(",", ":"))
        scripts[name] = tmp / f"{name}.lua"
        scripts[name].write_text(LUA % {"body": body, "auth": f"Bearer {key}"})

    port = free_port()
    cmd = [memberkit, "serve", "--port", str(port), "--workers", "1", "--jobs-interval", "0"]
    rates: dict[str, list[float]] = {name: [] for name in ids}
    ratios = []
    with server(cmd, full_env, tmp, port, tmp / "serve.log"):
        for name, member_id in ids.items():  # each answers 20 entries (or all 10), no errors
            body = httpx.post(f"http://127.0.0.1:{port}/graphql", headers={"Authorization": f"Bearer {key}"},
                              json={"query": QUERY, "variables": {"id": member_id}}, timeout=30).json()
            edges = body["data"]["member"]["points"]["history"]["edges"]
            if len(edges) != min(20, sizes[name]):
                raise BenchError(f"{name}: {len(edges)} history edges: {body}")
        for name in ids:  # warm-up
            args_warm = argparse.Namespace(**{**vars(args), "duration": 2})
            wrk(args_warm, port, scripts[name])
        for round_no in range(1, args.rounds + 1):
            order = list(ids) if round_no % 2 else list(reversed(ids))
            got = {}
            for name in order:
                result = wrk(args, port, scripts[name])
                got[name] = result["ok"] / (result["duration_us"] / 1e6)
                rates[name].append(got[name])
                console.print(f"  round {round_no} {name:5} ({sizes[name]:>6,} entries) {got[name]:8.0f} reads/s  "
                              f"p50 {result['p50_us'] / 1000:.1f} ms  p99 {result['p99_us'] / 1000:.1f} ms")
            ratios.append(got["large"] / got["small"])
    small, large, ratio = (statistics.median(rates["small"]), statistics.median(rates["large"]),
                           statistics.median(ratios))
    console.print(f"member with 10 entries:      {small:8,.0f} reads/s")
    console.print(f"member with {args.entries:,} entries: {large:8,.0f} reads/s")
    console.print(f"{args.entries:,} / 10 entries = {100 * ratio:.1f}% (median of the per-round ratios)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="points balance + history reads: 10,000 entries against 10.")
    parser.add_argument("--duration", type=int, default=5, help="measured seconds per member and round")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--entries", type=int, default=10000, help="entries of the large member")
    parser.add_argument("--config", default=str(ROOT / "plugins.toml"))
    parser.add_argument("--wrk", default="wrk")
    parser.add_argument("--dir", default=None, help="parent of the temp dir (default TMPDIR; /dev/shm: tmpfs)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not shutil.which(args.wrk):
        console.print(f"[red]FAILED[/red] wrk not found ({args.wrk})")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="memberkit-reads-", dir=args.dir))
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
