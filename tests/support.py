"""Helpers the tests share: free ports, waiting for servers, a private redis-server, and the cleanup of
every process the tests start.

Each service a test starts runs in a process group of its own (`spawn`), so that ending it ends its
children too (a Celery worker's pool, a server's helpers). Every such group is recorded here, and
ended when the test process exits, or is sent SIGTERM or SIGINT, whatever the fixture that started it
was doing: a run that a CI runner or Ctrl-C interrupts leaves no service behind. The stacks of
tools/stack.py (end-to-end and fault tests) are recorded the same way, through `tools.stack.SPAWN_HOOKS`.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tools import stack as _stack

# Process groups started by this process, by the pid of their leader (which is the group's id).
_GROUPS: dict[int, subprocess.Popen] = {}
_GROUPS_LOCK = threading.Lock()
_PREVIOUS_HANDLERS: dict[int, Any] = {}
# The process that installed the cleanup: a child forked from it (multiprocessing) inherits the
# handlers, and must not end its parent's services when it is itself signalled.
_OWNER: int | None = None
_END_GRACE_S = 5.0


def _install_cleanup() -> None:
    """atexit and SIGTERM/SIGINT handlers, once per process; each handler then calls the one it replaced."""
    global _OWNER
    if _OWNER == os.getpid():
        return
    if _OWNER is not None:  # a forked child: its parent's groups are not its own to end
        with _GROUPS_LOCK:
            _GROUPS.clear()
    _OWNER = os.getpid()
    atexit.register(end_all)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; atexit still ends the groups
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if previous is not _on_signal:  # a forked child keeps the handler its parent replaced
            _PREVIOUS_HANDLERS[sig] = previous
        signal.signal(sig, _on_signal)


def _on_signal(signum: int, frame: Any) -> None:
    if os.getpid() == _OWNER:
        end_all()
    previous = _PREVIOUS_HANDLERS.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # Python's SIGINT handler raises KeyboardInterrupt: fixtures unwind
    elif previous != signal.SIG_IGN:
        # The default action (SIGTERM ends the process): restored and taken, so the exit status says so.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def track(process: subprocess.Popen) -> subprocess.Popen:
    """Record a process that leads a group of its own, to be ended with this process at the latest."""
    _install_cleanup()
    with _GROUPS_LOCK:
        _GROUPS[process.pid] = process
    return process


def spawn(args: list[str], **popen_options: Any) -> subprocess.Popen:
    """`subprocess.Popen(args)` in a process group of its own, recorded so that it ends with the test run."""
    return track(subprocess.Popen(args, start_new_session=True, **popen_options))


def end_all(grace_s: float = _END_GRACE_S) -> None:
    """SIGTERM every recorded group whose leader still runs, then SIGKILL what is left after `grace_s`.
    A group whose leader has exited is skipped: its id may belong to another process by now."""
    if os.getpid() != _OWNER:
        return
    with _GROUPS_LOCK:
        running = [process for process in _GROUPS.values() if process.poll() is None]
        _GROUPS.clear()
    for process in running:
        _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in running:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            pass
        _signal_group(process.pid, signal.SIGKILL)  # the group's other members, or a leader that lingers
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# Stacks started through tools/stack.py (each service in a session of its own) are recorded too.
if track not in _stack.SPAWN_HOOKS:
    _stack.SPAWN_HOOKS.append(track)


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
    process = spawn(
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
                stop_process(process, timeout=1)
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
        stop_process(process, timeout=10)


@contextmanager
def service_process(args: list[str], ready_url: str | None, log_path: Path, env: dict[str, str] | None = None,
                    timeout: float = 120.0) -> Iterator[subprocess.Popen]:
    """Run a service as its own process (`python` + args, from the project root) until the block ends.

    Waits for `ready_url` to answer; if the process dies or never answers, the error carries its log.
    """
    root = Path(__file__).resolve().parents[1]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = spawn([sys.executable, *args], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        if ready_url:
            try:
                wait_for_http(ready_url, timeout=timeout, process=process)
            except (RuntimeError, TimeoutError) as error:
                raise RuntimeError(f"{error}\n--- {log_path} ---\n{log_path.read_text(errors='replace')[-4000:]}") from error
        yield process
    finally:
        stop_process(process)


@contextmanager
def store_embedder_gateway(workdir: Path, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The embedded store, the embedder and the gateway, each its own process on a free port, with `env`
    plus their URLs (STORE_URL, EMBEDDER_URL); yields {"store", "embedder", "api"} -> URL."""
    ports = {name: free_port() for name in ("store", "embedder", "api")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {**env, "STORE_URL": urls["store"], "EMBEDDER_URL": urls["embedder"]}
    uvicorn = ["-m", "uvicorn", "--factory", "--host", "127.0.0.1", "--port"]
    with service_process(["-m", "services.embedded_store", "--host", "127.0.0.1", "--port", str(ports["store"]),
                          "--data-dir", str(workdir / "store")], f"{urls['store']}/ping", workdir / "store.log",
                         env=env), \
         service_process([*uvicorn, str(ports["embedder"]), "services.embedder.main:create_app"],
                         f"{urls['embedder']}/readyz", workdir / "embedder.log", env=env), \
         service_process([*uvicorn, str(ports["api"]), "services.api.main:create_app"], f"{urls['api']}/healthz",
                         workdir / "api.log", env=env):
        yield urls


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `timeout`; to its whole group when it
    leads one (`spawn`), so that its children end with it."""
    group = _leads_group(process)
    if process.poll() is None:
        if group:
            _signal_group(process.pid, signal.SIGTERM)
        else:
            process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if group:
        _signal_group(process.pid, signal.SIGKILL)  # children that outlived their parent
    with _GROUPS_LOCK:
        _GROUPS.pop(process.pid, None)


def _leads_group(process: subprocess.Popen) -> bool:
    with _GROUPS_LOCK:
        if process.pid in _GROUPS:
            return True
    try:
        return process.poll() is None and os.getpgid(process.pid) == process.pid
    except OSError:
        return False


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
