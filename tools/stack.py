"""Run every service as its own local process: `make up` / `down` / `restart` / `status`, and the e2e tests.

`make up` starts what is not running and leaves the rest alone; `make restart SERVICE=name` stops and
starts one service; `make status` prints the table of tools/stack_status.py.

Ports and addresses come from the same settings the services read (STORE_URL, EMBEDDER_URL,
API_URL, REDIS_URL, UI_PORT), so there is one source of truth. A service whose URL points at
another machine (a MyScale or ClickHouse server, a GPU embedder elsewhere) is not started here.
Each process logs to its own file under the log folder; pids go under the run folder.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from tools.processes import alive as _alive
from tools.processes import http_ok, port_open
from tools.processes import signal_group as _signal_group
from tools.stack_status import ServiceRow, gather, readiness, render, service_rows

ROOT = Path(__file__).resolve().parents[1]
# uvicorn's protocol with a deadline on request headers (slow-loris senders): services/common/http_protocol.py.
GUARDED_HTTP = "services.common.http_protocol:GuardedHttpToolsProtocol"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
# What `make demo` uses offline (tools/demo.py): named when the default model cannot be loaded.
OFFLINE_DEMO_MODEL = ROOT / "data" / "models" / "clip-random-b32"
OFFLINE_DEMO_TABLE = "photos_random_demo"
# Called with each process a Stack starts: a test run records them here (tests/support.py), to end them
# if it is interrupted. `make up` adds none: its services are meant to outlive it.
SPAWN_HOOKS: list[Callable[[subprocess.Popen], object]] = []


class ServiceFailed(RuntimeError):
    """A service answered that it will never be ready: waiting longer would not help."""


@dataclass
class Service:
    name: str
    command: list[str]
    ready_url: str | None = None
    ready_log_text: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parsed = urlparse(url if "//" in url else f"//{url}")
    return parsed.hostname or "127.0.0.1", parsed.port or default_port


def _is_local(host: str) -> bool:
    return host in LOCAL_HOSTS


def model_hint() -> str:
    """What to set when the embedder cannot load EMBEDDER_MODEL.

    After an offline `make demo`, `make up` does not switch to the demo's random-weight model by itself:
    a person who set up a real model would get meaningless results without having chosen them, and the
    demo's table would stand in for theirs. It names the two settings the demo used instead."""
    if (OFFLINE_DEMO_MODEL / "RANDOM_WEIGHTS").exists():
        model = OFFLINE_DEMO_MODEL.relative_to(ROOT) if OFFLINE_DEMO_MODEL.is_relative_to(ROOT) else OFFLINE_DEMO_MODEL
        return (f"To run the offline demo's random-weight model again, run `EMBEDDER_MODEL={model} "
                f"STORE_TABLE={OFFLINE_DEMO_TABLE} make up` (or put both settings in .env); for real results, "
                "set EMBEDDER_MODEL to a CLIP folder or a model this machine has downloaded.")
    return ("Set EMBEDDER_MODEL (in .env) to a CLIP folder or a model this machine has downloaded, or run "
            "`make demo-offline` to try the stack on a random-weight model.")


def _dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def settings_from_env(env: dict[str, str]) -> dict[str, str]:
    """The stack's view of the settings: process environment over `.env` over defaults."""
    merged = {
        "STORE_URL": "http://127.0.0.1:8123",
        "EMBEDDER_URL": "http://127.0.0.1:8001",
        "API_URL": "http://127.0.0.1:8000",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "UI_PORT": "7860",
        "STORE_DATA_DIR": str(ROOT / "data" / "store"),
        "WORKER_CONCURRENCY": "2",
    }
    merged.update(_dotenv(ROOT / ".env"))
    merged.update({k: v for k, v in env.items() if v is not None})
    return merged


def build_services(settings: dict[str, str], python: str = sys.executable) -> list[Service]:
    """The processes to start, in dependency order, skipping those that live elsewhere."""
    services: list[Service] = []
    if settings.get("SAMPLES_DIR"):
        # The offline demo's photos, served the way a photo CDN would serve them.
        samples_port = settings.get("SAMPLES_PORT", "8090")
        services.append(Service(
            "samples",
            [python, "-m", "tools.sample_data", "serve", settings["SAMPLES_DIR"], "--port", samples_port],
            ready_url=f"http://127.0.0.1:{samples_port}/photos.tsv",
        ))
    store_host, store_port = _host_port(settings["STORE_URL"], 8123)
    if _is_local(store_host) and settings.get("STORE_EMBEDDED", "1") != "0":
        services.append(Service(
            "store",
            [python, "-m", "services.embedded_store", "--host", store_host, "--port", str(store_port),
             "--data-dir", settings["STORE_DATA_DIR"]],
            ready_url=f"http://{store_host}:{store_port}/ping",
        ))
    embedder_url = settings["EMBEDDER_URL"].split(",")[0]
    embedder_host, embedder_port = _host_port(embedder_url, 8001)
    if _is_local(embedder_host):
        services.append(Service(
            "embedder",
            [python, "-m", "uvicorn", "--factory", "services.embedder.main:create_app", "--http", GUARDED_HTTP,
             "--host", embedder_host, "--port", str(embedder_port), "--no-access-log"],
            ready_url=f"http://{embedder_host}:{embedder_port}/readyz",
        ))
    services.append(Service(
        "worker",
        [python, "-m", "celery", "-A", "services.worker.celery_app", "worker", "--loglevel", "INFO",
         "--concurrency", settings["WORKER_CONCURRENCY"], "-Q", "ingest", "-n", f"ingest-{os.getpid()}@%h"],
        ready_log_text="ready.",
    ))
    api_host, api_port = _host_port(settings["API_URL"], 8000)
    services.append(Service(
        "api",
        [python, "-m", "uvicorn", "--factory", "services.api.main:create_app", "--http", GUARDED_HTTP,
         "--host", api_host, "--port", str(api_port), "--no-access-log",
         # Only API_TRUSTED_PROXIES may name the client (services/api/main.py), not uvicorn's own default.
         "--no-proxy-headers"],
        ready_url=f"http://{api_host}:{api_port}/readyz",
    ))
    ui_port = int(settings["UI_PORT"])
    services.append(Service(
        "ui",
        [python, "-m", "ui", "--host", "127.0.0.1", "--port", str(ui_port)],
        ready_url=f"http://127.0.0.1:{ui_port}/",
    ))
    return services


class Stack:
    """Start and stop a set of services as separate processes, each logging to its own file."""

    def __init__(self, env: dict[str, str] | None = None, log_dir: Path | None = None,
                 run_dir: Path | None = None, only: list[str] | None = None):
        self.settings = settings_from_env(dict(os.environ) | (env or {}))
        self.env = dict(os.environ) | {k: v for k, v in self.settings.items()} | (env or {})
        self.log_dir = Path(log_dir or ROOT / "logs")
        self.run_dir = Path(run_dir or ROOT / "run")
        self.services = [s for s in build_services(self.settings) if not only or s.name in only]
        self.processes: dict[str, subprocess.Popen] = {}

    # -- redis -------------------------------------------------------------------------------
    def ensure_redis(self) -> Service | None:
        """Use the Redis at REDIS_URL; start a local one if none answers and we can."""
        host, port = _host_port(self.settings["REDIS_URL"], 6379)
        if port_open(host, port):
            return None
        if not _is_local(host):
            raise SystemExit(f"Redis at {self.settings['REDIS_URL']} does not answer; start it or fix REDIS_URL.")
        binary = shutil.which("redis-server")
        if not binary:
            raise SystemExit(
                f"No Redis answers at {self.settings['REDIS_URL']} and no redis-server is installed. "
                "Install one (Debian: apt-get install redis-server; macOS: brew install redis) "
                "or point REDIS_URL at a running Redis."
            )
        # The broker's queue and the batches workers hold must survive a restart: an append-only file.
        data = Path(self.settings["STORE_DATA_DIR"]).parent / "redis"
        data.mkdir(parents=True, exist_ok=True)
        service = Service("redis", [binary, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "yes",
                                    "--appendfsync", "everysec", "--dir", str(data)])
        self._spawn(service)
        self._wait(service, lambda: port_open(host, port), timeout=20)
        return service

    # -- processes ---------------------------------------------------------------------------
    def _log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _spawn(self, service: Service) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self._log_path(service.name), "ab")  # noqa: SIM115 (the child owns it)
        log.write(f"\n--- starting {service.name}: {' '.join(service.command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            service.command, cwd=ROOT, env=self.env | service.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        for hook in SPAWN_HOOKS:
            hook(process)
        self.processes[service.name] = process
        (self.run_dir / f"{service.name}.pid").write_text(str(process.pid))
        return process

    def _tail(self, name: str, lines: int = 30) -> str:
        path = self._log_path(name)
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _wait(self, service: Service, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        process = self.processes.get(service.name)
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(
                    f"{service.name} exited with code {process.returncode} while starting; "
                    f"last lines of {self._log_path(service.name)}:\n{self._tail(service.name)}"
                )
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"{service.name} was not ready after {timeout:.0f} s; last lines of "
            f"{self._log_path(service.name)}:\n{self._tail(service.name)}"
        )

    def _ready_check(self, service: Service):
        if service.ready_url:
            def answers_ready() -> bool:
                ready, failure = readiness(service.ready_url)
                if failure is not None:
                    hint = f" {model_hint()}" if service.name == "embedder" else ""
                    raise ServiceFailed(f"{service.name} will not become ready: {failure.rstrip('.')}.{hint}")
                return ready
            return answers_ready
        if service.ready_log_text:
            path = self._log_path(service.name)
            start = path.stat().st_size if path.exists() else 0

            def log_says_ready() -> bool:
                if not path.exists():
                    return False
                with open(path, "rb") as handle:
                    handle.seek(start)
                    return service.ready_log_text.encode() in handle.read()
            return log_says_ready
        return lambda: True

    def start(self, timeout: float = 120, leave_running: bool = False) -> None:
        """Start every service, each once the previous one is ready.

        With `leave_running`, a service whose process is still alive, or whose health URL already
        answers, is left alone: `make up` then starts only what is missing. On a failure, only what
        this call started is stopped again.
        """
        redis = self.ensure_redis()
        started = ["redis"] if redis else []
        if redis:
            print(f"started redis-server for {self.settings['REDIS_URL']} (log {self._log_path('redis')})")
        alive = self.running() if leave_running else {}
        try:
            for service in self.services:
                if service.name in alive:
                    print(f"{service.name:9s} already running (pid {alive[service.name]})")
                    continue
                if leave_running and service.ready_url and http_ok(service.ready_url):
                    print(f"{service.name:9s} already answers at {service.ready_url} (not started by make up)")
                    continue
                # Counted before it is ready: one that never gets there is stopped with the rest.
                started.append(service.name)
                self._start_one(service, timeout)
        except BaseException:  # Ctrl-C too: a `make up` that is interrupted leaves nothing half started
            self.stop(only=started)
            raise

    def _start_one(self, service: Service, timeout: float) -> None:
        ready = self._ready_check(service)
        self._spawn(service)
        self._wait(service, ready, timeout)
        print(f"{service.name:9s} up  (pid {self.processes[service.name].pid}, log {self._log_path(service.name)})")

    def restart(self, name: str, timeout: float = 120) -> None:
        """Stop one service (if it runs) and start it again, leaving the others alone."""
        service = next((s for s in self.services if s.name == name), None)
        if service is None:
            names = ", ".join(s.name for s in self.services)
            raise SystemExit(f"No service {name!r} runs here; the services are: {names}.")
        self.stop(only=[name])
        self._start_one(service, timeout)

    def stop(self, timeout: float = 15, only: list[str] | None = None) -> None:
        """SIGTERM every process group we started (newest first), then SIGKILL what lingers."""
        pids = [(name, pid) for name, pid in self._known_pids() if only is None or name in only]
        for _, pid in reversed(pids):
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, pid in reversed(pids):
            while _alive(pid) and time.monotonic() < deadline:
                process = self.processes.get(name)
                if process is not None:
                    try:
                        process.wait(timeout=0.2)
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    time.sleep(0.2)
            if _alive(pid):
                _signal_group(pid, signal.SIGKILL)
            (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
            self.processes.pop(name, None)

    def _known_pids(self) -> list[tuple[str, int]]:
        pids: dict[str, int] = {name: process.pid for name, process in self.processes.items()}
        order = ["redis"] + [s.name for s in self.services] + ["samples"]
        if self.run_dir.exists():
            for path in self.run_dir.glob("*.pid"):
                try:
                    pids.setdefault(path.stem, int(path.read_text().strip()))
                except ValueError:
                    path.unlink(missing_ok=True)
        return sorted(pids.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order))

    def status(self) -> dict[str, str]:
        return {name: ("running" if _alive(pid) else "stopped") for name, pid in self._known_pids()}

    def running(self) -> dict[str, int]:
        """The services whose recorded process is alive: name -> pid."""
        return {name: pid for name, pid in self._known_pids() if _alive(pid)}

    def service_rows(self) -> list[ServiceRow]:
        """One row per part of the stack: state and pid, whether its health check answers, its address."""
        return service_rows(self.settings, self.services, dict(self._known_pids()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status", "restart"])
    parser.add_argument("service", nargs="?", help="restart: the service to stop and start again")
    parser.add_argument("--only", nargs="*", help="start only these services")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for each service")
    parser.add_argument("--json", action="store_true", help="status: the running state of each service, as JSON")
    args = parser.parse_args(argv)
    stack = Stack(only=args.only)
    if args.action == "up":
        try:
            stack.start(timeout=args.timeout, leave_running=True)
        except (RuntimeError, SystemExit) as exc:
            print(f"make up failed: {exc}", file=sys.stderr)
            return 1
        ui_port = stack.settings["UI_PORT"]
        print(f"\nAll services are up. UI: http://127.0.0.1:{ui_port}  API: {stack.settings['API_URL']}/docs")
        return 0
    if args.action == "restart":
        if not args.service:
            print("usage: make restart SERVICE=name", file=sys.stderr)
            return 2
        try:
            stack.restart(args.service, timeout=args.timeout)
        except (RuntimeError, SystemExit) as exc:
            print(f"make restart failed: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.action == "down":
        stack.stop()
        print("All services stopped.")
        return 0
    if args.json:
        print(json.dumps(stack.status(), indent=2))
        return 0
    print(render(gather(stack.settings, stack.service_rows())), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
