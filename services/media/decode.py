"""Decoding untrusted photo bytes of any format a phone or camera makes into the RGB picture a model
takes, or a reason why not.

Refuses files over a size limit, anything that is no photo, truncated files, and pictures with more
pixels than the limit (checked from the header, before the pixels are decoded, so a decompression bomb
costs nothing). Refuses formats outside an allow-list (SVG, PDF and other documents Pillow cannot or
should not decode). HEIF/HEIC is opened through pillow-heif (registered with Pillow on import), AVIF by
Pillow itself, camera RAW through `raw.py`. A multi-page TIFF or an animated GIF/WebP gives its first
frame. Applies the EXIF orientation, so a photo is embedded the way a person sees it, composites
transparency onto white, as CLIP's own processor does, and scales 16-bit greyscale to 8 bits
(Pillow's own conversion would clip it to white). CMYK and palette pictures become RGB.

`draft_size` (off unless `EMBEDDER_JPEG_DRAFT` is set) lets the JPEG decoder scale a large photo
down by 2, 4 or 8 while decoding, never below that size: several times faster for big photos, but
no longer the reference pipeline's pixels (tested against it with a stated tolerance).
"""
from __future__ import annotations

import io
import re
import threading
import warnings

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from services.common.images import ImageRejected, ImageTooLarge
from services.media.formats import sniff
from services.media.raw import raw_picture

# Once per process: Pillow then opens HEIF/HEIC like any other format (Image.open, getexif, thumbnails).
pillow_heif.register_heif_opener()

# Raster formats a camera, phone, browser or scanner produces. Anything else Pillow happens to open
# (EPS runs Ghostscript, PDF/SVG are documents) is refused by name.
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO", "AVIF", "HEIF", "ICO", "PPM"})


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _looks_like_svg(data: bytes) -> bool:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<svg", b"<?xml", b"<!doctype svg")) and b"<svg" in data[:4096].lower()


_GUARD_LOCK = threading.Lock()


def _allow_pixels(max_pixels: int) -> None:
    """Raise Pillow's process-wide bomb guard (`Image.MAX_IMAGE_PIXELS`) to at least `max_pixels`,
    never lower it: the guard then never refuses what a caller's own limit allows (one process may
    decode under several limits), and still refuses what is past every limit. The limit that applies
    is `decode_image`'s own check of the header's size, before any pixel is decoded."""
    if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS >= max_pixels:
        return  # the usual case, every image after the first: no lock on the decoding path
    with _GUARD_LOCK:
        if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
            Image.MAX_IMAGE_PIXELS = max_pixels


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int, draft_size: int = 0) -> Image.Image:
    """Bytes -> an RGB PIL image, EXIF-transposed; raises ImageRejected / ImageTooLarge."""
    if len(data) > max_bytes:
        raise ImageTooLarge(f"is {_megabytes(len(data))}; the limit is {_megabytes(max_bytes)}.",
                            code="file_too_large")
    if not data:
        raise ImageRejected("is empty.", code="not_an_image")
    if _looks_like_svg(data):
        raise ImageRejected("is an SVG drawing; send a raster image (JPEG, PNG, WebP, ...).",
                            code="unsupported_format")
    kind = sniff(data)
    if kind == "video":
        raise ImageRejected("is a video, not a photo; send a photo.",
                            code="unsupported_format")
    _allow_pixels(max_pixels)
    if kind == "raw":
        return to_rgb(ImageOps.exif_transpose(raw_picture(data, max_pixels=max_pixels)))
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse there too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"is {width}x{height} pixels; the limit is {max_pixels:,} pixels.", code="image_too_large")
            if image.format not in ALLOWED_FORMATS:
                raise ImageRejected(f"is a {image.format} file, which is not decoded here; send a photo (JPEG, "
                                    "HEIC, PNG, WebP, AVIF, GIF, TIFF or camera RAW).", code="unsupported_format")
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard fired in Image.open, before the size could be read: say what it saw.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        seen = f" ({int(found.group(1)):,} pixels)" if found else ""
        raise ImageRejected(f"has more pixels{seen} than the limit of {max_pixels:,}.",
                            code="image_too_large") from None
    except UnidentifiedImageError:
        if kind == "picture":  # its first bytes are a photo format's, the rest is not
            raise ImageRejected("starts as a photo but is damaged: it could not be decoded.",
                                code="damaged_image") from None
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
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit greyscale (PNG, TIFF): keep the top 8 bits; Pillow's convert clips at 255.
        levels = np.asarray(image).astype(np.int64)
        shift = 8 if image.mode != "I" or levels.max(initial=0) > 255 else 0
        return Image.fromarray((np.clip(levels, 0, 65535) >> shift).astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        levels = np.asarray(image, dtype=np.float64)
        high = levels.max(initial=0.0)
        scale = 255.0 if high <= 1.0 else (255.0 / 65535.0 if high > 255.0 else 1.0)
        return Image.fromarray(np.clip(levels * scale, 0, 255).astype(np.uint8)).convert("RGB")
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


