"""The search mode toggle in headless Chromium, in front of the real stack: the same words searched by
meaning, then by words, where the results become the photos whose descriptions hold the word, with the
word marked in each result's card; "Load more" keeps the mode.

The model has random weights, so the search by meaning finds photos in no telling order; the search
by words does not depend on the model: the sample set's descriptions say which photos hold the word.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from playwright import sync_api as playwright_sync

from tests.e2e.test_browser_query_builder import _field, _open
from tests.e2e.test_browser_ui import TIMEOUT_MS, _shown_photo_ids, browser  # noqa: F401 - the shared browser

expect = playwright_sync.expect
expect.set_options(timeout=TIMEOUT_MS)

WORD = "triangle"


def _described_with(tsv: Path, word: str) -> set[str]:
    """The ingested photos whose description holds `word` (tools/sample_data.py describes each one)."""
    with open(tsv, newline="") as handle:
        return {row["photo_id"] for row in csv.DictReader(handle, delimiter="\t")
                if word in row["photo_description"].lower().split()}


def test_words_mode_finds_the_photos_that_hold_the_word_and_marks_it(running_stack, browser, output_dir):  # noqa: F811
    holding = _described_with(running_stack.tsv, WORD)
    # Exactly one page of them (tools/sample_data.py draws every fourth photo a triangle).
    assert len(holding) == 12
    page = _open(browser, running_stack.ui_url)
    status, gallery_images = page.locator("#status"), page.locator("#results-gallery img")
    mode, cards = page.locator("#search-mode"), page.locator("#result-cards")
    expect(mode.get_by_label("Both")).to_be_checked()  # the gateway's default mode is the page's

    # By meaning: a random model's order, with no word marked.
    mode.get_by_text("Meaning", exact=True).click()  # an empty box: nothing is searched yet
    expect(status).to_contain_text("Type a query")
    _field(page, "query-text").fill(WORD)
    page.locator("#search-button").click()
    expect(status).to_contain_text(re.compile(rf"12 results for “{WORD}” in \d+ ms"))
    expect(gallery_images).to_have_count(12)
    by_meaning = _shown_photo_ids(gallery_images)
    expect(cards).to_contain_text("of the library")  # each result's relevance
    expect(cards.locator("mark")).to_have_count(0)

    # By words: picking the mode searches again; the results are the photos that hold the word, each
    # with the word marked in its description and said in why it matched.
    mode.get_by_text("Words", exact=True).click()
    expect(cards.locator("mark")).to_have_count(12)
    expect(status).to_contain_text(re.compile(rf"12 results for “{WORD}” in \d+ ms"))
    by_words = _shown_photo_ids(gallery_images)
    assert set(by_words) == holding and set(by_meaning) != holding
    for card in cards.locator(".result-card").all():
        expect(card.locator("mark")).to_have_text(re.compile(WORD, re.IGNORECASE))
        expect(card).to_contain_text(f"words: {WORD}")
    page.screenshot(path=str(output_dir / "search_by_words.png"), full_page=True)

    # "Load more" asks for the next page in the same mode: no other photo holds the word.
    page.locator("#load-more").click()
    expect(status).to_contain_text(f"No more results for “{WORD}”.")
    expect(gallery_images).to_have_count(12)
    expect(page.locator("body")).not_to_contain_text("Traceback")
    page.close()
