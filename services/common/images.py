"""What the embedder's wire formats need from pictures: base64 bodies, CLIP's crop, 8-bit pixel arrays,
and the refusals (`ImageRejected`, `ImageTooLarge`) every decoder raises.

Decoding media bytes (photos of every format, RAW, video frames) and reading their EXIF is the media
library's job (`services/media/`); this module holds only what the embedder client and the wire share.
"""
from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image

from services.common.errors import BadRequest, PayloadTooLarge


class ImageRejected(BadRequest):
    """One image that cannot be embedded; `code` says why, `message` says it to a person."""


class ImageTooLarge(PayloadTooLarge):
    pass


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
