"""The flash_sale plugin (RULES.md section 5): creating, changing and cancelling sales, every refusal of a
reservation, duplicates, release, the expiry job, paying (before and after expiry), eligibility by tier,
two shops apart, the checkout and price hooks, and the demo sale's settings. Concurrency: test_flash_sale_load.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from memberkit import config as settings_module
from memberkit import jobs
from memberkit.core import clock
from memberkit.core.types import Cart, OrderLine, PaidOrder, PriceStage, Refused
from memberkit.plugins.flash_sale import stock
from memberkit.plugins.flash_sale.models import FlashSaleMember, FlashSaleReservation, FlashSaleSale
from memberkit.schema import auth
from tests.conftest import ORDER_PAID, ROOT, sign_up

SETTINGS = """
[shops.alpha]
name = "Alpha"
currency = "CNY"
timezone = "Asia/Shanghai"
plugins = ["tiering", "flash_sale"]

[shops.alpha.settings.flash_sale]
hold_minutes = 15

[[shops.alpha.settings.tiering.tiers]]
code = "REGULAR"
name = "Regular"
rank = 1

[[shops.alpha.settings.tiering.tiers]]
code = "GOLD"
name = "Gold"
rank = 3
min_spend = 200000

[shops.beta]
name = "Beta"
currency = "EUR"
timezone = "Europe/Berlin"
plugins = ["flash_sale"]
"""

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # Friday 20:00 in Shanghai
HOLD = timedelta(minutes=15)  # how long a checkout holds
SALE_FIELDS = "id sku title price { amount currency } startsAt endsAt stock remaining held sold perMemberLimit " \
              "membersOnly minTier status"
CREATE = f"""mutation($input: FlashSaleInput!) {{ createFlashSale(input: $input) {{
  duplicate flashSale {{ {SALE_FIELDS} }} errors {{ code field message }} }} }}"""
UPDATE = f"""mutation($input: UpdateFlashSaleInput!) {{ updateFlashSale(input: $input) {{
  flashSale {{ {SALE_FIELDS} }} errors {{ code field message }} }} }}"""
CANCEL = f"""mutation($id: ID!) {{ cancelFlashSale(id: $id) {{
  duplicate flashSale {{ {SALE_FIELDS} }} errors {{ code }} }} }}"""
SALES = f"""query($status: FlashSaleStatus) {{ flashSales(status: $status) {{ {SALE_FIELDS} }} }}"""
RESERVATION = "id quantity expiresAt status orderId sale { id remaining status }"
RESERVE = f"""mutation($input: ReserveFlashSaleInput!) {{ reserveFlashSale(input: $input) {{
  duplicate reservation {{ {RESERVATION} }} errors {{ code field message }} }} }}"""
RELEASE = f"""mutation($id: ID!) {{ releaseFlashReservation(id: $id) {{
  duplicate reservation {{ {RESERVATION} }} errors {{ code message }} }} }}"""
MINE = f"""query {{ me {{ flashReservations {{ {RESERVATION} }} }} }}"""


def sale_input(**changes) -> dict:
    values = {"sku": "FLASH-1", "title": "Tea set", "price": 8910, "startsAt": "2026-11-27T20:00:00+08:00",
              "endsAt": "2026-11-27T22:00:00+08:00", "stock": 10, "perMemberLimit": 3, "membersOnly": True}
    return {**values, **changes}


@pytest.fixture
def shop(make_runtime, make_api):
    clock.set_now(NOW)
    runtime = make_runtime(SETTINGS)
    api = make_api(runtime)
    key = api.key("alpha")

    class Shop:
        pass

    s = Shop()
    s.runtime, s.api, s.key = runtime, api, key

    def create(**changes) -> dict:
        payload = api(CREATE, {"input": sale_input(**changes)}, key)["createFlashSale"]
        assert payload["errors"] == [], payload
        return payload["flashSale"]

    def member(external_id: str, shop_slug: str = "alpha", shop_key: str | None = None) -> tuple[str, str]:
        member_id = sign_up(api, shop_key or key, external_id)
        return member_id, auth.mint_member_token(shop_slug, member_id, 7 * 86400, "key_test")[0]

    def reserve(token: str, sale_id: str, quantity: int = 1, idem: str = "k1") -> dict:
        return api(RESERVE, {"input": {"saleId": sale_id, "quantity": quantity, "idempotencyKey": idem}},
                   token)["reserveFlashSale"]

    def sale(sale_id: str) -> dict:
        return next(s for s in api(SALES, {"status": None}, key)["flashSales"] if s["id"] == sale_id)

    s.create, s.member, s.reserve, s.sale = create, member, reserve, sale
    return s


def codes(payload: dict) -> list[str]:
    return [e["code"] for e in payload["errors"]]


def pay(api, key, member_id: str, order_id: str, total: int = 8910, **extra) -> dict:
    payload = api(ORDER_PAID, {"input": {"orderId": order_id, "memberId": member_id, "total": total, **extra}},
                  key)["recordOrderPaid"]
    assert payload["errors"] == [], payload
    return payload


def counters(runtime, sale_id: str) -> tuple[int, int, int]:
    with runtime.db.read() as conn:
        row = conn.execute(select(FlashSaleSale.stock, FlashSaleSale.held, FlashSaleSale.sold)
                           .where(FlashSaleSale.id == sale_id)).one()
    return tuple(row)


def test_create_is_idempotent_and_status_follows_the_clock(shop):
    api, key = shop.api, shop.key
    first = api(CREATE, {"input": sale_input(idempotencyKey="fri-1")}, key)["createFlashSale"]
    again = api(CREATE, {"input": sale_input(idempotencyKey="fri-1")}, key)["createFlashSale"]
    assert first["errors"] == [] and again["duplicate"] and again["flashSale"]["id"] == first["flashSale"]["id"]
    other = api(CREATE, {"input": sale_input(idempotencyKey="fri-1", stock=11)}, key)["createFlashSale"]
    assert codes(other) == ["IDEMPOTENCY_CONFLICT"] and other["flashSale"] is None
    sale = first["flashSale"]
    assert sale["price"] == {"amount": 8910, "currency": "CNY"} and sale["remaining"] == 10
    assert sale["status"] == "ACTIVE" and sale["startsAt"].startswith("2026-11-27T12:00:00")
    for bad, code in ((sale_input(endsAt="2026-11-27T19:00:00+08:00"), "INVALID_WINDOW"),
                      (sale_input(startsAt="2026-11-27T20:00:00"), "TIMESTAMP_WITHOUT_OFFSET"),
                      (sale_input(stock=-1), "INVALID_STOCK"), (sale_input(perMemberLimit=0), "INVALID_LIMIT"),
                      (sale_input(price=-5), "NEGATIVE_AMOUNT"), (sale_input(minTier="PLATINUM"), "UNKNOWN_TIER")):
        assert codes(api(CREATE, {"input": bad}, key)["createFlashSale"]) == [code]
    _, token = shop.member("m-1")
    assert api.errors(CREATE, {"input": sale_input()}, token)[0]["extensions"]["code"] == "FORBIDDEN"

    later = shop.create(startsAt="2026-11-28T20:00:00+08:00", endsAt="2026-11-28T21:00:00+08:00")
    assert later["status"] == "SCHEDULED"
    assert [s["id"] for s in api(SALES, {"status": "SCHEDULED"}, token)["flashSales"]] == [later["id"]]
    publishable = api.key("alpha", "publishable")  # an anonymous storefront
    assert [s["id"] for s in api(SALES, {"status": "ACTIVE"}, publishable)["flashSales"]] == [sale["id"]]
    clock.set_now(NOW + timedelta(hours=3))
    assert [s["id"] for s in api(SALES, {"status": "ENDED"}, key)["flashSales"]] == [sale["id"]]
    assert {s["status"] for s in api(SALES, {}, key)["flashSales"]} == {"ENDED", "SCHEDULED"}


def test_every_refusal_has_a_code_and_a_repeat_is_a_duplicate(shop):
    sale = shop.create(stock=5)
    early = shop.create(startsAt="2026-11-28T20:00:00+08:00", endsAt="2026-11-28T21:00:00+08:00")
    _, token = shop.member("m-1")
    _, token2 = shop.member("m-2")
    assert codes(shop.reserve(token, "fs_nope")) == ["SALE_NOT_FOUND"]
    assert codes(shop.reserve(token, early["id"])) == ["SALE_NOT_ACTIVE"]
    assert codes(shop.reserve(token, sale["id"], 0)) == ["INVALID_QUANTITY"]
    assert codes(shop.reserve(token, sale["id"], 4)) == ["LIMIT_EXCEEDED"]
    won = shop.reserve(token, sale["id"], 2, "a")
    assert won["errors"] == [] and won["reservation"]["status"] == "HELD" and won["reservation"]["quantity"] == 2
    assert won["reservation"]["expiresAt"].startswith("2026-11-27T12:15:00")
    assert won["reservation"]["sale"]["remaining"] == 3
    repeat = shop.reserve(token, sale["id"], 2, "a")
    assert repeat["duplicate"] and repeat["reservation"]["id"] == won["reservation"]["id"]
    assert codes(shop.reserve(token, sale["id"], 3, "a")) == ["IDEMPOTENCY_CONFLICT"]
    assert codes(shop.reserve(token, sale["id"], 2, "b")) == ["LIMIT_EXCEEDED"]  # holds 2, limit 3
    assert shop.reserve(token, sale["id"], 1, "c")["errors"] == []
    assert codes(shop.reserve(token2, sale["id"], 3, "a")) == ["SOLD_OUT"]  # 2 left; the key is per member
    assert shop.reserve(token2, sale["id"], 2, "d")["errors"] == []
    assert shop.sale(sale["id"])["status"] == "SOLD_OUT"
    assert counters(shop.runtime, sale["id"]) == (5, 5, 0)
    # A refused reservation left nothing: no counter moved for member 2's SOLD_OUT attempt.
    with shop.runtime.db.read() as conn:
        held = dict(conn.execute(select(FlashSaleMember.member_id, FlashSaleMember.held)).all())
    assert sorted(held.values()) == [2, 3]
    assert shop.api.errors(RESERVE, {"input": {"saleId": sale["id"], "quantity": 1, "idempotencyKey": "x"}},
                           shop.key)[0]["extensions"]["code"] == "FORBIDDEN"
    clock.set_now(NOW + timedelta(hours=2))
    assert codes(shop.reserve(token, sale["id"], 1, "late")) == ["SALE_NOT_ACTIVE"]


def test_release_gives_stock_back_only_for_the_members_own_reservation(shop):
    sale = shop.create()
    _, token = shop.member("m-1")
    _, token2 = shop.member("m-2")
    reservation = shop.reserve(token, sale["id"], 3)["reservation"]
    assert codes(shop.api(RELEASE, {"id": reservation["id"]}, token2)["releaseFlashReservation"]) == \
        ["RESERVATION_NOT_FOUND"]
    released = shop.api(RELEASE, {"id": reservation["id"]}, token)["releaseFlashReservation"]
    assert released["errors"] == [] and released["reservation"]["status"] == "RELEASED"
    assert released["reservation"]["sale"]["remaining"] == 10
    assert shop.api(RELEASE, {"id": reservation["id"]}, token)["releaseFlashReservation"]["duplicate"]
    assert counters(shop.runtime, sale["id"]) == (10, 0, 0)
    assert shop.reserve(token, sale["id"], 3, "again")["errors"] == []  # the limit counts holds, not releases
    assert sorted(r["status"] for r in shop.api(MINE, {}, token)["me"]["flashReservations"]) == ["HELD", "RELEASED"]


def test_expiry_job_returns_stock_once(shop):
    sale = shop.create()
    member_id, token = shop.member("m-1")
    reservation = shop.reserve(token, sale["id"], 2)["reservation"]
    clock.set_now(NOW + timedelta(minutes=15))
    # Reads never write: the reservation shows as expired before the job runs, its stock still held.
    assert shop.api(MINE, {}, token)["me"]["flashReservations"][0]["status"] == "EXPIRED"
    assert counters(shop.runtime, sale["id"]) == (10, 2, 0)
    for expected in ("1 reservations expired, 2 units returned", None):
        runs = {r.job: r for r in jobs.run_due(shop.runtime, "alpha", force=True)}
        assert runs["flash_sale.expire_reservations"].result == expected
    assert counters(shop.runtime, sale["id"]) == (10, 0, 0)
    assert codes(shop.api(RELEASE, {"id": reservation["id"]}, token)["releaseFlashReservation"]) == \
        ["RESERVATION_NOT_HELD"]
    assert shop.reserve(token, sale["id"], 3, "k2")["errors"] == []  # the limit is free again


def test_cancel_releases_every_hold_and_update_cannot_cut_below_committed(shop):
    sale = shop.create()
    _, token = shop.member("m-1")
    _, token2 = shop.member("m-2")
    shop.reserve(token, sale["id"], 3)
    member2, _ = shop.member("m-3")
    shop.reserve(token2, sale["id"], 2)
    api, key = shop.api, shop.key
    below = api(UPDATE, {"input": {"saleId": sale["id"], "stock": 4}}, key)["updateFlashSale"]
    assert codes(below) == ["STOCK_BELOW_COMMITTED"]
    changed = api(UPDATE, {"input": {"saleId": sale["id"], "stock": 5, "price": 7990, "perMemberLimit": 5,
                                     "endsAt": "2026-11-27T23:00:00+08:00", "minTier": "GOLD"}},
                  key)["updateFlashSale"]
    assert changed["errors"] == []
    assert {k: changed["flashSale"][k] for k in ("stock", "remaining", "price", "perMemberLimit", "minTier")} == {
        "stock": 5, "remaining": 0, "price": {"amount": 7990, "currency": "CNY"}, "perMemberLimit": 5,
        "minTier": "GOLD"}
    assert codes(api(UPDATE, {"input": {"saleId": sale["id"], "endsAt": "2026-11-27T19:00:00+08:00"}},
                     key)["updateFlashSale"]) == ["INVALID_WINDOW"]
    opened = api(UPDATE, {"input": {"saleId": sale["id"], "minTier": ""}}, key)["updateFlashSale"]
    assert opened["flashSale"]["minTier"] is None

    cancelled = api(CANCEL, {"id": sale["id"]}, key)["cancelFlashSale"]
    assert cancelled["errors"] == [] and cancelled["flashSale"]["status"] == "CANCELLED"
    assert cancelled["flashSale"]["remaining"] == 5 and cancelled["flashSale"]["held"] == 0
    assert api(CANCEL, {"id": sale["id"]}, key)["cancelFlashSale"]["duplicate"]
    assert [r["status"] for r in api(MINE, {}, token)["me"]["flashReservations"]] == ["RELEASED"]
    assert codes(shop.reserve(token, sale["id"], 1, "after")) == ["SALE_NOT_ACTIVE"]
    assert codes(api(UPDATE, {"input": {"saleId": sale["id"], "stock": 9}}, key)["updateFlashSale"]) == \
        ["SALE_CANCELLED"]
    assert api(SALES, {}, key)["flashSales"] == []
    assert [s["id"] for s in api(SALES, {"status": "CANCELLED"}, key)["flashSales"]] == [sale["id"]]
    assert member2


def test_paying_confirms_and_counts_toward_the_limit(shop):
    sale = shop.create()
    member_id, token = shop.member("m-1")
    reservation = shop.reserve(token, sale["id"], 2)["reservation"]
    paid = pay(shop.api, shop.key, member_id, "o-1", reservationIds=[reservation["id"]])
    assert [(e["plugin"], e["kind"]) for e in paid["effects"]] == [("flash_sale", "RESERVATION_CONFIRMED")]
    mine = shop.api(MINE, {}, token)["me"]["flashReservations"][0]
    assert mine["status"] == "CONFIRMED" and mine["orderId"] == "o-1"
    assert counters(shop.runtime, sale["id"]) == (10, 0, 2)
    assert codes(shop.reserve(token, sale["id"], 2, "k2")) == ["LIMIT_EXCEEDED"]  # bought 2, limit 3
    assert shop.reserve(token, sale["id"], 1, "k3")["errors"] == []
    # The same reservation in another order is a conflict, and the order still stands.
    again = pay(shop.api, shop.key, member_id, "o-2", reservationIds=[reservation["id"], "fr_unknown"])
    assert [(e["kind"], e["code"]) for e in again["effects"]] == [("CONFLICT", "RESERVATION_USED"),
                                                                  ("CONFLICT", "RESERVATION_NOT_FOUND")]
    assert counters(shop.runtime, sale["id"]) == (10, 1, 2)


def test_paying_after_expiry_takes_the_stock_if_still_there(shop):
    sale = shop.create(stock=3)
    member_id, token = shop.member("m-1")
    other_id, other = shop.member("m-2")
    late = shop.reserve(token, sale["id"], 2)["reservation"]
    clock.set_now(NOW + timedelta(minutes=20))
    jobs.run_due(shop.runtime, "alpha", force=True)
    paid = pay(shop.api, shop.key, member_id, "o-1", reservationIds=[late["id"]])
    assert [(e["kind"], e["code"]) for e in paid["effects"]] == [("RESERVATION_CONFIRMED", None)]
    assert "expired before payment" in paid["effects"][0]["description"]
    assert counters(shop.runtime, sale["id"]) == (3, 0, 2)

    gone = shop.reserve(other, sale["id"], 1, "o")["reservation"]
    shop.api(RELEASE, {"id": gone["id"]}, other)
    shop.reserve(token, sale["id"], 1, "last")  # takes the last unit
    paid = pay(shop.api, shop.key, other_id, "o-2", reservationIds=[gone["id"]])
    assert [(e["kind"], e["code"]) for e in paid["effects"]] == [("CONFLICT", "SOLD_OUT")]
    assert counters(shop.runtime, sale["id"]) == (3, 1, 2)
    with shop.runtime.db.read() as conn:
        status = conn.execute(select(FlashSaleReservation.status).where(FlashSaleReservation.id == gone["id"]))
        assert status.scalar() == "RELEASED"


def test_eligibility_by_tier(shop):
    sale = shop.create(minTier="GOLD")
    member_id, token = shop.member("m-1")
    assert codes(shop.reserve(token, sale["id"])) == ["NOT_ELIGIBLE"]
    pay(shop.api, shop.key, member_id, "big", total=200000)  # 2,000 yuan: gold
    assert shop.reserve(token, sale["id"], 1, "k2")["errors"] == []
    open_sale = shop.create(sku="FLASH-2", membersOnly=False)
    _, regular = shop.member("m-2")
    assert shop.reserve(regular, open_sale["id"])["errors"] == []


def test_two_shops_never_mix(shop):
    sale = shop.create()
    beta_key = shop.api.key("beta")
    beta_id, beta_token = shop.member("b-1", "beta", beta_key)
    assert codes(shop.reserve(beta_token, sale["id"])) == ["SALE_NOT_FOUND"]
    assert shop.api(SALES, {}, beta_key)["flashSales"] == []
    assert codes(shop.api(CANCEL, {"id": sale["id"]}, beta_key)["cancelFlashSale"]) == ["SALE_NOT_FOUND"]
    beta_sale = shop.api(CREATE, {"input": sale_input()}, beta_key)["createFlashSale"]["flashSale"]
    assert beta_sale["price"]["currency"] == "EUR"
    _, alpha_token = shop.member("a-1")
    reservation = shop.reserve(beta_token, beta_sale["id"])["reservation"]
    assert codes(shop.api(RELEASE, {"id": reservation["id"]}, alpha_token)["releaseFlashReservation"]) == \
        ["RESERVATION_NOT_FOUND"]
    assert [s["id"] for s in shop.api(SALES, {}, shop.key)["flashSales"]] == [sale["id"]]
    assert beta_id


def test_checkout_hooks_and_flash_price(shop):
    sale = shop.create(price=8910)
    member_id, token = shop.member("m-1")
    other_id, other = shop.member("m-2")
    mine = shop.reserve(token, sale["id"], 2)["reservation"]["id"]
    theirs = shop.reserve(other, sale["id"], 1)["reservation"]["id"]
    runtime, alpha = shop.runtime, shop.runtime.shop("alpha")
    cart = Cart(lines=(OrderLine("FLASH-1", 3, 9900), OrderLine("OTHER", 1, 500)), member_id=member_id,
                reservation_ids=(mine, theirs))
    with runtime.reading(alpha) as ctx:
        adjustments = ctx.hook.price_adjustments(ctx=ctx, cart=cart, stage=PriceStage.UNIT_PRICE, subtotal=30200)
        assert ctx.hook.price_adjustments(ctx=ctx, cart=cart, stage=PriceStage.PERCENT, subtotal=30200) == []
    [adjustment] = [a for group in adjustments if group for a in group]
    assert (adjustment.plugin, adjustment.code, adjustment.sku, adjustment.amount) == \
        ("flash_sale", "FLASH_PRICE", "FLASH-1", (8910 - 9900) * 2)

    with pytest.raises(Refused) as refused, runtime.transaction(alpha) as ctx:
        # a cart that holds another member's reservation
        ctx.hook.checkout_hold(ctx=ctx, checkout_id="co-1", expires_at=ctx.now + HOLD, cart=cart)
    assert refused.value.code == "RESERVATION_NOT_HELD"
    own = Cart(lines=cart.lines, member_id=member_id, reservation_ids=(mine,))
    with runtime.transaction(alpha) as ctx:
        ctx.hook.checkout_hold(ctx=ctx, checkout_id="co-1", expires_at=ctx.now + HOLD, cart=own)
    with pytest.raises(Refused), runtime.transaction(alpha) as ctx:  # another checkout cannot take it
        ctx.hook.checkout_hold(ctx=ctx, checkout_id="co-2", expires_at=ctx.now + HOLD, cart=own)
    with runtime.transaction(alpha) as ctx:
        ctx.hook.checkout_release(ctx=ctx, checkout_id="co-1", reason="released")
        ctx.hook.checkout_hold(ctx=ctx, checkout_id="co-2", expires_at=ctx.now + HOLD, cart=own)
    # Core's checkout calls order_paid with the checkout's id (and may repeat its reservation ids).
    order = PaidOrder("o-1", member_id, 17820, "CNY", NOW, reservation_ids=(mine,), checkout_id="co-2")
    with runtime.transaction(alpha) as ctx:
        effects = [e for group in ctx.hook.order_paid(ctx=ctx, order=order) if group for e in group]
    assert [e.kind for e in effects] == ["RESERVATION_CONFIRMED"]
    assert counters(runtime, sale["id"]) == (10, 1, 2)
    clock.set_now(NOW + timedelta(minutes=16))
    with runtime.reading(alpha) as ctx:  # expired: no flash price, no hold
        late = Cart(lines=cart.lines, member_id=other_id, reservation_ids=(theirs,))
        assert [a for g in ctx.hook.price_adjustments(ctx=ctx, cart=late, stage=PriceStage.UNIT_PRICE, subtotal=1)
                if g for a in g] == []
    with pytest.raises(Refused), runtime.transaction(alpha) as ctx:
        ctx.hook.checkout_hold(ctx=ctx, checkout_id="co-3", expires_at=ctx.now + HOLD, cart=late)


def test_demo_sale_settings():
    demo = settings_module.load(ROOT / "plugins.toml").shops["demo"]
    assert "flash_sale" in demo.plugins
    s = demo.settings_for("flash_sale")
    assert s.hold_minutes == 15
    weekly = s.weekly
    assert (weekly.per_member_limit, weekly.members_only, weekly.discount_percent, len(weekly.skus)) == (3, True, 10, 3)
    assert weekly.sale_price(9900) == 8910
    # Wednesday 2026-11-25 in Shanghai: the next sale is Friday 27 November 20:00 local, 12:00 UTC.
    start, end = weekly.next_window(demo.timezone, datetime(2026, 11, 25, 4, 0, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 11, 27, 12, 0, tzinfo=UTC), datetime(2026, 11, 27, 14, 0, tzinfo=UTC))
    # During the sale, it is the running one; after it, next week's.
    assert weekly.next_window(demo.timezone, datetime(2026, 11, 27, 13, 0, tzinfo=UTC))[0] == start
    assert weekly.next_window(demo.timezone, datetime(2026, 11, 27, 14, 0, tzinfo=UTC))[0] == \
        start + timedelta(days=7)
    assert stock.status_of  # the plugin's module is importable on its own


def test_a_reservation_an_open_checkout_holds_does_not_expire_under_it(shop):
    sale = shop.create(stock=1)
    member_id, token = shop.member("m-1")
    _, other = shop.member("m-2")
    mine = shop.reserve(token, sale["id"])["reservation"]["id"]
    runtime, alpha = shop.runtime, shop.runtime.shop("alpha")
    with runtime.transaction(alpha) as ctx:
        ctx.hook.checkout_hold(ctx=ctx, checkout_id="co-1", expires_at=ctx.now + HOLD, cart=Cart(
            lines=(OrderLine("FLASH-1", 1, 9900),), member_id=member_id, reservation_ids=(mine,)))
    clock.set_now(NOW + timedelta(minutes=20))  # past the reservation's 15 minutes, inside the checkout
    jobs.run_due(runtime, "alpha", force=True)
    assert codes(shop.reserve(other, sale["id"], 1, "late")) == ["SOLD_OUT"]  # still held for the checkout
    assert counters(runtime, sale["id"]) == (1, 1, 0)
    with runtime.transaction(alpha) as ctx:
        ctx.hook.checkout_release(ctx=ctx, checkout_id="co-1", reason="expired")
    jobs.run_due(runtime, "alpha", force=True)
    assert counters(runtime, sale["id"]) == (1, 0, 0)  # released with its checkout, then expired


def test_paying_a_lapsed_reservation_never_passes_the_member_limit(shop):
    sale = shop.create(stock=10)  # 3 a member
    member_id, token = shop.member("m-1")
    first = shop.reserve(token, sale["id"], 3)["reservation"]["id"]
    clock.set_now(NOW + timedelta(minutes=20))
    jobs.run_due(shop.runtime, "alpha", force=True)
    second = shop.reserve(token, sale["id"], 3, "again")["reservation"]["id"]
    paid = pay(shop.api, shop.key, member_id, "o-1", reservationIds=[first, second])
    found = sorted((e["kind"], e["code"]) for e in paid["effects"] if e["plugin"] == "flash_sale")
    assert found == [("CONFLICT", "LIMIT_EXCEEDED"), ("RESERVATION_CONFIRMED", None)]
    with shop.runtime.db.read() as conn:
        assert conn.execute(select(FlashSaleMember.bought).where(FlashSaleMember.member_id == member_id)).scalar() == 3


def test_idempotency_keys_are_checked(shop):
    sale = shop.create()
    _, token = shop.member("m-1")
    for key in ("", "   ", "k" * 121):
        assert codes(shop.reserve(token, sale["id"], 1, key)) == ["INVALID_KEY"]
    assert counters(shop.runtime, sale["id"])[1] == 0
