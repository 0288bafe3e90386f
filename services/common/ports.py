"""The ports: what the gateway and the workers need from an embedder and from a photo store.

Typed Protocols, so that the real adapters (`services.common.embedder_client`, `services.photostore`)
and the tests' fakes (`tests/fakes.py`) are checked against one description. Nothing here imports an
adapter: a port is a promise, not a connection.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from services.common.schemas import PhotoRecord


@runtime_checkable
class Embedder(Protocol):
    """The embedder as the workers use it (blocking calls)."""

    def model_info(self) -> dict[str, Any]: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_images_each(self, images: Sequence[bytes]) -> list[Any]: ...

    def embed_pixels(self, crops: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


@runtime_checkable
class AsyncEmbedder(Protocol):
    """The embedder as the gateway uses it (awaitable calls on the event loop)."""

    async def model_info(self) -> dict[str, Any]: ...

    async def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    async def embed_images(self, images: Sequence[bytes]) -> np.ndarray: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class PhotoStore(Protocol):
    """A table of photos and their vectors (blocking calls; the gateway runs them in a thread pool)."""

    def table_info(self) -> dict[str, Any] | None: ...

    def ensure_table(self, dim: int, model: str) -> None: ...

    def existing_ids(self, photo_ids: Sequence[str]) -> set[str]: ...

    def insert_photos(self, photos: Sequence[PhotoRecord | Mapping[str, Any]], vectors: np.ndarray,
                      ids: Sequence[int] | None = None) -> int: ...

    def search(self, vector: np.ndarray, top_k: int = 10, min_score: float | None = None,
               **options: Any) -> list[dict[str, Any]]: ...

    def get_photo(self, photo_id: str, with_vector: bool = False) -> dict[str, Any] | None: ...

    def random_photo(self, filters: dict[str, Any] | None = None) -> dict[str, Any] | None: ...

    def count(self) -> int: ...

    def facet(self, column: str, limit: int = 100) -> list[dict[str, Any]]: ...

    def wants_index(self) -> bool: ...

    def build_index(self, wait: bool = True) -> dict[str, Any]: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...
