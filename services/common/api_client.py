"""The gateway's Python client (sync httpx): what the UI, `make ingest` and tests use instead of raw HTTP.

Every failure is an `ApiError` whose message is a sentence: the server's own, or one naming the URL
that could not be reached.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx


class ApiError(Exception):
    """`status` is the HTTP status (0 when the gateway could not be reached), `code` stable, `message` a sentence."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ApiError(status={self.status}, code={self.code!r}, message={self.message!r})"


class ApiClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- reads ---------------------------------------------------------------------------------

    def search(self, text: str | None = None, image: bytes | None = None, image_url: str | None = None,
               photo_id: str | None = None, weight: float = 0.5, top_k: int = 10,
               min_score: float | None = None, filters: dict[str, Any] | None = None, offset: int = 0,
               terms: list[dict] | None = None) -> dict:
        """`terms`: [{"text" | "image_base64" | "image_url" | "photo_id": ..., "weight": -2..2}, ...],
        summed into the query vector (a negative weight is "less like this"); `offset` skips that many
        results (the next page)."""
        fields: dict[str, Any] = {"text": text, "image_url": image_url, "photo_id": photo_id,
                                  "weight": weight, "top_k": top_k, "min_score": min_score, "filters": filters,
                                  "offset": offset or None, "terms": terms}
        fields = {name: value for name, value in fields.items() if value is not None}
        if image is None:
            return self._request("POST", "/v1/search", json=fields)
        # Multipart carries the image as bytes: no base64 inflation.
        form = {name: json.dumps(value) if name in ("filters", "terms") else str(value) for name, value in fields.items()}
        return self._request("POST", "/v1/search", data=form,
                             files={"image": ("query-image", image, "application/octet-stream")})

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

    def job(self, job_id: str) -> dict:
        return self._request("GET", f"/v1/jobs/{_path(job_id)}")

    def job_failures(self, job_id: str, offset: int = 0, limit: int = 100) -> dict:
        """{"total", "offset", "limit", "failures": [{photo_id, url, code, reason, record}, ...]}."""
        return self._request("GET", f"/v1/jobs/{_path(job_id)}/failures", params={"offset": offset, "limit": limit})

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

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

    def files(self, folder: str) -> dict:
        """The files recorded under `folder`, and whether the workers may read it (`readable`, `reason`)."""
        return self._request("GET", "/v1/files", params={"folder": folder})

    def files_of(self, photo_ids: list[str]) -> dict[str, list[str]]:
        """{photo_id: [recorded paths]} for the stored photos among `photo_ids`."""
        return self._request("POST", "/v1/files/lookup", json={"photo_ids": photo_ids})["files"]

    def forget_files(self, paths: list[str]) -> dict:
        return self._request("POST", "/v1/files/forget", json={"paths": paths})

    def delete_photo(self, photo_id: str) -> dict:
        return self._request("DELETE", f"/v1/photos/{_path(photo_id)}")

    # -- plumbing ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> dict:
        url = self.base_url + path
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ApiError(0, "timeout", f"The gateway at {url} did not answer in time.") from exc
        except httpx.HTTPError as exc:
            raise ApiError(0, "unreachable", f"Could not reach the gateway at {url}: {exc}.") from exc
        if response.is_success:
            try:
                return response.json()
            except ValueError as exc:
                raise ApiError(response.status_code, "bad_response",
                               f"The gateway at {url} answered with something that is not JSON.") from exc
        raise _error_from(response, url)


def _error_from(response: httpx.Response, url: str) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        # Not our gateway's error shape (a proxy in between, say): say what we can.
        return ApiError(response.status_code, "http_error",
                        f"The gateway at {url} answered HTTP {response.status_code}.")


def _path(segment: str) -> str:
    return quote(segment, safe="")
