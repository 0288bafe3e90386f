"""The query builder in headless Chromium, in front of the real stack: a "less like" term row, the
"Less like this" button on a chosen result, and "Load more". The "Load more" test saves the page as
the README's screenshot: docs/screenshot.png under `make screenshot` (WRITE_SCREENSHOT=1), else under
test-output/, so that `make test` leaves the work tree as it found it.

The model has random weights, so what is asserted is what the vector maths makes certain whatever
the weights: a photo searched by its own image comes first (score 1.0), and a photo subtracted from a
query (weight -1) scores below 0 against it, so it leaves the top results.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from playwright import sync_api as playwright_sync

from tests.e2e.test_browser_ui import TIMEOUT_MS, _shown_photo_ids, browser  # noqa: F401 - the shared browser

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "screenshot.png"
expect = playwright_sync.expect
# Assertions wait as long as the page's own actions: on 2 busy cores a search can take seconds.
expect.set_options(timeout=TIMEOUT_MS)


def readme_screenshot(output_dir: Path) -> Path:
    """Where the README's picture goes: docs/screenshot.png only when asked (`make screenshot`)."""
    return SCREENSHOT if os.environ.get("WRITE_SCREENSHOT") == "1" else output_dir / "readme_screenshot.png"


def _open(browser, url: str, height: int = 1200):  # noqa: F811 - `browser` is the fixture
    page = browser.new_page(viewport={"width": 1280, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    expect(page.locator("#stats")).to_contain_text("photos indexed")
    return page


def _row(page, number: int):
    """A term row (Gradio renders a group's elem_id on two nested divs: the outer one)."""
    return page.locator(f"#term-{number}").first


def _field(page, elem_id: str):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input[type=text], #{elem_id} input:not([type])").first


def _set_slider(page, elem_id: str, value: float) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_a_less_like_term_drops_that_photo_from_the_results(running_stack, browser, output_dir):  # noqa: F811
    page = _open(browser, running_stack.ui_url)
    status, gallery_images = page.locator("#status"), page.locator("#results-gallery img")
    _field(page, "query-text").fill("a red circle")
    page.locator("#search-button").click()
    expect(status).to_contain_text(re.compile(r"12 results for “a red circle” in \d+ ms"))
    first = _shown_photo_ids(gallery_images)[0]

    # One extra row: the first result's id, at weight -1 ("less like").
    expect(_row(page, 1)).to_be_hidden()
    page.locator("#add-term").click()
    expect(_row(page, 1)).to_be_visible()
    _field(page, "term-1-photo").fill(first)
    _set_slider(page, "term-1-weight", -1)
    expect(page.locator("#term-1-weight input[type=number]")).to_have_value("-1")
    page.locator("#search-button").click()
    expect(status).to_contain_text(re.compile(rf"12 results for “a red circle”, less like photo {first} in \d+ ms"))
    expect(gallery_images).to_have_count(12)
    assert first not in _shown_photo_ids(gallery_images)

    # Removing the row gives the plain query back, with that photo first again.
    page.locator("#term-1-remove").click()
    expect(_row(page, 1)).to_be_hidden()
    page.locator("#search-button").click()
    expect(status).to_contain_text(re.compile(r"12 results for “a red circle” in \d+ ms"))
    assert _shown_photo_ids(gallery_images)[0] == first
    expect(page.locator("body")).not_to_contain_text("Traceback")
    page.screenshot(path=str(output_dir / "less_like_term.png"), full_page=True)
    page.close()


def test_less_like_this_on_a_result_and_load_more(running_stack, browser, output_dir):  # noqa: F811
    page = _open(browser, running_stack.ui_url, height=1400)
    status, gallery_images = page.locator("#status"), page.locator("#results-gallery img")
    # Search by a photo's own image: it comes first, and the next one is its nearest neighbour.
    page.locator("#query-image input[type=file]").set_input_files(str(running_stack.images_dir / "sample00003.jpg"))
    page.locator("#search-button").click()
    expect(status).to_contain_text(re.compile(r"12 results for your image in \d+ ms"))
    shown = _shown_photo_ids(gallery_images)
    assert shown[0] == "sample00003"
    neighbour = shown[1]

    # Choose the neighbour in the gallery, then "Less like this": one click adds it at -1 and searches.
    gallery_images.nth(1).click()
    expect(page.locator("#chosen-details")).to_contain_text(neighbour)
    page.keyboard.press("Escape")  # close the gallery's preview
    expect(gallery_images).to_have_count(12)
    page.locator("#less-button").click()
    expect(status).to_contain_text(re.compile(rf"results for your image, less like photo {neighbour} in \d+ ms"))
    expect(_row(page, 1)).to_be_visible()
    expect(_field(page, "term-1-photo")).to_have_value(neighbour)
    expect(page.locator("#term-1-weight input[type=number]")).to_have_value("-1")
    shown = _shown_photo_ids(gallery_images)
    # The neighbour now scores below 0 (its own vector subtracted): it leaves the top results.
    assert neighbour not in shown

    # "Load more" appends the next 12 of the same query: 24 different photos, the first 12 unchanged.
    page.locator("#load-more").click()
    expect(gallery_images).to_have_count(24)
    expect(status).to_contain_text(re.compile(rf"24 results for your image, less like photo {neighbour} in \d+ ms"))
    more = _shown_photo_ids(gallery_images)
    assert more[:12] == shown and len(set(more)) == 24
    expect(page.locator("body")).not_to_contain_text("Traceback")
    page.screenshot(path=str(output_dir / "less_like_this_and_load_more.png"), full_page=True)
    page.close()


def test_load_more_appends_the_next_page(running_stack, browser, output_dir):  # noqa: F811
    page = _open(browser, running_stack.ui_url)
    status, gallery_images = page.locator("#status"), page.locator("#results-gallery img")
    _field(page, "query-text").fill("blue stripes")
    page.locator("#search-button").click()
    expect(gallery_images).to_have_count(12)
    first_page = _shown_photo_ids(gallery_images)
    # The gallery shows the gateway's thumbnails, which the browser loads from the gateway.
    sources = gallery_images.evaluate_all("images => images.map(image => image.getAttribute('src'))")
    assert all(source.startswith(f"{running_stack.api_url}/v1/photos/") and source.endswith("/thumbnail")
               for source in sources), sources
    # The README's picture of the page: results with their scores, the time taken, "Load more".
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results-gallery img')].every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(readme_screenshot(output_dir)), full_page=False)
    page.locator("#load-more").click()
    expect(gallery_images).to_have_count(24)
    expect(status).to_contain_text(re.compile(r"24 results for “blue stripes” in \d+ ms"))
    both = _shown_photo_ids(gallery_images)
    assert both[:12] == first_page and len(set(both)) == 24
    # 50 photos in all: the fifth page has the last 2, and then there is nothing more to load.
    for count in (36, 48, 50):
        page.locator("#load-more").click()
        expect(gallery_images).to_have_count(count)
    expect(page.locator("#load-more")).to_be_hidden()
    expect(page.locator("body")).not_to_contain_text("Traceback")
    page.close()
