"""The search page in headless Chromium, in front of the real stack.

The UI process of `running_stack` (see conftest.py) talks to the real gateway, which searches the
photos that the real ingest command put in the store. The page is driven the way a person uses
it, and screenshots are saved under test-output/. A second UI process pointed at a gateway that
is not there shows what a person sees when the search service is down.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest
from playwright import sync_api as playwright_sync

from tests.e2e.conftest import SAMPLE_COUNT, ui_process
from tests.support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is not installed (Debian: apt-get install chromium); .ci/run installs it")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


@pytest.fixture
def ui_without_gateway(running_stack, output_dir):
    """A UI process whose gateway address answers nothing."""
    env = running_stack.env | {"API_URL": f"http://127.0.0.1:{free_port()}", "UI_API_TIMEOUT": "3"}
    with ui_process(env, output_dir / "ui.log") as url:
        yield url


def test_search_by_text_image_and_random_photo(running_stack, browser, output_dir):
    ui_url, images_dir = running_stack.ui_url, running_stack.images_dir
    expect = playwright_sync.expect
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(ui_url)

    banner = page.locator("#banner")
    expect(banner).to_contain_text("random weights: results are meaningless")
    expect(page.locator("#stats")).to_contain_text(f"{SAMPLE_COUNT} photos indexed")
    # The stats line names the model that answers (the test's tiny CLIP, which embeds texts itself), and
    # the search box invites a Spanish query as well as an English one.
    expect(page.locator("#stats")).to_contain_text(re.compile(r"Model: \S*clip-tiny\b"))
    box = page.locator("#query-text textarea, #query-text input").first
    expect(box).to_have_attribute("placeholder", 'Try "perro en la playa" or "a dog on the beach"')
    page.screenshot(path=str(output_dir / "search_page_loaded.png"), full_page=True)

    # An example fills the box and searches at once.
    page.locator("#query-examples").get_by_text("atardecer en la montaña").click()
    expect(box).to_have_value("atardecer en la montaña")
    expect(page.locator("#status")).to_contain_text("12 results for “atardecer en la montaña”")

    # Search with the button: the default top-k is 12, each result has its score and description.
    page.locator("#query-text textarea, #query-text input").first.fill("a red circle")
    page.locator("#search-button").click()
    gallery_images = page.locator("#results-gallery img")
    expect(gallery_images).to_have_count(12)
    expect(page.locator("#status")).to_contain_text("12 results for “a red circle”")
    gallery = page.locator("#results-gallery")
    # Captions: the photo's relevance ("top 8%"; the cosine score from a gateway that does not say),
    # then its description.
    expect(gallery).to_contain_text(re.compile(r"(top \d+(\.\d)?%|-?\d\.\d{3}) · A \w+ \w+ on a \w+ background"))
    # The browser loaded the images from the image server.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results-gallery img')].every(i => i.complete && i.naturalWidth > 0)")

    # Enter in the text box searches too.
    box.fill("blue stripes")
    box.press("Enter")
    expect(page.locator("#status")).to_contain_text("for “blue stripes”")

    # Text and an uploaded image: the weight slider appears, and both go to the gateway.
    expect(page.locator("#weight")).to_be_hidden()
    page.locator("#query-image input[type=file]").set_input_files(str(images_dir / "sample00001.jpg"))
    expect(page.locator("#weight")).to_be_visible()
    page.locator("#search-button").click()
    expect(page.locator("#status")).to_contain_text("for “blue stripes” and your image")
    expect(gallery_images).to_have_count(12)

    # A random photo, then more like it (by its photo id).
    page.locator("#random-button").click()
    expect(page.locator("#chosen-photo img")).to_be_visible()
    expect(page.locator("#chosen-details")).to_contain_text("sample")
    page.locator("#more-button").click()
    expect(page.locator("#status")).to_contain_text("results for photos like sample")
    page.screenshot(path=str(output_dir / "search_page.png"), full_page=True)

    expect(page.locator("body")).not_to_contain_text("Traceback")
    page.close()


def _countries(tsv: Path) -> dict[str, str]:
    """Each ingested photo's country, from the TSV the stack ingested (tools/sample_data.py's places)."""
    with open(tsv, newline="") as handle:
        return {row["photo_id"]: row["photo_location_country"] for row in csv.DictReader(handle, delimiter="\t")}


def _shown_photo_ids(gallery_images) -> list[str]:
    """The photos in the gallery, by the image each one shows: the gateway's thumbnail of the photo
    (/v1/photos/{id}/thumbnail), or the photo's own image (the sample set names images by photo id)."""
    sources = gallery_images.evaluate_all("images => images.map(image => image.getAttribute('src'))")
    ids = [re.search(r"(sample\d{5})(?:\.jpg|/thumbnail)", source) for source in sources]
    assert all(ids), f"gallery images that are not sample photos: {sources}"
    return [match.group(1) for match in ids]


def test_filters_keep_only_photos_of_the_chosen_country(running_stack, browser, output_dir):
    countries = _countries(running_stack.tsv)
    in_japan = sorted(photo_id for photo_id, country in countries.items() if country == "Japan")
    # Fewer Japanese photos than the default 12 results: a filtered search shows every one of them.
    assert 0 < len(in_japan) < 12
    expect = playwright_sync.expect
    page = browser.new_page(viewport={"width": 1280, "height": 1200})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(running_stack.ui_url)
    status, gallery_images = page.locator("#status"), page.locator("#results-gallery img")

    page.locator("#query-text textarea, #query-text input").first.fill("a red circle")
    page.locator("#search-button").click()
    expect(status).to_contain_text("12 results for “a red circle” in")
    expect(gallery_images).to_have_count(12)
    assert len({countries[photo_id] for photo_id in _shown_photo_ids(gallery_images)}) > 1

    # The Filters accordion starts closed; open it and pick one country from the list, which names
    # each country the photos have with how many photos it has.
    country = page.locator("#filter-country input[role=combobox]")
    expect(country).to_be_hidden()
    page.locator("#filters").get_by_text("Filters").first.click()
    expect(page.locator("#min-score")).to_contain_text("0 = off")
    country.click()
    options = page.locator("#filter-country").get_by_role("option")
    expect(options).to_have_count(len(set(countries.values()) - {""}))
    japan = page.locator("#filter-country").get_by_role("option", name=re.compile(r"^Japan \("))
    expect(japan).to_have_accessible_name(f"Japan ({len(in_japan)})")
    japan.click()
    chosen = page.locator("#filter-country .token")
    expect(chosen).to_have_text([f"Japan ({len(in_japan)})"])
    page.locator("#search-button").click()
    expect(status).to_contain_text(f"{len(in_japan)} results for “a red circle” (country: Japan) in")
    expect(gallery_images).to_have_count(len(in_japan))
    assert sorted(_shown_photo_ids(gallery_images)) == in_japan
    page.screenshot(path=str(output_dir / "filtered_by_country.png"), full_page=True)

    # A random photo, then more like it: still only Japanese photos.
    page.locator("#random-button").click()
    expect(status).to_contain_text("Random photo (country: Japan): press More like this")
    expect(page.locator("#chosen-details")).to_contain_text("sample")
    assert re.findall(r"sample\d{5}", page.locator("#chosen-details").inner_text())[0] in in_japan
    page.locator("#more-button").click()
    expect(status).to_contain_text(re.compile(r"results for photos like sample\d{5} \(country: Japan\)"))
    expect(gallery_images).not_to_have_count(0)
    assert {countries[photo_id] for photo_id in _shown_photo_ids(gallery_images)} == {"Japan"}

    # A country no photo has, typed: the status line says the filters are why, and the gallery empties.
    chosen.filter(has_text="Japan").locator(".token-remove").click()
    country.fill("Atlantis")
    country.press("Enter")
    expect(chosen).to_have_text(["Atlantis"])
    page.locator("#search-button").click()
    expect(status).to_contain_text("No photos match these filters (country: Atlantis) for “a red circle”; clear them.")
    expect(gallery_images).to_have_count(0)
    page.screenshot(path=str(output_dir / "no_photo_matches.png"), full_page=True)

    expect(page.locator("body")).not_to_contain_text("Traceback")
    page.close()


def test_a_gateway_that_is_down_is_said_plainly(ui_without_gateway, browser, output_dir):
    expect = playwright_sync.expect
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(ui_without_gateway)
    box = page.locator("#query-text textarea, #query-text input").first
    box.fill("anything")
    page.locator("#search-button").click()
    expect(page.locator("#banner")).to_contain_text("cannot be reached")
    expect(page.locator("body")).not_to_contain_text("Traceback")
    page.screenshot(path=str(output_dir / "gateway_down.png"), full_page=True)
    page.close()
