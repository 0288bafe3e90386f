"""Unit tests of the search page's behaviour (ui/app.py), driven with a fake gateway client."""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pytest  # noqa: E402

from services.common.api_client import ApiError  # noqa: E402
from ui.app import (  # noqa: E402
    EMPTY_QUERY,
    RANDOM_WEIGHTS_BANNER,
    SearchPage,
    build_app,
    build_filters,
    caption_for,
    gallery_items,
    stats_markdown,
    wants_weight,
)
from ui.config import UISettings  # noqa: E402

# gr.Warning outside a request falls back to `warnings.warn`; the status line is what is asserted.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def result(n: int, **extra) -> dict:
    return {"photo_id": f"p{n}", "photo_image_url": f"http://img.test/p{n}.jpg", "score": 0.5 - n / 100,
            "rank": n + 1, **extra}


class FakeClient:
    """Records calls; answers like the gateway, or raises the error it is given."""

    def __init__(self, random_weights: bool = False, error: ApiError | None = None, found: int | None = None,
                 facets: dict[str, list[dict]] | None = None, facet_error: ApiError | None = None):
        self.random_weights = random_weights
        self.error = error
        self.found = found  # how many results a search finds; top_k when None
        self.facets = facets or {}  # the values /v1/facets/{field} lists, most photos first
        self.facet_error = facet_error  # raised by facet() only
        self.calls: list[tuple[str, dict]] = []

    def _answer(self, name: str, **kwargs):
        self.calls.append((name, kwargs))
        if self.error:
            raise self.error

    def stats(self):
        self._answer("stats")
        return {"photos": 1234, "model": {"name": "clip-test", "dim": 512}, "random_weights": self.random_weights}

    def search(self, **query):
        self._answer("search", **query)
        count = query.get("top_k", 10) if self.found is None else self.found
        results = [result(n, photo_description=f"photo {n}") for n in range(count)]
        return {"results": results, "took_ms": 12.3, "model": "clip-test", "random_weights": self.random_weights}

    def facet(self, field, limit=100):
        self._answer("facet", field=field, limit=limit)
        if self.facet_error:
            raise self.facet_error
        return self.facets.get(field, [])[:limit]

    def random_photo(self, **query):
        self._answer("random_photo", **query)
        return result(7, photo_description="a red door", photographer_first_name="Ana",
                      photo_url="https://unsplash.com/photos/p7")


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "query.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg, the fake client does not care")
    return str(path)


def test_caption_prefers_description_then_ai_description_then_id():
    assert caption_for(result(0, photo_description="A  dog\n on sand")) == "0.500 · A dog on sand"
    assert caption_for(result(1, ai_description="a cat")) == "0.490 · a cat"
    assert caption_for(result(2)) == "0.480 · p2"
    long = caption_for(result(3, photo_description="word " * 50))
    assert len(long) < 110 and long.endswith("…")


def test_gallery_items_pair_urls_with_captions_and_skip_rows_without_url():
    items = gallery_items([result(0), {"photo_id": "x", "score": 0.1}])
    assert items == [("http://img.test/p0.jpg", "0.500 · p0")]


def test_stats_line_names_count_and_model():
    line = stats_markdown({"photos": 25000, "model": {"name": "openai/clip", "dim": 512}, "random_weights": True})
    assert "25,000" in line and "openai/clip" in line and "512" in line and "random weights" in line
    assert "not available" in stats_markdown(None)
    assert "model unknown" in stats_markdown({"photos": 3, "model": None})


def test_weight_only_matters_with_both_text_and_image():
    assert wants_weight("dog", "/tmp/a.jpg")
    assert not wants_weight("   ", "/tmp/a.jpg")
    assert not wants_weight("dog", None)


def test_text_search_fills_gallery_and_says_how_many():
    client = FakeClient()
    gallery, results, status, banner, stats = SearchPage(client).search("  red door ", None, 0.8, 12)
    assert client.calls == [("search", {"text": "red door", "image": None, "weight": 0.5, "top_k": 12}),
                            ("stats", {})]
    assert len(gallery) == 12 and gallery[0] == ("http://img.test/p0.jpg", "0.500 · photo 0")
    assert len(results) == 12
    assert status.startswith("12 results for “red door” in 12 ms")
    assert banner["visible"] is False
    assert "1,234" in stats


def test_text_and_image_search_sends_both_and_the_weight(image_file):
    client = FakeClient()
    SearchPage(client).search("dog", image_file, 0.8, 5)
    query = client.calls[0][1]
    assert query["text"] == "dog" and query["image"].startswith(b"\xff\xd8") and query["weight"] == 0.8


def test_empty_query_asks_for_input_without_calling_the_gateway():
    client = FakeClient()
    *_, status, banner, _ = SearchPage(client).search("   ", None, 0.5, 12)
    assert client.calls == []
    assert EMPTY_QUERY in status


def test_gateway_sentence_is_shown_not_a_traceback():
    client = FakeClient(error=ApiError(422, "invalid_request", "top_k must be at most 100."))
    _, _, status, banner, _ = SearchPage(client).search("dog", None, 0.5, 12)
    assert "top\\_k must be at most 100." in status
    assert banner["visible"] is False


def test_unreachable_gateway_shows_the_banner_until_it_answers_again():
    client = FakeClient(error=ApiError(0, "unreachable", "The gateway at http://127.0.0.1:1 did not answer."))
    page = SearchPage(client)
    banner, stats, country, photographer = page.load()
    assert banner["visible"] is True and "cannot be reached" in banner["value"]
    assert "not available" in stats
    # The filter lists are left empty without waiting for two more failures.
    assert country["choices"] == photographer["choices"] == []
    assert [name for name, _ in client.calls] == ["stats"]
    client.error = None
    *_, banner, _ = page.search("dog", None, 0.5, 3)
    assert banner["visible"] is False


def test_random_weights_banner_comes_from_stats_and_searches():
    page = SearchPage(FakeClient(random_weights=True))
    banner, *_ = page.load()
    assert banner == {"__type__": "update", "value": RANDOM_WEIGHTS_BANNER, "visible": True}
    assert "results are meaningless" in banner["value"]


def test_random_photo_then_more_like_this_searches_by_its_id():
    client = FakeClient()
    page = SearchPage(client)
    image, details, photo, status, _, box = page.random_photo()
    assert '<img src="http://img.test/p7.jpg" alt="a red door"' in image
    assert "a red door" in details and "Ana" in details and "https://unsplash.com/photos/p7" in details
    assert box["visible"] is True
    gallery, *_ = page.more_like_this(photo, 4)
    assert client.calls[-2] == ("search", {"photo_id": "p7", "top_k": 4})
    assert len(gallery) == 4


def test_random_photo_stays_within_the_country_and_photographer_filters():
    client = FakeClient()
    page = SearchPage(client)
    *_, status, _, _ = page.random_photo(["Japan", "Norway"], "ana")
    assert client.calls[-1] == ("random_photo", {"filters": {"photo_location_country": ["Japan", "Norway"],
                                                             "photographer_username": "ana"}})
    assert status == ("Random photo (country: Japan or Norway, photographer: ana): "
                      "press **More like this** to search with it.")
    page.random_photo([], None)
    assert client.calls[-1] == ("random_photo", {})


def test_random_photo_that_no_photo_matches_says_so():
    client = FakeClient()
    client.error = ApiError(404, "no_match", "No stored photo matches these filters; loosen or clear them.")
    image, details, photo, status, banner, box = SearchPage(client).random_photo("Atlantis")
    assert status == "⚠️ No stored photo matches these filters; loosen or clear them."
    assert photo == {"__type__": "update"} and box == {"__type__": "update"}


def test_more_like_this_without_a_photo_says_what_to_do():
    client = FakeClient()
    *_, status, _, _ = SearchPage(client).more_like_this(None, 4)
    assert client.calls == [] and "Random photo" in status


def test_selecting_a_result_makes_it_the_chosen_photo():
    page = SearchPage(FakeClient())
    results = [result(0), result(1, photo_description="second")]
    event = gr.SelectData(None, {"index": 1, "value": None, "selected": True})
    image, details, photo, box = page.select_result(results, event)
    assert photo["photo_id"] == "p1" and "second" in details and 'src="http://img.test/p1.jpg"' in image


def test_photo_html_escapes_what_the_gateway_sends():
    from ui.app import photo_html

    tag = photo_html({"photo_image_url": 'http://x.test/a.jpg"onerror="alert(1)', "photo_description": "<b>"})
    assert '"onerror' not in tag and "&quot;onerror" in tag and "&lt;b&gt;" in tag
    assert "<img" not in photo_html({"photo_image_url": "javascript:alert(1)"})


def test_page_has_the_controls_tests_and_users_rely_on():
    app = build_app(UISettings(api_url="http://127.0.0.1:1", _env_file=None), client=FakeClient())
    ids = {block.elem_id for block in app.blocks.values()}
    assert {"query-text", "query-image", "search-button", "random-button", "results-gallery", "banner",
            "status", "stats", "top-k", "weight", "more-button"} <= ids
    top_k = next(b for b in app.blocks.values() if b.elem_id == "top-k")
    assert (top_k.minimum, top_k.maximum, top_k.value) == (1, 50, 12)


def test_settings_read_ui_prefix_and_shared_api_url(monkeypatch):
    monkeypatch.setenv("UI_PORT", "7999")
    monkeypatch.setenv("API_URL", "http://gateway:8000/")
    monkeypatch.setenv("UI_API_KEY", "k1")
    settings = UISettings(_env_file=None)
    assert (settings.port, settings.api_url, settings.api_key) == (7999, "http://gateway:8000", "k1")


def test_an_unexpected_failure_becomes_a_sentence_not_a_traceback(caplog):
    client = FakeClient(error=RuntimeError("boom"))  # type: ignore[arg-type]
    *_, status, banner, _ = SearchPage(client).search("dog", None, 0.5, 3)
    assert "Something went wrong" in status and "boom" not in status and "Traceback" not in status
    assert "unexpected error in the UI" in caplog.text


def test_chosen_photo_links_to_its_page_and_names_unsplash_only_for_unsplash():
    unsplash = {"photo_id": "a1", "photo_image_url": "https://images.unsplash.com/a1",
                "photo_url": "https://unsplash.com/photos/a1", "photo_description": "A red door"}
    local = unsplash | {"photo_url": "http://127.0.0.1:8090/images/a1.jpg"}
    _, details, _ = SearchPage._show_photo(unsplash)
    assert "[open on Unsplash](https://unsplash.com/photos/a1)" in details
    _, details, _ = SearchPage._show_photo(local)
    assert "[open on its page](http://127.0.0.1:8090/images/a1.jpg)" in details and "Unsplash" not in details


# -- the Filters accordion ------------------------------------------------------------------------


def test_filters_and_min_score_reach_the_gateway_exactly():
    client = FakeClient()
    *_, status, _, _ = SearchPage(client).search("dog", None, 0.5, 12, 0.25, " Japan ,Norway,, ", "  ana ")
    assert client.calls[0] == ("search", {
        "text": "dog", "image": None, "weight": 0.5, "top_k": 12, "min_score": 0.25,
        "filters": {"photo_location_country": ["Japan", "Norway"], "photographer_username": "ana"},
    })
    assert status.startswith("12 results for “dog” (country: Japan or Norway, photographer: ana, score ≥ 0.25) in ")


@pytest.mark.parametrize("country, photographer", [("", ""), (None, None), (" , ,", "   ")])
def test_empty_filter_boxes_and_a_zero_minimum_send_nothing(country, photographer):
    client = FakeClient()
    *_, status, _, _ = SearchPage(client).search("dog", None, 0.5, 12, 0, country, photographer)
    assert client.calls[0] == ("search", {"text": "dog", "image": None, "weight": 0.5, "top_k": 12})
    assert status.startswith("12 results for “dog” in 12 ms")


def test_one_value_is_an_equality_several_are_any_of():
    assert build_filters("Japan", "") == {"photo_location_country": "Japan"}
    assert build_filters("", "ana, bo") == {"photographer_username": ["ana", "bo"]}
    assert build_filters("", None) is None


def test_filters_go_with_an_image_search_too(image_file):
    client = FakeClient()
    SearchPage(client).search("", image_file, 0.5, 3, 0.1, "Japan", "")
    query = client.calls[0][1]
    assert query["min_score"] == 0.1 and query["filters"] == {"photo_location_country": "Japan"}


def test_more_like_this_keeps_the_filters_and_min_score():
    client = FakeClient()
    page = SearchPage(client)
    *_, photo, _, _, _ = page.random_photo()
    *_, status, _, _ = page.more_like_this(photo, 4, 0.3, "Japan", "ana,bo")
    assert client.calls[-2] == ("search", {
        "photo_id": "p7", "top_k": 4, "min_score": 0.3,
        "filters": {"photo_location_country": "Japan", "photographer_username": ["ana", "bo"]},
    })
    assert "photos like p7 (country: Japan, photographer: ana or bo, score ≥ 0.30)" in status


def test_filters_that_leave_nothing_say_so_and_what_to_loosen():
    page = SearchPage(FakeClient(found=0))
    gallery, results, status, _, _ = page.search("dog", None, 0.5, 12, 0.0, "Atlantis", "")
    assert (gallery, results) == ([], [])
    assert status == "No photos match these filters (country: Atlantis) for “dog”; clear them."
    *_, status, _, _ = page.search("dog", None, 0.5, 12, 0.9, "", "")
    assert status == "No photos match these filters (score ≥ 0.90) for “dog”; lower the minimum score."
    *_, status, _, _ = page.search("dog", None, 0.5, 12, 0.9, "Atlantis", "")
    assert status.endswith("; clear them or lower the minimum score.")
    # Without filters an empty answer means an empty index, as before.
    *_, status, _, _ = page.search("dog", None, 0.5, 12, 0, "", "")
    assert status == "No photos found for “dog”. Is anything indexed yet?"


def test_a_filter_the_gateway_refuses_shows_its_sentence():
    sentence = "The filter on 'photo_location_country' needs text, not 3."
    client = FakeClient(error=ApiError(422, "invalid_filter", sentence))
    gallery, results, status, banner, _ = SearchPage(client).search("dog", None, 0.5, 12, 0.2, "Japan", "")
    assert client.calls[0][1]["filters"] == {"photo_location_country": "Japan"}
    assert status == "⚠️ The filter on 'photo\\_location\\_country' needs text, not 3."
    assert gallery == gr.update() and results == gr.update()  # the previous results stay
    assert banner["visible"] is False


def test_chosen_photo_says_where_it_was_taken():
    _, details, _ = SearchPage._show_photo(result(1, photo_location_name="Kyoto, Japan",
                                                  photo_location_country="Japan"))
    assert "in Kyoto, Japan" in details
    _, details, _ = SearchPage._show_photo(result(1, photo_location_country="Norway"))
    assert "in Norway" in details


def test_filters_sit_in_a_closed_accordion_and_reach_both_searches():
    app = build_app(UISettings(api_url="http://127.0.0.1:1", _env_file=None), client=FakeClient())
    blocks = {block.elem_id: block for block in app.blocks.values() if block.elem_id}
    assert isinstance(blocks["filters"], gr.Accordion) and blocks["filters"].open is False
    min_score = blocks["min-score"]
    assert (min_score.minimum, min_score.maximum, min_score.value) == (0, 1, 0) and "0 = off" in min_score.info
    narrowing = ["min-score", "filter-country", "filter-photographer"]
    inputs = {fn.fn.__name__: [block.elem_id for block in fn.inputs] for fn in app.fns.values()}
    assert inputs["search"][-3:] == narrowing and inputs["more_like_this"][-3:] == narrowing


# -- the filter lists -----------------------------------------------------------------------------

FACETS = {
    "photo_location_country": [{"value": "Japan", "photos": 10}, {"value": "Korea, Republic of", "photos": 4},
                               {"value": "Norway", "photos": 3}],
    "photographer_username": [{"value": "ana", "photos": 1200}],
}


def last_query(client: FakeClient) -> dict:
    """What the last search sent to the gateway."""
    return next(query for name, query in reversed(client.calls) if name == "search")


def test_filter_lists_are_filled_on_load_with_how_many_photos_each_value_has():
    client = FakeClient(facets=FACETS)
    banner, stats, country, photographer = SearchPage(client).load()
    assert country == {"__type__": "update", "choices": [
        ("Japan (10)", "Japan"), ("Korea, Republic of (4)", "Korea, Republic of"), ("Norway (3)", "Norway")]}
    assert photographer == {"__type__": "update", "choices": [("ana (1,200)", "ana")]}
    assert client.calls == [("stats", {}), ("facet", {"field": "photo_location_country", "limit": 200}),
                            ("facet", {"field": "photographer_username", "limit": 200})]
    assert banner["visible"] is False and "1,234" in stats


def test_an_empty_store_gives_empty_lists():
    _, _, country, photographer = SearchPage(FakeClient()).load()
    assert country["choices"] == photographer["choices"] == []


def test_opening_the_filters_asks_again_for_the_lists():
    client = FakeClient()
    page = SearchPage(client)
    page.load()
    client.facets = FACETS  # photos were ingested since the page loaded
    country, photographer, banner = page.filters_opened()
    assert country["choices"][0] == ("Japan (10)", "Japan") and photographer["choices"] == [("ana (1,200)", "ana")]
    assert banner["visible"] is False


@pytest.mark.parametrize("error, banner_shown", [
    (ApiError(0, "unreachable", "Could not reach the gateway at http://127.0.0.1:1/v1/facets/x."), True),
    (ApiError(404, "not_found", "No route /v1/facets/photo_location_country."), False),
])
def test_failing_lists_are_left_empty_and_the_page_keeps_working(error, banner_shown):
    client = FakeClient(facets=FACETS, facet_error=error)
    page = SearchPage(client)
    banner, stats, country, photographer = page.load()
    assert country["choices"] == photographer["choices"] == []
    assert banner["visible"] is banner_shown and ("cannot be reached" in banner["value"]) is banner_shown
    assert "1,234" in stats
    # Asked once: the second field is not waited for.
    assert [name for name, _ in client.calls].count("facet") == 1
    country, photographer, banner = page.filters_opened()
    assert country["choices"] == photographer["choices"] == [] and banner["visible"] is banner_shown
    # Typed values still filter.
    *_, status, _, _ = page.search("dog", None, 0.5, 12, 0, ["Atlantis"], [])
    assert last_query(client)["filters"] == {"photo_location_country": "Atlantis"}
    assert status.startswith("12 results for “dog” (country: Atlantis) in ")


def test_a_list_selection_is_any_of_one_item_an_equality_and_nothing_no_filter():
    client = FakeClient()
    page = SearchPage(client)
    *_, status, _, _ = page.search("dog", None, 0.5, 12, 0, ["Japan", "Norway"], ["ana"])
    assert client.calls[0] == ("search", {
        "text": "dog", "image": None, "weight": 0.5, "top_k": 12,
        "filters": {"photo_location_country": ["Japan", "Norway"], "photographer_username": "ana"},
    })
    assert status.startswith("12 results for “dog” (country: Japan or Norway, photographer: ana) in ")
    *_, status, _, _ = page.search("dog", None, 0.5, 12, 0, [], [])
    assert client.calls[2] == ("search", {"text": "dog", "image": None, "weight": 0.5, "top_k": 12})
    assert status.startswith("12 results for “dog” in 12 ms")


def test_more_like_this_takes_the_lists_too():
    client = FakeClient()
    page = SearchPage(client)
    *_, photo, _, _, _ = page.random_photo()
    *_, status, _, _ = page.more_like_this(photo, 4, 0, ["Japan"], ["ana", "bo"])
    assert client.calls[-2] == ("search", {
        "photo_id": "p7", "top_k": 4,
        "filters": {"photo_location_country": "Japan", "photographer_username": ["ana", "bo"]},
    })
    assert "photos like p7 (country: Japan, photographer: ana or bo)" in status


def test_listed_values_stay_whole_and_typed_ones_split_at_commas():
    client = FakeClient(facets=FACETS)
    page = SearchPage(client)
    page.load()
    page.search("dog", None, 0.5, 12, 0, ["Korea, Republic of", " Japan, Norway ", "Japan"], None)
    assert last_query(client)["filters"] == {"photo_location_country": ["Korea, Republic of", "Japan", "Norway"]}
    assert build_filters(["Korea, Republic of"], None) == {"photo_location_country": ["Korea", "Republic of"]}


def test_a_typed_value_takes_the_listed_spelling():
    # The store matches exactly: "japan" typed and entered must still find the photos of "Japan".
    client = FakeClient(facets=FACETS)
    page = SearchPage(client)
    page.load()
    page.search("dog", None, 0.5, 12, 0, ["japan", "NORWAY, atlantis"], None)
    assert last_query(client)["filters"] == {"photo_location_country": ["Japan", "Norway", "atlantis"]}


def test_filters_are_dropdowns_filled_on_load_and_when_the_accordion_opens():
    app = build_app(UISettings(api_url="http://127.0.0.1:1", _env_file=None), client=FakeClient())
    blocks = {block.elem_id: block for block in app.blocks.values() if block.elem_id}
    for elem_id in ("filter-country", "filter-photographer"):
        dropdown = blocks[elem_id]
        assert isinstance(dropdown, gr.Dropdown) and dropdown.multiselect and dropdown.allow_custom_value
        assert dropdown.value == [] and "press Enter" in dropdown.info
    outputs = {fn.fn.__name__: [block.elem_id for block in fn.outputs] for fn in app.fns.values()}
    assert outputs["load"] == ["banner", "stats", "filter-country", "filter-photographer"]
    assert outputs["filters_opened"] == ["filter-country", "filter-photographer", "banner"]
    opened = next(fn for fn in app.fns.values() if fn.fn.__name__ == "filters_opened")
    assert [(blocks["filters"]._id, "expand")] == [tuple(target) for target in opened.targets]
