"""The photo table's columns and their server types: what every SQL builder and the filters agree on."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.common.schemas import METADATA_FIELDS

# Column types of the metadata fields. LowCardinality where few distinct values repeat (countries,
# cities); usernames and free text are high-cardinality and stay plain String. photo_submitted_at is
# kept as the source's ISO 8601 text, which orders correctly for range filters and round-trips exactly.
METADATA_TYPES: dict[str, str] = {
    "photo_url": "String",
    "photo_description": "String",
    "ai_description": "String",
    "photographer_username": "String",
    "photographer_first_name": "String",
    "photographer_last_name": "String",
    "photo_width": "UInt32",
    "photo_height": "UInt32",
    "photo_aspect_ratio": "Float64",
    "photo_location_name": "String",
    "photo_location_country": "LowCardinality(String)",
    "photo_location_city": "LowCardinality(String)",
    "photo_submitted_at": "String",
    # Nullable: "unknown" is not midnight 1970 nor the equator, and a filter must not match it.
    "taken_at": "Nullable(DateTime('UTC'))",
    "exif_camera_make": "LowCardinality(String)",
    "exif_camera_model": "LowCardinality(String)",
    "photo_location_latitude": "Nullable(Float64)",
    "photo_location_longitude": "Nullable(Float64)",
    # A sidecar's keywords, comma-separated (services/media/xmp.py).
    "photo_keywords": "String",
    "kind": "LowCardinality(String)",
    "duration_s": "Nullable(Float64)",
    "frame_s": "Nullable(Float64)",
}
NUMERIC_TYPES = frozenset({"UInt32", "UInt64", "Int64", "Float32", "Float64"})
TIME_COLUMNS = frozenset({"taken_at"})

# Columns a search result or a photo lookup returns, in order.
PHOTO_COLUMNS: tuple[str, ...] = ("photo_id", "photo_image_url", *METADATA_FIELDS)
# Columns whose values a person picks from a list (the page's filters): names, not free text.
FACET_COLUMNS: tuple[str, ...] = ("photo_location_country", "photo_location_city", "photographer_username",
                                  "exif_camera_make", "exif_camera_model")


def column_type(name: str) -> str:
    if name in ("photo_id", "photo_image_url"):
        return "String"
    # A metadata field added to the schema without a type here still works, as text.
    return METADATA_TYPES.get(name, "String")


def is_numeric(name: str) -> bool:
    kind = column_type(name)
    return kind.removeprefix("Nullable(").removesuffix(")") in NUMERIC_TYPES


def is_time(name: str) -> bool:
    return name in TIME_COLUMNS


def insert_value(name: str, value: Any) -> Any:
    """A record's value as the driver takes it for this column: a time column takes an aware UTC datetime
    (a naive one would be read in the client's local time zone)."""
    if name in TIME_COLUMNS and isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value
