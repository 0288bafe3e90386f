"""The Ingest tab in headless Chromium, in front of the real stack: a URL list pointing at the test's
own image server is uploaded, the job runs in the real workers, and the page shows it to the end with
its failures by reason; two photos dropped on the page are uploaded and ingested the same way, and so
is a folder under LIBRARY_ROOTS typed as a path.

This test adds photos to the stack's store, so it sits in a file named to run after the other
end-to-end tests, whose counts assume the 50 sample photos. The UI process here has the gateway's API
key (`UI_API_KEY`), which ingestion needs; the stack's own UI process has none.
"""
from __future__ import annotations

import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright import sync_api as playwright_sync

from tests.e2e.conftest import API_KEY, ui_process
from tests.e2e.test_browser_ui import ROOT, TIMEOUT_MS, browser  # noqa: F401 - the shared browser fixture

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
expect = playwright_sync.expect
# Assertions wait as long as the page's own actions: on 2 busy cores a search can take seconds.
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
def ui_with_key(running_stack, output_dir):
    env = running_stack.env | {"UI_API_KEY": API_KEY}
    with ui_process(env, output_dir / "ui.log") as url:
        yield url


def test_an_uploaded_url_list_is_ingested_and_watched_to_the_end(running_stack, ui_with_key, browser,  # noqa: F811
                                                                  output_dir, tmp_path):
    images = running_stack.images_url + "/images"
    urls = tmp_path / "my-photos.txt"
    urls.write_text("\n".join([
        "# three photos, a missing one, a web page and a line that is not a URL",
        *(f"{images}/sample{n:05d}.jpg" for n in (1, 2, 3)),
        f"{images}/not-there.jpg",
        f"{running_stack.images_url}/index.html",
        "not a url",
    ]) + "\n")
    stored_before = _stored_photos(running_stack.api_url)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(ui_with_key)
    page.get_by_role("tab", name="Ingest").click()
    expect(page.locator("#ingest-help")).to_contain_text("drop photos")
    expect(page.locator("#ingest-help")).to_contain_text("LIBRARY_ROOTS")
    page.locator("#ingest-file input[type=file]").set_input_files(str(urls))
    expect(page.locator("#ingest-file")).to_contain_text("my-photos.txt")
    page.locator("#ingest-button").click()

    status, progress = page.locator("#ingest-status"), page.locator("#ingest-progress")
    expect(status).to_contain_text(re.compile(r"Submitted 5 photos from my-photos\.txt as job \S+\. Skipped 1 line: "
                                              r"my-photos\.txt line 7: 'not a url' is not an http\(s\) URL\."))
    # The timer polls the job until the workers are done; the figures are the job's own.
    expect(progress).to_contain_text("Done", timeout=120_000)
    expect(progress).to_contain_text(re.compile(r"3 ingested · 0 skipped \(already stored\) · 2 failed · "
                                                r"[\d.]+ photos/s · took \d+ s\."))
    failures = page.locator("#ingest-failures")
    expect(failures).to_contain_text("Failures by reason")
    expect(failures.locator("tr", has_text="not_an_image")).to_contain_text("1")
    expect(failures).to_contain_text("404")
    assert page.locator("#ingest-bar progress").get_attribute("value") == "5"
    expect(page.locator("body")).not_to_contain_text("Traceback")
    page.screenshot(path=str(output_dir / "ingest_tab.png"), full_page=True)

    # The three photos are in the store now.
    assert _stored_photos(running_stack.api_url) == stored_before + 3
    page.close()


def _new_photo(path: Path, seed: int) -> Path:
    """A JPEG no other test has made: noise from its own seed."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def _watch_to_the_end(page, status_text: re.Pattern, ingested: int) -> None:
    expect(page.locator("#ingest-status")).to_contain_text(status_text)
    progress = page.locator("#ingest-progress")
    expect(progress).to_contain_text("Done", timeout=120_000)
    expect(progress).to_contain_text(re.compile(rf"{ingested} ingested · 0 skipped \(already stored\) · 0 failed"))
    expect(page.locator("body")).not_to_contain_text("Traceback")


def test_photos_dropped_on_the_page_are_uploaded_and_ingested(running_stack, ui_with_key, browser,  # noqa: F811
                                                              output_dir, tmp_path):
    photos = [_new_photo(tmp_path / "dropped-one.jpg", 101), _new_photo(tmp_path / "dropped-two.jpg", 102)]
    stored_before = _stored_photos(running_stack.api_url)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(ui_with_key)
    page.get_by_role("tab", name="Ingest").click()
    page.locator("#ingest-file input[type=file]").set_input_files([str(photo) for photo in photos])
    expect(page.locator("#ingest-file")).to_contain_text("dropped-two")  # Gradio sets the extension apart
    page.locator("#ingest-button").click()
    _watch_to_the_end(page, re.compile(r"Submitted 2 photos from dropped-one\.jpg, dropped-two\.jpg as job \S+ "
                                       r"\(uploaded\)\."), ingested=2)
    page.screenshot(path=str(output_dir / "ingest_tab_photos.png"), full_page=True)
    assert _stored_photos(running_stack.api_url) == stored_before + 2
    page.close()


def test_a_folder_under_the_library_roots_is_ingested_by_its_path(running_stack, ui_with_key, browser,  # noqa: F811
                                                                  output_dir):
    folder = running_stack.library_dir / "holiday"
    (folder / "day-one").mkdir(parents=True)
    _new_photo(folder / "day-one" / "harbour.jpg", 201)
    _new_photo(folder / "market.jpg", 202)
    stored_before = _stored_photos(running_stack.api_url)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(ui_with_key)
    page.get_by_role("tab", name="Ingest").click()
    page.locator("#ingest-folder textarea, #ingest-folder input").first.fill(str(folder))
    page.locator("#ingest-folder-button").click()
    _watch_to_the_end(page, re.compile(r"Submitted 2 photos from .*holiday as job \S+ \(read by the workers where "
                                       r"they are\)\."), ingested=2)
    page.screenshot(path=str(output_dir / "ingest_tab_folder.png"), full_page=True)
    assert _stored_photos(running_stack.api_url) == stored_before + 2
    page.close()


def _stored_photos(api_url: str) -> int:
    response = httpx.get(f"{api_url}/v1/stats", timeout=30)
    response.raise_for_status()
    return response.json()["photos"]
