"""The embedder over HTTP against the reference transformers pipeline, over pictures that break naive
decoders (CMYK JPEG, 16-bit PNG, 1x1, very wide and very tall, EXIF-rotated, palette with
transparency), with the fast preprocessing path on and off; and formats it must refuse by name."""
from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image, ImageOps
from transformers import CLIPModel, CLIPProcessor

from services.embedder.config import EmbedderSettings
from services.embedder.main import create_app

LIMITS = {"max_items": 16, "max_image_bytes": 2_000_000, "max_image_pixels": 4_000_000,
          # "auto" would pick bfloat16 on an AMX CPU; the reference bar is for float32.
          "dtype": "float32"}
# float32 on the CPU: the bar, per vector component.
ATOL = 1e-4


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colours with a hard edge: like a photo, and different enough from image to image."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    picture = coarse.resize((max(width, 1), max(height, 1)), Image.Resampling.BILINEAR)
    picture.paste((250, 30, 30), (0, 0, max(1, width // 4), height))
    return picture


def sixteen_bit_png() -> bytes:
    levels = np.linspace(0, 65535, 80 * 60).reshape(60, 80).astype(np.uint16)
    picture = Image.fromarray(levels)
    assert picture.mode == "I;16"
    return encode(picture, "PNG")


def varied() -> dict[str, tuple[bytes, Image.Image]]:
    """name -> (bytes sent, the upright 8-bit RGB picture a person sees, for the reference)."""
    base = photo(120, 90, seed=1)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise to view
    cmyk = encode(base.convert("CMYK"), "JPEG", quality=92)
    sixteen = sixteen_bit_png()
    levels = np.asarray(Image.open(io.BytesIO(sixteen))).astype(np.uint32) >> 8
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.info["transparency"] = 0
    cases = {
        "rgb jpeg": encode(base, "JPEG", quality=92),
        "cmyk jpeg": cmyk,
        "16-bit png": sixteen,
        "one pixel": encode(photo(1, 1, seed=2), "PNG"),
        "wide 40:1": encode(photo(1200, 30, seed=3), "PNG"),
        "tall 1:25": encode(photo(12, 300, seed=4), "PNG"),
        "exif rotated": encode(photo(100, 60, seed=5), "JPEG", quality=92, exif=exif.tobytes()),
        "palette with transparency": encode(palette, "PNG"),
        "greyscale": encode(base.convert("L"), "PNG"),
        "webp": encode(photo(300, 200, seed=6), "WEBP", quality=90),
        "big": encode(photo(1500, 1000, seed=7), "JPEG", quality=85),
    }
    upright: dict[str, Image.Image] = {}
    for name, data in cases.items():
        picture = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
        if name == "16-bit png":
            picture = Image.fromarray(levels.astype(np.uint8))
        elif name == "palette with transparency":
            rgba = picture.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            picture = Image.alpha_composite(white, rgba)
        upright[name] = picture.convert("RGB")
    return {name: (cases[name], upright[name]) for name in cases}


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    model = CLIPModel.from_pretrained(tiny_model_dir).eval()
    processor = CLIPProcessor.from_pretrained(tiny_model_dir)

    def embed(pictures: list[Image.Image]) -> np.ndarray:
        with torch.inference_mode():
            features = model.get_image_features(**processor(images=pictures, return_tensors="pt")).pooler_output
        return (features / features.norm(dim=-1, keepdim=True)).numpy()

    return embed


def started(tiny_model_dir, **overrides) -> TestClient:
    settings = EmbedderSettings(embedder_model=str(tiny_model_dir), **{**LIMITS, **overrides})
    client = TestClient(create_app(settings))
    client.__enter__()
    deadline = time.monotonic() + 60
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.05)
    return client


@pytest.fixture(scope="module", params=[True, False], ids=["fast preprocessing", "CLIPProcessor"])
def client(request, tiny_model_dir):
    client = started(tiny_model_dir, fast_preprocess=request.param)
    yield client
    client.__exit__(None, None, None)


def test_varied_images_equal_the_reference_pipeline(client, reference):
    cases = varied()
    files = [("images", (f"{index}.bin", data, "application/octet-stream"))
             for index, (data, _) in enumerate(cases.values())]
    response = client.post("/v1/embed/image", files=files)
    assert response.status_code == 200, response.text
    vectors = np.asarray(response.json()["vectors"], dtype=np.float32)
    expected = reference([picture for _, picture in cases.values()])
    for index, name in enumerate(cases):
        np.testing.assert_allclose(vectors[index], expected[index], atol=ATOL, err_msg=name)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_16_bit_png_is_not_blown_out_to_white(client, reference):
    data, upright = varied()["16-bit png"]
    # Pillow's own conversion clips every level above 255 to white: a different, wrong picture.
    clipped = Image.open(io.BytesIO(data)).convert("RGB")
    assert np.asarray(clipped).mean() > 250 and 100 < np.asarray(upright).mean() < 150
    vector = np.asarray(client.post("/v1/embed/image", files=[("images", ("a.png", data, "image/png"))])
                        .json()["vectors"][0])
    assert not np.allclose(vector, reference([clipped])[0], atol=1e-3)


def test_base64_gives_the_same_vectors_as_multipart(client):
    cases = varied()
    names = ["cmyk jpeg", "16-bit png", "wide 40:1"]
    encoded = [base64.b64encode(cases[name][0]).decode() for name in names]
    as_json = client.post("/v1/embed/image", json={"images_base64": encoded}).json()["vectors"]
    as_files = client.post("/v1/embed/image", files=[("images", (n, cases[n][0], "image/png")) for n in names])
    np.testing.assert_allclose(np.asarray(as_json), np.asarray(as_files.json()["vectors"]), atol=1e-6)


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
XBM = b"#define x_width 8\n#define x_height 2\nstatic char x_bits[] = { 0x00, 0xff, 0x00, 0xff };\n"


@pytest.mark.parametrize(("data", "code", "words"), [
    (SVG, "unsupported_format", "SVG"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "unsupported_format", "SVG"),
    (XBM, "unsupported_format", "XBM"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "not_an_image", "not an image"),
])
def test_formats_the_embedder_does_not_decode_are_refused_by_name(client, data, code, words):
    response = client.post("/v1/embed/image", files=[("images", ("x", data, "application/octet-stream"))])
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"] and error["message"].startswith("Image 0 ")
    each = client.post("/v1/embed/image", params={"per_item": "true"},
                       files=[("images", ("x", data, "image/svg+xml")),
                              ("images", ("ok.jpg", varied()["rgb jpeg"][0], "image/jpeg"))]).json()
    assert each["vectors"][0] is None and each["errors"][0]["code"] == code
    assert each["vectors"][1] is not None and each["errors"][1] is None


def test_a_decompression_bomb_costs_nothing_and_is_refused(client):
    # 20000x20000 one-bit PNG: about 50 kB on the wire, 400 million pixels once decoded.
    bomb = encode(Image.new("1", (20000, 20000)), "PNG", optimize=True)
    assert len(bomb) < LIMITS["max_image_bytes"]
    started_at = time.perf_counter()
    response = client.post("/v1/embed/image", files=[("images", ("bomb.png", bomb, "image/png"))])
    assert response.status_code == 422 and response.json()["error"]["code"] == "image_too_large"
    assert "400,000,000 pixels" in response.json()["error"]["message"]
    assert "limit of 4,000,000" in response.json()["error"]["message"]
    assert time.perf_counter() - started_at < 2.0
    assert client.post("/v1/embed/text", json={"texts": ["still serving"]}).status_code == 200


def test_more_items_than_the_limit_are_refused_in_every_transport(client):
    data = varied()["one pixel"][0]
    too_many = LIMITS["max_items"] + 1
    multipart = client.post("/v1/embed/image", files=[("images", ("a.png", data, "image/png"))] * too_many)
    as_json = client.post("/v1/embed/image", json={"images_base64": [base64.b64encode(data).decode()] * too_many})
    texts = client.post("/v1/embed/text", json={"texts": ["a"] * too_many})
    for response in (multipart, as_json, texts):
        assert response.status_code == 422 and response.json()["error"]["code"] == "too_many_items"
        assert f"limit is {LIMITS['max_items']}" in response.json()["error"]["message"]


@pytest.mark.parametrize("content_type", ["text/plain", "image/png", "application/x-www-form-urlencoded", ""])
def test_a_wrong_content_type_is_a_415_that_says_what_to_send(client, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/v1/embed/image", content=b"images=1", headers=headers)
    assert response.status_code == 415, response.text
    assert "multipart/form-data" in response.json()["error"]["message"]


@pytest.mark.parametrize("text", ["not base64 at all!", "QUJ", "data:image/png;base64,%%%"])
def test_malformed_base64_is_refused_per_item_or_whole(client, text):
    whole = client.post("/v1/embed/image", json={"images_base64": [text]})
    assert whole.status_code == 422 and whole.json()["error"]["code"] == "bad_base64"
    each = client.post("/v1/embed/image", params={"per_item": "true"}, json={"images_base64": [text]}).json()
    assert each["vectors"] == [None] and each["errors"][0]["code"] == "bad_base64"


def test_texts_empty_after_strip_are_refused_and_long_texts_are_truncated_and_reported(client):
    for blank in ["", "   ", "\n\t "]:
        refused = client.post("/v1/embed/text", json={"texts": ["fine", blank]})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "empty_text"
    long = "a photo of a very long sentence " * 20  # about 140 tokens
    body = client.post("/v1/embed/text", json={"texts": [long, "short"]}).json()
    assert body["truncated"] == [True, False]
    # Truncation keeps the first 77 tokens: any suffix past them changes nothing.
    again = client.post("/v1/embed/text", json={"texts": [long + " and more words at the end"]}).json()
    np.testing.assert_allclose(body["vectors"][0], again["vectors"][0], atol=1e-6)


def test_bf16_setting_is_reported_and_stays_close_to_fp32(tiny_model_dir, reference):
    client = started(tiny_model_dir, dtype="bfloat16")
    try:
        assert client.get("/v1/model").json()["dtype"] == "bfloat16"
        cases = varied()
        names = ["rgb jpeg", "cmyk jpeg", "webp", "big"]
        vectors = np.asarray(client.post("/v1/embed/image", files=[
            ("images", (n, cases[n][0], "application/octet-stream")) for n in names]).json()["vectors"])
        expected = reference([cases[n][1] for n in names])
        cosines = np.sum(vectors * expected, axis=1)
        assert cosines.min() >= 0.999, cosines
    finally:
        client.__exit__(None, None, None)
