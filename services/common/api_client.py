"""The gateway's Python client (sync httpx): what the UI, `make ingest` and tests use instead of raw HTTP.

Every failure is an `ApiError` whose message is a sentence: the server's own, or one naming the URL
that could not be reached.

A 429 (the gateway's rate limit, API_RATE_LIMIT) is not a failure: the call waits out `Retry-After`
and asks again, up to `rate_limit_wait` seconds in all per call (a per-minute limit never asks for more
than 60), telling `on_rate_limit` each time; only a wait past that cap is an `ApiError` (429).
"""
from __future__ import annotations

import base64
import email.utils
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from services.common.api_models import (
    FacetValue,
    IngestAccepted,
    Job,
    Photo,
    Readiness,
    SearchResults,
    Stats,
)

log = logging.getLogger(__name__)

RATE_LIMIT_WAIT_S = 120.0  # two windows of a per-minute limit: enough for a busy key, short enough to say why


class ApiError(Exception):
    """`status` is the HTTP status (0 when the gateway could not be reached), `code` stable, `message` a
    sentence; `retry_after` the seconds the gateway asked to wait (429, 503), `body` its JSON answer."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None,
                 body: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.body = body

    def __repr__(self) -> str:
        return f"ApiError(status={self.status}, code={self.code!r}, message={self.message!r})"


RateLimitHandler = Callable[[float, "ApiError"], None]


def _log_rate_limit(seconds: float, error: ApiError) -> None:
    log.warning("waiting %g s for the gateway's rate limit: %s", seconds, error.message)


class ApiClient:
    """`rate_limit_wait`: the most seconds one call waits out the gateway's 429s in all (0: none, the
    429 is raised at once); `on_rate_limit(seconds, error)` is told before each wait (default: a log line)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0, *,
                 rate_limit_wait: float = RATE_LIMIT_WAIT_S, on_rate_limit: RateLimitHandler | None = None):
        self.base_url = base_url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)
        self.rate_limit_wait = rate_limit_wait
        self.on_rate_limit = on_rate_limit or _log_rate_limit

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- reads ---------------------------------------------------------------------------------

    def search(self, text: str | None = None, image: bytes | None = None, image_url: str | None = None,
               photo_id: str | None = None, weight: float = 0.5, top_k: int = 10,
               min_score: float | None = None, filters: dict[str, Any] | None = None,
               terms: list[dict] | None = None, offset: int | None = None,
               collapse: float | None = None, mode: str | None = None, fusion: str | None = None,
               alpha: float | None = None, rrf_k: int | None = None,
               min_relevance: float | None = None) -> dict:
        """Search. `terms` (see the API's `terms`) is a list of weighted parts, each one of `text`,
        `image` (bytes), `image_base64`, `image_url` or `photo_id`, with a `weight` from -2 to 2.
        `mode` ("vector", "lexical" or "hybrid"), `fusion` ("rrf" or "alpha"), `alpha`, `rrf_k` and
        `min_relevance` (0..1) are sent only when given, so an older gateway is asked nothing it lacks."""
        fields: dict[str, Any] = {"text": text, "image_url": image_url, "photo_id": photo_id,
                                  "weight": weight, "top_k": top_k, "min_score": min_score, "filters": filters,
                                  "offset": offset, "collapse": collapse, "mode": mode, "fusion": fusion,
                                  "alpha": alpha, "rrf_k": rrf_k, "min_relevance": min_relevance}
        fields = {name: value for name, value in fields.items() if value is not None}
        term_images = any(isinstance(term.get("image"), (bytes, bytearray)) for term in terms or ())
        if image is None and not term_images:
            if terms:
                fields["terms"] = _wire_terms(terms, None)
            return self._request("POST", "/v1/search", json=fields)
        # Multipart carries images as bytes (no base64 inflation): the query image as the file `image`,
        # each term's image as `image_1`, `image_2`, ... named by its term.
        files: dict[str, Any] = {}
        if image is not None:
            files["image"] = ("query-image", image, "application/octet-stream")
        if terms:
            fields["terms"] = _wire_terms(terms, files)
        form = {name: json.dumps(value) if name in ("filters", "terms") else str(value)
                for name, value in fields.items()}
        return self._request("POST", "/v1/search", data=form, files=files)

    def random_photo(self, filters: dict[str, Any] | None = None) -> dict:
        """A stored photo at random; with `filters` (as in `search`), among the photos they match."""
        return self._request("GET", "/v1/photos/random", params={"filters": json.dumps(filters)} if filters else None)

    def get_photo(self, photo_id: str) -> dict:
        return self._request("GET", f"/v1/photos/{_path(photo_id)}")

    def stats(self) -> dict:
        return self._request("GET", "/v1/stats")

    def facet(self, field: str, limit: int = 100) -> list[dict]:
        """[{"value", "photos"}, ...]: the most common values of a metadata field, most photos first."""
        return self._request("GET", f"/v1/facets/{_path(field)}", params={"limit": limit})["values"]

    def job(self, job_id: str, rate_limit_wait: float | None = None) -> dict:
        """The job's state. `rate_limit_wait` overrides the client's for this call: the page's polling
        passes 0 and waits out a 429 itself, between timer ticks, rather than inside one."""
        return self._request("GET", f"/v1/jobs/{_path(job_id)}", rate_limit_wait=rate_limit_wait)

    def job_failures(self, job_id: str, offset: int = 0, limit: int = 100) -> dict:
        """{"total", "offset", "limit", "failures": [{photo_id, url, code, reason, record}, ...]}."""
        return self._request("GET", f"/v1/jobs/{_path(job_id)}/failures", params={"offset": offset, "limit": limit})

    def reembed_status(self) -> dict:
        """{"active": {table, model, text_model, dim, previous, ...}, "job": {state, total, done, failed,
        fell_back, failures_by_reason, rate, eta_s, from/to tables and models, error} or None}."""
        return self._request("GET", "/v1/reembed")

    def reembed(self, model: str, text_model: str | None = None, batch_size: int | None = None) -> dict:
        """Start (or resume) re-embedding the library under `model`; answers as reembed_status, plus "resumed"."""
        body = {"model": model, "text_model": text_model, **({"batch_size": batch_size} if batch_size else {})}
        return self._request("POST", "/v1/reembed", json=body)

    def reembed_action(self, action: str) -> dict:
        """`rollback` or `drop-old` (POST /v1/reembed/<action>)."""
        return self._request("POST", f"/v1/reembed/{_path(action)}")

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def readiness(self) -> dict:
        """/readyz's body, ready or not: {"status" or "error", "checks": {dependency: "ok" or why}}."""
        try:
            return self._request("GET", "/readyz")
        except ApiError as exc:
            if exc.status == 503 and exc.body:
                return exc.body
            raise

    def health(self) -> dict:
        """/healthz: {"status": "ok"} while the process is up."""
        return self._request("GET", "/healthz")

    def metrics(self) -> str:
        """/metrics: the Prometheus text."""
        response = self._send("GET", "/metrics")
        if not response.is_success:
            raise _error_from(response, self.base_url + "/metrics")
        return response.text

    @property
    def typed(self) -> TypedApi:
        """The same calls, answering pydantic models (services/common/api_models.py) instead of dicts."""
        return TypedApi(self)

    def search_results(self, **query: Any) -> SearchResults:
        """`search` (same arguments) as a typed `SearchResults`."""
        return self.typed.search(**query)

    # -- writes --------------------------------------------------------------------------------

    def ingest(self, photos: list[dict], job_id: str | None = None, batch_size: int | None = None) -> dict:
        body: dict[str, Any] = {"photos": photos}
        if job_id is not None:
            body["job_id"] = job_id
        if batch_size is not None:
            body["batch_size"] = batch_size
        return self._request("POST", "/v1/ingest", json=body)

    def retry_job(self, job_id: str, batch_size: int | None = None) -> dict:
        """A new job with only `job_id`'s failed photos: {"job_id", "photos", "batches", "retry_of"}."""
        params = {"batch_size": batch_size} if batch_size is not None else None
        return self._request("POST", f"/v1/jobs/{_path(job_id)}/retry", params=params)

    def upload(self, files: list[tuple[str, Any, dict]], job_id: str | None = None,
               batch_size: int | None = None) -> dict:
        """POST /v1/ingest/upload: (name, bytes or an open binary file, {path, size, mtime}) per file;
        open files are streamed, not read into memory first."""
        form: dict[str, str] = {"files": json.dumps([described for _, _, described in files])}
        if job_id is not None:
            form["job_id"] = job_id
        if batch_size is not None:
            form["batch_size"] = str(batch_size)
        parts = [("file", (name, body, "application/octet-stream")) for name, body, _ in files]
        return self._request("POST", "/v1/ingest/upload", data=form, files=parts)

    def files(self, folder: str, after: str | None = None, limit: int | None = None) -> dict:
        """A page of the files recorded under `folder`, in path order: those after the path `after`, at
        most `limit` (the gateway's cap when None); `next` is the `after` of the next page, null on the
        last. Also whether the workers may read the folder (`readable`, `reason`)."""
        params: dict[str, Any] = {"folder": folder}
        if after is not None:
            params["after"] = after
        if limit is not None:
            params["limit"] = limit
        return self._request("GET", "/v1/files", params=params)

    def files_of(self, photo_ids: list[str]) -> dict[str, list[str]]:
        """{photo_id: [recorded paths]} for the stored photos among `photo_ids`."""
        return self._request("POST", "/v1/files/lookup", json={"photo_ids": photo_ids})["files"]

    def forget_files(self, paths: list[str]) -> dict:
        return self._request("POST", "/v1/files/forget", json={"paths": paths})

    def delete_photo(self, photo_id: str) -> dict:
        return self._request("DELETE", f"/v1/photos/{_path(photo_id)}")

    # -- plumbing ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, rate_limit_wait: float | None = None, **kwargs: Any) -> dict:
        url = self.base_url + path
        response = self._send(method, path, rate_limit_wait, **kwargs)
        if response.is_success:
            try:
                return response.json()
            except ValueError as exc:
                raise ApiError(response.status_code, "bad_response",
                               f"The gateway at {url} answered with something that is not JSON.") from exc
        raise _error_from(response, url)

    def _send(self, method: str, path: str, rate_limit_wait: float | None = None, **kwargs: Any) -> httpx.Response:
        """The response, after waiting out any 429s within the cap; transport failures as ApiError."""
        url = self.base_url + path
        cap = self.rate_limit_wait if rate_limit_wait is None else rate_limit_wait
        # Open files of an upload are read by each attempt: each must start again where the first did.
        files = [body for body in _file_bodies(kwargs.get("files")) if hasattr(body, "seek")]
        starts = [body.tell() for body in files]
        waited, backoff = 0.0, 1.0
        while True:
            try:
                response = self._read(method, path, **kwargs)
            except httpx.TimeoutException as exc:
                raise ApiError(0, "timeout", f"The gateway at {url} did not answer in time.") from exc
            except httpx.HTTPError as exc:
                raise ApiError(0, "unreachable", f"Could not reach the gateway at {url}: {exc}.") from exc
            if response.status_code != 429 or cap <= 0:
                return response
            error = _error_from(response, url)
            # Without Retry-After (a proxy's 429), back off: 1, 2, 4 ... 30 s.
            delay = max(error.retry_after if error.retry_after is not None else backoff, 0.5)
            backoff = min(backoff * 2, 30.0)
            if waited + delay > cap:
                so_far = f" after {waited:g} s" if waited else ""
                raise ApiError(429, error.code, f"{error.message} Waiting {delay:g} s more{so_far} for the "
                               f"gateway's rate limit would pass the {cap:g} s this client waits for it per "
                               f"request.", error.retry_after, error.body)
            self.on_rate_limit(delay, error)
            time.sleep(delay)
            waited += delay
            for body, start in zip(files, starts):
                body.seek(start)

    def _read(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The whole response, in a Response of its own. httpx's refers to itself (through its stream),
        so a body kept on it waits for the cycle collector, which a long run seldom calls: the pages of
        a folder's listing would pile up until it did. Read here, the body is freed with the answer."""
        with self._http.stream(method, path, **kwargs) as streamed:
            raw = b"".join(streamed.iter_raw())  # as sent: the new Response decodes it as its headers say
        return httpx.Response(streamed.status_code, headers=streamed.headers, content=raw, request=streamed.request)


def _file_bodies(files: Any) -> list[Any]:
    """The bodies of httpx's `files` argument (a dict or a list of (field, (name, body, type)) pairs)."""
    if not files:
        return []
    items = files.values() if isinstance(files, dict) else (value for _, value in files)
    return [value[1] if isinstance(value, tuple) else value for value in items]


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date (then the time left until it, at least 0)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - time.time(), 0.0)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _error_from(response: httpx.Response, url: str) -> ApiError:
    wait = retry_after_seconds(response.headers.get("retry-after"))
    try:
        body = response.json()
        error = body["error"]
        return ApiError(response.status_code, str(error["code"]), str(error["message"]), wait, body)
    except (ValueError, KeyError, TypeError):
        # Not our gateway's error shape (a proxy in between, say): say what we can.
        return ApiError(response.status_code, "http_error",
                        f"The gateway at {url} answered HTTP {response.status_code}.", wait)


class TypedApi:
    """`ApiClient`'s calls answering typed models; the dict-answering methods stay as they are."""

    def __init__(self, client: ApiClient):
        self._client = client

    def search(self, **query: Any) -> SearchResults:
        return SearchResults.model_validate(self._client.search(**query))

    def get_photo(self, photo_id: str) -> Photo:
        return Photo.model_validate(self._client.get_photo(photo_id))

    def random_photo(self, filters: dict[str, Any] | None = None) -> Photo:
        return Photo.model_validate(self._client.random_photo(filters))

    def stats(self) -> Stats:
        return Stats.model_validate(self._client.stats())

    def facet(self, field: str, limit: int = 100) -> list[FacetValue]:
        return [FacetValue.model_validate(value) for value in self._client.facet(field, limit)]

    def job(self, job_id: str) -> Job:
        return Job.model_validate(self._client.job(job_id))

    def ingest(self, photos: list[dict], job_id: str | None = None, batch_size: int | None = None) -> IngestAccepted:
        return IngestAccepted.model_validate(self._client.ingest(photos, job_id, batch_size))

    def readiness(self) -> Readiness:
        body = self._client.readiness()
        error = body.get("error") or {}
        return Readiness(ready=body.get("status") == "ready", checks=body.get("checks") or {},
                         message=error.get("message"))


def _wire_terms(terms: list[dict], files: dict[str, Any] | None) -> list[dict]:
    """Terms for the wire. An `image` given as bytes becomes a file `image_N` named by the term when
    `files` (multipart) is given, else base64 text in `image_base64` (JSON)."""
    wired = []
    for term in terms:
        term = dict(term)
        if isinstance(term.get("image"), (bytes, bytearray)):
            content = bytes(term.pop("image"))
            if files is None:
                term["image_base64"] = base64.b64encode(content).decode("ascii")
            else:
                name = f"image_{sum(key.startswith('image_') for key in files) + 1}"
                files[name] = (name, content, "application/octet-stream")
                term["image"] = name
        wired.append(term)
    return wired


def _path(segment: str) -> str:
    return quote(segment, safe="")
