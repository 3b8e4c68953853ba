"""The hooks a memberkit plugin may implement, grouped by phase; docs/plugins.md gives each an example.

Every hook runs for the shop's enabled plugins only, in the order the shop lists them (``tryfirst`` and
``trylast`` override), with ``ctx`` (:class:`~memberkit.core.context.Context`): the shop, the time and the
open transaction ``ctx.conn``. Event hooks run inside the event's one transaction: raising ``Refused``
where a hook allows it rolls the whole event back and answers with its code; any other exception rolls it
back as an internal error. What a plugin owns at build time (settings, tables, GraphQL, jobs, migrations)
it declares in its :class:`~memberkit.core.plugins.Plugin`, not through hooks.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from memberkit.core import types
    from memberkit.core.context import Context

hookspec = pluggy.HookspecMarker("memberkit")


# ---------------------------------------------------------------- events: what happened (collect-all)


@hookspec
def member_signup(ctx: Context, member: types.MemberInfo, signup: types.SignUp) -> list[types.Effect] | None:
    """A new member is stored (``signUpMember``): return the effects of what the plugin did for them.
    Never refuses: a sign-up is never lost to a plugin."""


@hookspec
def member_updated(ctx: Context, member: types.MemberInfo, changes: types.MemberChanges) -> list[types.Effect] | None:
    """A member's data is about to change (``updateMember``; ``changes`` holds only what differs): return
    effects, or raise ``Refused`` to veto the change."""


@hookspec
def members_imported(ctx: Context, members: list[types.ImportedMember]) -> None:
    """A batch of members was imported (``memberkit import members``), core's rows written: store what the
    plugin keeps for them from the history given, in a few statements per batch. No sign-up gifts and no
    outbound event per member (the import emits one); raising rolls the batch back."""


@hookspec
def order_paid(ctx: Context, order: types.PaidOrder) -> list[types.Effect] | None:
    """An order was paid and stored, its coupons and points used: return effects. Never refuses; what
    cannot be honoured is a ``CONFLICT`` effect with a code."""


@hookspec
def order_refunded(ctx: Context, refund: types.Refund) -> list[types.Effect] | None:
    """Part or all of a paid order was refunded: reverse, in proportion, what the plugin stored for the
    order and return effects. Never refuses."""


@hookspec
def tier_changed(ctx: Context, member_id: str, before: types.TierInfo | None, after: types.TierInfo,
                 reason: str) -> None:
    """The member's tier changed in this transaction (``reason``: ORDER, REFUND, EVALUATION, MANUAL,
    PAID_UPGRADE or IMPORTED), told by the plugin that keeps tiers, so others can follow (segments)."""


@hookspec
def lifecycle_changed(ctx: Context, member_id: str, before: str | None, after: str, reason: str,
                      since: datetime) -> None:
    """The member's lifecycle stage changed in this transaction (NEW, ACTIVE, DORMANT, CHURNED; ``reason``
    ORDER, REFUND or TIME; ``since`` starts the new stage), told by the plugin that keeps stages."""


@hookspec
def member_erased(ctx: Context, member_id: str) -> None:
    """The member is being erased (``eraseMember``): drop what the plugin holds about the person (segments,
    codes, queued deliveries), keep what accounting needs (ledgers, orders). Core's rows are changed after."""


@hookspec
def outbound_events(ctx: Context, events: list[types.OutboundEvent]) -> None:
    """The outbound events (``ctx.emit``) of one transaction, once, just before it commits: the plugin that
    keeps an outbox writes them in that transaction, in as few statements as it can (an order's are on the
    hot path). Raising rolls the whole transaction back."""


@hookspec
def figures_recorded(ctx: Context, figures: list[types.Figure]) -> None:
    """The programme figures (``ctx.count``) of one transaction, once, just before it commits and after
    ``outbound_events``: the plugin that keeps KPIs writes them in that transaction in one statement."""


# ---------------------------------------------------------------- perform: one plugin answers (first result)


@hookspec(firstresult=True)
def redemption(ctx: Context, member_id: str, redemption: types.Redemption) -> types.RedemptionResult | None:
    """Spend ``redemption.amount`` of the currency the plugin owns, or raise ``RedemptionRefused``;
    ``None`` from every plugin means nobody owns that currency."""


@hookspec(firstresult=True)
def member_tier(ctx: Context, member_id: str) -> types.TierInfo | None:
    """Return the member's current tier, or ``None`` where the shop has no tiering (callers treat that as
    neutral: 1x, no discount, the lowest rank)."""


@hookspec(firstresult=True)
def member_tiers(ctx: Context, member_ids: list[str]) -> dict[str, types.TierInfo] | None:
    """Return the current tier of each of ``member_ids`` in a few reads, for jobs that go over every member
    of a shop; ``None`` without tiering."""


@hookspec(firstresult=True)
def tier_catalog(ctx: Context) -> list[types.TierInfo] | None:
    """Return the shop's tiers in rank order, lowest first, or ``None`` where the shop has no tiering."""


@hookspec(firstresult=True)
def segment_codes(ctx: Context) -> list[str] | None:
    """Return the codes of the shop's segments, or ``None`` where the shop keeps none."""


@hookspec(firstresult=True)
def member_segments(ctx: Context, member_id: str) -> list[str] | None:
    """Return the codes of the segments the member is in now, or ``None`` where the shop keeps none."""


@hookspec(firstresult=True)
def checkout_payment(ctx: Context, order: types.PaidOrder) -> types.CheckoutPayment | None:
    """An order being recorded names ``order.checkout_id``: return what it pays with (the order as it is
    recorded, effects, the points the checkout held). Answered by the plugin that keeps checkouts."""


# ---------------------------------------------------------------- checkout holds (collect-all)


@hookspec
def checkout_hold(ctx: Context, checkout_id: str, cart: types.Cart, expires_at: datetime) -> list[types.Effect] | None:
    """Hold what the plugin owns in ``cart`` (points, reservations) for ``checkout_id`` until ``expires_at``;
    raise ``Refused`` when it cannot, which gives back every other hold too."""


@hookspec
def checkout_release(ctx: Context, checkout_id: str, reason: str) -> None:
    """Give back everything the plugin holds for ``checkout_id``; ``reason`` is "released" or "expired"."""


# ---------------------------------------------------------------- compute and veto: read only (collect-all)


@hookspec
def price_adjustments(ctx: Context, cart: types.Cart, stage: types.PriceStage,
                      subtotal: int) -> list[types.Adjustment] | None:
    """Propose the plugin's price changes to ``cart`` at ``stage``, given ``subtotal``, the price so far;
    negative amounts are discounts. Reads only."""


@hookspec
def points_to_earn(ctx: Context, cart: types.Cart, total: int) -> int | None:
    """Return how many points an order of ``cart`` charged ``total`` would earn; the answers are summed."""


@hookspec
def purchase_denials(ctx: Context, cart: types.Cart) -> list[types.PurchaseDenial] | None:
    """Return the reasons ``cart.member_id`` (``None``: an anonymous shopper) may not buy lines of ``cart``."""


@hookspec
def calendar_entries(ctx: Context, member_id: str | None, first: date, last: date) -> list[types.CalendarEntry] | None:
    """What happens from ``first`` to ``last`` (shop-local days, both included) for the member (``None``: anyone,
    no member signed in), each entry on a day of that range. Reads only; the answers are merged by day."""


@hookspec
def member_data(ctx: Context, member_id: str) -> dict | None:
    """Everything the plugin holds about the member, as JSON-ready values for ``memberDataExport`` (a data
    subject's access request), keyed by the plugin's name by the caller; ``None`` where it holds nothing."""
