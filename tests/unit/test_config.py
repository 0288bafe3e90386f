"""Shared settings: one name means the same thing to every part, from the environment or `.env`."""
import subprocess
import sys
from pathlib import Path

from services.api.config import ApiSettings
from services.photostore import PhotoStore
from services.worker.config import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]


def test_store_search_options_from_dotenv_reach_every_store_reader(tmp_path, monkeypatch):
    for name in ("STORE_SEARCH_WIDTH", "STORE_EXACT_BELOW", "STORE_INDEX_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("STORE_SEARCH_WIDTH=640\nSTORE_EXACT_BELOW=1000\nSTORE_INDEX_TYPE=SCANN\n")
    for settings in (ApiSettings(), WorkerSettings()):
        store = PhotoStore("http://127.0.0.1:1", "photos", **settings.store_options())
        assert (store.search_width, store.exact_below, store.index_type) == (640, 1000, "SCANN")


def test_unset_store_options_keep_the_measured_defaults(tmp_path, monkeypatch):
    for name in ("STORE_SEARCH_WIDTH", "STORE_EXACT_BELOW", "STORE_INDEX_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    store = PhotoStore("http://127.0.0.1:1", "photos", **ApiSettings().store_options())
    assert (store.search_width, store.exact_below, store.index_type) == (256, 50_000, "MSTG")


def test_embedder_url_list_spreads_over_several():
    settings = ApiSettings(EMBEDDER_URL="http://a:8001/, http://b:8001")
    assert settings.embedder_urls == ["http://a:8001", "http://b:8001"]


def test_the_index_command_uses_the_store_of_dotenv(tmp_path, monkeypatch, capsys):
    from services import photostore as store

    for name in ("STORE_URL", "STORE_TABLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("STORE_URL=http://127.0.0.1:9/default\nSTORE_TABLE=my_photos\n")
    seen = {}

    def refuse(self, *args, **kwargs):
        seen.update(url=self.url, table=self.table)
        raise store.StoreUnavailable("down")

    monkeypatch.setattr(store.PhotoStore, "index_status", refuse)
    assert store.main(["index", "status"]) == 1
    assert seen == {"url": "http://127.0.0.1:9/default", "table": "my_photos"}


def _protocol_limits(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """The header limits uvicorn's guarded protocol takes, in a fresh process (uvicorn imports the class
    itself, outside any app), run in `tmp_path` with only `env` set."""
    code = ("from services.common.http_protocol import GuardedHttpToolsProtocol as P; "
            "print(P.header_timeout_s, P.max_header_bytes)")
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env})


def test_the_http_protocol_limits_are_settings_read_from_the_environment_or_dotenv(tmp_path):
    assert _protocol_limits(tmp_path).stdout.split() == ["10.0", "65536"]
    # docker-compose passes an unset setting as an empty variable: that means the default.
    assert _protocol_limits(tmp_path, HTTP_HEADER_TIMEOUT_S="", HTTP_MAX_HEADER_BYTES="").stdout.split() == \
        ["10.0", "65536"]
    assert _protocol_limits(tmp_path, HTTP_HEADER_TIMEOUT_S="2.5").stdout.split() == ["2.5", "65536"]
    (tmp_path / ".env").write_text("HTTP_MAX_HEADER_BYTES=8192\n")
    assert _protocol_limits(tmp_path).stdout.split() == ["10.0", "8192"]


def test_a_bad_http_protocol_limit_names_the_setting(tmp_path):
    failed = _protocol_limits(tmp_path, HTTP_HEADER_TIMEOUT_S="soon")
    assert failed.returncode != 0 and "validation error" in failed.stderr
    assert "HTTP_HEADER_TIMEOUT_S\n  Input should be a valid number" in failed.stderr
