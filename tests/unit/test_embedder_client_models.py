"""The embedder clients' model paths, against a scripted embedder (httpx.MockTransport): `?model=` sent
only when asked, a model the embedder lacks loaded there and the call sent once more, a load that
fails or finds the embedder full, each URL tried in turn, and an answer from the wrong model refused."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from services.common.embedder_client import (
    AsyncEmbedderClient,
    EmbedderBusy,
    EmbedderClient,
    EmbedderFailed,
    EmbedderModelFailed,
    EmbedderModelNotLoaded,
)

PRIMARY, OTHER = "openai/clip-vit-base-patch32", "google/siglip2-base-patch16-224"
DIMS = {PRIMARY: 4, OTHER: 3}


class ScriptedEmbedder:
    """An embedder that holds `loaded` models (the primary always), loads what it is asked unless the
    name is in `unloadable` or it is `full`, and records every request as (method, path, params, json)."""

    def __init__(self, loaded=(), unloadable=(), full=False, ignores_model=False):
        self.loaded = {PRIMARY, *loaded}
        self.unloadable = set(unloadable)
        self.full = full
        self.ignores_model = ignores_model  # an embedder from before ?model=
        self.requests: list[tuple] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.headers.get("content-type") == "application/json" else None
        params = dict(request.url.params)
        self.requests.append((request.method, request.url.path, params, body, request.extensions.get("timeout")))
        if request.url.path == "/v1/models" and request.method == "POST":
            return self._load(body["model"])
        if request.url.path == "/v1/models":
            return httpx.Response(200, json=[{"name": name, "state": "ready", "primary": name == PRIMARY}
                                             for name in sorted(self.loaded)])
        model = PRIMARY if self.ignores_model else params.get("model", PRIMARY)
        if model not in self.loaded:
            return self._error(404, "model_not_loaded",
                               f"The embedder has not loaded model {model}; load it with POST /v1/models.")
        if request.url.path == "/v1/model":
            return httpx.Response(200, json=self._info(model))
        count = len(body["texts"]) if body else 1
        return httpx.Response(200, json={"model": model, "dim": DIMS[model], "vectors": [[0.5] * DIMS[model]] * count})

    def _load(self, model: str) -> httpx.Response:
        if model in self.unloadable:
            return self._error(422, "model_failed", f"The model {model!r} could not be loaded: it is not there.")
        if self.full:
            return self._error(409, "too_many_models", "The embedder already holds 2 models.", {"Retry-After": "42"})
        self.loaded.add(model)
        return httpx.Response(200, json={**self._info(model), "state": "ready", "primary": False})

    @staticmethod
    def _info(model: str) -> dict:
        return {"name": model, "dim": DIMS[model], "fingerprint": "f00d"}

    @staticmethod
    def _error(status: int, code: str, message: str, headers=None) -> httpx.Response:
        return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)

    def paths(self) -> list[tuple]:
        return [(method, path, params.get("model")) for method, path, params, _, _ in self.requests]


def client_for(*embedders: ScriptedEmbedder, load_timeout: float = 600.0) -> EmbedderClient:
    urls = [f"http://embedder-{index}" for index in range(len(embedders))]
    client = EmbedderClient(urls, timeout=5.0, load_timeout=load_timeout)
    client._start = iter(lambda: 0, None)  # always start with the first URL
    routes = dict(zip(urls, embedders))
    client._http = httpx.Client(transport=httpx.MockTransport(
        lambda request: routes[f"{request.url.scheme}://{request.url.host}"](request)), timeout=5.0)
    return client


def test_the_model_is_sent_only_when_named():
    embedder = ScriptedEmbedder(loaded=[OTHER])
    with client_for(embedder) as client:
        assert client.embed_texts(["a"]).shape == (1, 4)
        assert client.embed_texts(["a", "b"], model=OTHER).shape == (2, 3)
        assert client.model_info(model=OTHER)["dim"] == 3
    assert embedder.paths() == [("POST", "/v1/embed/text", None), ("POST", "/v1/embed/text", OTHER),
                                ("GET", "/v1/model", OTHER)]


def test_a_model_the_embedder_lacks_is_loaded_there_and_the_call_sent_again():
    embedder = ScriptedEmbedder()
    with client_for(embedder, load_timeout=321.0) as client:
        assert client.embed_images_each([b"jpeg"], model=OTHER, text_model="some/tower")[0].shape == (3,)
    assert embedder.paths() == [("POST", "/v1/embed/image", OTHER), ("POST", "/v1/models", None),
                                ("POST", "/v1/embed/image", OTHER)]
    _, _, params, body, timeout = embedder.requests[1]
    assert params == {"wait": "true"} and body == {"model": OTHER, "text_model": "some/tower"}
    assert timeout["read"] == 321.0  # a first load may export graphs: longer than a call's timeout


def test_a_load_that_fails_raises_the_embedders_sentence_and_is_not_retried():
    embedder = ScriptedEmbedder(unloadable=[OTHER])
    with client_for(embedder) as client:
        with pytest.raises(EmbedderModelFailed) as failed:
            client.embed_texts(["a"], model=OTHER)
        assert failed.value.message == f"The model {OTHER!r} could not be loaded: it is not there."
        assert failed.value.status_code == 422 and failed.value.code == "model_failed"
        with pytest.raises(EmbedderModelFailed):
            client.load_model(OTHER)
    assert [path for _, path, _ in embedder.paths()] == ["/v1/embed/text", "/v1/models", "/v1/models"]


def test_a_full_embedder_is_busy_for_as_long_as_it_says():
    with client_for(ScriptedEmbedder(full=True)) as client:
        with pytest.raises(EmbedderBusy) as busy:
            client.embed_texts(["a"], model=OTHER)
    assert busy.value.retry_after == 42 and busy.value.status_code == 503


def test_each_url_is_tried_in_turn_and_loads_the_model_itself():
    full, lacking = ScriptedEmbedder(full=True), ScriptedEmbedder()
    with client_for(full, lacking) as client:
        assert client.embed_texts(["a"], model=OTHER).shape == (1, 3)
    assert [path for _, path, _ in full.paths()] == ["/v1/embed/text", "/v1/models"]
    assert [path for _, path, _ in lacking.paths()] == ["/v1/embed/text", "/v1/models", "/v1/embed/text"]


def test_without_a_model_a_missing_primary_is_not_loaded():
    embedder = ScriptedEmbedder()
    embedder.loaded.clear()
    with client_for(embedder) as client:
        with pytest.raises(EmbedderModelNotLoaded):
            client.embed_texts(["a"])
    assert len(embedder.requests) == 1


def test_an_embedder_that_ignores_the_model_is_refused():
    with client_for(ScriptedEmbedder(loaded=[OTHER], ignores_model=True)) as client:
        with pytest.raises(EmbedderFailed) as wrong:
            client.embed_texts(["a"], model=OTHER)
    assert wrong.value.code == "embedder_wrong_model" and PRIMARY in wrong.value.message


def test_load_model_and_list_models():
    embedder = ScriptedEmbedder()
    with client_for(embedder) as client:
        assert client.load_model(OTHER) == {"name": OTHER, "dim": 3, "fingerprint": "f00d", "state": "ready",
                                            "primary": False}
        assert [m["name"] for m in client.list_models()] == sorted([PRIMARY, OTHER])
        assert client.embed_texts([], model=OTHER).shape == (0, 3)  # the dimension known from the load
    assert embedder.requests[0][3] == {"model": OTHER, "text_model": None}
    assert len(embedder.requests) == 2


def test_a_list_that_is_not_a_list_is_malformed():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"models": []})

    with EmbedderClient("http://embedder") as client:
        client._http = httpx.Client(transport=httpx.MockTransport(handler))
        with pytest.raises(EmbedderFailed) as malformed:
            client.list_models()
    assert malformed.value.code == "embedder_malformed"


def test_the_async_client_loads_the_model_too():
    embedder = ScriptedEmbedder()

    async def run():
        async with AsyncEmbedderClient("http://embedder", timeout=5.0) as client:
            client._http = httpx.AsyncClient(transport=httpx.MockTransport(embedder))
            vectors = await client.embed_images([b"jpeg"], model=OTHER)
            info = await client.model_info(model=OTHER)
            listed = await client.list_models()
            with pytest.raises(EmbedderModelFailed):
                embedder.unloadable.add("nope")
                await client.load_model("nope")
            return vectors, info, listed

    vectors, info, listed = asyncio.run(run())
    assert vectors.shape == (1, 3) and info["dim"] == 3 and len(listed) == 2
    assert embedder.paths()[:3] == [("POST", "/v1/embed/image", OTHER), ("POST", "/v1/models", None),
                                    ("POST", "/v1/embed/image", OTHER)]
