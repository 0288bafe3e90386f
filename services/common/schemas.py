"""Wire schemas shared between processes (JSON task arguments, HTTP bodies)."""
from __future__ import annotations

from pydantic import BaseModel, Field

# The metadata columns kept beside each vector, in the store's column order. Names follow
# the Unsplash Lite `photos.tsv` header, so a row of that file maps onto a record directly.
METADATA_FIELDS: tuple[str, ...] = (
    "photo_url",
    "photo_description",
    "ai_description",
    "photographer_username",
    "photographer_first_name",
    "photographer_last_name",
    "photo_width",
    "photo_height",
    "photo_aspect_ratio",
    "photo_location_name",
    "photo_location_country",
    "photo_location_city",
    "photo_submitted_at",
)


class LocalFile(BaseModel):
    """Where a photo from a folder was read: its path (on the machine that listed it), size and mtime.
    The store keeps these per path, so a re-run skips unchanged files and --prune finds gone ones."""

    path: str = Field(min_length=1, max_length=4096)
    size: int = Field(0, ge=0)
    mtime: float = 0.0


class PhotoRecord(BaseModel):
    """One photo to ingest: what a source yields and what an ingest task receives."""

    photo_id: str = Field(min_length=1, max_length=256)
    photo_image_url: str = Field(min_length=1, max_length=4096)
    photo_url: str = ""
    photo_description: str = ""
    ai_description: str = ""
    photographer_username: str = ""
    photographer_first_name: str = ""
    photographer_last_name: str = ""
    photo_width: int = 0
    photo_height: int = 0
    photo_aspect_ratio: float = 0.0
    photo_location_name: str = ""
    photo_location_country: str = ""
    photo_location_city: str = ""
    # As the source gives it (ISO 8601 text); empty when unknown.
    photo_submitted_at: str = ""
    # Set for a photo from a folder (file:// or upload:// photo_image_url); not a stored column.
    file: LocalFile | None = None


class Failure(BaseModel):
    """Why one item failed; recorded per photo, never raised for the whole batch."""

    photo_id: str
    url: str = ""
    code: str
    reason: str
