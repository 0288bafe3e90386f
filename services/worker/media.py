"""What the worker makes of a file before it is embedded: the pictures the embedder is sent.

Decoded by what the bytes are, not by the file's name (services/media/formats.py): a camera RAW file
becomes its preview (or half-size demosaic) as a JPEG, so the embedder gets a few hundred kilobytes
instead of tens of megabytes of sensor data and never needs LibRaw; a video becomes a few frames
(services/media/video.py), each a JPEG; pictures go as they are (the embedder decodes HEIC, AVIF,
TIFF... itself). Bytes that are no photo or video at all are refused with a sentence naming what the
file claimed to be.

A video is stored as one row, like a photo (so every search, filter, page, count and delete works on it
unchanged): its vector is the normalised mean of its frames' vectors, and the frame closest to that mean
stands for it: its time is `frame_s` and its thumbnail is that frame. A video whose one scene matches a
query weakly is found less well than with a row per frame; the gain is that results, pagination and
the result cache need no collapsing step.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import numpy as np

from services.common.images import ImageRejected
from services.common.schemas import PhotoRecord
from services.media.formats import kind_of_name, lie_sentence, sniff
from services.media.raw import preview_jpeg
from services.media.video import frame_jpeg, read_frames
from services.worker.local import LocalVideo


@dataclass(frozen=True)
class VideoLimits:
    max_frames: int = 8
    max_seconds: float = 600.0
    max_bytes: int = 4 * 1024 ** 3


def video_limits(settings) -> VideoLimits:
    return VideoLimits(settings.video_max_frames, settings.video_max_seconds, settings.max_video_bytes)


@dataclass
class Prepared:
    """One photo or video, ready to embed: one body (a photo) or one a kept frame (a video)."""

    record: PhotoRecord
    bodies: list[bytes]
    times: list[float] | None = None  # a video's frame times, in seconds


def name_of(record: PhotoRecord) -> str:
    """The file name a photo came under: its local path, else its URL's last path segment."""
    if record.file is not None:
        return record.file.path
    return PurePosixPath(urlsplit(record.photo_image_url).path).name


def embeddable(record: PhotoRecord, body: bytes, *, max_pixels: int) -> bytes:
    """The bytes to thumbnail and embed for this photo; raises ImageRejected (with its code)."""
    kind = sniff(body, name_of(record))
    if kind == "raw":
        return preview_jpeg(body, max_pixels=max_pixels)
    if kind == "video":
        raise ImageRejected("is a video; it is read by prepare(), not as a photo.", code="unsupported_format")
    if kind is None:
        name = name_of(record)
        claimed = kind_of_name(name)
        if claimed == "video":
            raise ImageRejected(lie_sentence(name, body), code="not_a_video")
        if claimed == "photo":
            raise ImageRejected(lie_sentence(name, body), code="not_an_image")
    return body  # a picture, or bytes of no known kind that Pillow may still read (it says why not)


def prepare(record: PhotoRecord, body: bytes | LocalVideo, *, max_pixels: int, video: VideoLimits) -> Prepared:
    """The pictures to embed for one file; raises ImageRejected."""
    if isinstance(body, LocalVideo):
        with open(body, "rb") as handle:
            head = handle.read(4096)
        if sniff(head) is None:
            raise ImageRejected(lie_sentence(name_of(record), head), code="not_a_video")
        if sniff(head) != "video":  # a photo named like a video: read as the photo it is (DSC_1.mov, a JPEG)
            body = Path(body).read_bytes()
    if isinstance(body, LocalVideo) or sniff(body) == "video":
        source = str(body) if isinstance(body, LocalVideo) else body
        found = read_frames(source, max_frames=video.max_frames, max_seconds=video.max_seconds,
                            max_pixels=max_pixels)
        update = {"kind": "video", "duration_s": found.duration_s}
        if found.taken_at and not record.taken_at:
            update["taken_at"] = found.taken_at
        return Prepared(record.model_copy(update=update), [frame_jpeg(image) for _, image in found.frames],
                        [moment for moment, _ in found.frames])
    return Prepared(record, [embeddable(record, body, max_pixels=max_pixels)])


def combine(item: Prepared, vectors: list[np.ndarray]) -> tuple[PhotoRecord, np.ndarray, bytes]:
    """(the record, its one vector, the body its thumbnail is made from). A video's vector is the
    normalised mean of its frames'; the frame nearest that mean stands for it."""
    if item.times is None:
        return item.record, vectors[0], item.bodies[0]
    frames = np.stack(vectors).astype(np.float32)
    mean = frames.mean(axis=0)
    mean /= max(float(np.linalg.norm(mean)), 1e-12)
    best = int(np.argmax(frames @ mean))
    return item.record.model_copy(update={"frame_s": item.times[best]}), mean, item.bodies[best]
