"""The deployment files parse and agree with the services' contracts."""
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tools.stack import build_services, settings_from_env

ROOT = Path(__file__).resolve().parents[2]


def test_docker_compose_declares_every_service_with_its_port():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "store", "clickhouse", "myscale", "embedder", "worker", "api", "ui"}
    assert "8000:8000" in services["api"]["ports"]
    assert "7860:7860" in services["ui"]["ports"]
    assert services["api"]["environment"]["STORE_URL"] == "${STORE_URL:-http://store:8123}"


def test_docker_compose_config_accepts_the_file(tmp_path):
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed (Debian: apt-get install docker-compose); .ci/run installs it")
    # A copy, away from the project's .env (compose reads the .env beside the file).
    compose = tmp_path / "docker-compose.yml"
    shutil.copy(ROOT / "docker-compose.yml", compose)
    result = subprocess.run([binary, "-f", str(compose), "config", "-q"],
                            env={"API_KEYS": "k", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    missing_key = subprocess.run([binary, "-f", str(compose), "config", "-q"],
                                 env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, cwd=tmp_path)
    assert missing_key.returncode != 0 and "API_KEYS" in missing_key.stderr


def test_stack_starts_local_services_and_skips_remote_ones():
    local = {s.name for s in build_services(settings_from_env({}))}
    assert {"store", "embedder", "worker", "api", "ui"} <= local
    remote = build_services(settings_from_env({
        "STORE_URL": "https://user:pw@cluster.myscale.com:443/default",
        "EMBEDDER_URL": "http://gpu-box:8001",
    }))
    names = {s.name for s in remote}
    assert "store" not in names and "embedder" not in names
    api = next(s for s in remote if s.name == "api")
    assert "services.api.main:create_app" in api.command


def test_readme_first_screen_gives_demo_and_test():
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:12])
    assert "make demo" in first_screen and "make test" in first_screen
    assert "STORE_URL" in (ROOT / "README.md").read_text()
