"""Sidecar `.xmp` files: the title, description and keywords a photo manager (Lightroom, darktable,
digiKam) wrote beside a photo, read so they describe the photo in search.

A sidecar is found by the photo's name: `IMG_0001.xmp` or `IMG_0001.CR2.xmp` beside `IMG_0001.CR2`.
It is untrusted XML, parsed by defusedxml (no entity expansion, no external references); a sidecar
that is not valid XMP is ignored: the photo is still ingested, described by its file name.
"""
from __future__ import annotations

from pathlib import Path

from defusedxml import ElementTree

_NS = {"dc": "http://purl.org/dc/elements/1.1/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
       "lr": "http://ns.adobe.com/lightroom/1.0/"}
MAX_SIDECAR_BYTES = 1024 * 1024


def sidecar_of(photo: Path) -> Path | None:
    """The photo's sidecar, if one exists beside it (either naming convention, any case of `.xmp`)."""
    for candidate in (photo.with_name(photo.name + ".xmp"), photo.with_suffix(".xmp"),
                      photo.with_name(photo.name + ".XMP"), photo.with_suffix(".XMP")):
        if candidate.is_file():
            return candidate
    return None


def read_sidecar(path: Path) -> dict:
    """{'title', 'description', 'keywords'} found in the sidecar (only those present); {} when it is
    unreadable, too large or not XML."""
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            return {}
        root = ElementTree.fromstring(path.read_bytes())
    except Exception:  # unreadable, not XML, or refused by defusedxml (entities, DTDs): no description
        return {}
    found: dict = {}
    for field, name in (("title", "dc:title"), ("description", "dc:description")):
        texts = _texts(root, name)
        if texts:
            found[field] = texts[0]
    keywords = _texts(root, "dc:subject") or [text.rsplit("|", 1)[-1] for text in _texts(root, "lr:hierarchicalSubject")]
    if keywords:
        found["keywords"] = list(dict.fromkeys(keywords))
    return found


def _texts(root, name: str) -> list[str]:
    """The values of an XMP property written either way: as an element holding an rdf:Alt/Bag/Seq of
    rdf:li, or as an attribute of rdf:Description."""
    values = []
    for element in root.iter(_qualified(name)):
        items = [item.text for item in element.iter(_qualified("rdf:li"))] or [element.text]
        values.extend(text.strip() for text in items if text and text.strip())
    for description in root.iter(_qualified("rdf:Description")):
        attribute = description.get(_qualified(name))
        if attribute and attribute.strip():
            values.append(attribute.strip())
    return values


def _qualified(name: str) -> str:
    prefix, local = name.split(":")
    return f"{{{_NS[prefix]}}}{local}"


def describe(photo_description: str, sidecar: dict) -> str:
    """The photo's description from its sidecar: title and description, else what it had (its file name)."""
    parts = [sidecar.get("title", ""), sidecar.get("description", "")]
    text = ". ".join(part for part in parts if part)
    return text or photo_description
