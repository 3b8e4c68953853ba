"""``memberkit kpis``: the programme's figures over a period beside the period of the same length before it,
read through the shop's own ``programmeKpis`` query in-process (the same validation and figures as the API)."""

from __future__ import annotations

import asyncio
import csv
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from memberkit.core import clock
from memberkit.core.runtime import Runtime
from memberkit.core.settings import Shop
from memberkit.schema.auth import Principal
from memberkit.schema.builder import build_schema
from memberkit.schema.context import RequestContext

QUERY = """query($from: DateTime!, $to: DateTime!) { programmeKpis(from: $from, to: $to) {
  members newMembers activeMembers memberOrders memberSales storeSales couponsIssued couponsUsed
  points { opening issued returned adjusted spent expired reversed closing pending }
  tierDistribution { tier members } tierUpgrades tierDowngrades } }"""
COLUMNS = ["figure", "period", "previous", "change"]


class KpisError(Exception):
    """The shop refused the period (or cannot answer); the message says why."""


def default_period(shop: Shop, days: int = 7) -> tuple[datetime, datetime]:
    """The last `days` days up to the end of the current local hour, so that a campaign is watched as it runs
    (today's figures so far included), against the `days` before them."""
    now = shop.local(clock.now())
    end = now.replace(minute=0, second=0, microsecond=0).astimezone(UTC) + timedelta(hours=1)
    return (end - timedelta(days=days)).astimezone(shop.timezone), end.astimezone(shop.timezone)


def _read(runtime: Runtime, shop: Shop, start: datetime, end: datetime) -> dict[str, Any]:
    schema = build_schema(shop.plugins)
    context = RequestContext(runtime, Principal(shop.slug, "secret"), shop)
    result = asyncio.run(schema.execute(QUERY, {"from": start.isoformat(), "to": end.isoformat()},
                                        context_value=context))
    if result.errors:
        raise KpisError("; ".join(error.message for error in result.errors))
    return result.data["programmeKpis"]


def _ratio(part: int | None, whole: int | None) -> float | None:
    return None if part is None or not whole else part / whole


def rows(runtime: Runtime, shop: Shop, start: datetime, end: datetime) -> list[list[Any]]:
    """(figure, this period, the period before, change in percent): counts, then rates as percentages."""
    now, before = _read(runtime, shop, start, end), _read(runtime, shop, start - (end - start), start)

    def figures(k: dict[str, Any]) -> dict[str, float | int | None]:
        points = k["points"] or {}
        found = {name: k[name] for name in ("members", "newMembers", "activeMembers", "memberOrders", "memberSales",
                                            "storeSales", "couponsIssued", "couponsUsed", "tierUpgrades",
                                            "tierDowngrades")}
        found.update({f"points {part}": points[part] for part in points})
        found.update({f"tier {t['tier']}": t["members"] for t in k["tierDistribution"]})
        found["coupon redemption rate %"] = _ratio(k["couponsUsed"], k["couponsIssued"])
        found["active share %"] = _ratio(k["activeMembers"], k["members"])
        found["members' share of sales %"] = _ratio(k["memberSales"], k["storeSales"])
        return {name: round(value * 100, 1) if name.endswith("%") and value is not None else value
                for name, value in found.items()}

    current, previous = figures(now), figures(before)
    table = []
    for name, value in current.items():
        old = previous.get(name)
        change = None if value is None or not old else round((value - old) * 100 / abs(old), 1)
        table.append([name, value, old, change])
    return table


def write_csv(table: list[list[Any]], out: IO[str]) -> None:
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerows([["" if cell is None else cell for cell in row] for row in table])
