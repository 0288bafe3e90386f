"""Camera RAW (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2) as a picture, through rawpy (LibRaw).

The camera's own embedded preview is used when the file has one: it is the picture the photographer
saw on the camera, already demosaiced, colour-graded and usually full size, and it costs a JPEG decode
instead of a demosaic (many times faster). Without one, LibRaw demosaics at half size (each 2x2 Bayer
cell becomes one pixel: no interpolation, four times fewer pixels, still far more than a model takes).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from services.common.images import ImageRejected


def raw_picture(data: bytes, *, max_pixels: int) -> Image.Image:
    """The RAW file's picture (preview or half-size demosaic), loaded; raises ImageRejected."""
    import rawpy  # loaded on the first RAW file only: LibRaw is a large library

    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            preview = _preview(raw, rawpy, max_pixels)
            if preview is not None:
                return preview
            height, width = raw.sizes.height // 2, raw.sizes.width // 2
            if width * height > max_pixels:
                raise ImageRejected(f"is a RAW file of {width}x{height} pixels at half size; the limit is "
                                    f"{max_pixels:,} pixels.", code="image_too_large")
            pixels = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    except ImageRejected:
        raise
    except (rawpy.LibRawError, MemoryError, ValueError) as exc:
        raise ImageRejected(f"is a camera RAW file with no preview that could not be demosaiced ({exc}).",
                            code="raw_undecodable") from None
    return Image.fromarray(np.ascontiguousarray(pixels))


def _preview(raw, rawpy, max_pixels: int) -> Image.Image | None:
    """The largest embedded preview LibRaw finds, or None (none, or one it cannot hand over)."""
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    except rawpy.LibRawError:
        return None  # a damaged preview: the sensor data may still demosaic
    if thumb.format == rawpy.ThumbFormat.BITMAP:
        return Image.fromarray(np.ascontiguousarray(thumb.data))
    try:
        image = Image.open(io.BytesIO(thumb.data))
        if image.size[0] * image.size[1] > max_pixels:
            return None
        image.load()
    except (OSError, SyntaxError, ValueError):
        return None
    return image


def preview_jpeg(data: bytes, *, max_pixels: int, quality: int = 92) -> bytes:
    """The RAW file's picture as JPEG bytes: what the worker sends the embedder and keeps no copy of
    (tens of megabytes of sensor data become a few hundred kilobytes on the wire)."""
    picture = raw_picture(data, max_pixels=max_pixels)
    from PIL import ImageOps

    picture = ImageOps.exif_transpose(picture)
    out = io.BytesIO()
    picture.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()
