"""The member centre page, /member?shop=SLUG, for shops whose settings say `member_centre = true`: static files
shipped in the package (memberkit/pages/member/) that use only the public GraphQL API with the member token
the storefront puts in the URL fragment (docs/member-centre.md), served under a strict Content-Security-Policy."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from memberkit.core.runtime import Runtime

PAGES = Path(__file__).parent / "pages"
MEMBER_PAGE = PAGES / "member"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}

# Nothing but the page's own files and its own API: no inline script or style, no other origin, no framing.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def page_file(folder: Path, name: str, cache: str) -> Response:
    """One of the page's files, read when asked (they are small), with the security headers."""
    path = folder / name
    return Response(path.read_bytes(), media_type=MEDIA_TYPES[path.suffix],
                    headers={**SECURITY_HEADERS, "Cache-Control": cache})


def not_found(message: str) -> Response:
    return PlainTextResponse(message, status_code=404, headers=SECURITY_HEADERS)


def routes(runtime: Runtime) -> list[Route]:
    """/member (the page, for a shop that enables it) and /member/ASSET (its script, style and licences)."""
    assets = {path.name for path in MEMBER_PAGE.iterdir() if path.suffix in MEDIA_TYPES and path.name != "index.html"}

    async def page(request: Request) -> Response:
        slug = request.query_params.get("shop", "")
        shop = runtime.settings.shops.get(slug)
        if shop is None or not shop.member_centre:
            return not_found("no member centre here: expected /member?shop=SLUG for a shop whose settings say "
                             "member_centre = true")
        return page_file(MEMBER_PAGE, "index.html", "no-store")

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:
            return not_found(f"no file {name!r} in the member centre")
        return page_file(MEMBER_PAGE, name, "no-cache")

    return [Route("/member", page, methods=["GET"]), Route("/member/{name}", asset, methods=["GET"])]
