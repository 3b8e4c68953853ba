"""The stack floor for bench/flash.py: the least a flash-sale reservation can cost on memberkit's stack.

Starlette + strawberry + uvicorn (as many workers as memberkit gets), one mutation `reserve(saleId, quantity)`
whose resolver runs, in the Starlette threadpool like memberkit's events, only the raw conditional UPDATE of
one stock row through SQLAlchemy Core on PostgreSQL:
`UPDATE floor_stock SET held = held + :q WHERE id = :id AND held + sold + :q <= stock`.

    FLOOR_DATABASE_URL=postgresql://... python bench/flash_floor_app.py --port 8001 --workers 4
"""

from __future__ import annotations

import argparse
import os

import strawberry
import uvicorn
from floor_app import UserError, stack_app
from sqlalchemy import create_engine, text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool

SCHEMA = """CREATE TABLE IF NOT EXISTS floor_stock (
    id TEXT PRIMARY KEY, stock INTEGER NOT NULL, held INTEGER NOT NULL DEFAULT 0, sold INTEGER NOT NULL DEFAULT 0)"""
RESERVE = text("UPDATE floor_stock SET held = held + :q WHERE id = :id AND held + sold + :q <= stock RETURNING held")


def prepare(url: str, sale_id: str, stock: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(SCHEMA))
        conn.execute(text("INSERT INTO floor_stock (id, stock) VALUES (:id, :stock) ON CONFLICT (id) DO NOTHING"),
                     {"id": sale_id, "stock": stock})
    engine.dispose()


@strawberry.type
class ReservePayload:
    held: int | None
    errors: list[UserError]


def create_app() -> Starlette:
    url = os.environ["FLOOR_DATABASE_URL"]
    engine = create_engine(url, pool_size=20, max_overflow=20)  # as memberkit's Database on PostgreSQL

    def reserve(sale_id: str, quantity: int) -> int | None:
        with engine.begin() as conn:
            return conn.execute(RESERVE, {"id": sale_id, "q": quantity}).scalar()

    @strawberry.type
    class Mutation:
        @strawberry.mutation
        async def reserve(self, sale_id: str, quantity: int, key: str | None = None) -> ReservePayload:
            held = await run_in_threadpool(reserve, sale_id, quantity)
            errors = [] if held is not None else [UserError(code="SOLD_OUT", message="sold out")]
            return ReservePayload(held=held, errors=errors)

    return stack_app(Mutation)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sale", default="floor-sale")
    parser.add_argument("--stock", type=int, default=1_000_000)
    args = parser.parse_args()
    prepare(os.environ["FLOOR_DATABASE_URL"], args.sale, args.stock)
    os.environ.setdefault("PYTHONPATH", os.path.dirname(__file__))
    uvicorn.run("flash_floor_app:create_app", factory=True, app_dir=os.path.dirname(os.path.abspath(__file__)),
                host=args.host, port=args.port, workers=args.workers, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
