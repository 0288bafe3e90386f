"""The embedder over HTTP (in-process app, tiny random CLIP): vectors equal the reference
transformers pipeline, and every kind of bad input gets its own 4xx while the service keeps serving."""
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

LIMITS = {"max_items": 4, "max_image_bytes": 200_000, "max_image_pixels": 100_000, "max_text_chars": 2_000}


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def sample_images() -> dict[str, bytes]:
    base = Image.effect_noise((90, 70), 60).convert("RGB")
    base.paste((255, 0, 0), (0, 0, 30, 70))
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((90, 70)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    return {
        "rgb": encode(base, "JPEG", quality=90),
        "rgba": encode(rgba),
        "l": encode(base.convert("L")),
        "p": encode(base.convert("P", palette=Image.Palette.ADAPTIVE)),
        "exif": encode(base, "JPEG", quality=90, exif=exif.tobytes()),
    }


def wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 60
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.05)


@pytest.fixture(scope="module")
def client(tiny_model_dir):
    # float32 even on an AMX CPU (where "auto" is bfloat16): the reference bar is for float32.
    settings = EmbedderSettings(embedder_model=str(tiny_model_dir), dtype="float32", **LIMITS)
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client)
        yield test_client


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """The plain transformers pipeline the service must agree with."""
    model = CLIPModel.from_pretrained(tiny_model_dir).eval()
    processor = CLIPProcessor.from_pretrained(tiny_model_dir)

    def embed(texts=None, images=None) -> np.ndarray:
        with torch.inference_mode():
            if texts is not None:
                inputs = processor(text=texts, return_tensors="pt", padding=True, truncation=True)
                features = model.get_text_features(**inputs).pooler_output
            else:
                inputs = processor(images=images, return_tensors="pt")
                features = model.get_image_features(**inputs).pooler_output
        features = features / features.norm(dim=-1, keepdim=True)
        return features.numpy()

    return embed


def vectors_of(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["vectors"], dtype=np.float32)


def test_model_info_says_random_weights(client):
    info = client.get("/v1/model").json()
    assert info["dim"] == 64 and info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["random_weights"] is True and len(info["fingerprint"]) == 16
    assert client.get("/readyz").json()["random_weights"] is True
    assert client.get("/healthz").status_code == 200


def test_text_vectors_equal_the_reference(client, reference):
    texts = ["a photo of a dog", "Una foto de un gato en la playa", "sunset " * 90]
    response = client.post("/v1/embed/text", json={"texts": texts})
    vectors = vectors_of(response)
    body = response.json()
    assert body["dim"] == 64 and body["random_weights"] is True
    assert body["truncated"] == [False, False, True]
    np.testing.assert_allclose(vectors, reference(texts=texts), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("transport", ["multipart", "json"])
def test_image_vectors_equal_the_reference(client, reference, transport):
    images = sample_images()
    if transport == "multipart":
        files = [("images", (f"{name}.bin", data, "application/octet-stream")) for name, data in images.items()
                 if name != "exif"]
        files.append(("images", ("exif.jpg", images["exif"], "image/jpeg")))
        names = [name for name in images if name != "exif"] + ["exif"]
        # Four is this app's per-request limit: send two requests.
        vectors = np.concatenate([vectors_of(client.post("/v1/embed/image", files=files[:3])),
                                  vectors_of(client.post("/v1/embed/image", files=files[3:]))])
    else:
        names = list(images)
        encoded = [base64.b64encode(images[name]).decode() for name in names]
        vectors = np.concatenate([vectors_of(client.post("/v1/embed/image", json={"images_base64": encoded[:4]})),
                                  vectors_of(client.post("/v1/embed/image", json={"images_base64": encoded[4:]}))])
    # What a person sees: the picture upright (EXIF applied).
    pictures = [ImageOps.exif_transpose(Image.open(io.BytesIO(images[name]))) for name in names]
    np.testing.assert_allclose(vectors, reference(images=pictures), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The rotation matters: the EXIF photo is not embedded like its unrotated pixels.
    unrotated = reference(images=[Image.open(io.BytesIO(images["exif"])).convert("RGB")])[0]
    assert not np.allclose(vectors[names.index("exif")], unrotated, atol=1e-3)


def bad_images() -> dict[str, tuple[bytes, int, str]]:
    whole = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    return {
        "not an image": (b"%PDF-1.4 not a picture", 422, "not_an_image"),
        "truncated": (whole[: len(whole) // 2], 422, "truncated_image"),
        "too many pixels": (encode(Image.new("1", (500, 500))), 422, "image_too_large"),
        "file too big": (encode(Image.effect_noise((300, 300), 90).convert("RGB")), 413, "file_too_large"),
    }


@pytest.mark.parametrize("case", list(bad_images()))
def test_each_bad_image_gets_a_4xx_naming_the_item_and_the_service_keeps_serving(client, case):
    data, status, code = bad_images()[case]
    good = sample_images()["rgb"]
    response = client.post("/v1/embed/image", files=[("images", ("good.jpg", good, "image/jpeg")),
                                                    ("images", ("bad.jpg", data, "image/jpeg"))])
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"].startswith("Image 1 ")
    assert "Traceback" not in response.text
    assert client.post("/v1/embed/image", files=[("images", ("good.jpg", good, "image/jpeg"))]).status_code == 200


@pytest.mark.parametrize(("request_kwargs", "status", "code", "words"), [
    ({"json": {"images_base64": ["@@not base64@@"]}}, 422, "bad_base64", "base64"),
    ({"json": {"images_base64": []}}, 422, "no_items", "at least one"),
    ({"json": {"photos": []}}, 422, "invalid_request", "images_base64"),
    ({"content": b"raw bytes", "headers": {"content-type": "image/jpeg"}}, 415, "unsupported_media_type",
     "multipart"),
    ({"files": [("images", ("x.png", b"x", "image/png"))] * 5}, 422, "too_many_items", "limit is 4"),
    ({"data": {"images": "just text"}, "files": [("other", ("x.png", b"x", "image/png"))]}, 422, "not_an_image",
     "as a file"),
])
def test_bad_image_requests(client, request_kwargs, status, code, words):
    response = client.post("/v1/embed/image", **request_kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert code is None or error["code"] == code
    assert words in error["message"]


@pytest.mark.parametrize(("body", "code", "words"), [
    ({"texts": ["fine", "   "]}, "empty_text", "Text 1 is empty"),
    ({"texts": []}, "no_items", "at least one"),
    ({"texts": ["x"] * 5}, "too_many_items", "limit is 4"),
    ({"texts": ["x" * 3000]}, "text_too_long", "limit is 2,000"),
    ({"texts": "not a list"}, "invalid_request", "texts"),
    ({}, "invalid_request", "texts"),
])
def test_bad_text_requests(client, body, code, words):
    response = client.post("/v1/embed/text", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"]
    assert client.post("/v1/embed/text", json={"texts": ["still serving"]}).status_code == 200


def test_per_item_mode_refuses_items_one_by_one(client):
    images = sample_images()
    bad = bad_images()
    files = [("images", ("a.jpg", images["rgb"], "image/jpeg")),
             ("images", ("b.pdf", bad["not an image"][0], "application/pdf")),
             ("images", ("c.png", images["p"], "image/png")),
             ("images", ("d.png", bad["file too big"][0], "image/png"))]
    response = client.post("/v1/embed/image", params={"per_item": "true"}, files=files)
    body = response.json()
    assert response.status_code == 200, response.text
    assert [v is None for v in body["vectors"]] == [False, True, False, True]
    assert body["errors"][0] is None and body["errors"][2] is None
    assert body["errors"][1]["code"] == "not_an_image" and body["errors"][1]["message"].startswith("Image 1 ")
    assert body["errors"][3]["code"] == "file_too_large"
    strict = vectors_of(client.post("/v1/embed/image", files=[files[0], files[2]]))
    np.testing.assert_allclose(np.asarray([body["vectors"][0], body["vectors"][2]]), strict, atol=1e-6)
    everything_bad = client.post("/v1/embed/image", params={"per_item": "true"}, files=[files[1]]).json()
    assert everything_bad["vectors"] == [None] and everything_bad["errors"][0]["code"] == "not_an_image"


def test_metrics_count_requests_items_and_refusals(client):
    client.post("/v1/embed/text", json={"texts": ["one", "two"]})
    client.post("/v1/embed/text", json={"texts": [""]})
    text = client.get("/metrics").text
    assert 'embedder_items_embedded_total{kind="text"}' in text
    assert 'embedder_batch_size_count{kind="text"}' in text
    assert 'embedder_requests_total{method="POST",route="/v1/embed/text",status="200"}' in text
    assert 'embedder_items_rejected_total{code="empty_text"}' in text
    assert "embedder_ready 1" in text


def test_a_model_that_cannot_load_is_reported_by_readyz_and_refuses_work(tmp_path):
    settings = EmbedderSettings(embedder_model=str(tmp_path / "no-such-model"))
    with TestClient(create_app(settings)) as test_client:
        app_service = test_client.app.state.embedder
        test_client.portal.call(app_service.wait_loaded)
        assert test_client.get("/healthz").status_code == 200
        ready = test_client.get("/readyz")
        assert ready.status_code == 503 and "Retry-After" in ready.headers
        assert "could not be loaded" in ready.json()["error"]["message"]
        refused = test_client.post("/v1/embed/text", json={"texts": ["hello"]})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_failed"


def test_the_model_is_loaded_and_run_on_one_thread(tiny_model_dir, monkeypatch):
    # A second thread doing torch work slows every forward pass (see services/embedder/batcher.py).
    import threading

    from services.embedder import service as service_module

    threads: list[str] = []
    real_load = service_module.load_towers

    def load(*args, **kwargs):
        threads.append(threading.current_thread().name)
        loaded = real_load(*args, **kwargs)
        real_embed_texts = loaded.embed_texts
        loaded.embed_texts = lambda texts: threads.append(threading.current_thread().name) or real_embed_texts(texts)
        return loaded

    monkeypatch.setattr(service_module, "load_towers", load)
    settings = EmbedderSettings(embedder_model=str(tiny_model_dir), dtype="float32", **LIMITS)
    with TestClient(create_app(settings)) as test_client:
        wait_ready(test_client)
        assert test_client.post("/v1/embed/text", json={"texts": ["a dog"]}).status_code == 200
    assert len(threads) == 2 and len(set(threads)) == 1, threads


def cropped(client, images: dict[str, bytes]) -> np.ndarray:
    """What an ingest worker sends to /v1/embed/pixels: decoded as the embedder decodes, cropped as
    /v1/model's pixel_input says."""
    from services.common.images import ClipCrop
    from services.media.decode import decode_image

    crop = ClipCrop.from_dict(client.get("/v1/model").json()["pixel_input"])
    return np.stack([crop(decode_image(data, max_bytes=1 << 24, max_pixels=1 << 24)) for data in images.values()])


def post_pixels(client, body: bytes, content_type: str = "application/x-npy"):
    return client.post("/v1/embed/pixels", content=body, headers={"Content-Type": content_type})


def test_pixels_cropped_by_the_caller_give_the_vectors_of_the_encoded_images(client):
    from services.common.images import write_pixels

    info = client.get("/v1/model").json()
    assert info["pixel_input"] == {"shortest_edge": 64, "crop_height": 64, "crop_width": 64, "resample": 3}
    images = dict(list(sample_images().items())[:4])  # this app's per-request limit
    files = [("images", (f"{name}.bin", data, "application/octet-stream")) for name, data in images.items()]
    from_bytes = vectors_of(client.post("/v1/embed/image", files=files))
    response = post_pixels(client, write_pixels(cropped(client, images)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dim"] == 64 and body["random_weights"] is True
    np.testing.assert_allclose(np.asarray(body["vectors"], dtype=np.float32), from_bytes, atol=1e-6)


def test_crops_normalised_by_the_model_give_the_same_vectors(tiny_model_dir, monkeypatch, client):
    """On CUDA the service queues 8-bit crops and the model normalises them on its device (a quarter
    of the bytes to copy). Forced on here, where the same torch code runs on the CPU: the vectors of
    encoded images and of pixels are those of the host path."""
    from services.common.images import write_pixels
    from services.embedder import service as service_module

    real_load = service_module.load_towers
    loaded = []

    def load(*args, **kwargs):
        model = real_load(*args, **kwargs)
        model.image.normalise_on_device = True
        loaded.append(model)
        return model

    monkeypatch.setattr(service_module, "load_towers", load)
    images = dict(list(sample_images().items())[:4])  # this app's per-request limit
    files = [("images", (f"{name}.bin", data, "application/octet-stream")) for name, data in images.items()]
    reference = vectors_of(client.post("/v1/embed/image", files=files))
    crops = write_pixels(cropped(client, images))
    settings = EmbedderSettings(embedder_model=str(tiny_model_dir), dtype="float32", **LIMITS)
    with TestClient(create_app(settings)) as on_device:
        wait_ready(on_device)
        # What the decoding pool hands the batcher now: 8-bit crops, not float pixels.
        assert loaded and loaded[0].prepare_images([Image.new("RGB", (90, 70))]).dtype == np.uint8
        from_bytes = vectors_of(on_device.post("/v1/embed/image", files=files))
        from_pixels = vectors_of(post_pixels(on_device, crops))
    np.testing.assert_allclose(from_bytes, reference, atol=1e-6)
    np.testing.assert_allclose(from_pixels, reference, atol=1e-6)


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize("body, status, code, words", [
    (b"\xff\xd8\xff not an array", 422, "invalid_pixels", "not a .npy array"),
    (npy(np.zeros((1, 64, 64, 3), np.float32)), 422, "invalid_pixels", "got float32 1 x 64 x 64 x 3"),
    (npy(np.zeros((2, 32, 32, 3), np.uint8)), 422, "invalid_pixels", "uint8 images x 64 x 64 x 3"),
    (npy(np.array([{"a": 1}], dtype=object)), 422, "invalid_pixels", "not a .npy array"),
    (npy(np.zeros((0, 64, 64, 3), np.uint8)), 422, "no_items", "at least one image"),
])
def test_bad_pixel_bodies_are_refused_with_a_sentence(client, body, status, code, words):
    response = post_pixels(client, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and words in error["message"], error
    assert client.get("/readyz").status_code == 200


def test_pixels_need_the_npy_content_type_and_a_bounded_body(client):
    from services.common.images import write_pixels

    body = write_pixels(np.zeros((1, 64, 64, 3), np.uint8))
    refused = post_pixels(client, body, "image/png")
    assert refused.status_code == 415 and "application/x-npy" in refused.json()["error"]["message"]
    huge = post_pixels(client, write_pixels(np.zeros((40, 64, 64, 3), np.uint8)))
    assert huge.status_code == 413 and "4 images of pixels" in huge.json()["error"]["message"]


def test_int8_from_the_environment_serves_vectors_near_float32(tiny_model_dir, monkeypatch, client):
    """EMBEDDER_DTYPE=int8 as a deployment sets it: /v1/model says int8, and a batch of images comes
    back within the stated tolerance of the float32 service's vectors."""
    monkeypatch.setenv("EMBEDDER_DTYPE", "int8")
    monkeypatch.setenv("EMBEDDER_DEVICE", "cpu")
    settings = EmbedderSettings(embedder_model=str(tiny_model_dir), **LIMITS)
    assert settings.dtype == "int8"
    images = {name: data for name, data in sample_images().items() if name in ("rgb", "rgba", "l", "exif")}
    files = [("images", (f"{name}.bin", data, "application/octet-stream")) for name, data in images.items()]
    reference = vectors_of(client.post("/v1/embed/image", files=files))
    with TestClient(create_app(settings)) as quantized:
        wait_ready(quantized)
        info = quantized.get("/v1/model").json()
        assert info["dtype"] == "int8" and info["fingerprint"] == client.get("/v1/model").json()["fingerprint"]
        vectors = vectors_of(quantized.post("/v1/embed/image", files=files))
    cosines = np.sum(vectors * reference, axis=1)
    assert vectors.shape == reference.shape and cosines.min() >= 0.99, cosines
