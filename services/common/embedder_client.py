"""Typed HTTP clients for the embedder service (sync and async), used by the gateway and the workers.

`urls` is one base URL or several (a list or a comma-separated string): calls rotate over them to
spread load, and a connection failure or a 503 moves on to the next one; only when every URL has
failed does the call raise. Errors are mapped once, here:

- `EmbedderUnavailable` (503): no embedder answered, or all were loading / saturated (then
  `EmbedderBusy`, whose `retry_after` is the embedder's Retry-After);
- `EmbedderTimeout` (503 with Retry-After, like an unreachable one): an embedder took longer than
  `timeout` (not retried on the next URL: it may be overloaded);
- `EmbedderRejected` (422): the embedder refused the input; the message is the embedder's sentence;
- `EmbedderFailed` (502): any other unexpected answer.

`embed_images_each` asks for per-item answers: one bad image yields an `EmbedItemError` in its
place instead of failing the whole batch. `embed_pixels` sends images already resized and cropped
(8-bit, `services.common.images.ClipCrop`), so that the caller does the decoding.
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import numpy as np

from services.common.config import split_csv
from services.common.errors import BadRequest, DependencyFailed, DependencyTimeout, DependencyUnavailable
from services.common.request_ids import outgoing_headers

log = logging.getLogger(__name__)


class EmbedderUnavailable(DependencyUnavailable):
    code = "embedder_unavailable"


class EmbedderBusy(EmbedderUnavailable):
    """The embedder answered 503 (loading, saturated): it is up and says, in `retry_after`, when to
    come back. Workers wait that long as often as it asks, without counting a retry."""


class EmbedderTimeout(DependencyTimeout):
    """A hung embedder. To whoever called the gateway it is as unavailable as a dead one, and will
    likely answer again shortly: 503 with Retry-After, not 504, which says only that the gateway gave up.
    Still a DependencyTimeout, so the workers retry it with backoff as before."""

    status_code = 503
    code = "embedder_timeout"

    def __init__(self, message: str, *, retry_after: int = 5):
        super().__init__(message, retry_after=retry_after)


class EmbedderRejected(BadRequest):
    code = "embedder_rejected"


class EmbedderFailed(DependencyFailed):
    code = "embedder_failed"


@dataclass(frozen=True)
class EmbedItemError:
    """Why the embedder refused one item of a per-item request (a value, never raised)."""

    code: str
    message: str


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    json: dict | None = None
    files: list | None = None
    params: dict | None = None
    content: bytes | None = None  # a raw body, sent as application/x-npy (pixels)

    def headers(self) -> dict[str, str]:
        return outgoing_headers() | ({"Content-Type": "application/x-npy"} if self.content is not None else {})


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except Exception:  # not our JSON: a proxy, or another server on that port
        return "http_" + str(response.status_code), response.text[:200] or response.reason_phrase


def _retry_after(response: httpx.Response) -> int:
    value = response.headers.get("retry-after", "")
    return int(value) if value.isdigit() else 5


def _image_call(images: Sequence[bytes], per_item: bool) -> _Call:
    files = [("images", (f"image-{index}", bytes(image), "application/octet-stream"))
             for index, image in enumerate(images)]
    return _Call("POST", "/v1/embed/image", files=files, params={"per_item": "true"} if per_item else None)


def _pixels_call(crops: np.ndarray) -> _Call:
    from services.common.images import write_pixels

    return _Call("POST", "/v1/embed/pixels", content=write_pixels(crops))


def _malformed(what: str) -> EmbedderFailed:
    return EmbedderFailed(f"The embedder answered with a malformed body ({what}); check that EMBEDDER_URL "
                          "points at this project's embedder.", code="embedder_malformed")


def _vector_rows(rows: object, count: int, dim: object) -> np.ndarray:
    """`rows` as a (count, dim) float32 array of finite numbers, or EmbedderFailed saying what is wrong:
    an answer from the embedder is checked like any input, since a wrong one would be stored or ranked."""
    if not isinstance(rows, list) or len(rows) != count:
        raise _malformed(f"expected {count} vectors")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise _malformed(f"dim {dim!r} is not a positive integer")
    try:
        vectors = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError):
        raise _malformed("vectors are not lists of numbers") from None
    if vectors.shape != (count, dim):
        raise _malformed(f"vectors of shape {vectors.shape}, expected ({count}, {dim})")
    if not np.isfinite(vectors).all():
        raise _malformed("vectors hold NaN or infinite numbers")
    return vectors


def _model_info(info: object) -> dict:
    dim = info.get("dim") if isinstance(info, dict) else None
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0 or not isinstance(info.get("name"), str):
        raise _malformed("model info without a name and a positive integer dim")
    return info


def _vectors(body: dict, count: int) -> np.ndarray:
    if not isinstance(body, dict):
        raise _malformed("not a JSON object")
    return _vector_rows(body.get("vectors"), count, body.get("dim"))


def _items(body: dict, count: int) -> list[np.ndarray | EmbedItemError]:
    if not isinstance(body, dict) or not isinstance(body.get("vectors"), list) or len(body["vectors"]) != count:
        raise _malformed(f"expected {count} per-item answers")
    errors = body.get("errors") or [None] * count
    if not isinstance(errors, list) or len(errors) != count:
        raise _malformed(f"expected {count} per-item errors")
    out: list[np.ndarray | EmbedItemError] = []
    for vector, error in zip(body["vectors"], errors):
        if vector is None:
            error = error if isinstance(error, dict) else {}
            out.append(EmbedItemError(str(error.get("code", "refused")),
                                      str(error.get("message", "The embedder gave no vector for this image."))))
        else:
            out.append(_vector_rows([vector], 1, body.get("dim"))[0])
    return out


class _Base:
    def __init__(self, urls: str | list[str], timeout: float = 30.0):
        self.urls = [url.rstrip("/") for url in split_csv(urls)]
        if not self.urls:
            raise ValueError("EmbedderClient needs at least one embedder URL")
        self.timeout = timeout
        self._start = itertools.cycle(range(len(self.urls)))
        self._dim: int | None = None

    def _order(self) -> list[str]:
        first = next(self._start)
        return self.urls[first:] + self.urls[:first]

    def _answer(self, url: str, response: httpx.Response) -> dict | EmbedderUnavailable:
        """The body of a success, or the 503 to remember while trying the next URL; raises otherwise."""
        if response.status_code < 400:
            try:
                return response.json()
            except ValueError:  # not JSON (or not UTF-8): a proxy's page, another server on the port
                raise _malformed(f"{response.headers.get('content-type') or 'no content type'}, not JSON") from None
        code, message = _error_of(response)
        if response.status_code == 503:
            log.warning("embedder %s unavailable: %s", url, message)
            return EmbedderBusy(f"The embedder at {url} is unavailable: {message}",
                                retry_after=_retry_after(response))
        if 400 <= response.status_code < 500:
            raise EmbedderRejected(message, code=code)
        raise EmbedderFailed(f"The embedder at {url} failed ({response.status_code}): {message}")

    @staticmethod
    def _unreachable(url: str, exc: Exception) -> EmbedderUnavailable:
        log.warning("embedder %s unreachable: %s", url, exc)
        return EmbedderUnavailable(f"The embedder at {url} cannot be reached ({exc or type(exc).__name__}).")

    def _timed_out(self, url: str) -> EmbedderTimeout:
        return EmbedderTimeout(f"The embedder at {url} did not answer within {self.timeout:g} seconds.")

    def _all_failed(self, last: EmbedderUnavailable | None) -> EmbedderUnavailable:
        if len(self.urls) == 1 and last is not None:
            return last
        detail = f" Last: {last.message}" if last is not None else ""
        kind = type(last) if last is not None else EmbedderUnavailable  # busy if the last one said so
        return kind(f"No embedder answered ({', '.join(self.urls)}).{detail}",
                    retry_after=last.retry_after if last else 5)


class EmbedderClient(_Base):
    """Blocking client; one connection pool for the client's lifetime (close() it, or use `with`)."""

    def __init__(self, urls: str | list[str], timeout: float = 30.0):
        super().__init__(urls, timeout)
        self._http = httpx.Client(timeout=timeout)

    def _call(self, call: _Call) -> dict:
        last: EmbedderUnavailable | None = None
        for url in self._order():
            try:
                response = self._http.request(call.method, url + call.path, json=call.json, files=call.files,
                                              params=call.params, content=call.content, headers=call.headers())
            except httpx.ConnectTimeout as exc:  # never connected: safe to try the next one
                last = self._unreachable(url, exc)
                continue
            except httpx.TimeoutException:
                raise self._timed_out(url) from None
            except httpx.TransportError as exc:
                last = self._unreachable(url, exc)
                continue
            body = self._answer(url, response)
            if isinstance(body, EmbedderUnavailable):
                last = body
                continue
            return body
        raise self._all_failed(last)

    def model_info(self) -> dict:
        info = _model_info(self._call(_Call("GET", "/v1/model")))
        self._dim = info["dim"]
        return info

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim or self.model_info()["dim"]), dtype=np.float32)
        return _vectors(self._call(_Call("POST", "/v1/embed/text", json={"texts": list(texts)})), len(texts))

    def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        if not images:
            return np.zeros((0, self._dim or self.model_info()["dim"]), dtype=np.float32)
        return _vectors(self._call(_image_call(images, per_item=False)), len(images))

    def embed_images_each(self, images: Sequence[bytes]) -> list[np.ndarray | EmbedItemError]:
        if not images:
            return []
        return _items(self._call(_image_call(images, per_item=True)), len(images))

    def embed_pixels(self, crops: np.ndarray) -> np.ndarray:
        """Vectors for 8-bit crops (images x height x width x 3, cropped as `model_info()["pixel_input"]`
        says, e.g. by `services.common.images.ClipCrop`)."""
        if len(crops) == 0:
            return np.zeros((0, self._dim or self.model_info()["dim"]), dtype=np.float32)
        return _vectors(self._call(_pixels_call(crops)), len(crops))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EmbedderClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncEmbedderClient(_Base):
    """The same calls as coroutines; `await aclose()` it, or use `async with`."""

    def __init__(self, urls: str | list[str], timeout: float = 30.0):
        super().__init__(urls, timeout)
        self._http = httpx.AsyncClient(timeout=timeout)

    async def _call(self, call: _Call) -> dict:
        last: EmbedderUnavailable | None = None
        for url in self._order():
            try:
                response = await self._http.request(call.method, url + call.path, json=call.json,
                                                    files=call.files, params=call.params, content=call.content,
                                                    headers=call.headers())
            except httpx.ConnectTimeout as exc:  # never connected: safe to try the next one
                last = self._unreachable(url, exc)
                continue
            except httpx.TimeoutException:
                raise self._timed_out(url) from None
            except httpx.TransportError as exc:
                last = self._unreachable(url, exc)
                continue
            body = self._answer(url, response)
            if isinstance(body, EmbedderUnavailable):
                last = body
                continue
            return body
        raise self._all_failed(last)

    async def model_info(self) -> dict:
        info = _model_info(await self._call(_Call("GET", "/v1/model")))
        self._dim = info["dim"]
        return info

    async def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim or (await self.model_info())["dim"]), dtype=np.float32)
        return _vectors(await self._call(_Call("POST", "/v1/embed/text", json={"texts": list(texts)})), len(texts))

    async def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        if not images:
            return np.zeros((0, self._dim or (await self.model_info())["dim"]), dtype=np.float32)
        return _vectors(await self._call(_image_call(images, per_item=False)), len(images))

    async def embed_images_each(self, images: Sequence[bytes]) -> list[np.ndarray | EmbedItemError]:
        if not images:
            return []
        return _items(await self._call(_image_call(images, per_item=True)), len(images))

    async def embed_pixels(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self._dim or (await self.model_info())["dim"]), dtype=np.float32)
        return _vectors(await self._call(_pixels_call(crops)), len(crops))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncEmbedderClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
