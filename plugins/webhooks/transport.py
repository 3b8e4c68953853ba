"""Sending one request to an endpoint, and which URLs may be endpoints at all.

Only ``https://`` in production, and never to a private, loopback, link-local or otherwise non-public
address. The address is checked when connecting, on every address the name resolves to, and the connection
goes to the address that was checked: a DNS answer cannot swap in an internal one after the URL was
accepted. Redirects are never followed. In development and tests (MEMBERKIT_ENV development or test)
``http://`` to a loopback address is allowed too, so a receiver on 127.0.0.1 can be used.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpcore

MAX_URL = 2000
MAX_ERROR_BODY = 200


class UnsafeURL(ValueError):
    pass


def loopback_allowed() -> bool:
    return os.environ.get("MEMBERKIT_ENV", "").strip().lower() in ("development", "test")


def _refused_address(address: str) -> str | None:
    """Why an address may not be connected to, or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None if loopback_allowed() else "a loopback address"
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


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses that pass the checks above, resolving the name itself."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            with anyio.fail_after(timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = [info[4][0] for info in infos]
        for address in addresses:
            if why := _refused_address(address):
                raise httpcore.ConnectError(f"{host} resolves to {address}, {why}: refused")
        return await self._inner.connect_tcp(addresses[0], port, timeout, local_address, socket_options)

    async def connect_unix_socket(self, *args, **kwargs):
        raise httpcore.ConnectError("unix sockets are not endpoints")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: delivered (a 2xx), or the status and a short error."""

    delivered: bool
    status_code: int | None = None
    error: str | None = None


class Sender:
    """One connection pool per process; ``send`` never raises, it says what happened."""

    def __init__(self, connect_timeout: float = 5, read_timeout: float = 10, max_connections: int = 50):
        self.timeouts = {"connect": connect_timeout, "read": read_timeout, "write": read_timeout,
                         "pool": connect_timeout}
        self.pool = httpcore.AsyncConnectionPool(network_backend=GuardedBackend(), max_connections=max_connections,
                                                 keepalive_expiry=30, retries=0)

    async def send(self, url: str, headers: dict[str, str], body: bytes, timeouts: dict | None = None) -> Outcome:
        try:
            response = await self.pool.request(
                "POST", url, headers={**headers, "user-agent": "memberkit-webhooks/1"}, content=body,
                extensions={"timeout": timeouts or self.timeouts})
        except httpcore.TimeoutException as exc:
            return Outcome(False, None, f"timeout: {type(exc).__name__}")
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol, OSError) as exc:
            return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= response.status < 300:
            return Outcome(True, response.status)
        text = response.content[:MAX_ERROR_BODY].decode("utf-8", "replace").strip()
        return Outcome(False, response.status, f"HTTP {response.status}" + (f": {text}" if text else ""))

    async def close(self) -> None:
        await self.pool.aclose()
