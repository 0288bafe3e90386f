"""The gateway's HTTP bodies: search queries and results, photos, stats, ingestion jobs."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common.schemas import LocalFile, PhotoRecord
from services.photostore.filters import Filters, parse_filters

TOP_K_MAX = 100
OFFSET_MAX = 1000
INGEST_MAX_PHOTOS = 5000
BATCH_SIZE_MAX = 256
TERMS_MAX = 8
TERM_WEIGHT_MAX = 2.0
TEXT_MAX_CHARS = 10_000  # a lexical query may be long; the embedder gets the first 2,000 (hybrid.py)
RRF_K_MAX = 1000
_TERM_SOURCES = ("text", "image_base64", "image", "image_url", "photo_id")


class SearchTerm(BaseModel):
    """One weighted part of a query: exactly one of text, image_base64 (multipart: `image`, the name of
    a file field), image_url or photo_id."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, max_length=2000, description="Words.")
    image_base64: str | None = Field(None, description="An image, base64-encoded (JSON).")
    image: str | None = Field(None, max_length=64, description="Multipart only: the file field holding the "
                                                               "image (`image`, `image_1`, ...).")
    image_url: str | None = Field(None, max_length=4096, description="An image to fetch (http or https).")
    photo_id: str | None = Field(None, max_length=256, description="A stored photo; its stored vector is used.")
    weight: float = Field(1.0, description=f"-{TERM_WEIGHT_MAX:g} to {TERM_WEIGHT_MAX:g}; negative means "
                                           f"\"less like this\".")

    @field_validator("weight")
    @classmethod
    def _weight_range(cls, value: float) -> float:
        if not -TERM_WEIGHT_MAX <= value <= TERM_WEIGHT_MAX:
            raise ValueError(f"a term's weight must be between -{TERM_WEIGHT_MAX:g} and {TERM_WEIGHT_MAX:g}")
        return value

    @field_validator(*_TERM_SOURCES)
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @model_validator(mode="after")
    def _one_source(self) -> SearchTerm:
        given = [name for name in _TERM_SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("each term needs exactly one of text, image_base64, image_url or photo_id (and a "
                             f"weight), not {' and '.join(given) if given else 'none'}")
        return self

    @property
    def source(self) -> str:
        return next(name for name in _TERM_SOURCES if getattr(self, name) is not None)


class SearchRequest(BaseModel):
    """A query: any of text, an image (base64 here, or a multipart file), an image URL, or a stored
    photo's id. All given parts are combined into one vector."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, max_length=TEXT_MAX_CHARS,
                             description="What to look for, in words. Up to 10,000 characters: the embedder gets the "
                                         "first 2,000, word matching the first 1,000 (query_truncated says so).")
    image_base64: str | None = Field(None, description="A query image, base64-encoded (JSON only; "
                                                       "multipart sends it as the file field `image`).")
    image_url: str | None = Field(None, max_length=4096, description="A query image to fetch (http or https).")
    photo_id: str | None = Field(None, max_length=256,
                                 description="A stored photo to search like; it comes back itself, first.")
    weight: float = Field(0.5, description="The image's share of the query when there is text as well: "
                                           "0 = text only, 1 = image only, 0.5 = the mean of the two "
                                           "unit vectors, normalised again.")
    terms: list[SearchTerm] | None = Field(
        None, max_length=TERMS_MAX,
        description=f"Up to {TERMS_MAX} weighted terms, each one of text, image_base64, image_url or photo_id "
                    f"with a weight from -{TERM_WEIGHT_MAX:g} to {TERM_WEIGHT_MAX:g}: the query is the normalised "
                    f"sum of each term's unit vector times its weight (negative: less like this). The "
                    f"fields above, when given as well, are one more term of weight 1.")
    top_k: int = Field(10, description=f"How many results, 1 to {TOP_K_MAX}.")
    min_score: float | None = Field(None, description="Drop results whose cosine similarity is below this.")
    offset: int = Field(0, description=f"Skip this many results: the next page starts at offset + top_k "
                                       f"(0 to {OFFSET_MAX}).")
    collapse: float | None = Field(None, description="Fold near-duplicates: drop a result whose cosine similarity "
                                                     "to a better result is at least this (e.g. 0.95; 0 to 1).")
    filters: dict[str, Any] | None = Field(
        None, description="Metadata filters: {\"photo_location_country\": \"Spain\"} (equal), a list "
                          "(any of), or operators {\"photo_width\": {\"gte\": 1000}} (eq, ne, gt, gte, lt, "
                          "lte, in, contains).")
    kind: Literal["photo", "video"] | None = Field(
        None, description="Only photos (\"photo\") or only videos (\"video\"); both when absent. A video result "
                          "carries kind \"video\", its duration_s and frame_s, the time of the frame shown.")
    mode: Literal["vector", "lexical", "hybrid"] | None = Field(
        None, description="vector: by the query's vector (what photos look like); lexical: by the words of the "
                          "text in the photos' descriptions, names and file names (BM25), `-word` and "
                          "`-\"a phrase\"` excluding; hybrid: both, fused. Absent: the gateway's API_SEARCH_MODE. "
                          "Without words to match, a query runs as vector and says so in `notices`.")
    fusion: Literal["rrf", "alpha"] = Field("rrf", description="How hybrid fuses its two lists: rrf (reciprocal "
                                                               "rank fusion) or alpha (a weighted sum of scores).")
    rrf_k: int = Field(60, description=f"RRF's constant, 1 to {RRF_K_MAX}: each list adds 1 / (rrf_k + rank).")
    alpha: float = Field(0.5, description="With fusion alpha: the vector's share, 0 to 1 (each list's scores "
                                          "min-max normalised).")
    min_relevance: float | None = Field(None, description="Drop results less relevant than this, 0 to 1: 0.99 keeps "
                                                          "photos closer to the query than 99% of the library.")

    @model_validator(mode="after")
    def _kind_filter(self) -> SearchRequest:
        # The kind is one more filter. Rows stored before videos were taken have no kind: they are photos.
        if self.kind is not None:
            spec = dict(self.filters or {})
            spec["kind"] = "video" if self.kind == "video" else {"ne": "video"}
            self.filters = parse_filters(spec)
        return self

    @field_validator("weight")
    @classmethod
    def _weight_range(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError("weight must be between 0 and 1 (the image's share of the query)")
        return value

    @field_validator("rrf_k")
    @classmethod
    def _rrf_k_range(cls, value: int) -> int:
        if not 1 <= value <= RRF_K_MAX:
            raise ValueError(f"rrf_k must be between 1 and {RRF_K_MAX}")
        return value

    @field_validator("alpha", "min_relevance")
    @classmethod
    def _share_range(cls, value: float | None, info: Any) -> float | None:
        if value is not None and not 0.0 <= value <= 1.0:
            meaning = "the vector's share" if info.field_name == "alpha" else "a share of the library"
            raise ValueError(f"{info.field_name} must be between 0 and 1 ({meaning})")
        return value

    @field_validator("top_k")
    @classmethod
    def _top_k_range(cls, value: int) -> int:
        if not 1 <= value <= TOP_K_MAX:
            raise ValueError(f"top_k must be between 1 and {TOP_K_MAX}")
        return value

    @field_validator("offset")
    @classmethod
    def _offset_range(cls, value: int) -> int:
        if not 0 <= value <= OFFSET_MAX:
            raise ValueError(f"offset must be between 0 and {OFFSET_MAX}")
        return value

    @field_validator("collapse")
    @classmethod
    def _collapse_range(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError("collapse must be between 0 and 1 (a cosine similarity)")
        return value

    @field_validator("min_score")
    @classmethod
    def _min_score_range(cls, value: float | None) -> float | None:
        if value is not None and not -1.0 <= value <= 1.0:
            raise ValueError("min_score must be between -1 and 1 (a cosine similarity)")
        return value

    @field_validator("filters", mode="wrap")
    @classmethod
    def _valid_filters(cls, value: Any, handler: Any) -> Filters | None:
        # The store's grammar, checked once here. InvalidFilter is not a ValueError, so pydantic lets it
        # through as itself (422 `invalid_filter`) rather than as a generic `invalid_request`; "wrap"
        # runs it before the type check, so a non-object is a filter error too.
        return parse_filters(value)

    @field_validator("text", "photo_id", "image_url", "image_base64")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        # A whitespace-only field is treated as absent, so "   " alone is "nothing to search by".
        if value is not None and not value.strip():
            return None
        return value.strip() if value is not None else None


class Photo(PhotoRecord):
    """A stored photo as a user sees it: its id, image URL and Unsplash metadata (an ingested record)."""

    thumbnail_url: str = Field("", description="The gateway path of the photo's thumbnail (a JPEG, 320 px). When "
                               "reads need a key it is signed (expires, signature), so that an <img> loads it "
                               "without one until it expires.")
    file: LocalFile | None = Field(None, exclude=True)

    @field_validator("photo_submitted_at", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> str:
        # The store may hand back a datetime; the wire carries ISO 8601 text.
        if value is None:
            return ""
        return value.isoformat() if hasattr(value, "isoformat") else str(value)


class Match(BaseModel):
    """Why a lexical or hybrid result is where it is: its place in each list (null where a list lacked it)."""

    vector_rank: int | None = Field(None, description="Its rank in the vector search's list.")
    vector_score: float | None = Field(None, description="Its cosine similarity in that list.")
    lexical_rank: int | None = Field(None, description="Its rank in the word search's list.")
    lexical_score: float | None = Field(None, description="Its BM25 score there.")
    fused_score: float | None = Field(None, description="The fused score the hybrid order follows.")
    words: list[str] = Field([], description="The query's words found in the photo's text.")


class SearchResult(Photo):
    score: float = Field(description="Cosine similarity to the query, -1 to 1; higher is closer.")
    rank: int = Field(description="1 for the closest photo (in lexical and hybrid: the first of that order).")
    relevance: float | None = Field(None, description="The share of the library (a fixed sample of it) less "
                                                      "similar to the query than this photo, 0 to 1; null when "
                                                      "the library is empty.")
    match: Match | None = Field(None, description="Lexical and hybrid: ranks and scores in each list, and the "
                                                  "words matched; null in vector mode.")


class SearchTimings(BaseModel):
    embed_ms: float = Field(description="Building the query vector: the embedder, or the text vector cache "
                                        "(near 0 when every text was cached), fetched images, stored vectors.")
    store_ms: float = Field(description="The store's search, or the check that a kept answer is still current.")
    total_ms: float = Field(description="The whole query in the gateway (the same as took_ms).")


class SearchResponse(BaseModel):
    results: list[SearchResult]
    took_ms: float
    timings: SearchTimings = Field(description="Where the time went; also sent as the Server-Timing header.")
    cached: bool = Field(False, description="True when the results are the gateway's kept answer to the same "
                                            "query, reused because the store's table has not changed since.")
    offset: int = Field(0, description="How many results this page skipped; ranks count from the first page.")
    model: str | None = Field(description="The embedder model that made the query vector.")
    random_weights: bool = Field(description="True when that model has random weights: results are meaningless.")
    notice: str | None = Field(None, description="Sentences to show the user, e.g. about random weights "
                                                 "(every one of `notices`, joined).")
    mode: str = Field("vector", description="The mode the query ran in: vector, lexical or hybrid (a query "
                                            "without words to match runs as vector).")
    notices: list[str] = Field([], description="Each sentence to show the user, one per item.")
    query_truncated: bool = Field(False, description="True when the text was cut for the embedder or the word "
                                                     "matcher (a notice says where).")


class ModelInfo(BaseModel):
    """The embedder's GET /v1/model, passed on. The text tower's fields are null from an older embedder,
    whose own model embeds texts as well: read a null `text_model` as `name`, null `languages` as unknown."""

    # A newer embedder's further fields (pixel_input, ...) pass through rather than being dropped.
    model_config = ConfigDict(extra="allow")

    name: str = Field(description="The image model; it embeds texts too unless `text_model` names another.")
    dim: int = Field(description="Length of the vectors, the same for images and texts.")
    device: str | None = None
    dtype: str | None = None
    fingerprint: str | None = Field(None, description="The image model's weights fingerprint.")
    random_weights: bool = Field(False, description="True when the weights are random: results are meaningless.")
    image_size: int | None = None
    max_text_tokens: int | None = Field(None, description="The text tower's limit, in tokens (77 for CLIP, 64 "
                                                          "for SigLIP, 128 or 512 for multilingual towers).")
    # Strings, not enums: a family the gateway does not know yet must not turn /v1/stats into a 500.
    family: str | None = Field(None, description='The image model\'s family: "clip", "siglip" or "siglip2".')
    text_model: str | None = Field(None, description="The model that embeds texts: `name` itself, or a "
                                                     "separate (e.g. multilingual) text tower.")
    text_family: str | None = Field(None, description='The text tower\'s family: "clip", "siglip", "siglip2", '
                                                      '"st-multilingual" or "mclip".')
    text_fingerprint: str | None = Field(None, description="The text tower's weights fingerprint.")
    languages: list[str] | None = Field(None, description='ISO 639-1 codes the text tower understands (["en"] '
                                                          "for OpenAI CLIP).")


class Stats(BaseModel):
    photos: int
    model: ModelInfo | None = Field(description="The embedder's model info, or null if it is unreachable.")
    random_weights: bool
    table: dict[str, Any] | None = Field(description="The store table's model and dim, or null before ingestion.")


class FacetValue(BaseModel):
    value: str
    photos: int = Field(description="How many stored photos have this value.")


class Facet(BaseModel):
    field: str
    values: list[FacetValue] = Field(description="The most common values, most photos first.")


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    photos: list[PhotoRecord] = Field(min_length=1, max_length=INGEST_MAX_PHOTOS)
    job_id: str | None = Field(None, min_length=1, max_length=128,
                               description="Add these photos to an existing job instead of starting one.")
    batch_size: int = Field(32, ge=1, le=BATCH_SIZE_MAX, description="Photos per worker task.")


class IngestAccepted(BaseModel):
    job_id: str
    photos: int
    batches: int


class JobFailure(BaseModel):
    model_config = ConfigDict(extra="allow")

    photo_id: str
    url: str = ""
    code: str
    reason: str


class Job(BaseModel):
    model_config = ConfigDict(extra="allow")

    job_id: str
    state: str
    total: int = 0
    succeeded: int = 0
    skipped: int = 0
    failed: int = 0
    batches_total: int = 0
    batches_done: int = 0
    failures_by_reason: dict[str, int] = Field({}, description="How many photos failed, by failure code, most first.")
    rate: float = Field(0.0, description="Photos processed per second since the job was created.")
    eta_s: float | None = Field(None, description="Seconds left at that rate; null before the first batch ends.")
    failures: list[JobFailure] = Field([], description="The first failures; GET /v1/jobs/{id}/failures pages "
                                                       "through all of them.")
    retry_of: str | None = Field(None, description="The job whose failures this job retries.")
    created_at: Any = None
    updated_at: Any = None


class JobFailures(BaseModel):
    job_id: str
    total: int = Field(description="How many failures are stored for the job.")
    offset: int
    limit: int
    failures: list[JobFailure] = Field(description="Each failure with its code, reason and the photo's record.")


class RetryAccepted(IngestAccepted):
    retry_of: str


# GET /v1/files: the listing the ingest command matches a folder's walk against, a page at a time.
FILES_PAGE_MAX = 10_000


class StoredFile(BaseModel):
    path: str
    photo_id: str
    size: int
    mtime: float


class FilesPage(BaseModel):
    folder: str
    readable: bool = Field(description="Whether the workers may read the folder (it lies under LIBRARY_ROOTS).")
    reason: str | None = Field(description="Why they may not, as a sentence; null when they may.")
    files: list[StoredFile] = Field(description=f"The recorded files under the folder after `after`, in path "
                                                f"order, at most `limit` ({FILES_PAGE_MAX:,} when not given).")
    next: str | None = Field(description="The `after` of the next page; null on the last. A caller that asks "
                                         "for no page gets the first one and this, not every file.")
