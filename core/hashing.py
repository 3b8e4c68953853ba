"""The server's secrets, and the keyed hashes made with them: personal data and payloads are compared by
HMAC, never kept in plain text (a plain hash of an 11-digit phone number is brute-forced in minutes)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

from memberkit.core.settings import DEFAULT_CONFIG

log = logging.getLogger("memberkit.hashing")


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


def _dev_secrets_file() -> Path:
    """MEMBERKIT_SECRETS_FILE, or memberkit-secret.key beside the settings file (MEMBERKIT_CONFIG or
    ./plugins.toml): one place, whichever folder a command or the server is started from."""
    if os.environ.get("MEMBERKIT_SECRETS_FILE"):
        return Path(os.environ["MEMBERKIT_SECRETS_FILE"]).resolve()
    return Path(os.environ.get("MEMBERKIT_CONFIG") or DEFAULT_CONFIG).resolve().parent / "memberkit-secret.key"


def _listed(variable: str) -> list[str]:
    return [s.strip() for s in os.environ.get(variable, "").split(",") if s.strip()]


@cache
def server_secrets() -> ServerSecrets:
    """From MEMBERKIT_TOKEN_SECRETS and MEMBERKIT_PII_KEY (each comma-separated, newest first: rotate by
    prepending, drop an old one when nothing made with it is still needed).

    Without them (a developer's machine) random ones are generated once into a 0600 file (see
    _dev_secrets_file), so several server processes and the CLI agree; the log says which and where.
    """
    tokens, pii = _listed("MEMBERKIT_TOKEN_SECRETS"), _listed("MEMBERKIT_PII_KEY")
    if not (tokens and pii):
        path = _dev_secrets_file()
        missing = " and ".join(name for name, value in (("MEMBERKIT_TOKEN_SECRETS", tokens),
                                                        ("MEMBERKIT_PII_KEY", pii)) if not value)
        if not path.exists():
            log.warning("%s not set: generated development secrets into %s", missing, path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump({"token": secrets.token_urlsafe(32), "pii": secrets.token_urlsafe(32)}, handle)
        else:
            log.info("%s not set: using the development secrets in %s", missing, path)
        stored = json.loads(path.read_text())
        tokens = tokens or [stored["token"]]
        pii = pii or [stored["pii"]]
    return ServerSecrets(tuple(t.encode() for t in tokens), tuple(p.encode() for p in pii))


# A keyed hash is "<key id>:<HMAC-SHA256, hex, cut to fit 64 characters>", so a hash made before a rotation
# is still checked with the key that made it. Hashes of 64 hex characters are from before versions were
# kept: any current key may have made them.
_DIGEST_CHARS = 64 - 9


def _hmac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _versions(message: bytes) -> list[str]:
    """Every form a hash of `message` may be stored in: with each key, versioned and unversioned."""
    keys = server_secrets()
    found = []
    for key in keys.pii_keys:
        digest = _hmac(key, message)
        found += [f"{keys.token_key_id(key)}:{digest[:_DIGEST_CHARS]}", digest]
    return found


def _new(message: bytes) -> str:
    keys = server_secrets()
    return f"{keys.pii_key_id}:{_hmac(keys.pii_key, message)[:_DIGEST_CHARS]}"


def _normal(value: str, kind: str) -> bytes:
    normal = value.strip().lower()
    if kind == "phone":
        normal = "".join(c for c in normal if c.isdigit() or c == "+")
    return f"{kind}:{normal}".encode()


def keyed_hash(value: str, kind: str) -> str:
    """HMAC of a normalised personal value, so equal phones or emails compare equal without storing them."""
    return _new(_normal(value, kind))


def keyed_hash_versions(value: str, kind: str) -> tuple[str, ...]:
    """Every stored hash that means this phone or email, whichever current key made it (for lookups)."""
    return tuple(_versions(_normal(value, kind)))


def _payload_message(payload: dict) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def payload_hash(payload: dict) -> str:
    """A keyed hash of an event's payload: tells repeats from conflicts without keeping the payload."""
    return _new(_payload_message(payload))


def payload_matches(stored: str, payload: dict) -> bool:
    """Whether a stored payload hash is of `payload`, with the key that made it (rotation keeps it)."""
    return stored in _versions(_payload_message(payload))
