"""Segments as settings (RULES.md section 7): named rules over tier, tags, lifecycle, RFM band, purchases
of a category in a window, join date and birthday month; membership kept by the events that change a
member's facts and by the hourly job, equal to a recomputation from scratch; the member search."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from memberkit import config as settings_module
from memberkit.plugins.segments import rules
from memberkit.plugins.segments.models import SegmentsMember
from memberkit.testing import reset_postgres

DEMO = (Path(__file__).resolve().parents[1] / "plugins.toml").read_text()
MEMBER = "query($id: ID!) { member(id: $id) { tags segments lifecycle { stage } } }"
SEGMENTS = "{ segments { code name memberCount } }"
SET_TIER = """mutation($input: SetMemberTierInput!) { setMemberTier(input: $input) { errors { code } } }"""
UPDATE = """mutation($input: UpdateMemberInput!) { updateMember(input: $input) { errors { code message } } }"""
TAG = """mutation($input: TagMembersInput!) { tagMembers(input: $input) { changed errors { code } } }"""
MEMBERS = """query($filter: MemberFilter, $first: Int, $after: String) {
  members(filter: $filter, first: $first, after: $after) {
    edges { node { id externalId segments } cursor } pageInfo { hasNextPage endCursor } totalCount } }"""
SHOES = [{"sku": "SNEAKER-1", "quantity": 1, "unitPrice": 50000, "category": "shoes"}]
HATS = [{"sku": "HAT-1", "quantity": 1, "unitPrice": 50000, "category": "hats"}]

# Every kind of condition, one segment each, in the demo shop (which already has sneaker_fans and vip_at_risk).
EVERY_KIND = '''
[[shops.demo.settings.segments.segments]]
code = "silver_or_gold"
name = "Silver or gold"
tiers = ["SILVER", "GOLD"]

[[shops.demo.settings.segments.segments]]
code = "vip_tagged"
name = "VIP and wholesale"
tags_all = ["vip", "wholesale"]

[[shops.demo.settings.segments.segments]]
code = "outdoor"
name = "Hikers or climbers"
tags_any = ["hiking", "climbing"]

[[shops.demo.settings.segments.segments]]
code = "newcomers"
name = "New members"
lifecycle = ["NEW"]

[[shops.demo.settings.segments.segments]]
code = "champions"
name = "Champions"
rfm_bands = ["CHAMPIONS"]

[[shops.demo.settings.segments.segments]]
code = "recent_joiners"
name = "Joined in the last 7 days"
joined_within_days = 7

[[shops.demo.settings.segments.segments]]
code = "class_of_2026"
name = "Joined in 2026"
joined_from = 2026-01-01T00:00:00+08:00
joined_to = 2027-01-01T00:00:00+08:00

[[shops.demo.settings.segments.segments]]
code = "march_birthdays"
name = "Born in March"
birthday_months = [3]
'''


def at(text: str) -> datetime:
    return datetime.fromisoformat(text + "+08:00").astimezone(UTC)


@pytest.fixture
def shop(memberkit):
    programme = memberkit(DEMO + EVERY_KIND)
    programme.clock.set(at("2026-03-10T12:00:00"))
    return programme


def segments_of(shop, member_id: str) -> list[str]:
    return shop.integrator("demo")(MEMBER, {"id": member_id})["member"]["segments"]


def recomputed_changes(shop) -> dict[str, tuple[int, int]]:
    """What a recomputation from scratch would change (rolled back): nothing, if upkeep kept up."""
    shop_settings = shop.runtime.settings.shop("demo")
    with shop.runtime.db.write() as conn:
        ctx = shop.runtime.context(shop_settings, conn, now=shop.clock.now())
        changes = {code: moved for code, moved in rules.refresh(ctx).items() if moved != (0, 0)}
        conn.rollback()
    return changes


def test_an_order_of_shoes_makes_a_sneaker_fan_at_once_and_a_full_refund_or_time_undoes_it(shop):
    member_id = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member_id, "o-1", 50000, lines=SHOES)
    shop.pay("demo", member_id, "o-2", 50000, lines=HATS)
    assert "sneaker_fans" not in segments_of(shop, member_id)  # one order of shoes: not yet
    shop.clock.set(at("2026-05-01T12:00:00"))
    shop.pay("demo", member_id, "o-3", 50000, lines=SHOES)
    found = shop.integrator("demo")(MEMBER, {"id": member_id})["member"]
    assert "sneaker_fans" in found["segments"] and found["tags"] == []  # a segment is never a tag
    counts = {s["code"]: s for s in shop.integrator("demo")(SEGMENTS)["segments"]}
    assert counts["sneaker_fans"] == {"code": "sneaker_fans", "name": "运动鞋爱好者", "memberCount": 1}

    shop.refund("demo", "o-3", "r-3", 50000)  # refunded in full: no longer a purchase
    assert "sneaker_fans" not in segments_of(shop, member_id)
    shop.pay("demo", member_id, "o-4", 50000, lines=SHOES)
    assert "sneaker_fans" in segments_of(shop, member_id)
    # o-1 was paid on 10 March: day 180 is 5 September, so on the 6th only o-4 is within the window
    shop.clock.set(at("2026-09-05T23:00:00"))
    shop.run_jobs("demo", force=True)
    assert "sneaker_fans" in segments_of(shop, member_id)
    shop.clock.set(at("2026-09-06T00:30:00"))
    shop.run_jobs("demo", force=True)
    assert "sneaker_fans" not in segments_of(shop, member_id)
    assert recomputed_changes(shop) == {}


def test_vip_at_risk_follows_the_tier_and_the_stage(shop):
    member_id = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member_id, "o-1", 1000)
    errors = shop.integrator("demo")(SET_TIER, {"input": {"memberId": member_id, "tierCode": "GOLD",
                                                          "reason": "test"}})["setMemberTier"]["errors"]
    assert errors == []
    assert "vip_at_risk" not in segments_of(shop, member_id)  # gold, but active
    shop.clock.set(at("2026-06-10T12:00:00"))  # day 92: dormant by the job
    shop.run_jobs("demo", force=True)
    assert "vip_at_risk" in segments_of(shop, member_id)
    shop.pay("demo", member_id, "o-2", 1000)  # active again, at once
    assert "vip_at_risk" not in segments_of(shop, member_id)
    assert recomputed_changes(shop) == {}


def test_a_rule_of_every_kind(shop):
    api = shop.integrator("demo")
    march = shop.sign_up("demo", "crm-march", birthday="1990-03-15")
    other = shop.sign_up("demo", "crm-other", birthday="1990-04-15")
    assert set(segments_of(shop, march)) == {"newcomers", "recent_joiners", "class_of_2026", "march_birthdays"}
    assert set(segments_of(shop, other)) == {"newcomers", "recent_joiners", "class_of_2026"}

    api(SET_TIER, {"input": {"memberId": other, "tierCode": "SILVER", "reason": "test"}})
    assert "silver_or_gold" in segments_of(shop, other)
    api(SET_TIER, {"input": {"memberId": other, "tierCode": "DIAMOND", "reason": "test"}})
    assert "silver_or_gold" not in segments_of(shop, other)

    api(UPDATE, {"input": {"memberId": march, "tags": ["vip"]}})
    assert "vip_tagged" not in segments_of(shop, march)
    api(TAG, {"input": {"memberIds": [march, other], "add": ["wholesale", "climbing"], "idempotencyKey": "t-1"}})
    assert "vip_tagged" in segments_of(shop, march) and "vip_tagged" not in segments_of(shop, other)
    assert "outdoor" in segments_of(shop, march) and "outdoor" in segments_of(shop, other)
    api(TAG, {"input": {"memberIds": [other], "remove": ["climbing"], "idempotencyKey": "t-2"}})
    assert "outdoor" not in segments_of(shop, other)

    api(UPDATE, {"input": {"memberId": other, "birthday": "1990-03-01"}})
    assert "march_birthdays" in segments_of(shop, other)

    shop.pay("demo", march, "o-1", 90000)
    assert "newcomers" not in segments_of(shop, march)  # an order moves the stage, and the segment with it

    shop.clock.set(at("2026-03-16T23:59:00"))  # joined 10 March: day 7 is the 16th
    shop.run_jobs("demo", force=True)
    assert "recent_joiners" in segments_of(shop, march)
    shop.clock.set(at("2026-03-17T00:01:00"))
    runs = shop.run_jobs("demo", force=True)
    assert "recent_joiners" not in segments_of(shop, march)
    assert "champions" in segments_of(shop, march)  # the RFM run (its only scored member scores 5s)
    assert "class_of_2026" in segments_of(shop, march)
    assert runs["segments.refresh"].result  # the job says what it moved
    assert recomputed_changes(shop) == {}


def test_memberkit_check_names_an_unknown_tier_band_or_field_and_a_rule_without_conditions(settings_file):
    def problems(extra: str) -> list[tuple[str | None, str]]:
        with pytest.raises(settings_module.SettingsError) as caught:
            settings_module.load(settings_file(DEMO + extra))
        return [(p.key, p.message) for p in caught.value.problems]

    head = '[[shops.demo.settings.segments.segments]]\ncode = "x"\nname = "X"\n'
    assert problems(head + 'min_tier = "PLATINUM"\n') == [(
        "segments.2.min_tier", "unknown tier 'PLATINUM': expected one of this shop's tiers (DIAMOND, GOLD, REGULAR, "
                               "SILVER)")]
    assert problems(head + 'rfm_bands = ["WHALES"]\n') == [(
        "segments.2.rfm_bands.0", "unknown RFM band 'WHALES': expected one of this shop's rfm_bands (AT_RISK, "
                                  "CHAMPIONS, HIBERNATING, LOYAL, OTHERS)")]
    assert problems(head + 'colour = "red"\n') == [("segments.2.colour", "unknown setting (check its spelling)")]
    [(key, message)] = problems(head)
    assert key == "segments.2" and message.startswith("segment 'x' has no condition: expected one or more of tiers")
    [(key, message)] = problems(head.replace('"x"', '"sneaker_fans"') + "birthday_months = [3]\n")
    assert message == "segment 'sneaker_fans' is defined twice: expected each code once"
    [(key, message)] = problems(head + "birthday_months = [13]\n")
    assert message == "x.birthday_months: 13 is not a month: expected 1 to 12"


def test_the_member_search_combines_filters_pages_by_keyset_and_counts(shop):
    api = shop.integrator("demo")
    ids = [shop.sign_up("demo", f"crm-{i:02}", tags=["vip"] if i % 2 else []) for i in range(7)]
    for member_id in ids[:3]:
        shop.pay("demo", member_id, f"o-{member_id}", 1000)

    def search(filter=None, first=2, after=None) -> dict:
        return api(MEMBERS, {"filter": filter, "first": first, "after": after})["members"]

    page = search({"tagsAll": ["vip"], "lifecycle": "ACTIVE"})
    assert page["totalCount"] == 1 and [e["node"]["id"] for e in page["edges"]] == [ids[1]]
    seen, after = [], None
    while True:
        page = search({"tagsAny": ["vip"]}, first=2, after=after)
        seen += [e["node"]["id"] for e in page["edges"]]
        if after is None:  # a member who joins mid-way repeats nobody and shifts nobody
            shop.sign_up("demo", "crm-late", tags=["vip"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    vips = sorted(ids[1::2])
    assert seen == sorted(seen) and len(seen) == len(set(seen)) and set(vips) <= set(seen)
    assert search({"tagsAny": ["vip"]})["totalCount"] == 4
    assert search({"segment": "newcomers"}, first=50)["totalCount"] == 5
    assert search({"joinedTo": "2026-03-10T11:00:00+08:00"})["totalCount"] == 0
    assert search({"tier": "REGULAR", "segment": "newcomers", "tagsAny": ["vip"]})["totalCount"] == 3
    assert search()["totalCount"] == 8

    [refused] = api.errors(MEMBERS, {"filter": {"segment": "nobody"}})
    assert refused["message"] == ("members: filter.segment 'nobody' is not one of this shop's (sneaker_fans, "
                                  "vip_at_risk, silver_or_gold, vip_tagged, outdoor, newcomers, champions, "
                                  "recent_joiners, class_of_2026, march_birthdays)")
    [refused] = api.errors(MEMBERS, {"first": 201})
    assert refused["message"] == "members: first is 201: expected 1 to 200"
    [refused] = api.errors(MEMBERS, {"after": "bm90LWEtY3Vyc29y"})
    assert refused["message"] == "members: `after` is not a cursor this connection gave"
    assert shop.storefront("demo").errors(MEMBERS, {})  # integrators only


EVENTS = st.lists(st.one_of(
    st.tuples(st.just("join"), st.sampled_from([None, "1990-03-15", "1991-07-01"]),
              st.lists(st.sampled_from(["vip", "wholesale", "hiking"]), max_size=2, unique=True)),
    st.tuples(st.just("order"), st.integers(0, 5), st.sampled_from(["shoes", "hats", None])),
    st.tuples(st.just("refund"), st.integers(0, 30)),
    st.tuples(st.just("tier"), st.integers(0, 5), st.sampled_from(["REGULAR", "SILVER", "GOLD", "DIAMOND"])),
    st.tuples(st.just("tags"), st.integers(0, 5), st.lists(st.sampled_from(["vip", "wholesale", "climbing"]),
                                                          max_size=3, unique=True)),
    st.tuples(st.just("birthday"), st.integers(0, 5), st.sampled_from(["1990-03-02", "1990-11-30"])),
    st.tuples(st.just("days"), st.integers(1, 120)),
), min_size=1, max_size=25)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=EVENTS)
def test_membership_kept_by_events_equals_a_recomputation_from_scratch(memberkit, events):
    """Random histories: after every step, the segments the events kept equal the rules recomputed over the
    whole shop (time passing runs the jobs, as the hourly timer would)."""
    shop = memberkit(DEMO + EVERY_KIND)
    if not shop.runtime.db.is_sqlite:  # each example starts from an empty shop (SQLite: a new file each)
        reset_postgres(shop.runtime.db)
    shop.clock.set(at("2026-01-01T12:00:00"))
    api, members, orders = shop.integrator("demo"), [], []
    for step, event in enumerate(events):
        kind, *args = event
        if kind == "join":
            birthday, tags = args
            members.append(shop.sign_up("demo", f"crm-{step}", tags=tags,
                                        **({"birthday": birthday} if birthday else {})))
        elif kind == "days":
            shop.clock.set(shop.clock.now() + timedelta(days=args[0]))
            shop.run_jobs("demo", force=True)
        elif not members or (kind == "refund" and not orders):
            continue
        elif kind == "order":
            member_id = members[args[0] % len(members)]
            lines = [{"sku": "S", "quantity": 1, "unitPrice": 20000, "category": args[1]}] if args[1] else None
            shop.pay("demo", member_id, f"o-{step}", 20000, lines=lines)
            orders.append(f"o-{step}")
        elif kind == "refund":
            order_id = orders.pop(args[0] % len(orders))
            shop.refund("demo", order_id, f"r-{step}", 20000)
        elif kind == "tier":
            api(SET_TIER, {"input": {"memberId": members[args[0] % len(members)], "tierCode": args[1],
                                     "reason": "test"}})
        elif kind == "tags":
            api(UPDATE, {"input": {"memberId": members[args[0] % len(members)], "tags": args[1]}})
        elif kind == "birthday":
            api(UPDATE, {"input": {"memberId": members[args[0] % len(members)], "birthday": args[1]}})
        assert recomputed_changes(shop) == {}, (step, event)
    with shop.runtime.db.read() as conn:
        assert {row.shop for row in conn.execute(select(SegmentsMember.shop))} <= {"demo"}


def test_two_shops_never_mix(memberkit):
    other = ('[shops.other]\nname = "Other"\ncurrency = "CNY"\ntimezone = "Asia/Shanghai"\nplugins = ["segments"]\n'
             '[[shops.other.settings.segments.segments]]\ncode = "sneaker_fans"\nname = "Sneaker fans"\n'
             'bought = { category = "shoes", at_least = 1, within_days = 30 }\n\n')
    shop = memberkit(other + DEMO)
    shop.clock.set(at("2026-03-10T12:00:00"))
    ours, theirs = shop.sign_up("demo", "crm-1"), shop.sign_up("other", "crm-1")
    shop.pay("other", theirs, "o-1", 50000, lines=SHOES)  # one order is enough over there
    shop.pay("demo", ours, "o-1", 50000, lines=SHOES)     # and not here
    shop.run_jobs(force=True)
    assert segments_of(shop, ours) == []
    assert shop.integrator("other")(MEMBER, {"id": theirs})["member"]["segments"] == ["sneaker_fans"]
    counts = {shop_slug: {s["code"]: s["memberCount"] for s in shop.integrator(shop_slug)(SEGMENTS)["segments"]}
              for shop_slug in ("demo", "other")}
    assert counts == {"demo": {"sneaker_fans": 0, "vip_at_risk": 0}, "other": {"sneaker_fans": 1}}
    for shop_slug, member_id in (("demo", ours), ("other", theirs)):
        page = shop.integrator(shop_slug)(MEMBERS, {"first": 50})["members"]
        assert [e["node"]["id"] for e in page["edges"]] == [member_id] and page["totalCount"] == 1


def test_the_job_fills_in_tiers_segments_were_never_told(shop):
    """Members from before the shop enabled segments: the hourly job asks the tier plugin, a batch at a time."""
    from memberkit.plugins.segments.models import SegmentsLifecycle

    api = shop.integrator("demo")
    member_id = shop.sign_up("demo", "crm-1")
    api(SET_TIER, {"input": {"memberId": member_id, "tierCode": "GOLD", "reason": "test"}})
    table = SegmentsLifecycle.__table__
    with shop.runtime.db.write() as conn:  # as if segments had been enabled after
        conn.execute(table.update().values(tier_code=None, tier_rank=None))
    assert shop.integrator("demo")(MEMBERS, {"filter": {"tier": "GOLD"}})["members"]["totalCount"] == 0
    shop.run_jobs("demo", force=True)
    with shop.runtime.db.read() as conn:
        assert conn.execute(select(table.c.tier_code, table.c.tier_rank)).one() == ("GOLD", 3)
    assert shop.integrator("demo")(MEMBERS, {"filter": {"tier": "GOLD"}})["members"]["totalCount"] == 1


def test_the_lifecycle_job_moves_every_member_a_batch_at_a_time(shop, monkeypatch):
    from memberkit.plugins.segments import lifecycle

    monkeypatch.setattr(lifecycle, "JOB_BATCH", 2)
    api = shop.integrator("demo")
    members = [shop.sign_up("demo", f"crm-{n}") for n in range(5)]
    for member_id in members:
        shop.pay("demo", member_id, f"o-{member_id}", 1000)
        api(SET_TIER, {"input": {"memberId": member_id, "tierCode": "GOLD", "reason": "test"}})
    shop.clock.set(at("2026-06-10T12:00:00"))  # day 92
    assert shop.run_jobs("demo", force=True)["segments.lifecycle"].result == "5 member(s) dormant"
    stages = {api(MEMBER, {"id": m})["member"]["lifecycle"]["stage"] for m in members}
    assert stages == {"DORMANT"}
    assert [s["memberCount"] for s in api(SEGMENTS)["segments"] if s["code"] == "vip_at_risk"] == [5]


def test_the_rfm_job_moves_the_segments_on_bands_at_once(shop):
    from memberkit.plugins.segments import rfm

    member_id = shop.sign_up("demo", "crm-1")
    shop.pay("demo", member_id, "o-1", 90000)
    with shop.runtime.transaction(shop.runtime.shop("demo")) as ctx:  # the daily job alone, no hourly refresh
        rfm.compute(ctx)
    assert "champions" in segments_of(shop, member_id)
