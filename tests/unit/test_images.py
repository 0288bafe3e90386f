"""services/common/images.py: untrusted bytes become RGB pictures, or a refusal that says why."""
from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from services.common.images import ImageRejected, ImageTooLarge, decode_base64
from services.media.decode import decode_image

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 1_000_000}


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def exif_rotated_jpeg() -> bytes:
    """A 60x30 picture whose EXIF says 'rotate 90 degrees clockwise to view' (orientation 6)."""
    image = Image.new("RGB", (60, 30), "white")
    image.paste((255, 0, 0), (0, 0, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes())


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "LA", "CMYK", "I;16"])
def test_every_mode_becomes_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    picture = decode_image(encode(Image.new(mode, (20, 10)), fmt), **LIMITS)
    assert picture.mode == "RGB" and picture.size == (20, 10)


def test_transparency_is_composited_on_white():
    picture = decode_image(encode(Image.new("RGBA", (4, 4), (0, 0, 0, 0))), **LIMITS)
    assert picture.getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    picture = decode_image(exif_rotated_jpeg(), **LIMITS)
    assert picture.size == (30, 60)
    # The red band, on the left before rotation, is now at the top.
    assert picture.getpixel((15, 5))[0] > 200 and picture.getpixel((15, 5))[1] < 60


@pytest.mark.parametrize(("data", "code", "words"), [
    (b"this is not an image", "not_an_image", "not an image"),
    (b"", "not_an_image", "empty"),
])
def test_non_images_are_refused(data, code, words):
    with pytest.raises(ImageRejected) as refused:
        decode_image(data, **LIMITS)
    assert refused.value.code == code and words in refused.value.message
    assert refused.value.status_code == 422


def test_truncated_file_is_refused():
    whole = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(ImageRejected) as refused:
        decode_image(whole[: len(whole) // 2], **LIMITS)
    assert refused.value.code == "truncated_image" and "truncated" in refused.value.message


def test_too_many_pixels_is_refused_before_decoding():
    data = encode(Image.new("1", (2000, 1000)))  # tiny file, two million pixels
    with pytest.raises(ImageRejected) as refused:
        decode_image(data, max_bytes=1_000_000, max_pixels=1_000_000)
    assert refused.value.code == "image_too_large" and "2000x1000" in refused.value.message


def test_pillow_bomb_guard_is_mapped(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageRejected) as refused:
        decode_image(encode(Image.new("RGB", (30, 30))), max_bytes=1_000_000, max_pixels=50)
    assert refused.value.code == "image_too_large"
    assert refused.value.message == "has more pixels (900 pixels) than the limit of 50."


def test_a_stricter_process_wide_pillow_guard_does_not_refuse_what_the_limit_allows(monkeypatch):
    # Pillow's guard is one global; a process that decodes under several limits (the tests; an
    # embedder beside a worker) must not refuse a 1024x768 photo under a 10-megapixel limit because
    # another caller's limit was 100,000.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    picture = decode_image(encode(Image.new("RGB", (1024, 768))), max_bytes=10_000_000, max_pixels=10_000_000)
    assert picture.size == (1024, 768)
    with pytest.raises(ImageRejected) as refused:
        decode_image(encode(Image.new("RGB", (1024, 768))), max_bytes=10_000_000, max_pixels=100_000)
    assert refused.value.code == "image_too_large" and "1024x768" in refused.value.message


def test_big_file_is_refused_with_413():
    with pytest.raises(ImageTooLarge) as refused:
        decode_image(b"x" * 2_000_000, **LIMITS)
    assert refused.value.status_code == 413 and "limit" in refused.value.message


def test_base64_and_data_urls():
    data = encode(Image.new("RGB", (5, 5)))
    text = base64.b64encode(data).decode()
    assert decode_base64(text) == data
    assert decode_base64("data:image/png;base64," + text) == data
    with pytest.raises(ImageRejected) as refused:
        decode_base64("not base64!!")
    assert refused.value.code == "bad_base64"
