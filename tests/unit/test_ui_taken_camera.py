"""The Filters panel's Camera list and Taken dates: what reaches the gateway, what the status line
says, and a sentence for dates that cannot be read (nothing is sent then)."""
from __future__ import annotations

import pytest

from tests.unit.ui_support import FACETS, FakeClient
from ui.app import SearchPage, build_filters
from ui.dates import taken_range

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.mark.parametrize("text, wanted", [
    ("2023-01-01 to 2023-12-31", {"gte": "2023-01-01", "lt": "2024-01-01"}),
    ("2023-01-01 to", {"gte": "2023-01-01"}),
    ("to 2023-12-31", {"lt": "2024-01-01"}),
    ("2023-05-04", {"gte": "2023-05-04", "lt": "2023-05-05"}),
    ("  ", None),
])
def test_taken_dates_become_a_range_with_both_ends_included(text, wanted):
    assert taken_range(text) == wanted


@pytest.mark.parametrize("text, words", [("last summer", "not YYYY-MM-DD"), ("2023-02-01 to 2023-01-01",
                                                                             "ends before it starts")])
def test_unreadable_dates_say_why(text, words):
    with pytest.raises(ValueError, match=words):
        taken_range(text)


def test_camera_and_dates_join_the_other_filters():
    assert build_filters("Japan", "", camera=["X-T4"], taken="2023-01-01 to 2023-12-31") == {
        "photo_location_country": "Japan", "exif_camera_model": "X-T4",
        "taken_at": {"gte": "2023-01-01", "lt": "2024-01-01"}}


def test_a_search_with_camera_and_dates_reaches_the_gateway_and_the_status_says_so():
    client = FakeClient(facets=FACETS)
    page = SearchPage(client)
    page.load()
    status = page.search("dog", None, 0.5, 12, 0, None, None, ["x-t4", "EOS R5"], "2023-01-01 to 2023-06-30")["status"]
    assert client.calls[-1] == ("search", {"text": "dog", "image": None, "weight": 0.5, "top_k": 12, "filters": {
        "exif_camera_model": ["X-T4", "EOS R5"], "taken_at": {"gte": "2023-01-01", "lt": "2023-07-01"}}})
    assert "camera: X-T4 or EOS R5, taken: 2023-01-01 to 2023-06-30" in status


def test_unreadable_dates_send_nothing_and_show_a_sentence():
    client = FakeClient()
    page = SearchPage(client)
    out = page.search("dog", None, 0.5, 12, 0, None, None, None, "last summer")
    assert "not YYYY-MM-DD" in out["status"] and not [c for c in client.calls if c[0] == "search"]
    out = page.random_photo(None, None, None, "2023-02-01 to 2023-01-01")
    assert "ends before it starts" in out["status"] and not [c for c in client.calls if c[0] == "random_photo"]
    page.random_photo(None, None, "X-T4", "2023")  # a year alone is not a date either
    assert not [c for c in client.calls if c[0] == "random_photo"]
    page.random_photo(None, None, "X-T4", "2023-03-01")
    assert client.calls[-1] == ("random_photo", {"filters": {"exif_camera_model": "X-T4", "taken_at": {
        "gte": "2023-03-01", "lt": "2023-03-02"}}})
