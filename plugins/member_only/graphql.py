"""member_only's part of the schema: the storefront's ``productAccess`` and the integrator's
``upsertProductRule``."""

from datetime import datetime
from typing import Optional

import strawberry

from memberkit.plugin import Money, RequestContext, UserError, check_list_length
from memberkit.plugins.member_only import rules

MAX_SKUS = 100


@strawberry.type(description="Whether the caller may buy a product now and, if not, why: reasonCode is "
                             "MEMBERS_ONLY, TIER_TOO_LOW, NOT_IN_SEGMENT or NOT_LAUNCHED, reason a sentence to "
                             "show. A sku without a rule is open to everyone (canPurchase true, the rest null).")
class ProductAccess:
    sku: str
    member_only: bool
    min_tier: Optional[str] = strawberry.field(description="the lowest tier code that may buy it")
    segment: Optional[str] = strawberry.field(description="the segment whose members alone may buy it")
    launch_at: Optional[datetime]
    early_access_from: Optional[datetime] = strawberry.field(
        description="when members of the shop's early-access tier and above may buy it (launchAt minus the "
                    "shop's early-access days); null without a launch or without that tier")
    member_price: Optional[Money] = strawberry.field(description="what members pay for one unit")
    can_purchase: bool
    reason_code: Optional[str]
    reason: Optional[str]

    @classmethod
    def of(cls, access: rules.Access, currency: str) -> "ProductAccess":
        rule = access.rule
        price = rule.member_price if rule else None
        return cls(sku=access.sku, member_only=bool(rule and rule.member_only),
                   min_tier=rule.min_tier if rule else None, segment=rule.segment if rule else None,
                   launch_at=rule.launch_at if rule else None,
                   early_access_from=access.early_access_from,
                   member_price=Money(amount=price, currency=currency) if price is not None else None,
                   can_purchase=access.can_purchase, reason_code=access.reason_code, reason=access.reason)


@strawberry.input(description="A product's rule; upsertProductRule replaces the whole rule of the sku, so a "
                              "field left out is cleared.")
class ProductRuleInput:
    sku: str
    member_only: bool
    min_tier: Optional[str] = strawberry.field(default=None, description="a tier code of the shop, e.g. GOLD; "
                                                                          "needs tiering and memberOnly true")
    launch_at: Optional[datetime] = strawberry.field(default=None, description="with a UTC offset")
    member_price: Optional[int] = strawberry.field(default=None, description="minor units, at least 0")
    segment: Optional[str] = strawberry.field(default=None, description="a segment code of the shop: only its "
                                                                        "members may buy; needs memberOnly true")


@strawberry.type(description="access: the product as an anonymous shopper sees it now (what productAccess "
                             "answers for a key), with the rule as it stands; null when refused.")
class ProductRulePayload:
    access: Optional[ProductAccess]
    errors: list[UserError]


def product_access(Member):
    async def resolve(info: strawberry.Info, skus: list[str]) -> list[ProductAccess]:
        """For each sku (at most 100), whether the caller may buy it now: a member token answers for its
        member; a publishable or secret key for an anonymous shopper."""
        context: RequestContext = info.context
        check_list_length(skus, "skus", MAX_SKUS)
        member_id, currency = context.member_id, context.shop.currency
        found = await context.read(lambda ctx: rules.evaluate(ctx, skus, member_id))
        return [ProductAccess.of(access, currency) for access in found]
    return resolve


def upsert_product_rule(Member):
    async def resolve(info: strawberry.Info, input: ProductRuleInput) -> ProductRulePayload:
        """Create or replace a product's rule: members-only, a minimum tier, a launch, a member price
        (integrator)."""
        context: RequestContext = info.context
        result, access = await context.integrator_write(
            rules.upsert_rule, sku=input.sku, member_only=input.member_only, min_tier=input.min_tier,
            launch_at=input.launch_at, member_price=input.member_price, segment=input.segment)
        return ProductRulePayload(
            access=ProductAccess.of(access, context.shop.currency) if access and not result.errors else None,
            errors=[UserError.of(e) for e in result.errors])
    return resolve


def contribute(builder) -> None:
    builder.query_field("productAccess", product_access)
    builder.mutation_field("upsertProductRule", upsert_product_rule)
