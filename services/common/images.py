"""Decoding untrusted image bytes into RGB pictures the model can take, or a reason why not.

Refuses files over a size limit, anything Pillow cannot identify, truncated files, and pictures
with more pixels than the limit (checked from the header, before the pixels are decoded, so a
decompression bomb costs nothing). Refuses formats outside an allow-list (SVG, PDF and other
documents Pillow cannot or should not decode). Applies the EXIF orientation, so a photo is embedded
the way a person sees it, composites transparency onto white, as CLIP's own processor does, and
scales 16-bit greyscale to 8 bits (Pillow's own conversion would clip it to white).

`draft_size` (off unless `EMBEDDER_JPEG_DRAFT` is set) lets the JPEG decoder scale a large photo
down by 2, 4 or 8 while decoding, never below that size: several times faster for big photos, but
no longer the reference pipeline's pixels (tested against it with a stated tolerance).

`read_exif` reads when and where a photo was taken, and with which camera, from its header alone.
"""
from __future__ import annotations

import base64
import binascii
import io
import math
import re
import threading
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from services.common.errors import BadRequest, PayloadTooLarge


class ImageRejected(BadRequest):
    """One image that cannot be embedded; `code` says why, `message` says it to a person."""


class ImageTooLarge(PayloadTooLarge):
    pass


# Raster formats a camera, phone, browser or scanner produces. Anything else Pillow happens to open
# (EPS runs Ghostscript, PDF/SVG are documents) is refused by name.
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO", "AVIF", "HEIF", "ICO", "PPM"})


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
    _allow_pixels(max_pixels)
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
                raise ImageRejected(f"is a {image.format} file, which the embedder does not decode; send "
                                    "JPEG, PNG, WebP, GIF, BMP or TIFF.", code="unsupported_format")
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


def read_exif(data: bytes) -> dict:
    """What a photo's EXIF says of it, as PhotoRecord fields: `taken_at` (DateTimeOriginal, else
    DateTime; with OffsetTimeOriginal when present, else taken as UTC), `exif_camera_make`,
    `exif_camera_model`, `photo_location_latitude` / `_longitude` (GPS IFD). Only the fields found;
    {} for a picture without EXIF or bytes Pillow cannot open. Reads the header only (Image.open is
    lazy), never the pixels, so it costs the same whether or not the picture is decoded here."""
    from services.common.schemas import parse_timestamp

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a bomb is refused where pixels are decoded, not here
            with Image.open(io.BytesIO(data)) as image:
                exif = image.getexif()
                if not exif:
                    return {}
                details = exif.get_ifd(ExifTags.IFD.Exif)
                gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:  # any broken header: no metadata, and the decoder says what is wrong
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


class ClipCrop:
    """CLIPProcessor's resize (shortest edge) and centre crop, as 8-bit pixels: the part of CLIP's
    preprocessing that needs the picture. The rescale and normalisation that follow are arithmetic
    on those pixels (the embedder's `Normaliser`), so a caller can crop here and send the 8-bit
    result (`POST /v1/embed/pixels`), and the vectors are those of the encoded image.

    The processor turns the picture into numpy, back into Pillow, resizes the whole of it (bicubic,
    shortest edge to `shortest`) and crops the centre. Here: the same Pillow resize and crop, so the
    pixels are bit-identical. For pictures more elongated than 4:1, Pillow's `resize(..., box=...)`
    evaluates the same filter at the same source positions for the kept region only; the pixels
    then agree within one 8-bit level (Pillow's fixed-point rounding), and the work stays that of a
    square picture instead of gigabytes for a 50000x1 PNG.
    """

    def __init__(self, shortest: int, crop_height: int, crop_width: int,
                 resample: int = int(Image.Resampling.BICUBIC)):
        self.shortest = int(shortest)
        self.crop_height = int(crop_height)
        self.crop_width = int(crop_width)
        self.resample = int(resample)
        if not (0 < self.crop_height <= self.shortest and 0 < self.crop_width <= self.shortest):
            raise ValueError(f"a {self.crop_width}x{self.crop_height} crop does not fit a shortest edge of "
                             f"{self.shortest}")
        # Up to 4:1, resize the whole picture exactly as the processor does; beyond, only the box.
        self.exact_area_limit = 4 * self.shortest * self.shortest

    @classmethod
    def from_processor(cls, processor) -> ClipCrop | None:
        """The crop for this image processor, or None when its settings are not CLIP's usual recipe
        (resize the shortest edge, crop the centre, rescale, normalise)."""
        size = dict(getattr(processor, "size", None) or {})
        crop = dict(getattr(processor, "crop_size", None) or {})
        recipe = (getattr(processor, "do_resize", False) and getattr(processor, "do_center_crop", False)
                  and getattr(processor, "do_rescale", False) and getattr(processor, "do_normalize", False)
                  and set(k for k, v in size.items() if v) == {"shortest_edge"}
                  and crop.get("height") and crop.get("width")
                  and crop["height"] <= size["shortest_edge"] and crop["width"] <= size["shortest_edge"])
        if not recipe:
            return None
        resample = processor.resample if processor.resample is not None else Image.Resampling.BICUBIC
        return cls(int(size["shortest_edge"]), int(crop["height"]), int(crop["width"]), int(resample))

    def as_dict(self) -> dict:
        """What `/v1/model` publishes, so that a worker can crop the same way (`from_dict`)."""
        return {"shortest_edge": self.shortest, "crop_height": self.crop_height, "crop_width": self.crop_width,
                "resample": self.resample}

    @classmethod
    def from_dict(cls, recipe: dict) -> ClipCrop:
        return cls(recipe["shortest_edge"], recipe["crop_height"], recipe["crop_width"], recipe["resample"])

    def __call__(self, image: Image.Image) -> np.ndarray:
        """The crop of an RGB picture: uint8, height x width x 3."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = image.size
        # transformers' get_resize_output_image_size with default_to_square=False.
        if width <= height:
            new_width, new_height = self.shortest, int(self.shortest * height / width)
        else:
            new_width, new_height = int(self.shortest * width / height), self.shortest
        # transformers' centre crop on the resized picture.
        top = (new_height - self.crop_height) // 2
        left = (new_width - self.crop_width) // 2
        if new_width * new_height <= self.exact_area_limit:
            # The processor's own steps, minus its float copies of the whole picture: bit-identical.
            resized = image.resize((new_width, new_height), self.resample)
            cropped = resized.crop((left, top, left + self.crop_width, top + self.crop_height))
        else:
            # Very elongated: resizing everything would cost up to gigabytes (a 1x50000 PNG becomes
            # 224x11 million pixels). Resize only the kept box.
            x_scale, y_scale = width / new_width, height / new_height
            box = (left * x_scale, top * y_scale, (left + self.crop_width) * x_scale,
                   (top + self.crop_height) * y_scale)
            cropped = image.resize((self.crop_width, self.crop_height), self.resample, box=box)
        return np.asarray(cropped, dtype=np.uint8)


def write_pixels(crops: np.ndarray) -> bytes:
    """8-bit crops (images x height x width x 3) as the .npy body `/v1/embed/pixels` takes."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(crops, dtype=np.uint8), allow_pickle=False)
    return buffer.getvalue()


def read_pixels(body: bytes, crop_size: tuple[int, int]) -> np.ndarray:
    """The crops in a `/v1/embed/pixels` body, or a BadRequest that says what is wrong with it."""
    height, width = crop_size
    expected = f"uint8 images x {height} x {width} x 3"
    try:
        crops = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception as exc:  # numpy's own errors name the problem (not .npy, truncated, pickled)
        raise BadRequest(f"The body is not a .npy array ({expected}): {exc}.", code="invalid_pixels") from None
    if not isinstance(crops, np.ndarray):
        raise BadRequest(f"The body must hold one .npy array ({expected}), not an archive.", code="invalid_pixels")
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (height, width, 3):
        raise BadRequest(f"The pixels must be {expected}; got {crops.dtype} {' x '.join(map(str, crops.shape))}.",
                         code="invalid_pixels")
    return crops
