"""Query orchestration: turn a search request into one vector, ask the store, shape the results.

The HTTP route only parses; everything a query means lives here, so unit tests can drive it with
fake adapters. The parts of a query are embedded concurrently: text and image go to the embedder
at the same time as the store is asked for a `photo_id`'s vector.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote

import numpy as np

from services.api import hybrid, relevance
from services.api.deps import Services, blocking
from services.api.resultcache import answer_key
from services.common.errors import (
    BadRequest,
    DependencyFailed,
    DependencyTimeout,
    NotFound,
    PayloadTooLarge,
)
from services.common.library import FILE_SCHEME, UPLOAD_SCHEME
from services.common.schemas import METADATA_FIELDS
from services.common.vectors import combine, normalize
from services.photostore.results import MAX_RESULTS

log = logging.getLogger(__name__)

NOTHING_TO_SEARCH = "Give a text, an image, or a photo_id to search by."
RANDOM_WEIGHTS_NOTICE = ("These results come from a model with random weights (a test or offline "
                         "model), so they are meaningless: configure a trained CLIP model for real search.")


@dataclass
class QueryTerm:
    """One weighted term: `kind` is text, image (value: bytes), image_url or photo_id."""

    kind: str
    value: Any
    weight: float = 1.0


@dataclass
class SearchQuery:
    """A validated query. `image` is the raw bytes of an uploaded or base64 image."""

    text: str | None = None
    image: bytes | None = None
    image_url: str | None = None
    photo_id: str | None = None
    weight: float = 0.5
    top_k: int = 10
    min_score: float | None = None
    filters: dict[str, Any] | None = None
    offset: int = 0
    collapse: float | None = None
    terms: list[QueryTerm] = field(default_factory=list)
    fresh: bool = False  # Cache-Control: no-cache: the store answers, not the result cache
    # Query modes and calibrated relevance (see hybrid.py and relevance.py); None: API_SEARCH_MODE.
    mode: str | None = None
    fusion: str = "rrf"
    rrf_k: int = 60
    alpha: float = 0.5
    min_relevance: float | None = None
    relevance_sample: int = relevance.DEFAULT_SAMPLE


def decode_base64_image(text: str, max_bytes: int) -> bytes:
    """Decode a base64 (or data: URL) image, refusing bad encodings and oversized images."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    # Refuse before decoding: 4 base64 characters carry 3 bytes.
    if len(text) * 3 // 4 > max_bytes + 3:
        raise PayloadTooLarge(_too_large(max_bytes))
    try:
        image = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("image_base64 is not valid base64; send the image's bytes base64-encoded.",
                         code="invalid_base64") from exc
    if not image:
        raise BadRequest("image_base64 decodes to an empty image.", code="invalid_base64")
    if len(image) > max_bytes:
        raise PayloadTooLarge(_too_large(max_bytes))
    return image


def _too_large(max_bytes: int) -> str:
    return f"The query image is larger than this gateway accepts ({byte_size(max_bytes)} at most per image)."


def byte_size(count: int) -> str:
    """A limit as a person reads it: whole MiB when it is some, else bytes (a test's 4,096 is not "0 MiB")."""
    mib = 1024 * 1024
    return f"{count // mib} MiB" if count >= mib and count % mib == 0 else f"{count:,} bytes"


def check_query_images(sizes: list[int], max_total: int) -> None:
    """The images of one query together, each already within the per-image limit, against the total cap."""
    if sum(sizes) > max_total:
        raise PayloadTooLarge(f"The images of one query add up to more than this gateway accepts "
                              f"({byte_size(max_total)} at most in all, API_MAX_QUERY_BYTES): send fewer or "
                              "smaller images.")


async def fetch_query_image(services: Services, url: str) -> bytes:
    """Fetch `image_url`; a fetch failure becomes the caller's error, or a 504 for a slow server."""
    from services.common.fetch import FetchError

    if not url.lower().startswith(("http://", "https://")):
        raise BadRequest("image_url must be an http or https URL.", code="invalid_image_url")
    try:
        return await services.fetch(url)
    except FetchError as exc:
        if exc.code == "timeout":
            raise DependencyTimeout(f"Fetching image_url timed out: {exc}", code="fetch_timeout") from exc
        if exc.code == "too_large":
            raise PayloadTooLarge(f"image_url is too large: {exc}") from exc
        raise BadRequest(f"image_url could not be used: {exc}", code=f"fetch_{exc.code}") from exc


async def _photo_vector(services: Services, photo_id: str) -> np.ndarray:
    photo = await blocking(services.store.get_photo, photo_id, with_vector=True)
    if photo is None:
        raise NotFound(f"No photo with photo_id {photo_id!r} is in the store.", code="photo_not_found")
    vector = photo.get("vector")
    if vector is None:
        vector = photo.get("embedding")
    if vector is None:
        raise DependencyFailed("The store returned the photo without its vector.", code="store_error")
    return np.asarray(vector, dtype=np.float32)


async def _first_row(coroutine) -> np.ndarray:
    vectors = await coroutine
    return np.asarray(vectors, dtype=np.float32)[0]


async def _gather(**named: Any) -> dict[str, Any]:
    """Await the named coroutines concurrently; raise the first error after all have settled, so
    that no call is left running unobserved."""
    names = list(named)
    results = await asyncio.gather(*named.values(), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return dict(zip(names, results))


def shape_result(row: dict[str, Any]) -> dict[str, Any]:
    """A store row as a result: flat metadata and score; no vector. The rank is the store's (it counts
    from the first page, so it stays right with an offset)."""
    result = {key: value for key, value in row.items() if key not in ("vector", "embedding", "metadata", "id")}
    nested = row.get("metadata")
    if isinstance(nested, dict):
        result.update({key: value for key, value in nested.items() if key in METADATA_FIELDS})
    result["score"] = float(row.get("score", 0.0))
    result["kind"] = result.get("kind") or "photo"  # rows stored before videos were taken are photos
    photo_id = str(result.get("photo_id", ""))
    result["thumbnail_url"] = photo_path(photo_id, "thumbnail")
    # A photo read from a folder has no web address: the gateway serves its original (or thumbnail).
    url = str(result.get("photo_image_url", ""))
    if url.startswith(FILE_SCHEME):
        result["photo_image_url"] = photo_path(photo_id, "original")
    elif url.startswith(UPLOAD_SCHEME):
        result["photo_image_url"] = result["thumbnail_url"]
    return result


def photo_path(photo_id: str, what: str) -> str:
    return f"/v1/photos/{quote(photo_id, safe='')}/{what}"


def _has_fields(query: SearchQuery) -> bool:
    return bool(query.text or query.image or query.image_url or query.photo_id)


async def _fields_vector(services: Services, query: SearchQuery) -> np.ndarray:
    """The vector of the text/image/image_url/photo_id fields, mixed by `weight`."""
    image = query.image
    if query.image_url:
        image = await fetch_query_image(services, query.image_url)
    work: dict[str, Any] = {}
    if query.text:
        work["text"] = _first_row(services.embed_texts([query.text]))
    if image:
        work["image"] = _first_row(services.embed_images([image]))
    if query.photo_id:
        work["photo"] = _photo_vector(services, query.photo_id)
    parts = await _gather(**work)
    # A stored photo's vector is an image vector: with an uploaded image as well, the image side is
    # the mean of the two, and `weight` then balances that side against the text.
    image_vectors = [parts[name] for name in ("image", "photo") if name in parts]
    image_side = normalize(np.sum([normalize(v) for v in image_vectors], axis=0)) if image_vectors else None
    return combine(parts.get("text"), image_side, query.weight)


async def _weighted(coroutine, weights: list[float]) -> np.ndarray:
    """The weighted sum of the unit vectors a batched embedder call returns."""
    vectors = normalize(np.asarray(await coroutine, dtype=np.float32))
    return np.asarray(weights, dtype=np.float32) @ vectors


async def _terms_vector(services: Services, query: SearchQuery) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """The weighted sum of the terms' unit vectors (not normalised), and the stored photos' terms, which
    the store adds to it itself. All texts go to the embedder in one call, all images in another."""
    urls = [term for term in query.terms if term.kind == "image_url"]
    fetched = await _gather(**{str(i): fetch_query_image(services, term.value) for i, term in enumerate(urls)})
    images = [(term.value, term.weight) for term in query.terms if term.kind == "image"]
    images += [(fetched[str(i)], term.weight) for i, term in enumerate(urls)]
    texts = [(term.value, term.weight) for term in query.terms if term.kind == "text"]
    work: dict[str, Any] = {}
    if texts:
        work["texts"] = _weighted(services.embed_texts([t for t, _ in texts]), [w for _, w in texts])
    if images:
        work["images"] = _weighted(services.embed_images([i for i, _ in images]), [w for _, w in images])
    if _has_fields(query):
        work["fields"] = _fields_vector(services, query)
    parts = await _gather(**work)
    stored = [(str(term.value), float(term.weight)) for term in query.terms if term.kind == "photo_id"]
    if not parts:
        return np.zeros(0, np.float32), stored
    return np.sum(list(parts.values()), axis=0).astype(np.float32), stored


async def _query_vector(services: Services, query: SearchQuery) -> tuple[np.ndarray, list[tuple[str, float]]]:
    if not query.terms:
        return await _fields_vector(services, query), []
    vector, stored = await _terms_vector(services, query)
    if not stored and not float(np.linalg.norm(vector)) > 1e-4:
        raise BadRequest("The query's terms cancel each other out (their weighted sum is zero): change a weight "
                         "or add a term.", code="terms_cancel_out")
    # With stored photos the store adds their vectors and the norm does not matter (cosine distance).
    return (vector if stored else normalize(vector)), stored


async def run_search(services: Services, query: SearchQuery) -> dict[str, Any]:
    """The whole query: embed its parts, combine them, search, and say which model answered."""
    started = time.perf_counter()
    if not (_has_fields(query) or query.terms):
        raise BadRequest(NOTHING_TO_SEARCH, code="empty_query")
    if query.image and query.image_url:
        raise BadRequest("Give either an image or an image_url, not both.", code="invalid_request")
    decided = hybrid.plan(query)  # the mode used; texts cut to what the matcher and the embedder take

    # `embed_ms`: building the query vector (embedder calls, or the text cache; fetched images; a stored
    # photo's vector); `store_ms`: the search itself. They are wall times, so they add up to about total.
    embed_started = time.perf_counter()
    pinned = await services.pin_table()  # one table and its model for the whole query, even across a switch
    # The table's data version (for the result cache) is read while the query is embedded, and before the
    # search: an answer is never kept under a version newer than what it saw.
    version = asyncio.ensure_future(_data_version(services))
    decided.start(services, query)  # a word search that needs no vector runs while the query is embedded
    try:
        parts = await _gather(model=services.model_info.get(), vector=_query_vector(services, query))
        model_info: dict[str, Any] = parts["model"]
        vector, stored = parts["vector"]
        store_started = time.perf_counter()
        if vector.size == 0:
            # Only stored photos' terms: the store sums them onto zeros of the table's size.
            table = await services.table_info.get()
            vector = np.zeros(int((table or {}).get("dim") or 0), np.float32)
        full = await hybrid.full_vector(services, vector, stored, decided)
        calibrated = await relevance.calibration(services, full, query.relevance_sample)
        query.min_score = relevance.min_score(query.min_score, query.min_relevance, calibrated)
        rows, cached = await _search_store(services, vector, query, model_info, stored, version, decided, full)
    finally:
        _settle(version)
        decided.settle()
        services.unpin(pinned)
    random_weights = bool(model_info.get("random_weights", False))
    notices = decided.notices + ([RANDOM_WEIGHTS_NOTICE] if random_weights else [])
    results = [shape_result(row) for row in rows]
    relevance.add_relevance(results, calibrated)
    finished = time.perf_counter()
    took_ms = (finished - started) * 1000.0
    timings = {"embed_ms": round((store_started - embed_started) * 1000.0, 2),
               "store_ms": round((finished - store_started) * 1000.0, 2), "total_ms": round(took_ms, 2)}
    log.info("search text=%s image=%s photo_id=%s terms=%d top_k=%d offset=%d -> %d results in %.1f ms%s",
             bool(query.text), bool(query.image or query.image_url), query.photo_id, len(query.terms), query.top_k,
             query.offset, len(rows), took_ms, " (result cache)" if cached else "")
    return {
        "results": results,
        "took_ms": round(took_ms, 2),
        "timings": timings,
        "cached": cached,
        "offset": query.offset,
        "model": model_info.get("name"),
        "random_weights": random_weights,
        "notice": " ".join(notices) or None,
        **decided.answer(),
        "notices": notices,
    }


async def _data_version(services: Services) -> tuple | None:
    cache = services.result_cache
    return await blocking(services.store.data_version) if cache is not None and cache.enabled else None


def _settle(task: asyncio.Future) -> None:
    """Cancel the version read if the query failed before it was needed; never leave its error unretrieved."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


async def _search_store(services: Services, vector: np.ndarray, query: SearchQuery, model_info: dict[str, Any],
                        stored: list[tuple[str, float]], version_read: asyncio.Future,
                        decided: hybrid.Plan | None = None, full: np.ndarray | None = None,
                        ) -> tuple[list[dict[str, Any]], bool]:
    """The page of results, and whether it came from the result cache (see `resultcache.py`)."""
    table = await services.table_info.get()
    if table is None:
        # Nothing ingested yet: an empty answer, not an error.
        return [], False
    _check_same_model(table, model_info, vector)
    if decided is not None and decided.mode != "vector":
        # Kept in the result cache too, under a key that adds the words, the mode and the fusion.
        full = vector if full is None else full
        return await hybrid.search(services, vector, full, query, decided, stored, version_read)
    options: dict[str, Any] = {"stored_terms": stored} if stored else {}
    search = partial(blocking, services.store.search, vector, min_score=query.min_score, filters=query.filters,
                     collapse=query.collapse, **options)
    cache = services.result_cache
    if cache is None or not cache.enabled:
        return await search(top_k=query.top_k, offset=query.offset), False
    wanted = query.offset + query.top_k
    key = answer_key(vector, filters=query.filters, min_score=query.min_score, collapse=query.collapse,
                     stored_terms=stored, table=getattr(services.store, "table", ""))
    version = await version_read
    kept = None if query.fresh else cache.get(key, version, query.offset, wanted)
    if kept is not None:
        return kept, True
    # The first pages at once: "Load more" is then a slice of this answer.
    asked = cache.deep(wanted, MAX_RESULTS)
    rows = await search(top_k=asked, offset=0)
    cache.put(key, version, rows, asked)
    return rows[query.offset:wanted], False


def _check_same_model(table: dict[str, Any], model_info: dict[str, Any], vector: np.ndarray) -> None:
    """The one check, per query, that the table and the embedder share a model: done here, before
    the store is asked, so the refusal names both models and says how to fix it."""
    from services.photostore import ModelMismatch

    table_model, table_dim = table.get("model"), table.get("dim")
    known_names = {model_info.get("name"), model_info.get("fingerprint")} - {None}
    if table_dim is not None and int(table_dim) != vector.shape[-1]:
        raise ModelMismatch(
            f"The store's table holds {table_dim}-dimensional vectors of {table_model!r}, but the embedder "
            f"serves {vector.shape[-1]}-dimensional vectors of {model_info.get('name')!r}: point the embedder "
            f"at the same model, or re-ingest into a new table (STORE_TABLE).")
    if table_model and known_names and table_model not in known_names:
        raise ModelMismatch(
            f"The store's table holds vectors of {table_model!r}, but the embedder serves "
            f"{model_info.get('name')!r}: point the embedder at the same model, or re-ingest into a new "
            f"table (STORE_TABLE).")
