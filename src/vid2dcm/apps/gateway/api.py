"""The gateway's REST API (FastAPI), made by `create_app(settings)`: routers per concern
(routes/), settings, store, queue and caller injected with `Depends` (deps.py), so every route
runs in-process under TestClient as well as behind uvicorn.

Every endpoint but /health, /ready and the page needs a signed-in person (session cookie) or a
machine token; no patient data is logged or echoed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse

from vid2dcm.apps.gateway.deps import caller
from vid2dcm.apps.gateway.integration import lifespan
from vid2dcm.apps.gateway.queue import JobQueue, make_queue
from vid2dcm.apps.gateway.routes import (
    auth,
    fhir,
    jobs,
    ops,
    page,
    recordings,
    uploads,
    webrtc,
    worklist,
)
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import open_store

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
"""No inline script or style anywhere: the page's code is in /static."""


def _swagger_ui() -> Path:
    """Swagger UI 5 (OpenAPI 3.1, which FastAPI writes) as the swagger-ui-py wheel ships it."""
    import swagger_ui

    return Path(swagger_ui.__file__).parent / "static"


SWAGGER_UI = _swagger_ui()


def create_app(settings: ServiceSettings, queue: JobQueue | None = None) -> FastAPI:
    """The app for these settings; `queue` defaults to `make_queue(settings)`."""
    settings.prepare()
    app = FastAPI(title="vid2dcm gateway", version="0.2", docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)
    app.state.settings = settings
    app.state.store = open_store(settings)
    app.state.queue = queue or make_queue(settings)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        """A malformed request is 400 with the first problem, named by its field."""
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return JSONResponse({"detail": f"{where}: {first['msg']}"}, status_code=400)

    @app.middleware("http")
    async def security_headers(request: Request,
                               call_next: Callable[[Request], Awaitable[Response]]
                               ) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        if settings.tls:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    for router in (page.router, ops.router, auth.router, uploads.router, jobs.router,
                   worklist.router, recordings.router, fhir.router):
        app.include_router(router)
    app.include_router(uploads.tus_router(settings, app.state.store))
    app.include_router(webrtc.router)  # live ingest from the capture page (issue 14)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(caller)])
    def openapi() -> JSONResponse:
        """The API description, for signed-in callers only."""
        return JSONResponse(get_openapi(title=app.title, version=app.version,
                                        routes=app.routes))

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(caller)])
    def docs() -> FileResponse:
        """Swagger UI from the Python package's own copy (hospitals without internet have no
        CDN), started by /static/docs.js: no inline script."""
        return FileResponse(page.WEB / "docs.html", media_type="text/html")

    @app.get("/docs/assets/{name}", include_in_schema=False, dependencies=[Depends(caller)])
    def docs_asset(name: str) -> FileResponse:
        kinds = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript"}
        if name not in kinds:
            raise HTTPException(404, "no such file")
        return FileResponse(SWAGGER_UI / name, media_type=kinds[name])

    return app
