"""docker-compose.yml, as Compose itself reads it, agrees with the code it deploys.

Each profile is resolved by Debian's `docker-compose config` (.ci/run installs it); then every variable
passed to a service must be a setting that service reads, every setting must be passed (and listed in
.env.example), and every command must name a module or factory that exists in this repository.
"""
import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import AliasChoices

from services.api.config import ApiSettings
from services.embedded_store.config import StoreSettings
from services.embedder.config import EmbedderSettings
from services.worker.config import WorkerSettings
from ui.config import UISettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"store": StoreSettings, "embedder": EmbedderSettings, "worker": WorkerSettings,
            "api": ApiSettings, "ui": UISettings}
# Fixed by the service's command line inside its container (its address and data folder).
SET_BY_COMMAND = {"store": {"STORE_HOST", "STORE_PORT", "STORE_DATA_DIR"}, "ui": {"UI_HOST", "UI_PORT"}}
PROFILES = {"embedded": "store", "clickhouse": "clickhouse", "myscale": "myscale"}
LONG_RUNNING = {"redis", "embedder", "worker", "api", "ui"}


def env_names(settings_class) -> set[str]:
    """The environment variables a Settings class reads: its prefix + field name, or the shared alias."""
    prefix = settings_class.model_config.get("env_prefix", "")
    names = set()
    for name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def compose_config(tmp_path, *args: str) -> dict:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed (Debian: apt-get install docker-compose); .ci/run installs it")
    # Copies, away from the project's .env (compose reads the .env beside the file).
    for name in ("docker-compose.yml", "docker-compose.gpu.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    result = subprocess.run([binary, *args, "config"], env={"API_KEYS": "k", "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("compose")
    resolved = {"default": compose_config(tmp)}
    for profile in PROFILES:
        resolved[profile] = compose_config(tmp, "--profile", profile)
    resolved["gpu"] = compose_config(tmp, "-f", "docker-compose.yml", "-f", "docker-compose.gpu.yml")
    return resolved


def test_every_passed_variable_is_a_setting_of_that_service_and_every_setting_is_passed(configs):
    for config in configs.values():
        for name, settings_class in SETTINGS.items():
            passed = set(config["services"][name]["environment"])
            known = env_names(settings_class)
            assert passed <= known, f"{name} is passed variables it does not read: {sorted(passed - known)}"
            missing = known - passed - SET_BY_COMMAND.get(name, set())
            assert not missing, f"{name} reads settings compose does not pass: {sorted(missing)}"


def test_every_setting_is_documented_in_env_example():
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    for name, settings_class in SETTINGS.items():
        missing = env_names(settings_class) - documented
        assert not missing, f".env.example does not list {name}'s {sorted(missing)}"


def _python_module_exists(module: str) -> bool:
    path = ROOT / Path(*module.split("."))
    return (path / "__main__.py").exists() or path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _defines(module: str, name: str) -> bool:
    path = ROOT / Path(*module.split("."))
    source = (path / "__init__.py") if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(source.read_text())
    return any(isinstance(node, ast.FunctionDef | ast.Assign) and
               (getattr(node, "name", None) == name or any(getattr(t, "id", None) == name for t in getattr(node, "targets", [])))
               for node in tree.body)


def test_every_command_names_code_that_exists(configs):
    checked = 0
    for config in configs.values():
        for name, service in config["services"].items():
            command = service.get("command") or []
            if "build" not in service:
                continue
            assert command[:2] == ["python", "-m"], f"{name}: {command}"
            module = command[2]
            if module == "uvicorn":
                factory = command[command.index("--factory") + 1]
                target, _, function = factory.partition(":")
                assert _python_module_exists(target) and _defines(target, function), f"{name}: {factory}"
            elif module == "celery":
                app = command[command.index("-A") + 1]
                assert _python_module_exists(app) and _defines(app, "app"), f"{name}: {app}"
            else:
                assert (ROOT / Path(*module.split(".")) / "__main__.py").exists(), f"{name}: {module}"
            checked += 1
    assert checked >= 5 * len(configs)


def test_long_running_services_are_health_checked_and_waited_for(configs):
    for config in configs.values():
        services = config["services"]
        for name in LONG_RUNNING | set(PROFILES.values()):
            assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
        for name, service in services.items():
            for dependency, condition in (service.get("depends_on") or {}).items():
                assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"
        assert "container_name" not in services["worker"]
        assert "celery" in " ".join(services["worker"]["healthcheck"]["test"])
        assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
        assert "--concurrency" not in services["worker"]["command"]


def test_each_store_profile_answers_as_the_store_host(configs):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for profile, service in PROFILES.items():
        assert compose[service]["profiles"] == [profile]
        if service != "store":
            assert "store" in compose[service]["networks"]["default"]["aliases"]
    assert compose["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert compose["myscale"]["image"].startswith("myscale/myscaledb:")
    assert configs["default"]["services"]["api"]["environment"]["STORE_URL"] == "http://store:8123"


def test_redis_keeps_the_queue_across_restarts_and_data_lives_in_named_volumes(configs):
    config = configs["default"]
    command = config["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert {"redis-data", "store-data", "model-cache", "clickhouse-data", "myscale-data"} <= set(config["volumes"])


def test_the_gpu_override_reserves_a_gpu_for_the_embedder_only(configs):
    gpu = configs["gpu"]["services"]
    devices = gpu["embedder"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "deploy" not in configs["default"]["services"]["embedder"]
    assert all("deploy" not in service for name, service in gpu.items() if name != "embedder")


def test_each_service_builds_its_own_target_and_only_the_embedder_pulls_torch():
    from tools.image_sizes import closure

    dockerfile = (ROOT / "Dockerfile").read_text()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in SETTINGS:
        assert compose[name]["build"]["target"] == name
        assert re.search(rf"^FROM base AS {name}$", dockerfile, re.MULTILINE)
        assert re.search(rf'pip install .*"\.\[{name}\]"', dockerfile)
    assert "torch" in closure("embedder")
    for extra in ("api", "ui", "store", "worker"):
        assert "torch" not in closure(extra), f"the {extra} image would install torch"
