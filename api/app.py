"""The FastAPI application: routes, error mapping, the web UI, and model loading."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api import errors
from api.routes import ask, documents, health
from api.security import BearerAuth, RateLimiter, admin_token
from api.service import Lectern
from lectern import __version__
from lectern.settings import Settings

log = logging.getLogger("lectern.api")
WEBUI = Path(__file__).resolve().parent.parent / "webui"


def _warm(service: Lectern) -> None:
    try:
        service.warm_up()
        service.warm_up_generator()
        log.info("models loaded; ready")
    except Exception:  # /health keeps answering 503, and the log says why
        log.exception("warm-up failed")


def create_app(settings: Settings | None = None, service: Lectern | None = None) -> FastAPI:
    settings = settings or Settings()
    service = service or Lectern(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Models load once, off the event loop, so /health can say "starting" meanwhile.
        loader = threading.Thread(target=_warm, args=(service,), name="warm-up", daemon=True)
        loader.start()
        app.state.loader = loader
        yield
        loader.join(timeout=1)
        service.store.close()

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
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.api.cors_origins,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
        expose_headers=["Retry-After"],  # so an embedded widget can say how long to wait
    )
    errors.install(app)
    for module in (ask, documents, health):
        app.include_router(module.router)
    app.include_router(documents.admin_router)
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
