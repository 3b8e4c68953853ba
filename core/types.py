"""Plain data that core hands to plugins and plugins hand back: no ORM objects cross the hook boundary."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

# GraphQL's Int: the largest figure memberkit serves as Int, so the largest a line, an order, a member's points
# or a setting may reach (sums over a member's history are stored in 64 bits and served as BigInt).
MAX_INT = 2**31 - 1


class EffectKind(str, enum.Enum):
    """Common effect kinds; plugins may use any other SCREAMING_SNAKE_CASE string."""

    CONFLICT = "CONFLICT"  # a benefit that could not be honoured; `code` says which
    COUPON_ISSUED = "COUPON_ISSUED"
    COUPON_USED = "COUPON_USED"
    NO_REWARD = "NO_REWARD"


@dataclass(frozen=True)
class Effect:
    """What one plugin did during an event, shown to integrators and members."""

    plugin: str
    kind: str
    description: str
    code: str | None = None
    rule: str | None = None


class Refused(Exception):
    """A business refusal: the event is rolled back and the payload carries a UserError with `code`."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


class RedemptionRefused(Refused):
    """Raised by the plugin that owns a currency when a redemption cannot be performed."""


@dataclass(frozen=True)
class MemberInfo:
    id: str
    shop: str
    external_id: str
    joined_at: datetime
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportedMember(MemberInfo):
    """A member imported from an offline CRM with the history the CRM gives (tier code or None; money in
    minor units; ``points`` the opening balance, earned and expiring then; None: not given)."""

    tier: str | None = None
    lifetime_spend: int = 0
    order_count: int = 0
    last_order_at: datetime | None = None
    points: int = 0
    points_earned_at: datetime | None = None
    points_expire_at: datetime | None = None


@dataclass(frozen=True)
class SignUp:
    """A sign-up as plugins see it: personal data only as keyed hashes (HMAC), never in plain text."""

    referral_code: str | None
    phone_hash: str | None
    email_hash: str | None
    birthday: date | None
    # every stored hash that means the same phone or email (made before a key rotation too): for lookups
    phone_hashes: tuple[str, ...] = ()
    email_hashes: tuple[str, ...] = ()
    seen_before: bool = False  # the phone or email is an erased member's (core_fraud_hash): no sign-up rewards


@dataclass(frozen=True)
class MemberChanges:
    """What `updateMember` changes; a field left as None is unchanged."""

    phone_hash: str | None = None
    email_hash: str | None = None
    birthday: date | None = None
    previous_birthday: date | None = None
    tags: tuple[str, ...] | None = None


@dataclass(frozen=True)
class OrderLine:
    sku: str
    quantity: int
    unit_price: int  # list price in minor units, before discounts
    category: str | None = None

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price


@dataclass(frozen=True)
class PaidOrder:
    """A paid order: `total` is the cash actually charged, after every discount, coupon and point."""

    order_id: str
    member_id: str
    total: int
    currency: str
    paid_at: datetime
    lines: tuple[OrderLine, ...] = ()
    coupon_codes: tuple[str, ...] = ()
    points_redeemed: int = 0
    reservation_ids: tuple[str, ...] = ()
    checkout_id: str | None = None
    number: int = 0  # the member's how-manieth paid order in this shop (1: the first); 0 where not known
    stored_value: int = 0  # of `total`, what the checkout took from the prepaid balance (set at payment)
    stored_value_bonus: int = 0  # of that, the shop's bonus: it earns no points nor tier spend (RULES.md 10)


@dataclass(frozen=True)
class Refund:
    """A refund of part or all of a paid order; `refunded_total` includes this refund."""

    refund_id: str
    order: PaidOrder
    amount: int
    refunded_total: int
    refunded_at: datetime

    @property
    def is_full(self) -> bool:
        return self.refunded_total >= self.order.total


@dataclass(frozen=True)
class Redemption:
    """A member exchanging what they hold for value, e.g. currency="points", amount=500."""

    currency: str
    amount: int
    reason: str  # "order", "reward", "tier_upgrade", ...
    reference: str  # the order id, reward id or event key this redemption belongs to


@dataclass(frozen=True)
class RedemptionResult:
    spent: int
    effects: tuple[Effect, ...] = ()


@dataclass(frozen=True)
class TierInfo:
    """A tier as other plugins see it. Multiplier in per-mille (1000 = 1x), discount in percent."""

    code: str
    name: str
    rank: int
    points_multiplier_permille: int = 1000
    discount_percent: int = 0
    benefits: tuple[str, ...] = ()


@dataclass(frozen=True)
class CalendarEntry:
    """Something on one shop-local day (``calendar_entries``): `kind` MEMBER_DAY, FLASH_SALE, BIRTHDAY_MONTH,
    PRODUCT_LAUNCH or a plugin's own; `title` in the shop's locale; `reference` what it points at (a sale id)."""

    day: date
    kind: str
    title: str
    reference: str | None = None


class PriceStage(str, enum.Enum):
    """The order in which a cart's price is built (RULES.md section 6)."""

    UNIT_PRICE = "UNIT_PRICE"  # member price, flash-sale price
    COUPON = "COUPON"  # fixed and threshold coupons
    PERCENT = "PERCENT"  # tier, first order, birthday, member day
    POINTS = "POINTS"  # points as cash


@dataclass(frozen=True)
class Cart:
    lines: tuple[OrderLine, ...]
    member_id: str | None = None
    coupon_codes: tuple[str, ...] = ()
    points_to_redeem: int = 0
    reservation_ids: tuple[str, ...] = ()
    checkout_id: str | None = None
    stored_value_to_use: int = 0  # prepaid balance to spend (at most the total), held by its plugin


@dataclass(frozen=True)
class Adjustment:
    """A price change proposed by a plugin: `amount` is negative for a discount, in minor units."""

    plugin: str
    code: str
    label: str
    amount: int
    sku: str | None = None
    exclusive_group: str | None = None  # within a stage, only the largest of a group applies
    uses: int = 0  # how much of the plugin's own currency it takes: the points of points as cash


@dataclass(frozen=True)
class PurchaseDenial:
    sku: str
    code: str
    message: str


@dataclass(frozen=True)
class CheckoutPayment:
    """What an order paid with a checkout uses: the order as recorded (the checkout's coupons, reservations
    and points; ``checkout_id`` cleared where the checkout no longer holds them), effects to report, and the
    points the checkout held, which their plugin captures in ``order_paid`` instead of redeeming them again."""

    order: PaidOrder
    effects: tuple[Effect, ...] = ()
    held_points: int = 0


@dataclass(frozen=True)
class Job:
    """A plugin's task: every `every`, run(ctx) -> what it did (safe to repeat, or to run late); or one-off
    (`every` None, ``queue_job``), run(ctx, params, cursor) -> (done, next cursor; None: finished) per batch."""

    name: str
    every: timedelta | None
    run: Callable[..., Any]
    plugin: str = field(default="")


@dataclass(frozen=True)
class Service:
    """A long-running task a plugin owns: ``memberkit serve`` runs it in every worker process, and
    ``memberkit PLUGIN NAME`` runs it alone. ``run(runtime, stopping)`` returns soon after ``stopping``
    (an asyncio.Event) is set, having finished or given back what it claimed."""

    name: str
    run: Callable[[Any, Any], Awaitable[None]]
    help: str = ""


@dataclass(frozen=True)
class OutboundEvent:
    """A committed change worth telling the platform (``ctx.emit``): ``type`` such as "points.earned", the
    member it concerns, and what a receiver needs to act on it, never personal data."""

    type: str
    member_id: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class Figure:
    """A change to a programme figure (``ctx.count``): `metric` by `value` at `at`; `member_id` where the
    figure counts distinct members (an activity mark)."""

    metric: str
    value: int
    at: datetime
    member_id: str | None = None


CORE_FIGURES = ("couponsIssued", "couponsUsed")  # what core counts; plugins declare theirs in Plugin.figures

# What core itself emits; plugins declare theirs in Plugin.event_types (docs/events.md describes each).
CORE_EVENT_TYPES = ("member.signed_up", "member.updated", "order.paid", "order.refunded", "coupon.issued",
                    "coupon.used", "coupon.withdrawn", "member.erased", "members.imported")
