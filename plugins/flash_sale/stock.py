"""Stock and per-member counters, changed only by conditional UPDATEs (never read-modify-write in Python).

Lock order, the same in every write so that concurrent transactions on PostgreSQL never deadlock:
reservation rows, then ``flash_sale_member`` rows (sorted by sale and member), then ``flash_sale_sale`` rows
(sorted by id). A reserve takes its member row, writes its new reservation, and takes the sale's stock
last of all (``Context.last``), so the row every buyer contends for is locked for one statement.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import and_, bindparam, func, or_, select, update

from memberkit.plugin import (
    Adjustment,
    Context,
    Effect,
    EffectKind,
    PaidOrder,
    Prepared,
    Refused,
    require_moment,
    require_segment,
    upsert,
)
from memberkit.plugins.flash_sale.models import FlashSaleMember, FlashSaleReservation, FlashSaleSale
from memberkit.plugins.flash_sale.settings import NAME, settings_of

SALES, RESERVATIONS, MEMBERS = FlashSaleSale.__table__, FlashSaleReservation.__table__, FlashSaleMember.__table__
HELD, CONFIRMED, RELEASED, EXPIRED = "HELD", "CONFIRMED", "RELEASED", "EXPIRED"
EXPIRY_BATCH = 500

# The statements of a reservation, compiled once per dialect and run at driver level.
_SALE = Prepared(select(SALES).where(SALES.c.id == bindparam("s"), SALES.c.shop == bindparam("shop")))
# The per-member limit: one upsert of the member's counter row, whose UPDATE only happens within the limit
# (and takes that row's lock); no row back means the limit would be passed.
_MEMBER_HOLD = Prepared(upsert(
    MEMBERS, values={"sale_id": bindparam("s"), "member_id": bindparam("m"), "shop": bindparam("shop"),
                     "held": bindparam("q"), "bought": 0},
    update={"held": MEMBERS.c.held + bindparam("q")},
    where=MEMBERS.c.held + MEMBERS.c.bought + bindparam("q") <= bindparam("limit"), returning=(MEMBERS.c.held,)))
# The stock: one conditional UPDATE on the sale row, inside the window and not cancelled.
_SALE_HOLD = Prepared(SALES.update()
                      .where(SALES.c.id == bindparam("s"),
                             SALES.c.held + SALES.c.sold + bindparam("q") <= SALES.c.stock,
                             SALES.c.cancelled_at.is_(None), SALES.c.starts_at <= bindparam("now"),
                             SALES.c.ends_at > bindparam("now"))
                      .values(held=SALES.c.held + bindparam("q")).returning(SALES.c.held))
_ADD_RESERVATION = Prepared(RESERVATIONS.insert())
# Held -> sold, and held -> given back: the counters move by what the reservation rows say.
# Paying a reservation that lapsed: bought again only within the per-member limit.
_MEMBER_BUY = (MEMBERS.update()
               .where(MEMBERS.c.sale_id == bindparam("s"), MEMBERS.c.member_id == bindparam("m"),
                      MEMBERS.c.held + MEMBERS.c.bought + bindparam("q") <= bindparam("limit"))
               .values(bought=MEMBERS.c.bought + bindparam("q")).returning(MEMBERS.c.bought))
_MEMBER_MOVE = (MEMBERS.update()
                .where(MEMBERS.c.sale_id == bindparam("s"), MEMBERS.c.member_id == bindparam("m"))
                .values(held=MEMBERS.c.held - bindparam("unheld"), bought=MEMBERS.c.bought + bindparam("bought")))
_SALE_MOVE = (SALES.update().where(SALES.c.id == bindparam("s"))
              .values(held=SALES.c.held - bindparam("unheld"), sold=SALES.c.sold + bindparam("bought")))
# Stock for a reservation that lapsed before payment: taken only if still there.
_SALE_TAKE = (SALES.update()
              .where(SALES.c.id == bindparam("s"), SALES.c.held + SALES.c.sold + bindparam("q") <= SALES.c.stock,
                     SALES.c.cancelled_at.is_(None))
              .values(sold=SALES.c.sold + bindparam("q")).returning(SALES.c.sold))


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def load_sale(ctx: Context, sale_id: str, field: str = "saleId"):
    """The sale, or SALE_NOT_FOUND naming `field`, the input that named it."""
    row = _SALE.first(ctx.conn, {"s": sale_id, "shop": ctx.shop.slug})
    if row is None:
        raise Refused("SALE_NOT_FOUND", f"no flash sale {sale_id!r} in this shop", field)
    return row


def tier_rank(ctx: Context, code: str) -> int | None:
    """The rank of tier `code` through core's hooks (no import of tiering); None without tiering or unknown."""
    catalog = ctx.hook.tier_catalog(ctx=ctx)
    return next((t.rank for t in catalog or () if t.code == code), None)


# ---------------------------------------------------------------- sales (integrator)


@dataclass(frozen=True)
class SaleFields:
    sku: str
    title: str
    price: int
    starts_at: datetime
    ends_at: datetime
    stock: int
    per_member_limit: int
    members_only: bool
    min_tier: str | None
    segment: str | None = None


def check_fields(ctx: Context, f: SaleFields) -> None:
    require_moment(f.starts_at, "startsAt", ctx.now, fact=False)
    require_moment(f.ends_at, "endsAt", ctx.now, fact=False)
    if not f.sku.strip() or len(f.sku) > 200:
        raise Refused("INVALID_SKU", f"sku is {len(f.sku.strip())} characters: expected 1 to 200", "sku")
    if not f.title.strip() or len(f.title) > 200:
        raise Refused("INVALID_TITLE", f"title is {len(f.title.strip())} characters: expected 1 to 200", "title")
    if f.price < 0:
        raise Refused("NEGATIVE_AMOUNT", f"price is {f.price}: expected 0 or more", "price")
    if f.ends_at <= f.starts_at:
        raise Refused("INVALID_WINDOW", f"endsAt is {f.ends_at.isoformat()}, not after startsAt "
                      f"{f.starts_at.isoformat()}: expected a later end", "endsAt")
    if f.stock < 0:
        raise Refused("INVALID_STOCK", f"stock is {f.stock}: expected 0 or more", "stock")
    if f.per_member_limit < 1:
        raise Refused("INVALID_LIMIT", f"perMemberLimit is {f.per_member_limit}: expected at least 1", "perMemberLimit")
    if f.min_tier is not None and tier_rank(ctx, f.min_tier) is None:
        raise Refused("UNKNOWN_TIER", f"{f.min_tier!r} is not a tier of this shop", "minTier")
    if f.segment is not None:
        require_segment(ctx, f.segment)


def create_sale(ctx: Context, f: SaleFields) -> str:
    check_fields(ctx, f)
    sale_id = new_id("fs_")
    ctx.conn.execute(SALES.insert(), dict(
        id=sale_id, shop=ctx.shop.slug, sku=f.sku.strip(), title=f.title.strip(), price=f.price,
        starts_at=f.starts_at, ends_at=f.ends_at, stock=f.stock, held=0, sold=0,
        per_member_limit=f.per_member_limit, members_only=f.members_only, min_tier=f.min_tier, segment=f.segment,
        cancelled_at=None, created_at=ctx.now, updated_at=ctx.now))
    return sale_id


def update_sale(ctx: Context, sale_id: str, changes: dict) -> None:
    """Change a sale's fields; stock in one conditional UPDATE that never goes below held + sold."""
    sale = load_sale(ctx, sale_id)
    if sale.cancelled_at is not None:
        raise Refused("SALE_CANCELLED", "a cancelled sale cannot change", "saleId")
    merged = SaleFields(**{k: changes.get(k, getattr(sale, k)) for k in SaleFields.__dataclass_fields__})
    check_fields(ctx, merged)
    values = {k: v for k, v in changes.items() if k != "stock"}
    if "stock" in changes:
        done = ctx.conn.execute(update(SALES).where(
            SALES.c.id == sale_id, SALES.c.held + SALES.c.sold <= changes["stock"])
            .values(stock=changes["stock"], updated_at=ctx.now).returning(SALES.c.id)).first()
        if done is None:
            raise Refused("STOCK_BELOW_COMMITTED",
                          "stock cannot go below what is held and sold", "stock")
    if values:
        ctx.conn.execute(update(SALES).where(SALES.c.id == sale_id).values(**values, updated_at=ctx.now))


def cancel_sale(ctx: Context, sale_id: str) -> int:
    """Cancel a sale (cancelFlashSale(id)) and release every HELD reservation; returns the units given back."""
    sale = load_sale(ctx, sale_id, "id")
    if sale.cancelled_at is not None:
        return 0
    given_back = _give_back(ctx, and_(RESERVATIONS.c.sale_id == sale_id, RESERVATIONS.c.status == HELD), RELEASED)
    ctx.conn.execute(update(SALES).where(SALES.c.id == sale_id, SALES.c.cancelled_at.is_(None))
                     .values(cancelled_at=ctx.now, updated_at=ctx.now))
    # A reserve that committed while this ran (it saw the sale not yet cancelled) is released too: the
    # UPDATE above waited for it, and this statement sees it.
    given_back += _give_back(ctx, and_(RESERVATIONS.c.sale_id == sale_id, RESERVATIONS.c.status == HELD), RELEASED)
    return given_back


# ---------------------------------------------------------------- reservations (member)


def reserve(ctx: Context, member_id: str, sale_id: str, quantity: int) -> dict:
    """Hold `quantity` units for the member; refuses with a code, never oversells or passes the limit."""
    s = settings_of(ctx)
    if not 1 <= quantity <= s.max_quantity:
        raise Refused("INVALID_QUANTITY", f"quantity is {quantity}: expected 1 to {s.max_quantity}", "quantity")
    sale = load_sale(ctx, sale_id)
    if sale.cancelled_at is not None or not sale.starts_at <= ctx.now < sale.ends_at:
        raise Refused("SALE_NOT_ACTIVE", "the sale is not open now", "saleId")
    if sale.min_tier is not None:
        needed = tier_rank(ctx, sale.min_tier)
        tier = ctx.member_tier(member_id)
        if needed is None or tier is None or tier.rank < needed:
            raise Refused("NOT_ELIGIBLE", f"this sale is for {sale.min_tier} members and above", "saleId")
    if sale.segment is not None and sale.segment not in (ctx.hook.member_segments(ctx=ctx, member_id=member_id) or ()):
        raise Refused("NOT_IN_SEGMENT", f"this sale is for the segment {sale.segment!r} only", "saleId")
    conn, args = ctx.conn, {"s": sale_id, "m": member_id, "shop": ctx.shop.slug, "q": quantity,
                            "limit": sale.per_member_limit, "now": ctx.now}
    if quantity > sale.per_member_limit:
        raise Refused("LIMIT_EXCEEDED", f"at most {sale.per_member_limit} units a member", "quantity")
    if _MEMBER_HOLD.first(conn, args) is None:
        raise Refused("LIMIT_EXCEEDED", f"at most {sale.per_member_limit} units a member, counting what "
                                        "you hold and bought", "quantity")
    reservation = {"id": new_id("fr_"), "shop": ctx.shop.slug, "sale_id": sale_id, "member_id": member_id,
                   "quantity": quantity, "status": HELD, "expires_at": ctx.now + timedelta(minutes=s.hold_minutes),
                   "checkout_id": None, "order_id": None, "created_at": ctx.now, "updated_at": ctx.now}
    _ADD_RESERVATION.cursor(conn, reservation)

    def take_stock() -> None:
        if _SALE_HOLD.first(conn, args) is None:
            again = _SALE.first(conn, args)
            if again.cancelled_at is not None or not again.starts_at <= ctx.now < again.ends_at:
                raise Refused("SALE_NOT_ACTIVE", "the sale is not open now", "saleId")
            raise Refused("SOLD_OUT", "not enough stock left", "quantity")

    # Every buyer of the sale contends for its row: take the stock last, so its lock is held the shortest.
    ctx.last.append(take_stock)
    return reservation


def release(ctx: Context, member_id: str, reservation_id: str) -> None:
    """The member gives back their own HELD reservation."""
    own = and_(RESERVATIONS.c.id == reservation_id, RESERVATIONS.c.shop == ctx.shop.slug,
               RESERVATIONS.c.member_id == member_id)
    if _give_back(ctx, and_(own, RESERVATIONS.c.status == HELD), RELEASED):
        return
    status = ctx.conn.execute(select(RESERVATIONS.c.status).where(own)).scalar()
    if status is None:
        raise Refused("RESERVATION_NOT_FOUND", f"no reservation {reservation_id!r} of yours", "id")
    raise Refused("RESERVATION_NOT_HELD", f"the reservation is {status}, not HELD", "id")


def expire_due(ctx: Context) -> str:
    """The job: every HELD reservation past its time becomes EXPIRED and its stock returns. Idempotent."""
    total = count = 0
    while True:
        # A reservation an open checkout holds stays with it: the checkout's release or expiry frees it first.
        due = select(RESERVATIONS.c.id).where(
            RESERVATIONS.c.shop == ctx.shop.slug, RESERVATIONS.c.status == HELD,
            RESERVATIONS.c.expires_at <= ctx.now, RESERVATIONS.c.checkout_id.is_(None),
        ).order_by(RESERVATIONS.c.id).limit(EXPIRY_BATCH)
        ids = list(ctx.conn.execute(due).scalars())
        if not ids:
            break
        count += len(ids)
        total += _give_back(ctx, and_(RESERVATIONS.c.id.in_(ids), RESERVATIONS.c.status == HELD,
                                      RESERVATIONS.c.expires_at <= ctx.now,
                                      RESERVATIONS.c.checkout_id.is_(None)), EXPIRED)
        if len(ids) < EXPIRY_BATCH:
            break
    return f"{count} reservations expired, {total} units returned" if count else None


def _give_back(ctx: Context, where, status: str) -> int:
    """HELD reservations matching `where` become `status` (one conditional UPDATE), then their units leave
    the member counters and the sales' held, in lock order. Returns the units given back."""
    rows = ctx.conn.execute(update(RESERVATIONS).where(where, RESERVATIONS.c.status == HELD)
                            .values(status=status, checkout_id=None, updated_at=ctx.now)
                            .returning(RESERVATIONS.c.sale_id, RESERVATIONS.c.member_id,
                                       RESERVATIONS.c.quantity)).all()
    _move(ctx, [(r.sale_id, r.member_id, r.quantity, 0) for r in rows])
    return sum(r.quantity for r in rows)


def _move(ctx: Context, moves: list[tuple[str, str, int, int]]) -> None:
    """Apply (sale, member, unheld, bought) to the counters: members sorted, then sales sorted."""
    by_member: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    by_sale: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for sale_id, member_id, unheld, bought in moves:
        by_member[sale_id, member_id][0] += unheld
        by_member[sale_id, member_id][1] += bought
        by_sale[sale_id][0] += unheld
        by_sale[sale_id][1] += bought
    for (sale_id, member_id), (unheld, bought) in sorted(by_member.items()):
        ctx.conn.execute(_MEMBER_MOVE, {"s": sale_id, "m": member_id, "unheld": unheld, "bought": bought})
    for sale_id, (unheld, bought) in sorted(by_sale.items()):
        ctx.conn.execute(_SALE_MOVE, {"s": sale_id, "unheld": unheld, "bought": bought})


# ---------------------------------------------------------------- checkout and payment


def _held_for(ctx: Context, reservation_id: str, member_id: str | None):
    return and_(RESERVATIONS.c.id == reservation_id, RESERVATIONS.c.shop == ctx.shop.slug,
                RESERVATIONS.c.member_id == member_id, RESERVATIONS.c.status == HELD,
                RESERVATIONS.c.expires_at > ctx.now)


def hold_for_checkout(ctx: Context, checkout_id: str, member_id: str | None, reservation_ids) -> list[Effect]:
    effects = []
    for reservation_id in sorted(set(reservation_ids)):  # id order: the lock order every write here keeps
        done = ctx.conn.execute(update(RESERVATIONS).where(
            _held_for(ctx, reservation_id, member_id),
            or_(RESERVATIONS.c.checkout_id.is_(None), RESERVATIONS.c.checkout_id == checkout_id))
            .values(checkout_id=checkout_id, updated_at=ctx.now).returning(RESERVATIONS.c.quantity)).first()
        if done is None:
            raise Refused("RESERVATION_NOT_HELD", f"reservation {reservation_id!r} is not held for you "
                                                  "(expired, released, used, or in another checkout)",
                          "reservationIds")
        effects.append(Effect(NAME, "RESERVATION_HELD", f"reservation {reservation_id} ({done.quantity} units) "
                                                          f"held for checkout {checkout_id}", rule="checkout"))
    return effects


def release_checkout(ctx: Context, checkout_id: str) -> None:
    ctx.conn.execute(update(RESERVATIONS).where(
        RESERVATIONS.c.shop == ctx.shop.slug, RESERVATIONS.c.checkout_id == checkout_id,
        RESERVATIONS.c.status == HELD).values(checkout_id=None, updated_at=ctx.now))


def confirm_for_order(ctx: Context, order: PaidOrder) -> list[Effect]:
    """Paying turns the order's reservations (and its checkout's) HELD -> CONFIRMED, held -> sold. One that
    lapsed before payment takes its stock if still there, else a CONFLICT: the order stands either way."""
    ids = set(order.reservation_ids)
    if order.checkout_id:
        ids |= set(ctx.conn.execute(select(RESERVATIONS.c.id).where(
            RESERVATIONS.c.shop == ctx.shop.slug, RESERVATIONS.c.checkout_id == order.checkout_id,
            RESERVATIONS.c.member_id == order.member_id)).scalars())
    ids = sorted(ids)  # id order: the lock order every write here keeps
    effects = []
    for reservation_id in ids:
        own = and_(RESERVATIONS.c.id == reservation_id, RESERVATIONS.c.shop == ctx.shop.slug,
                   RESERVATIONS.c.member_id == order.member_id)
        row = ctx.conn.execute(update(RESERVATIONS).where(own, RESERVATIONS.c.status == HELD)
                               .values(status=CONFIRMED, order_id=order.order_id, updated_at=ctx.now)
                               .returning(RESERVATIONS.c.sale_id, RESERVATIONS.c.quantity)).first()
        if row is not None:
            _move(ctx, [(row.sale_id, order.member_id, row.quantity, row.quantity)])
            effects.append(Effect(NAME, "RESERVATION_CONFIRMED",
                                  f"reservation {reservation_id}: {row.quantity} units sold", rule="paid"))
            continue
        effects.append(_confirm_lapsed(ctx, order, reservation_id, own))
    return effects


def _confirm_lapsed(ctx: Context, order: PaidOrder, reservation_id: str, own) -> Effect:
    found = ctx.conn.execute(select(RESERVATIONS.c.status, RESERVATIONS.c.sale_id, RESERVATIONS.c.quantity)
                             .where(own)).first()
    if found is None:
        return Effect(NAME, EffectKind.CONFLICT, f"reservation {reservation_id} is not this member's",
                      code="RESERVATION_NOT_FOUND", rule="paid")
    if found.status == CONFIRMED:
        return Effect(NAME, EffectKind.CONFLICT, f"reservation {reservation_id} was already used by an order",
                      code="RESERVATION_USED", rule="paid")
    # EXPIRED or RELEASED: the stock goes to this order if it is still there (one conditional UPDATE).
    taken = ctx.conn.execute(update(RESERVATIONS).where(own, RESERVATIONS.c.status == found.status)
                             .values(status=CONFIRMED, order_id=order.order_id, updated_at=ctx.now)
                             .returning(RESERVATIONS.c.id)).first()
    if taken is not None:
        limit = ctx.conn.execute(select(SALES.c.per_member_limit).where(SALES.c.id == found.sale_id)).scalar()
        if ctx.conn.execute(_MEMBER_BUY, {"s": found.sale_id, "m": order.member_id, "q": found.quantity,
                                          "limit": limit}).first() is None:
            ctx.conn.execute(update(RESERVATIONS).where(own).values(status=found.status, order_id=None))
            return Effect(NAME, EffectKind.CONFLICT,
                          f"reservation {reservation_id} was {found.status.lower()} before payment, and taking it "
                          f"now would pass the limit of {limit} units a member", code="LIMIT_EXCEEDED",
                          rule="paid_after_expiry")
        if ctx.conn.execute(_SALE_TAKE, {"s": found.sale_id, "q": found.quantity}).first() is not None:
            return Effect(NAME, "RESERVATION_CONFIRMED",
                          f"reservation {reservation_id} was {found.status.lower()} before payment; "
                          f"{found.quantity} units were still in stock and are sold", rule="paid_after_expiry")
        # Not there any more: undo this reservation's changes (the savepoint keeps the rest of the order).
        ctx.conn.execute(update(RESERVATIONS).where(own).values(status=found.status, order_id=None))
        ctx.conn.execute(_MEMBER_MOVE, {"s": found.sale_id, "m": order.member_id, "unheld": 0,
                                        "bought": -found.quantity})
    code = "RESERVATION_EXPIRED" if found.status == EXPIRED else "RESERVATION_RELEASED"
    sold_out = taken is not None
    return Effect(NAME, EffectKind.CONFLICT,
                  f"reservation {reservation_id} was {found.status.lower()} before payment"
                  + (" and the sale has no stock left for it" if sold_out else ""),
                  code="SOLD_OUT" if sold_out else code, rule="paid_after_expiry")


# ---------------------------------------------------------------- reads


def status_of(sale, now: datetime) -> str:
    if sale.cancelled_at is not None:
        return "CANCELLED"
    if now < sale.starts_at:
        return "SCHEDULED"
    if now >= sale.ends_at:
        return "ENDED"
    return "SOLD_OUT" if sale.held + sale.sold >= sale.stock else "ACTIVE"


def reservation_status(row, now: datetime) -> str:
    return EXPIRED if row.status == HELD and row.expires_at <= now else row.status


def list_sales(ctx: Context, status: str | None, limit: int = 200) -> list:
    query = select(SALES).where(SALES.c.shop == ctx.shop.slug)
    now, remaining = ctx.now, SALES.c.stock - SALES.c.held - SALES.c.sold
    live = and_(SALES.c.cancelled_at.is_(None), SALES.c.starts_at <= now, SALES.c.ends_at > now)
    query = query.where({
        None: SALES.c.cancelled_at.is_(None),
        "CANCELLED": SALES.c.cancelled_at.is_not(None),
        "SCHEDULED": and_(SALES.c.cancelled_at.is_(None), SALES.c.starts_at > now),
        "ENDED": and_(SALES.c.cancelled_at.is_(None), SALES.c.ends_at <= now),
        "ACTIVE": and_(live, remaining > 0),
        "SOLD_OUT": and_(live, remaining <= 0),
    }[status])
    return ctx.conn.execute(query.order_by(SALES.c.starts_at, SALES.c.id).limit(limit)).all()


def sales_starting(ctx: Context, first: date, last: date, limit: int = 1000) -> list:
    """The sales (not cancelled) starting on the shop-local days from `first` to `last`, by start."""
    zone = ctx.shop.timezone
    start, end = (datetime.combine(day, time(), zone) for day in (first, last + timedelta(days=1)))
    return ctx.conn.execute(select(SALES.c.id, SALES.c.title, SALES.c.starts_at).where(
        SALES.c.shop == ctx.shop.slug, SALES.c.cancelled_at.is_(None), SALES.c.starts_at >= start,
        SALES.c.starts_at < end).order_by(SALES.c.starts_at, SALES.c.id).limit(limit)).all()


def reservation_rows(ctx: Context, ids) -> list:
    return ctx.conn.execute(select(RESERVATIONS).where(
        RESERVATIONS.c.shop == ctx.shop.slug, RESERVATIONS.c.id.in_(list(ids)))).all()


def member_reservations(ctx: Context, member_id: str, limit: int = 100) -> list:
    return ctx.conn.execute(select(RESERVATIONS).where(
        RESERVATIONS.c.shop == ctx.shop.slug, RESERVATIONS.c.member_id == member_id)
        .order_by(RESERVATIONS.c.created_at.desc(), RESERVATIONS.c.id).limit(limit)).all()


def sales_by_id(ctx: Context, ids) -> dict:
    rows = ctx.conn.execute(select(SALES).where(SALES.c.shop == ctx.shop.slug, SALES.c.id.in_(list(ids)))).all()
    return {row.id: row for row in rows}


def unit_price_adjustments(ctx: Context, cart) -> list:
    """Flash prices for the cart's reservations HELD by its member and not expired (reads only)."""
    if not cart.member_id or not cart.reservation_ids:
        return []
    rows = ctx.conn.execute(
        select(RESERVATIONS.c.quantity, SALES.c.sku, SALES.c.price, SALES.c.title)
        .join(SALES, SALES.c.id == RESERVATIONS.c.sale_id)
        .where(RESERVATIONS.c.id.in_(list(dict.fromkeys(cart.reservation_ids))),
               RESERVATIONS.c.shop == ctx.shop.slug, RESERVATIONS.c.member_id == cart.member_id,
               RESERVATIONS.c.status == HELD, RESERVATIONS.c.expires_at > ctx.now)).all()
    reserved: dict[tuple[str, int, str], int] = defaultdict(int)
    for row in rows:
        reserved[row.sku, row.price, row.title] += row.quantity
    adjustments = []
    for (sku, price, title), quantity in reserved.items():
        lines = [line for line in cart.lines if line.sku == sku]
        if not lines:
            continue
        units = min(quantity, sum(line.quantity for line in lines))
        amount = (price - lines[0].unit_price) * units
        if amount < 0:
            # one unit price per line: the better of the member price and the flash price applies
            adjustments.append(Adjustment(NAME, "FLASH_PRICE", f"flash sale: {title} ({units} units)", amount,
                                          sku=sku, exclusive_group=f"unit_price:{sku}"))
    return adjustments


def committed(ctx: Context, sale_id: str) -> tuple[int, int]:
    """(held, units in HELD reservations) of a sale: equal unless something went wrong (tests, bench)."""
    sale = ctx.conn.execute(select(SALES.c.held).where(SALES.c.id == sale_id)).scalar()
    held = ctx.conn.execute(select(func.coalesce(func.sum(RESERVATIONS.c.quantity), 0)).where(
        RESERVATIONS.c.sale_id == sale_id, RESERVATIONS.c.status == HELD)).scalar()
    return sale, held
