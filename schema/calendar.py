"""Query.calendar: what happens between two shop-local days, gathered from every enabled plugin through the
``calendar_entries`` hook (member day, flash sales, the signed-in member's birthday month, ...)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Optional

import strawberry

from memberkit.core.context import Context
from memberkit.core.types import CalendarEntry as CalendarEntryData
from memberkit.schema.context import RequestContext, VisibleError

MAX_DAYS = 62  # two months of any length: a month view with the days of its neighbours shown
MAX_ENTRIES = 1000  # the earliest entries of a range, should plugins have more to show
EARLIEST, LATEST = dt.date(2000, 1, 1), dt.date(2099, 12, 31)  # the days memberkit keeps schedules for


class InvalidRange(VisibleError):
    code = "INVALID_RANGE"

    def __init__(self, field: str, message: str):
        super().__init__(f"calendar: {field} {message}")
        self.extensions["field"] = field


@strawberry.type(description="Something on one shop-local day. kind: MEMBER_DAY, FLASH_SALE, BIRTHDAY_MONTH, "
                             "PRODUCT_LAUNCH or a plugin's own; title in the shop's locale; reference: what "
                             "it points at (a flash sale id, a sku).")
class CalendarEntry:
    date: dt.date
    kind: str
    title: str
    reference: Optional[str]

    @classmethod
    def of(cls, entry: CalendarEntryData) -> CalendarEntry:
        return cls(date=entry.day, kind=entry.kind, title=entry.title, reference=entry.reference)


def check_range(first: dt.date, last: dt.date) -> None:
    """Both days within the years memberkit schedules for, in order, at most MAX_DAYS days (both included)."""
    for field, day in (("from", first), ("to", last)):
        if not EARLIEST <= day <= LATEST:
            raise InvalidRange(field, f"is {day.isoformat()}: expected a day from {EARLIEST} to {LATEST}")
    if last < first:
        raise InvalidRange("to", f"is {last.isoformat()}, before from ({first.isoformat()}): expected from or later")
    days = (last - first).days + 1
    if days > MAX_DAYS:
        raise InvalidRange("to", f"makes the range {days} days: expected at most {MAX_DAYS} (both days included)")


def entries_between(ctx: Context, member_id: str | None, first: dt.date, last: dt.date) -> list[CalendarEntry]:
    """Every plugin's entries for the range, by day (a plugin's own order kept within a day); an entry a plugin
    dates outside the range is left out."""
    answers = ctx.hook.calendar_entries(ctx=ctx, member_id=member_id, first=first, last=last)
    entries = [entry for answer in answers for entry in answer or () if first <= entry.day <= last]
    entries.sort(key=lambda entry: entry.day)
    return [CalendarEntry.of(entry) for entry in entries[:MAX_ENTRIES]]


def contribute(builder) -> None:
    def calendar(Member):
        async def resolve(info: strawberry.Info, from_: Annotated[dt.date, strawberry.argument(name="from")],
                          to: dt.date) -> list[CalendarEntry]:
            """What happens from `from` to `to`, shop-local days both included (at most 62 days; the first
            1,000 entries): the member's own entries too (their birthday month) with a member token."""
            check_range(from_, to)
            context: RequestContext = info.context
            member_id = context.member_id
            return await context.read(lambda ctx: entries_between(ctx, member_id, from_, to))
        return resolve

    builder.query_field("calendar", calendar)
