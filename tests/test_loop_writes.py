"""On SQLite an event's write runs on the event loop (no thread hop); while this process or another is writing
it waits its turn without blocking the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from memberkit.core import orders
from memberkit.core.models import Order
from tests.conftest import TEST_DATABASE_URL

pytestmark = pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="writes on the event loop are SQLite's")


@pytest.fixture
def placed(api, monkeypatch):
    """Where each attempt of recordOrderPaid ran: "loop" or "thread"."""
    where: list[str] = []
    original = orders.record_order_paid

    def recording(*args, **kwargs):
        try:
            asyncio.get_running_loop()
            where.append("loop")
        except RuntimeError:
            where.append("thread")
        return original(*args, **kwargs)

    monkeypatch.setattr(orders, "record_order_paid", recording)
    return where


def pay(api, key: str, member_id: str, order_id: str) -> dict:
    return api.pay(key, member_id, order_id, 12800)


def orders_stored(runtime) -> int:
    with runtime.db.read() as conn:
        return conn.execute(select(func.count()).select_from(Order)).scalar()


def paid_while(api, runtime, key: str, member_id: str, hold, release) -> float:
    """Pay an order while `hold()` keeps the write lock; the health check must answer meanwhile (the loop is
    free), and the order completes once `release()` lets go. Returns how long the health check took."""
    hold()
    with ThreadPoolExecutor(1) as pool:
        paying = pool.submit(pay, api, key, member_id, "o-held")
        time.sleep(0.3)
        assert not paying.done()  # waiting for the lock
        started = time.monotonic()
        assert api.client.get("/healthz").status_code == 200
        answered = time.monotonic() - started
        release()
        assert paying.result(timeout=30)["errors"] == []
    return answered


def test_an_order_runs_on_the_loop_when_nothing_else_writes(api, runtime, placed):
    key = api.key("alpha")
    member_id = api.sign_up(key, "u-1")
    assert pay(api, key, member_id, "o-1")["errors"] == []
    assert pay(api, key, member_id, "o-1")["duplicate"] is True  # a retry changes nothing, on the loop too
    assert placed == ["loop", "loop"] and orders_stored(runtime) == 1


def test_while_a_thread_of_this_process_writes_an_order_waits_its_turn_and_the_loop_keeps_answering(
        api, runtime, placed):
    key = api.key("alpha")
    member_id = api.sign_up(key, "u-1")
    holding, released = threading.Event(), threading.Event()

    def writer():
        with runtime.db.write():
            holding.set()
            released.wait(30)

    thread = threading.Thread(target=writer)
    answered = paid_while(api, runtime, key, member_id, lambda: (thread.start(), holding.wait(10)), released.set)
    thread.join()
    assert answered < 1 and placed == ["loop"] and orders_stored(runtime) == 1  # tried once the thread was done


def test_while_another_process_writes_an_order_waits_its_turn_and_the_loop_keeps_answering(
        api, runtime, placed):
    key = api.key("alpha")
    member_id = api.sign_up(key, "u-1")
    other = sqlite3.connect(make_url(runtime.db.url).database, isolation_level=None)  # as another process would
    answered = paid_while(api, runtime, key, member_id, lambda: other.execute("BEGIN IMMEDIATE"),
                          lambda: other.execute("COMMIT"))
    other.close()
    assert answered < 1 and len(placed) > 1 and set(placed) == {"loop"}  # refused at BEGIN, tried again
    assert orders_stored(runtime) == 1



def test_a_server_that_delivers_webhooks_in_its_worker_keeps_its_writes_in_threads(make_runtime):
    """Its delivery shares the event loop: orders on it would leave the deliveries no time."""
    from memberkit.schema.context import _busy_seconds
    from memberkit.server import create_app
    from tests.conftest import ROOT

    delivering = make_runtime((ROOT / "plugins.toml").read_text())  # the demo shop enables webhooks
    create_app(delivering, jobs_interval=0, services=True)
    assert delivering.db.engine not in _busy_seconds
    create_app(delivering, jobs_interval=0, services=False)  # `serve --no-services`: requests only
    assert delivering.db.engine in _busy_seconds
