"""When and where a photo was taken, and with which camera, from its EXIF header alone.

Read from every format that carries EXIF: JPEG, HEIC/HEIF, AVIF, WebP, PNG and TIFF through Pillow
(pillow-heif registered by `decode`), and TIFF-based camera RAW (DNG, CR2, NEF, ARW), whose first
directory is the EXIF directory itself, parsed from its header without decoding the sensor data.
"""
from __future__ import annotations

import io
import math
import warnings

from PIL import ExifTags, Image

import services.media.decode  # noqa: F401 - registers the HEIF opener, so HEIC headers open here too


def _exif_of(data: bytes) -> Image.Exif | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a bomb is refused where pixels are decoded, not here
            with Image.open(io.BytesIO(data)) as image:
                exif = image.getexif()
                if exif:
                    return exif
    except Exception:  # noqa: S110 - not something Pillow opens (a RAW file): its TIFF header, next
        pass
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        exif = Image.Exif()
        try:
            exif.load(data)
        except Exception:
            return None
        return exif or None
    return None


def read_exif(data: bytes) -> dict:
    """What a photo's EXIF says of it, as PhotoRecord fields: `taken_at` (DateTimeOriginal, else
    DateTime; with OffsetTimeOriginal when present, else taken as UTC), `exif_camera_make`,
    `exif_camera_model`, `photo_location_latitude` / `_longitude` (GPS IFD). Only the fields found;
    {} for a picture without EXIF or bytes Pillow cannot open. Reads the header only (Image.open is
    lazy), never the pixels, so it costs the same whether or not the picture is decoded here."""
    from services.common.schemas import parse_timestamp

    exif = _exif_of(data)
    if not exif:
        return {}
    try:
        details = exif.get_ifd(ExifTags.IFD.Exif)
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # any broken directory: no metadata, and the decoder says what is wrong
        return {}
    found: dict = {}
    for field, tag in (("exif_camera_make", ExifTags.Base.Make), ("exif_camera_model", ExifTags.Base.Model)):
        text = _exif_text(exif.get(tag))
        if text:
            found[field] = text[:256]
    when = _exif_text(details.get(ExifTags.Base.DateTimeOriginal) or exif.get(ExifTags.Base.DateTime))
    offset = _exif_text(details.get(ExifTags.Base.OffsetTimeOriginal))
    try:
        taken = parse_timestamp(f"{when}{offset}" if when and offset else when)
    except ValueError:
        taken = None  # "0000:00:00 00:00:00" and other placeholders cameras write
    if taken:
        found["taken_at"] = taken
    latitude = _gps_degrees(gps, ExifTags.GPS.GPSLatitude, ExifTags.GPS.GPSLatitudeRef, "S", 90)
    longitude = _gps_degrees(gps, ExifTags.GPS.GPSLongitude, ExifTags.GPS.GPSLongitudeRef, "W", 180)
    if latitude is not None and longitude is not None:
        found["photo_location_latitude"], found["photo_location_longitude"] = latitude, longitude
    return found


def _exif_text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value.replace("\x00", "").strip() if isinstance(value, str) else ""


def _gps_degrees(gps, value_tag: int, ref_tag: int, negative: str, limit: float) -> float | None:
    """Degrees, minutes, seconds (rationals) and a hemisphere letter as signed decimal degrees."""
    try:
        degrees, minutes, seconds = (float(part) for part in gps[value_tag])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    value = degrees + minutes / 60 + seconds / 3600
    if not math.isfinite(value) or value > limit:
        return None
    return round(-value if _exif_text(gps.get(ref_tag)).upper() == negative else value, 7)


