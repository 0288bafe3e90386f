"""What the store's integration tests share: the test model's size and name, unit vectors, and photos."""
from __future__ import annotations

import numpy as np

from services.common.schemas import PhotoRecord

DIM = 512
MODEL = "test/random-clip"
COUNT = 500
COUNTRIES = ("Spain", "France", "Japan", "Peru")


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_photo(i: int, **changes) -> PhotoRecord:
    fields = dict(
        photo_id=f"photo-{i:04d}",
        photo_image_url=f"https://images.example/{i}.jpg",
        photo_url=f"https://unsplash.example/photos/{i}",
        photo_description=f"A {'sunny beach' if i % 5 == 0 else 'quiet street'} number {i}",
        photographer_username=f"user{i % 7}",
        photo_width=100 + i,
        photo_height=200,
        photo_aspect_ratio=round((100 + i) / 200, 3),
        photo_location_country=COUNTRIES[i % len(COUNTRIES)],
        photo_submitted_at=f"2020-01-{1 + i % 28:02d} 10:00:00",
    )
    fields.update(changes)
    return PhotoRecord(**fields)
