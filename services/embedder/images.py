"""Decoding untrusted image bytes into RGB pictures the model can take, or a reason why not.

Refuses files over a size limit, anything Pillow cannot identify, truncated files, and pictures
with more pixels than the limit (checked from the header, before the pixels are decoded, so a
decompression bomb costs nothing). Applies the EXIF orientation, so a photo is embedded the way a
person sees it, and composites transparency onto white, as CLIP's own processor does.
"""
from __future__ import annotations

import base64
import binascii
import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from services.common.errors import BadRequest, PayloadTooLarge


class ImageRejected(BadRequest):
    """One image that cannot be embedded; `code` says why, `message` says it to a person."""


class ImageTooLarge(PayloadTooLarge):
    pass


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def decode_base64(text: str) -> bytes:
    if not isinstance(text, str):
        raise ImageRejected("is not a base64 string.", code="bad_base64")
    if text.startswith("data:") and "," in text:
        # Accept data URLs, which browsers produce.
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected("is not valid base64.", code="bad_base64") from None


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Bytes -> an RGB PIL image, EXIF-transposed; raises ImageRejected / ImageTooLarge."""
    if len(data) > max_bytes:
        raise ImageTooLarge(f"is {_megabytes(len(data))}; the limit is {_megabytes(max_bytes)}.",
                            code="file_too_large")
    if not data:
        raise ImageRejected("is empty.", code="not_an_image")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse there too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"is {width}x{height} pixels; the limit is {max_pixels:,} pixels.", code="image_too_large")
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(f"has more pixels than the limit of {max_pixels:,}.", code="image_too_large") from None
    except UnidentifiedImageError:
        raise ImageRejected("is not an image in a format the embedder can read.", code="not_an_image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if "truncated" in str(exc).lower():
            raise ImageRejected("is truncated: the file ends before the picture does.",
                                code="truncated_image") from None
        raise ImageRejected(f"could not be decoded ({exc}).", code="not_an_image") from None
    try:
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"could not be decoded ({exc}).", code="not_an_image") from None


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")
