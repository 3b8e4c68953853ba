"""The stack floor for bench/events.py: the least a paid order can cost on memberkit's server stack.

Starlette + strawberry + uvicorn (one worker), one mutation `recordOrder(orderId, memberId, total)` whose
resolver does, in the Starlette threadpool like memberkit's events, only three raw writes with plain
`sqlite3` in one transaction under memberkit's durability settings (WAL, synchronous=FULL):
an event row, a ledger row and a balance update.

    python bench/floor_app.py --db /tmp/floor.db --port 8001 [--members m1,m2]
"""

from __future__ import annotations

import argparse
import sqlite3
import threading
import time

import strawberry
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache

SCHEMA = """
CREATE TABLE IF NOT EXISTS floor_event (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL, member TEXT NOT NULL,
    created_at REAL NOT NULL, UNIQUE (kind, key));
CREATE TABLE IF NOT EXISTS floor_ledger (
    id INTEGER PRIMARY KEY, member TEXT NOT NULL, delta INTEGER NOT NULL, event_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS floor_balance (member TEXT PRIMARY KEY, points INTEGER NOT NULL DEFAULT 0);
"""


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def prepare(path: str, members: list[str]) -> None:
    """Create the three tables and a zero balance per member."""
    conn = connect(path)
    conn.executescript(SCHEMA)
    conn.executemany("INSERT OR IGNORE INTO floor_balance (member, points) VALUES (?, 0)",
                     [(m,) for m in members])
    conn.close()


@strawberry.type
class UserError:
    code: str
    message: str


@strawberry.type
class RecordOrderPayload:
    duplicate: bool
    errors: list[UserError]


def create_app(path: str) -> Starlette:
    conn = connect(path)
    lock = threading.Lock()  # one writer per process, as memberkit's Database.write

    def record(order_id: str, member_id: str, total: int) -> None:
        with lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                event_id = conn.execute(
                    "INSERT INTO floor_event (kind, key, member, created_at) VALUES ('order_paid', ?, ?, ?)",
                    (order_id, member_id, time.time())).lastrowid
                conn.execute("INSERT INTO floor_ledger (member, delta, event_id) VALUES (?, ?, ?)",
                             (member_id, total, event_id))
                conn.execute("UPDATE floor_balance SET points = points + ? WHERE member = ?",
                             (total, member_id))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @strawberry.type
    class Mutation:
        @strawberry.mutation
        async def record_order(self, order_id: str, member_id: str, total: int) -> RecordOrderPayload:
            await run_in_threadpool(record, order_id, member_id, total)
            return RecordOrderPayload(duplicate=False, errors=[])

    return stack_app(Mutation)


def stack_app(mutation: type) -> Starlette:
    """A floor's server: `mutation` on the same stack as memberkit's, with the same parse and validation
    caches (the stack at its cheapest), /graphql and /healthz."""

    @strawberry.type
    class Query:
        @strawberry.field
        def ok(self) -> bool:
            return True

    async def healthz(request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    schema = strawberry.Schema(query=Query, mutation=mutation,
                               extensions=[lambda: ParserCache(maxsize=1024), lambda: ValidationCache(maxsize=1024)])
    return Starlette(routes=[Route("/graphql", GraphQL(schema, graphql_ide=None, allow_queries_via_get=False),
                                   methods=["GET", "POST"]),
                             Route("/healthz", healthz)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--members", default="", help="comma-separated member ids to give a zero balance")
    args = parser.parse_args()
    prepare(args.db, [m for m in args.members.split(",") if m])
    # As `memberkit serve`: uvicorn's defaults (uvloop, httptools when installed), one worker, no access log.
    uvicorn.run(create_app(args.db), host=args.host, port=args.port, workers=1,
                log_level="info", access_log=False)


if __name__ == "__main__":
    main()
