"""Core's GraphQL types that do not refer to Member, shared by every composed schema."""

from __future__ import annotations

import base64
import enum
from datetime import date, datetime
from typing import Any, NewType, Optional

import strawberry

from memberkit.core.checks import MAX_TAGS
from memberkit.core.intake import UserErrorData
from memberkit.core.types import Effect as EffectData
from memberkit.schema.context import VisibleError
from memberkit.schema.inputs import limited_list

# How long each list input may be (said in the schema; a longer list is refused as TOO_MANY_ITEMS).
MAX_LINES, MAX_COUPON_CODES, MAX_RESERVATIONS = 500, 20, 50


MAX_SAFE_INTEGER = 2**53 - 1  # the largest integer every JSON reader keeps exact


def _parse_big_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_SAFE_INTEGER:
        raise ValueError(f"BigInt must be a whole number from -{MAX_SAFE_INTEGER} to {MAX_SAFE_INTEGER}")
    return value


BigInt = NewType("BigInt", int)
SCALARS = {BigInt: strawberry.scalar(
    name="BigInt", serialize=int, parse_value=_parse_big_int,
    description="A whole number beyond GraphQL's 32-bit Int, as a JSON number up to 2^53 - 1: sums over a "
                "member's history or a shop.")}  # the schema's config.scalar_map


@strawberry.type
class Money:
    amount: int
    currency: str


@strawberry.type
class UserError:
    code: str
    field: Optional[str]
    message: str

    @classmethod
    def of(cls, error: UserErrorData) -> UserError:
        return cls(code=error.code, field=error.field, message=error.message)


@strawberry.type(description="What one plugin did during a write, and by which rule.")
class Effect:
    plugin: str
    kind: str
    description: str
    code: Optional[str] = None
    rule: Optional[str] = None

    @classmethod
    def of(cls, effect: EffectData) -> Effect:
        return cls(plugin=effect.plugin, kind=str(getattr(effect.kind, "value", effect.kind)),
                   description=effect.description, code=effect.code, rule=effect.rule)


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: Optional[str]


def id_cursor(kind: str, row_id: int | str) -> str:
    """An opaque keyset cursor for a connection ordered by row id (`kind` tells connections' cursors apart)."""
    return base64.urlsafe_b64encode(f"{kind}:{row_id}".encode()).decode()


def id_after(kind: str, cursor: str | None, field: str, id_type: type = int) -> Any:
    """The row id (an `id_type`) an `id_cursor(kind, ...)` cursor names; a VisibleError naming `field` for
    anything else."""
    if cursor is None:
        return None
    try:
        found, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if found == kind and value:
            return id_type(value)
    except (ValueError, UnicodeDecodeError):
        pass
    raise VisibleError(f"{field}: `after` is not a cursor this connection gave")


@strawberry.type
class Shop:
    slug: str
    name: str
    currency: str
    timezone: str
    plugins: list[str]
    locale: str = strawberry.field(description="The language pages and messages follow, e.g. zh-CN or en.")


@strawberry.enum
class CouponStatus(enum.Enum):
    AVAILABLE = "AVAILABLE"
    USED = "USED"
    EXPIRED = "EXPIRED"
    WITHDRAWN = strawberry.enum_value("WITHDRAWN", description="taken back unused, e.g. after a refund")


@strawberry.enum
class CouponKind(enum.Enum):
    FIXED = "FIXED"
    PERCENT = "PERCENT"


@strawberry.type(description="code is unique per issued coupon; title names its template; source the plugin and rule.")
class Coupon:
    id: strawberry.ID
    code: str
    title: str
    kind: CouponKind
    value: int
    min_spend: Optional[Money]
    valid_until: Optional[datetime]
    status: CouponStatus
    source: str


@strawberry.input
class OrderLineInput:
    sku: str
    quantity: int
    unit_price: int
    category: Optional[str] = None


@strawberry.input
class SignUpMemberInput:
    external_id: str
    phone: Optional[str] = None
    email: Optional[str] = None
    birthday: Optional[date] = None
    referral_code: Optional[str] = None
    tags: Optional[list[str]] = limited_list(MAX_TAGS)
    joined_at: Optional[datetime] = None


@strawberry.input
class UpdateMemberInput:
    member_id: strawberry.ID
    phone: Optional[str] = None
    email: Optional[str] = None
    birthday: Optional[date] = None
    tags: Optional[list[str]] = limited_list(MAX_TAGS)


@strawberry.input
class OrderPaidInput:
    order_id: str
    member_id: strawberry.ID
    total: int
    lines: Optional[list[OrderLineInput]] = limited_list(MAX_LINES)
    coupon_codes: Optional[list[str]] = limited_list(MAX_COUPON_CODES)
    points_redeemed: Optional[int] = None
    reservation_ids: Optional[list[strawberry.ID]] = limited_list(MAX_RESERVATIONS)
    checkout_id: Optional[strawberry.ID] = None
    paid_at: Optional[datetime] = None


@strawberry.input
class OrderRefundedInput:
    order_id: str
    refund_id: str
    amount: int
    refunded_at: Optional[datetime] = None
