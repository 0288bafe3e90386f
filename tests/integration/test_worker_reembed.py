"""A re-embedding batch against the real embedded store: photos read again from their URL, their file or the
copy kept of an upload, embedded with the new model, inserted into the new table with the same metadata;
a photo whose file is gone falls back to its thumbnail; a repeated batch adds nothing."""
from __future__ import annotations

import hashlib
import io
import uuid

import pytest
import redis
from PIL import Image

from services.common.fetch import FetchPolicy
from services.common.library import UPLOAD_SCHEME, content_id, file_url
from services.common.uploads import UploadSpool
from services.photostore import PhotoStore
from services.photostore.active import reembed_table_name
from services.worker import reembed
from services.worker.pipeline import ingest_batch, prepare_store
from services.worker.sources import SOURCE_SIDE
from tests.fakes import FakeEmbedder
from tests.integration.worker_support import jpeg

POLICY = FetchPolicy(allow_hosts=("127.0.0.1",), timeout_s=5)
REDIS_URL = "redis://127.0.0.1:6379/0"


def _photo(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="JPEG", quality=95)
    return out.getvalue()


@pytest.fixture
def spool():
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    with_spool = UploadSpool(REDIS_URL)
    yield with_spool
    with_spool.close()


def test_photos_are_read_again_from_their_sources_into_the_new_table(store_url, images, spool, tmp_path):
    root = tmp_path / "library"
    root.mkdir()
    (root / "a.jpg").write_bytes(jpeg(101, size=64))
    (root / "b.jpg").write_bytes(jpeg(102, size=64))
    uploads = [_photo(1200, 800, (200, 40, 40)), _photo(300, 200, (40, 200, 40))]
    records = [{"photo_id": f"web{i}", "photo_image_url": f"{images}/img/{i}.jpg", "photo_description": f"web {i}"}
               for i in range(3)]
    # A local or uploaded photo is named by its bytes (the ingest command does that).
    files = {name: content_id((root / name).read_bytes()) for name in ("a.jpg", "b.jpg")}
    records += [{"photo_id": files[name], "photo_image_url": file_url(root / name)} for name in files]
    ups = []
    for body in uploads:
        digest = hashlib.sha256(body).hexdigest()
        spool.put(digest, body)
        ups.append(content_id(body))
        records.append({"photo_id": ups[-1], "photo_image_url": UPLOAD_SCHEME + digest})

    embedder = FakeEmbedder()
    with PhotoStore(store_url, f"lib_{uuid.uuid4().hex[:8]}") as store:
        prepare_store(embedder, store)
        outcome = ingest_batch(records, embedder, store, POLICY, roots=[root], spool=spool)
        assert outcome.succeeded == 7 and not outcome.failures

        # Uploads keep a copy (their bytes leave Redis): JPEG, the shorter side at most 512 px.
        kept = store.get_sources([*ups, "web0"])
        assert set(kept) == set(ups)
        assert Image.open(io.BytesIO(kept[ups[0]])).size == (768, SOURCE_SIDE)
        assert Image.open(io.BytesIO(kept[ups[1]])).size == (300, 200)

        (root / "b.jpg").unlink()  # its source is gone: the thumbnail stands in
        model_b = "model-b"
        info = embedder.load_model(model_b)
        new = store.for_table(reembed_table_name(store.base_table, model_b))
        new.ensure_table(int(info["dim"]), str(info["name"]))
        bound = reembed.bound(embedder, model_b)
        ids = [record["photo_id"] for record in records] + ["deleted-meanwhile"]
        outcome = reembed.reembed_batch(ids, store.for_table(store.base_table), new, bound, POLICY, roots=[root])
        assert outcome.succeeded == 7 and outcome.skipped == 1
        assert [(f.photo_id, f.code) for f in outcome.failures] == [(files["b.jpg"], reembed.FROM_THUMBNAIL)]
        assert "Re-embedded from its thumbnail instead." in outcome.failures[0].reason

        assert new.count() == 7
        web1 = new.get_photo("web1", with_vector=True)
        assert web1["photo_description"] == "web 1"
        expected = embedder.embed_images_each([jpeg(1)], model=model_b)[0]
        assert web1["vector"] == pytest.approx(expected.tolist(), abs=1e-6)
        assert store.missing_from(new.table) == []

        # Run again (a redelivered batch): nothing is read, embedded or inserted twice.
        calls = len(embedder.calls)
        again = reembed.reembed_batch(ids, store.for_table(store.base_table), new, bound, POLICY, roots=[root])
        assert again.succeeded == 0 and again.skipped == 8 and not again.failures
        assert [call for call in embedder.calls[calls:] if call[0] != "model_info"] == []
        assert new.count() == 7
