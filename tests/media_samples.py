"""Photos and videos of every format a phone or camera makes, generated here (no download): HEIC through
pillow-heif's encoder, AVIF through Pillow's, a DNG of random sensor data with no preview through pidng
(LibRaw demosaics it) and one with a JPEG preview appended by hand; 16-bit, palette, CMYK, multi-page and
animated pictures through Pillow; short videos through PyAV's encoders (mpeg4, libvpx for WebM). Plus the
bad files each can be: a damaged HEIC, a RAW that cannot be demosaiced, a text file named .heic, a video
too long, one with no decodable frame, a text file named .mp4.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image

pillow_heif.register_heif_opener()


def scene(seed: int, size=(320, 240)) -> Image.Image:
    """A picture unlike the others (blocks of colour from `seed`), so each file is its own photo."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.NEAREST)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def exif_bytes(make: str, model: str, when: str = "2023:07:14 09:30:00") -> bytes:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = make, model
    exif.get_ifd(0x8769)[0x9003] = when
    return exif.tobytes()


def png16_rgb(width: int = 64, height: int = 48, seed: int = 7) -> bytes:
    """A 16-bit RGB PNG written by hand (Pillow writes 16-bit greyscale only)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 65535, (height, width, 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def dng(seed: int = 3, width: int = 128, height: int = 96) -> bytes:
    """A DNG of random 12-bit RGGB sensor data, no embedded preview: LibRaw must demosaic it."""
    from pidng.core import RAW2DNG, DNGTags, Tag
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, Orientation, PhotometricInterpretation

    rng = np.random.default_rng(seed)
    cells = rng.random((-(-height // 8), -(-width // 8))) * 4095
    sensor = cells.repeat(8, 0).repeat(8, 1)[:height, :width].astype(np.uint16)
    tags = DNGTags()
    for tag, value in ((Tag.ImageWidth, width), (Tag.ImageLength, height), (Tag.TileWidth, width),
                       (Tag.TileLength, height), (Tag.Orientation, Orientation.Horizontal),
                       (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
                       (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, 16), (Tag.CFARepeatPatternDim, [2, 2]),
                       (Tag.CFAPattern, CFAPattern.RGGB), (Tag.WhiteLevel, 4095), (Tag.BlackLevel, 0),
                       (Tag.ColorMatrix1, [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1], [1, 1]]),
                       (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
                       (Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]), (Tag.Make, "TestCam"), (Tag.Model, "DNG-1"),
                       (Tag.DNGVersion, DNGVersion.V1_4), (Tag.DNGBackwardVersion, DNGVersion.V1_2)):
        tags.set(tag, value)
    writer = RAW2DNG()
    writer.options(tags, path="", compress=False)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        writer.convert(sensor, filename=str(Path(folder) / "raw"))
        return (Path(folder) / "raw.dng").read_bytes()


def dng_with_preview(seed: int = 5, preview_size=(256, 192)) -> bytes:
    """A DNG as a camera writes one: the sensor data, and a JPEG preview (a second TIFF directory, marked
    as a reduced image) that LibRaw hands over instead of demosaicing. pidng writes no preview, so the
    directory is appended here by hand."""
    data = bytearray(dng(seed, 128, 96))
    first = struct.unpack_from("<I", data, 4)[0]
    next_at = first + 2 + 12 * struct.unpack_from("<H", data, first)[0]
    preview = encoded(scene(seed + 100, preview_size), "JPEG", quality=90)
    data += b"\0" * (len(data) % 2)
    preview_at = len(data)
    data += preview + b"\0" * (len(preview) % 2)
    directory = len(data)
    width, height = preview_size
    # (tag, type, count, value): NewSubfileType reduced, size, 8-bit x3, JPEG, YCbCr, the one strip.
    tags = [(254, 4, 1, 1), (256, 3, 1, width), (257, 3, 1, height), (258, 3, 3, None), (259, 3, 1, 7),
            (262, 3, 1, 6), (273, 4, 1, preview_at), (277, 3, 1, 3), (278, 3, 1, height), (279, 4, 1, len(preview))]
    bits_at = directory + 2 + 12 * len(tags) + 4
    entries = b"".join(struct.pack("<HHII", tag, kind, count, bits_at) if tag == 258 else
                       struct.pack("<HHIHH", tag, kind, count, value, 0) if kind == 3 else
                       struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in tags)
    data += struct.pack("<H", len(tags)) + entries + struct.pack("<I", 0) + struct.pack("<HHH", 8, 8, 8)
    struct.pack_into("<I", data, next_at, directory)
    return bytes(data)


def good_photos() -> dict[str, bytes]:
    """File name -> bytes, one of each format (each a different picture)."""
    files = {f"phone_{i:02d}.jpg": encoded(scene(i), "JPEG", quality=90) for i in range(3)}
    heif = pillow_heif.from_pillow(scene(20))
    out = io.BytesIO()
    heif.save(out, format="HEIF", quality=80, exif=exif_bytes("Apple", "iPhone 15"))
    files["IMG_1001.HEIC"] = out.getvalue()
    files["sticker.avif"] = encoded(scene(21), "AVIF", quality=70)
    files["screenshot.png"] = encoded(scene(22), "PNG")
    files["palette.png"] = encoded(scene(23).convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG")
    files["deep.png"] = png16_rgb()
    grey16 = Image.fromarray(np.asarray(scene(24).convert("L"), dtype=np.uint16) * 257)
    files["scan16.tif"] = encoded(grey16, "TIFF")
    files["web.webp"] = encoded(scene(25), "WEBP", quality=80)
    files["print.jpg"] = encoded(scene(26).convert("CMYK"), "JPEG", quality=90)
    files["pages.tiff"] = encoded(scene(27), "TIFF", save_all=True, append_images=[scene(28)])
    files["moving.gif"] = encoded(scene(29).convert("P"), "GIF", save_all=True, append_images=[scene(30).convert("P")],
                                  duration=100, loop=0)
    files["panorama.jpg"] = encoded(scene(31, size=(12000, 400)), "JPEG", quality=70)
    files["DSC_0001.dng"] = dng()
    files["DSC_0002.dng"] = dng_with_preview()
    return files


def bad_photos() -> dict[str, tuple[bytes, str]]:
    """File name -> (bytes, the failure code the ingest must report)."""
    heic = good_photos()["IMG_1001.HEIC"]
    return {
        "damaged.heic": (heic[: len(heic) // 3], "damaged_image"),
        "broken.nef": (b"II*\x00\x08\x00\x00\x00" + b"\x00" * 200, "raw_undecodable"),
        "liar.heic": (b"this is a text file, not a photo\n" * 4, "not_an_image"),
        "cut.jpg": (encoded(scene(40), "JPEG")[:600], "truncated_image"),
    }


# Container, codec for each video format: what the PyAV wheel's FFmpeg encodes.
VIDEO_FORMATS = {".mp4": ("mp4", "mpeg4"), ".mov": ("mov", "mpeg4"), ".mkv": ("matroska", "mpeg4"),
                 ".webm": ("webm", "libvpx"), ".avi": ("avi", "mpeg4")}


def video(suffix: str = ".mp4", *, seconds: float = 6.0, fps: int = 5, seed: int = 50, size=(96, 64)) -> bytes:
    """A short video: one scene for its first half, another after (a cut), each a generated picture."""
    import av

    container_format, codec = VIDEO_FORMATS[suffix]
    first, second = (np.asarray(scene(seed + i, size)) for i in (0, 1))
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        frames = int(seconds * fps)
        for number in range(frames):
            pixels = first if number < frames // 2 else second
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def good_videos() -> dict[str, bytes]:
    return {f"clip{suffix}": video(suffix, seed=60 + i * 2) for i, suffix in enumerate(VIDEO_FORMATS)}


def bad_videos() -> dict[str, tuple[bytes, str]]:
    """File name -> (bytes, code), for a worker whose WORKER_VIDEO_MAX_SECONDS is 20."""
    return {"long.mp4": (video(".mp4", seconds=30, fps=1, seed=90), "video_too_long"),
            "broken.mov": (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00" + bytes(range(256)) * 8, "video_undecodable"),
            "liar.mp4": (b"just some words, no video here\n" * 3, "not_a_video")}
