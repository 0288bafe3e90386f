"""EmbedderClient and AsyncEmbedderClient against a real embedder process on a free port:
results, error mapping, fail-over between URLs, and micro-batching of concurrent requests."""
from __future__ import annotations

import asyncio
import io
import os
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from services.common.embedder_client import (
    AsyncEmbedderClient,
    EmbedderClient,
    EmbedderRejected,
    EmbedderTimeout,
    EmbedderUnavailable,
    EmbedItemError,
)
from tests.support import free_port, service_process


def jpeg(color, size=(80, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def embedder_url(tiny_model_dir, tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("embedder") / "embedder.log"
    env = {**os.environ, "EMBEDDER_MODEL": str(tiny_model_dir), "HF_HUB_OFFLINE": "1",
           # A generous gathering window makes batching of concurrent requests certain on a busy machine.
           "EMBEDDER_MAX_WAIT_MS": "150", "EMBEDDER_MAX_BATCH": "32", "EMBEDDER_TORCH_THREADS": "1"}
    url = f"http://127.0.0.1:{port}"
    with service_process(["-m", "uvicorn", "--factory", "services.embedder.main:create_app",
                          "--host", "127.0.0.1", "--port", str(port)], url + "/readyz", log_path, env=env):
        yield url


def test_model_info_and_vectors(embedder_url):
    with EmbedderClient(embedder_url) as client:
        info = client.model_info()
        assert info["dim"] == 64 and info["random_weights"] is True
        texts = client.embed_texts(["a red car", "a blue sea"])
        images = client.embed_images([jpeg("red"), jpeg("blue")])
        assert texts.shape == images.shape == (2, 64)
        assert texts.dtype == images.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
        assert client.embed_texts([]).shape == (0, 64)
        assert client.embed_images_each([]) == []


def test_bad_input_is_rejected_with_the_embedders_sentence(embedder_url):
    with EmbedderClient(embedder_url) as client:
        with pytest.raises(EmbedderRejected) as rejected:
            client.embed_images([jpeg("red"), b"not an image"])
        assert rejected.value.message.startswith("Image 1 ") and rejected.value.status_code == 422
        with pytest.raises(EmbedderRejected, match="empty"):
            client.embed_texts(["  "])
        each = client.embed_images_each([jpeg("red"), b"not an image", jpeg("green")])
        assert isinstance(each[0], np.ndarray) and each[0].shape == (64,)
        assert each[1] == EmbedItemError("not_an_image", each[1].message) and "Image 1" in each[1].message
        np.testing.assert_allclose(each[2], client.embed_images([jpeg("green")])[0], atol=1e-6)


def test_fails_over_to_the_next_url_and_reports_when_none_answers(embedder_url):
    dead = f"http://127.0.0.1:{free_port()}"
    with EmbedderClient(f"{dead},{embedder_url}") as client:
        for _ in range(3):  # whichever URL a call starts with, it ends on the live one
            assert client.embed_texts(["hello"]).shape == (1, 64)
    with EmbedderClient([dead]) as client:
        with pytest.raises(EmbedderUnavailable) as unavailable:
            client.embed_texts(["hello"])
    assert dead in unavailable.value.message and unavailable.value.status_code == 503


def test_a_server_that_never_answers_times_out():
    with socket.socket() as silent:  # accepts connections (kernel backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with EmbedderClient(url, timeout=0.5) as client:
            with pytest.raises(EmbedderTimeout) as timed_out:
                client.embed_texts(["hello"])
    # A hung embedder is answered like a dead one: 503 with Retry-After (the gateway passes both on).
    assert timed_out.value.status_code == 503 and timed_out.value.retry_after == 5
    assert "0.5 seconds" in timed_out.value.message


def test_async_client(embedder_url):
    async def run():
        async with AsyncEmbedderClient([f"http://127.0.0.1:{free_port()}", embedder_url]) as client:
            info = await client.model_info()
            texts, images, each = await asyncio.gather(
                client.embed_texts(["a dog"]), client.embed_images([jpeg("red")]),
                client.embed_images_each([b"nope", jpeg("red")]))
            with pytest.raises(EmbedderRejected):
                await client.embed_images([b"nope"])
            return info, texts, images, each

    info, texts, images, each = asyncio.run(run())
    assert info["dim"] == 64 and texts.shape == images.shape == (1, 64)
    assert isinstance(each[0], EmbedItemError) and each[0].code == "not_an_image"
    np.testing.assert_allclose(each[1], images[0], atol=1e-6)


def batch_counts(metrics_text: str, kind: str) -> tuple[int, int]:
    """(batches, batches of exactly one item) from the batch-size histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    batches = singles = 0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "embedder_batch_size":
            continue
        for sample in family.samples:
            if sample.labels.get("kind") != kind:
                continue
            if sample.name == "embedder_batch_size_count":
                batches = int(sample.value)
            elif sample.name == "embedder_batch_size_bucket" and float(sample.labels["le"]) == 1.0:
                singles = int(sample.value)
    return batches, singles


def test_concurrent_requests_are_batched(embedder_url):
    before_batches, before_singles = batch_counts(httpx.get(embedder_url + "/metrics").text, "image")
    requests = 8
    with EmbedderClient(embedder_url) as client, ThreadPoolExecutor(requests) as pool:
        results = list(pool.map(lambda i: client.embed_images([jpeg((i * 30, 0, 0))]), range(requests)))
    assert all(result.shape == (1, 64) for result in results)
    batches, singles = batch_counts(httpx.get(embedder_url + "/metrics").text, "image")
    new_batches, new_singles = batches - before_batches, singles - before_singles
    # Eight one-image requests took fewer forward passes than requests: at least one batch held > 1.
    assert 1 <= new_batches < requests and new_batches > new_singles


def test_pixels_cropped_by_the_caller_match_the_encoded_images(embedder_url):
    from services.common.images import ClipCrop
    from services.media.decode import decode_image

    photos = [jpeg("red", (120, 50)), jpeg("navy", (40, 90)), jpeg("olive")]
    with EmbedderClient(embedder_url) as client:
        crop = ClipCrop.from_dict(client.model_info()["pixel_input"])
        crops = np.stack([crop(decode_image(data, max_bytes=1 << 20, max_pixels=1 << 20)) for data in photos])
        from_pixels = client.embed_pixels(crops)
        np.testing.assert_allclose(from_pixels, client.embed_images(photos), atol=1e-6)
        assert client.embed_pixels(crops[:0]).shape == (0, 64)
        with pytest.raises(EmbedderRejected, match="uint8 images x 64 x 64 x 3"):
            client.embed_pixels(crops[:, :32])

    async def run():
        async with AsyncEmbedderClient(embedder_url) as client:
            return await client.embed_pixels(crops)

    np.testing.assert_allclose(asyncio.run(run()), from_pixels, atol=1e-6)
