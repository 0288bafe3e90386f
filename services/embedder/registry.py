"""The models the embedder serves at once: the primary, and others loaded while it runs.

Re-embedding a library with a new model fills a new table while searches keep answering from the
old one, so for that while the embedder serves both. The primary (`EMBEDDER_MODEL` with
`EMBEDDER_TEXT_MODEL`) is loaded at start as before, and `/readyz` speaks of it alone. Others are
loaded by name (`POST /v1/models`) through the same `load_towers`, so each gets the runtime and
backend chosen as at start (ONNX export cache and all), and are named by `?model=` on every call.

Each model has its own micro-batcher, so a batch never mixes models, but every batcher runs its
forward passes on the one model thread (see batcher.py on why torch work belongs on one thread): two
models take turns instead of fighting over the cores. A model added while the embedder runs is
loaded on a thread of its own that ends with the load, so the primary's requests go on being
served meanwhile; the primary is still loaded on the model thread, where it runs.

`EMBEDDER_MAX_MODELS` bounds the models held in memory (loading or loaded; the primary always counts).
Loading one more unloads the least recently used model other than the primary, unless every other
one was used within `EMBEDDER_MODEL_IDLE_S` (60 s): then the load is refused with 409, since
unloading a model a job is using would only make its next call load it again.
"""
from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from services.common.errors import BadRequest, DependencyUnavailable, NotFound, ServiceError
from services.embedder.batcher import BatchObserver, MicroBatcher, ModelNotReady
from services.embedder.config import EmbedderSettings
from services.embedder.models import CheckpointError, Towers

log = logging.getLogger(__name__)

# (model, text_model, primary) -> the loaded towers; raises CheckpointError with a sentence.
Loader = Callable[[str, str, bool], Towers]
# Failed loads kept for GET /v1/models to report, beyond which the oldest are forgotten.
KEEP_FAILED = 8


def _give_back_memory() -> None:
    """Free an unloaded model's memory now (its towers hold reference cycles) and return glibc's freed
    heap to the system, so that the next model loads into it rather than on top of it."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the memory is reused by the process all the same
        pass


class ModelConflict(ServiceError):
    status_code = 409
    code = "model_conflict"


@dataclass(eq=False)
class LoadedModel:
    """One model as the registry holds it; `text_model` is the text tower as asked for ("auto", ...)."""

    name: str
    text_model: str
    primary: bool
    batcher: MicroBatcher
    state: str = "loading"  # "loading" | "ready" | "failed"
    reason: str | None = None
    towers: Towers | None = None
    last_used: float = 0.0
    task: asyncio.Task | None = None

    def describe(self) -> dict:
        """What GET /v1/models lists: name, text tower, state, why it failed, and its info when ready."""
        info = self.towers.info() if self.towers is not None else {}
        return {**info, "name": self.name, "text_model": info.get("text_model") or self.text_model,
                "state": self.state, "reason": self.reason, "primary": self.primary}

    def run_batch(self, kind: str, items: list) -> list:
        """On the model thread: one forward pass of this model's towers."""
        towers = self.towers
        if towers is None:
            raise ModelNotReady(f"The model {self.name!r} is not loaded; retry shortly.", retry_after=2)
        return towers.embed_texts(items) if kind == "text" else towers.embed_images(items)


class ModelRegistry:
    def __init__(self, settings: EmbedderSettings, *, load: Loader, model_thread: ThreadPoolExecutor,
                 on_batch: Callable[[str], BatchObserver], primary: Towers | None = None):
        """`load` loads towers by name; `model_thread` is the one thread every batcher runs on;
        `on_batch(name)` is the batch observer of a model's batcher (metrics). `primary`, when given,
        is the primary model as already loaded."""
        self.settings = settings
        self._load = load
        self._model_thread = model_thread
        self._on_batch = on_batch
        self._models: dict[str, LoadedModel] = {}
        self._lock = asyncio.Lock()
        self.primary = self._add(settings.embedder_model, settings.text_model, primary=True)
        if primary is not None:
            self._ready(self.primary, primary)

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.primary.batcher.start()
        if self.primary.towers is None:
            self.primary.task = asyncio.create_task(self._load_primary(), name="load-model")

    async def stop(self) -> None:
        for entry in list(self._models.values()):
            if entry.task is not None and not entry.task.done():
                entry.task.cancel()
            await entry.batcher.stop()

    async def wait_primary(self) -> None:
        if self.primary.task is not None:
            await self.primary.task

    def queued_items(self) -> int:
        return sum(entry.batcher.queued_items for entry in self._models.values())

    def states(self) -> dict[str, int]:
        counts = {"loading": 0, "ready": 0, "failed": 0}
        for entry in self._models.values():
            counts[entry.state] += 1
        return counts

    def describe(self) -> list[dict]:
        return [entry.describe() for entry in self._models.values()]

    # -- using a model --------------------------------------------------------------------------

    def use(self, name: str | None = None) -> LoadedModel:
        """The ready model called `name` (None: the primary), marked as used now; else the error
        that says what to do: 404 not loaded, 503 still loading, or why the primary failed."""
        entry = self.primary if name is None else self._models.get(name)
        if entry is None:
            raise NotFound(f"The embedder has not loaded model {name}; load it with POST /v1/models.",
                           code="model_not_loaded")
        if entry.state == "loading":
            raise ModelNotReady(f"The model {entry.name!r} is still loading; retry shortly.", retry_after=2)
        if entry.state == "failed":
            if entry.primary:
                raise DependencyUnavailable(entry.reason or "The model could not be loaded.", code="model_failed",
                                            retry_after=30)
            raise NotFound(f"The embedder has not loaded model {name} ({(entry.reason or 'it failed').rstrip('.')}); "
                           "load it with POST /v1/models.", code="model_not_loaded")
        entry.last_used = time.monotonic()
        return entry

    # -- loading --------------------------------------------------------------------------------

    async def load(self, name: str, text_model: str | None = None, *, wait: bool = False) -> LoadedModel:
        """Start loading `name` unless it is loaded or loading (then its entry as it is); with `wait`,
        return once it is ready or has failed. A model that failed before is tried again."""
        name = name.strip()
        if not name:
            raise BadRequest("Name the model to load in the field 'model'.", code="invalid_request")
        text_model = (text_model or "auto").strip() or "auto"
        async with self._lock:  # two requests for one new model start one load
            entry = self._models.get(name)
            if entry is not None and (entry.state != "failed" or entry.primary):
                self._check_text_model(entry, text_model)
            else:
                if entry is not None:
                    del self._models[name]
                await self._make_room()
                entry = self._add(name, text_model, primary=False)
                await entry.batcher.start()
                entry.task = asyncio.create_task(self._load_extra(entry), name=f"load-model {name}")
        if wait and entry.task is not None and not entry.task.done():
            # Shielded: a caller that hangs up does not stop the load for everyone else.
            await asyncio.shield(entry.task)
        return entry

    def _check_text_model(self, entry: LoadedModel, text_model: str) -> None:
        resolved = entry.towers.info().get("text_model") if entry.towers is not None else None
        if text_model.lower() != "auto" and text_model not in (entry.text_model, resolved):
            raise ModelConflict(f"The embedder has model {entry.name} with the text tower {resolved or entry.text_model}, "
                                f"not {text_model}; ask for that text tower, or for 'auto'.")

    async def _make_room(self) -> None:
        """Unload the least recently used model other than the primary when the registry is full."""
        failed = [entry for entry in self._models.values() if entry.state == "failed" and not entry.primary]
        for entry in failed[:max(0, len(failed) - KEEP_FAILED + 1)]:
            del self._models[entry.name]
        held = [entry for entry in self._models.values() if entry.state != "failed" or entry.primary]
        limit = self.settings.max_models
        if len(held) < limit:
            return
        idle_s = self.settings.model_idle_s
        now = time.monotonic()
        others = sorted((entry for entry in held if not entry.primary and entry.state == "ready"),
                        key=lambda entry: entry.last_used)
        if not others or now - others[0].last_used < idle_s:
            busy = ", ".join(entry.name for entry in held if not entry.primary) or "none"
            wait_s = max(1, int(idle_s - (now - others[0].last_used)) + 1) if others else 30
            raise ModelConflict(f"The embedder already holds {len(held)} models (EMBEDDER_MAX_MODELS={limit}) and "
                                f"every one but the primary is loading or was used in the last {idle_s:g} s "
                                f"({busy}); retry once one is idle, or raise EMBEDDER_MAX_MODELS.",
                                code="too_many_models", retry_after=wait_s)
        await self.unload(others[0])

    async def unload(self, entry: LoadedModel) -> None:
        log.info("unloading the model %s (last used %.0f s ago)", entry.name, time.monotonic() - entry.last_used)
        self._models.pop(entry.name, None)
        await entry.batcher.stop()
        entry.towers = None
        _give_back_memory()

    def _add(self, name: str, text_model: str, *, primary: bool) -> LoadedModel:
        settings = self.settings
        batcher = MicroBatcher(lambda kind, items: entry.run_batch(kind, items), max_batch=settings.max_batch,
                               max_wait_ms=settings.max_wait_ms, max_queue=settings.max_queue,
                               on_batch=self._on_batch(name), executor=self._model_thread)
        entry = LoadedModel(name, text_model, primary, batcher)
        self._models[name] = entry
        return entry

    @staticmethod
    def _ready(entry: LoadedModel, towers: Towers) -> None:
        entry.towers, entry.state, entry.reason = towers, "ready", None
        entry.last_used = time.monotonic()

    def _failed(self, entry: LoadedModel, exc: Exception) -> None:
        if isinstance(exc, CheckpointError):  # a sentence naming the file or the mismatch: no traceback needed
            log.error("could not load the model %s: %s", entry.name, exc)
            reason = f"The embedder's models could not be loaded: {exc}" if entry.primary else \
                f"The model {entry.name!r} could not be loaded: {exc}"
        else:
            log.exception("could not load the model %s", entry.name)
            reason = f"The model {entry.name!r} could not be loaded: {exc}"
        entry.state, entry.reason = "failed", reason

    async def _load_primary(self) -> None:
        entry = self.primary
        log.info("loading %s", entry.name)
        try:
            # On the thread that will run every batch: one OpenMP team for the whole process.
            self._ready(entry, await entry.batcher.call(self._load, entry.name, entry.text_model, True))
        except Exception as exc:  # reported by /readyz; the process stays up to say why
            self._failed(entry, exc)

    async def _load_extra(self, entry: LoadedModel) -> None:
        log.info("loading %s beside %s", entry.name, self.primary.name)
        # A thread of its own, ended with the load (and with it any OpenMP team the load started), so
        # that the model thread goes on serving the primary meanwhile.
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-model")
        try:
            towers = await asyncio.get_running_loop().run_in_executor(thread, self._load, entry.name,
                                                                      entry.text_model, False)
        except Exception as exc:
            self._failed(entry, exc)
            await entry.batcher.stop()
        else:
            if self._models.get(entry.name) is entry:
                self._ready(entry, towers)
        finally:
            thread.shutdown(wait=False)
