"""`make test` leaves the work tree as it found it: the browser test that takes the README's picture
writes docs/screenshot.png only under `make screenshot`, and under test-output/ otherwise."""
from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.test_browser_query_builder import SCREENSHOT, readme_screenshot

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_screenshot_goes_to_test_output_unless_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("WRITE_SCREENSHOT", raising=False)
    assert readme_screenshot(tmp_path) == tmp_path / "readme_screenshot.png"
    monkeypatch.setenv("WRITE_SCREENSHOT", "1")
    assert readme_screenshot(tmp_path) == SCREENSHOT == ROOT / "docs" / "screenshot.png"


def test_make_screenshot_asks_for_it():
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE)
    assert phony and "screenshot" in phony.group(1).split()
    recipe = re.search(r"^screenshot:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "no `screenshot` target in the Makefile"
    assert "WRITE_SCREENSHOT=1" in recipe.group(1) and "test_browser_query_builder.py" in recipe.group(1)
