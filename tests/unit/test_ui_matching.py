"""Unit tests of how the page shows the way a result matched (ui/matching.py and the captions and notices
in ui/formatting.py), of the request the page sends for each search mode and relevance cut-off (with the
fake gateway client of ui_support), and of `ApiClient.search` sending the new fields only when given."""
from __future__ import annotations

import json

import httpx
import pytest

from services.common.api_client import ApiClient
from services.common.api_models import SearchResults
from tests.unit.ui_support import FakeClient, last_query, result
from ui.app import SearchPage, build_app
from ui.config import UISettings
from ui.formatting import caption_for, gallery_items, notices_markdown, photo_details, result_status
from ui.matching import (
    BAD_RELEVANCE,
    card_html,
    highlight,
    match_reason,
    min_relevance_of,
    relevance_compact,
    relevance_text,
    result_cards,
)

# gr.Warning outside a request falls back to `warnings.warn`; the status line is what is asserted.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class MatchingClient(FakeClient):
    """The fake gateway of a newer gateway: each result says how relevant it is and why it matched, and
    the answer carries the mode used and its notices."""

    def __init__(self, notices: list[str] | None = None, **options):
        super().__init__(**options)
        self.notices = notices or []

    def search(self, **query):
        answer = super().search(**query)
        for hit in answer["results"]:
            hit["photo_description"] = f"A dog on the beach, {hit['photo_id']}"
            hit["relevance"] = 0.992
            hit["match"] = {"vector_rank": hit["rank"], "vector_score": hit["score"], "lexical_rank": None,
                            "lexical_score": None, "fused_score": None, "words": ["dog"]}
        return {**answer, "mode": query.get("mode", "vector"), "notices": self.notices, "query_truncated": False}


# -- the words ----------------------------------------------------------------------------------


def test_relevance_reads_as_a_share_of_the_library_rounded_in_the_photos_disfavour():
    assert relevance_text(0.992) == "closer than 99.2% of the library"
    assert relevance_compact(0.992) == "top 0.8%"
    assert (relevance_text(0.5), relevance_compact(0.5)) == ("closer than 50% of the library", "top 50%")
    # The library is only sampled: never "closer than 100%", never "top 0%".
    assert (relevance_text(1.0), relevance_compact(1.0)) == ("closer than 99.9% of the library", "top 0.1%")
    assert relevance_text(0.99999) == "closer than 99.9% of the library"
    for unknown in (None, "0.9", 1.5, -0.1, True):
        assert relevance_text(unknown) == relevance_compact(unknown) == ""


def test_match_reason_names_the_words_found_and_the_place_by_meaning():
    assert match_reason({"words": ["beach", "dog"], "vector_rank": 3}) == "words: beach, dog · meaning #3"
    assert match_reason({"words": [], "lexical_rank": 2, "vector_rank": None}) == "words #2"
    assert match_reason({"words": None, "vector_rank": 1, "lexical_rank": None}) == "meaning #1"
    assert match_reason({"words": ["dog", " dog ", ""], "vector_rank": None}) == "words: dog"
    assert match_reason(None) == match_reason({}) == ""


def test_highlight_marks_whole_words_in_any_case_and_escapes_the_rest():
    assert highlight("A Dog chases dogs & a hotdog", ["dog"]) == "A <mark>Dog</mark> chases dogs &amp; a hotdog"
    assert highlight("dogs and dog", ["dog", "dogs"]) == "<mark>dogs</mark> and <mark>dog</mark>"
    assert highlight("a <b>bold</b> claim", []) == "a &lt;b&gt;bold&lt;/b&gt; claim"
    assert highlight("a.b axb", ["a.b"]) == "<mark>a.b</mark> axb"  # a word is matched as text, not a pattern
    # Words split as the store's index splits them: at "_" and ASCII punctuation, not inside "café".
    assert highlight("red_dog, cafés café", ["dog", "café"]) == "red_<mark>dog</mark>, cafés <mark>café</mark>"


def test_a_script_in_a_description_stays_text():
    hostile = {"photo_id": 'p"1', "relevance": 0.9, "photo_description": "<script>alert('dog')</script> a dog",
               "match": {"words": ["dog", "<script>"], "vector_rank": 2}}
    card = card_html(1, hostile)
    assert "<script>" not in card and "&lt;script&gt;" in card
    assert "a <mark>dog</mark>" in card and "alert(&#x27;<mark>dog</mark>&#x27;)" in card
    assert 'data-photo-id="p&quot;1"' in card
    assert "closer than 90% of the library · words: dog, &lt;script&gt; · meaning #2" in card
    # The gallery's caption is plain text (the gallery escapes it), so it is left as written.
    assert caption_for(hostile) == "top 10% · <script>alert('dog')</script> a dog"


def test_a_chosen_result_says_how_it_matched():
    details = photo_details(result(3, relevance=0.992, match={"words": ["red_door"], "vector_rank": 3}))
    assert details.endswith("id `p3` · closer than 99.2% of the library · words: red\\_door · meaning #3")
    assert photo_details(result(3)).endswith("id `p3`")


def test_result_cards_only_when_the_gateway_says_how_results_matched():
    assert result_cards([result(0), result(1)]) == ""
    cards = result_cards([result(0, relevance=0.95), result(1, match={"words": ["red"], "vector_rank": None})])
    assert cards.startswith('<ol class="result-cards">') and cards.count('<li class="result-card"') == 2
    assert '<span class="card-number">2.</span>' in cards and "words: red" in cards


def test_captions_lead_with_relevance_when_known_else_the_score():
    assert caption_for(result(0, photo_description="a dog", relevance=0.992)) == "top 0.8% · a dog"
    assert caption_for(result(0, photo_description="a dog", relevance=None)) == "0.500 · a dog"
    assert gallery_items([result(1, relevance=0.5)]) == [("http://img.test/p1.jpg", "top 50% · p1")]


def test_notices_are_shown_one_a_line_and_a_cut_query_is_said_once():
    answer = {"notices": ["Only stop-words: searched by meaning instead.", "  "], "query_truncated": False}
    assert notices_markdown(answer) == "ℹ️ Only stop-words: searched by meaning instead."
    assert notices_markdown({"results": []}) == ""
    assert "only its first part was searched" in notices_markdown({"notices": [], "query_truncated": True})
    said = notices_markdown({"notices": ["The text is long: only its first 2,000 characters were embedded."],
                             "query_truncated": True})
    assert said == "ℹ️ The text is long: only its first 2,000 characters were embedded."
    # Random weights are the banner's to say, not a notice over every search's results.
    weights = "These results come from a model with random weights (a test or offline model)."
    assert notices_markdown({"notices": [weights], "random_weights": True}) == ""
    assert notices_markdown({"notices": [weights], "random_weights": False}) == f"ℹ️ {weights}"


def test_min_relevance_is_a_percentage_and_zero_is_off():
    assert min_relevance_of("99") == 0.99 and min_relevance_of(" 99.9 % ") == pytest.approx(0.999)
    assert min_relevance_of(95) == 0.95
    for off in ("0", 0, "", None, "0%"):
        assert min_relevance_of(off) is None
    for bad in ("lots", "100", "-1", "nan", "inf"):
        with pytest.raises(ValueError, match="percentage from 0 to 100"):
            min_relevance_of(bad)


def test_status_names_the_relevance_cut_off_and_how_to_loosen_it():
    query = {"min_relevance": 0.99}
    assert "(closer than 99% of the library)" in result_status({"took_ms": 3}, [result(0)], "“dog”", query)
    assert result_status({}, [], "“dog”", query).endswith("; lower the relevance cut-off.")


# -- the requests the page sends ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["vector", "lexical", "hybrid"])
def test_each_mode_is_sent_with_a_query_that_has_words(mode):
    client = MatchingClient()
    SearchPage(client).search("dog", None, 0.5, 12, mode=mode)
    assert last_query(client) == {"text": "dog", "image": None, "weight": 0.5, "top_k": 12, "mode": mode}


def test_a_query_without_words_is_searched_by_meaning_whatever_the_mode(tmp_path):
    image = tmp_path / "query.jpg"
    image.write_bytes(b"\xff\xd8 not really a jpeg")
    client = MatchingClient()
    page = SearchPage(client)
    page.search("", str(image), 0.5, 12, mode="lexical")
    assert "mode" not in last_query(client)
    page.more_like_this({"photo_id": "p7"}, 4, mode="lexical", min_relevance="90")
    assert last_query(client) == {"photo_id": "p7", "top_k": 4, "min_relevance": 0.9}


def test_a_term_row_with_words_sends_the_mode():
    client = MatchingClient()
    rows = ["snow", None, "", 1.0] + ["", None, "", 1.0] * 3
    SearchPage(client).search("", None, 0.5, 6, 0, None, None, None, None, *rows, mode="lexical")
    assert last_query(client)["mode"] == "lexical" and last_query(client)["terms"][0]["text"] == "snow"


def test_the_relevance_cut_off_is_sent_and_a_bad_one_is_explained():
    client = MatchingClient()
    page = SearchPage(client)
    out = page.search("dog", None, 0.5, 12, mode="hybrid", min_relevance="99")
    assert last_query(client)["min_relevance"] == 0.99 and "closer than 99% of the library" in out["status"]
    calls = len(client.calls)
    out = page.search("dog", None, 0.5, 12, mode="hybrid", min_relevance="very")
    assert out["status"] == f"⚠️ {BAD_RELEVANCE}" and len(client.calls) == calls


def test_load_more_keeps_the_mode_and_the_cut_off():
    client = MatchingClient()
    page = SearchPage(client)
    first = page.search("dog", None, 0.5, 4, mode="lexical", min_relevance="90")
    page.load_more(first["query"], first["results"])
    assert last_query(client) == {"text": "dog", "image": None, "weight": 0.5, "top_k": 4, "mode": "lexical",
                                  "min_relevance": 0.9, "offset": 4}


def test_changing_the_mode_searches_again_only_when_there_is_a_query():
    client = MatchingClient()
    page = SearchPage(client)
    assert page.mode_changed("  ", None, 0.5, 12, mode="lexical") == {} and client.calls == []
    out = page.mode_changed("dog", None, 0.5, 12, mode="lexical")
    assert last_query(client)["mode"] == "lexical" and len(out["results"]) == 12


def test_less_like_this_keeps_the_mode():
    client = MatchingClient()
    SearchPage(client).less_like_this({"photo_id": "p7"}, [False] * 4, "dog", None, 0.5, 5, 0, None, None, None,
                                      None, *(["", None, "", 1.0] * 4), mode="vector", min_relevance="0")
    assert last_query(client)["mode"] == "vector" and "min_relevance" not in last_query(client)


def test_results_show_relevance_why_they_matched_and_the_notices():
    client = MatchingClient(notices=["Only stop-words: searched by meaning instead."])
    out = SearchPage(client).search("the dog", None, 0.5, 2, mode="hybrid")
    assert out["gallery"][0] == ("http://img.test/p0.jpg", "top 0.8% · A dog on the beach, p0")
    cards = out["cards"]
    assert cards["visible"] is True
    assert "A <mark>dog</mark> on the beach, p0" in cards["value"]
    assert "closer than 99.2% of the library · words: dog · meaning #1" in cards["value"]
    assert out["notices"] == {"__type__": "update", "value": "ℹ️ Only stop-words: searched by meaning instead.",
                              "visible": True}
    # An older gateway's answer: no cards, no notices, captions with scores as before.
    plain = SearchPage(FakeClient()).search("dog", None, 0.5, 2)
    assert plain["cards"]["visible"] is False and plain["notices"]["visible"] is False


# -- the page's controls and the client ---------------------------------------------------------


def test_the_mode_toggle_defaults_to_the_setting_and_the_cut_off_to_off(monkeypatch):
    app = build_app(UISettings(api_url="http://127.0.0.1:1", _env_file=None), client=FakeClient())
    blocks = {block.elem_id: block for block in app.blocks.values() if block.elem_id}
    toggle = blocks["search-mode"]
    assert toggle.value == "hybrid" and [label for label, _ in toggle.choices] == ["Meaning", "Words", "Both"]
    assert [value for _, value in toggle.choices] == ["vector", "lexical", "hybrid"]
    cut_off = blocks["min-relevance"]
    assert cut_off.value == "0" and {"90", "99"} <= {value for _, value in cut_off.choices}
    assert {"notices", "result-cards"} <= set(blocks)
    monkeypatch.setenv("UI_SEARCH_MODE", "lexical")
    assert UISettings(_env_file=None).search_mode == "lexical"
    monkeypatch.setenv("UI_SEARCH_MODE", "fuzzy")
    with pytest.raises(ValueError):
        UISettings(_env_file=None)


def _recording_client(seen: list[httpx.Request], answer: dict) -> ApiClient:
    """An `ApiClient` whose HTTP goes to a recorder instead of a gateway (this module's unit test)."""
    client = ApiClient("http://gateway.test")

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        # A stream, as a gateway's answer is: the client reads its bytes as they come.
        return httpx.Response(200, headers={"content-type": "application/json"},
                              stream=httpx.ByteStream(json.dumps(answer).encode()))

    client._http = httpx.Client(base_url="http://gateway.test", transport=httpx.MockTransport(reply))
    return client


def test_api_client_sends_the_search_mode_fields_only_when_given():
    seen: list[httpx.Request] = []
    client = _recording_client(seen, {"results": [], "took_ms": 1.0})
    client.search(text="dog", top_k=3)
    assert json.loads(seen[-1].content) == {"text": "dog", "weight": 0.5, "top_k": 3}
    client.search(text="dog", top_k=3, mode="hybrid", fusion="alpha", alpha=0.3, rrf_k=60, min_relevance=0.99)
    assert json.loads(seen[-1].content) == {"text": "dog", "weight": 0.5, "top_k": 3, "mode": "hybrid",
                                            "fusion": "alpha", "alpha": 0.3, "rrf_k": 60, "min_relevance": 0.99}
    client.search(image=b"\xff\xd8", mode="lexical", min_relevance=0.5)  # multipart: form fields
    body = seen[-1].content.decode("latin-1")
    assert 'name="mode"\r\n\r\nlexical' in body and 'name="min_relevance"\r\n\r\n0.5' in body


def test_typed_results_accept_a_newer_and_an_older_gateways_answers():
    hit = {"photo_id": "p1", "photo_image_url": "http://img.test/p1.jpg", "score": 0.3, "rank": 1}
    newer = SearchResults.model_validate({
        "results": [hit | {"relevance": 0.97, "match": {"vector_rank": 1, "vector_score": 0.3, "lexical_rank": None,
                                                         "lexical_score": None, "fused_score": 0.016,
                                                         "words": ["dog"]}}],
        "took_ms": 2.0, "mode": "hybrid", "notices": ["Searched by meaning."], "query_truncated": True})
    assert newer.results[0].relevance == 0.97 and newer.results[0].match.words == ["dog"]
    assert (newer.mode, newer.notices, newer.query_truncated) == ("hybrid", ["Searched by meaning."], True)
    older = SearchResults.model_validate({"results": [hit], "took_ms": 2.0})
    assert older.results[0].relevance is None and older.results[0].match is None
    assert (older.mode, older.notices, older.query_truncated) == (None, [], False)
