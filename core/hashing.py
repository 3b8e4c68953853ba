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
from functools import cache
from pathlib import Path

log = logging.getLogger("memberkit.hashing")


@dataclass(frozen=True)
class ServerSecrets:
    token_keys: tuple[bytes, ...]  # the first signs member tokens; all of them verify (rotation)
    pii_key: bytes  # keys the hashes of personal data; changing it breaks every comparison

    def token_key_id(self, key: bytes) -> str:
        return hashlib.sha256(b"kid" + key).hexdigest()[:8]


def _dev_secrets_file() -> Path:
    return Path(os.environ.get("MEMBERKIT_SECRETS_FILE", "memberkit-secret.key"))


@cache
def server_secrets() -> ServerSecrets:
    """From MEMBERKIT_TOKEN_SECRETS (comma-separated, newest first) and MEMBERKIT_PII_KEY.

    Without them (a developer's machine) random ones are generated once into a 0600 file, so several
    server processes and the CLI agree.
    """
    tokens = [s.strip() for s in os.environ.get("MEMBERKIT_TOKEN_SECRETS", "").split(",") if s.strip()]
    pii = os.environ.get("MEMBERKIT_PII_KEY", "").strip()
    if not (tokens and pii):
        path = _dev_secrets_file()
        if not path.exists():
            log.warning("no MEMBERKIT_TOKEN_SECRETS/MEMBERKIT_PII_KEY set: generating %s for development", path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump({"token": secrets.token_urlsafe(32), "pii": secrets.token_urlsafe(32)}, handle)
        stored = json.loads(path.read_text())
        tokens = tokens or [stored["token"]]
        pii = pii or stored["pii"]
    return ServerSecrets(tuple(t.encode() for t in tokens), pii.encode())


def keyed_hash(value: str, kind: str) -> str:
    """HMAC of a normalised personal value, so equal phones or emails compare equal without storing them."""
    normal = value.strip().lower()
    if kind == "phone":
        normal = "".join(c for c in normal if c.isdigit() or c == "+")
    return hmac.new(server_secrets().pii_key, f"{kind}:{normal}".encode(), hashlib.sha256).hexdigest()


def payload_hash(payload: dict) -> str:
    """A keyed hash of an event's payload: tells repeats from conflicts without keeping the payload."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(server_secrets().pii_key, canonical.encode(), hashlib.sha256).hexdigest()


