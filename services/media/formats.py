"""Which files are photos and videos: the extensions a folder walk takes, and what bytes really hold.

A file is decoded by what its bytes are, never by its name (`sniff`): a `.jpg` that holds a PNG is a
photo like any other. The name only says what the file claims to be, so that one whose bytes are no
photo or video at all is refused with a sentence naming both (`lie_sentence`).
"""
from __future__ import annotations

import struct
from pathlib import PurePath

# Extensions of the pictures Pillow decodes (HEIF/HEIC through pillow-heif, AVIF natively).
PICTURE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff",
                              ".heic", ".heif", ".hif", ".avif"})
# Camera RAW: decoded by rawpy (LibRaw), from the embedded preview or a half-size demosaic.
RAW_SUFFIXES = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"})
PHOTO_SUFFIXES = PICTURE_SUFFIXES | RAW_SUFFIXES
# Videos: decoded by PyAV (FFmpeg) as a stream.
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})
MEDIA_SUFFIXES = PHOTO_SUFFIXES | VIDEO_SUFFIXES
# Files that sit beside photos and describe them; read, never ingested on their own.
SIDECAR_SUFFIXES = frozenset({".xmp"})

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"mif2"}
_AVIF_BRANDS = {b"avif", b"avis"}
_DNG_VERSION = 50706


def kind_of_name(name: str) -> str | None:
    """'photo', 'video' or None (not media), from a file name's extension."""
    suffix = PurePath(name).suffix.lower()
    if suffix in PHOTO_SUFFIXES:
        return "photo"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def sniff(data: bytes, name: str = "") -> str | None:
    """What the bytes are: 'picture' (Pillow decodes it), 'raw', 'video', or None when they are none
    of these (text, a document, an unknown format). Reads the first bytes only. NEF, ARW and other TIFF-based
    RAW files look like any TIFF: a TIFF named with a RAW extension (`name`) is taken as RAW."""
    head = data[:64]
    if head[4:8] == b"ftyp":  # ISO base media: HEIF, AVIF, CR3 and MP4/MOV share the container
        brand = head[8:12]
        if brand in _HEIF_BRANDS or brand in _AVIF_BRANDS:
            return "picture"
        return "raw" if brand == b"crx " else "video"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):  # old QuickTime files without ftyp
        return "video"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # Matroska / WebM
        return "video"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video"
    if head.startswith((b"FUJIFILMCCD-RAW", b"IIRO", b"IIRS", b"MMOR", b"IIU\x00")):
        return "raw"  # RAF, ORF, RW2: not TIFF to Pillow
    if head.startswith((b"II*\x00", b"MM\x00*")):
        raw_name = PurePath(name).suffix.lower() in RAW_SUFFIXES
        return "raw" if raw_name or head[8:10] == b"CR" or _is_dng(data) else "picture"
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"P6", b"P5", b"\x00\x00\x01\x00")) or (
            head.startswith(b"RIFF") and head[8:12] == b"WEBP"):
        return "picture"
    return None


def _is_dng(data: bytes) -> bool:
    """Whether a TIFF's first directory has the DNGVersion tag (read from the header, nothing decoded)."""
    order = "<" if data[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, offset)
        for entry in range(min(count, 512)):
            (tag,) = struct.unpack_from(order + "H", data, offset + 2 + 12 * entry)
            if tag == _DNG_VERSION:
                return True
    except struct.error:
        return False
    return False


def lie_sentence(name: str, data: bytes) -> str:
    """Why a file named `name` is refused when its bytes are no photo or video."""
    suffix = PurePath(name).suffix.lower() or "(no extension)"
    head = data[:256]
    what = "text" if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "not any photo or video format"
    return f"is named {suffix} but its content is {what}; it was not ingested."
