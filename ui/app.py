"""The Gradio search page: text and/or image queries, filters, a results gallery, random photos.

The page talks to the gateway only, through `ApiClient`, over HTTP. Every handler catches the
client's `ApiError` and shows the gateway's own sentence (a toast plus the status line), so a
person never sees a traceback. Handlers live on `SearchPage`, a plain class that unit tests drive
with a fake client; `build_app` only lays the page out and wires events to it.

A handler returns its updates keyed by the names in `Outputs` ("status", "gallery", ...), never as
a tuple whose order must match a list of components: `build_app` names the components once, and
`wire` turns the names into Gradio's {component: update} answer. A name a handler leaves out keeps
its value on the page. The words themselves (captions, status lines) are in `ui.formatting`.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gradio as gr

from services.common.api_client import ApiClient, ApiError
from ui.config import UISettings, get_settings
from ui.dates import TAKEN_HELP, taken_range
from ui.formatting import (
    FILTER_NAMES,
    describe_query,
    facet_choices,
    gallery_items,
    markdown_text,
    photo_details,
    photo_html,
    random_status,
    result_status,
    stats_markdown,
)

log = logging.getLogger(__name__)

TOP_K_MAX = 50
# How long the stats line may be reused before asking the gateway again.
STATS_TTL_S = 30.0

RANDOM_WEIGHTS_BANNER = (
    "⚠️ **This demo runs a model with random weights: results are meaningless.** "
    "Point `EMBEDDER_MODEL` at a real CLIP checkpoint to get real search results."
)
UNREACHABLE_BANNER = "⚠️ **The search service cannot be reached.** {message}"
EMPTY_QUERY = "Type a few words or upload an image, then press Search."
UNEXPECTED = "Something went wrong in the page itself; it has been logged. Please try again."

# Values listed per dropdown: the most common ones; a rarer value can still be typed.
FACET_LIMIT = 200

# A handler's answer: an update (or a plain value) per output name.
Updates = dict[str, Any]

CSS = """
#banner { background: #fff4ce; border: 1px solid #e0b400; border-radius: 8px; padding: 10px 14px; }
#banner p { margin: 0; color: #5c4400; font-size: 1.05em; }
#stats { color: var(--body-text-color-subdued); font-size: 0.9em; }
#status p { margin: 0; }
"""


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

    def __init__(self, client: Any):
        self.client = client
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
               photographer: str | list[str] | None = None, camera: Any = None, taken: str | None = None) -> Updates:
        """Search by text, an uploaded image, or both, within the Filters accordion's filters: each
        dropdown gives a list of values (or one string)."""
        text = (text or "").strip()
        if not text and not image:
            return self._warning(EMPTY_QUERY)
        try:
            image_bytes = Path(image).read_bytes() if image else None
        except OSError:
            return self._warning("The uploaded image could not be read; please upload it again.")
        return self._run_search(
            text=text or None,
            image=image_bytes,
            weight=float(weight) if wants_weight(text, image) else 0.5,
            top_k=int(top_k),
            what=describe_query(text, bool(image_bytes)),
            **self._narrowing(min_score, country, photographer, camera, taken),
        )

    def more_like_this(self, photo: dict | None, top_k: float, min_score: float | None = 0.0,
                       country: str | list[str] | None = None,
                       photographer: str | list[str] | None = None, camera: Any = None, taken: str | None = None,
                       ) -> Updates:
        """Search by the shown photo's id (the gateway reuses its stored vector), within the same filters
        as Search: a person who narrowed the results expects "more like this" to stay narrowed."""
        if not photo or not photo.get("photo_id"):
            return self._warning("Pick a photo first: press Random photo or click a result.")
        return self._run_search(photo_id=photo["photo_id"], top_k=int(top_k),
                                what=f"photos like {photo['photo_id']}",
                                **self._narrowing(min_score, country, photographer, camera, taken))

    def _narrowing(self, min_score: float | None, country: str | list[str] | None,
                   photographer: str | list[str] | None, camera: Any = None, taken: str | None = None) -> dict:
        """The query's `min_score` and `filters`, only when set (an unset one is not sent); {"invalid": why}."""
        with self._lock:
            listed = self._listed
        try:
            narrowing = {"min_score": min_score_or_none(min_score),
                         "filters": build_filters(country, photographer, listed, camera, taken)}
        except ValueError as error:
            return {"invalid": str(error)}
        return {name: value for name, value in narrowing.items() if value is not None}

    def _run_search(self, *, what: str, **query: Any) -> Updates:
        if "invalid" in query:
            return self._warning(query["invalid"])
        try:
            answer = self.client.search(**query)
        except Exception as error:  # noqa: BLE001 - every failure becomes a sentence
            return self._warning(self._failed(error))
        self._reached(answer.get("random_weights"))
        results = list(answer.get("results") or [])
        return {"gallery": gallery_items(results), "results": results,
                "status": result_status(answer, results, what, query), "banner": self.banner(),
                "stats": self.stats_line()}

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


def wire(handler: Callable[..., Any], outputs: Mapping[str, Any]) -> Callable[..., Any]:
    """`handler` as a Gradio event function whose outputs are `outputs` (name -> component): its
    named updates become {component: update}, every output it leaves out is skipped (kept as is).
    A name that is not an output is a wiring mistake, and says so."""

    @functools.wraps(handler)
    def event(*args: Any) -> dict[Any, Any]:
        updates = handler(*args)
        unknown = set(updates) - set(outputs)
        if unknown:
            raise KeyError(f"{handler.__name__} updates {sorted(unknown)}, which are not among its outputs")
        return {component: updates.get(name, gr.skip()) for name, component in outputs.items()}

    return event


def build_app(settings: UISettings | None = None, client: Any = None) -> gr.Blocks:
    """Lay the page out and wire it to a `SearchPage` that uses `client` (an `ApiClient` by default)."""
    settings = settings or get_settings()
    if client is None:
        client = ApiClient(settings.api_url, api_key=settings.api_key, timeout=settings.api_timeout)
    page = SearchPage(client)

    with gr.Blocks(title=settings.title, analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(f"# {settings.title}\nSearch photos by words, by an example image, or both.",
                    elem_id="title")
        banner = gr.Markdown("", visible=False, elem_id="banner")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=300):
                query_text = gr.Textbox(label="Describe the photo", placeholder="e.g. a dog running on the beach",
                                        lines=1, max_lines=1, elem_id="query-text", autofocus=True)
                query_image = gr.Image(label="…or search with an image", type="filepath", image_mode=None,
                                       sources=["upload", "clipboard"], height=220, elem_id="query-image")
                weight = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Image vs text",
                                   info="Share of the image in a query with both: 0 = text only, 1 = image only.",
                                   visible=False, elem_id="weight")
                top_k = gr.Slider(1, TOP_K_MAX, value=settings.top_k_default, step=1, label="Results",
                                  elem_id="top-k")
                with gr.Accordion("Filters", open=False, elem_id="filters") as filters:
                    min_score = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Minimum score",
                                          info="Hide results whose score (cosine similarity) is below this. "
                                               "0 = off: every result is shown.",
                                          elem_id="min-score")
                    # The lists come from the gateway (page.load); a typed value is allowed too.
                    country = gr.Dropdown(label="Country", multiselect=True, allow_custom_value=True,
                                          info="Pick from the list, or type a name and press Enter. "
                                               "Several match any of them; none = any country.",
                                          elem_id="filter-country")
                    photographer = gr.Dropdown(label="Photographer", multiselect=True, allow_custom_value=True,
                                               info="Unsplash usernames: pick from the list, or type one and press "
                                                    "Enter. Several match any of them; none = anyone.",
                                               elem_id="filter-photographer")
                    camera = gr.Dropdown(label="Camera", multiselect=True, allow_custom_value=True,
                                         info="Camera models, from the photos' EXIF.", elem_id="filter-camera")
                    taken = gr.Textbox(label="Taken", placeholder="2023-01-01 to 2023-12-31", info=TAKEN_HELP,
                                       elem_id="filter-taken")
                with gr.Row():
                    search_button = gr.Button("Search", variant="primary", elem_id="search-button")
                    random_button = gr.Button("Random photo", elem_id="random-button")
                with gr.Group(visible=False) as photo_box:
                    photo_image = gr.HTML(elem_id="chosen-photo", js_on_load=None)
                    photo_details_box = gr.Markdown(elem_id="chosen-details", padding=True)
                    more_button = gr.Button("More like this", elem_id="more-button")
            with gr.Column(scale=5):
                status = gr.Markdown("Type a query or upload an image to start.", elem_id="status")
                gallery = gr.Gallery(label="Results", columns=4, height="fit-content", object_fit="cover",
                                     interactive=False, allow_preview=True, elem_id="results-gallery")
        stats = gr.Markdown("", elem_id="stats")
        results_state = gr.State([])
        photo_state = gr.State(None)

        # Each event's outputs, by the names its handler's updates use; the order is Gradio's business.
        lists = {"country": country, "photographer": photographer, "camera": camera}
        shown = {"banner": banner, "status": status}
        chosen = {"photo_image": photo_image, "photo_details": photo_details_box, "photo": photo_state,
                  "photo_box": photo_box}
        searched = {**shown, "gallery": gallery, "results": results_state, "stats": stats}

        def on(trigger, handler: Callable[..., Any], inputs: list, outputs: Mapping[str, Any], **options: Any):
            fn, wired = wire(handler, outputs), list(outputs.values())
            if isinstance(trigger, list):
                gr.on(trigger, fn, inputs=inputs, outputs=wired, **options)
            else:
                trigger(fn, inputs=inputs, outputs=wired, **options)

        narrowing = [min_score, country, photographer, camera, taken]  # the handlers' last parameters, in order
        on(app.load, page.load, [], {"banner": banner, "stats": stats, **lists})
        on(filters.expand, page.filters_opened, [], {**lists, "banner": banner}, show_progress="hidden")
        gr.on([query_text.change, query_image.change], page.query_changed, inputs=[query_text, query_image],
              outputs=weight, queue=False)
        on([search_button.click, query_text.submit], page.search,
           [query_text, query_image, weight, top_k, *narrowing], searched)
        on(more_button.click, page.more_like_this, [photo_state, top_k, *narrowing], searched)
        on(random_button.click, page.random_photo, narrowing[1:], {**chosen, **shown})
        on(gallery.select, page.select_result, [results_state], chosen)
    return app
