"""The one clock memberkit reads: UTC, and settable so tests can move time."""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import UTC, datetime

_frozen: datetime | None = None


def now() -> datetime:
    if _frozen is not None:
        return _frozen
    fixed = os.environ.get("MEMBERKIT_NOW")  # for running jobs "as of" a moment from the CLI
    if fixed:
        moment = datetime.fromisoformat(fixed)
        if moment.tzinfo is None:
            raise ValueError(f"MEMBERKIT_NOW={fixed!r} needs a UTC offset, e.g. 2026-11-23T20:00:00+08:00")
        return moment.astimezone(UTC)
    return datetime.now(UTC)


def set_now(moment: datetime | None) -> None:
    global _frozen
    if moment is not None and moment.tzinfo is None:
        raise ValueError("the clock takes an aware datetime")
    _frozen = moment.astimezone(UTC) if moment else None


@contextmanager
def frozen(moment: datetime):
    previous = _frozen
    set_now(moment)
    try:
        yield
    finally:
        set_now(previous)
