"""The fake embedders (re-exported by tests/fakes.py, where the other fakes are): the gateway's
`FakeAsyncEmbedder` and the workers' `FakeEmbedder`.

Each text or image gets its own unit vector. Like the real embedder and its client, a fake serves a
primary model (`model=None`, the vectors tests have always had) and, with `model="name"`, any other:
it is loaded on first use as the client loads it (recorded in `loads`), its vectors differ from the
primary's, and its dimension is `model_dims.get(name, dim)`. A name in `unloadable` fails to load
with that sentence (`EmbedderModelFailed`), as a model the embedder cannot read does.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from services.common.embedder_client import EmbedderModelFailed, EmbedItemError
from services.common.errors import BadRequest
from services.common.ports import AsyncEmbedder, Embedder

DIM = 8
MODEL = "fake-clip"
NOT_AN_IMAGE = b"not an image"  # image bytes starting so are refused by the fake embedders


def unit_vector(seed: int, dim: int = DIM) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def text_vector(text: str, dim: int = DIM, model: str | None = None) -> np.ndarray:
    """The fake embedders' vector for a text: the same text always gives the same unit vector (per model)."""
    return unit_vector(zlib.crc32(text.encode() if model is None else f"{model}\0{text}".encode()), dim)


def image_vector(image: bytes, dim: int = DIM, model: str | None = None) -> np.ndarray:
    """The fake embedders' vector for image bytes (never equal to a text's)."""
    return unit_vector(zlib.crc32(image if model is None else model.encode() + b"\0" + image) + 1, dim)


# The text tower's fields a newer embedder adds to /v1/model, here for a separate multilingual tower.
# The fakes answer without them by default, as an older embedder does; a test sets `info_extra` to these.
MULTILINGUAL_TEXT_TOWER = {
    "family": "clip", "text_model": "sentence-transformers/clip-ViT-B-32-multilingual-v1",
    "text_family": "st-multilingual", "text_fingerprint": "beef", "max_text_tokens": 128,
    "languages": ["ar", "de", "en", "es", "fr", "it", "ja", "pt", "ru", "zh"],
}


def _model_info(dim: int, random_weights: bool) -> dict[str, Any]:
    return {"name": MODEL, "dim": dim, "device": "cpu", "dtype": "float32", "fingerprint": "f00d",
            "random_weights": random_weights}


def _refuse_non_images(images: Sequence[bytes]) -> None:
    for index, image in enumerate(images):
        if image.startswith(NOT_AN_IMAGE):
            raise BadRequest(f"Image {index} is not an image the embedder can read.", code="invalid_image")


class _Models:
    """The models other than the primary that a fake holds, shared by both fakes."""

    def __init__(self, dim: int, random_weights: bool) -> None:
        self.dim = dim
        self.random_weights = random_weights
        self.model_dims: dict[str, int] = {}
        self.unloadable: dict[str, str] = {}  # model -> why it cannot be loaded
        self.loaded: dict[str, dict[str, Any]] = {}  # model -> its info
        self.loads: list[tuple[str, str | None]] = []  # (model, text_model) per load

    def _load(self, model: str, text_model: str | None = None) -> dict[str, Any]:
        self.loads.append((model, text_model))
        if model in self.unloadable:
            raise EmbedderModelFailed(self.unloadable[model])
        info = {**_model_info(self.model_dims.get(model, self.dim), self.random_weights), "name": model,
                "fingerprint": f"{zlib.crc32(model.encode()):016x}", "text_model": text_model or model}
        self.loaded[model] = info
        return info

    def _dim_of(self, model: str | None, text_model: str | None) -> int:
        """The dimension of `model` (None: the primary), loading it first as the real client does."""
        if model is None:
            return self.dim
        if model not in self.loaded:
            self._load(model, text_model)
        return self.loaded[model]["dim"]

    def _listing(self, primary: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"state": "ready", "reason": None, "primary": True, **primary}] + [
            {"state": "ready", "reason": None, "primary": False, **info} for info in self.loaded.values()]

    def _texts(self, texts: Sequence[str], model: str | None, text_model: str | None) -> np.ndarray:
        dim = self._dim_of(model, text_model)
        return np.stack([text_vector(text, dim, model) for text in texts]).reshape(len(texts), dim) if texts \
            else np.zeros((0, dim), dtype=np.float32)

    def _images(self, images: Sequence[bytes], model: str | None, text_model: str | None) -> np.ndarray:
        dim = self._dim_of(model, text_model)
        return np.stack([image_vector(image, dim, model) for image in images]).reshape(len(images), dim) if images \
            else np.zeros((0, dim), dtype=np.float32)


class FakeAsyncEmbedder(_Models):
    """The embedder as the gateway awaits it. Set `failure` to an exception to make every call raise it."""

    port: ClassVar[type] = AsyncEmbedder

    def __init__(self, dim: int = DIM, random_weights: bool = True) -> None:
        super().__init__(dim, random_weights)
        self.failure: Exception | None = None
        self.closed = False
        # ("texts" | "images", how many) per call, so tests can count the calls; the texts themselves too.
        self.calls: list[tuple[str, int]] = []
        self.texts: list[list[str]] = []
        # Change it to play a new model (the gateway's text vector cache keys on it).
        self.fingerprint = "f00d"
        # Further /v1/model fields, e.g. MULTILINGUAL_TEXT_TOWER to play a newer embedder.
        self.info_extra: dict[str, Any] = {}

    def _check(self) -> None:
        if self.failure:
            raise self.failure

    def _primary(self) -> dict[str, Any]:
        return {**_model_info(self.dim, self.random_weights), "fingerprint": self.fingerprint, **self.info_extra}

    async def model_info(self, *, model: str | None = None, text_model: str | None = None) -> dict[str, Any]:
        self._check()
        if model is None:
            return self._primary()
        self._dim_of(model, text_model)
        return self.loaded[model]

    async def embed_texts(self, texts: Sequence[str], *, model: str | None = None,
                          text_model: str | None = None) -> np.ndarray:
        self._check()
        self.calls.append(("texts", len(texts)))
        self.texts.append(list(texts))
        return self._texts(texts, model, text_model)

    async def embed_images(self, images: Sequence[bytes], *, model: str | None = None,
                           text_model: str | None = None) -> np.ndarray:
        self._check()
        self.calls.append(("images", len(images)))
        _refuse_non_images(images)
        return self._images(images, model, text_model)

    async def load_model(self, model: str, text_model: str | None = None) -> dict[str, Any]:
        self._check()
        return self._load(model, text_model)

    async def list_models(self) -> list[dict[str, Any]]:
        self._check()
        return self._listing(self._primary())

    async def aclose(self) -> None:
        self.closed = True


class FakeEmbedder(_Models):
    """The embedder as the workers call it (blocking). `failure` makes every call raise; an image
    starting with NOT_AN_IMAGE is refused on its own by `embed_images_each`, the others still embed."""

    port: ClassVar[type] = Embedder

    def __init__(self, dim: int = DIM, random_weights: bool = True) -> None:
        super().__init__(dim, random_weights)
        self.failure: Exception | None = None
        self.calls: list[tuple[str, int]] = []  # (method, how many items)
        self.closed = False

    def _check(self, method: str, items: int) -> None:
        self.calls.append((method, items))
        if self.failure:
            raise self.failure

    def model_info(self, *, model: str | None = None, text_model: str | None = None) -> dict[str, Any]:
        self._check("model_info", 0)
        if model is None:
            return _model_info(self.dim, self.random_weights)
        self._dim_of(model, text_model)
        return self.loaded[model]

    def embed_texts(self, texts: Sequence[str], *, model: str | None = None,
                    text_model: str | None = None) -> np.ndarray:
        self._check("embed_texts", len(texts))
        return self._texts(texts, model, text_model)

    def embed_images_each(self, images: Sequence[bytes], *, model: str | None = None,
                          text_model: str | None = None) -> list[Any]:
        self._check("embed_images_each", len(images))
        dim = self._dim_of(model, text_model)
        return [EmbedItemError("invalid_image", f"Image {index} is not an image the embedder can read.")
                if image.startswith(NOT_AN_IMAGE) else image_vector(image, dim, model)
                for index, image in enumerate(images)]

    def embed_pixels(self, crops: np.ndarray, *, model: str | None = None,
                     text_model: str | None = None) -> np.ndarray:
        self._check("embed_pixels", len(crops))
        return self._images([np.ascontiguousarray(crop).tobytes() for crop in crops], model, text_model)

    def load_model(self, model: str, text_model: str | None = None) -> dict[str, Any]:
        self._check("load_model", 0)
        return self._load(model, text_model)

    def list_models(self) -> list[dict[str, Any]]:
        self._check("list_models", 0)
        return self._listing(_model_info(self.dim, self.random_weights))

    def close(self) -> None:
        self.closed = True
