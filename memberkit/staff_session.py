"""/admin/session: the operator console signs in with a staff key and gets a session cookie (HttpOnly,
SameSite=Strict, Path=/, Secure outside development, 8 hours) and a CSRF token; every /graphql request the
cookie authenticates must carry that token in X-CSRF-Token. DELETE signs out."""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from memberkit.core.runtime import Runtime
from memberkit.schema import auth, staff
from memberkit.schema.auth import Principal

CSRF_HEADER = "x-csrf-token"
MAX_SIGN_IN_BYTES = 4096


def cookie_name(development: bool) -> str:
    """Outside development the __Host- prefix: browsers keep such a cookie only if Secure, Path=/ and set by
    this host alone (no Domain), so no sibling subdomain can plant or shadow it."""
    return "memberkit_session" if development else "__Host-memberkit_session"


def _refusal(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status,
                        headers={"cache-control": "no-store"})


def session_id(request: Request, development: bool) -> str | None:
    return request.cookies.get(cookie_name(development)) or None


class Refusal(Exception):
    def __init__(self, response: JSONResponse):
        self.response = response


async def cookie_principal(request: Request, runtime: Runtime, session: str) -> Principal:
    """The staff key a console request's session stands for; Refusal (401 without a live session of a live
    key, 403 without the session's CSRF token in X-CSRF-Token) otherwise."""
    csrf = request.headers.get(CSRF_HEADER)
    if not csrf:
        raise Refusal(_refusal(403, "FORBIDDEN", "a request signed in by the console's cookie needs the "
                                                 "X-CSRF-Token header given at sign-in"))

    def look_up():
        with runtime.db.read() as conn:
            return staff.session_principal(conn, session, csrf)
    principal, csrf_matches = await run_in_threadpool(look_up)
    if principal is None or principal.shop not in runtime.settings.shops:
        raise Refusal(_refusal(401, "UNAUTHENTICATED", "authentication required"))
    if not csrf_matches:
        raise Refusal(_refusal(403, "FORBIDDEN", "X-CSRF-Token is not the token given at this sign-in"))
    return principal


class SessionEndpoint:
    """POST signs in (JSON body {"key": "mkst_..."}), DELETE signs out."""

    def __init__(self, runtime: Runtime, development: bool):
        self.runtime, self.development = runtime, development

    async def __call__(self, scope, receive, send):
        request = Request(scope, receive)
        handler = self.sign_in if request.method == "POST" else self.sign_out
        response = await handler(request)
        response.headers["cache-control"] = "no-store"
        await response(scope, receive, send)

    async def sign_in(self, request: Request) -> Response:
        bad = _refusal(400, "BAD_REQUEST", 'expected a JSON body {"key": "<a staff key>"}')
        declared = request.headers.get("content-length", "")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json" or (
                declared.isdigit() and int(declared) > MAX_SIGN_IN_BYTES):
            return bad  # JSON only: a cross-site form cannot send it without the browser asking first
        body = b""
        try:
            async for chunk in request.stream():  # read no further than the limit, however the body is sent
                body += chunk
                if len(body) > MAX_SIGN_IN_BYTES:
                    return bad
        except ClientDisconnect:
            return bad  # nobody is left to answer; nothing was done
        try:
            key = json.loads(body).get("key")
        except (ValueError, AttributeError):
            key = None
        if not isinstance(key, str) or not key:
            return bad
        principal = await run_in_threadpool(auth.principal_for_key, self.runtime.db.read, key)
        if principal is None or principal.shop not in self.runtime.settings.shops:
            return _refusal(401, "UNAUTHENTICATED", "authentication required")
        if principal.role != "staff":
            return _refusal(403, "FORBIDDEN", "the console signs in with a staff key (memberkit keys create "
                                              "--kind staff); secret and publishable keys stay with integrations")

        def open_session():
            with self.runtime.db.write() as conn:
                return staff.open_session(conn, principal.key_id)
        session, csrf, expires = await run_in_threadpool(open_session)
        response = JSONResponse({"shop": principal.shop, "role": principal.staff_role, "label": principal.label,
                                 "csrfToken": csrf, "expiresAt": expires.isoformat()})
        response.set_cookie(cookie_name(self.development), session, max_age=staff.SESSION_HOURS * 3600,
                            expires=expires, path="/", secure=not self.development, httponly=True,
                            samesite="strict")
        return response

    async def sign_out(self, request: Request) -> Response:
        """Ends the session (with its CSRF token, so no other site can sign an operator out) and clears the
        cookie; without a live session there is nothing to end."""
        session = session_id(request, self.development)
        if session is not None:
            try:
                await cookie_principal(request, self.runtime, session)
            except Refusal as refusal:
                if refusal.response.status_code == 403:
                    return refusal.response

            def close():
                with self.runtime.db.write() as conn:
                    staff.close_session(conn, session)
            await run_in_threadpool(close)
        response = Response(status_code=204)
        response.delete_cookie(cookie_name(self.development), path="/", secure=not self.development,
                               httponly=True, samesite="strict")
        return response
