"""Typed answers of the gateway for Python callers (`ApiClient.typed`): search results, photos, stats,
facets, jobs. They mirror the gateway's response bodies (services/api/schemas.py) but live in the common
library, because a library must not import a service. Unknown fields are kept (`extra="allow"`), so a
newer gateway that answers more does not break an older client."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.common.schemas import PhotoRecord


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class Photo(PhotoRecord):
    """A stored photo: its id, image URL and metadata."""

    model_config = ConfigDict(extra="allow")

    @field_validator("photo_submitted_at", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> str:
        return "" if value is None else str(value)


class SearchHit(Photo):
    score: float = Field(description="Cosine similarity to the query, -1 to 1.")
    rank: int = Field(description="1 for the closest photo, counting from the first page.")

    @property
    def photographer(self) -> str:
        """The photographer's name, or their username when the name is unknown."""
        name = f"{self.photographer_first_name} {self.photographer_last_name}".strip()
        return name or self.photographer_username

    @property
    def link(self) -> str:
        """The photo's page when known, else its image."""
        return self.photo_url or self.photo_image_url


class SearchTimings(_Answer):
    embed_ms: float = 0.0
    store_ms: float = 0.0
    total_ms: float = 0.0


class SearchResults(_Answer):
    results: list[SearchHit]
    took_ms: float
    timings: SearchTimings | None = None
    cached: bool = False
    offset: int = 0
    model: str | None = None
    random_weights: bool = False
    notice: str | None = None


class Stats(_Answer):
    photos: int
    model: dict[str, Any] | None = None
    random_weights: bool = False
    table: dict[str, Any] | None = None


class FacetValue(_Answer):
    value: str
    photos: int


class IngestAccepted(_Answer):
    job_id: str
    photos: int
    batches: int


class JobFailure(_Answer):
    photo_id: str
    url: str = ""
    code: str
    reason: str


class Job(_Answer):
    job_id: str
    state: str
    total: int = 0
    succeeded: int = 0
    skipped: int = 0
    failed: int = 0
    batches_total: int = 0
    batches_done: int = 0
    failures: list[JobFailure] = []


class Readiness(_Answer):
    ready: bool
    checks: dict[str, str] = {}
    message: str | None = None
