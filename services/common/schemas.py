"""Wire schemas shared between processes (JSON task arguments, HTTP bodies)."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

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
    # From the photo's EXIF (the worker reads it from the downloaded bytes), or from the source's
    # columns of the same names (Unsplash Lite has them); the source's values win.
    "taken_at",
    "exif_camera_make",
    "exif_camera_model",
    "photo_location_latitude",
    "photo_location_longitude",
    # From a sidecar .xmp beside a photo (services/media/xmp.py): its keywords, comma-separated.
    "photo_keywords",
    # "photo" or "video" (empty in rows stored before videos were taken: photos). A video is one row: its
    # length, and the time of the frame that stands for it (its thumbnail), in seconds.
    "kind",
    "duration_s",
    "frame_s",
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
    # When the photo was taken, UTC, as ISO 8601 text "YYYY-MM-DDTHH:MM:SS"; None when unknown.
    taken_at: str | None = None
    exif_camera_make: str = Field("", max_length=256)
    exif_camera_model: str = Field("", max_length=256)
    photo_location_latitude: float | None = Field(None, ge=-90, le=90)
    photo_location_longitude: float | None = Field(None, ge=-180, le=180)
    photo_keywords: str = Field("", max_length=4096)
    kind: Literal["photo", "video"] = "photo"
    duration_s: float | None = Field(None, ge=0)
    frame_s: float | None = Field(None, ge=0)
    # Set for a photo from a folder (file:// or upload:// photo_image_url); not a stored column.
    file: LocalFile | None = None

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        return value or "photo"  # rows stored before videos were taken have no kind: photos

    @field_validator("taken_at", mode="before")
    @classmethod
    def _taken_at(cls, value: Any) -> str | None:
        return parse_timestamp(value)


def parse_timestamp(value: Any) -> str | None:
    """A time as "YYYY-MM-DDTHH:MM:SS" (UTC; a time with an offset is converted, one without is taken as
    UTC), from a datetime, ISO 8601 text, a date alone or EXIF's "YYYY:MM:DD HH:MM:SS"; None for empty.
    Raises ValueError for anything else."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) >= 10 and text[4] == ":" and text[7] == ":":  # EXIF's date separators
            text = f"{text[:4]}-{text[5:7]}-{text[8:]}"
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not a date and time (use ISO 8601, e.g. 2023-06-01T12:30:00)") from None
    else:
        raise ValueError(f"{value!r} is not a date and time")
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if not 1970 <= moment.year <= 2105:  # what a ClickHouse DateTime holds
        raise ValueError(f"{moment.year} is outside the years 1970 to 2105 that can be stored")
    return moment.replace(microsecond=0).isoformat()


class Failure(BaseModel):
    """Why one item failed; recorded per photo, never raised for the whole batch."""

    photo_id: str
    url: str = ""
    code: str
    reason: str
