"""Money in integer minor units for plugins that price: how it is written in messages, and how a discount
falls on a cart's lines (core itself prices nothing: the cart quote is the checkout plugin's).

Every plugin that prices uses these, so that a percentage rounds down the same way on every line and the
shares of a discount always add up to the fen.
"""

from __future__ import annotations

from collections.abc import Iterable

from memberkit.core.types import OrderLine


def money(amount: int, currency: str | None = None) -> str:
    """Minor units as a plain decimal for messages, without floats: 12345 -> "123.45" ("123.45 CNY")."""
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole}.{cents:02d}" + (f" {currency}" if currency else "")


def line_shares(lines: Iterable[OrderLine], subtotal: int) -> list[int]:
    """Each line's share of the price so far: its list amount, or, once earlier stages took something off,
    its proportional share of `subtotal`, rounded down to the minor unit."""
    amounts = [line.amount for line in lines]
    total = sum(amounts)
    if total <= 0 or subtotal <= 0:
        return [0] * len(amounts)
    if subtotal >= total:
        return amounts
    return [amount * subtotal // total for amount in amounts]


def percent_off(lines: tuple[OrderLine, ...], subtotal: int, percent: int, excluded: Iterable[str] = ()) -> int:
    """`percent` of the price so far as a positive discount, rounded down on each line; lines of an
    `excluded` category get nothing."""
    skip = set(excluded)
    return sum(share * percent // 100 for line, share in zip(lines, line_shares(lines, subtotal), strict=True)
               if line.category not in skip)


def spread(amounts: list[int], amount: int) -> list[int]:
    """Split `amount` over lines in proportion to `amounts`, each share rounded towards zero and the units
    left over given one each to the lines with the largest remainders (the first on a tie), so the shares add
    up to `amount` exactly; a discount no larger than the lines' sum takes no line below zero."""
    base = sum(amounts)
    if not amount or base <= 0:
        return [0] * len(amounts)
    size = abs(amount)
    shares = [size * a // base for a in amounts]
    by_remainder = sorted(range(len(amounts)), key=lambda i: (-(size * amounts[i] % base), i))
    for i in by_remainder[:size - sum(shares)]:
        shares[i] += 1
    return [share if amount > 0 else -share for share in shares]
