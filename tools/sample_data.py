"""A local sample photo set in the Unsplash Lite format, for the offline demo and the tests.

Writes JPEGs of simple coloured scenes (with EXIF: a camera, a time taken, a position) plus a
`photos.tsv` whose `photo_image_url` column points at a base URL (a local HTTP server:
`python -m tools.sample_data serve DIR`), and a `keywords.tsv` as Unsplash ships it: English words
for what each picture shows (its colours and a shade of the shape's, its shape, its place and a sight
there), so word search has tags to find, some common and some on a few dozen photos only. The
descriptions say what each picture shows, so a search with a real CLIP model has something to find;
with a random-weight model results are meaningless, and everything that shows them says so.
"""
from __future__ import annotations

import argparse
import csv
import functools
import http.server
import random
import threading
from pathlib import Path

from PIL import Image, ImageDraw

# The Unsplash Lite `photos.tsv` header (the columns this project reads, in the dataset's order).
UNSPLASH_COLUMNS = [
    "photo_id", "photo_url", "photo_image_url", "photo_submitted_at", "photo_featured", "photo_width",
    "photo_height", "photo_aspect_ratio", "photo_description", "photographer_username",
    "photographer_first_name", "photographer_last_name", "photo_location_name", "photo_location_country",
    "photo_location_city", "ai_description",
]

COLOURS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (240, 210, 40),
    "purple": (140, 60, 180), "orange": (245, 140, 30), "black": (20, 20, 20), "white": (245, 245, 245),
}
SHAPES = ["circle", "square", "triangle", "stripes"]
PLACES = [("Lisbon", "Portugal"), ("Kyoto", "Japan"), ("Quito", "Ecuador"), ("Oslo", "Norway"), ("", "")]
# Where each place is (latitude, longitude), and the cameras the sample photos claim in their EXIF, so
# the Camera and Taken filters and the geo filter have something to find.
COORDINATES = {"Lisbon": (38.7223, -9.1393), "Kyoto": (35.0116, 135.7681), "Quito": (-0.1807, -78.4678),
               "Oslo": (59.9139, 10.7522)}
CAMERAS = [("Fujifilm", "X-T4"), ("Canon", "EOS R5"), ("Apple", "iPhone 13")]
# Keywords: a shade of the shape's colour, another word for the shape, a sight of the place.
SHADES = {
    "red": ["crimson", "scarlet", "ruby", "cherry", "vermilion", "carmine"],
    "green": ["emerald", "jade", "olive", "lime", "mint", "moss"],
    "blue": ["azure", "navy", "cobalt", "sapphire", "cerulean", "indigo"],
    "yellow": ["lemon", "gold", "mustard", "canary", "amber", "saffron"],
    "purple": ["violet", "lilac", "plum", "lavender", "mauve", "amethyst"],
    "orange": ["tangerine", "apricot", "peach", "rust", "copper", "pumpkin"],
    "black": ["ebony", "jet", "onyx", "charcoal", "ink", "coal"],
    "white": ["ivory", "snow", "pearl", "chalk", "cream", "linen"],
}
SHAPE_WORDS = {"circle": ["round", "disc", "ring"], "square": ["box", "block", "tile"],
               "triangle": ["pyramid", "wedge", "peak"], "stripes": ["lines", "bars", "pattern"]}
SIGHTS = {
    "Lisbon": ["tram", "azulejo", "alfama", "tagus", "miradouro", "belem", "fado", "castle"],
    "Kyoto": ["temple", "shrine", "bamboo", "torii", "pagoda", "geisha", "garden", "maple"],
    "Quito": ["volcano", "andes", "basilica", "cathedral", "plaza", "equator", "market", "cable"],
    "Oslo": ["fjord", "opera", "viking", "harbour", "fortress", "sculpture", "ferry", "forest"],
    "": ["studio", "abstract"],
}
KEYWORD_COLUMNS = ["photo_id", "keyword", "ai_service_1_confidence", "ai_service_2_confidence", "suggested_by_user"]


def sample_exif(index: int, city: str) -> Image.Exif:
    """EXIF for sample photo `index`: a camera, a time taken in 2023 and, for a named place, its position."""
    from PIL import ExifTags

    exif = Image.Exif()
    exif[ExifTags.Base.Make], exif[ExifTags.Base.Model] = CAMERAS[index % len(CAMERAS)]
    when = f"2023:{1 + index % 12:02d}:{1 + index % 28:02d} {8 + index % 12:02d}:00:00"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = when
    if city:
        latitude, longitude = COORDINATES[city]
        exif.get_ifd(ExifTags.IFD.GPSInfo).update({
            ExifTags.GPS.GPSLatitude: (abs(latitude), 0.0, 0.0), ExifTags.GPS.GPSLatitudeRef: "NS"[latitude < 0],
            ExifTags.GPS.GPSLongitude: (abs(longitude), 0.0, 0.0), ExifTags.GPS.GPSLongitudeRef: "EW"[longitude < 0]})
    return exif


def sample_keywords(index: int) -> list[tuple[str, str, str, str]]:
    """The keywords.tsv rows (keyword, confidence 1, confidence 2, suggested by a person) of sample photo
    `index`: the colours and shape draw_photo draws, and the place write_sample_set gives it."""
    background, foreground = random.Random(index).sample(list(COLOURS), 2)  # as draw_photo picks them
    shape = SHAPES[index % len(SHAPES)]
    city, country = PLACES[index % len(PLACES)]
    rng = random.Random(f"keywords {index}")
    rows = [(foreground, "97.5", "", "t"), (background, "88.0", "91.2", "f"), (shape, "95.0", "", "f"),
            (rng.choice(SHADES[foreground]), "", "74.0", "f"), (rng.choice(SHAPE_WORDS[shape]), "61.0", "", "f"),
            (rng.choice(SIGHTS[city]), "", "", "t"), ("picture", "12.0", "", "f")]
    if city:
        rows += [(city.lower(), "", "", "t"), (country.lower(), "83.0", "", "f")]
    return rows


def draw_photo(index: int, size: tuple[int, int] = (200, 150)) -> tuple[Image.Image, str]:
    """A picture of a coloured shape on a coloured background, and the sentence that describes it."""
    rng = random.Random(index)
    names = list(COLOURS)
    background, foreground = rng.sample(names, 2)
    shape = SHAPES[index % len(SHAPES)]
    width, height = size
    image = Image.new("RGB", size, COLOURS[background])
    draw = ImageDraw.Draw(image)
    x0, y0 = rng.randint(5, width // 3), rng.randint(5, height // 3)
    x1, y1 = x0 + rng.randint(width // 3, width // 2), y0 + rng.randint(height // 3, height // 2)
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=COLOURS[foreground])
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=COLOURS[foreground])
    elif shape == "triangle":
        draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=COLOURS[foreground])
    else:
        for x in range(0, width, 20):
            draw.rectangle((x, 0, x + 9, height), fill=COLOURS[foreground])
    # A little per-image noise so no two photos are identical.
    for _ in range(30):
        px, py = rng.randrange(width), rng.randrange(height)
        draw.point((px, py), fill=tuple(rng.randrange(256) for _ in range(3)))
    return image, f"a {foreground} {shape} on a {background} background"


def write_sample_set(folder: Path, count: int, base_url: str) -> Path:
    """Write `count` JPEGs, a `photos.tsv` pointing at `base_url` and a `keywords.tsv`; return the TSV path."""
    folder = Path(folder)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    base_url = base_url.rstrip("/")
    tsv = folder / "photos.tsv"
    with open(tsv, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(UNSPLASH_COLUMNS)
        for index in range(count):
            photo_id = f"sample{index:05d}"
            image, description = draw_photo(index)
            city, country = PLACES[index % len(PLACES)]
            image.save(images / f"{photo_id}.jpg", "JPEG", quality=85, exif=sample_exif(index, city))
            writer.writerow([
                photo_id, f"{base_url}/images/{photo_id}.jpg", f"{base_url}/images/{photo_id}.jpg",
                f"2024-01-{1 + index % 28:02d} 12:00:00", "t", image.width, image.height,
                f"{image.width / image.height:.2f}", description.capitalize(), f"sampler{index % 7}",
                "Sample", f"Photographer {index % 7}", f"{city}, {country}" if city else "", country, city,
                description,
            ])
    with open(folder / "keywords.tsv", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(KEYWORD_COLUMNS)
        for index in range(count):
            writer.writerows([f"sample{index:05d}", *row] for row in sample_keywords(index))
    return tsv


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (stdlib signature)
        pass


def serve(folder: Path, host: str = "127.0.0.1", port: int = 0) -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    """Serve `folder` over HTTP in a background thread (query strings such as `?w=200` are ignored)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, name="sample-images", daemon=True)
    thread.start()
    return server, thread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate or serve the local sample photo set.")
    sub = parser.add_subparsers(dest="action", required=True)
    generate = sub.add_parser("generate", help="write JPEGs, photos.tsv and keywords.tsv")
    generate.add_argument("folder", type=Path)
    generate.add_argument("--count", type=int, default=200)
    generate.add_argument("--base-url", default="http://127.0.0.1:8090")
    serve_cmd = sub.add_parser("serve", help="serve a folder over HTTP until interrupted")
    serve_cmd.add_argument("folder", type=Path)
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    if args.action == "generate":
        tsv = write_sample_set(args.folder, args.count, args.base_url)
        print(f"wrote {args.count} sample photos and {tsv}")
        return 0
    server, thread = serve(args.folder, args.host, args.port)
    print(f"serving {args.folder} at http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
