"""The gateway's settings: shared names from `CommonSettings`, its own under the `API_` prefix."""
from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.config import CommonSettings, split_csv


class ApiSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="API_", env_file=".env", extra="ignore", populate_by_name=True)

    # Writes always need a key; reads are open unless the operator says otherwise, so a public demo
    # needs no key to search.
    require_key_for_reads: bool = False
    # The largest query image accepted, as upload, base64 or fetched from image_url.
    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # Any request body (a query, an ingestion batch of up to 5000 photos) is refused past this size,
    # and must arrive within body_timeout_s of the first byte: see services/common/http.BodyGuardMiddleware.
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    body_timeout_s: float = Field(60.0, gt=0)
    embedder_timeout_s: float = Field(30.0, gt=0)
    store_connect_timeout_s: float = Field(5.0, gt=0)
    store_query_timeout_s: float = Field(30.0, gt=0)
    fetch_timeout_s: float = Field(15.0, gt=0)
    # How long /readyz waits for each dependency before calling it down.
    ready_timeout_s: float = Field(3.0, gt=0)
    # The embedder's model info is asked once per this many seconds, not once per query.
    model_info_ttl_s: float = Field(30.0, ge=0)
    # Likewise the store table's model and dim, checked against the embedder's before each search.
    table_info_ttl_s: float = Field(5.0, ge=0)
    # Text vectors kept by (model fingerprint, text), so a repeated query or its next page skips the
    # embedder: this many texts in an LRU per gateway (0: no local cache). With text_cache_redis the
    # vectors are also shared in REDIS_URL for text_cache_ttl_s seconds (Redis down: the local cache alone).
    text_cache_size: int = Field(10000, ge=0)
    text_cache_redis: bool = False
    text_cache_ttl_s: float = Field(86400.0, gt=0)
    # Search answers kept per gateway (0: none), each reused while the store's table is unchanged, and how
    # many results deep each is asked, so that "Load more" pages are slices of it: see api/resultcache.py.
    result_cache_size: int = Field(256, ge=0)
    result_cache_depth: int = Field(50, ge=1, le=10000)
    # Rate limits (the `limits` library's notation, e.g. 600/minute): reads per API key, or per client
    # address without one; writes per API key. Empty: no limit. Counted in `rate_limit_storage`, by
    # default REDIS_URL, so every gateway shares the count; `memory://` counts in this process only.
    rate_limit: str = ""
    write_rate_limit: str = ""
    rate_limit_storage: str = ""
    # Comma-separated origins allowed by CORS; empty (the default) means no CORS headers at all.
    cors_origins: str = ""
    # POST /v1/ingest/upload: the largest photo file, and how many files one request may carry (the
    # ingest command sends 32 at a time); the bytes wait in Redis until a worker reads them.
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_upload_files: int = Field(64, ge=1, le=1000)
    log_level: str = "INFO"

    @property
    def cors_origin_list(self) -> list[str]:
        return split_csv(self.cors_origins)


@lru_cache
def get_settings() -> ApiSettings:
    return ApiSettings()
