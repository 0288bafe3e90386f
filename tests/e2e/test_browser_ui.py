"""The search page in headless Chromium: type a query, see the gallery, draw a random photo.

The UI runs as its own process (`python -m ui`) in front of a stand-in gateway process
(`tests/e2e/ui_fake_gateway.py`) whose photos are generated JPEGs served by a local HTTP server.
The page is driven the way a person uses it and a screenshot is saved under test-output/.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import free_port, wait_for_http
from tools.sample_data import serve, write_sample_set

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
PHOTO_COUNT = 20
TIMEOUT_MS = 30_000

playwright_sync = pytest.importorskip("playwright.sync_api")


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "w")
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def ui_site(tmp_path_factory):
    """Image server (thread) + fake gateway (process) + UI (process); yields (ui_url, gateway, images_dir)."""
    workdir = tmp_path_factory.mktemp("ui")
    logs = ROOT / "test-output" / "browser_ui"
    logs.mkdir(parents=True, exist_ok=True)
    images, _ = serve(workdir)
    images_url = f"http://127.0.0.1:{images.server_address[1]}"
    tsv = write_sample_set(workdir, PHOTO_COUNT, images_url)

    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost"}
    api_port, ui_port = free_port(), free_port()
    gateway = _start(["-m", "tests.e2e.ui_fake_gateway", "--port", str(api_port), "--tsv", str(tsv)],
                     env, logs / "gateway.log")
    ui = _start(["-m", "ui", "--host", "127.0.0.1", "--port", str(ui_port)],
                {**env, "API_URL": f"http://127.0.0.1:{api_port}", "UI_API_TIMEOUT": "5"}, logs / "ui.log")
    try:
        wait_for_http(f"http://127.0.0.1:{api_port}/healthz", timeout=60, process=gateway)
        wait_for_http(f"http://127.0.0.1:{ui_port}/", timeout=120, process=ui)
        yield f"http://127.0.0.1:{ui_port}", gateway, workdir / "images"
    finally:
        _stop(ui)
        _stop(gateway)
        images.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (Debian: apt-get install chromium)")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


def test_search_random_photo_and_unreachable_gateway(ui_site, browser, output_dir):
    ui_url, gateway, images_dir = ui_site
    expect = playwright_sync.expect
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(ui_url)

    banner = page.locator("#banner")
    expect(banner).to_contain_text("random weights: results are meaningless")
    expect(page.locator("#stats")).to_contain_text(f"{PHOTO_COUNT} photos indexed")

    # Search with the button: the default top-k is 12, each result has its score and description.
    page.locator("#query-text textarea, #query-text input").first.fill("a red circle")
    page.locator("#search-button").click()
    gallery_images = page.locator("#results-gallery img")
    expect(gallery_images).to_have_count(12)
    expect(page.locator("#status")).to_contain_text("12 results for “a red circle”")
    gallery = page.locator("#results-gallery")
    expect(gallery).to_contain_text("0.900 · ")
    expect(gallery).to_contain_text(re.compile(r"0\.\d{3} · \w+"))
    # The browser loaded the images from the image server.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results-gallery img')].every(i => i.complete && i.naturalWidth > 0)")

    # Enter in the text box searches too.
    box = page.locator("#query-text textarea, #query-text input").first
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

    # The gateway's own sentence is shown, never a traceback.
    box.fill("boom")
    page.locator("#search-button").click()
    expect(page.locator("#status")).to_contain_text("The embedder is not answering")

    # With the gateway gone, a search says so in the banner.
    _stop(gateway)
    box.fill("anything")
    page.locator("#search-button").click()
    expect(banner).to_contain_text("cannot be reached")
    expect(page.locator("body")).not_to_contain_text("Traceback")
    page.screenshot(path=str(output_dir / "gateway_down.png"), full_page=True)
    page.close()
