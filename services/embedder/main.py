"""The embedder's app factory: `uvicorn --factory services.embedder.main:create_app`."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.common.http import (
    configure_logging,
    install_body_guard,
    install_error_handlers,
    install_request_ids,
    route_template,
)
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

    app.include_router(router)
    install_body_guard(app, settings.max_body_bytes, settings.body_timeout_s)

    def count_request(scope, status: int, seconds: float) -> None:
        service.metrics.count_request(scope["method"], route_template(scope), status, seconds)

    install_request_ids(app, observe=count_request)
    return app
