"""The text side every family shares: what a text tower reports, and its warm-up.

A family's text tower subclasses `TextTower` and implements `embed_texts`: one forward pass over a
batch, unit vectors out, each text past the tower's token limit truncated and flagged.
"""
from __future__ import annotations

import logging
import time

from services.embedder.models.checkpoint import LANGUAGES
from services.embedder.models.runtime import Runtime, TextResult

log = logging.getLogger(__name__)


class TextTower:
    family = ""
    # Towers that pad every text to their full context (SigLIP) run one shape whatever the text.
    padded_to_max = False

    def __init__(self, name: str, runtime: Runtime, fingerprint: str, random_weights: bool, dim: int,
                 max_tokens: int, teacher: str | None = None):
        self.name = name
        self.runtime = runtime
        self.fingerprint = fingerprint
        self.random_weights = random_weights
        self.dim = dim
        self.max_tokens = max_tokens
        # The image model this tower was distilled from (towers of their own image model: None).
        self.teacher = teacher

    @property
    def languages(self) -> tuple[str, ...]:
        return LANGUAGES.get(self.family, ())

    def embed_texts(self, texts: list[str]) -> list[TextResult]:
        raise NotImplementedError

    def warm_up_texts(self) -> None:
        """One query of each length up to 32 tokens, then small batches: the first run of a new input
        shape costs up to twice a warm one (memory plans and kernel choices are made per shape, in
        ONNX Runtime and in oneDNN alike), and a user's first query should not pay for it. Measured on
        the b32 CLIP with ONNX Runtime: the first text after start took 3.1x a warm one with a single
        warm-up text; about 0.5 s more at start. A tower that pads every text to its full context
        (SigLIP) has one shape, so one length is enough."""
        started = time.perf_counter()
        for words in range(1, 2 if self.padded_to_max else min(self.max_tokens, 32) + 1):
            self.embed_texts([" ".join(["photo"] * words)])
        for batch in (2, 4, 8):
            self.embed_texts(["una foto de un perro en la playa"] * batch)
        log.info("text tower warmed up in %.2fs", time.perf_counter() - started)

    def text_info(self) -> dict:
        return {
            "text_model": self.name,
            "text_family": self.family,
            "text_fingerprint": self.fingerprint,
            "text_random_weights": self.random_weights,
            "languages": list(self.languages),
            "max_text_tokens": self.max_tokens,
        }
