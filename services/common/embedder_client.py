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

An embedder serves one primary model and may hold others beside it (a re-embedding job's new model).
Every embed method and `model_info` take `model=` (None: the primary) and `text_model=`: a call for a
model the embedder has not loaded (`model_not_loaded`, e.g. after a restart) loads it there
(`POST /v1/models?wait=true` with both) and is sent once more, so callers name the model they want
and never manage loading. `load_model` loads one explicitly (`EmbedderModelFailed` with the embedder's
sentence when it cannot be loaded); `list_models` lists what an embedder holds. With several URLs,
each of these goes to one embedder, tried in turn as every call is; the others load a model on first use.
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import httpx
import numpy as np

from services.common.config import split_csv
from services.common.embedder_answers import (
    EmbedderBusy,
    EmbedderFailed,
    EmbedderModelFailed,
    EmbedderModelNotLoaded,
    EmbedderRejected,
    EmbedderTimeout,
    EmbedderUnavailable,
    EmbedItemError,
    check_model,
    items_of,
    malformed,
    model_info_of,
    models_of,
    vectors_of,
)
from services.common.request_ids import outgoing_headers

__all__ = ["AsyncEmbedderClient", "EmbedItemError", "EmbedderBusy", "EmbedderClient", "EmbedderFailed",
           "EmbedderModelFailed", "EmbedderModelNotLoaded", "EmbedderRejected", "EmbedderTimeout",
           "EmbedderUnavailable"]

log = logging.getLogger(__name__)

# How long `load_model` (and a call that loads its model first) waits: a first load may export ONNX graphs.
LOAD_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    json: dict | None = None
    files: list | None = None
    params: dict | None = None
    content: bytes | None = None  # a raw body, sent as application/x-npy (pixels)
    model: str | None = None  # sent as ?model=; None: the embedder's primary model
    text_model: str | None = None  # the text tower to load `model` with, should the embedder lack it
    timeout: float | None = None  # instead of the client's

    def headers(self) -> dict[str, str]:
        return outgoing_headers() | ({"Content-Type": "application/x-npy"} if self.content is not None else {})

    def query(self) -> dict | None:
        if self.model is None:
            return self.params
        return {**(self.params or {}), "model": self.model}

    def for_model(self, model: str | None, text_model: str | None) -> _Call:
        return replace(self, model=model, text_model=text_model) if model is not None else self


def _load_call(model: str, text_model: str | None, timeout: float) -> _Call:
    return _Call("POST", "/v1/models", json={"model": model, "text_model": text_model}, params={"wait": "true"},
                 timeout=timeout)


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



class _Base:
    def __init__(self, urls: str | list[str], timeout: float = 30.0, load_timeout: float = LOAD_TIMEOUT_S):
        self.urls = [url.rstrip("/") for url in split_csv(urls)]
        if not self.urls:
            raise ValueError("EmbedderClient needs at least one embedder URL")
        self.timeout = timeout
        self.load_timeout = load_timeout
        self._start = itertools.cycle(range(len(self.urls)))
        self._dims: dict[str | None, int] = {}  # by model (None: the primary), for empty requests

    def _order(self) -> list[str]:
        first = next(self._start)
        return self.urls[first:] + self.urls[:first]

    def _answer(self, url: str, response: httpx.Response) -> dict | EmbedderUnavailable:
        """The body of a success, or the 503 to remember while trying the next URL; raises otherwise."""
        if response.status_code < 400:
            try:
                return response.json()
            except ValueError:  # not JSON (or not UTF-8): a proxy's page, another server on the port
                raise malformed(f"{response.headers.get('content-type') or 'no content type'}, not JSON") from None
        code, message = _error_of(response)
        if response.status_code == 404 and code == "model_not_loaded":
            raise EmbedderModelNotLoaded(message)
        if response.status_code == 422 and code == "model_failed":
            raise EmbedderModelFailed(message)
        if response.status_code == 409 and code == "too_many_models":  # full of models in use: come back later
            log.warning("embedder %s cannot load another model now: %s", url, message)
            return EmbedderBusy(f"The embedder at {url} is busy: {message}", retry_after=_retry_after(response))
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

    def _timed_out(self, url: str, call: _Call) -> EmbedderTimeout:
        return EmbedderTimeout(f"The embedder at {url} did not answer within {call.timeout or self.timeout:g} seconds.")

    def _all_failed(self, last: EmbedderUnavailable | None) -> EmbedderUnavailable:
        if len(self.urls) == 1 and last is not None:
            return last
        detail = f" Last: {last.message}" if last is not None else ""
        kind = type(last) if last is not None else EmbedderUnavailable  # busy if the last one said so
        return kind(f"No embedder answered ({', '.join(self.urls)}).{detail}",
                    retry_after=last.retry_after if last else 5)


class EmbedderClient(_Base):
    """Blocking client; one connection pool for the client's lifetime (close() it, or use `with`)."""

    def __init__(self, urls: str | list[str], timeout: float = 30.0, load_timeout: float = LOAD_TIMEOUT_S):
        super().__init__(urls, timeout, load_timeout)
        self._http = httpx.Client(timeout=timeout)

    def _send(self, url: str, call: _Call) -> dict | EmbedderUnavailable:
        try:
            response = self._http.request(call.method, url + call.path, json=call.json, files=call.files,
                                          params=call.query(), content=call.content, headers=call.headers(),
                                          timeout=call.timeout or httpx.USE_CLIENT_DEFAULT)
        except httpx.ConnectTimeout as exc:  # never connected: safe to try the next one
            return self._unreachable(url, exc)
        except httpx.TimeoutException:
            raise self._timed_out(url, call) from None
        except httpx.TransportError as exc:
            return self._unreachable(url, exc)
        return self._answer(url, response)

    def _call(self, call: _Call) -> dict:
        last: EmbedderUnavailable | None = None
        for url in self._order():
            try:
                body = self._send(url, call)
            except EmbedderModelNotLoaded:
                if call.model is None:
                    raise
                # This embedder lacks the model (restarted, or it was unloaded): load it there, then ask again.
                body = self._send(url, _load_call(call.model, call.text_model, self.load_timeout))
                if not isinstance(body, EmbedderUnavailable):
                    body = self._send(url, call)
            if isinstance(body, EmbedderUnavailable):
                last = body
                continue
            check_model(body, call.model)
            return body
        raise self._all_failed(last)

    def model_info(self, *, model: str | None = None, text_model: str | None = None) -> dict:
        info = model_info_of(self._call(_Call("GET", "/v1/model").for_model(model, text_model)))
        self._dims[model] = info["dim"]
        return info

    def _empty(self, model: str | None, text_model: str | None) -> np.ndarray:
        dim = self._dims.get(model) or self.model_info(model=model, text_model=text_model)["dim"]
        return np.zeros((0, dim), dtype=np.float32)

    def embed_texts(self, texts: Sequence[str], *, model: str | None = None,
                    text_model: str | None = None) -> np.ndarray:
        if not texts:
            return self._empty(model, text_model)
        call = _Call("POST", "/v1/embed/text", json={"texts": list(texts)}).for_model(model, text_model)
        return vectors_of(self._call(call), len(texts))

    def embed_images(self, images: Sequence[bytes], *, model: str | None = None,
                     text_model: str | None = None) -> np.ndarray:
        if not images:
            return self._empty(model, text_model)
        return vectors_of(self._call(_image_call(images, per_item=False).for_model(model, text_model)), len(images))

    def embed_images_each(self, images: Sequence[bytes], *, model: str | None = None,
                          text_model: str | None = None) -> list[np.ndarray | EmbedItemError]:
        if not images:
            return []
        return items_of(self._call(_image_call(images, per_item=True).for_model(model, text_model)), len(images))

    def embed_pixels(self, crops: np.ndarray, *, model: str | None = None,
                     text_model: str | None = None) -> np.ndarray:
        """Vectors for 8-bit crops (images x height x width x 3, cropped as `model_info()["pixel_input"]`
        says, e.g. by `services.common.images.ClipCrop`)."""
        if len(crops) == 0:
            return self._empty(model, text_model)
        return vectors_of(self._call(_pixels_call(crops).for_model(model, text_model)), len(crops))

    def load_model(self, model: str, text_model: str | None = None) -> dict:
        """Load `model` (with `text_model`, None: auto) on an embedder and wait until it is ready; its
        info, as `model_info(model=...)` gives it. EmbedderModelFailed says why it cannot be loaded."""
        info = model_info_of(self._call(_load_call(model, text_model, self.load_timeout)))
        self._dims[model] = info["dim"]
        return info

    def list_models(self) -> list[dict]:
        """The models an embedder holds: name, text_model, state, reason, primary, and each ready one's info."""
        return models_of(self._call(_Call("GET", "/v1/models")))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EmbedderClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncEmbedderClient(_Base):
    """The same calls as coroutines; `await aclose()` it, or use `async with`."""

    def __init__(self, urls: str | list[str], timeout: float = 30.0, load_timeout: float = LOAD_TIMEOUT_S):
        super().__init__(urls, timeout, load_timeout)
        self._http = httpx.AsyncClient(timeout=timeout)

    async def _send(self, url: str, call: _Call) -> dict | EmbedderUnavailable:
        try:
            response = await self._http.request(call.method, url + call.path, json=call.json, files=call.files,
                                                params=call.query(), content=call.content, headers=call.headers(),
                                                timeout=call.timeout or httpx.USE_CLIENT_DEFAULT)
        except httpx.ConnectTimeout as exc:  # never connected: safe to try the next one
            return self._unreachable(url, exc)
        except httpx.TimeoutException:
            raise self._timed_out(url, call) from None
        except httpx.TransportError as exc:
            return self._unreachable(url, exc)
        return self._answer(url, response)

    async def _call(self, call: _Call) -> dict:
        last: EmbedderUnavailable | None = None
        for url in self._order():
            try:
                body = await self._send(url, call)
            except EmbedderModelNotLoaded:
                if call.model is None:
                    raise
                # This embedder lacks the model (restarted, or it was unloaded): load it there, then ask again.
                body = await self._send(url, _load_call(call.model, call.text_model, self.load_timeout))
                if not isinstance(body, EmbedderUnavailable):
                    body = await self._send(url, call)
            if isinstance(body, EmbedderUnavailable):
                last = body
                continue
            check_model(body, call.model)
            return body
        raise self._all_failed(last)

    async def model_info(self, *, model: str | None = None, text_model: str | None = None) -> dict:
        info = model_info_of(await self._call(_Call("GET", "/v1/model").for_model(model, text_model)))
        self._dims[model] = info["dim"]
        return info

    async def _empty(self, model: str | None, text_model: str | None) -> np.ndarray:
        dim = self._dims.get(model) or (await self.model_info(model=model, text_model=text_model))["dim"]
        return np.zeros((0, dim), dtype=np.float32)

    async def embed_texts(self, texts: Sequence[str], *, model: str | None = None,
                          text_model: str | None = None) -> np.ndarray:
        if not texts:
            return await self._empty(model, text_model)
        call = _Call("POST", "/v1/embed/text", json={"texts": list(texts)}).for_model(model, text_model)
        return vectors_of(await self._call(call), len(texts))

    async def embed_images(self, images: Sequence[bytes], *, model: str | None = None,
                           text_model: str | None = None) -> np.ndarray:
        if not images:
            return await self._empty(model, text_model)
        return vectors_of(await self._call(_image_call(images, per_item=False).for_model(model, text_model)),
                        len(images))

    async def embed_images_each(self, images: Sequence[bytes], *, model: str | None = None,
                                text_model: str | None = None) -> list[np.ndarray | EmbedItemError]:
        if not images:
            return []
        return items_of(await self._call(_image_call(images, per_item=True).for_model(model, text_model)), len(images))

    async def embed_pixels(self, crops: np.ndarray, *, model: str | None = None,
                           text_model: str | None = None) -> np.ndarray:
        if len(crops) == 0:
            return await self._empty(model, text_model)
        return vectors_of(await self._call(_pixels_call(crops).for_model(model, text_model)), len(crops))

    async def load_model(self, model: str, text_model: str | None = None) -> dict:
        """As EmbedderClient.load_model."""
        info = model_info_of(await self._call(_load_call(model, text_model, self.load_timeout)))
        self._dims[model] = info["dim"]
        return info

    async def list_models(self) -> list[dict]:
        return models_of(await self._call(_Call("GET", "/v1/models")))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncEmbedderClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
