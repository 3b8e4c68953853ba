"""The two pages memberkit serves beside its API, static files shipped in the package that talk to /graphql
only: the member centre, /member?shop=SLUG for shops whose settings say `member_centre = true`, which uses the
public API with the member token the storefront puts in the URL fragment (docs/member-centre.md); and the
operator console, /admin, signed in with a staff key through /admin/session (docs/staff.md). Both are served
under a strict Content-Security-Policy: nothing inline, nothing from another origin, no framing."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from memberkit.core.runtime import Runtime

FOLDER = Path(__file__).parent / "pages"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def page_file(folder: Path, name: str, cache: str) -> Response:
    """One of a page's files, read when asked (they are small), with the security headers."""
    path = folder / name
    return Response(path.read_bytes(), media_type=MEDIA_TYPES[path.suffix],
                    headers={**SECURITY_HEADERS, "Cache-Control": cache})


def not_found(message: str) -> Response:
    return PlainTextResponse(message, status_code=404, headers=SECURITY_HEADERS)


def page_routes(path: str, assets_path: str, folder: Path, available=None) -> list[Route]:
    """`path` (the page, where `available(request)` says None, else its 404 message) and `assets_path`/NAME
    (only the folder's own files, never a path into the package)."""
    assets = {file.name for file in folder.iterdir() if file.suffix in MEDIA_TYPES and file.name != "index.html"}

    async def page(request: Request) -> Response:
        refusal = available(request) if available else None
        return not_found(refusal) if refusal else page_file(folder, "index.html", "no-store")

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        return page_file(folder, name, "no-cache") if name in assets else not_found(f"no file {name!r} here")

    return [Route(path, page, methods=["GET"]), Route(assets_path + "/{name}", asset, methods=["GET"])]


def routes(runtime: Runtime) -> list[Route]:
    def member_centre_enabled(request: Request) -> str | None:
        shop = runtime.settings.shops.get(request.query_params.get("shop", ""))
        if shop is None or not shop.member_centre:
            return ("no member centre here: expected /member?shop=SLUG for a shop whose settings say "
                    "member_centre = true")
        return None

    return [*page_routes("/member", "/member", FOLDER / "member", member_centre_enabled),
            *page_routes("/admin", "/admin/assets", FOLDER / "console")]
