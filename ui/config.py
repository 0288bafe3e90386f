"""Settings of the Gradio UI (env prefix `UI_`; the gateway's address is the shared `API_URL`)."""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.config import CommonSettings


class UISettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="UI_", env_file=".env", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = Field(7860, ge=1, le=65535)
    # Sent as X-API-Key when the gateway is configured to require keys for reads.
    api_key: str | None = None
    # Seconds to wait for the gateway; a search embeds a query and scans the store, so allow some time.
    api_timeout: float = Field(30.0, gt=0)
    title: str = "Image search"
    top_k_default: int = Field(12, ge=1, le=50)
    # The search mode the page starts with (the gateway's `mode`): "hybrid" (Both) like the gateway's
    # own default, "vector" (Meaning) or "lexical" (Words).
    search_mode: Literal["vector", "lexical", "hybrid"] = "hybrid"
    log_level: str = "INFO"
    # The Ingest tab starts jobs with `api_key`; a public demo can hide it.
    ingest_tab: bool = True
    # Where browsers reach the gateway, for results' thumbnails it serves (a path like /v1/...);
    # empty = API_URL, right when the browser can reach the same address as the UI server.
    image_base_url: str = ""


@lru_cache
def get_settings() -> UISettings:
    return UISettings()
