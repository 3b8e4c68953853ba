"""The ledger's operations. Every write locks the member's account row first (one conditional UPDATE), then
touches lots, so concurrent spends, refunds and expiries of one member run one after another and the
balance never goes below zero where the shop forbids it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, bindparam, case, func, or_, select, union_all

from memberkit.plugin import (
    MAX_INT,
    Context,
    Effect,
    Prepared,
    RedemptionRefused,
    Refused,
    TierInfo,
    insert_rows,
    money,
    upsert,
)
from memberkit.plugins.points.models import (
    PointsAccount,
    PointsActionDay,
    PointsEntry,
    PointsExpiryNotice,
    PointsHold,
    PointsLot,
    PointsMilestone,
)
from memberkit.plugins.points.settings import NAME, PointsSettings, settings_of

NEVER = datetime(9999, 12, 31, tzinfo=UTC)  # the expiry of points that do not expire
ACCOUNTS, ENTRIES, LOTS = PointsAccount.__table__, PointsEntry.__table__, PointsLot.__table__
MILESTONES, ACTION_DAYS = PointsMilestone.__table__, PointsActionDay.__table__
HOLDS, NOTICES = PointsHold.__table__, PointsExpiryNotice.__table__
# The outbound event of each kind of ledger entry (docs/events.md).
EVENT_TYPES = {"EARN": "points.earned", "SPEND": "points.spent", "EXPIRE": "points.expired",
               "REFUND": "points.reversed", "ADJUST": "points.adjusted"}
# The liability figure (ctx.count) each kind of entry moves, and the sign that makes it positive but for
# adjustments; points pending are a level of their own. The entries' sum is the liability's closing.
FIGURES = {"EARN": ("pointsIssued", 1), "SPEND": ("pointsSpent", -1), "EXPIRE": ("pointsExpired", -1),
           "REFUND": ("pointsReversed", -1), "ADJUST": ("pointsAdjusted", 1)}
PENDING_FIGURE = "pointsPending"

# The statements of every order, compiled once per dialect and run at driver level.
_LOCKED = (ACCOUNTS.c.balance, ACCOUNTS.c.debt, ACCOUNTS.c.lifetime_spend, ACCOUNTS.c.next_due_at,
           ACCOUNTS.c.pending, ACCOUNTS.c.held, ACCOUNTS.c.lifetime_earned)
# Create-or-lock in one statement: the upsert's UPDATE takes the row lock exactly as a plain UPDATE would.
_LOCK = Prepared(upsert(
    ACCOUNTS, values={"member_id": bindparam("m"), "shop": bindparam("shop"), "lifetime_spend": bindparam("spend"),
                      "next_due_at": NEVER},
    update={"lifetime_spend": ACCOUNTS.c.lifetime_spend + bindparam("spend")},
    returning=_LOCKED))
_NEXT_DUE_AT = case((or_(ACCOUNTS.c.next_due_at.is_(None), ACCOUNTS.c.next_due_at <= bindparam("due")),
                     ACCOUNTS.c.next_due_at), else_=bindparam("due"))
# An order's points where no debt can be owed: credited by the same upsert that locks the account.
_LOCK_AND_EARN = Prepared(upsert(
    ACCOUNTS, values={"member_id": bindparam("m"), "shop": bindparam("shop"), "lifetime_spend": bindparam("spend"),
                      "balance": bindparam("b"), "pending": bindparam("p"), "lifetime_earned": bindparam("e"),
                      "next_due_at": bindparam("due")},
    update={"lifetime_spend": ACCOUNTS.c.lifetime_spend + bindparam("spend"),
            "balance": ACCOUNTS.c.balance + bindparam("b"), "pending": ACCOUNTS.c.pending + bindparam("p"),
            "lifetime_earned": ACCOUNTS.c.lifetime_earned + bindparam("e"), "next_due_at": _NEXT_DUE_AT},
    returning=_LOCKED))
_EARN_ACCOUNT = Prepared(ACCOUNTS.update().where(ACCOUNTS.c.member_id == bindparam("m")).values(
    balance=ACCOUNTS.c.balance + bindparam("b"), pending=ACCOUNTS.c.pending + bindparam("p"),
    debt=ACCOUNTS.c.debt - bindparam("r"), lifetime_earned=ACCOUNTS.c.lifetime_earned + bindparam("e"),
    next_due_at=_NEXT_DUE_AT))
# When the member's next lot matures (pending) or expires (open): what next_due_at is set to after a look.
_NEXT_DUE = Prepared(select(
    select(func.min(LOTS.c.expires_at)).where(LOTS.c.member_id == bindparam("m"), LOTS.c.state == "open")
    .scalar_subquery().label("expires"),
    select(func.min(LOTS.c.available_at)).where(LOTS.c.member_id == bindparam("m"), LOTS.c.state == "pending")
    .scalar_subquery().label("matures")))
_ACCOUNT_VIEW = Prepared(select(ACCOUNTS.c.balance, ACCOUNTS.c.pending, ACCOUNTS.c.lifetime_earned, ACCOUNTS.c.held,
                                ACCOUNTS.c.next_due_at)
                         .where(ACCOUNTS.c.member_id == bindparam("m"), ACCOUNTS.c.shop == bindparam("shop")))
_SET_NEXT_DUE = Prepared(ACCOUNTS.update().where(ACCOUNTS.c.member_id == bindparam("m"))
                         .values(next_due_at=bindparam("due")))
# Two index range scans on (member_id, state, expires_at), not one scan of every lot the member ever had:
# an OR across states made this the slowest statement of an order once a member had thousands of lots.
_DUE_LOTS = Prepared(union_all(
    select(LOTS.c.id, LOTS.c.state, LOTS.c.remaining, LOTS.c.expires_at).where(
        LOTS.c.member_id == bindparam("m"), LOTS.c.state == "open", LOTS.c.expires_at <= bindparam("now")),
    select(LOTS.c.id, LOTS.c.state, LOTS.c.remaining, LOTS.c.expires_at).where(
        LOTS.c.member_id == bindparam("m"), LOTS.c.state == "pending", LOTS.c.available_at <= bindparam("now")),
))
_ADD_ENTRY = Prepared(ENTRIES.insert().returning(ENTRIES.c.id))
_ADD_LOT = Prepared(LOTS.insert())
_OPEN_LOTS = Prepared(select(LOTS.c.id, LOTS.c.remaining)
                      .where(LOTS.c.member_id == bindparam("m"), LOTS.c.state == "open")
                      .order_by(LOTS.c.expires_at, LOTS.c.id))
_TAKE_FROM_LOT = Prepared(LOTS.update().where(LOTS.c.id == bindparam("lot")).values(
    remaining=LOTS.c.remaining - bindparam("take"),
    state=case((LOTS.c.remaining == bindparam("take"), "closed"), else_=LOTS.c.state)))
_CLAIM_MILESTONE, _ADD_ACTION_DAY = upsert(MILESTONES), upsert(ACTION_DAYS)
_SPEND = Prepared(ACCOUNTS.update()
                  .where(ACCOUNTS.c.member_id == bindparam("m"), ACCOUNTS.c.balance >= bindparam("n"))
                  .values(balance=ACCOUNTS.c.balance - bindparam("n")))

def expiry_for(ctx: Context, earned_at: datetime) -> datetime:
    """The end of the Nth month after the month of earning, in the shop's timezone."""
    months = settings_of(ctx).expiry_months
    if months is None:
        return NEVER
    local = ctx.shop.local(earned_at)
    index = local.year * 12 + (local.month - 1) + months + 1  # the month after the last valid one
    start_of_next = local.replace(year=index // 12, month=index % 12 + 1, day=1, hour=0, minute=0, second=0,
                                  microsecond=0)
    return start_of_next.astimezone(UTC)


# ---------------------------------------------------------------- locking and settling


@dataclass
class Locked:
    balance: int
    debt: int
    lifetime_spend: int
    pending: int = 0
    held: int = 0
    lifetime_earned: int = 0

    def room(self) -> int:
        """The most points the member may still earn: every figure the account serves (balance, pending,
        held, lifetime earned) stays within GraphQL's Int."""
        return MAX_INT - max(self.balance + self.pending + self.held, self.lifetime_earned)


def limit_reached(points: int, room: int) -> Effect:
    """The CONFLICT of points a paid order would earn beyond the member's limit: the order stands."""
    return Effect(NAME, "CONFLICT", f"points +{points} not credited: the member's points would pass {MAX_INT} "
                  f"(room for {max(room, 0)})", code="POINTS_LIMIT_REACHED", rule="limit")


def require_room(locked: Locked, points: int) -> None:
    """Refuse an adjustment or action whose points would take the member past the limit."""
    if points > locked.room():
        raise Refused("POINTS_LIMIT_REACHED", f"{points} points would take the member's points past {MAX_INT} "
                      f"(room for {max(locked.room(), 0)})", "delta")


def _may_be_due(next_due_at: datetime | None, now: datetime) -> bool:
    """Whether a lot of the account may have matured or expired by `now` (NULL: not known, so it may)."""
    return next_due_at is None or next_due_at <= now


@dataclass(frozen=True)
class Credit:
    """Points to add with the lock, as new lots owed no debt: `points` in all, `pending` or spendable now,
    the soonest of the new lots maturing (pending) or expiring (open) at `due`."""

    points: int
    pending: bool
    due: datetime


def lock(ctx: Context, member_id: str, spend: int = 0, credit: Credit | None = None) -> Locked:
    """Lock the member's account (creating it), settle due lots, and add `spend` to lifetime spend;
    with `credit`, the same statement adds those points to the account (the caller adds their lots)."""
    params = {"m": member_id, "shop": ctx.shop.slug, "spend": spend}
    if credit is None:
        row = _LOCK.first(ctx.conn, params)
    else:
        row = _LOCK_AND_EARN.first(ctx.conn, {**params, "b": 0 if credit.pending else credit.points,
                                              "p": credit.points if credit.pending else 0, "e": credit.points,
                                              "due": credit.due})
    locked = Locked(row.balance, row.debt, row.lifetime_spend, row.pending, row.held, row.lifetime_earned)
    if _may_be_due(row.next_due_at, ctx.now):
        due = _DUE_LOTS.all(ctx.conn, {"m": member_id, "now": ctx.now})
        if due:
            _settle(ctx, member_id, due, locked)
        soonest = [when for when in _NEXT_DUE.first(ctx.conn, {"m": member_id}) if when is not None]
        _SET_NEXT_DUE.cursor(ctx.conn, {"m": member_id, "due": min(
            [*soonest, credit.due] if credit else soonest, default=NEVER)})
    return locked


def _settle(ctx: Context, member_id: str, due, locked: Locked) -> None:
    """Pending lots whose time came become spendable; open lots past expiry expire, each with its entry."""
    matured = sum(lot.remaining for lot in due if lot.state == "pending")
    # a pending lot can be past its expiry too when no write or job ran for long: it matures and expires
    expired = [lot for lot in due if lot.state == "open" or lot.expires_at <= ctx.now]
    repaid = 0  # a debt incurred while these points were pending is repaid from them as they mature
    for lot in due:
        opens = lot.state == "pending" and lot.remaining and lot.expires_at > ctx.now
        repay = min(locked.debt - repaid, lot.remaining) if opens else 0
        repaid += repay
        values = {"state": "open" if opens and lot.remaining > repay else "closed"}
        if repay:
            values["remaining"] = lot.remaining - repay
        ctx.conn.execute(LOTS.update().where(LOTS.c.id == lot.id).values(**values))
    for lot in expired:
        if lot.remaining:
            _entry(ctx, member_id, -lot.remaining, "EXPIRE", "expiry", note=f"lot {lot.id}")
    gone = sum(lot.remaining for lot in expired)
    ctx.count(PENDING_FIGURE, -matured)
    ctx.conn.execute(ACCOUNTS.update().where(ACCOUNTS.c.member_id == member_id).values(
        balance=ACCOUNTS.c.balance + matured - gone, pending=ACCOUNTS.c.pending - matured,
        debt=ACCOUNTS.c.debt - repaid))
    locked.balance += matured - gone
    locked.pending -= matured
    locked.debt -= repaid


def settle_due(ctx: Context, limit: int = 500) -> int:
    """The expiry job: settle every member with a lot due; returns how many members it settled."""
    members = ctx.conn.execute(
        select(LOTS.c.member_id).where(
            LOTS.c.shop == ctx.shop.slug,
            or_(and_(LOTS.c.state == "open", LOTS.c.expires_at <= ctx.now),
                and_(LOTS.c.state == "pending", LOTS.c.available_at <= ctx.now)))
        .distinct().limit(limit)).scalars().all()
    for member_id in members:
        lock(ctx, member_id)
    return len(members)


def notify_expiring(ctx: Context, limit: int = 1000) -> str | None:
    """The job behind ``points.expiring``: once per member and expiry moment, the shop's notice days before,
    the points still open in the lots that expire then. The notice row makes a rerun send nothing again."""
    days = settings_of(ctx).expiring_notice_days
    if not days:
        return None
    points = func.sum(LOTS.c.remaining)
    due = ctx.conn.execute(
        select(LOTS.c.member_id, LOTS.c.expires_at, points.label("points"))
        .where(LOTS.c.shop == ctx.shop.slug, LOTS.c.state == "open", LOTS.c.remaining > 0,
               LOTS.c.expires_at > ctx.now, LOTS.c.expires_at <= ctx.now + timedelta(days=days),
               ~select(NOTICES.c.member_id).where(NOTICES.c.member_id == LOTS.c.member_id,
                                                  NOTICES.c.expires_at == LOTS.c.expires_at).exists())
        .group_by(LOTS.c.member_id, LOTS.c.expires_at).having(points > 0)
        .order_by(LOTS.c.expires_at, LOTS.c.member_id).limit(limit)).all()
    if not due:
        return None
    ctx.conn.execute(NOTICES.insert(), [{"member_id": row.member_id, "expires_at": row.expires_at,
                                         "shop": ctx.shop.slug, "points": row.points, "created_at": ctx.now}
                                        for row in due])
    for row in due:
        ctx.emit("points.expiring", row.member_id, points=row.points, expiresAt=row.expires_at,
                 expiresOn=ctx.shop.local(row.expires_at - timedelta(microseconds=1)).date(),
                 daysLeft=(row.expires_at - ctx.now).days, rule="expiring_notice_days")
    return f"{len(due)} expiry notice(s)"


def settle_lots(ctx: Context) -> str | None:
    """The job: what settle_due did, or None when no lot was due."""
    settled = settle_due(ctx)
    return f"{settled} member(s) settled" if settled else None


# ---------------------------------------------------------------- writes


def _entry(ctx: Context, member_id: str, delta: int, reason: str, rule: str, order_id: str | None = None,
           actor: str | None = None, note: str | None = None) -> int:
    """One ledger entry, and its outbound event."""
    entry_id = _ADD_ENTRY.scalar(ctx.conn, {
        "shop": ctx.shop.slug, "member_id": member_id, "delta": delta, "reason": reason, "rule": rule,
        "order_id": order_id, "event_id": ctx.event_id, "actor": actor, "note": note, "created_at": ctx.now,
    })
    ctx.emit(EVENT_TYPES[reason], member_id, points=abs(delta), delta=delta, entryId=entry_id, rule=rule,
             orderId=order_id)
    metric, sign = FIGURES[reason]
    ctx.count(metric, sign * delta)
    return entry_id


def add_lot(ctx: Context, member_id: str, points: int, remaining: int, reason: str, rule: str,
            order_id: str | None = None, available_at: datetime | None = None, actor: str | None = None,
            note: str | None = None, earned_at: datetime | None = None) -> datetime:
    """The entry and lot of an earn (the account is the caller's); returns when the lot falls due. The
    lot's expiry counts from `earned_at` (an order's paidAt), by default now."""
    entry_id = _entry(ctx, member_id, points, reason, rule, order_id, actor, note)
    expires_at = expiry_for(ctx, earned_at or ctx.now)
    pending = available_at is not None and available_at > ctx.now
    if pending:
        ctx.count(PENDING_FIGURE, remaining)
    _ADD_LOT.cursor(ctx.conn, {
        "shop": ctx.shop.slug, "member_id": member_id, "entry_id": entry_id, "order_id": order_id,
        "amount": points, "remaining": remaining, "state": "pending" if pending and remaining else
        ("open" if remaining else "closed"), "available_at": available_at or ctx.now, "expires_at": expires_at,
    })
    return (available_at if pending else expires_at) if remaining else NEVER


def earn(ctx: Context, member_id: str, points: int, reason: str, rule: str, locked: Locked, *,
         order_id: str | None = None, available_at: datetime | None = None, actor: str | None = None,
         note: str | None = None, earned_at: datetime | None = None) -> None:
    """Add points as a new lot; where a debt is owed (negative balance allowed) it is repaid first."""
    repay = min(locked.debt, points)
    pending = available_at is not None and available_at > ctx.now
    remaining = points - repay
    due = add_lot(ctx, member_id, points, remaining, reason, rule, order_id, available_at, actor, note, earned_at)
    # balance = open lots - debt: repaying debt raises it even while the new lot is still pending
    balance_delta = repay if pending else points
    _EARN_ACCOUNT.cursor(ctx.conn, {"m": member_id, "b": balance_delta, "p": remaining if pending else 0,
                                    "r": repay, "e": points, "due": due})
    locked.debt -= repay
    locked.balance += balance_delta
    locked.pending += remaining if pending else 0
    locked.lifetime_earned += points


def _take_from_lots(ctx: Context, lots, points: int) -> int:
    taken = 0
    for lot in lots:
        if taken == points:
            break
        take = min(lot.remaining, points - taken)
        if take:
            _TAKE_FROM_LOT.cursor(ctx.conn, {"lot": lot.id, "take": take})
            taken += take
    return taken


def spend(ctx: Context, member_id: str, points: int, reason: str, rule: str, *, order_id: str | None = None,
          actor: str | None = None, note: str | None = None, partial: bool = False) -> int:
    """Spend points, soonest-expiring lots first; returns what was spent.

    The balance changes with one conditional UPDATE (balance >= n), so two concurrent spends can never
    both pass on the same points. With `partial`, spends what there is instead of refusing.
    """
    locked = lock(ctx, member_id)
    wanted = min(points, max(locked.balance, 0)) if partial else points
    if wanted <= 0 or not _SPEND.cursor(ctx.conn, {"m": member_id, "n": wanted}).rowcount:
        if partial:
            return 0
        raise RedemptionRefused("INSUFFICIENT_POINTS", f"{points} points needed, {max(locked.balance, 0)} available")
    lots = _OPEN_LOTS.all(ctx.conn, {"m": member_id})
    _take_from_lots(ctx, lots, wanted)
    _entry(ctx, member_id, -wanted, reason, rule, order_id, actor, note)
    return wanted


# ---------------------------------------------------------------- checkout holds


def hold(ctx: Context, member_id: str, checkout_id: str, points: int) -> None:
    """Hold `points` for a checkout: one conditional UPDATE moves them from the balance to ``held`` (balance
    >= n), so two checkouts racing for the last points cannot both hold them; the lots stay as they are
    until the hold is captured. Refuses with INSUFFICIENT_POINTS."""
    locked = lock(ctx, member_id)
    moved = ctx.conn.execute(
        ACCOUNTS.update().where(ACCOUNTS.c.member_id == member_id, ACCOUNTS.c.balance >= points)
        .values(balance=ACCOUNTS.c.balance - points, held=ACCOUNTS.c.held + points)).rowcount
    if not moved:
        raise RedemptionRefused("INSUFFICIENT_POINTS", f"{points} points needed, {max(locked.balance, 0)} "
                                "available (points held by another checkout are not)", "pointsToRedeem")
    ctx.conn.execute(HOLDS.insert().values(checkout_id=checkout_id, shop=ctx.shop.slug, member_id=member_id,
                                           amount=points, status="HELD", created_at=ctx.now))


def _settle_hold(ctx: Context, checkout_id: str, status: str, order_id: str | None = None):
    """HELD -> `status` with one conditional UPDATE: (member, amount) if this call settled it, else None."""
    return ctx.conn.execute(
        HOLDS.update().where(HOLDS.c.checkout_id == checkout_id, HOLDS.c.shop == ctx.shop.slug,
                             HOLDS.c.status == "HELD")
        .values(status=status, settled_at=ctx.now, order_id=order_id)
        .returning(HOLDS.c.member_id, HOLDS.c.amount)).first()


def release_hold(ctx: Context, checkout_id: str) -> int:
    """Give a checkout's held points back to the balance; returns how many (0 if nothing was held)."""
    row = _settle_hold(ctx, checkout_id, "RELEASED")
    if row is None:
        return 0
    ctx.conn.execute(ACCOUNTS.update().where(ACCOUNTS.c.member_id == row.member_id).values(
        balance=ACCOUNTS.c.balance + row.amount, held=ACCOUNTS.c.held - row.amount))
    return row.amount


def capture_hold(ctx: Context, checkout_id: str, order_id: str) -> tuple[int, int]:
    """Spend a checkout's held points for its order, soonest-expiring lots first, as ``spend`` does.
    Returns (held, spent); held points whose lots expired or were taken back meanwhile are not spent
    (spent < held), and the balance is corrected so that it stays lots - debt - held."""
    row = _settle_hold(ctx, checkout_id, "CAPTURED", order_id)
    if row is None:
        return 0, 0
    lock(ctx, row.member_id)
    taken = _take_from_lots(ctx, _OPEN_LOTS.all(ctx.conn, {"m": row.member_id}), row.amount)
    ctx.conn.execute(ACCOUNTS.update().where(ACCOUNTS.c.member_id == row.member_id).values(
        held=ACCOUNTS.c.held - row.amount, balance=ACCOUNTS.c.balance + (row.amount - taken)))
    if taken:
        _entry(ctx, row.member_id, -taken, "SPEND", "order", order_id, note=f"checkout {checkout_id}")
    return row.amount, taken


def take_back(ctx: Context, member_id: str, points: int, reason: str, rule: str, order_id: str | None,
              actor: str | None = None, note: str | None = None) -> tuple[int, int]:
    """Take points back (a refund, a negative adjustment): the order's own lots first, then the soonest-
    expiring. What is no longer there becomes a debt (negative balance allowed) or a recorded shortfall.
    Returns (taken from lots or owed as debt, shortfall)."""
    locked = lock(ctx, member_id)
    own = []
    if order_id is not None:
        own = ctx.conn.execute(
            select(LOTS.c.id, LOTS.c.remaining, LOTS.c.state).where(
                LOTS.c.member_id == member_id, LOTS.c.order_id == order_id, LOTS.c.state.in_(("open", "pending")))
            .order_by(LOTS.c.id)).all()
    from_pending = _take_from_lots(ctx, [lot for lot in own if lot.state == "pending"], points)
    from_open = _take_from_lots(ctx, [lot for lot in own if lot.state == "open"], points - from_pending)
    if from_pending + from_open < points:
        from_open += _take_from_lots(ctx, _OPEN_LOTS.all(ctx.conn, {"m": member_id}),
                                     points - from_pending - from_open)
    missing = points - from_pending - from_open
    negative = settings_of(ctx).allow_negative_balance
    # a debt never takes the balance below -MAX_INT (what GraphQL's Int serves): beyond, it is a shortfall
    debt = min(missing, max(MAX_INT + locked.balance - from_open, 0)) if negative else 0
    shortfall = missing - debt
    ctx.conn.execute(ACCOUNTS.update().where(ACCOUNTS.c.member_id == member_id).values(
        balance=ACCOUNTS.c.balance - from_open - debt, pending=ACCOUNTS.c.pending - from_pending,
        debt=ACCOUNTS.c.debt + debt, shortfall=ACCOUNTS.c.shortfall + shortfall))
    taken = from_pending + from_open + debt
    ctx.count(PENDING_FIGURE, -from_pending)
    if taken:
        _entry(ctx, member_id, -taken, reason, rule, order_id, actor, note)
    return taken, shortfall


def import_balances(ctx: Context, members) -> None:
    """Imported members' opening balances (``members_imported``): an account with the lifetime spend (so
    milestones count on from it), one ADJUST entry (rule "import") and one open lot that keeps the CRM's
    dates (expiring when it said, or by the shop's rule from when the points were earned; a moment already
    past expires them at the next settle). Three multi-row statements a batch, no outbound event per member."""
    accounts, entries, lots = [], [], []
    for m in members:
        if not (m.points or m.lifetime_spend):
            continue
        expires = (m.points_expire_at or expiry_for(ctx, m.points_earned_at)) if m.points else NEVER
        accounts.append({"member_id": m.id, "shop": ctx.shop.slug, "balance": m.points, "held": 0, "pending": 0,
                         "debt": 0, "shortfall": 0, "lifetime_earned": m.points, "lifetime_spend": m.lifetime_spend,
                         "next_due_at": expires})
        if m.points:
            entries.append({"shop": ctx.shop.slug, "member_id": m.id, "delta": m.points, "reason": "ADJUST",
                            "rule": "import", "order_id": None, "event_id": ctx.event_id, "actor": None,
                            "note": f"opening balance, earned {ctx.shop.local(m.points_earned_at):%Y-%m-%d}",
                            "created_at": ctx.now})
            lots.append({"shop": ctx.shop.slug, "member_id": m.id, "order_id": None, "amount": m.points,
                         "remaining": m.points, "state": "open", "available_at": m.points_earned_at,
                         "expires_at": expires})
    insert_rows(ctx.conn, ACCOUNTS, accounts)
    ctx.count(FIGURES["ADJUST"][0], sum(entry["delta"] for entry in entries))
    ids = insert_rows(ctx.conn, ENTRIES, entries, number=True)
    insert_rows(ctx.conn, LOTS, [{**lot, "entry_id": i} for lot, i in zip(lots, ids, strict=True)])


# ---------------------------------------------------------------- earning on a purchase


@dataclass(frozen=True)
class Grant:
    rule: str
    points: int
    why: str


def purchase_grants(settings: PointsSettings, total: int, lines, paid_at: datetime,
                    tier: TierInfo | None) -> list[Grant]:
    """Points an order earns, rule by rule: base on the cash paid, then each multiplier's extra on its
    lines' share of the total, the tier's extra on the base, and the highest threshold bonus reached."""
    base = total * settings.points_per_unit // settings.unit
    grants = [Grant("base", base, f"{settings.points_per_unit} per {money(settings.unit)} paid")]
    lines_total = sum(line.amount for line in lines)

    def extra_on(selected, percent: int) -> int:
        share = total * sum(line.amount for line in selected) // lines_total if lines_total else 0
        return share * settings.points_per_unit // settings.unit * (percent - 100) // 100

    for category, percent in sorted(settings.category_multipliers.items()):
        extra = extra_on([line for line in lines if line.category == category], percent)
        if extra > 0:
            grants.append(Grant(f"category:{category}", extra, f"{category} at {percent}%"))
    for window in settings.window_multipliers:
        if window.starts_at <= paid_at < window.ends_at:
            chosen = [line for line in lines if window.categories is None or line.category in window.categories]
            extra = extra_on(chosen, window.multiplier_percent)
            if extra > 0:
                grants.append(Grant(f"window:{window.name}", extra, f"{window.name} at {window.multiplier_percent}%"))
    if tier is not None and tier.points_multiplier_permille != 1000:
        extra = base * (tier.points_multiplier_permille - 1000) // 1000
        if extra > 0:
            grants.append(Grant(f"tier:{tier.code}", extra, f"{tier.name} earns "
                                f"{tier.points_multiplier_permille / 1000:g}x"))
    reached = [b for b in settings.threshold_bonuses if total >= b.min_total]
    if reached:
        best = max(reached, key=lambda b: b.min_total)
        grants.append(Grant(f"threshold:{best.min_total}", best.points, f"orders of {money(best.min_total)} or more"))
    return [g for g in grants if g.points > 0]


def earn_for_order(ctx: Context, order) -> list[Effect]:
    settings = settings_of(ctx)
    available_at = order.paid_at + timedelta(days=settings.pending_days) if settings.pending_days else None
    effects = []
    spend = order.total - order.stored_value_bonus  # the bonus of a prepaid balance earns nothing (RULES.md 10)
    grants = purchase_grants(settings, spend, order.lines, order.paid_at, ctx.member_tier(order.member_id))
    earned = sum(g.points for g in grants)
    if settings.allow_negative_balance:  # a debt may be owed: each earn repays it first
        locked = lock(ctx, order.member_id, spend=spend)
        if earned > locked.room():
            effects.append(limit_reached(earned, locked.room()))
            grants = []
        for grant in grants:
            earn(ctx, order.member_id, grant.points, "EARN", grant.rule, locked, order_id=order.order_id,
                 available_at=available_at, earned_at=order.paid_at)
    else:  # no debt: the lock's own upsert credits the points, then each grant adds its entry and lot
        pending = available_at is not None and available_at > ctx.now
        credit = Credit(earned, pending, available_at if pending else expiry_for(ctx, order.paid_at))
        locked = lock(ctx, order.member_id, spend=spend, credit=credit if credit.points else None)
        if locked.room() < 0:  # credited past the limit (rare: no statement is added to other orders)
            _undo_credit(ctx, order.member_id, credit, locked)
            effects.append(limit_reached(earned, locked.room()))
            grants = []
        for grant in grants:
            add_lot(ctx, order.member_id, grant.points, grant.points, "EARN", grant.rule, order.order_id, available_at,
                    earned_at=order.paid_at)
    for grant in grants:
        effects.append(Effect(NAME, "POINTS_EARNED", f"points +{grant.points} ({grant.why})", rule=grant.rule))
    before = locked.lifetime_spend - spend
    for milestone in settings.milestones:
        if before < milestone.lifetime_spend <= locked.lifetime_spend:
            if milestone.points > locked.room():
                effects.append(limit_reached(milestone.points, locked.room()))
                continue
            first_time = ctx.conn.execute(_CLAIM_MILESTONE.on(ctx.conn), dict(
                member_id=order.member_id, lifetime_spend=milestone.lifetime_spend, shop=ctx.shop.slug,
                order_id=order.order_id)).rowcount
            if first_time:
                rule = f"milestone:{milestone.lifetime_spend}"
                earn(ctx, order.member_id, milestone.points, "EARN", rule, locked, order_id=order.order_id,
                     available_at=available_at, earned_at=order.paid_at)
                effects.append(Effect(NAME, "POINTS_EARNED", f"points +{milestone.points} (lifetime spend "
                                      f"passed {money(milestone.lifetime_spend)})", rule=rule))
    if available_at and any(effect.kind == "POINTS_EARNED" for effect in effects):
        effects.append(Effect(NAME, "POINTS_PENDING", f"spendable from {available_at:%Y-%m-%d %H:%M} UTC",
                              rule="pending_days"))
    return effects


def _undo_credit(ctx: Context, member_id: str, credit: Credit, locked: Locked) -> None:
    balance, pending = (0, credit.points) if credit.pending else (credit.points, 0)
    ctx.conn.execute(ACCOUNTS.update().where(ACCOUNTS.c.member_id == member_id).values(
        balance=ACCOUNTS.c.balance - balance, pending=ACCOUNTS.c.pending - pending,
        lifetime_earned=ACCOUNTS.c.lifetime_earned - credit.points))
    locked.balance -= balance
    locked.pending -= pending
    locked.lifetime_earned -= credit.points


def reverse_for_refund(ctx: Context, refund) -> list[Effect]:
    """Take back, in proportion to the money refunded so far, what the order's own entries granted."""
    order = refund.order
    granted, reversed_ = ctx.conn.execute(
        select(func.coalesce(func.sum(case((ENTRIES.c.reason == "EARN", ENTRIES.c.delta), else_=0)), 0),
               func.coalesce(func.sum(case((ENTRIES.c.reason == "REFUND", -ENTRIES.c.delta), else_=0)), 0))
        .where(ENTRIES.c.shop == ctx.shop.slug, ENTRIES.c.order_id == order.order_id)).one()
    target = granted if refund.is_full else granted * refund.refunded_total // order.total
    # What earlier refunds were due was taken or recorded as a shortfall then: never claim it twice.
    earlier = granted * (refund.refunded_total - refund.amount) // order.total
    due = target - max(reversed_, earlier)
    # Lifetime spend counted the total less the bonus spent: it goes down by that share of the refund, cumulatively.
    counted, earlier_total = order.total - order.stored_value_bonus, refund.refunded_total - refund.amount
    spend_back = counted * refund.refunded_total // order.total - counted * earlier_total // order.total
    ctx.conn.execute(ACCOUNTS.update().where(ACCOUNTS.c.member_id == order.member_id).values(
        lifetime_spend=ACCOUNTS.c.lifetime_spend - spend_back))
    if due <= 0:
        return []
    taken, shortfall = take_back(ctx, order.member_id, due, "REFUND", "refund", order.order_id,
                                 note=f"refund {refund.refund_id}")
    effects = [Effect(NAME, "POINTS_REVERSED", f"points -{taken} (refund of {money(refund.amount)})",
                      rule="refund")] if taken else []
    if shortfall:
        effects.append(Effect(NAME, "POINTS_SHORTFALL", f"{shortfall} points already spent: shortfall recorded",
                              code="POINTS_SHORTFALL", rule="refund"))
    return effects


# ---------------------------------------------------------------- actions


def count_action(ctx: Context, member_id: str, action: str, cap: int) -> bool:
    """One more of `action` today (shop's timezone) unless the cap is reached: a conditional UPDATE."""
    day = ctx.shop.local(ctx.now).date().isoformat()
    ctx.conn.execute(_ADD_ACTION_DAY.on(ctx.conn), dict(member_id=member_id, action=action, day=day,
                                                        shop=ctx.shop.slug, count=0))
    return bool(ctx.conn.execute(
        ACTION_DAYS.update().where(ACTION_DAYS.c.member_id == member_id, ACTION_DAYS.c.action == action,
                                   ACTION_DAYS.c.day == day, ACTION_DAYS.c.count < cap)
        .values(count=ACTION_DAYS.c.count + 1)).rowcount)


def reward_action(ctx: Context, member_id: str, action: str) -> list[Effect]:
    spec = settings_of(ctx).actions.get(action)
    if spec is None:
        known = ", ".join(sorted(settings_of(ctx).actions)) or "none"
        raise Refused("UNKNOWN_ACTION", f"no action {action!r} earns points here; actions: {known}", "action")
    if not count_action(ctx, member_id, action, spec.daily_cap):
        raise Refused("DAILY_CAP_REACHED", f"{action} earns points {spec.daily_cap} time(s) a day", "action")
    locked = lock(ctx, member_id)
    require_room(locked, spec.points)
    earn(ctx, member_id, spec.points, "EARN", f"action:{action}", locked)
    if action == "check_in":  # a check-in makes the member active (RULES.md 8), as an order does
        ctx.count("active", member_id=member_id)
    return [Effect(NAME, "POINTS_EARNED", f"points +{spec.points} ({action})", rule=f"action:{action}")]


# ---------------------------------------------------------------- reads (never write)


@dataclass(frozen=True)
class AccountView:
    balance: int
    pending: int
    lifetime_earned: int
    held: int = 0


def account_view(ctx: Context, member_id: str) -> AccountView:
    """The account as of now, counting lots that are due but not yet settled by a write or the job."""
    row = _ACCOUNT_VIEW.first(ctx.conn, {"m": member_id, "shop": ctx.shop.slug})
    if row is None:
        return AccountView(0, 0, 0)
    matured = expired = 0
    due = _DUE_LOTS.all(ctx.conn, {"m": member_id, "now": ctx.now}) if _may_be_due(row.next_due_at, ctx.now) else ()
    for lot in due:
        if lot.state == "pending":
            matured += lot.remaining
        if lot.state == "open" or lot.expires_at <= ctx.now:
            expired += lot.remaining
    return AccountView(row.balance + matured - expired, row.pending - matured, row.lifetime_earned, row.held)


def expiring(ctx: Context, member_id: str, groups: int = 3) -> list[tuple[int, datetime]]:
    """The next `groups` expiry dates with the points that lapse on each."""
    dates = ctx.conn.execute(
        select(LOTS.c.expires_at).where(LOTS.c.member_id == member_id, LOTS.c.state == "open",
                                        LOTS.c.expires_at > ctx.now, LOTS.c.expires_at < NEVER)
        .group_by(LOTS.c.expires_at).order_by(LOTS.c.expires_at).limit(groups)).scalars().all()
    result = []
    for moment in dates:
        points = ctx.conn.execute(select(func.sum(LOTS.c.remaining)).where(
            LOTS.c.member_id == member_id, LOTS.c.state == "open", LOTS.c.expires_at == moment)).scalar()
        if points:
            result.append((points, moment))
    return result


def history(ctx: Context, member_id: str, first: int, before_id: int | None):
    """Newest first, keyset-paged on (member_id, id): as fast for 10,000 entries as for 10."""
    params = {"m": member_id, "shop": ctx.shop.slug, "n": first + 1}
    if before_id is None:
        return _HISTORY.all(ctx.conn, params)
    return _HISTORY_BEFORE.all(ctx.conn, {**params, "before": before_id})


_HISTORY_PAGE = (select(ENTRIES.c.id, ENTRIES.c.delta, ENTRIES.c.reason, ENTRIES.c.rule, ENTRIES.c.order_id,
                        ENTRIES.c.note, ENTRIES.c.created_at)
                 .where(ENTRIES.c.member_id == bindparam("m"), ENTRIES.c.shop == bindparam("shop"))
                 .order_by(ENTRIES.c.id.desc()).limit(bindparam("n")))
_HISTORY = Prepared(_HISTORY_PAGE)
_HISTORY_BEFORE = Prepared(_HISTORY_PAGE.where(ENTRIES.c.id < bindparam("before")))
