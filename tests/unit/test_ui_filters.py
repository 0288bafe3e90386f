"""Unit tests of the search page's Filters accordion (ui/app.py): minimum score, the country and
photographer lists from the gateway's facets, what reaches the gateway, and how the events are wired."""
from __future__ import annotations

import gradio as gr
import pytest

from services.common.api_client import ApiError
from tests.unit.ui_support import FACETS, FakeClient, last_query
from ui.app import SearchPage, build_app, build_filters, wire
from ui.config import UISettings

# gr.Warning outside a request falls back to `warnings.warn`; the status line is what is asserted.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_filters_and_min_score_reach_the_gateway_exactly():
    client = FakeClient()
    status = SearchPage(client).search("dog", None, 0.5, 12, 0.25, " Japan ,Norway,, ", "  ana ")["status"]
    assert client.calls[0] == ("search", {
        "text": "dog", "image": None, "weight": 0.5, "top_k": 12, "min_score": 0.25,
        "filters": {"photo_location_country": ["Japan", "Norway"], "photographer_username": "ana"},
    })
    assert status.startswith("12 results for “dog” (country: Japan or Norway, photographer: ana, score ≥ 0.25) in ")


@pytest.mark.parametrize("country, photographer", [("", ""), (None, None), (" , ,", "   ")])
def test_empty_filter_boxes_and_a_zero_minimum_send_nothing(country, photographer):
    client = FakeClient()
    status = SearchPage(client).search("dog", None, 0.5, 12, 0, country, photographer)["status"]
    assert client.calls[0] == ("search", {"text": "dog", "image": None, "weight": 0.5, "top_k": 12})
    assert status.startswith("12 results for “dog” in 12 ms")


def test_one_value_is_an_equality_several_are_any_of():
    assert build_filters("Japan", "") == {"photo_location_country": "Japan"}
    assert build_filters("", "ana, bo") == {"photographer_username": ["ana", "bo"]}
    assert build_filters("", None) is None


def test_filters_go_with_an_image_search_too(tmp_path):
    image = tmp_path / "query.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    client = FakeClient()
    SearchPage(client).search("", str(image), 0.5, 3, 0.1, "Japan", "")
    query = client.calls[0][1]
    assert query["min_score"] == 0.1 and query["filters"] == {"photo_location_country": "Japan"}


def test_more_like_this_keeps_the_filters_and_min_score():
    client = FakeClient()
    page = SearchPage(client)
    photo = page.random_photo()["photo"]
    status = page.more_like_this(photo, 4, 0.3, "Japan", "ana,bo")["status"]
    assert client.calls[-2] == ("search", {
        "photo_id": "p7", "top_k": 4, "min_score": 0.3,
        "filters": {"photo_location_country": "Japan", "photographer_username": ["ana", "bo"]},
    })
    assert "photos like p7 (country: Japan, photographer: ana or bo, score ≥ 0.30)" in status


def test_filters_that_leave_nothing_say_so_and_what_to_loosen():
    page = SearchPage(FakeClient(found=0))
    out = page.search("dog", None, 0.5, 12, 0.0, "Atlantis", "")
    assert (out["gallery"], out["results"]) == ([], [])
    assert out["status"] == "No photos match these filters (country: Atlantis) for “dog”; clear them."
    status = page.search("dog", None, 0.5, 12, 0.9, "", "")["status"]
    assert status == "No photos match these filters (score ≥ 0.90) for “dog”; lower the minimum score."
    status = page.search("dog", None, 0.5, 12, 0.9, "Atlantis", "")["status"]
    assert status.endswith("; clear them or lower the minimum score.")
    # Without filters an empty answer means an empty index, as before.
    status = page.search("dog", None, 0.5, 12, 0, "", "")["status"]
    assert status == "No photos found for “dog”. Is anything indexed yet?"


def test_a_filter_the_gateway_refuses_shows_its_sentence():
    sentence = "The filter on 'photo_location_country' needs text, not 3."
    client = FakeClient(error=ApiError(422, "invalid_filter", sentence))
    out = SearchPage(client).search("dog", None, 0.5, 12, 0.2, "Japan", "")
    assert client.calls[0][1]["filters"] == {"photo_location_country": "Japan"}
    assert out["status"] == "⚠️ The filter on 'photo\\_location\\_country' needs text, not 3."
    assert "gallery" not in out and "results" not in out  # the previous results stay
    assert out["banner"]["visible"] is False


def test_filters_sit_in_a_closed_accordion_and_reach_both_searches():
    app = build_app(UISettings(api_url="http://127.0.0.1:1", _env_file=None), client=FakeClient())
    blocks = {block.elem_id: block for block in app.blocks.values() if block.elem_id}
    assert isinstance(blocks["filters"], gr.Accordion) and blocks["filters"].open is False
    min_score = blocks["min-score"]
    assert (min_score.minimum, min_score.maximum, min_score.value) == (0, 1, 0) and "0 = off" in min_score.info
    narrowing = ["min-score", "filter-country", "filter-photographer", "filter-camera", "filter-taken"]
    inputs = {fn.fn.__name__: [block.elem_id for block in fn.inputs] for fn in app.fns.values()}
    # The mode and the relevance cut-off come first (handed on as keywords), the narrowing follows
    # top_k in every search; the term rows come after it.
    how = ["search-mode", "min-relevance"]
    assert inputs["search"][:2] == inputs["more_like_this"][:2] == inputs["less_like_this"][:2] == how
    assert inputs["search"][6:11] == narrowing and inputs["more_like_this"][-5:] == narrowing
    assert inputs["less_like_this"][8:13] == narrowing and inputs["search"][11:] == inputs["less_like_this"][13:]
    assert inputs["mode_changed"] == inputs["search"]
    assert inputs["random_photo"] == narrowing[1:]


# -- the filter lists -----------------------------------------------------------------------------


def test_filter_lists_are_filled_on_load_with_how_many_photos_each_value_has():
    client = FakeClient(facets=FACETS)
    out = SearchPage(client).load()
    assert out["country"] == {"__type__": "update", "choices": [
        ("Japan (10)", "Japan"), ("Korea, Republic of (4)", "Korea, Republic of"), ("Norway (3)", "Norway")]}
    assert out["photographer"] == {"__type__": "update", "choices": [("ana (1,200)", "ana")]}
    assert client.calls == [("stats", {}), ("facet", {"field": "photo_location_country", "limit": 200}),
                            ("facet", {"field": "photographer_username", "limit": 200}),
                            ("facet", {"field": "exif_camera_model", "limit": 200})]
    assert out["banner"]["visible"] is False and "1,234" in out["stats"]


def test_an_empty_store_gives_empty_lists():
    out = SearchPage(FakeClient()).load()
    assert out["country"]["choices"] == out["photographer"]["choices"] == []


def test_opening_the_filters_asks_again_for_the_lists():
    client = FakeClient()
    page = SearchPage(client)
    page.load()
    client.facets = FACETS  # photos were ingested since the page loaded
    out = page.filters_opened()
    assert out["country"]["choices"][0] == ("Japan (10)", "Japan")
    assert out["photographer"]["choices"] == [("ana (1,200)", "ana")]
    assert out["banner"]["visible"] is False


@pytest.mark.parametrize("error, banner_shown", [
    (ApiError(0, "unreachable", "Could not reach the gateway at http://127.0.0.1:1/v1/facets/x."), True),
    (ApiError(404, "not_found", "No route /v1/facets/photo_location_country."), False),
])
def test_failing_lists_are_left_empty_and_the_page_keeps_working(error, banner_shown):
    client = FakeClient(facets=FACETS, facet_error=error)
    page = SearchPage(client)
    out = page.load()
    assert out["country"]["choices"] == out["photographer"]["choices"] == []
    banner = out["banner"]
    assert banner["visible"] is banner_shown and ("cannot be reached" in banner["value"]) is banner_shown
    assert "1,234" in out["stats"]
    # Asked once: the second field is not waited for.
    assert [name for name, _ in client.calls].count("facet") == 1
    out = page.filters_opened()
    assert out["country"]["choices"] == out["photographer"]["choices"] == []
    assert out["banner"]["visible"] is banner_shown
    # Typed values still filter.
    status = page.search("dog", None, 0.5, 12, 0, ["Atlantis"], [])["status"]
    assert last_query(client)["filters"] == {"photo_location_country": "Atlantis"}
    assert status.startswith("12 results for “dog” (country: Atlantis) in ")


def test_a_list_selection_is_any_of_one_item_an_equality_and_nothing_no_filter():
    client = FakeClient()
    page = SearchPage(client)
    status = page.search("dog", None, 0.5, 12, 0, ["Japan", "Norway"], ["ana"])["status"]
    assert client.calls[0] == ("search", {
        "text": "dog", "image": None, "weight": 0.5, "top_k": 12,
        "filters": {"photo_location_country": ["Japan", "Norway"], "photographer_username": "ana"},
    })
    assert status.startswith("12 results for “dog” (country: Japan or Norway, photographer: ana) in ")
    status = page.search("dog", None, 0.5, 12, 0, [], [])["status"]
    assert client.calls[2] == ("search", {"text": "dog", "image": None, "weight": 0.5, "top_k": 12})
    assert status.startswith("12 results for “dog” in 12 ms")


def test_more_like_this_takes_the_lists_too():
    client = FakeClient()
    page = SearchPage(client)
    photo = page.random_photo()["photo"]
    status = page.more_like_this(photo, 4, 0, ["Japan"], ["ana", "bo"])["status"]
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
    app = build_app(UISettings(api_url="http://127.0.0.1:1", _env_file=None), client=FakeClient(facets=FACETS))
    blocks = {block.elem_id: block for block in app.blocks.values() if block.elem_id}
    for elem_id in ("filter-country", "filter-photographer", "filter-camera"):
        dropdown = blocks[elem_id]
        assert isinstance(dropdown, gr.Dropdown) and dropdown.multiselect and dropdown.allow_custom_value
        assert dropdown.value == [] and ("press Enter" in dropdown.info or "EXIF" in dropdown.info)
    fns = {fn.fn.__name__: fn for fn in app.fns.values()}
    outputs = {name: {block.elem_id for block in fn.outputs} for name, fn in fns.items()}
    assert outputs["load"] == {"banner", "stats", "filter-country", "filter-photographer", "filter-camera"}
    assert outputs["filters_opened"] == {"filter-country", "filter-photographer", "filter-camera", "banner"}
    assert [(blocks["filters"]._id, "expand")] == [tuple(target) for target in fns["filters_opened"].targets]
    # The wired event answers by component, whatever the order of its outputs.
    loaded = fns["load"].fn()
    assert loaded[blocks["filter-country"]]["choices"][0] == ("Japan (10)", "Japan")
    assert "1,234" in loaded[blocks["stats"]]


def test_wiring_keys_updates_by_component_and_skips_what_a_handler_leaves_out():
    status, gallery = gr.Markdown(), gr.Gallery()
    event = wire(lambda text: {"status": text}, {"gallery": gallery, "status": status})
    assert event("hi") == {gallery: gr.skip(), status: "hi"}
    with pytest.raises(KeyError, match="banner"):
        wire(lambda: {"banner": "x"}, {"status": status})()
