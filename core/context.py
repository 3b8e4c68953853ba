"""What a hook receives: the shop, the open transaction, the time, and core's services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Connection

from memberkit.core.settings import Shop
from memberkit.core.types import Figure, OutboundEvent
from memberkit.core.wallet import Wallet


@dataclass
class Context:
    """Passed to every hook of one event, job run or read; all writes go through `conn`.

    `conn` is the one transaction of the event: what a plugin writes commits or rolls back with core's
    rows. `hook` calls other hooks of the same shop (e.g. ``ctx.hook.member_tier(ctx=ctx, member_id=...)``)
    so that plugins share through core, never by importing each other.
    """

    shop: Shop
    conn: Connection
    now: datetime
    hook: Any
    event_id: int | None = None
    api_key_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Writes an event runs last, after its result is stored and just before commit: for rows every event
    # contends for (a flash sale's stock), whose lock is then held for one statement, not the whole event.
    # One may raise Refused, which rolls the whole event back.
    last: list[Callable[[], None]] = field(default_factory=list)
    # What caused this transaction (the inbound event's kind and key, or the job), named in outbound events.
    cause: dict[str, Any] = field(default_factory=dict)
    outbound: list[OutboundEvent] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    def emit(self, type: str, member_id: str | None, **data: Any) -> None:
        """Tell the platform about a change made in this transaction: the events are handed to the
        ``outbound_events`` hook just before commit, so a rolled-back change emits nothing."""
        self.outbound.append(OutboundEvent(type, member_id, data))

    def count(self, metric: str, value: int = 1, *, at: datetime | None = None, member_id: str | None = None) -> None:
        """Add `value` to a programme figure at `at` (default: now); handed to ``figures_recorded`` at commit."""
        self.figures.append(Figure(metric, value, at or self.now, member_id))

    def flush_outbound(self) -> None:
        """Hand the transaction's events to the outbox (``outbound_events``), then its figures, counted by
        then, to ``figures_recorded``: each once, just before commit."""
        if self.outbound:
            events, self.outbound = self.outbound, []
            self.hook.outbound_events(ctx=self, events=events)
        if self.figures:
            figures, self.figures = self.figures, []
            self.hook.figures_recorded(ctx=self, figures=figures)

    @cached_property
    def wallet(self) -> Wallet:
        """The shop's coupon wallet in this transaction: issue, hold, use and withdraw coupons."""
        return Wallet(self)

    def member_tier(self, member_id: str):
        """The member's tier through the tiering plugin's hook; None where the shop has no tiering."""
        return self.hook.member_tier(ctx=self, member_id=member_id)

    def member_tiers(self, member_ids: list[str]) -> dict[str, Any] | None:
        """Many members' tiers in a few reads (member id -> TierInfo); None where the shop has no tiering.
        A tier plugin that answers only `member_tier` is asked member by member."""
        tiers = self.hook.member_tiers(ctx=self, member_ids=member_ids)
        if tiers is None and self.hook.member_tier.get_hookimpls():
            tiers = {member_id: self.member_tier(member_id) for member_id in member_ids}
            if not any(tiers.values()):
                return None
        return tiers
