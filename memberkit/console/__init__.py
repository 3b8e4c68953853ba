"""The operator console at /admin: one static page and its script and styles, shipped inside the package,
talking to /graphql only (signed in through /admin/session). A strict Content-Security-Policy: nothing
inline, nothing from another origin."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
ASSETS = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
PAGE_HEADERS = {"content-security-policy": CONTENT_SECURITY_POLICY, "x-content-type-options": "nosniff",
                "referrer-policy": "no-referrer", "x-frame-options": "DENY"}


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


async def page(request: Request) -> Response:
    return Response(_read("index.html"), media_type="text/html; charset=utf-8",
                    headers={**PAGE_HEADERS, "cache-control": "no-store"})


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:  # only the console's own files, never a path into the package
        return PlainTextResponse("not found", status_code=404)
    return Response(_read(name), media_type=ASSETS[name], headers={**PAGE_HEADERS, "cache-control": "no-cache"})


routes = [Route("/admin", page, methods=["GET"]), Route("/admin/assets/{name}", asset, methods=["GET"])]
