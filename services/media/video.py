"""A few frames of a video (MP4, MOV, MKV, WebM, AVI), decoded as a stream through PyAV (FFmpeg).

The container is opened from a path (or a bounded in-memory upload) and decoded packet by packet: one
frame at a time is held, never the whole file. A frame is kept at the start, at each scene change (the
mean colour of a small copy moves by more than `SCENE_CHANGE` from the last kept frame) and otherwise
every `interval` seconds, where `interval` spreads `max_frames` over the duration; at most `max_frames`
are kept. A video longer than `max_seconds` is refused before any frame is decoded (from the container's
header), and one with no decodable frame is refused, each with a code and a sentence.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
from PIL import Image

from services.common.images import ImageRejected

SCENE_CHANGE = 40.0  # mean absolute difference of a 16x16 copy, in 8-bit levels: a cut, not a pan
MIN_INTERVAL_S = 2.0  # "every few seconds" when a short video could give more frames than that


@dataclass
class VideoFrames:
    duration_s: float
    frames: list[tuple[float, Image.Image]] = field(default_factory=list)  # (seconds from the start, RGB)
    taken_at: str | None = None  # the container's creation_time, when it has one


def _duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return 0.0


def read_frames(source: str | bytes | BinaryIO, *, max_frames: int, max_seconds: float,
                max_pixels: int) -> VideoFrames:
    """The kept frames of a video; raises ImageRejected (`video_too_long`, `video_undecodable`,
    `image_too_large`)."""
    import av  # FFmpeg's libraries: loaded on the first video only

    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        container = av.open(source, mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ImageRejected(f"could not be opened by FFmpeg ({_why(exc)}).", code="video_undecodable") from None
    with container:
        if not container.streams.video:
            raise ImageRejected("has no video stream.", code="video_undecodable")
        stream = container.streams.video[0]
        duration = _duration(container, stream)
        if duration > max_seconds:
            raise ImageRejected(f"is {duration:,.0f} s long; the limit is {max_seconds:,.0f} s "
                                "(WORKER_VIDEO_MAX_SECONDS).", code="video_too_long")
        width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
        if width * height > max_pixels:
            raise ImageRejected(f"is {width}x{height} pixels a frame; the limit is {max_pixels:,} pixels.",
                                code="image_too_large")
        stream.thread_type = "AUTO"
        found = VideoFrames(duration_s=round(duration, 3), taken_at=_created(container))
        interval = max(duration / max(max_frames, 1), MIN_INTERVAL_S)
        last_kept, last_small = -interval, None
        try:
            for frame in container.decode(stream):
                moment = float(frame.time) if frame.time is not None else last_kept + interval
                if moment > max_seconds:  # a header that under-stated the length
                    raise ImageRejected(f"runs past {max_seconds:,.0f} s (WORKER_VIDEO_MAX_SECONDS).",
                                        code="video_too_long")
                small = np.asarray(frame.reformat(width=16, height=16, format="rgb24").to_ndarray(), dtype=np.float32)
                cut = last_small is not None and float(np.abs(small - last_small).mean()) > SCENE_CHANGE
                if moment - last_kept >= interval or cut:
                    found.frames.append((round(moment, 3), frame.to_image()))
                    last_kept, last_small = moment, small
                    if len(found.frames) >= max_frames:
                        break
        except ImageRejected:
            raise
        except (av.FFmpegError, ValueError, MemoryError) as exc:
            if not found.frames:
                raise ImageRejected(f"has frames that could not be decoded ({_why(exc)}).",
                                    code="video_undecodable") from None
    if not found.frames:
        raise ImageRejected("has no frame that could be decoded.", code="video_undecodable")
    return found


def _created(container) -> str | None:
    from services.common.schemas import parse_timestamp

    try:
        return parse_timestamp(container.metadata.get("creation_time"))
    except ValueError:
        return None


def _why(exc: Exception) -> str:
    return (getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__).strip().rstrip(".")


def frame_jpeg(image: Image.Image, quality: int = 92) -> bytes:
    """A frame as the JPEG the embedder is sent and the thumbnail is made from."""
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()
