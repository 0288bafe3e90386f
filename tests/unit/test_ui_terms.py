"""Unit tests of the query builder (ui/terms.py, ui/term_rows.py and `SearchPage`'s term events): extra
"more like / less like" rows become the gateway's `terms`, "Less like this", "Add to query", "Load more"
and the timings in the status line. Driven with a fake gateway client."""
from __future__ import annotations

import base64

import pytest

from tests.unit.ui_support import FakeClient, last_query
from ui.app import SearchPage, add_row, remove_row
from ui.formatting import gallery_items, timing_text
from ui.terms import MAX_ROWS, NO_FREE_ROW, ONLY_LESS_LIKE, TermError, extra_terms, main_terms, rows_of

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

NONE = ("", None, "", 1.0)  # an empty row: text, image, photo id, weight
NO_CAMERA_OR_DATE = (None, None)  # the Filters' camera and taken, before the rows


def rows(*given: tuple) -> list:
    """The page's flat row inputs: the given rows, then empty ones up to MAX_ROWS."""
    filled = list(given) + [NONE] * (MAX_ROWS - len(given))
    return [value for row in filled for value in row]


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "query.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 jpeg-ish")
    return str(path)


def test_rows_become_terms_with_their_weights_and_words(image_file):
    terms, words = extra_terms(rows_of(rows(("snow", None, "", -0.5), ("", image_file, "", 1.0),
                                            ("", None, " p3 ", -1.0), ("ignored at zero", None, "", 0.0))))
    assert terms == [{"text": "snow", "weight": -0.5},
                     {"image_base64": base64.b64encode(b"\xff\xd8\xff\xe0 jpeg-ish").decode(), "weight": 1.0},
                     {"photo_id": "p3", "weight": -1.0}]
    assert words == ["less like “snow” (×0.5)", "more like image 2", "less like photo p3"]


def test_a_row_with_two_things_says_which_to_keep(image_file):
    with pytest.raises(TermError, match="Term 1 has words and an image; keep one of them"):
        extra_terms(rows_of(rows(("snow", image_file, "", 1.0))))


def test_main_query_is_split_by_the_image_share():
    assert main_terms("dog", None, 0.8) == [{"text": "dog", "weight": 1.0}]
    encoded = base64.b64encode(b"img").decode()
    assert main_terms("dog", b"img", 0.25) == [{"text": "dog", "weight": 0.75},
                                                {"image_base64": encoded, "weight": 0.25}]
    assert main_terms("dog", b"img", 1.0) == [{"image_base64": encoded, "weight": 1.0}]
    assert main_terms("", None, 0.5) == []


def test_search_without_extra_terms_sends_the_plain_query():
    client = FakeClient()
    SearchPage(client).search("dog", None, 0.5, 12, 0, None, None, *NO_CAMERA_OR_DATE, *rows())
    assert last_query(client) == {"text": "dog", "image": None, "weight": 0.5, "top_k": 12}


def test_search_with_a_negative_term_sends_every_part_as_a_term():
    client = FakeClient()
    out = SearchPage(client).search("dog", None, 0.5, 6, 0.2, "Japan", None, *NO_CAMERA_OR_DATE, *rows(("snow", None, "", -1.0)))
    assert last_query(client) == {"top_k": 6, "min_score": 0.2, "filters": {"photo_location_country": "Japan"},
                                  "terms": [{"text": "dog", "weight": 1.0}, {"text": "snow", "weight": -1.0}]}
    assert out["status"].startswith("6 results for “dog”, less like “snow” (country: Japan, score ≥ 0.20) in 12 ms")
    assert out["query"]["terms"][1] == {"text": "snow", "weight": -1.0}


def test_terms_alone_search_but_only_less_like_is_refused():
    client = FakeClient()
    page = SearchPage(client)
    assert page.search("", None, 0.5, 4, 0, None, None, *NO_CAMERA_OR_DATE, *rows(("snow", None, "", 0.7)))["status"].startswith(
        "4 results for more like “snow” (×0.7)")
    out = page.search("", None, 0.5, 4, 0, None, None, *NO_CAMERA_OR_DATE, *rows(("snow", None, "", -1.0)))
    assert ONLY_LESS_LIKE in out["status"].replace("\\", "") and "gallery" not in out
    assert sum(name == "search" for name, _ in client.calls) == 1


def test_less_like_this_adds_the_photo_at_minus_one_and_searches_again():
    client = FakeClient()
    page = SearchPage(client)
    photo = page.random_photo()["photo"]
    out = page.less_like_this(photo, [True, False, False, False], "dog", None, 0.5, 5, 0, None, None,
                              *NO_CAMERA_OR_DATE, *rows(("snow", None, "", 0.5)))
    assert last_query(client)["terms"] == [{"text": "dog", "weight": 1.0}, {"text": "snow", "weight": 0.5},
                                           {"photo_id": "p7", "weight": -1.0}]
    assert out["term2_photo"] == "p7" and out["term2_weight"] == -1.0 and out["term2_row"]["visible"] is True
    assert out["term_shown"] == [True, True, False, False]
    assert "less like photo p7" in out["status"] and len(out["gallery"]) == 5


def test_less_like_this_on_a_photo_already_among_the_terms_turns_its_row_around():
    client = FakeClient()
    out = SearchPage(client).less_like_this({"photo_id": "p7"}, [True, True, False, False], "dog", None, 0.5, 5,
                                            0, None, None, *NO_CAMERA_OR_DATE, *rows(("snow", None, "", 1.0), ("", None, "p7", 1.0)))
    assert out["term2_weight"] == -1.0 and "term3_photo" not in out
    assert last_query(client)["terms"][-1] == {"photo_id": "p7", "weight": -1.0}


def test_less_like_this_with_every_row_taken_says_so():
    client = FakeClient()
    full = rows(*[(f"t{n}", None, "", 1.0) for n in range(MAX_ROWS)])
    out = SearchPage(client).less_like_this({"photo_id": "p7"}, [True] * MAX_ROWS, "dog", None, 0.5, 5, 0, None,
                                            None, *NO_CAMERA_OR_DATE, *full)
    assert NO_FREE_ROW in out["status"].replace("\\", "") and client.calls == []


def test_add_to_query_fills_a_free_row_for_the_next_search():
    page = SearchPage(FakeClient())
    out = page.add_to_query({"photo_id": "p2"}, [True, False, False, False], *rows(("snow", None, "", 1.0)))
    assert out["term2_photo"] == "p2" and out["term2_weight"] == 1.0 and "press **Search**" in out["status"]


def test_rows_are_shown_and_removed_empty():
    shown = add_row([True, False, False, False])
    assert shown["term_shown"] == [True, True, False, False] and shown["term2_row"]["visible"] is True
    removed = remove_row(1)([True, True, False, False])
    assert removed["term_shown"] == [False, True, False, False]
    assert removed["term1_text"] == "" and removed["term1_photo"] == "" and removed["term1_row"]["visible"] is False
    assert NO_FREE_ROW in add_row([True] * MAX_ROWS)["status"].replace("\\", "")


def test_load_more_appends_the_next_page_until_there_is_no_more():
    client = FakeClient(found=10)
    page = SearchPage(client)
    first = page.search("dog", None, 0.5, 4)
    assert first["load_more"]["visible"] is True
    second = page.load_more(first["query"], first["results"])
    assert last_query(client) == {"text": "dog", "image": None, "weight": 0.5, "top_k": 4, "offset": 4}
    assert [r["photo_id"] for r in second["results"]] == [f"p{n}" for n in range(8)]
    assert len(second["gallery"]) == 8 and second["status"].startswith("8 results for “dog”")
    third = page.load_more(second["query"], second["results"])
    assert len(third["results"]) == 10 and third["load_more"]["visible"] is False
    assert page.load_more(third["query"], third["results"])["status"] == "No more results for “dog”."


def test_load_more_before_any_search_asks_for_one():
    client = FakeClient()
    assert "Search first" in SearchPage(client).load_more(None, [])["status"] and client.calls == []


def test_status_line_shows_the_gateway_timings():
    client = FakeClient()
    client.timings = {"embed_ms": 30.4, "store_ms": 11.6, "total_ms": 45.2}
    status = SearchPage(client).search("dog", None, 0.5, 3)["status"]
    assert status == "3 results for “dog” in 45 ms (embedding 30 ms, store 12 ms)."
    assert timing_text({"took_ms": 7.0}) == " in 7 ms" and timing_text({}) == ""
    kept = {"timings": {"embed_ms": 0.2, "store_ms": 4.1, "total_ms": 4.6}, "cached": True}
    assert timing_text(kept) == " in 5 ms (embedding 0 ms, store 4 ms, a kept answer)"


def test_gallery_prefers_the_thumbnail():
    results = [{"photo_id": "a", "photo_image_url": "http://img.test/a.jpg", "thumbnail_url": "/v1/photos/a/thumbnail"},
               {"photo_id": "b", "photo_image_url": "http://img.test/b.jpg", "thumbnail_url": "http://t.test/b.jpg"},
               {"photo_id": "c", "photo_image_url": "http://img.test/c.jpg"}]
    images = [image for image, _ in gallery_items(results, "http://gateway:8000")]
    assert images == ["http://gateway:8000/v1/photos/a/thumbnail", "http://t.test/b.jpg", "http://img.test/c.jpg"]
