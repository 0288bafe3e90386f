"""Liveness, readiness and metrics: what an orchestrator and a Prometheus scraper ask."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from services.api.deps import ServicesDep, SettingsDep, blocking
from services.common.errors import error_body

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check(name: str, probe, timeout_s: float) -> tuple[str, str]:
    try:
        ok = await asyncio.wait_for(probe(), timeout_s)
    except TimeoutError:
        return name, f"no answer within {timeout_s:g} s"
    except Exception as exc:
        return name, getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return name, "ok" if ok is not False else "not reachable"


@router.get("/readyz", summary="Store, embedder and Redis are all reachable")
async def readyz(services: ServicesDep, settings: SettingsDep) -> JSONResponse:
    async def embedder() -> bool:
        return bool(await services.model_info.get(fresh=True))

    checks = dict(await asyncio.gather(
        _check("store", lambda: blocking(services.store.ping), settings.ready_timeout_s),
        _check("embedder", embedder, settings.ready_timeout_s),
        _check("redis", lambda: blocking(services.jobs.ping), settings.ready_timeout_s),
    ))
    down = [name for name, state in checks.items() if state != "ok"]
    if not down:
        return JSONResponse({"status": "ready", "checks": checks})
    log.warning("not ready: %s", checks)
    body: dict[str, Any] = error_body("not_ready", f"Not ready: {', '.join(down)} cannot be reached.")
    body["checks"] = checks
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
