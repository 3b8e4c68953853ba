"""Sending one request to an endpoint, and which URLs may be endpoints at all.

Only ``https://`` in production, and never to a private, loopback, link-local or otherwise non-public
address. The address is checked when connecting, on every address the name resolves to, and the connection
goes to the address that was checked: a DNS answer cannot swap in an internal one after the URL was
accepted. Redirects are never followed. In development and tests (MEMBERKIT_ENV development or test)
``http://`` to a loopback address is allowed too, so a receiver on 127.0.0.1 can be used.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import aiohttp.abc

MAX_URL = 2000
MAX_ERROR_BODY = 200


class UnsafeURL(ValueError):
    pass


def loopback_allowed() -> bool:
    return os.environ.get("MEMBERKIT_ENV", "").strip().lower() in ("development", "test")


def _refused_address(address: str) -> str | None:
    """Why an address may not be connected to, or None."""
    return _refused(address, loopback_allowed())


@functools.lru_cache(maxsize=1024)
def _refused(address: str, loopback: bool) -> str | None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None if loopback else "a loopback address"
    for name in ("is_link_local", "is_unspecified", "is_multicast", "is_reserved", "is_private"):
        if getattr(ip, name):
            return "a " + name.removeprefix("is_").replace("_", "-") + " address"
    if not ip.is_global:
        return "not a public address"
    return None


def check_url(url: str) -> str:
    """The URL, trimmed, or UnsafeURL saying what is wrong with it."""
    url = url.strip()
    if len(url) > MAX_URL:
        raise UnsafeURL(f"url is {len(url)} characters: expected at most {MAX_URL}")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeURL(f"url {url!r}: expected https://host/path")
    if parts.username or parts.password:
        raise UnsafeURL("url: credentials in the URL are not allowed; verify the signature instead")
    if parts.fragment:
        raise UnsafeURL("url: a fragment (#...) is never sent; leave it out")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if parts.scheme == "http":
        if not (loopback_allowed() and (parts.hostname == "localhost" or (literal and literal.is_loopback))):
            raise UnsafeURL("url: expected https:// (http:// only to a loopback address in development)")
    if literal is not None and (why := _refused_address(str(literal))):
        raise UnsafeURL(f"url: {parts.hostname} is {why}; endpoints must be public")
    return url


class GuardedResolver(aiohttp.abc.AbstractResolver):
    """Resolves a name and keeps it only if every address it resolves to passes the checks above; the
    connection then goes to one of those addresses. (aiohttp skips resolving an IP literal: ``send``
    checks literals itself.)"""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        found = await self._inner.resolve(host, port, family)
        for info in found:
            if why := _refused_address(info["host"]):
                raise OSError(errno.EACCES, f"{host} resolves to {info['host']}, {why}: refused")
        return found

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: delivered (a 2xx), or the status and a short error."""

    delivered: bool
    status_code: int | None = None
    error: str | None = None


class Sender:
    """One connection pool per process (aiohttp: about a sixth of httpcore's CPU per request, which matters
    as delivery shares the worker with the orders); ``send`` never raises, it says what happened."""

    def __init__(self, connect_timeout: float = 5, read_timeout: float = 10, max_connections: int = 50):
        self.timeouts = {"connect": connect_timeout, "read": read_timeout}
        self.max_connections = max_connections
        self.session: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:  # made on first use, inside the running event loop
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(), limit=self.max_connections,
                                             keepalive_timeout=30, ttl_dns_cache=10)
            self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                 headers={"user-agent": "memberkit-webhooks/1"})
        return self.session

    async def send(self, url: str, headers: dict[str, str], body: bytes, timeouts: dict | None = None) -> Outcome:
        timeouts = timeouts or self.timeouts
        host = urlsplit(url).hostname or ""
        with contextlib.suppress(ValueError):
            if why := _refused_address(host):
                return Outcome(False, None, f"{host} is {why}: refused")
        timeout = aiohttp.ClientTimeout(total=None, connect=timeouts["connect"], sock_connect=timeouts["connect"],
                                        sock_read=timeouts["read"])
        try:
            async with self._session().post(url, data=body, headers=headers, timeout=timeout,
                                            allow_redirects=False) as response:
                if 200 <= response.status < 300:
                    return Outcome(True, response.status)
                text = (await response.content.read(MAX_ERROR_BODY)).decode("utf-8", "replace").strip()
        except TimeoutError as exc:
            return Outcome(False, None, f"timeout: {type(exc).__name__}")
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:500])
        return Outcome(False, response.status, f"HTTP {response.status}" + (f": {text}" if text else ""))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
