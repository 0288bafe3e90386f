"""The services that hostile requests are thrown at, each its own process on a free port.

The embedded store, the embedder (tiny random CLIP) and the gateway run as real processes with a
private Redis; a few photos go into the store through PhotoStore directly, so that a test can check
that nothing stored was lost. No worker runs: ingestion jobs are only queued.

`FETCH_ALLOW_HOSTS` is left empty, so the gateway refuses every loopback, private and metadata
address for `image_url`; the query limits are made small so that "over the limit" is cheap to send.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.common.embedder_client import EmbedderClient
from services.common.schemas import PhotoRecord
from services.photostore import PhotoStore
from tests.support import free_port, redis_server, service_process
from tools.stack import GUARDED_HTTP

KEY = "hostile-key"
TABLE = "photos_hostile"
PHOTOS = 6
# The gateway's query image limit; a query body may hold 4/3 of it (base64) plus 256 KiB.
API_MAX_IMAGE_BYTES = 256 * 1024
# How long request headers, and then a request body, may take to arrive (gateway and embedder): short, to bound the slow senders.
BODY_TIMEOUT_S = 2
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class HostileStack:
    urls: dict[str, str]          # name -> base URL: store, embedder, api
    pids: dict[str, int]          # name -> process id, for RSS
    processes: dict               # name -> Popen, to check that none died
    log_dir: Path

    def store(self) -> PhotoStore:
        return PhotoStore(self.urls["store"], TABLE)


def _seed(store_url: str, embedder_url: str) -> None:
    with EmbedderClient(embedder_url) as embedder:
        info = embedder.model_info()
        texts = [f"photo number {i}" for i in range(PHOTOS)]
        vectors = embedder.embed_texts(texts)
    store = PhotoStore(store_url, TABLE)
    try:
        store.ensure_table(info["dim"], info["name"])
        records = [PhotoRecord(photo_id=f"seed-{i}", photo_image_url=f"http://127.0.0.1:9/seed-{i}.jpg",
                               photo_description=text, photo_location_country="Spain" if i % 2 else "Peru")
                   for i, text in enumerate(texts)]
        store.insert_photos(records, vectors)
    finally:
        store.close()


@pytest.fixture(scope="session")
def hostile_stack(tmp_path_factory, tiny_model_dir) -> Iterator[HostileStack]:
    workdir = tmp_path_factory.mktemp("hostile")
    log_dir = ROOT / "test-output" / "hostile-logs"
    ports = {name: free_port() for name in ("store", "embedder", "api")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    with redis_server(workdir) as redis_url, ExitStack() as stack:
        env = {**os.environ, "STORE_URL": urls["store"], "STORE_TABLE": TABLE, "EMBEDDER_URL": urls["embedder"],
               "EMBEDDER_MODEL": str(tiny_model_dir), "EMBEDDER_DEVICE": "cpu", "EMBEDDER_TORCH_THREADS": "1",
               "REDIS_URL": redis_url, "API_KEYS": KEY, "FETCH_ALLOW_HOSTS": "",
               "API_MAX_IMAGE_BYTES": str(API_MAX_IMAGE_BYTES),
               "API_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S), "HTTP_HEADER_TIMEOUT_S": str(BODY_TIMEOUT_S), "EMBEDDER_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
               # The embedder's body limit is max_items x max_image_bytes as base64 (12 MiB here).
               "EMBEDDER_MAX_ITEMS": "8", "EMBEDDER_MAX_IMAGE_BYTES": str(1024 * 1024), "STORE_MAX_BODY_BYTES": str(4 * 1024 * 1024),
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        uvicorn = ["-m", "uvicorn", "--factory", "--http", GUARDED_HTTP, "--host", "127.0.0.1", "--no-access-log",
                   "--port"]
        commands = {
            "store": (["-m", "services.embedded_store", "--host", "127.0.0.1", "--port", str(ports["store"]),
                       "--data-dir", str(workdir / "store")], f"{urls['store']}/ping"),
            "embedder": ([*uvicorn, str(ports["embedder"]), "services.embedder.main:create_app"],
                         f"{urls['embedder']}/readyz"),
            "api": ([*uvicorn, str(ports["api"]), "services.api.main:create_app"], f"{urls['api']}/healthz"),
        }
        processes = {name: stack.enter_context(service_process(args, ready, log_dir / f"{name}.log", env=env))
                     for name, (args, ready) in commands.items()}
        _seed(urls["store"], urls["embedder"])
        yield HostileStack(urls=urls, pids={n: p.pid for n, p in processes.items()}, processes=processes,
                           log_dir=log_dir)
