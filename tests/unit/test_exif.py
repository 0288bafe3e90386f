"""EXIF read from a photo's bytes (time taken, camera, GPS), without decoding its pixels; what the
worker keeps of it beside a source's own values; and the orientation applied when decoding."""
from __future__ import annotations

import io
from fractions import Fraction

import pytest
from PIL import ExifTags, Image

from services.common.schemas import PhotoRecord
from services.media.decode import decode_image
from services.media.exif import read_exif
from services.worker.pipeline import with_exif


def photo(*, make="Fujifilm", model="X-T4", when="2023:06:01 14:30:00", offset="+02:00",
          gps=((48, 51, Fraction(2376, 100)), "N", (2, 21, Fraction(768, 100)), "E"),
          orientation=None, size=(40, 20), fmt="JPEG") -> bytes:
    exif = Image.Exif()
    if make:
        exif[ExifTags.Base.Make] = make
    if model:
        exif[ExifTags.Base.Model] = model
    if orientation:
        exif[ExifTags.Base.Orientation] = orientation
    details = exif.get_ifd(ExifTags.IFD.Exif)
    if when:
        details[ExifTags.Base.DateTimeOriginal] = when
    if offset:
        details[ExifTags.Base.OffsetTimeOriginal] = offset
    if gps:
        lat, lat_ref, lon, lon_ref = gps
        exif.get_ifd(ExifTags.IFD.GPSInfo).update({
            ExifTags.GPS.GPSLatitude: lat, ExifTags.GPS.GPSLatitudeRef: lat_ref,
            ExifTags.GPS.GPSLongitude: lon, ExifTags.GPS.GPSLongitudeRef: lon_ref})
    buffer = io.BytesIO()
    image = Image.new("RGB", size, (200, 30, 30))
    image.paste((20, 20, 200), (0, 0, size[0] // 2, size[1]))  # left half blue: shows the orientation
    image.save(buffer, fmt, exif=exif)
    return buffer.getvalue()


def test_time_camera_and_position_are_read():
    assert read_exif(photo()) == {
        "exif_camera_make": "Fujifilm", "exif_camera_model": "X-T4",
        "taken_at": "2023-06-01T12:30:00",  # 14:30 at +02:00, in UTC
        "photo_location_latitude": pytest.approx(48.8566, abs=1e-6),
        "photo_location_longitude": pytest.approx(2.3521333, abs=1e-6),
    }


def test_southern_and_western_positions_are_negative_and_a_time_without_offset_is_utc():
    found = read_exif(photo(offset="", gps=((33, 52, 0), "S", (151, 12, 36), "W")))
    assert found["taken_at"] == "2023-06-01T14:30:00"
    assert found["photo_location_latitude"] == pytest.approx(-33.8666667)
    assert found["photo_location_longitude"] == pytest.approx(-151.21)


@pytest.mark.parametrize("data", [photo(make="", model="", when="", offset="", gps=None),
                                  b"not an image at all", photo()[:50]])
def test_no_exif_or_unreadable_bytes_give_nothing(data):
    assert read_exif(data) == {}


def test_a_placeholder_date_is_left_out():
    found = read_exif(photo(when="0000:00:00 00:00:00", offset=""))
    assert "taken_at" not in found and found["exif_camera_model"] == "X-T4"


def test_the_header_is_read_without_decoding_the_pixels(monkeypatch):
    data = photo()
    decoded = []
    original = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self.size) or original(self))
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", lambda self: decoded.append(self.size) or original(self))
    assert read_exif(data)["exif_camera_make"] == "Fujifilm"
    assert decoded == []


def test_the_source_wins_and_exif_fills_the_rest():
    record = PhotoRecord(photo_id="p", photo_image_url="http://x.test/p.jpg", exif_camera_model="From Unsplash")
    merged = with_exif(record, photo())
    assert merged.exif_camera_model == "From Unsplash" and merged.exif_camera_make == "Fujifilm"
    assert merged.taken_at == "2023-06-01T12:30:00" and merged.photo_location_latitude == pytest.approx(48.8566)
    placed = PhotoRecord(photo_id="p", photo_image_url="http://x.test/p.jpg", photo_location_latitude=1.0,
                         photo_location_longitude=2.0)
    kept = with_exif(placed, photo())
    assert (kept.photo_location_latitude, kept.photo_location_longitude) == (1.0, 2.0)  # a pair, never mixed


def test_the_orientation_is_applied_when_decoding():
    # Orientation 6: the camera was turned; the picture is shown rotated 90 degrees clockwise.
    image = decode_image(photo(orientation=6), max_bytes=1 << 20, max_pixels=1 << 20)
    assert image.size == (20, 40)
    top = image.getpixel((10, 2))
    assert top[2] > 150 and top[0] < 100  # the blue half is now on top
