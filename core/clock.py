"""The one clock memberkit reads: UTC, and settable so tests can move time."""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import UTC, datetime

_frozen: datetime | None = None
_UNREAD = object()
_fixed: datetime | None | object = _UNREAD  # MEMBERKIT_NOW, read on the first call (the environment is slow)


def now() -> datetime:
    global _fixed
    if _frozen is not None:
        return _frozen
    if _fixed is _UNREAD:  # for running jobs "as of" a moment from the CLI
        raw = os.environ.get("MEMBERKIT_NOW")
        moment = datetime.fromisoformat(raw) if raw else None
        if moment is not None and moment.tzinfo is None:
            raise ValueError(f"MEMBERKIT_NOW={raw!r} needs a UTC offset, e.g. 2026-11-23T20:00:00+08:00")
        _fixed = moment.astimezone(UTC) if moment else None
    return _fixed or datetime.now(UTC)


def set_now(moment: datetime | None) -> None:
    global _frozen, _fixed
    if moment is not None and moment.tzinfo is None:
        raise ValueError("the clock takes an aware datetime")
    _frozen, _fixed = (moment.astimezone(UTC) if moment else None), _UNREAD  # MEMBERKIT_NOW read afresh


@contextmanager
def frozen(moment: datetime):
    previous = _frozen
    set_now(moment)
    try:
        yield
    finally:
        set_now(previous)
