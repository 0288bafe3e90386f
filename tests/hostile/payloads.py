"""Hostile bodies built in the test run: image bombs, many-frame GIFs, files posing as images, deep JSON.

Nothing is downloaded; every payload is a few bytes to a few hundred KiB that claims far more.
"""
from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def deep_json(depth: int, leaf: str = "1") -> str:
    """`[[[...1...]]]`, `depth` levels deep: past Python's recursion limit from about 1000."""
    return "[" * depth + leaf + "]" * depth


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims width x height RGB pixels (30 GB decoded), with one row of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def _jpeg(size: tuple[int, int] = (16, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def jpeg_bomb(width: int = 65_000, height: int = 65_000) -> bytes:
    """A small real JPEG whose frame header (SOF0) is patched to claim width x height."""
    data = bytearray(_jpeg())
    at = data.index(b"\xff\xc0")
    # SOF0: marker, length (2), precision (1), height (2), width (2).
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_bomb(width: int = 65_535, height: int = 65_535) -> bytes:
    """A small GIF whose logical screen and frame claim width x height."""
    buffer = io.BytesIO()
    Image.new("P", (4, 4)).save(buffer, format="GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    at = data.index(b"\x2c")  # the image descriptor: separator, left, top, width, height
    data[at + 5:at + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def many_frame_gif(frames: int = 400, size: int = 64) -> bytes:
    first = Image.new("P", (size, size), 1)
    rest = [Image.new("P", (size, size), i % 200) for i in range(frames - 1)]
    buffer = io.BytesIO()
    first.save(buffer, format="GIF", save_all=True, append_images=rest, duration=10)
    return buffer.getvalue()


SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000">'
       b'<image href="http://169.254.169.254/latest/meta-data/"/></svg>')
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
JPEG = _jpeg()
