"""Input checks shared by every write: each refuses with a code, the field and what was expected."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from memberkit.core.hashing import keyed_hash
from memberkit.core.types import MAX_INT, OrderLine, Refused

MAX_KEY_LENGTH = 200
MAX_TAGS, MAX_TAG_LENGTH = 50, 64
# The window a timestamp must fall in: facts (paidAt, refundedAt, joinedAt) from EARLIEST to a little past
# the server's clock, so a late report is never refused and a clock a few minutes fast is tolerated;
# schedules (a sale's start, a tier's expiry) from EARLIEST to LATEST.
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(minutes=5)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def require_aware(moment: datetime | None, field_name: str) -> None:
    """A timestamp must say its offset: 20:00 means nothing until it says where."""
    if moment is not None and moment.tzinfo is None:
        raise Refused("TIMESTAMP_WITHOUT_OFFSET",
                      f"{field_name} must carry a UTC offset, e.g. 2026-11-23T20:00:00+08:00", field_name)


def require_moment(moment: datetime | None, field_name: str, now: datetime, fact: bool = True) -> None:
    """A timestamp with its offset, inside the window above (`fact`: it has happened, so not ahead of now)."""
    require_aware(moment, field_name)
    if moment is None:
        return
    latest = now + CLOCK_SKEW if fact else LATEST
    if not EARLIEST <= moment <= latest:
        raise Refused("TIMESTAMP_OUT_OF_RANGE", f"{field_name} is {moment.isoformat()}: expected from "
                      f"{EARLIEST.isoformat()} to {latest.isoformat()}"
                      + (" (five minutes past the server's clock)" if fact else ""), field_name)


def require_key(value: str, field_name: str, longest: int = MAX_KEY_LENGTH) -> str:
    """An identifier or idempotency key, trimmed: 1 to `longest` printable characters."""
    value = value.strip()
    if not value or len(value) > longest:
        raise Refused("INVALID_KEY", f"{field_name} is {len(value)} characters: expected 1 to {longest}",
                      field_name)
    control = _CONTROL.search(value)
    if control:
        raise Refused("INVALID_CHARACTER", f"{field_name} has the control character U+{ord(control.group()):04X} "
                      f"at position {control.start()}: expected printable characters", field_name)
    return value


def check_tags(tags: list[str] | None) -> tuple[str, ...] | None:
    if tags is None:
        return None
    cleaned = tuple(dict.fromkeys(t.strip() for t in tags if t.strip()))
    if len(cleaned) > MAX_TAGS or any(len(t) > MAX_TAG_LENGTH for t in cleaned):
        raise Refused("INVALID_TAGS", f"at most {MAX_TAGS} tags of at most {MAX_TAG_LENGTH} characters", "tags")
    return cleaned


def phone_hash(phone: str | None) -> str | None:
    if phone is None:
        return None
    digits = sum(map(str.isdigit, phone))
    if not 5 <= digits <= 20 or any(not (c.isdigit() or c in "+- ()") for c in phone):
        raise Refused("INVALID_PHONE", f"phone has {digits} digits or other characters: expected 5 to 20 digits, "
                      "optionally with + - ( ) and spaces", "phone")
    return keyed_hash(phone, "phone")


def email_hash(email: str | None) -> str | None:
    if email is None:
        return None
    local, _, domain = email.strip().partition("@")
    if not local or "." not in domain or len(email) > 254:
        raise Refused("INVALID_EMAIL", "email is not an address: expected one like name@example.com", "email")
    return keyed_hash(email, "email")


def check_birthday(birthday: date | None, today: date) -> None:
    if birthday is not None and not (date(1900, 1, 1) <= birthday <= today):
        raise Refused("INVALID_BIRTHDAY", "birthday is in the future or before 1900: expected a past date after "
                      "1900-01-01", "birthday")


def order_lines(lines: list[dict[str, Any]] | None) -> tuple[OrderLine, ...]:
    """An order's or a cart's lines: a sku, at least one unit, a price that is not negative, and amounts
    (each line's and all of them together) that GraphQL's Int can serve back."""
    result, subtotal = [], 0
    for index, line in enumerate(lines or []):
        where = f"lines[{index}]"
        if not line["sku"].strip():
            raise Refused("INVALID_LINE", f"{where}.sku is empty: expected a sku", f"{where}.sku")
        if line["quantity"] <= 0:
            raise Refused("INVALID_LINE", f"{where}.quantity is {line['quantity']}: expected at least 1",
                          f"{where}.quantity")
        if line["unit_price"] < 0:
            raise Refused("NEGATIVE_AMOUNT", f"{where}.unitPrice is {line['unit_price']}: expected 0 or more",
                          f"{where}.unitPrice")
        subtotal += line["quantity"] * line["unit_price"]
        if subtotal > MAX_INT:
            raise Refused("AMOUNT_TOO_LARGE", f"{where}: the lines come to {subtotal}, more than {MAX_INT} "
                          "(quantity times unitPrice, summed over the lines)", f"{where}.quantity")
        result.append(OrderLine(line["sku"].strip(), line["quantity"], line["unit_price"], line.get("category")))
    return tuple(result)


def coupon_codes(codes: list[str] | None) -> tuple[str, ...]:
    """Coupon codes as the wallet keeps them (trimmed, upper case): distinct and not empty."""
    normal = [code.strip().upper() for code in codes or []]
    if len(set(normal)) != len(normal) or not all(normal):
        raise Refused("INVALID_COUPON_CODES", "couponCodes has an empty or repeated code: expected distinct codes",
                      "couponCodes")
    return tuple(normal)
