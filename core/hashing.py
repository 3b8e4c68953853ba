"""The server's secrets, and the keyed hashes made with them: personal data and payloads are compared by
HMAC, never kept in plain text (a plain hash of an 11-digit phone number is brute-forced in minutes)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from functools import cache


def key_id(key: bytes) -> str:
    """A key's public name, kept with what the key made, so that what an older key made is still checked."""
    return hashlib.sha256(b"kid" + key).hexdigest()[:8]


def listed_secrets(variable: str) -> tuple[bytes, ...]:
    """A comma-separated list of secrets in the environment, newest first: rotate by prepending, drop an old
    one when nothing made with it is still needed. On a developer's machine the CLI and the server set them
    from a generated file first (memberkit.secrets)."""
    found = tuple(s.strip().encode() for s in os.environ.get(variable, "").split(",") if s.strip())
    if not found:
        raise RuntimeError(f"{variable} must be set (memberkit's CLI and server generate development ones)")
    return found


@cache
def pii_keys() -> tuple[tuple[str, bytes], ...]:
    """MEMBERKIT_PII_KEY as (key id, key) pairs: the first makes new hashes, all of them check old ones."""
    return tuple((key_id(key), key) for key in listed_secrets("MEMBERKIT_PII_KEY"))


# A keyed hash is "<key id>:<HMAC-SHA256 in hex, cut to 64 characters>", so a hash made before a rotation is
# still checked with the key that made it; 64 hex characters alone are from before versions were kept.


def _message(value: str | dict, kind: str) -> bytes:
    if isinstance(value, dict):  # an event's payload
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    normal = value.strip().lower()
    if kind == "phone":
        normal = "".join(c for c in normal if c.isdigit() or c == "+")
    return f"{kind}:{normal}".encode()


def _hmac(key: bytes, message: bytes) -> str:
    # hmac.new: hmac.digest lets go of the GIL, and taking it back from a busy event loop costs ~0.4 ms
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _versioned(key_id: str, digest: str) -> str:
    return f"{key_id}:{digest}"[:64]


def keyed_hash(value: str | dict, kind: str = "payload") -> str:
    """HMAC of a normalised phone or email (equal ones compare equal without being stored), or of an event's
    payload (tells a repeat from a conflict without keeping the payload); made with the newest key."""
    newest_id, newest = pii_keys()[0]
    return _versioned(newest_id, _hmac(newest, _message(value, kind)))


def keyed_hashes(value: str | dict, kind: str = "payload") -> tuple[str, ...]:
    """Every stored form of `value`'s hash, whichever current key made it: for lookups and comparisons."""
    message = _message(value, kind)
    digests = [(made_by, _hmac(key, message)) for made_by, key in pii_keys()]
    return tuple(form for made_by, digest in digests for form in (_versioned(made_by, digest), digest))
