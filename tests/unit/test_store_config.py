"""Settings of the embedded store server."""
from __future__ import annotations

from pathlib import Path

from services.embedded_store.config import StoreSettings


def test_defaults_and_env_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("STORE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STORE_PORT", "9000")
    settings = StoreSettings(_env_file=None)
    assert settings.data_dir == tmp_path
    assert settings.port == 9000
    assert settings.host == "127.0.0.1"
    assert not settings.auth_required


def test_empty_credentials_mean_no_auth_and_a_password_alone_means_default_user(monkeypatch):
    monkeypatch.setenv("STORE_USER", "")
    monkeypatch.setenv("STORE_PASSWORD", "")
    assert not StoreSettings(_env_file=None).auth_required
    monkeypatch.setenv("STORE_PASSWORD", "x")
    assert StoreSettings(_env_file=None).auth_required


def test_command_line_values_override_the_environment(monkeypatch):
    monkeypatch.setenv("STORE_PORT", "9000")
    assert StoreSettings(_env_file=None, port=8124, data_dir=Path("/tmp/x")).port == 8124
