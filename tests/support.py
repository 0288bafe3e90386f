"""Helpers the tests share: free ports, waiting for servers, a private redis-server."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 300:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last_error = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s: {last_error}")


def start_redis(workdir: Path, port: int, appendonly: bool = False) -> subprocess.Popen:
    """A redis-server on `port` with its files in `workdir`, answering when this returns. With
    `appendonly` it keeps every write in its append-only file, as a broker must to survive a restart
    (started again on the same port and folder, it has the queue and the jobs back)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "yes" if appendonly else "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError as error:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("redis-server did not start") from error
            time.sleep(0.05)


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A private redis-server on a free port; yields its URL."""
    port = free_port()
    process = start_redis(workdir, port)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def service_process(args: list[str], ready_url: str | None, log_path: Path, env: dict[str, str] | None = None,
                    timeout: float = 120.0) -> Iterator[subprocess.Popen]:
    """Run a service as its own process (`python` + args, from the project root) until the block ends.

    Waits for `ready_url` to answer; if the process dies or never answers, the error carries its log.
    """
    root = Path(__file__).resolve().parents[1]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, *args], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        if ready_url:
            try:
                wait_for_http(ready_url, timeout=timeout, process=process)
            except (RuntimeError, TimeoutError) as error:
                raise RuntimeError(f"{error}\n--- {log_path} ---\n{log_path.read_text(errors='replace')[-4000:]}") from error
        yield process
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `timeout`."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def embedded_store(data_dir: Path, timeout: float = 60) -> Iterator[str]:
    """The embedded store server (`python -m services.embedded_store`) over `data_dir` on a free port;
    yields its URL. It must start: a store that does not come up fails the test."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with service_process(["-m", "services.embedded_store", "--host", "127.0.0.1", "--port", str(port),
                          "--data-dir", str(data_dir)], f"{url}/ping", data_dir.parent / f"store-{port}.log",
                         timeout=timeout):
        yield url
