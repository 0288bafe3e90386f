"""The search page's behaviour, independent of Gradio's layout: `SearchPage`, driven by unit tests with
a fake client. Text and/or image queries, extra "more like / less like" terms, filters, a results
gallery that "Load more" extends, random photos, "More like this" and "Less like this". A query with
words is searched in the chosen mode (by meaning, by words, or both); results can be cut at a relevance.

The page talks to the gateway only, through `ApiClient`, over HTTP. Every handler catches the
client's `ApiError` and shows the gateway's own sentence (a toast plus the status line), so a
person never sees a traceback. A handler returns its updates keyed by output name ("status",
"gallery", ...); `ui.app.wire` turns them into Gradio's {component: update} answer, and a name a
handler leaves out keeps its value on the page.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from services.common.api_client import ApiError
from ui.dates import taken_range
from ui.formatting import (
    FILTER_NAMES,
    describe_query,
    facet_choices,
    gallery_items,
    markdown_text,
    notices_markdown,
    photo_details,
    photo_html,
    random_status,
    result_status,
    stats_markdown,
)
from ui.matching import min_relevance_of, result_cards
from ui.term_rows import add_row, place_photo, remove_row  # noqa: F401 - the rows' events, with the page's
from ui.terms import LESS_LIKE_WEIGHT, ONLY_LESS_LIKE, ROW_FIELDS, TermError, extra_terms, main_terms, rows_of

log = logging.getLogger(__name__)

# How long the stats line may be reused before asking the gateway again.
STATS_TTL_S = 30.0

RANDOM_WEIGHTS_BANNER = (
    "⚠️ **This demo runs a model with random weights: results are meaningless.** "
    "Point `EMBEDDER_MODEL` at a real CLIP checkpoint to get real search results."
)
UNREACHABLE_BANNER = "⚠️ **The search service cannot be reached.** {message}"
EMPTY_QUERY = "Type a few words or upload an image, then press Search."
PICK_FIRST = "Pick a photo first: press Random photo or click a result."
NO_QUERY_YET = "Search first: “Load more” fetches the next results of the last search."
# The gateway's largest `offset`: "Load more" stops offering pages past it.
OFFSET_MAX = 1000
UNEXPECTED = "Something went wrong in the page itself; it has been logged. Please try again."

# Values listed per dropdown: the most common ones; a rarer value can still be typed.
FACET_LIMIT = 200

# A handler's answer: an update (or a plain value) per output name.
Updates = dict[str, Any]


def wants_weight(text: str | None, image: str | None) -> bool:
    """The image-vs-text weight matters only when the query has both."""
    return bool(text and text.strip()) and bool(image)


def any_of(chosen: str | list[str] | None, listed: frozenset[str] = frozenset()) -> list[str]:
    """A filter's values: the dropdown's list (or one string), trimmed, empty items and repeats dropped.
    A typed item is comma-separated ("Japan, Norway" typed at once is two countries) and takes the
    spelling of a listed value that differs only in case; a value picked from the list is kept whole,
    since a real name may contain a comma."""
    items = [chosen] if isinstance(chosen, str) else list(chosen or [])
    # Matching is exact in the store: a typed "japan" becomes the listed "Japan".
    by_case = {value.casefold(): value for value in listed}
    values: list[str] = []
    for item in items:
        item = str(item)
        for value in [item] if item in listed else item.split(","):
            value = by_case.get(value.strip().casefold(), value.strip())
            if value and value not in values:
                values.append(value)
    return values


def build_filters(country: str | list[str] | None, photographer: str | list[str] | None,
                  listed: frozenset[str] = frozenset(), camera: str | list[str] | None = None,
                  taken: str | None = None) -> dict[str, Any] | None:
    """The gateway's `filters` from the dropdowns: one value is an equality, several are "any of" (a list).
    An empty dropdown filters nothing, so with every one empty there is no filter at all: None, not {}."""
    filters: dict[str, Any] = {}
    for column, chosen in (("photo_location_country", country), ("photographer_username", photographer),
                           ("exif_camera_model", camera)):
        values = any_of(chosen, listed)
        if values:
            filters[column] = values[0] if len(values) == 1 else values
    if (dates := taken_range(taken)) is not None:
        filters["taken_at"] = dates
    return filters or None


def min_score_or_none(value: float | None) -> float | None:
    """The slider's 0 means "no minimum": a cosine similarity cut-off of 0 would still hide photos."""
    return float(value) if value else None


class SearchPage:
    """The page's behaviour, independent of Gradio's layout. Each event returns `Updates` keyed by
    output name: banner, stats, status, gallery, results, country, photographer, photo_image,
    photo_details, photo, photo_box."""

    def __init__(self, client: Any, image_base: str = ""):
        self.client = client
        # Where a result's relative `thumbnail_url` is served: the gateway's address.
        self.image_base = image_base
        self._lock = threading.Lock()
        # Server-wide facts, shared by every browser session: random weights is a property of the
        # gateway's model, not of a visitor.
        self._random_weights: bool | None = None
        self._unreachable: str | None = None
        self._stats: dict[str, Any] | None = None
        self._stats_at = 0.0
        # Every value the filter lists have offered: these are kept whole, never split at commas.
        self._listed: frozenset[str] = frozenset()

    # -- shared state -------------------------------------------------------------------------

    def banner(self) -> dict:
        """A visible banner while the API is unreachable or its model has random weights."""
        with self._lock:
            if self._unreachable:
                text = UNREACHABLE_BANNER.format(message=markdown_text(self._unreachable))
            elif self._random_weights:
                text = RANDOM_WEIGHTS_BANNER
            else:
                text = ""
        return gr.update(value=text, visible=bool(text))

    def _reached(self, random_weights: bool | None = None) -> None:
        with self._lock:
            self._unreachable = None
            if random_weights is not None:
                self._random_weights = bool(random_weights)

    def _failed(self, error: Exception) -> str:
        """Turn any failure into the sentence to show; remember an unreachable gateway."""
        if isinstance(error, ApiError):
            message = error.message or f"The search service answered with status {error.status}."
            # Status 0 is the client's "no answer at all"; a 5xx is an answer, with its own sentence.
            if error.status == 0:
                with self._lock:
                    self._unreachable = message
                    self._stats_at = 0.0
            else:
                with self._lock:
                    self._unreachable = None
            log.info("gateway error %s %s: %s", error.status, error.code, message)
            return message
        log.exception("unexpected error in the UI", exc_info=error)
        return UNEXPECTED

    def _warning(self, message: str) -> Updates:
        """A toast and the status line saying `message`; everything else on the page stays."""
        gr.Warning(message)
        return {"status": f"⚠️ {markdown_text(message)}", "banner": self.banner()}

    def stats_line(self, refresh: bool = False) -> str:
        now = time.monotonic()
        if refresh or self._stats is None or now - self._stats_at > STATS_TTL_S:
            try:
                stats = self.client.stats()
            except Exception as error:  # noqa: BLE001 - every failure becomes a sentence
                self._failed(error)
                return stats_markdown(None)
            self._reached(stats.get("random_weights"))
            with self._lock:
                self._stats, self._stats_at = stats, now
        return stats_markdown(self._stats)

    # -- events ---------------------------------------------------------------------------------

    def filter_choices(self) -> Updates:
        """The Country and Photographer dropdowns' choices, from the values the gateway has.
        A failure leaves both lists empty (typed values still work) and is remembered for the banner."""
        try:
            lists = {column: facet_choices(self.client.facet(column, limit=FACET_LIMIT)) for column in FILTER_NAMES}
        except Exception as error:  # noqa: BLE001 - every failure becomes a sentence
            self._failed(error)  # once: the other field would fail the same way, after the same wait
            lists = {}
        else:
            self._reached()
            with self._lock:
                self._listed |= {value for choices in lists.values() for _, value in choices}
        return {FILTER_NAMES[column]: gr.update(choices=lists.get(column, [])) for column in FILTER_NAMES}

    def load(self) -> Updates:
        """On page load: the banner, the stats line and the filter lists. The lists are not asked for
        when the stats found the gateway unreachable: the page would only wait for more timeouts."""
        line = self.stats_line(refresh=True)
        with self._lock:
            unreachable = self._unreachable is not None
        lists = ({name: gr.update(choices=[]) for name in FILTER_NAMES.values()} if unreachable
                 else self.filter_choices())
        return {"banner": self.banner(), "stats": line, **lists}

    def filters_opened(self) -> Updates:
        """Opening the Filters accordion refreshes its lists, so newly ingested values appear without a
        reload."""
        return {**self.filter_choices(), "banner": self.banner()}

    def query_changed(self, text: str | None, image: str | None) -> dict:
        """The weight slider, shown only for a query with both text and image (its one output)."""
        return gr.update(visible=wants_weight(text, image))

    def search(self, text: str | None, image: str | None, weight: float, top_k: float,
               min_score: float | None = 0.0, country: str | list[str] | None = None,
               photographer: str | list[str] | None = None, camera: Any = None, taken: str | None = None,
               *rows: Any, mode: str | None = None, min_relevance: Any = None) -> Updates:
        """Search by text, an uploaded image, or both, plus the extra term rows (flat: text, image, photo,
        weight per row), within the Filters accordion's filters: each dropdown gives a list of values
        (or one string). Without extra terms the query is the gateway's plain text/image/weight one.
        `mode` (the toggle's "vector", "lexical" or "hybrid") is sent when the query has words: an image
        alone can only be searched by meaning. `min_relevance` is the cut-off's percentage."""
        text = (text or "").strip()
        try:
            image_bytes = Path(image).read_bytes() if image else None
            terms, words = extra_terms(rows_of(rows))
        except OSError:
            return self._warning("The uploaded image could not be read; please upload it again.")
        except TermError as error:
            return self._warning(str(error))
        narrowing = self._narrowing(min_score, country, photographer, camera, taken, min_relevance)
        if mode and (text or any(term.get("text") for term in terms)):
            narrowing["mode"] = mode
        what = describe_query(text, bool(image_bytes)) if text or image_bytes else ""
        if not terms:
            if not what:
                return self._warning(EMPTY_QUERY)
            return self._run_search(
                what=what, text=text or None, image=image_bytes,
                weight=float(weight) if wants_weight(text, image) else 0.5, top_k=int(top_k), **narrowing)
        if not what and all(term["weight"] < 0 for term in terms):
            return self._warning(ONLY_LESS_LIKE)
        return self._run_search(what=", ".join([what, *words] if what else words), top_k=int(top_k),
                                terms=main_terms(text, image_bytes, float(weight)) + terms, **narrowing)

    def mode_changed(self, text: str | None, image: str | None, *args: Any, mode: str | None = None,
                     min_relevance: Any = None) -> Updates:
        """Picking another mode searches again at once when there is a query (the same arguments as
        `search`), so the results change under the person's eyes; with an empty box it waits."""
        if not (text or "").strip() and not image:
            return {}
        return self.search(text, image, *args, mode=mode, min_relevance=min_relevance)

    def more_like_this(self, photo: dict | None, top_k: float, min_score: float | None = 0.0,
                       country: str | list[str] | None = None, photographer: str | list[str] | None = None,
                       camera: Any = None, taken: str | None = None, *, mode: str | None = None,
                       min_relevance: Any = None) -> Updates:
        """Search by the shown photo's id (the gateway reuses its stored vector), within the same filters
        as Search: a person who narrowed the results expects "more like this" to stay narrowed. A photo
        has no words, so it is searched by meaning whatever the `mode`."""
        if not photo or not photo.get("photo_id"):
            return self._warning(PICK_FIRST)
        return self._run_search(photo_id=photo["photo_id"], top_k=int(top_k),
                                what=f"photos like {photo['photo_id']}",
                                **self._narrowing(min_score, country, photographer, camera, taken, min_relevance))

    def less_like_this(self, photo: dict | None, shown: list[bool] | None, text: str | None, image: str | None,
                       weight: float, top_k: float, min_score: float | None = 0.0,
                       country: str | list[str] | None = None, photographer: str | list[str] | None = None,
                       camera: Any = None, taken: str | None = None, *rows: Any, mode: str | None = None,
                       min_relevance: Any = None) -> Updates:
        """The current query plus the shown photo at weight -1, in one click: the photo goes into a free
        term row (so the query on the page is the query searched), then the search runs."""
        if not photo or not photo.get("photo_id"):
            return self._warning(PICK_FIRST)
        placed = place_photo(photo["photo_id"], LESS_LIKE_WEIGHT, shown, rows)
        if "status" in placed:
            return placed
        updated = list(rows)
        index = placed.pop("_index")
        updated[index * len(ROW_FIELDS):(index + 1) * len(ROW_FIELDS)] = ["", None, photo["photo_id"],
                                                                         LESS_LIKE_WEIGHT]
        answer = self.search(text, image, weight, top_k, min_score, country, photographer, camera, taken, *updated,
                             mode=mode, min_relevance=min_relevance)
        return {**placed, **answer}

    def add_to_query(self, photo: dict | None, shown: list[bool] | None, *rows: Any) -> Updates:
        """The shown photo as a "more like" term in a free row, for the next Search."""
        if not photo or not photo.get("photo_id"):
            return self._warning(PICK_FIRST)
        placed = place_photo(photo["photo_id"], 1.0, shown, rows)
        placed.pop("_index", None)
        if "status" not in placed:
            placed["status"] = f"Photo {markdown_text(photo['photo_id'])} added as a term: press **Search**."
        return placed

    def load_more(self, query: dict | None, results: list[dict] | None) -> Updates:
        """The next page of the last search (its `offset` is the results shown so far), appended."""
        if not query:
            return self._warning(NO_QUERY_YET)
        shown = list(results or [])
        return self._run_search(**query, offset=len(shown), earlier=shown)

    def _narrowing(self, min_score: float | None, country: str | list[str] | None,
                   photographer: str | list[str] | None, camera: Any = None, taken: str | None = None,
                   min_relevance: Any = None) -> dict:
        """The query's `min_score`, `min_relevance` and `filters`, only when set (an unset one is not
        sent); {"invalid": why}."""
        with self._lock:
            listed = self._listed
        try:
            narrowing = {"min_score": min_score_or_none(min_score), "min_relevance": min_relevance_of(min_relevance),
                         "filters": build_filters(country, photographer, listed, camera, taken)}
        except ValueError as error:
            return {"invalid": str(error)}
        return {name: value for name, value in narrowing.items() if value is not None}

    def _run_search(self, *, what: str, offset: int = 0, earlier: list[dict] | None = None,
                    **query: Any) -> Updates:
        """Ask the gateway; on success, the gallery (after `earlier` results when this is a next page),
        the status line and the query that "Load more" continues."""
        if "invalid" in query:
            return self._warning(query["invalid"])
        try:
            answer = self.client.search(**query, **({"offset": offset} if offset else {}))
        except Exception as error:  # noqa: BLE001 - every failure becomes a sentence
            return self._warning(self._failed(error))
        self._reached(answer.get("random_weights"))
        page = list(answer.get("results") or [])
        results = [*(earlier or []), *page]
        full_page = len(page) >= query["top_k"] and offset + len(page) + query["top_k"] <= OFFSET_MAX
        status = (result_status(answer, results, what, query) if page or not earlier
                  else f"No more results for {markdown_text(what)}.")
        notices, cards = notices_markdown(answer), result_cards(results)
        return {"gallery": gallery_items(results, self.image_base), "results": results, "status": status,
                "banner": self.banner(), "stats": self.stats_line(), "query": {"what": what, **query},
                "load_more": gr.update(visible=full_page), "notices": gr.update(value=notices, visible=bool(notices)),
                "cards": gr.update(value=cards, visible=bool(cards))}

    def random_photo(self, country: str | list[str] | None = None, photographer: str | list[str] | None = None,
                     camera: str | list[str] | None = None, taken: str | None = None) -> Updates:
        """Show a random photo among those the Filters allow (a minimum score has nothing to compare with)."""
        narrowing = self._narrowing(None, country, photographer, camera, taken)
        if "invalid" in narrowing:
            return self._warning(narrowing["invalid"])
        filters = narrowing.get("filters")
        try:
            photo = self.client.random_photo(**({"filters": filters} if filters else {}))
        except Exception as error:  # noqa: BLE001 - every failure becomes a sentence
            return self._warning(self._failed(error))
        self._reached()
        return {**show_photo(photo), "status": random_status(filters), "banner": self.banner()}

    def select_result(self, results: list[dict] | None, event: gr.SelectData) -> Updates:
        """Clicking a result makes it the chosen photo, ready for "More like this"."""
        index = event.index if isinstance(event.index, int) else None
        if not results or index is None or not 0 <= index < len(results):
            return {}
        return show_photo(results[index])


def show_photo(photo: dict[str, Any]) -> Updates:
    """The chosen-photo box, shown, with `photo` as the one "More like this" searches by."""
    return {"photo_image": photo_html(photo), "photo_details": photo_details(photo), "photo": photo,
            "photo_box": gr.update(visible=True)}


