"""The HTTP server: /graphql (one composed schema per plugin set, chosen by the caller's shop) and /healthz."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.http.base import HTTPException  # (cross_web's, which strawberry answers with)

from memberkit import config, jobs, pages, staff_session
from memberkit.core import plugins as plugin_registry
from memberkit.core.runtime import Runtime
from memberkit.logs import REQUEST_ID
from memberkit.logs import configure as configure_logging
from memberkit.schema import auth
from memberkit.schema.builder import build_schema
from memberkit.schema.context import RequestContext, writes_on_the_loop
from memberkit.secrets import ensure_secrets

log = logging.getLogger("memberkit.app")
access_log = logging.getLogger("memberkit.access")

DB_THREADS = 40  # threads resolvers reach the database in (Starlette's own pool has as many)
MAX_BODY_BYTES = 1_000_000  # a request body beyond it is answered 413 without being read further
GRAPHQL_RESPONSE = "application/graphql-response+json"  # GraphQL over HTTP's own media type


def development_mode() -> bool:
    return os.environ.get("MEMBERKIT_ENV", "production").lower() in ("development", "dev")


class ShopGraphQL(GraphQL):
    """strawberry's ASGI app for one plugin set; the dispatcher has already authenticated the caller."""

    def __init__(self, runtime: Runtime, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.runtime = runtime

    async def get_context(self, request, response) -> RequestContext | None:
        response.graphql_response = GRAPHQL_RESPONSE in request.headers.get("accept", "")
        if "memberkit" not in request.scope:
            return None  # the GraphiQL page in development: strawberry asks first, runs nothing without a key
        principal, shop = request.scope["memberkit"]
        return RequestContext(self.runtime, principal, shop, request)

    def create_response(self, response_data, sub_response):
        """With application/graphql-response+json accepted, GraphQL over HTTP's status codes: a request that
        never ran (a document that does not parse or validate, variables that do not coerce: errors without a
        path) is 400 and has no data entry. Older clients, asking for application/json, get 200 as before."""
        if not getattr(sub_response, "graphql_response", False) or not isinstance(response_data, dict):
            return super().create_response(response_data, sub_response)
        errors = response_data.get("errors") or []
        if response_data.get("data") is None and errors and not any(e.get("path") for e in errors):
            response_data = {key: value for key, value in response_data.items() if key != "data"}
            sub_response.status_code = 400
        response = super().create_response(response_data, sub_response)
        response.headers["content-type"] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
        return response

    def parse_json(self, data: str | bytes):
        try:
            parsed = super().parse_json(data)
        except RecursionError as e:  # json nests deeper than the interpreter's stack
            raise HTTPException(400, "Unable to parse request body as JSON: it nests too deeply") from e
        # NUL can be stored in no PostgreSQL text: refused here, in any string of the request, the same on
        # every database (JSON and GraphQL strings both spell it \u0000; other control characters are
        # refused in identifiers, with their field, by the checks of each write)
        if (b"\\u0000" if isinstance(data, bytes) else "\\u0000") in data and _has_nul(parsed):
            raise HTTPException(400, "a string in the request contains NUL (U+0000): expected text without it")
        return parsed


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value or "\\u0000" in value
    if isinstance(value, dict):
        return any(_has_nul(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _refusal(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status)


class BodyTooLarge(Exception):
    pass


async def read_body(receive, limit: int) -> bytes | None:
    """The whole request body (None if the client went away), or BodyTooLarge as soon as it passes `limit`
    bytes (chunked bodies too)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def replaying(body: bytes, receive):
    """A `receive` that hands the body already read to the app, then waits on the client as before."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}
    return replay


class GraphQLDispatcher:
    """Authenticate, then hand the request to the schema of the caller's shop's plugin set."""

    def __init__(self, runtime: Runtime, development: bool):
        self.runtime = runtime
        self.development = development
        self.apps: dict[tuple[str, ...], ShopGraphQL] = {}
        for shop in runtime.settings.shops.values():
            if shop.plugins not in self.apps:
                self.apps[shop.plugins] = ShopGraphQL(
                    runtime, build_schema(shop.plugins, development),
                    graphql_ide="graphiql" if development else None, allow_queries_via_get=False)
        self.ide_app = next(iter(self.apps.values()))

    async def __call__(self, scope, receive, send):
        request = Request(scope, receive)
        header = request.headers.get("authorization")
        session = None if header else staff_session.session_id(request, self.development)
        if self.development and request.method == "GET" and not header and not session:
            return await self.ide_app(scope, receive, send)  # GraphiQL; its requests carry the key
        try:
            if session:  # the operator console: its cookie, and the CSRF token given with it
                principal = await staff_session.cookie_principal(request, self.runtime, session)
            else:
                principal = auth.authenticate_without_io(header) or await run_in_threadpool(
                    auth.authenticate, header, self.runtime.db.read)
            shop = self.runtime.settings.shops[principal.shop]
        except staff_session.Refusal as refusal:
            return await refusal.response(scope, receive, send)
        except (auth.AuthError, KeyError):
            return await _refusal(401, "UNAUTHENTICATED", "authentication required")(scope, receive, send)
        if request.method == "POST":
            too_large = _refusal(413, "BODY_TOO_LARGE", f"the request body is over {MAX_BODY_BYTES} bytes")
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                return await too_large(scope, receive, send)
            try:
                body = await read_body(receive, MAX_BODY_BYTES)
            except BodyTooLarge:
                return await too_large(scope, receive, send)
            if body is None:
                scope["memberkit.status"] = 499  # the client closed the request: nobody is left to answer
                return
            receive = replaying(body, receive)
        scope["memberkit"] = (principal, shop)
        await self.apps[shop.plugins](scope, receive, send)


class AccessLog:
    """One line per request (method, path, status, duration, operation, caller) with its request id, which
    the response carries as X-Request-Id; an error nothing else caught is logged once, with its traceback."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = secrets.token_hex(8)
        token = REQUEST_ID.set(request_id)
        started, status, began = False, 500, time.perf_counter()

        async def send_with_id(message):
            nonlocal started, status
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unexpected error in %s %s", scope["method"], scope["path"])
            if not started:
                await _refusal(500, "INTERNAL_SERVER_ERROR", "Internal server error")(scope, receive, send_with_id)
        finally:
            principal = (scope.get("memberkit") or (None, None))[0]
            caller = "-" if principal is None else principal.key_id or principal.role
            path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]  # as sent: no decoded newline
            fields = {"method": scope["method"], "path": path, "status": scope.get("memberkit.status", status),
                      "duration_ms": round((time.perf_counter() - began) * 1000, 1),
                      "operation": scope.get("memberkit.operation") or "-", "caller": caller}
            if access_log.isEnabledFor(logging.INFO):  # a record made directly: no caller lookup per request
                access_log.handle(access_log.makeRecord(
                    access_log.name, logging.INFO, __file__, 0, "%s %s %s %sms operation=%s caller=%s",
                    tuple(fields.values()), None, extra={"access": fields}))
            REQUEST_ID.reset(token)


def create_app(runtime: Runtime | None = None, development: bool | None = None,
               jobs_interval: float | None = None, services: bool = True) -> Starlette:
    ensure_secrets()
    runtime = runtime or config.runtime()
    # Before any request: on SQLite, events' writes then run on the event loop, unless the loop also runs the
    # plugins' services (webhook delivery), whose network I/O the writes would then crowd out.
    if runtime.db.is_sqlite and not (services and plugin_services(runtime)):
        writes_on_the_loop(runtime.db.engine)
    development = development_mode() if development is None else development
    if jobs_interval is None:
        jobs_interval = float(os.environ.get("MEMBERKIT_JOBS_INTERVAL", "60"))

    async def healthz(request: Request) -> JSONResponse:
        def ping() -> None:
            with runtime.db.read() as conn:
                conn.execute(text("SELECT 1"))
        try:
            await run_in_threadpool(ping)
        except Exception:
            log.exception("health check failed")
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "shops": len(runtime.settings.shops)})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        # Resolvers reach the database in the loop's default executor (schema.context): as many threads as
        # Starlette's thread pool has, not asyncio's few, so PostgreSQL serves that many requests at once.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(DB_THREADS, "memberkit-db"))
        task = asyncio.create_task(_run_jobs_forever(runtime, jobs_interval)) if jobs_interval > 0 else None
        stopping = asyncio.Event()
        running = [asyncio.create_task(service.run(runtime, stopping), name=f"{plugin}.{service.name}")
                   for plugin, service in (plugin_services(runtime) if services else ())]
        # The schemas, settings and modules live as long as the server: keep them out of the cyclic
        # collector's full passes, which otherwise walk them all again every few hundred requests.
        gc.freeze()
        # A request allocates a few thousand objects, nearly all freed by reference counting when it ends:
        # collect the young generation every 50,000 allocations instead of 700, which is every request.
        gc.set_threshold(50_000, *gc.get_threshold()[1:])
        yield
        if task:
            task.cancel()
        await stop_services(stopping, running)
        runtime.db.dispose()

    return AccessLog(Starlette(
        routes=[Route("/graphql", GraphQLDispatcher(runtime, development), methods=["GET", "POST"]),
                Route("/admin/session", staff_session.SessionEndpoint(runtime, development),
                      methods=["POST", "DELETE"]),
                Route("/healthz", healthz), *pages.routes(runtime)],
        lifespan=lifespan,
    ))


def plugin_services(runtime: Runtime) -> list[tuple[str, Any]]:
    """(plugin, service) for each service of a plugin that some shop enables, once each."""
    enabled = dict.fromkeys(name for shop in runtime.settings.shops.values() for name in shop.plugins)
    return [(name, service) for name in enabled for service in plugin_registry.load(name).services]


async def stop_services(stopping: asyncio.Event, tasks: list[asyncio.Task], grace: float = 20) -> None:
    """Ask the services to stop and wait for them to finish what they hold; cancel what is left after `grace`."""
    stopping.set()
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("service %s stopped with an error", task.get_name(), exc_info=task.exception())


async def _run_jobs_forever(runtime: Runtime, interval: float) -> None:
    """The timer inside `memberkit serve`: due jobs, then queued one-off jobs; leases keep several server
    processes from running a job twice."""
    while True:
        await asyncio.sleep(interval)
        try:
            runs = await run_in_threadpool(jobs.run_due, runtime)
            for run in runs + await run_in_threadpool(jobs.run_queued, runtime):
                if run.status == "failed" or (run.status == "done" and run.result):  # quiet when idle
                    log.info("job %s for shop %s: %s%s", run.job, run.shop, run.status,
                             f" ({run.result})" if run.result else "")
        except Exception:
            log.exception("running jobs failed")


def app_from_env():
    """uvicorn's factory for `memberkit serve` (each worker process builds its own, logging included)."""
    configure_logging()
    return create_app(services=os.environ.get("MEMBERKIT_SERVICES", "1") != "0")
