"""`make up` starts only what is missing, `make restart SERVICE=x` restarts one service, and
`make status` prints a table that says what answers and what does not, never a traceback.

The services here are stand-ins (Python's own HTTP server), so no model or store is needed.
"""
import sys

import pytest

from tests.support import free_port, redis_server
from tools.processes import alive, http_ok
from tools.stack import Service, Stack, main
from tools.stack_status import Probes, ServiceRow, gather, index_state, model_names, queue_counts, render


def fake_service(name: str) -> Service:
    port = free_port()
    return Service(name, [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                   ready_url=f"http://127.0.0.1:{port}/")


def stack_of(tmp_path, services: list[Service]) -> Stack:
    stack = Stack(log_dir=tmp_path / "logs", run_dir=tmp_path / "run")
    stack.services = services
    # Redis is not what these tests are about; the real check is covered by the e2e tests.
    stack.ensure_redis = lambda: None
    return stack


@pytest.fixture
def services():
    return [fake_service("alpha"), fake_service("beta")]


def test_up_starts_what_is_missing_and_leaves_the_rest_running(tmp_path, services, capsys):
    stack = stack_of(tmp_path, services)
    try:
        stack.start(timeout=30, leave_running=True)
        first = stack.running()
        assert set(first) == {"alpha", "beta"} and all(http_ok(s.ready_url) for s in services)
        stack.stop(only=["beta"])
        assert not alive(first["beta"]) and alive(first["alpha"])

        # A second `make up`, as a new process reading the pid files.
        again = stack_of(tmp_path, services)
        again.start(timeout=30, leave_running=True)
        second = again.running()
        assert second["alpha"] == first["alpha"]
        assert second["beta"] != first["beta"] and http_ok(services[1].ready_url)
        assert f"alpha     already running (pid {first['alpha']})" in capsys.readouterr().out
    finally:
        stack_of(tmp_path, services).stop()
    assert stack_of(tmp_path, services).running() == {}


def test_up_leaves_alone_a_service_that_already_answers(tmp_path, services, capsys):
    elsewhere = stack_of(tmp_path / "elsewhere", services[:1])
    try:
        elsewhere.start(timeout=30)
        stack = stack_of(tmp_path, services)
        stack.start(timeout=30, leave_running=True)
        assert set(stack.running()) == {"beta"}
        assert "alpha     already answers at" in capsys.readouterr().out
    finally:
        stack_of(tmp_path, services).stop()
        elsewhere.stop()


def test_restart_replaces_one_service_only(tmp_path, services):
    stack = stack_of(tmp_path, services)
    try:
        stack.start(timeout=30, leave_running=True)
        before = stack.running()
        restarter = stack_of(tmp_path, services)
        restarter.restart("alpha", timeout=30)
        after = restarter.running()
        assert after["alpha"] != before["alpha"] and not alive(before["alpha"])
        assert after["beta"] == before["beta"] and http_ok(services[0].ready_url)
        with pytest.raises(SystemExit, match="No service 'gamma' runs here; the services are: alpha, beta"):
            restarter.restart("gamma")
    finally:
        stack_of(tmp_path, services).stop()


def test_restart_needs_a_service_name(capsys):
    assert main(["restart"]) == 2
    assert "make restart SERVICE=name" in capsys.readouterr().err


def test_status_table_shows_what_answers_and_what_does_not():
    rows = [ServiceRow("redis", "running (pid 10)", "ok", "redis://127.0.0.1:6379/0"),
            ServiceRow("api", "stopped", "no answer", "http://127.0.0.1:8000")]
    settings = {"API_URL": "http://127.0.0.1:8000", "EMBEDDER_URL": "http://127.0.0.1:8001",
                "REDIS_URL": "redis://127.0.0.1:6379/0", "STORE_URL": "http://127.0.0.1:8123", "API_KEYS": "k1,k2"}
    asked = []

    def get_json(url, headers=None):
        asked.append((url, headers))
        if url.endswith("/v1/model"):
            return {"name": "openai/clip-vit-base-patch32", "device": "cuda", "dtype": "float16"}
        return {"photos": 1234, "table": {"database": "default", "table": "photos", "dialect": "myscale"}}

    up = Probes(get_json=get_json, queue_counts=lambda url: {"queued": 7, "unacked": 2},
                index_state=lambda url, table, options: {"status": "Built", "type": "SCANN", "fail_reason": None})
    text = render(gather(settings, rows, up))
    lines = text.splitlines()
    assert lines[0].split() == ["service", "state", "health", "address"]
    assert lines[2].split() == ["redis", "running", "(pid", "10)", "ok", "redis://127.0.0.1:6379/0"]
    assert "ingest queue     7 batches waiting, 2 taken and not yet acknowledged" in text
    assert "photos stored    1234 in default.photos (myscale)" in text
    assert "vector index     Built (type SCANN)" in text
    assert "embedder model   openai/clip-vit-base-patch32 on cuda in float16" in text
    assert ("http://127.0.0.1:8000/v1/stats", {"X-API-Key": "k1"}) in asked

    down = Probes(get_json=lambda url, headers=None: None, queue_counts=lambda url: None,
                  index_state=lambda url, table, options: None)
    text = render(gather(settings, rows, down))
    for line in ("ingest queue     unreachable (Redis)", "photos stored    unreachable (gateway)",
                 "vector index     unreachable (store)", "embedder model   unreachable (embedder)"):
        assert line in text


def test_status_names_a_separate_text_tower_and_its_languages():
    clip = {"name": "openai/clip-vit-base-patch32", "device": "cuda", "dtype": "float16"}
    multilingual = "sentence-transformers/clip-ViT-B-32-multilingual-v1"
    assert model_names(clip) == "openai/clip-vit-base-patch32"  # an older embedder: no text tower named
    assert model_names(clip | {"text_model": clip["name"], "languages": ["en"]}) == "openai/clip-vit-base-patch32"
    both = clip | {"text_model": multilingual, "languages": [f"l{n}" for n in range(50)]}
    assert model_names(both) == f"openai/clip-vit-base-patch32 + text: {multilingual} (50 languages)"
    assert model_names(both | {"languages": None}) == f"openai/clip-vit-base-patch32 + text: {multilingual}"
    status = {"services": [], "queue": None, "stats": None, "index": None, "model": both}
    assert f"embedder model   openai/clip-vit-base-patch32 + text: {multilingual} (50 languages) on cuda in " \
           "float16" in render(status)


def test_status_probes_of_dead_addresses_say_unreachable_without_a_traceback(capfd):
    dead = free_port()
    assert queue_counts(f"redis://127.0.0.1:{dead}/0") is None
    assert index_state(f"http://127.0.0.1:{dead}", "photos", {}) is None
    assert "Traceback" not in capfd.readouterr().err


def test_status_counts_queued_and_unacknowledged_batches(tmp_path):
    import redis

    with redis_server(tmp_path) as url:
        client = redis.Redis.from_url(url)
        client.rpush("ingest", "a", "b", "c")
        client.hset("unacked", "tag-1", "x")
        assert queue_counts(url) == {"queued": 3, "unacked": 1}


def test_status_command_prints_the_table_when_nothing_runs(tmp_path, monkeypatch, capsys):
    for name in ("STORE_URL", "EMBEDDER_URL", "API_URL"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("UI_PORT", str(free_port()))
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["service", "state", "health", "address"]
    assert "no answer" in out and "photos stored    unreachable (gateway)" in out
