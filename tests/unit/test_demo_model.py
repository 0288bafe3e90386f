"""`make demo` downloads the model itself (huggingface_hub's snapshot_download, with its progress bars)
before the embedder starts: one copy of the weights, nothing for a local folder."""
from __future__ import annotations

import huggingface_hub
import pytest

from tools.download import DownloadError, download_model, download_models


@pytest.fixture
def hub(monkeypatch):
    calls: dict = {"files": []}

    class FakeApi:
        def list_repo_files(self, name):
            return calls["files"]

    def snapshot(name, allow_patterns):
        calls["snapshot"] = (name, allow_patterns)
        calls.setdefault("names", []).append(name)
        return f"/cache/{name}"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    return calls


def test_safetensors_are_preferred_over_the_other_copies(hub):
    hub["files"] = ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "vocab.json"]
    assert download_model("openai/clip-vit-base-patch32") == "/cache/openai/clip-vit-base-patch32"
    assert hub["snapshot"] == ("openai/clip-vit-base-patch32", ["*.json", "*.txt", "*.model", "*.safetensors"])


def test_the_pytorch_file_when_there_are_no_safetensors(hub):
    hub["files"] = ["config.json", "pytorch_model.bin", "flax_model.msgpack"]
    download_model("some/clip")
    assert hub["snapshot"][1] == ["*.json", "*.txt", "*.model", "*.bin"]


def test_a_local_model_folder_is_not_downloaded(hub, tmp_path):
    assert download_model(str(tmp_path)) is None and "snapshot" not in hub


def test_a_failed_model_download_is_a_sentence(hub, monkeypatch):
    def broken(name, allow_patterns):
        raise OSError("connection reset")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", broken)
    with pytest.raises(DownloadError, match="connection reset.*again resumes it"):
        download_model("some/clip")


def test_the_demo_downloads_the_multilingual_tower_auto_pairs_with_the_default_model(hub):
    hub["files"] = ["config.json", "model.safetensors"]
    download_models("openai/clip-vit-base-patch32", "auto")
    assert hub["names"] == ["openai/clip-vit-base-patch32", "sentence-transformers/clip-ViT-B-32-multilingual-v1"]


def test_a_model_without_a_published_tower_or_with_its_own_downloads_alone(hub):
    hub["files"] = ["config.json", "model.safetensors"]
    download_models("google/siglip2-base-patch16-224", "auto")
    download_models("openai/clip-vit-base-patch32", "same")
    assert hub["names"] == ["google/siglip2-base-patch16-224", "openai/clip-vit-base-patch32"]


def test_an_mclip_tower_brings_its_base_models_config(hub, monkeypatch, tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "M-CLIP", "modelBase": "xlm-roberta-large"}')
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda name, allow_patterns: str(tmp_path))
    fetched = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, filename: fetched.append((repo, filename)))
    hub["files"] = ["config.json", "pytorch_model.bin"]
    download_model("M-CLIP/XLM-Roberta-Large-Vit-B-32")
    assert fetched == [("xlm-roberta-large", "config.json")]
