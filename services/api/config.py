"""The gateway's settings: shared names from `CommonSettings`, its own under the `API_` prefix."""
from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.config import CommonSettings, split_csv


class ApiSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="API_", env_file=".env", extra="ignore", populate_by_name=True)

    # Writes always need a key; reads are open unless the operator says otherwise, so a public demo
    # needs no key to search.
    require_key_for_reads: bool = False
    # The largest query image accepted, as upload, base64 or fetched from image_url.
    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # A query's images together (its terms may carry several, each up to max_image_bytes). Unset: twice
    # max_image_bytes (20 MiB by default). In JSON they come as base64, 4/3 of this, which the defaults keep
    # under max_body_bytes (that bound on every request answers first, with a less precise sentence).
    max_query_bytes: int | None = Field(None, ge=1024)
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
    # A query's mode when it names none (vector, lexical or hybrid; see api/hybrid.py and README "Words and
    # pictures together" for why this default), and how many of the library's vectors calibrate `relevance`
    # (api/relevance.py; 0: no relevance).
    search_mode: Literal["vector", "lexical", "hybrid"] = "vector"
    relevance_sample: int = Field(2000, ge=0, le=100_000)
    # Rate limits (the `limits` library's notation, e.g. 600/minute): reads per API key, or per client
    # address without one; writes per API key. Empty: no limit. Counted in `rate_limit_storage`, by
    # default REDIS_URL, so every gateway shares the count; `memory://` counts in this process only.
    rate_limit: str = ""
    write_rate_limit: str = ""
    rate_limit_storage: str = ""
    # Reverse proxies whose X-Forwarded-For is believed (IPs or networks, comma-separated): the client is
    # then the right-most address of the chain that is not one of them (the per-address rate limit counts
    # it). Empty: the header is ignored, and every client behind a proxy is the proxy's address.
    trusted_proxies: str = ""
    # With require_key_for_reads, results carry thumbnail and original URLs signed with this secret (an
    # <img> cannot send a key), valid for signed_url_ttl_s to twice that. Unset: derived from API_KEYS (see
    # services/api/signing.py), so every gateway sharing the keys accepts the others' URLs.
    url_signing_key: str = ""
    signed_url_ttl_s: int = Field(3600, ge=60)
    # Comma-separated origins allowed by CORS; empty (the default) means no CORS headers at all.
    cors_origins: str = ""
    # POST /v1/ingest/upload: the largest photo file, and how many files one request may carry (the
    # ingest command sends 32 at a time); the bytes wait in Redis until a worker reads them.
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_upload_files: int = Field(64, ge=1, le=1000)
    log_level: str = "INFO"

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        networks = []
        for entry in split_csv(value):
            try:
                # Not strict: 10.1.2.3/8 means 10.0.0.0/8 (uvicorn would take it for a name, matching nothing).
                networks.append(str(ipaddress.ip_network(entry, strict=False)))
            except ValueError:
                raise ValueError(f"API_TRUSTED_PROXIES: {entry!r} is not an IP address or network; list the "
                                 "proxies' addresses, like 10.0.0.5 or 172.16.0.0/12.") from None
        return ",".join(networks)

    @field_validator("url_signing_key")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("API_URL_SIGNING_KEY must be at least 32 characters (e.g. `openssl rand -hex 32`), "
                             "or empty to derive it from API_KEYS.")
        return value

    @model_validator(mode="after")
    def _query_holds_an_image(self) -> ApiSettings:
        if self.max_query_bytes is not None and self.max_query_bytes < self.max_image_bytes:
            raise ValueError(f"API_MAX_QUERY_BYTES ({self.max_query_bytes}) is less than API_MAX_IMAGE_BYTES "
                             f"({self.max_image_bytes}), so a query could not carry one image of the largest "
                             "size: raise it, or leave it unset (twice API_MAX_IMAGE_BYTES).")
        return self

    @property
    def query_bytes_limit(self) -> int:
        return self.max_query_bytes if self.max_query_bytes is not None else 2 * self.max_image_bytes

    @property
    def trusted_proxy_list(self) -> list[str]:
        return split_csv(self.trusted_proxies)

    @property
    def cors_origin_list(self) -> list[str]:
        return split_csv(self.cors_origins)


@lru_cache
def get_settings() -> ApiSettings:
    return ApiSettings()
