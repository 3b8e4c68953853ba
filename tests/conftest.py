"""memberkit's own fixtures, on top of memberkit.testing (the pytest plugin shipped in the package, which
gives make_runtime, make_api, memberkit, memberkit_clock, add_plugin and the Api client): the settings
most tests share, and a real `memberkit serve` for the tests that need one."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from memberkit.core.runtime import Runtime
from memberkit.testing import (  # noqa: F401  (what the tests import from here)
    ORDER_PAID,
    ORDER_REFUNDED,
    SIGN_UP,
    TEST_DATABASE_URL,
    Api,
    postgres_only,
)

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"  # the specification beside the repository, where there is one
CONTRACT = ROOT / "schema" / "contract.graphql"  # the project's own copy of the API it promises


def breaking_changes(served_sdl: str, contract_sdl: str | None = None) -> list[str]:
    """What `served_sdl` breaks of the contract (graphql-core's find_breaking_changes), one line each."""
    from graphql import build_schema, find_breaking_changes

    contract = build_schema(contract_sdl or CONTRACT.read_text())
    return [f"{c.type.name}: {c.description}" for c in find_breaking_changes(contract, build_schema(served_sdl))]


shared_only = pytest.mark.skipif(not (SHARED / "check-contract.py").exists(),
                                 reason="no ../shared beside the repository (the project's contract copy is checked)")

TWO_SHOPS = """
[shops.alpha]
name = "Alpha"
currency = "CNY"
timezone = "Asia/Shanghai"

[shops.alpha.coupons.TEN_OFF]
title = "10 off"
kind = "FIXED"
value = 1000
valid_days = 30

[shops.alpha.coupons.FIVE_PERCENT]
title = "5% off"
kind = "PERCENT"
value = 5
min_spend = 10000

[shops.beta]
name = "Beta"
currency = "EUR"
timezone = "Europe/Berlin"

[shops.beta.coupons.TEN_OFF]
title = "10 off"
kind = "FIXED"
value = 1000
"""


# The demo shop's four tiers (RULES.md section 1), for a test shop `{shop}` that enables tiering.
DEMO_TIERS = """
[shops.{shop}.settings.tiering]

[[shops.{shop}.settings.tiering.tiers]]
code = "REGULAR"
name = "Regular"
rank = 1

[[shops.{shop}.settings.tiering.tiers]]
code = "SILVER"
name = "Silver"
rank = 2
min_spend = 50000

[[shops.{shop}.settings.tiering.tiers]]
code = "GOLD"
name = "Gold"
rank = 3
min_spend = 200000

[[shops.{shop}.settings.tiering.tiers]]
code = "DIAMOND"
name = "Diamond"
rank = 4
min_spend = 500000
"""


@pytest.fixture
def runtime(make_runtime) -> Runtime:
    return make_runtime(TWO_SHOPS)


@pytest.fixture
def api(runtime, make_api) -> Api:
    return make_api(runtime)


MEMBER = """
query($id: ID, $externalId: String) {
  member(id: $id, externalId: $externalId) {
    id externalId joinedAt birthday tags
    coupons(status: null) { code title kind value status source minSpend { amount currency } validUntil }
  }
}"""


def sign_up(api: Api, key: str, external_id: str, **fields) -> str:
    return api.sign_up(key, external_id, **fields)


MEMBERKIT = str(Path(sys.executable).parent / "memberkit")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(env: dict, workers: int, log, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start `memberkit serve --workers N` (logging to the open file `log`) and wait until it is healthy."""
    port = port or free_port()
    process = subprocess.Popen([MEMBERKIT, "serve", "--port", str(port), "--workers", str(workers),
                                "--jobs-interval", "0"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    log.seek(0)
    pytest.fail("server did not start: " + log.read())


@contextmanager
def memberkit_serve(env: dict, workers: int, log_path: Path):
    """A real `memberkit serve --workers N` process, as a user runs it; yields its base URL once healthy."""
    with open(log_path, "w+") as log:
        process, base = start_serve(env, workers, log)
        try:
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)
