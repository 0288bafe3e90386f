"""One whole system per fault, with handles to break its parts: kill, stop and restart a service.

The services are tools/stack.py's (the same commands `make up` runs), each its own process in its
own process group; Redis is a private redis-server with its append-only file on, as a broker needs,
so that it can be restarted on the same port and folder. Settings are shortened where a fault would
otherwise wait on a production-sized timeout (WORKER_VISIBILITY_TIMEOUT_S, retry backoff, the
gateway's timeouts); the mechanisms are the production ones.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import redis

from tests.support import free_port, start_redis
from tools.stack import Service, Stack

API_KEY = "faults-test-key"
TABLE = "photos_faults"
SERVICES = ["store", "embedder", "worker", "api"]


class FaultStack:
    def __init__(self, workdir: Path, model_dir: Path, log_dir: Path, visibility_timeout_s: int = 8):
        self.workdir = workdir
        self.redis_dir = workdir / "redis"
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        ports = {name: free_port() for name in ("api", "embedder", "store")}
        self.api_url = f"http://127.0.0.1:{ports['api']}"
        self.store_url = f"http://127.0.0.1:{ports['store']}"
        env = {
            "REDIS_URL": self.redis_url,
            "STORE_URL": self.store_url,
            "STORE_DATA_DIR": str(workdir / "store"),
            "STORE_TABLE": TABLE,
            "EMBEDDER_URL": f"http://127.0.0.1:{ports['embedder']}",
            "EMBEDDER_MODEL": str(model_dir),
            "API_URL": self.api_url,
            "API_KEYS": API_KEY,
            "FETCH_ALLOW_HOSTS": "127.0.0.1",
            "WORKER_CONCURRENCY": "2",
            "WORKER_METRICS_PORT": "0",  # tests bind no fixed port
            "WORKER_VISIBILITY_TIMEOUT_S": str(visibility_timeout_s),
            "WORKER_RETRY_BACKOFF_MAX_S": "3",
            "WORKER_MAX_RETRIES": "40",
            "WORKER_EMBEDDER_TIMEOUT_S": "10",
            "WORKER_STORE_QUERY_TIMEOUT_S": "10",
            "WORKER_AUTO_INDEX": "false",
            "API_EMBEDDER_TIMEOUT_S": "5",
            "API_STORE_CONNECT_TIMEOUT_S": "2",
            "API_STORE_QUERY_TIMEOUT_S": "5",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.redis_process: subprocess.Popen | None = None
        self.stack = Stack(env=env, log_dir=log_dir, run_dir=workdir / "run", only=SERVICES)
        self.env = self.stack.env
        self.log_dir = log_dir
        self._redis = redis.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=2,
                                           socket_connect_timeout=1)

    # -- whole stack -----------------------------------------------------------------------------
    def start(self, timeout: float = 120) -> None:
        """Redis, then every service at once (the 2-core machine overlaps their imports), then wait."""
        self.redis_process = start_redis(self.redis_dir, self.redis_port, appendonly=True)
        try:
            self._start(self.stack.services, timeout)
        except Exception:
            self.stop()
            raise

    def _start(self, services: list[Service], timeout: float) -> None:
        checks = [(service, self.stack._ready_check(service)) for service in services]
        for service, _ in checks:
            self.stack._spawn(service)
        for service, ready in checks:
            self.stack._wait(service, ready, timeout)

    def stop(self) -> None:
        self.stack.stop()
        if self.redis_process is not None and self.redis_process.poll() is None:
            self.redis_process.terminate()
            self.redis_process.wait(timeout=10)
        self._redis.close()

    # -- faults ----------------------------------------------------------------------------------
    def service(self, name: str) -> Service:
        return next(service for service in self.stack.services if service.name == name)

    def pid(self, name: str) -> int:
        return self.stack.processes[name].pid

    def signal_group(self, name: str, sig: int) -> None:
        """A signal to the service's whole process group (a worker's main process and its children)."""
        os.killpg(self.pid(name), sig)

    def kill(self, name: str) -> None:
        self.signal_group(name, signal.SIGKILL)
        self.stack.processes[name].wait(timeout=10)

    def start_service(self, name: str, timeout: float = 120) -> None:
        self._start([self.service(name)], timeout)

    def worker_children(self) -> list[int]:
        pid = self.pid("worker")
        path = Path(f"/proc/{pid}/task/{pid}/children")
        return [int(child) for child in path.read_text().split()] if path.exists() else []

    def restart_redis(self, down_s: float = 2.0) -> None:
        """SIGTERM (Redis writes its append-only file and exits), a pause, then the same port and folder."""
        assert self.redis_process is not None
        self.redis_process.terminate()
        self.redis_process.wait(timeout=10)
        time.sleep(down_s)
        self.redis_process = start_redis(self.redis_dir, self.redis_port, appendonly=True)

    # -- what a user sees ----------------------------------------------------------------------
    def batches_done(self) -> int | None:
        """Batches finished over every job in this Redis; None while Redis cannot be read."""
        try:
            keys = [key for key in self._redis.scan_iter("imagesearch:job:*") if key.count(":") == 2]
            return sum(int(self._redis.hget(key, "batches_done") or 0) for key in keys)
        except redis.RedisError:
            return None

    def held(self) -> int:
        """Batches delivered to a worker and not acknowledged yet (kombu's `unacked` hash)."""
        return int(self._redis.hlen("unacked"))

    def rows(self) -> tuple[int, int]:
        """(rows, distinct photo ids) in the photo table, asked of the store over its HTTP interface."""
        query = f"SELECT count(), uniqExact(photo_id) FROM {TABLE} FORMAT TSV".encode()
        with urllib.request.urlopen(urllib.request.Request(self.store_url + "/", data=query), timeout=30) as answer:
            total, distinct = answer.read().decode().split()
        return int(total), int(distinct)
