"""flash_sale's part of the schema: flashSales, createFlashSale / updateFlashSale / cancelFlashSale
(integrator), reserveFlashSale / releaseFlashReservation (member token), Member.flashReservations."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Optional

import strawberry
from strawberry.dataloader import DataLoader

from memberkit.plugin import Effect, EventResult, Money, Refused, RequestContext, UserError, require_key
from memberkit.plugins.flash_sale import stock
from memberkit.plugins.flash_sale.settings import NAME


@strawberry.enum
class FlashSaleStatus(enum.Enum):
    SCHEDULED = "SCHEDULED"
    ACTIVE = "ACTIVE"
    SOLD_OUT = "SOLD_OUT"
    ENDED = "ENDED"
    CANCELLED = strawberry.enum_value("CANCELLED", description="cancelled by the integrator; its holds released")


@strawberry.enum
class ReservationStatus(enum.Enum):
    HELD = "HELD"
    CONFIRMED = "CONFIRMED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


@strawberry.type(description="A flash sale: a product at a price in a window, with stock and a per-member limit.")
class FlashSale:
    id: strawberry.ID
    sku: str
    title: str
    price: Money
    starts_at: datetime
    ends_at: datetime
    stock: int
    remaining: int = strawberry.field(description="stock - held - sold")
    held: int = strawberry.field(description="units in reservations not yet paid")
    sold: int
    per_member_limit: int
    members_only: bool
    min_tier: Optional[str]
    segment: Optional[str] = strawberry.field(description="only members of this segment may buy")
    status: FlashSaleStatus


def sale_view(row, ctx) -> FlashSale:
    return FlashSale(
        id=strawberry.ID(row.id), sku=row.sku, title=row.title,
        price=Money(amount=row.price, currency=ctx.shop.currency), starts_at=row.starts_at, ends_at=row.ends_at,
        stock=row.stock, remaining=row.stock - row.held - row.sold, held=row.held, sold=row.sold,
        per_member_limit=row.per_member_limit, members_only=row.members_only, min_tier=row.min_tier,
        segment=row.segment, status=FlashSaleStatus(stock.status_of(row, ctx.now)))


def _sale_loader(context: RequestContext) -> DataLoader:
    loader = context.cache.get("flash_sale.sales")
    if loader is None:
        async def load(ids: list[str]) -> list[Optional[FlashSale]]:
            found = await context.read(
                lambda ctx: {k: sale_view(v, ctx) for k, v in stock.sales_by_id(ctx, ids).items()})
            return [found.get(i) for i in ids]
        loader = context.cache["flash_sale.sales"] = DataLoader(load_fn=load)
    return loader


@strawberry.type(description="Units of a sale held for a member until expiresAt, then confirmed by payment.")
class FlashReservation:
    id: strawberry.ID
    sale_id: strawberry.Private[str]
    quantity: int
    expires_at: datetime
    status: ReservationStatus
    order_id: Optional[str] = None

    @strawberry.field
    async def sale(self, info: strawberry.Info) -> FlashSale:
        return await _sale_loader(info.context).load(self.sale_id)


def reservation_view(row, now: datetime) -> FlashReservation:
    return FlashReservation(id=strawberry.ID(row.id), sale_id=row.sale_id, quantity=row.quantity,
                            expires_at=row.expires_at, status=ReservationStatus(stock.reservation_status(row, now)),
                            order_id=row.order_id)


@strawberry.input
class FlashSaleInput:
    sku: str
    title: str
    price: int
    starts_at: datetime
    ends_at: datetime
    stock: int
    per_member_limit: int
    members_only: bool
    min_tier: Optional[str] = None
    segment: Optional[str] = strawberry.field(default=None, description="only members of this segment (a code "
                                                                        "of the shop's segments) may buy")
    idempotency_key: Optional[str] = None


@strawberry.input(description="Fields left null are unchanged; minTier \"\" opens the sale to every tier, "
                              "segment \"\" to every member.")
class UpdateFlashSaleInput:
    sale_id: strawberry.ID
    title: Optional[str] = None
    price: Optional[int] = None
    starts_at: Optional[datetime] = None
    ends_at: Optional[datetime] = None
    stock: Optional[int] = None
    per_member_limit: Optional[int] = None
    members_only: Optional[bool] = None
    min_tier: Optional[str] = None
    segment: Optional[str] = strawberry.field(default=None, description="\"\" opens the sale to every segment")
    idempotency_key: Optional[str] = None


@strawberry.input
class ReserveFlashSaleInput:
    sale_id: strawberry.ID
    quantity: int
    idempotency_key: str


@strawberry.type
class FlashSalePayload:
    flash_sale: Optional[FlashSale]
    duplicate: bool
    errors: list[UserError]


@strawberry.type
class ReserveFlashSalePayload:
    reservation: Optional[FlashReservation]
    duplicate: bool
    errors: list[UserError]


def _effect(kind: str, text: str) -> list[Effect]:
    return [Effect(NAME, kind, text)]


async def _sale_payload(context: RequestContext, result: EventResult) -> FlashSalePayload:
    sale = None
    if not result.errors and result.data.get("sale_id"):
        rows = await context.read(lambda ctx: [sale_view(r, ctx) for r in
                                               stock.sales_by_id(ctx, [result.data["sale_id"]]).values()])
        sale = rows[0] if rows else None
    return FlashSalePayload(flash_sale=sale, duplicate=result.duplicate,
                            errors=[UserError.of(e) for e in result.errors])


def _key(value: Optional[str]) -> Optional[str]:
    return require_key(value, "idempotencyKey") if value is not None else None


def _create(Member):
    async def resolve(info: strawberry.Info, input: FlashSaleInput) -> FlashSalePayload:
        """Create a flash sale (integrator); a retry with the same idempotencyKey returns the same sale."""
        context: RequestContext = info.context
        context.require_integrator()
        fields = stock.SaleFields(input.sku, input.title, input.price, input.starts_at, input.ends_at, input.stock,
                                  input.per_member_limit, input.members_only, input.min_tier or None,
                                  input.segment or None)

        def handle(ctx) -> EventResult:
            sale_id = stock.create_sale(ctx, fields)
            return EventResult(None, _effect("SALE_CREATED", f"flash sale {sale_id} created"),
                               data={"sale_id": sale_id})

        try:
            key = _key(input.idempotency_key)
        except Refused as refusal:
            return FlashSalePayload(flash_sale=None, duplicate=False, errors=[UserError.of(
                EventResult.refused(refusal).errors[0])])
        result = await context.event("flash_sale.create", key, fields.__dict__, handle)
        return await _sale_payload(context, result)
    return resolve


def _update(Member):
    async def resolve(info: strawberry.Info, input: UpdateFlashSaleInput) -> FlashSalePayload:
        """Change a sale (integrator): price, window, stock (never below held + sold), limit, eligibility."""
        context: RequestContext = info.context
        context.require_integrator()
        changes = {name: getattr(input, name) for name in (
            "title", "price", "starts_at", "ends_at", "stock", "per_member_limit", "members_only", "min_tier",
            "segment") if getattr(input, name) is not None}
        for name in ("min_tier", "segment"):
            if name in changes:
                changes[name] = changes[name].strip() or None

        def handle(ctx) -> EventResult:
            stock.update_sale(ctx, input.sale_id, changes)
            return EventResult(None, _effect("SALE_UPDATED", f"flash sale {input.sale_id}: "
                                                             f"{', '.join(sorted(changes)) or 'nothing'} changed"),
                               data={"sale_id": input.sale_id})

        result = await context.event("flash_sale.update", None, {"sale_id": input.sale_id, **changes}, handle,
                                     idempotency_key=input.idempotency_key)
        return await _sale_payload(context, result)
    return resolve


def _cancel(Member):
    async def resolve(info: strawberry.Info, id: strawberry.ID) -> FlashSalePayload:
        """Cancel a sale (integrator): every HELD reservation is released and its stock returns."""
        context: RequestContext = info.context
        context.require_integrator()

        def handle(ctx) -> EventResult:
            units = stock.cancel_sale(ctx, id)
            return EventResult(None, _effect("SALE_CANCELLED", f"flash sale {id} cancelled, {units} held units "
                                                               "released"), data={"sale_id": id})

        result = await context.event("flash_sale.cancel", str(id), {"sale_id": id}, handle)
        return await _sale_payload(context, result)
    return resolve


def _stored_reservation(reservation: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in reservation.items()
            if k in ("id", "sale_id", "quantity", "expires_at", "status", "order_id")}


async def _reservation_payload(context: RequestContext, result: EventResult) -> ReserveFlashSalePayload:
    errors = [UserError.of(e) for e in result.errors]
    data = result.data.get("reservation")
    if errors or not data:
        return ReserveFlashSalePayload(reservation=None, duplicate=result.duplicate, errors=errors)
    if result.duplicate:  # what the reservation is now, not what it was
        rows = await context.read(lambda ctx: [reservation_view(r, ctx.now)
                                               for r in stock.reservation_rows(ctx, [data["id"]])])
        view = rows[0] if rows else None
    else:
        view = FlashReservation(id=strawberry.ID(data["id"]), sale_id=data["sale_id"], quantity=data["quantity"],
                                expires_at=datetime.fromisoformat(data["expires_at"]),
                                status=ReservationStatus(data["status"]), order_id=data.get("order_id"))
    return ReserveFlashSalePayload(reservation=view, duplicate=result.duplicate, errors=errors)


def _reserve(Member):
    async def resolve(info: strawberry.Info, input: ReserveFlashSaleInput) -> ReserveFlashSalePayload:
        """Reserve units of a sale for the signed-in member (member token); holds stock for hold_minutes."""
        context: RequestContext = info.context
        member_id = context.require_member()

        def handle(ctx) -> EventResult:  # the token names a member of this shop: no member read needed
            reservation = stock.reserve(ctx, member_id, input.sale_id, input.quantity)
            return EventResult(member_id, _effect("RESERVED", f"{input.quantity} units of {input.sale_id} held "
                                                              f"as {reservation['id']}"),
                               data={"reservation": _stored_reservation(reservation)})

        result = await context.event("flash_sale.reserve", member_id,
                                     {"sale_id": input.sale_id, "quantity": input.quantity}, handle,
                                     idempotency_key=input.idempotency_key)
        return await _reservation_payload(context, result)
    return resolve


def _release(Member):
    async def resolve(info: strawberry.Info, id: strawberry.ID) -> ReserveFlashSalePayload:
        """Give back the signed-in member's own HELD reservation; its stock returns at once."""
        context: RequestContext = info.context
        member_id = context.require_member()

        def handle(ctx) -> EventResult:
            stock.release(ctx, member_id, id)
            row = stock.reservation_rows(ctx, [id])[0]
            return EventResult(member_id, _effect("RELEASED", f"reservation {id} released"),
                               data={"reservation": _stored_reservation(row._asdict())})

        result = await context.event("flash_sale.release", f"{member_id}:{id}", {"id": id}, handle)
        return await _reservation_payload(context, result)
    return resolve


def _flash_sales(Member):
    async def resolve(info: strawberry.Info, status: Optional[FlashSaleStatus] = None) -> list[FlashSale]:
        """The shop's flash sales (storefront), by start; without status every sale but cancelled ones."""
        return await info.context.read(lambda ctx: [
            sale_view(row, ctx) for row in stock.list_sales(ctx, status.value if status else None)])
    return resolve


async def flash_reservations(root, info: strawberry.Info,
                             status: Optional[ReservationStatus] = None) -> list[FlashReservation]:
    def read(ctx) -> list[FlashReservation]:
        views = [reservation_view(row, ctx.now) for row in stock.member_reservations(ctx, str(root.id))]
        return [v for v in views if status is None or v.status == status]
    return await info.context.read(read)


def contribute(builder) -> None:
    builder.query_field("flashSales", _flash_sales)
    builder.mutation_field("createFlashSale", _create)
    builder.mutation_field("updateFlashSale", _update)
    builder.mutation_field("cancelFlashSale", _cancel)
    builder.mutation_field("reserveFlashSale", _reserve)
    builder.mutation_field("releaseFlashReservation", _release)
    builder.member_field("flash_reservations", flash_reservations,
                         description="The member's flash-sale reservations, newest first (at most 100).")
