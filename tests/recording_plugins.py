"""Plugins that record what they receive, for tests of how core calls hooks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from memberkit.plugin import Effect, Plugin, RedemptionRefused, RedemptionResult, Refused, TierInfo, hookimpl


class RecorderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fail_on_order: str | None = None  # an order id whose order_paid raises, to test roll-back
    veto_tag: str | None = None  # a tag updateMember may not set


class Recorder:
    """Records each event hook call in `calls` and answers with one effect naming itself."""

    def __init__(self, name: str):
        self.name = name
        self.plugin = Plugin(name, settings=RecorderSettings)
        self.calls: list[tuple[str, str, object]] = []

    def _record(self, ctx, hook: str, subject: object) -> list[Effect]:
        self.calls.append((ctx.shop.slug, hook, subject))
        return [Effect(self.name, hook.upper(), f"{self.name} saw {hook}", rule="record")]

    @hookimpl
    def member_signup(self, ctx, member, signup):
        return self._record(ctx, "member_signup", signup)

    @hookimpl
    def member_updated(self, ctx, member, changes):
        settings = ctx.shop.settings_for(self.name)
        if settings.veto_tag and changes.tags and settings.veto_tag in changes.tags:
            raise Refused("TAG_NOT_ALLOWED", f"tag {settings.veto_tag!r} is not allowed", "tags")
        return self._record(ctx, "member_updated", changes)

    @hookimpl
    def order_paid(self, ctx, order):
        if ctx.shop.settings_for(self.name).fail_on_order == order.order_id:
            raise RuntimeError("plugin bug")
        return self._record(ctx, "order_paid", order)

    @hookimpl
    def order_refunded(self, ctx, refund):
        return self._record(ctx, "order_refunded", refund)


class Wallet:
    """Owns a currency called "points" with a fixed balance of 100, and answers the tier hooks."""

    plugin = Plugin("wallet")

    @hookimpl
    def redemption(self, ctx, member_id, redemption):
        if redemption.currency != "points":
            return None
        if redemption.amount > 100:
            raise RedemptionRefused("INSUFFICIENT_POINTS", f"only 100 points, {redemption.amount} asked")
        return RedemptionResult(redemption.amount, (Effect("wallet", "POINTS_SPENT", f"-{redemption.amount}"),))

    @hookimpl
    def member_tier(self, ctx, member_id):
        return TierInfo("GOLD", "Gold", 3, points_multiplier_permille=1200)


first = Recorder("first")
second = Recorder("second")
wallet = Wallet()


class GoldTier:
    """Says every member is gold, earning 1.5x: a stand-in for the tiering plugin's `member_tier`."""

    plugin = Plugin("gold")

    @hookimpl
    def member_tier(self, ctx, member_id):
        return TierInfo("GOLD", "Gold", 3, points_multiplier_permille=1500)


gold_tier = GoldTier()


class HalfHearted:
    """Owns "points", writes a coupon, then refuses: the refusal must undo the coupon."""

    plugin = Plugin("halfhearted")

    @hookimpl
    def redemption(self, ctx, member_id, redemption):
        ctx.wallet.issue(member_id, "TEN_OFF", source="halfhearted:partial")
        raise RedemptionRefused("INSUFFICIENT_POINTS", "changed my mind")


halfhearted = HalfHearted()
