"""The server's secrets, and the keyed hashes made with them: personal data and payloads are compared by
HMAC, never kept in plain text (a plain hash of an 11-digit phone number is brute-forced in minutes)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from functools import cache, cached_property


@dataclass(frozen=True)
class ServerSecrets:
    token_keys: tuple[bytes, ...]  # the first signs member tokens; all of them verify (rotation)
    pii_keys: tuple[bytes, ...]  # the first keys new hashes of personal data and payloads; all of them verify

    def token_key_id(self, key: bytes) -> str:
        return hashlib.sha256(b"kid" + key).hexdigest()[:8]

    @property
    def pii_key(self) -> bytes:
        return self.pii_keys[0]

    @cached_property
    def pii_key_id(self) -> str:
        return self.token_key_id(self.pii_key)


def _listed(variable: str) -> list[str]:
    return [s.strip() for s in os.environ.get(variable, "").split(",") if s.strip()]


@cache
def server_secrets() -> ServerSecrets:
    """From MEMBERKIT_TOKEN_SECRETS and MEMBERKIT_PII_KEY (each comma-separated, newest first: rotate by
    prepending, drop an old one when nothing made with it is still needed). On a developer's machine the
    CLI and the server set them from a generated file first (memberkit.secrets)."""
    tokens, pii = _listed("MEMBERKIT_TOKEN_SECRETS"), _listed("MEMBERKIT_PII_KEY")
    if not (tokens and pii):
        raise RuntimeError("MEMBERKIT_TOKEN_SECRETS and MEMBERKIT_PII_KEY must be set (memberkit's CLI and "
                           "server generate development ones)")
    return ServerSecrets(tuple(t.encode() for t in tokens), tuple(p.encode() for p in pii))


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
    return hmac.digest(key, message, "sha256").hex()  # hmac.new(...).hexdigest(), without its Python object


def _versioned(key_id: str, digest: str) -> str:
    return f"{key_id}:{digest}"[:64]


def keyed_hash(value: str | dict, kind: str = "payload") -> str:
    """HMAC of a normalised phone or email (equal ones compare equal without being stored), or of an event's
    payload (tells a repeat from a conflict without keeping the payload); made with the newest key."""
    keys = server_secrets()
    return _versioned(keys.pii_key_id, _hmac(keys.pii_key, _message(value, kind)))


def keyed_hashes(value: str | dict, kind: str = "payload") -> tuple[str, ...]:
    """Every stored form of `value`'s hash, whichever current key made it: for lookups and comparisons."""
    keys, message = server_secrets(), _message(value, kind)
    digests = [(keys.token_key_id(key), _hmac(key, message)) for key in keys.pii_keys]
    return tuple(form for key_id, digest in digests for form in (_versioned(key_id, digest), digest))


def _fraud(key: bytes, stored: str) -> str:
    return _hmac(hmac.new(key, b"memberkit:fraud-hash", hashlib.sha256).digest(), stored.encode())


def fraud_hashes(stored: str) -> tuple[str, ...]:
    """An erased member's stored phone or email hash, re-keyed for core_fraud_hash: HMAC under a key of
    its own, derived from the PII key that made it (each key, for a hash from before key ids were kept)."""
    keys = server_secrets()
    made_by = [key for key in keys.pii_keys if stored.startswith(keys.token_key_id(key) + ":")]
    return tuple(_fraud(key, stored) for key in made_by or keys.pii_keys)


def fraud_hashes_of(value: str | None, kind: str) -> tuple[str, ...]:
    """What a new phone or email is looked up by in core_fraud_hash: each stored form of its keyed hash, re-keyed."""
    forms = keyed_hashes(value, kind) if value is not None else ()
    return tuple(dict.fromkeys(fraud for stored in forms for fraud in fraud_hashes(stored)))
