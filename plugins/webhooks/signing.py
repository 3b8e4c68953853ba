"""Endpoint secrets and Standard Webhooks signatures.

An endpoint's secret is never stored. It is derived, when needed, from a server key and the endpoint's
random salt: ``whsec_`` + base64(HMAC-SHA256(server key, salt)). The server keys are
MEMBERKIT_WEBHOOK_KEYS (comma-separated, newest first); each is known by a short id (a hash of it) kept on
the endpoint, so adding a newer server key changes no existing secret, and an endpoint whose key was
removed says so instead of signing with another one.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import secrets
from datetime import date, datetime
from typing import Any

KEYS_VARIABLE = "MEMBERKIT_WEBHOOK_KEYS"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks prefix, not a secret)


class MissingServerKey(LookupError):
    def __init__(self, key_id: str):
        super().__init__(f"the server key {key_id} that derives this endpoint's secret is no longer in "
                         f"{KEYS_VARIABLE}: put it back, or rotate the endpoint's secret")


def server_keys() -> dict[str, bytes]:
    """The server keys by id, newest first."""
    return _keys_of(os.environ.get(KEYS_VARIABLE, ""))


@functools.lru_cache(maxsize=4)
def _keys_of(raw: str) -> dict[str, bytes]:
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    if not keys:
        raise RuntimeError(f"{KEYS_VARIABLE} is not set: webhook secrets cannot be derived")
    return {hashlib.sha256(key.encode()).hexdigest()[:12]: key.encode() for key in keys}


def new_secret_source() -> tuple[str, str]:
    """(key id, salt) for a new secret: the newest server key and fresh randomness."""
    return next(iter(server_keys())), secrets.token_hex(24)


def secret_of(key_id: str, salt: str) -> str:
    key = server_keys().get(key_id)
    if key is None:
        raise MissingServerKey(key_id)
    return SECRET_PREFIX + base64.b64encode(hmac.new(key, salt.encode(), hashlib.sha256).digest()).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One Standard Webhooks signature: ``v1,`` base64 HMAC-SHA256 of ``id.timestamp.body`` (hmac.new rather
    than hmac.digest, which lets go of the GIL that the serve worker's other thread then holds on to)."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(secrets_: list[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers: one signature per active secret, space-separated."""
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(sign(secret, message_id, timestamp, body) for secret in secrets_),
            "content-type": "application/json"}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def encode_data(data: dict[str, Any]) -> str:
    """An event's data as stored: JSON, instants in UTC with a Z."""
    return json.dumps(data, default=_plain, separators=(",", ":"), ensure_ascii=False)


def message_id(event_id: int) -> str:
    return f"evt_{event_id}"


def body(event_type: str, created_at: datetime, member_id: str | None, external_id: str | None,
         sequence: int | None, data: str) -> bytes:
    """What every attempt of an event sends, byte for byte: {"type", "timestamp", "data"}."""
    payload = {"member": {"id": member_id, "externalId": external_id} if member_id else None,
               "sequence": sequence, **json.loads(data)}
    return json.dumps({"type": event_type, "timestamp": _plain(created_at), "data": payload},
                      separators=(",", ":"), ensure_ascii=False).encode()
