"""Fixtures every test folder shares: offline model hub, a tiny random CLIP, output folders."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

# A missing local file must fail at once, not wait on a network these machines do not have.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A CLIP with random weights and the real tokenizer, written by the test run itself."""
    from tools.random_model import write_random_clip

    return write_random_clip(tmp_path_factory.mktemp("models") / "clip-tiny", size="tiny")


@pytest.fixture
def output_dir(request) -> Path:
    """test-output/<test name>/ for screenshots and logs a person may want to look at."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
    path = ROOT / "test-output" / name
    path.mkdir(parents=True, exist_ok=True)
    return path
