"""The gateway's app factory: `uvicorn --factory services.api.main:create_app`.

Query orchestration (embed the query, search the store, shape results) and job submission, over
HTTP. Adapters are built in the lifespan from settings unless the caller passes its own `services`
(tests pass fakes), so importing this module builds nothing.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from services.api.config import ApiSettings, get_settings
from services.api.deps import Services, build_services
from services.api.metrics import Metrics, observe_request
from services.api.ratelimit import RateLimits, parse_limit, storage_uri
from services.api.routes import health, jobs, library, photos, reembed, search
from services.api.signing import build_signer
from services.common.http import configure_logging, install_body_guard, install_error_handlers, install_request_ids

log = logging.getLogger(__name__)


def create_app(settings: ApiSettings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services if services is not None else build_services(settings)
        log.info("gateway up: store %s (table %s), embedder %s, redis %s", settings.store_url,
                 settings.store_table, settings.embedder_url, settings.redis_url)
        try:
            yield
        finally:
            # Adapters handed in by a caller are the caller's to close.
            if owned:
                await app.state.services.aclose()

    app = FastAPI(
        title="Image search gateway",
        version="0.1.0",
        description="Search photos by text, image or both (CLIP vectors), and queue photos for ingestion.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.metrics.watch_caches(app.state)
    app.state.rate_limits = RateLimits(parse_limit(settings.rate_limit, "API_RATE_LIMIT"),
                                       parse_limit(settings.write_rate_limit, "API_WRITE_RATE_LIMIT"),
                                       storage_uri(settings.rate_limit_storage or settings.redis_url))
    app.state.url_signer = build_signer(settings)
    install_error_handlers(app)
    # library before photos: /v1/photos/{photo_id:path} would take /v1/photos/{id}/thumbnail too.
    for module in (search, library, photos, jobs, reembed, health):
        app.include_router(module.router)
    if settings.cors_origin_list:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list,
                           allow_methods=["GET", "POST"], allow_headers=["Content-Type", "X-API-Key"])
    install_body_guard(app, settings.max_body_bytes, settings.body_timeout_s)
    if settings.trusted_proxy_list:
        # The client behind a trusted proxy (the right-most address of X-Forwarded-For that is not a trusted
        # proxy) becomes request.client, which the per-address rate limit counts; from any other peer the
        # header is ignored. uvicorn's own middleware, given our list rather than its command-line default.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxy_list)
    # Outermost, so that it also times requests that end in an error response.
    install_request_ids(app, observe=observe_request(app.state.metrics))
    return app
