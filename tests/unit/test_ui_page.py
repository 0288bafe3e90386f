"""Unit tests of the search page's behaviour (ui/app.py `SearchPage`), driven with a fake gateway client:
searching, the banner, random photos and "more like this". Each event's answer is keyed by output name."""
from __future__ import annotations

import gradio as gr
import pytest

from services.common.api_client import ApiError
from tests.unit.ui_support import FakeClient, result
from ui.app import EMPTY_QUERY, QUERY_PLACEHOLDER, RANDOM_WEIGHTS_BANNER, SearchPage, build_app, wants_weight
from ui.config import UISettings

# gr.Warning outside a request falls back to `warnings.warn`; the status line is what is asserted.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "query.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg, the fake client does not care")
    return str(path)


def test_weight_only_matters_with_both_text_and_image():
    assert wants_weight("dog", "/tmp/a.jpg")
    assert not wants_weight("   ", "/tmp/a.jpg")
    assert not wants_weight("dog", None)
    page = SearchPage(FakeClient())
    assert page.query_changed("dog", "/tmp/a.jpg") == {"__type__": "update", "visible": True}


def test_text_search_fills_gallery_and_says_how_many():
    client = FakeClient()
    out = SearchPage(client).search("  red door ", None, 0.8, 12)
    assert client.calls == [("search", {"text": "red door", "image": None, "weight": 0.5, "top_k": 12}),
                            ("stats", {})]
    assert len(out["gallery"]) == 12 and out["gallery"][0] == ("http://img.test/p0.jpg", "0.500 · photo 0")
    assert len(out["results"]) == 12
    assert out["status"].startswith("12 results for “red door” in 12 ms")
    assert out["banner"]["visible"] is False
    assert "1,234" in out["stats"]


def test_text_and_image_search_sends_both_and_the_weight(image_file):
    client = FakeClient()
    SearchPage(client).search("dog", image_file, 0.8, 5)
    query = client.calls[0][1]
    assert query["text"] == "dog" and query["image"].startswith(b"\xff\xd8") and query["weight"] == 0.8


def test_empty_query_asks_for_input_without_calling_the_gateway():
    client = FakeClient()
    out = SearchPage(client).search("   ", None, 0.5, 12)
    assert client.calls == []
    assert EMPTY_QUERY in out["status"]
    assert "gallery" not in out and "results" not in out  # what was shown stays


def test_gateway_sentence_is_shown_not_a_traceback():
    client = FakeClient(error=ApiError(422, "invalid_request", "top_k must be at most 100."))
    out = SearchPage(client).search("dog", None, 0.5, 12)
    assert "top\\_k must be at most 100." in out["status"]
    assert out["banner"]["visible"] is False


def test_unreachable_gateway_shows_the_banner_until_it_answers_again():
    client = FakeClient(error=ApiError(0, "unreachable", "The gateway at http://127.0.0.1:1 did not answer."))
    page = SearchPage(client)
    out = page.load()
    assert out["banner"]["visible"] is True and "cannot be reached" in out["banner"]["value"]
    assert "not available" in out["stats"]
    # The filter lists are left empty without waiting for two more failures.
    assert out["country"]["choices"] == out["photographer"]["choices"] == []
    assert [name for name, _ in client.calls] == ["stats"]
    client.error = None
    assert page.search("dog", None, 0.5, 3)["banner"]["visible"] is False


def test_random_weights_banner_comes_from_stats_and_searches():
    page = SearchPage(FakeClient(random_weights=True))
    banner = page.load()["banner"]
    assert banner == {"__type__": "update", "value": RANDOM_WEIGHTS_BANNER, "visible": True}
    assert "results are meaningless" in banner["value"]


def test_random_photo_then_more_like_this_searches_by_its_id():
    client = FakeClient()
    page = SearchPage(client)
    shown = page.random_photo()
    assert '<img src="http://img.test/p7.jpg" alt="a red door"' in shown["photo_image"]
    details = shown["photo_details"]
    assert "a red door" in details and "Ana" in details and "https://unsplash.com/photos/p7" in details
    assert shown["photo_box"]["visible"] is True
    out = page.more_like_this(shown["photo"], 4)
    assert client.calls[-2] == ("search", {"photo_id": "p7", "top_k": 4})
    assert len(out["gallery"]) == 4


def test_random_photo_stays_within_the_country_and_photographer_filters():
    client = FakeClient()
    page = SearchPage(client)
    status = page.random_photo(["Japan", "Norway"], "ana")["status"]
    assert client.calls[-1] == ("random_photo", {"filters": {"photo_location_country": ["Japan", "Norway"],
                                                             "photographer_username": "ana"}})
    assert status == ("Random photo (country: Japan or Norway, photographer: ana): "
                      "press **More like this** to search with it.")
    page.random_photo([], None)
    assert client.calls[-1] == ("random_photo", {})


def test_random_photo_that_no_photo_matches_says_so():
    client = FakeClient()
    client.error = ApiError(404, "no_match", "No stored photo matches these filters; loosen or clear them.")
    out = SearchPage(client).random_photo("Atlantis")
    assert out["status"] == "⚠️ No stored photo matches these filters; loosen or clear them."
    # The chosen photo and its box stay as they were.
    assert set(out) == {"status", "banner"}


def test_more_like_this_without_a_photo_says_what_to_do():
    client = FakeClient()
    out = SearchPage(client).more_like_this(None, 4)
    assert client.calls == [] and "Random photo" in out["status"]


def test_selecting_a_result_makes_it_the_chosen_photo():
    page = SearchPage(FakeClient())
    results = [result(0), result(1, photo_description="second")]
    out = page.select_result(results, gr.SelectData(None, {"index": 1, "value": None, "selected": True}))
    assert out["photo"]["photo_id"] == "p1" and "second" in out["photo_details"]
    assert 'src="http://img.test/p1.jpg"' in out["photo_image"] and out["photo_box"]["visible"] is True
    assert page.select_result(results, gr.SelectData(None, {"index": 5, "value": None})) == {}


def test_an_unexpected_failure_becomes_a_sentence_not_a_traceback(caplog):
    client = FakeClient(error=RuntimeError("boom"))  # type: ignore[arg-type]
    status = SearchPage(client).search("dog", None, 0.5, 3)["status"]
    assert "Something went wrong" in status and "boom" not in status and "Traceback" not in status
    assert "unexpected error in the UI" in caplog.text


def test_page_has_the_controls_tests_and_users_rely_on():
    app = build_app(UISettings(api_url="http://127.0.0.1:1", _env_file=None), client=FakeClient())
    ids = {block.elem_id for block in app.blocks.values()}
    assert {"query-text", "query-image", "search-button", "random-button", "results-gallery", "banner",
            "status", "stats", "top-k", "weight", "more-button"} <= ids
    top_k = next(b for b in app.blocks.values() if b.elem_id == "top-k")
    assert (top_k.minimum, top_k.maximum, top_k.value) == (1, 50, 12)
    # The search box invites a query in Spanish as well as English, and so do its examples.
    box = next(b for b in app.blocks.values() if b.elem_id == "query-text")
    assert box.placeholder == QUERY_PLACEHOLDER == 'Try "perro en la playa" or "a dog on the beach"'
    examples = next(b for b in app.blocks.values() if b.elem_id == "query-examples")
    assert {"atardecer en la montaña", "a red car in the city"} <= {sample[0] for sample in examples.samples}


def test_stats_line_names_the_model_that_answers():
    out = SearchPage(FakeClient()).load()
    assert "Model: clip-test · 512-d vectors" in out["stats"]


def test_settings_read_ui_prefix_and_shared_api_url(monkeypatch):
    monkeypatch.setenv("UI_PORT", "7999")
    monkeypatch.setenv("API_URL", "http://gateway:8000/")
    monkeypatch.setenv("UI_API_KEY", "k1")
    settings = UISettings(_env_file=None)
    assert (settings.port, settings.api_url, settings.api_key) == (7999, "http://gateway:8000", "k1")
