"""Starting the embedded store as its own process for the tests in this folder, and their shared table."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import clickhouse_connect
import httpx

from tests.support import free_port, spawn

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DIM = 512




class StoreProcess:
    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.port = free_port()
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "services.embedded_store", "--host", "127.0.0.1", "--port", str(self.port),
                "--data-dir", str(self.data_dir)]

    def start(self) -> StoreProcess:
        log = open(self.log_path, "ab")
        self.process = spawn(self.command(), cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"store exited with {self.process.returncode}: {self.log_path.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/ping", timeout=1).text == "Ok.\n":
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"store did not answer /ping: {self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def client(self, **kwargs):
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, interface="http", **kwargs)


def create_photos_table(client, name: str) -> None:
    client.command(
        f"CREATE TABLE {name} (id UInt32, photo_id String, vector Array(Float32), "
        f"CONSTRAINT vector_len CHECK length(vector) = {DIM}) ENGINE = MergeTree ORDER BY id"
    )


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")
