"""Settings that every part reads the same way (docs/architecture.md, "Who owns which setting").

Each service subclasses `CommonSettings` with its own env prefix (`EMBEDDER_`, `API_`,
`WORKER_`, `UI_`, `STORE_`); the shared names below are read without a prefix, through
aliases, so `STORE_URL` means the same thing to the gateway and to a worker.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = "openai/clip-vit-base-patch32"
# The multilingual text tower EMBEDDER_TEXT_MODEL=auto pairs with an image model, by hub name: queries
# in 50+ languages on the image vectors already stored (services/embedder/README.md, "Text towers").
AUTO_TEXT_MODELS = {
    "openai/clip-vit-base-patch32": "sentence-transformers/clip-ViT-B-32-multilingual-v1",
}


def hub_allow_patterns(repo_files: list[str]) -> list[str]:
    """The files of a Hugging Face model repository worth downloading: configs, vocabularies, SentencePiece
    tokenizers (`*.model`) and one copy of the weights (safetensors when the repository has them, else the
    PyTorch files), never the TensorFlow, Flax, ONNX or OpenVINO copies. A sentence-transformers Dense
    layer's weights sit in `2_Dense/`, which the patterns match too. Shared by `make demo`'s download and
    the embedder's first start."""
    weights = ["*.safetensors"] if any(f.endswith(".safetensors") for f in repo_files) else ["*.bin"]
    return ["*.json", "*.txt", "*.model", *weights]


def _alias(name: str) -> AliasChoices:
    return AliasChoices(name)


def split_csv(value: object) -> list[str]:
    """Accept a comma-separated string or a list; drop blanks."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(part).strip() for part in value if str(part).strip()]


class CommonSettings(BaseSettings):
    # An empty variable means "the default": docker-compose.yml passes every setting as `${NAME:-}`.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True)

    embedder_model: str = Field(DEFAULT_MODEL, validation_alias=_alias("EMBEDDER_MODEL"))
    embedder_url: str = Field("http://127.0.0.1:8001", validation_alias=_alias("EMBEDDER_URL"))
    store_url: str = Field("http://127.0.0.1:8123", validation_alias=_alias("STORE_URL"))
    store_table: str = Field("photos", validation_alias=_alias("STORE_TABLE"))
    # Search options of the store access (services/photostore/); None keeps its measured defaults.
    store_exact_below: int | None = Field(None, ge=0, validation_alias=_alias("STORE_EXACT_BELOW"))
    store_search_width: int | None = Field(None, ge=0, validation_alias=_alias("STORE_SEARCH_WIDTH"))
    store_index_type: str | None = Field(None, validation_alias=_alias("STORE_INDEX_TYPE"))
    # A self-managed ClickHouse cluster's name: replicated, sharded tables (services/photostore/cluster.py).
    # Empty for one server, ClickHouse Cloud and MyScale Cloud (README: "Running on a cluster").
    store_cluster: str = Field("", validation_alias=_alias("STORE_CLUSTER"))
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_alias("REDIS_URL"))
    api_url: str = Field("http://127.0.0.1:8000", validation_alias=_alias("API_URL"))
    # Kept as the raw comma-separated text; use `api_key_list` / `fetch_allow_list`.
    api_keys: str = Field("", validation_alias=_alias("API_KEYS"))
    fetch_allow_hosts: str = Field("", validation_alias=_alias("FETCH_ALLOW_HOSTS"))
    # Folders the workers may read photos from directly (comma-separated; services/common/library.py).
    library_roots: str = Field("", validation_alias=_alias("LIBRARY_ROOTS"))

    @field_validator("embedder_url", "store_url", "api_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.strip().rstrip("/")

    def store_options(self) -> dict[str, object]:
        """Keyword arguments for PhotoStore, so `.env` and the environment tune every reader alike."""
        return {"exact_below": self.store_exact_below, "search_width": self.store_search_width,
                "index_type": self.store_index_type, "cluster": self.store_cluster}

    @property
    def embedder_urls(self) -> list[str]:
        return [url.rstrip("/") for url in split_csv(self.embedder_url)]

    @property
    def api_key_list(self) -> list[str]:
        return split_csv(self.api_keys)

    @property
    def fetch_allow_list(self) -> list[str]:
        return split_csv(self.fetch_allow_hosts)

    @property
    def library_root_list(self) -> list[Path]:
        from services.common.library import parse_roots

        return parse_roots(split_csv(self.library_roots))


class HttpSettings(BaseSettings):
    """The header limits of uvicorn's guarded protocol (services/common/http_protocol.py), shared by the
    gateway and the embedder. Not part of a service's settings: uvicorn builds the protocol itself, outside
    any app, so these are read on their own, once per process, from the environment or `.env`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True, env_ignore_empty=True)

    # Request headers (or a connection that sends nothing) taking longer get 408 and are closed.
    header_timeout_s: float = Field(10.0, gt=0, validation_alias=_alias("HTTP_HEADER_TIMEOUT_S"))
    # The request line and headers past this many bytes get 431.
    max_header_bytes: int = Field(64 * 1024, gt=0, validation_alias=_alias("HTTP_MAX_HEADER_BYTES"))


@lru_cache
def get_http_settings() -> HttpSettings:
    return HttpSettings()
