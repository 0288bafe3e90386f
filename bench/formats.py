"""What do other photo formats cost a worker? Photos/s of the worker's own work per photo (read what the
bytes are, a RAW file to its picture, EXIF, the thumbnail, the decode and CLIP crop) for HEIC, AVIF, camera
RAW (demosaiced, and from its embedded preview) and video frames against JPEG, in the same run, and the
worker's peak memory for a large RAW and a long video.

    python -m bench.formats [--size 2000x1500] [--count 8] [--large 4000x3000] [--video-seconds 120]

Sizes are scaled down to fit a 2-core machine and a few minutes: 3 MP photos (a phone's are 12 MP), a 12 MP
DNG as the large RAW (a camera's are 24 to 60 MP) and a 2-minute 720p MP4. The large DNG has no embedded
preview, so LibRaw demosaics it (the slow path); "DNG+preview" is the camera's usual case, a JPEG preview
the size of the photo. A video's rate counts the frames kept (each one an embedding). The embedder's
forward pass is not measured: it is the same for every picture. Peak memory is the kernel's VmHWM of a
child process preparing one large file, reset after its imports and a warm-up on a tiny JPEG ("idle").

Prints a table and writes `bench/results/formats.json`.
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import format_table, machine_info, write_results

LIMITS = {"max_bytes": 500 << 20, "max_pixels": 200_000_000}


def photo(seed: int, width: int, height: int):
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 50, width // 50, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR).filter(ImageFilter.DETAIL)


def encode(seed: int, fmt: str, width: int, height: int) -> bytes:
    import pillow_heif

    if fmt == "DNG":
        from tests.media_samples import dng
        return dng(seed, width, height)
    if fmt == "DNG+preview":  # the camera's own JPEG preview at full size: LibRaw hands it over
        from tests.media_samples import dng_with_preview
        return dng_with_preview(seed, (width, height))
    if fmt == "video":  # 6 s at 5 fps, a cut half way: 4 frames kept
        from tests.media_samples import video
        return video(".mp4", seconds=6, fps=5, seed=seed, size=(width, height))
    picture, out = photo(seed, width, height), io.BytesIO()
    if fmt == "HEIC":
        pillow_heif.from_pillow(picture).save(out, format="HEIF", quality=85)
    else:
        picture.save(out, format=fmt, quality=85)
    return out.getvalue()


def prepare(name: str, body: bytes) -> int:
    """The worker's work for one photo or video, as services/worker/pipeline.py does it; the pictures made."""
    from services.common.images import ClipCrop
    from services.common.schemas import LocalFile, PhotoRecord
    from services.media.decode import decode_image
    from services.media.exif import read_exif
    from services.worker.local import make_thumbnail
    from services.worker.media import VideoLimits
    from services.worker.media import prepare as worker_prepare

    record = PhotoRecord(photo_id="p", photo_image_url=f"file:///b/{name}", file=LocalFile(path=f"/b/{name}"))
    if isinstance(body, bytes):
        read_exif(body)
    item = worker_prepare(record, body, max_pixels=LIMITS["max_pixels"], video=VideoLimits(max_seconds=3600))
    make_thumbnail(item.bodies[0], **LIMITS)
    for picture in item.bodies:
        ClipCrop(224, 224, 224)(decode_image(picture, **LIMITS))
    return len(item.bodies)


def rate(fmt: str, bodies: list[bytes]) -> float:
    """Photos (for a video: frames kept) prepared per second."""
    suffix = {"JPEG": "jpg", "HEIC": "heic", "AVIF": "avif", "DNG": "dng", "DNG+preview": "dng", "video": "mp4"}[fmt]
    prepare(f"warm.{suffix}", bodies[0])
    started = time.perf_counter()
    pictures = sum(prepare(f"x.{suffix}", body) for body in bodies)
    return pictures / (time.perf_counter() - started)


# The peak is the kernel's VmHWM, reset after the imports (their own peak would hide the file's).
CHILD = """
import re, sys
from pathlib import Path
from bench.formats import prepare
prepare("warm.jpg", Path(sys.argv[2]).read_bytes())
Path("/proc/self/clear_refs").write_text("5")
path = Path(sys.argv[1])
from services.worker.local import LocalVideo
prepare(path.name, LocalVideo(path) if path.suffix == ".mp4" else path.read_bytes())
print(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))
"""


def peak_mb(path: Path, warm: Path) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(warm)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.formats", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2000x1500")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--large", default="4000x3000")
    parser.add_argument("--video-seconds", type=int, default=120, help="length of the large video")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    rates = {fmt: rate(fmt, [encode(i, fmt, width, height) for i in range(args.count)])
             for fmt in ("JPEG", "HEIC", "AVIF", "DNG", "DNG+preview")}
    rates["video"] = rate("video", [encode(i, "video", 640, 360) for i in range(2)])
    large_w, large_h = (int(v) for v in args.large.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        jpeg, raw = Path(folder) / "large.jpg", Path(folder) / "large.dng"
        jpeg.write_bytes(encode(100, "JPEG", large_w, large_h))
        raw.write_bytes(encode(100, "DNG", large_w, large_h))
        small = Path(folder) / "small.jpg"
        small.write_bytes(encode(101, "JPEG", 64, 48))
        clip = Path(folder) / "large.mp4"
        from tests.media_samples import video
        clip.write_bytes(video(".mp4", seconds=args.video_seconds, fps=25, seed=7, size=(1280, 720)))
        memory = {"idle": peak_mb(small, small), "JPEG": peak_mb(jpeg, small), "DNG": peak_mb(raw, small),
                  "video": peak_mb(clip, small), "DNG_bytes": raw.stat().st_size, "video_bytes": clip.stat().st_size}
    rows = [(fmt, f"{width}x{height}", value, value / rates["JPEG"]) for fmt, value in rates.items() if fmt != "video"]
    rows.append(("video frames (kept)", "640x360", rates["video"], rates["video"] / rates["JPEG"]))
    print(format_table(rows, ("format", "size", "photos/s", "vs JPEG")))
    print(format_table([("idle (64x48 JPEG)", "", memory["idle"], memory["idle"] / memory["JPEG"]),
                        ("JPEG", args.large, memory["JPEG"], 1.0), ("DNG (demosaic)", args.large, memory["DNG"],
                                                                  memory["DNG"] / memory["JPEG"]),
                        (f"MP4 {args.video_seconds} s, streamed", "1280x720", memory["video"],
                         memory["video"] / memory["JPEG"])],
                       ("large file", "size", "worker peak MB", "vs JPEG")))
    path = write_results("formats", {"machine": machine_info(), "size": args.size, "count": args.count,
                                     "photos_per_s": rates, "ratio_vs_jpeg": {k: v / rates["JPEG"] for k, v in rates.items()},
                                     "large": args.large, "video_seconds": args.video_seconds, "peak_mb": memory})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
