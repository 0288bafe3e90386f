"""The embedder's app factory: `uvicorn --factory services.embedder.main:create_app`."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from services.common.http import configure_logging, install_error_handlers, install_request_ids
from services.embedder.config import EmbedderSettings, get_settings
from services.embedder.routes import router
from services.embedder.service import EmbedderService

log = logging.getLogger(__name__)


def create_app(settings: EmbedderSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    service = EmbedderService(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="Image search embedder", version="0.1.0", lifespan=lifespan,
                  description="CLIP vectors for texts and images, micro-batched on the GPU when there is one.")
    app.state.embedder = service
    app.state.settings = settings
    install_error_handlers(app)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        service.metrics.count_request(request.method, getattr(route, "path", "unmatched"),
                                      response.status_code)
        return response

    app.include_router(router)
    install_request_ids(app)
    return app
