"""A Spanish query through the real gateway, answered by a multilingual text tower over the image
vectors a CLIP ViT-B/32 stored: the store, the embedder (B/32-shaped CLIP for images, a
sentence-transformers multilingual tower aligned to it for texts) and the gateway each run as their
own process. The answer's scores are those of the multilingual tower's vector, as sentence-transformers
itself computes it, against the stored vectors: not those of CLIP's own English text tower."""
from __future__ import annotations

import os

import numpy as np
import pytest

from services.common.api_client import ApiClient
from services.common.embedder_client import EmbedderClient
from services.common.schemas import PhotoRecord
from services.photostore import PhotoStore
from tests.integration.test_api_search import jpeg
from tests.support import store_embedder_gateway
from tools.random_model import write_random_model

TABLE = "photos_multilingual"
QUERY = "un perro corriendo en la playa al atardecer"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("multilingual")
    image_model = write_random_model(workdir / "clip-b32", family="clip", size="b32")
    text_model = write_random_model(workdir / "st", family="st-multilingual", size="tiny", aligned_to=image_model)
    env = {**os.environ, "STORE_TABLE": TABLE,
           "EMBEDDER_MODEL": str(image_model), "EMBEDDER_TEXT_MODEL": str(text_model), "EMBEDDER_DEVICE": "cpu",
           "EMBEDDER_DTYPE": "float32", "EMBEDDER_TORCH_THREADS": "1", "API_TEXT_CACHE_REDIS": "false",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with store_embedder_gateway(workdir, env) as urls:
        photos = {f"photo-{i}": jpeg(i) for i in range(6)}
        with EmbedderClient(urls["embedder"]) as embedder:
            info = embedder.model_info()
            vectors = embedder.embed_images(list(photos.values()))
        store = PhotoStore(urls["store"], TABLE)
        try:
            store.ensure_table(info["dim"], info["name"])
            store.insert_photos([PhotoRecord(photo_id=photo_id, photo_image_url=f"http://127.0.0.1/{photo_id}.jpg")
                                 for photo_id in photos], vectors)
        finally:
            store.close()
        yield {"api": urls["api"], "image_model": image_model, "text_model": text_model,
               "vectors": dict(zip(photos, np.asarray(vectors)))}


def test_the_gateway_names_both_towers(stack):
    with ApiClient(stack["api"]) as api:
        model = api.stats()["model"]
    assert model["name"] == str(stack["image_model"]) and model["family"] == "clip" and model["dim"] == 512
    assert model["text_model"] == str(stack["text_model"]) and model["text_family"] == "st-multilingual"
    assert "es" in model["languages"]


def test_a_spanish_query_meets_the_stored_b32_vectors_through_the_multilingual_tower(stack):
    from sentence_transformers import SentenceTransformer
    from transformers import CLIPModel, CLIPProcessor

    with ApiClient(stack["api"]) as api:
        results = api.search(text=QUERY, top_k=6)["results"]
    query = SentenceTransformer(str(stack["text_model"]), device="cpu").encode([QUERY])[0]
    query = query / np.linalg.norm(query)
    expected = {photo_id: float(vector @ query) for photo_id, vector in stack["vectors"].items()}
    assert [r["photo_id"] for r in results] == sorted(expected, key=expected.get, reverse=True)
    for result in results:
        assert result["score"] == pytest.approx(expected[result["photo_id"]], abs=1e-4)
    # Not CLIP's own text tower: its vector for the same words gives other scores.
    clip = CLIPModel.from_pretrained(stack["image_model"]).eval()
    tokens = CLIPProcessor.from_pretrained(stack["image_model"])(text=[QUERY], return_tensors="pt")
    english = clip.get_text_features(**tokens).pooler_output[0].detach().numpy()
    english = english / np.linalg.norm(english)
    assert max(abs(r["score"] - float(stack["vectors"][r["photo_id"]] @ english)) for r in results) > 1e-3
