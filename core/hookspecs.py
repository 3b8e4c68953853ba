"""The hooks a memberkit plugin may implement.

Three kinds, named for what happened or what is asked:

* notify (collect-all): ``member_signup``, ``member_updated``, ``order_paid``, ``order_refunded``;
* perform (first result): ``redemption``, ``member_tier``, ``tier_catalog``; and checkout's
  ``checkout_hold`` / ``checkout_release``;
* compute and veto (collect-all, folded by core): ``price_adjustments``, ``points_to_earn``,
  ``purchase_denials``;

The checkout hooks and the compute and veto hooks serve the cart quote and checkout (``core.checkout``:
``quoteCart``, ``startCheckout``, ``releaseCheckout``, the ``core.expire_checkouts`` job).
* build time, called once per process: ``settings_model``, ``graphql_schema``, ``jobs``,
  ``migrations_location``.

Event hooks run inside the event's one database transaction (``ctx.conn``) and only for the plugins the
shop enabled, in the order the shop lists them in ``plugins.toml`` (``tryfirst``/``trylast`` override).
Raising :class:`core.types.Refused` from a hook that allows it rolls the whole event back and returns its
code as a ``UserError``; any other exception rolls it back and surfaces as an internal error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from memberkit.core.context import Context
    from memberkit.core.types import (
        Adjustment,
        Cart,
        Effect,
        Job,
        MemberChanges,
        MemberInfo,
        PaidOrder,
        PriceStage,
        PurchaseDenial,
        Redemption,
        RedemptionResult,
        Refund,
        SignUp,
        TierInfo,
    )
    from memberkit.schema.builder import SchemaBuilder
    from pydantic import BaseModel

hookspec = pluggy.HookspecMarker("memberkit")


# ---------------------------------------------------------------- build time


@hookspec(firstresult=True)
def settings_model() -> type[BaseModel] | None:
    """Return the pydantic model that validates this plugin's table in ``plugins.toml``.

    Called once per plugin when the settings file is loaded (``memberkit check``, start-up). The plugin
    reads the validated instance with ``ctx.settings_for(name)``. The model's defaults are the plugin's.
    """


@hookspec
def graphql_schema(builder: SchemaBuilder) -> None:
    """Add this plugin's types and fields to a shop's schema through ``builder``.

    Called once per distinct set of enabled plugins, at start-up, never per request. Use
    ``builder.member_field(name, resolver)`` for fields on ``Member``, and
    ``builder.query_field(name, factory)`` / ``builder.mutation_field(name, factory)`` for operations,
    where ``factory(Member)`` returns the resolver (so payloads can refer to the composed ``Member``).
    Returns nothing.
    """


@hookspec
def jobs() -> list[Job]:
    """Return the plugin's time-driven jobs (expiry, evaluation, monthly coupons).

    Called at start-up. ``memberkit jobs run`` (and the timer in ``memberkit serve``) runs every job that
    is due for every shop that enabled the plugin, one process at a time per job and shop (a lease row).
    Each job must be idempotent: safe to run twice, late, or after a gap of days.
    """


@hookspec(firstresult=True)
def migrations_location() -> str | None:
    """Return the folder of this plugin's Alembic revisions (its own branch, labelled with its name).

    Called by ``memberkit migrate`` and at start-up of a new SQLite database. ``None`` if the plugin owns
    no tables.
    """


# ---------------------------------------------------------------- events (notify)


@hookspec
def member_signup(ctx: Context, member: MemberInfo, signup: SignUp) -> list[Effect] | None:
    """A member signed up (``signUpMember``); ``member`` is already stored.

    Runs inside the event's transaction, once per new member (never for a duplicate). Return the effects
    of what the plugin did (coupons issued, referral credited, why no reward was given). Must not refuse:
    a sign-up is never lost to a plugin.
    """


@hookspec
def member_updated(ctx: Context, member: MemberInfo, changes: MemberChanges) -> list[Effect] | None:
    """A member's data is changing (``updateMember``); ``changes`` holds only what differs.

    Runs inside the event's transaction, before core writes the change, so the stored values (e.g. when
    the birthday was last changed) are still the old ones. May raise ``Refused`` to veto the change (a
    birthday changed twice in a year); otherwise returns its effects.
    """


@hookspec
def order_paid(ctx: Context, order: PaidOrder) -> list[Effect] | None:
    """An order was paid (``recordOrderPaid``); the money has moved.

    Runs inside the event's transaction after core stored the order, used its coupons and performed its
    points redemption. Return effects (points earned, tier changed). Must not refuse: a benefit the
    plugin can no longer honour is returned as an effect of kind ``CONFLICT`` with a code. A plugin that
    holds things for ``order.checkout_id`` turns its hold into use here.
    """


@hookspec
def order_refunded(ctx: Context, refund: Refund) -> list[Effect] | None:
    """Part or all of a paid order was refunded (``recordOrderRefunded``).

    Runs inside the event's transaction. Reverse, in proportion to ``refund.amount / order.total``, what
    the plugin granted for the order (its own stored entries, not a recomputation). Must not refuse.
    """


# ---------------------------------------------------------------- perform


@hookspec(firstresult=True)
def redemption(ctx: Context, member_id: str, redemption: Redemption) -> RedemptionResult | None:
    """Spend ``redemption.amount`` of ``redemption.currency`` held by the member.

    Called by core (points as cash in ``recordOrderPaid``) or by a plugin (a reward, a paid tier upgrade)
    inside the current transaction. Only the plugin that owns the currency answers; others return
    ``None``. Raise ``RedemptionRefused`` (e.g. code ``INSUFFICIENT_POINTS``) to refuse; the caller turns
    it into a ``UserError`` or a ``CONFLICT`` effect. ``None`` from every plugin means no enabled plugin
    owns that currency.
    """


@hookspec(firstresult=True)
def member_tier(ctx: Context, member_id: str) -> TierInfo | None:
    """Return the member's current tier, or ``None`` when the shop has no tiering.

    Answered by the tiering plugin; read by others (points multiplier, discounts, eligibility) so that no
    plugin imports another. A caller treats ``None`` as neutral (1x, no discount, lowest rank).
    """


@hookspec(firstresult=True)
def member_tiers(ctx: Context, member_ids: list[str]) -> dict[str, TierInfo] | None:
    """Return the current tier of each of ``member_ids`` (in a few reads, not one per member), or ``None``
    when the shop has no tiering: for jobs that go over every member of a shop."""


@hookspec(firstresult=True)
def tier_catalog(ctx: Context) -> list[TierInfo] | None:
    """Return the shop's tiers in rank order, or ``None`` when the shop has no tiering."""


@hookspec
def checkout_hold(ctx: Context, checkout_id: str, cart: Cart) -> list[Effect] | None:
    """Hold what this plugin owns in ``cart`` (coupons, points, reservations) for ``checkout_id``.

    Runs inside ``startCheckout``'s transaction; a conditional UPDATE makes the hold exclusive. Raise
    ``Refused`` when the thing cannot be held, which releases every other plugin's hold too.
    """


@hookspec
def checkout_release(ctx: Context, checkout_id: str, reason: str) -> None:
    """Give back everything held for ``checkout_id`` (``reason``: "released" or "expired")."""


# ---------------------------------------------------------------- compute and veto


@hookspec
def price_adjustments(ctx: Context, cart: Cart, stage: PriceStage, subtotal: int) -> list[Adjustment] | None:
    """Propose this plugin's price changes for ``cart`` at ``stage``; reads only, never writes.

    Core calls each stage in the order RULES.md gives and passes ``subtotal``, the price so far. Return
    adjustments with negative amounts for discounts; core folds them (exclusive groups keep the largest)
    and never lets a total go below zero.
    """


@hookspec
def points_to_earn(ctx: Context, cart: Cart, total: int) -> int | None:
    """Return how many points an order of ``cart`` charged ``total`` would earn; core sums the answers."""


@hookspec
def purchase_denials(ctx: Context, cart: Cart) -> list[PurchaseDenial] | None:
    """Return the reasons ``cart.member_id`` (``None``: anonymous) may not buy lines of ``cart``."""
