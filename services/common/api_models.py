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


class SearchMatch(_Answer):
    """Why a result matched: its rank and score in each search that found it (None where that search did
    not), the fused score that ranked it, and the query's words found in its text."""

    vector_rank: int | None = None
    vector_score: float | None = None
    lexical_rank: int | None = None
    lexical_score: float | None = None
    fused_score: float | None = None
    words: list[str] = []


class SearchHit(Photo):
    score: float = Field(description="Cosine similarity to the query, -1 to 1.")
    rank: int = Field(description="1 for the closest photo, counting from the first page.")
    relevance: float | None = Field(None, description="Share of a sample of the library this photo is closer "
                                                      "than (0..1); None from an older gateway or when unknown.")
    match: SearchMatch | None = Field(None, description="Why it matched; None from an older gateway.")

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
    mode: str | None = Field(None, description='The mode the gateway used: "vector", "lexical" or "hybrid".')
    notices: list[str] = []
    query_truncated: bool = False


class ModelInfo(_Answer):
    """The embedder's model, as /v1/stats passes it on. An older embedder sends only the fields up to
    `max_text_tokens`, so every later one is optional: `text_tower` reads a missing `text_model` as
    `name`, and a missing `languages` means unknown (not "none")."""

    name: str = Field(description="The image model (and the text model too, unless `text_model` differs).")
    dim: int = Field(description="Length of the vectors both towers make.")
    device: str | None = None
    dtype: str | None = None
    fingerprint: str | None = Field(None, description="The image model's weights fingerprint.")
    random_weights: bool = False
    image_size: int | None = None
    max_text_tokens: int | None = Field(None, description="The text tower's limit, in tokens.")
    family: str | None = Field(None, description='The image model\'s family: "clip", "siglip" or "siglip2".')
    text_model: str | None = Field(None, description="The model that embeds texts; absent from an older "
                                                     "embedder, whose texts `name` embeds.")
    text_family: str | None = Field(None, description='"clip", "siglip", "siglip2", "st-multilingual" or "mclip".')
    text_fingerprint: str | None = Field(None, description="The text tower's weights fingerprint.")
    languages: list[str] | None = Field(None, description="ISO 639-1 codes the text tower understands; "
                                                          "absent when the embedder does not say.")

    @property
    def text_tower(self) -> str:
        """The model that embeds texts: `text_model`, or `name` when the embedder does not say."""
        return self.text_model or self.name

    @property
    def separate_text_tower(self) -> bool:
        return self.text_tower != self.name


class Stats(_Answer):
    photos: int
    model: ModelInfo | None = Field(None, description="The embedder's model; None while it does not answer.")
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
