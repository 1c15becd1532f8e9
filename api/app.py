"""The FastAPI application: routes, error mapping, the web UI, and model loading."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api import errors
from api.body_limits import BodyLimits, upload_cap
from api.methods import HeadAsGet
from api.openapi import describe_the_server
from api.origins import WidgetCors
from api.routes import adapters, ask, calibration, documents, feedback, health, openai_compat
from api.security import BearerAuth, RateLimiter, admin_token
from api.service import Lectern
from lectern import __version__
from lectern.settings import SHUTDOWN_CLOSE_S, Settings

log = logging.getLogger("lectern.api")
WEBUI = Path(__file__).resolve().parent.parent / "webui"


def _start(service: Lectern) -> None:
    # Before the first request, so no upload is under way: a file in the upload folder
    # without a document was left by an ingest that a crash or a kill interrupted.
    try:
        service.remove_orphan_uploads()
        service.start_parsers()
    except Exception:  # serving goes on; an upload then says what is wrong
        log.exception("start-up clean-up failed")
    try:
        if (deleted := service.answerer.purge_at_start()):
            log.info("deleted %d answers past feedback.retention_days", deleted)
    except Exception:  # answering goes on; the hourly sweep tries again
        log.exception("the answer log's start-up sweep failed")


def _warm(service: Lectern) -> None:
    try:
        service.warm_up()
        service.warm_up_generator()
        log.info("models loaded; ready")
        # A corpus never calibrated, or changed while the server was down, is fitted now
        # in the background; searches use the settings meanwhile.
        if service.calibrator.after_change():
            log.info("calibrating retrieval for this corpus in the background")
    except Exception:  # /health keeps answering 503, and the log says why
        log.exception("warm-up failed")


def create_app(settings: Settings | None = None, service: Lectern | None = None) -> FastAPI:
    settings = settings or Settings()
    service = service or Lectern(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.calibrator.background = True
        _start(service)
        # Models load once, off the event loop, so /health can say "starting" meanwhile.
        loader = threading.Thread(target=_warm, args=(service,), name="warm-up", daemon=True)
        loader.start()
        app.state.loader = loader
        yield
        loader.join(timeout=1)
        # After uvicorn's graceful period (api.shutdown_timeout_s): what still runs is
        # cancelled, and its uploads removed, before uvicorn ends the process.
        await asyncio.to_thread(service.close, SHUTDOWN_CLOSE_S - 1)

    app = FastAPI(
        title="Lectern",
        version=__version__,
        description="Answers from an institution's own documents, with citations.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.auth = BearerAuth(admin_token(settings.api.admin_token, settings.data_dir))
    app.state.rate_limiter = RateLimiter(settings.api.rate_limit_per_minute)
    # Added before CORS, so it runs inside it: its refusals carry the CORS headers too.
    app.add_middleware(
        BodyLimits,
        auth=app.state.auth,
        admin_routes=[
            *documents.admin_router.routes, *adapters.router.routes, *calibration.router.routes,
            *feedback.admin_router.routes,
        ],
        admin_max_bytes=upload_cap(settings),
        max_bytes=settings.api.max_body_kb * 1024,
    )
    app.add_middleware(
        WidgetCors,
        public_routes=[
            *ask.router.routes, *feedback.router.routes, *documents.router.routes,
            *health.router.routes,
        ],
        origins=settings.api.cors_origins,
    )
    app.add_middleware(HeadAsGet)  # outermost: everything inside sees a GET
    describe_the_server(app, settings.api)
    errors.install(app)
    for module in (ask, feedback, documents, health):
        app.include_router(module.router)
    app.include_router(documents.admin_router)
    app.include_router(feedback.admin_router)
    app.include_router(adapters.router)
    app.include_router(calibration.router)
    # Not among the CORS-public routes: an OpenAI client is a program, not the widget.
    app.include_router(openai_compat.router, dependencies=openai_compat.auth(settings.api))
    _mount_webui(app)
    return app


def _mount_webui(app: FastAPI) -> None:
    pages = {"/": "demo.html", "/admin": "admin.html", "/widget.js": "widget.js"}
    for route, name in pages.items():
        path = WEBUI / name

        def page(path: Path = path) -> FileResponse:
            return FileResponse(path)

        app.add_api_route(route, page, methods=["GET"], include_in_schema=False)
    if (WEBUI / "static").is_dir():
        app.mount("/static", StaticFiles(directory=WEBUI / "static"), name="static")
