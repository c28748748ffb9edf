"""The FastAPI application: :func:`create_app` wires settings, security, limits and the routes.

::

    from visage.server import ServerSettings, create_app
    app = create_app(ServerSettings(gallery="people.db"))   # serve with uvicorn, or test with TestClient
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from importlib import resources
from pathlib import Path

import anyio
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import (
    ChallengeError,
    ChallengeNotFound,
    FaceCountError,
    FaceNotFound,
    GalleryDamaged,
    GalleryError,
    ModelError,
    PersonNotFound,
    SpoofError,
    StorageFull,
    VisageError,
)
from ..gallery.store import prune_audit
from .auth import RequireKey
from .challenges import ChallengesFull, ChallengeTooLarge, TooManyChallenges
from .galleries import Busy
from .jobs import QueueFull
from .limits import BodySizeLimit
from .metrics import Metrics
from .service import Overloaded, Service, build_service
from .settings import ServerSettings

log = logging.getLogger("visage.server")

STATIC = Path(str(resources.files("visage.server").joinpath("static")))

#: The web page may load only what this server serves, and send only to it.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
               "media-src 'self' blob: mediastream:; connect-src 'self'; frame-ancestors 'none'; "
               "base-uri 'none'; form-action 'self'")


def status_for(exc: VisageError) -> int:
    """The HTTP status of a refusal: what the client sent is wrong (4xx), or the server is full (503)."""
    if isinstance(exc, StorageFull):
        return 507  # Insufficient Storage: the disk is full; nothing was written, the request may be retried
    if isinstance(exc, GalleryDamaged):
        return 500  # the server's own file is broken: no request can fix it, and retrying will not help
    if isinstance(exc, (QueueFull, Busy, ModelError, ChallengesFull)):
        return 503  # the server cannot serve this now (full, or a model is not installed): not the client's fault
    if isinstance(exc, TooManyChallenges):
        return 429  # this key's own load: it has as many open challenges as one key may
    if isinstance(exc, ChallengeTooLarge):
        return 413  # the frames are too large for one challenge: sending them again will not help
    if isinstance(exc, (ChallengeNotFound, PersonNotFound, FaceNotFound)):
        return 404
    if isinstance(exc, (ChallengeError, GalleryError)):
        return 409
    if isinstance(exc, FaceCountError):
        return 422
    if isinstance(exc, SpoofError):
        return 403
    return 400  # ImageError and every other bad input


class _StatusWatch:
    """Passes an ASGI app's messages on to ``send`` and keeps the status it answered
    (500 until the answer starts: an app that raised before answering is a server error)."""

    def __init__(self, send):
        self.send, self.status, self.started = send, 500, time.perf_counter()

    async def __call__(self, message):
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)

    def seconds(self) -> float:
        return time.perf_counter() - self.started


class AuditMiddleware:
    """Writes one audit row per API request (``/v1/...``) once the answer is sent."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        state = scope.setdefault("state", {})
        watch = _StatusWatch(send)
        try:
            await self.app(scope, receive, watch)
        finally:
            if not state.get("unaudited"):  # see auth.RequireKey: a key-less flood is not recorded
                who = state.get("principal")
                client = scope.get("client")
                try:  # a full disk is handled in AuditLog.write; anything else is logged, not raised
                    pruned = await anyio.to_thread.run_sync(lambda: self.service.audit.write(
                        key_id=who.key_id if who else None, key_name=who.name if who else None,
                        client=client[0] if client else None, method=scope["method"], path=scope["path"],
                        status=watch.status, ms=watch.seconds() * 1000, summary=state.get("audit")))
                except Exception as exc:  # raised here, after the answer, it would drop the connection
                    log.error("could not write the audit row of %s %s: %s", scope["method"], scope["path"],
                              type(exc).__name__, exc_info=(type(exc), exc, exc.__traceback__))
                    pruned = False
                if pruned:  # the gallery's own audit rows (identify, verify) age out at the same pace
                    await anyio.to_thread.run_sync(prune_gallery_audit, self.service)


def prune_gallery_audit(service: Service) -> int:
    """Delete the gallery's audit rows older than ``audit_days``; a failure is logged, not raised."""
    try:
        with service.galleries.borrow() as gallery:
            return prune_audit(gallery.store, service.settings.audit_days)
    except (VisageError, sqlite3.Error, OSError) as exc:
        log.warning("could not prune the gallery's audit log: %s", exc)
        return 0


class MetricsMiddleware:
    """Counts every answered request for ``/metrics``, by route template (``/v1/people/{person}``),
    refusals before routing (401, 413, 429) included."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        watch = _StatusWatch(send)
        try:
            await self.app(scope, receive, watch)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unrouted"  # never the raw path: unbounded labels
            self.metrics.observe(route, scope["method"], watch.status, watch.seconds())  # in memory; a shared write ≤ 1/s


class SecurityHeaders:
    """Headers that keep browsers from sniffing types or framing the page; a strict policy on the page."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        page = scope["path"] == "/" or scope["path"].startswith("/static/")

        async def add(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if page:
                    headers += [(b"content-security-policy", PAGE_POLICY.encode()), (b"x-frame-options", b"DENY")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, add)


def create_app(settings: ServerSettings | None = None, service: Service | None = None):
    """Build the application for ``settings`` (default: from the environment); returns the ASGI app.

    Opens the gallery and the state file now, so a bad gallery fails at start, not on the first
    request. ``service`` lets a caller share one :class:`Service` (tests).
    """
    from fastapi_offline import FastAPIOffline

    from .routes import router

    settings = settings or ServerSettings()
    service = service or build_service(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await anyio.to_thread.run_sync(prune_gallery_audit, service)  # the state file's log pruned itself on opening
        yield
        # uvicorn has finished the requests in flight by now; close what they wrote to.
        await anyio.to_thread.run_sync(service.close)

    # FastAPIOffline: /docs and /redoc with Swagger UI and ReDoc served from this process, no CDN.
    app = FastAPIOffline(
        title="visage", version=__version__, lifespan=lifespan,
        description="Face detection, encoding, verification, a gallery to enrol and identify people, "
                    "liveness checks and style transfer. Send an API key as `Authorization: Bearer <key>` "
                    "(make one with `visage serve --create-key NAME [--admin]`).")
    app.state.service = service
    app.include_router(router)

    @app.exception_handler(VisageError)
    async def refused(request: Request, exc: VisageError):
        headers = ({"Retry-After": str(getattr(exc, "retry_after", 5))}  # Overloaded (a Busy) says how long
                   if isinstance(exc, (QueueFull, Busy, ChallengesFull, TooManyChallenges)) else None)
        if isinstance(exc, Overloaded) and headers is not None:
            headers["Connection"] = "close"  # the retry reconnects, and may reach a less busy worker process
        if isinstance(exc, (StorageFull, GalleryDamaged)):
            log.error("%s %s: %s", request.method, request.url.path, exc)  # the operator must act: say so in the log
        body: dict = {"detail": str(exc)}
        if isinstance(exc, SpoofError) and exc.result is not None:
            body["liveness"] = exc.result.to_dict()
        return JSONResponse(body, status_code=status_for(exc), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception):
        # Log the kind of failure and where, never the request's content (it may be a face).
        log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__,
                  exc_info=(type(exc), exc, exc.__traceback__))
        # Connection: close: Starlette re-raises after this answer and uvicorn then drops the
        # connection, so tell the client not to send its next request on it.
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the server log"},
                            status_code=500, headers={"Connection": "close"})

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequireKey, keys=service.keys, limiter=service.limiter, per_minute=settings.rate_per_minute)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])
    # The last added runs first: security headers on every answer, then the audit row (refusals
    # included), CORS (preflights need no key), the key check before anything reads the body, and
    # the size limit on what is read.
    app.add_middleware(AuditMiddleware, service=service)
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    app.add_middleware(SecurityHeaders)
    return app


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header"))
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"
