"""Who is calling the API: shop keys (stored as hashes) and member tokens signed with MEMBERKIT_TOKEN_SECRETS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Literal

from sqlalchemy import Connection, insert, select, update
from sqlmodel import Field, SQLModel

from memberkit.core import clock, hashing
from memberkit.core.models import Member, timestamp


class ApiKey(SQLModel, table=True):
    """An integrator's secret key, a storefront's publishable key or an operator's staff key (with its role);
    only its SHA-256 is stored."""

    __tablename__ = "core_api_key"

    id: str = Field(primary_key=True, max_length=32)
    shop: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)  # "secret" | "publishable" | "staff"
    role: str | None = Field(default=None, max_length=16)  # a staff key's: "viewer" | "operator"
    key_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)  # the first characters, to tell keys apart in listings
    label: str = Field(default="", max_length=200)
    created_at: datetime = timestamp()
    revoked_at: datetime | None = timestamp(nullable=True)


SECRET_PREFIX, PUBLISHABLE_PREFIX, STAFF_PREFIX, TOKEN_PREFIX = "mks_", "mkp_", "mkst_", "mkt_"
KEY_PREFIXES = {"secret": SECRET_PREFIX, "publishable": PUBLISHABLE_PREFIX, "staff": STAFF_PREFIX}
# What each staff role may do: "read" what the secret key reads (members, search, KPIs, webhooks, jobs, the
# audit log); "operate" also adjusts points, sets tiers and redelivers webhooks. Every other write stays with
# the secret key.
STAFF_PERMISSIONS: dict[str, frozenset[str]] = {"viewer": frozenset({"read"}),
                                                "operator": frozenset({"read", "operate"})}
KEY_CACHE_SECONDS = 2.0  # how long a process trusts a key or token lookup; bounds how late a revocation bites
MAX_TOKEN_TTL = 30 * 24 * 3600

Role = Literal["secret", "publishable", "staff", "member"]
KeyKind = Literal["secret", "publishable", "staff"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a shop key (integrator, storefront or staff) or a member token."""

    shop: str
    role: Role
    key_id: str | None = None
    member_id: str | None = None
    staff_role: str | None = None  # a staff key's role ("viewer" | "operator")
    label: str = ""  # a staff key's label, for the audit log

    def may(self, permission: str) -> bool:
        """Whether a staff key's role grants `permission` ("read" | "operate")."""
        return self.role == "staff" and permission in STAFF_PERMISSIONS.get(self.staff_role or "", ())


class AuthError(Exception):
    """Raised for missing or bad credentials; the message reveals nothing about why."""


# ---------------------------------------------------------------- shop keys


def secret_hash(key: str) -> str:
    """A key's, session id's or token's stored form."""
    return hashlib.sha256(key.encode()).hexdigest()  # keys are 256-bit random: a plain hash is enough


def create_key(conn: Connection, shop: str, kind: KeyKind, label: str = "",
               role: str | None = None) -> tuple[str, str]:
    """Make a key for `shop`; returns (key id, the key). The key itself is shown once and never stored.
    A staff key needs a `role` (viewer or operator); the other kinds take none."""
    if kind not in KEY_PREFIXES:
        raise ValueError(f"kind is {kind!r}: expected one of {', '.join(KEY_PREFIXES)}")
    if (kind == "staff") != (role is not None) or (role is not None and role not in STAFF_PERMISSIONS):
        raise ValueError(f"role is {role!r}: a staff key needs one of {', '.join(STAFF_PERMISSIONS)}, "
                         "other kinds none")
    key = KEY_PREFIXES[kind] + secrets.token_urlsafe(32)
    key_id = "key_" + secrets.token_hex(6)
    conn.execute(insert(ApiKey).values(
        id=key_id, shop=shop, kind=kind, role=role, key_hash=secret_hash(key), prefix=key[:10], label=label,
        created_at=clock.now(),
    ))
    return key_id, key


def revoke_key(conn: Connection, key_or_id: str) -> ApiKey | None:
    """Revoke by key id or by the key itself; returns the key's row, or None if there is no such key."""
    column = ApiKey.key_hash if key_or_id.startswith(tuple(KEY_PREFIXES.values())) else ApiKey.id
    value = secret_hash(key_or_id) if column is ApiKey.key_hash else key_or_id
    row = conn.execute(select(ApiKey).where(column == value)).first()
    if row is None:
        return None
    conn.execute(update(ApiKey).where(ApiKey.id == row.id, ApiKey.revoked_at.is_(None))
                 .values(revoked_at=clock.now()))
    _key_cache.clear()
    _forget_revocations()  # the key's member tokens go with it (its console sessions: schema.staff)
    return ApiKey.model_validate(row._mapping)


def revoke_member_tokens(conn: Connection, shop: str, member_id: str) -> bool:
    """Every token minted for the member so far stops working (within KEY_CACHE_SECONDS in other
    processes); False if the shop has no such member."""
    done = conn.execute(update(Member).where(Member.id == member_id, Member.shop == shop)
                        .values(tokens_valid_from=clock.now())).rowcount
    _forget_revocations()
    return bool(done)


def list_keys(conn: Connection, shop: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at)
    if shop:
        query = query.where(ApiKey.shop == shop)
    return [ApiKey.model_validate(r._mapping) for r in conn.execute(query)]


_key_cache: dict[str, tuple[float, Principal | None]] = {}


def key_principal(row) -> Principal:
    """The caller a live key row (id, shop, kind, role, label) stands for."""
    staff = row.kind == "staff"
    return Principal(shop=row.shop, role=row.kind, key_id=row.id, staff_role=row.role if staff else None,
                     label=row.label if staff else "")


def principal_for_key(conn_factory, key: str) -> Principal | None:
    """The caller a key stands for, or None for an unknown or revoked key (cached KEY_CACHE_SECONDS)."""
    return _principal_for_key(conn_factory, key) if key.startswith(tuple(KEY_PREFIXES.values())) else None


def _principal_for_key(conn_factory, key: str) -> Principal | None:
    digest = secret_hash(key)
    hit = _key_cache.get(digest)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    with conn_factory() as conn:
        row = conn.execute(
            select(ApiKey.id, ApiKey.shop, ApiKey.kind, ApiKey.role, ApiKey.label)
            .where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
        ).first()
    principal = key_principal(row) if row else None
    if len(_key_cache) > 10_000:
        _key_cache.clear()
    _key_cache[digest] = (time.monotonic() + KEY_CACHE_SECONDS, principal)
    return principal


# ---------------------------------------------------------------- member tokens


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@cache
def token_keys() -> tuple[bytes, ...]:
    """MEMBERKIT_TOKEN_SECRETS: the first signs member tokens, all of them verify (a rotation)."""
    return hashing.listed_secrets("MEMBERKIT_TOKEN_SECRETS")


def mint_member_token(shop: str, member_id: str, ttl_seconds: int, api_key_id: str) -> tuple[str, datetime]:
    """A signed, expiring token that lets a storefront act for one member of one shop. It names the key
    that minted it (`a`) and when (`i`, milliseconds), so revoking either the key or the member's tokens
    ends it."""
    key = token_keys()[0]
    now = clock.now()
    expires = now.replace(microsecond=0) + timedelta(seconds=ttl_seconds)
    claims = {"s": shop, "m": member_id, "e": int(expires.timestamp()), "i": int(now.timestamp() * 1000),
              "a": api_key_id, "k": hashing.key_id(key)}
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{TOKEN_PREFIX}{body}.{signature}", expires


@dataclass(frozen=True)
class Token:
    principal: Principal
    issued_ms: int
    key_id: str


def _verified_token(token: str) -> Token | None:
    """The token's claims if its signature holds and it has not expired (no database needed). A token
    without the key that minted it and when (from before revocation existed) is refused: it could not be
    revoked."""
    try:
        body, signature = token.removeprefix(TOKEN_PREFIX).split(".")
        claims = json.loads(_unb64(body))
        key = next((k for k in token_keys() if hashing.key_id(k) == claims["k"]), None)
        if key is None:
            return None
        expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature):
            return None
        if datetime.fromtimestamp(claims["e"], UTC) <= clock.now():
            return None
        return Token(Principal(shop=claims["s"], role="member", member_id=claims["m"]), int(claims["i"]),
                     str(claims["a"]))
    except (ValueError, KeyError, TypeError, OverflowError):
        return None


@dataclass(frozen=True)
class Revocations:
    """What this process knows was revoked, read whole at most every KEY_CACHE_SECONDS (a revocation bites
    that late in other processes): the revoked keys, and members whose tokens minted up to an instant (ms)
    stopped. Only revocations younger than the longest token's life are kept: older tokens expired anyway."""

    until: float
    keys: frozenset[str]
    members: dict[str, int]

    def allows(self, token: Token) -> bool:
        """A token minted at the instant of a revocation is revoked too (the safe side of a tie)."""
        return token.key_id not in self.keys and token.issued_ms > self.members.get(token.principal.member_id, -1)


_revocations = Revocations(0.0, frozenset(), {})


def _load_revocations(conn_factory) -> Revocations:
    global _revocations
    since = clock.now() - timedelta(seconds=MAX_TOKEN_TTL)
    with conn_factory() as conn:
        keys = frozenset(conn.execute(select(ApiKey.id).where(ApiKey.revoked_at > since)).scalars())
        members = {row.id: int(row.tokens_valid_from.timestamp() * 1000) for row in conn.execute(
            select(Member.id, Member.tokens_valid_from).where(Member.tokens_valid_from > since))}
    _revocations = Revocations(time.monotonic() + KEY_CACHE_SECONDS, keys, members)
    return _revocations


def _forget_revocations() -> None:
    """After a revocation in this process: the next token is checked against the database again."""
    global _revocations
    _revocations = Revocations(0.0, frozenset(), {})


def _credential(authorization: str | None) -> str:
    if not authorization or not authorization.startswith("Bearer "):
        raise AuthError("authentication required")
    return authorization[7:].strip()


def authenticate_without_io(authorization: str | None) -> Principal | None:
    """Tokens and recently seen keys, checked without touching the database; None means "ask the database".

    Raises AuthError for credentials that are bad whatever the database says.
    """
    credential = _credential(authorization)
    if credential.startswith(TOKEN_PREFIX):
        token = _verified_token(credential)
        if token is None:
            raise AuthError("authentication required")
        revocations = _revocations
        if revocations.until <= time.monotonic():
            return None
        principal = token.principal if revocations.allows(token) else None
    elif credential.startswith(tuple(KEY_PREFIXES.values())):
        hit = _key_cache.get(secret_hash(credential))
        if not hit or hit[0] <= time.monotonic():
            return None
        principal = hit[1]
    else:
        principal = None
    if principal is None:
        raise AuthError("authentication required")
    return principal


def authenticate(authorization: str | None, conn_factory) -> Principal:
    """Resolve an Authorization header to a principal, or raise AuthError (never saying why)."""
    principal = authenticate_without_io(authorization)
    if principal is None:
        credential = _credential(authorization)
        if credential.startswith(TOKEN_PREFIX):
            token = _verified_token(credential)
            principal = token.principal if token and _load_revocations(conn_factory).allows(token) else None
        else:
            principal = _principal_for_key(conn_factory, credential)
    if principal is None:
        raise AuthError("authentication required")
    return principal
