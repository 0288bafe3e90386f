"""The workers' settings: shared names from `CommonSettings`, their own under the `WORKER_` prefix."""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.backup.config import BackupOptions
from services.common.config import CommonSettings
from services.common.fetch import FetchPolicy


class WorkerSettings(BackupOptions, CommonSettings):
    model_config = SettingsConfigDict(env_prefix="WORKER_", env_file=".env", extra="ignore", populate_by_name=True)

    # Worker processes per worker (Celery's --concurrency); `make up` and compose scale by this.
    concurrency: int = Field(2, ge=1, le=256)
    # Image downloads running at once inside one task (threads; they wait on the network).
    download_concurrency: int = Field(16, ge=1, le=256)
    # Per image: the whole download, redirects included, must finish within this.
    download_timeout_s: float = Field(15.0, gt=0)
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(64_000_000, ge=1)
    # Videos (services/media/video.py): read from disk as a stream, so their size limit is their own.
    max_video_bytes: int = Field(4 * 1024 ** 3, ge=1024)
    # Frames kept per video (at scene changes, else spread over its length), each embedded.
    video_max_frames: int = Field(8, ge=1, le=64)
    # A longer video fails with the code video_too_long.
    video_max_seconds: float = Field(600.0, gt=0)
    # Where images are decoded and cropped: "auto" here when the embedder runs on a GPU (decoding would
    # be its limit; workers scale out), else in the embedder; "worker" or "embedder" force it. Either
    # way the vectors are the same (the embedder's own crop, bit for bit).
    preprocess: Literal["auto", "worker", "embedder"] = "auto"
    max_redirects: int = Field(3, ge=0, le=10)
    embedder_timeout_s: float = Field(120.0, gt=0)
    store_connect_timeout_s: float = Field(5.0, gt=0)
    store_query_timeout_s: float = Field(60.0, gt=0)
    # Transient failures (embedder or store down) are retried with exponential backoff and jitter.
    max_retries: int = Field(8, ge=0)
    retry_backoff_max_s: int = Field(300, ge=1)
    # A SIGKILLed worker's batches go back on the queue this long after their last lease renewal
    # (services/worker/lease.py): recovery within about this plus 10 s of the kill.
    visibility_timeout_s: int = Field(60, ge=4, le=3600)
    job_ttl_s: int = Field(7 * 24 * 3600, ge=60)
    # When a job ends and the table holds STORE_EXACT_BELOW rows or more with no vector index, start
    # building one (on the store server, in the background). Off: `make index ACTION=build` by hand.
    auto_index: bool = True
    log_level: str = "INFO"
    # Prometheus metrics served by the main worker process (services/worker/metrics.py); 0 = off. With
    # several workers on one host, give each its own port.
    metrics_port: int = Field(9808, ge=0, le=65535)
    # Where the pool's children write their counts (prometheus_client's PROMETHEUS_MULTIPROC_DIR),
    # emptied when the worker starts; empty = a fresh temporary folder.
    metrics_dir: str = ""

    def fetch_policy(self) -> FetchPolicy:
        return FetchPolicy(allow_hosts=tuple(self.fetch_allow_list), max_bytes=self.max_image_bytes,
                           timeout_s=self.download_timeout_s, max_redirects=self.max_redirects,
                           deny_urls=(self.store_url,))


@lru_cache
def get_settings() -> WorkerSettings:
    return WorkerSettings()
