"""One embedder serving several models (services/embedder/registry.py), as a re-embedding job uses it:
a second model loaded beside the primary answers as that model started alone would, the primary's
vectors do not move, loading never stalls the primary, a model that cannot load says why and leaves
the primary serving, the least recently used model makes room for a new one, and the client loads the
model an embedder lacks (after a restart) on first use.

Tiny random replicas (tools/random_model.py): the primary a CLIP (64 dimensions), the others a SigLIP
(32) and a SigLIP 2; the apps run in-process, and the client's test runs the embedder as a process.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from services.common.embedder_client import AsyncEmbedderClient, EmbedderClient, EmbedderModelFailed
from services.embedder.config import EmbedderSettings
from services.embedder.main import create_app
from tests.support import free_port, service_process
from tools.random_model import write_random_model

MIN_COSINE = 0.9999
TEXTS = ["a dog running on the beach", "un gato en la ventana"]


def jpeg(color, size=(90, 70)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


IMAGES = [jpeg("red"), jpeg((20, 120, 200), (60, 100))]


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_model_dir) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    folders = {"clip": str(tiny_model_dir)}
    for family in ("siglip", "siglip2"):
        folders[family] = str(write_random_model(root / family, family=family, size="tiny"))
    folders["missing"] = str(root / "no-such-model")
    unknown = root / "bert"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "bert"}))
    folders["unknown"] = str(unknown)
    return folders


def wait_ready(client: TestClient) -> None:
    deadline = time.monotonic() + 120
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.05)


@contextmanager
def embedder(primary: str, **settings):
    app = create_app(EmbedderSettings(embedder_model=primary, dtype="float32", **settings))
    with TestClient(app) as client:
        wait_ready(client)
        yield client


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def vectors(client: TestClient, model: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    params = {"model": model} if model else {}
    texts = ok(client.post("/v1/embed/text", params=params, json={"texts": TEXTS}))
    files = [("images", (f"{index}.jpg", image, "image/jpeg")) for index, image in enumerate(IMAGES)]
    images = ok(client.post("/v1/embed/image", params=params, files=files))
    if model:
        assert texts["model"] == images["model"] == model
    return np.asarray(texts["vectors"]), np.asarray(images["vectors"])


def cosines(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    return np.sum(unit(ours) * unit(reference), axis=-1)


def error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


@pytest.fixture(scope="module")
def siglip_alone(models) -> tuple[np.ndarray, np.ndarray]:
    """The SigLIP replica's vectors from an embedder started with it as its one model."""
    with embedder(models["siglip"]) as client:
        return vectors(client)


def test_a_second_model_answers_as_it_does_alone_and_the_primary_is_unchanged(models, siglip_alone):
    with embedder(models["clip"], max_models=4) as client:
        primary_before = vectors(client)
        info = ok(client.post("/v1/models", params={"wait": "true"}, json={"model": models["siglip"]}))
        assert (info["name"], info["state"], info["primary"], info["dim"], info["family"]) == \
            (models["siglip"], "ready", False, 32, "siglip")
        assert ok(client.get("/v1/model", params={"model": models["siglip"]}))["fingerprint"] == info["fingerprint"]

        texts, images = vectors(client, models["siglip"])
        assert texts.shape == (2, 32) and images.shape == (2, 32)
        assert cosines(texts, siglip_alone[0]).min() >= MIN_COSINE
        assert cosines(images, siglip_alone[1]).min() >= MIN_COSINE
        # The primary, by default and by its name, is as it was before the second model came.
        for model in (None, models["clip"]):
            after = vectors(client, model)
            np.testing.assert_allclose(after[0], primary_before[0], atol=1e-6)
            np.testing.assert_allclose(after[1], primary_before[1], atol=1e-6)
        assert ok(client.get("/v1/model"))["dim"] == 64

        # Loading again is idempotent: the same model, ready, not a second copy.
        again = ok(client.post("/v1/models", json={"model": models["siglip"], "text_model": None}))
        assert again["state"] == "ready" and again["fingerprint"] == info["fingerprint"]
        listed = ok(client.get("/v1/models"))
        assert [(m["name"], m["state"], m["primary"], m["dim"]) for m in listed] == \
            [(models["clip"], "ready", True, 64), (models["siglip"], "ready", False, 32)]

        metrics = client.get("/metrics").text
        assert 'embedder_models{state="ready"} 2.0' in metrics
        assert f'embedder_model_items_embedded_total{{kind="text",model="{models["siglip"]}"}}' in metrics


def test_a_model_not_loaded_is_named_with_how_to_load_it(models):
    with embedder(models["clip"]) as client:
        for response in (client.post("/v1/embed/text", params={"model": "someone/else"}, json={"texts": ["x"]}),
                         client.get("/v1/model", params={"model": "someone/else"}),
                         client.post("/v1/embed/image", params={"model": "someone/else"},
                                     files=[("images", ("a.jpg", IMAGES[0], "image/jpeg"))])):
            assert error(response, 404) == {
                "code": "model_not_loaded", "request_id": response.json()["error"]["request_id"],
                "message": "The embedder has not loaded model someone/else; load it with POST /v1/models."}


def test_a_model_that_cannot_load_says_why_and_the_primary_keeps_serving(models):
    with embedder(models["clip"], max_models=4) as client:
        missing = error(client.post("/v1/models", params={"wait": "true"}, json={"model": models["missing"]}), 422)
        assert missing["code"] == "model_failed"
        assert missing["message"] == f"The model {models['missing']!r} could not be loaded: The model folder " \
                                     f"{models['missing']} does not exist."
        unknown = error(client.post("/v1/models", params={"wait": "true"}, json={"model": models["unknown"]}), 422)
        assert unknown["code"] == "model_failed" and "bert" in unknown["message"]

        assert ok(client.post("/v1/embed/text", json={"texts": ["still here"]}))["dim"] == 64
        assert client.get("/readyz").status_code == 200
        listed = {m["name"]: m for m in ok(client.get("/v1/models"))}
        assert listed[models["missing"]]["state"] == "failed"
        assert listed[models["missing"]]["reason"] == missing["message"]
        assert listed[models["clip"]]["state"] == "ready"
        # A failed model is not loaded: calls naming it say so, with the reason.
        refused = error(client.post("/v1/embed/text", params={"model": models["unknown"]}, json={"texts": ["x"]}), 404)
        assert refused["code"] == "model_not_loaded" and "bert" in refused["message"]


def test_loading_runs_beside_the_primary_without_stalling_it(models, monkeypatch):
    from services.embedder import service as service_module

    real_load, release = service_module.load_towers, threading.Event()

    def held_load(name, *args, **kwargs):
        if name == models["siglip"]:
            assert release.wait(60), "the test never released the load"
        return real_load(name, *args, **kwargs)

    monkeypatch.setattr(service_module, "load_towers", held_load)
    with embedder(models["clip"]) as client:
        try:
            started = client.post("/v1/models", json={"model": models["siglip"]})
            assert started.status_code == 202 and started.json()["state"] == "loading"
            assert client.post("/v1/models", json={"model": models["siglip"]}).json()["state"] == "loading"
            # While the second model loads, the primary answers...
            assert ok(client.post("/v1/embed/text", json={"texts": ["a query"]}))["dim"] == 64
            # ...and the loading one asks to be called again.
            loading = client.post("/v1/embed/text", params={"model": models["siglip"]}, json={"texts": ["x"]})
            assert error(loading, 503)["code"] == "model_loading" and loading.headers["Retry-After"]
            assert [m["state"] for m in ok(client.get("/v1/models"))] == ["ready", "loading"]
        finally:
            release.set()
        assert ok(client.post("/v1/models", params={"wait": "true"}, json={"model": models["siglip"]}))["dim"] == 32
        assert ok(client.post("/v1/embed/text", params={"model": models["siglip"]}, json={"texts": ["x"]}))["dim"] == 32


def test_the_least_recently_used_model_makes_room_and_the_primary_never_does(models):
    load = lambda client, name: client.post("/v1/models", params={"wait": "true"}, json={"model": models[name]})  # noqa: E731
    with embedder(models["clip"], max_models=2, model_idle_s=0) as client:
        ok(load(client, "siglip"))
        vectors(client, models["siglip"])
        ok(load(client, "siglip2"))
        assert [m["name"] for m in ok(client.get("/v1/models"))] == [models["clip"], models["siglip2"]]
        gone = client.post("/v1/embed/text", params={"model": models["siglip"]}, json={"texts": ["x"]})
        assert error(gone, 404)["code"] == "model_not_loaded"
        assert ok(client.post("/v1/embed/text", json={"texts": ["x"]}))["dim"] == 64

    with embedder(models["clip"], max_models=2) as client:  # the others used within the last 60 s
        ok(load(client, "siglip"))
        vectors(client, models["siglip"])
        refused = load(client, "siglip2")
        full = error(refused, 409)
        assert full["code"] == "too_many_models" and int(refused.headers["Retry-After"]) > 0
        assert "EMBEDDER_MAX_MODELS=2" in full["message"] and models["siglip"] in full["message"]
        assert [m["state"] for m in ok(client.get("/v1/models"))] == ["ready", "ready"]

    with embedder(models["clip"], max_models=1, model_idle_s=0) as client:
        assert error(load(client, "siglip"), 409)["code"] == "too_many_models"
        assert ok(client.post("/v1/embed/text", json={"texts": ["x"]}))["dim"] == 64


@contextmanager
def embedder_process(primary: str, port: int, log_path: Path):
    env = {**os.environ, "EMBEDDER_MODEL": primary, "EMBEDDER_DTYPE": "float32", "HF_HUB_OFFLINE": "1",
           "EMBEDDER_TORCH_THREADS": "1", "EMBEDDER_MAX_MODELS": "3"}
    url = f"http://127.0.0.1:{port}"
    with service_process(["-m", "uvicorn", "--factory", "services.embedder.main:create_app", "--host", "127.0.0.1",
                          "--port", str(port)], url + "/readyz", log_path, env=env):
        yield url


def test_the_client_loads_the_model_an_embedder_lacks_even_after_a_restart(models, siglip_alone, tmp_path):
    siglip, port = models["siglip"], free_port()
    with EmbedderClient(f"http://127.0.0.1:{port}") as client:
        with embedder_process(models["clip"], port, tmp_path / "first.log"):
            texts = client.embed_texts(TEXTS, model=siglip)
            assert texts.shape == (2, 32) and cosines(texts, siglip_alone[0]).min() >= MIN_COSINE
            assert [(m["name"], m["state"]) for m in client.list_models()] == [(models["clip"], "ready"),
                                                                               (siglip, "ready")]
            assert client.embed_texts(TEXTS).shape == (2, 64)  # the primary, as before
            with pytest.raises(EmbedderModelFailed) as failed:
                client.load_model(models["missing"])
            assert failed.value.message.endswith(f"The model folder {models['missing']} does not exist.")

        with embedder_process(models["clip"], port, tmp_path / "second.log"):  # restarted: only the primary
            assert [m["name"] for m in client.list_models()] == [models["clip"]]

            async def gateway_call():
                async with AsyncEmbedderClient(f"http://127.0.0.1:{port}") as remote:
                    return await remote.embed_images(IMAGES, model=siglip)

            images = asyncio.run(gateway_call())
            assert images.shape == (2, 32) and cosines(images, siglip_alone[1]).min() >= MIN_COSINE
            assert client.model_info(model=siglip)["dim"] == 32
            assert client.load_model(siglip)["state"] == "ready"
            assert client.embed_texts([], model=siglip).shape == (0, 32)
