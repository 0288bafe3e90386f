"""The Gradio page's layout: a Search tab (the query builder, filters, the results gallery, the chosen
photo) and an Ingest tab, wired to `SearchPage` and `IngestPanel`.

The behaviour lives in `ui.search_page` and `ui.ingest_tab` (plain classes that unit tests drive with
a fake client), the words in `ui.formatting`, the query terms in `ui.terms`. Here the components are
named once, and each event's outputs are given by the names its handler's updates use
(`ui.wiring.wire`), so the order of outputs is Gradio's business, not the handlers'.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from services.common.api_client import ApiClient
from ui.config import UISettings, get_settings
from ui.dates import TAKEN_HELP
from ui.ingest_tab import IngestPanel, ingest_tab
from ui.matching import MODE_CHOICES, MODE_HELP, RELEVANCE_CHOICES, RELEVANCE_HELP
from ui.search_page import (  # noqa: F401 - the page's names, importable from ui.app as before
    EMPTY_QUERY,
    RANDOM_WEIGHTS_BANNER,
    SearchPage,
    add_row,
    build_filters,
    remove_row,
    wants_weight,
)
from ui.terms import MAX_ROWS, ROW_FIELDS
from ui.wiring import on, wire, with_how  # noqa: F401 - `wire` is importable from ui.app as before

TOP_K_MAX = 50

# A Spanish and an English query side by side: with a multilingual text tower both find the same photos,
# and a person sees at once that the box is not English-only (the stats line names the tower's languages).
QUERY_PLACEHOLDER = 'Try "perro en la playa" or "a dog on the beach"'
QUERY_EXAMPLES = ["atardecer en la montaña", "a red car in the city", "un gato durmiendo en el sofá",
                  "a snowy forest at night"]

CSS = """
#banner { background: #fff4ce; border: 1px solid #e0b400; border-radius: 8px; padding: 10px 14px; }
#banner p { margin: 0; color: #5c4400; font-size: 1.05em; }
#stats { color: var(--body-text-color-subdued); font-size: 0.9em; }
#status p { margin: 0; }
.term-row { border-left: 3px solid var(--color-accent); }
#notices p { margin: 0; }
.result-cards { margin: 0; padding-left: 0; list-style: none; font-size: 0.9em; }
.result-card { padding: 2px 0; }
.result-card mark { background: #ffe58a; color: inherit; padding: 0 1px; border-radius: 2px; }
.card-number, .card-why { color: var(--body-text-color-subdued); }
"""


def term_row(number: int) -> dict[str, Any]:
    """One "add term" row, hidden until asked for: words, or an image, or a photo id, and its weight."""
    with gr.Group(visible=False, elem_id=f"term-{number}", elem_classes="term-row") as row:
        with gr.Row(equal_height=True):
            text = gr.Textbox(label=f"Term {number}: words", placeholder="e.g. snow", lines=1, max_lines=1,
                              scale=3, min_width=120, elem_id=f"term-{number}-text")
            photo = gr.Textbox(label="…or a photo id", placeholder="“Add to query” on a result", lines=1,
                               max_lines=1, scale=2, min_width=100, elem_id=f"term-{number}-photo")
            remove = gr.Button("✕", scale=0, min_width=44, elem_id=f"term-{number}-remove")
        image = gr.Image(label="…or an image", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                         height=120, elem_id=f"term-{number}-image")
        weight = gr.Slider(-1.0, 1.0, value=1.0, step=0.1, label="less like ◀  weight  ▶ more like",
                           info="−1 = less like this · 0 = ignored · +1 = more like this",
                           elem_id=f"term-{number}-weight")
    return {"row": row, "text": text, "image": image, "photo": photo, "weight": weight, "remove": remove}


def build_app(settings: UISettings | None = None, client: Any = None) -> gr.Blocks:
    """Lay the page out and wire it to a `SearchPage` that uses `client` (an `ApiClient` by default)."""
    settings = settings or get_settings()
    if client is None:
        client = ApiClient(settings.api_url, api_key=settings.api_key, timeout=settings.api_timeout)
    page = SearchPage(client, image_base=settings.image_base_url or settings.api_url)

    with gr.Blocks(title=settings.title, analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(f"# {settings.title}\nSearch photos by words, by an example image, or both.",
                    elem_id="title")
        banner = gr.Markdown("", visible=False, elem_id="banner")
        stats = gr.Markdown("", elem_id="stats", render=False)  # under both tabs; the Ingest tab refreshes it
        with gr.Tabs():
            with gr.Tab("Search", id="search", elem_id="search-tab"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        query_text = gr.Textbox(label="Describe the photo", lines=1, max_lines=1,
                                                placeholder=QUERY_PLACEHOLDER, elem_id="query-text",
                                                autofocus=True)
                        # Sent as the gateway's `mode` with every query that has words.
                        search_mode = gr.Radio(MODE_CHOICES, value=settings.search_mode, label="Search by",
                                               info=MODE_HELP, elem_id="search-mode")
                        examples = gr.Examples([[query] for query in QUERY_EXAMPLES], inputs=[query_text],
                                               label="Try", elem_id="query-examples")
                        query_image = gr.Image(label="…or search with an image", type="filepath", image_mode=None,
                                               sources=["upload", "clipboard"], height=220, elem_id="query-image")
                        weight = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Image vs text",
                                           info="Share of the image in a query with both: 0 = text only, "
                                                "1 = image only.", visible=False, elem_id="weight")
                        rows = [term_row(number) for number in range(1, MAX_ROWS + 1)]
                        add_button = gr.Button("+ Add a term (more like / less like)", size="sm",
                                               elem_id="add-term")
                        top_k = gr.Slider(1, TOP_K_MAX, value=settings.top_k_default, step=1, label="Results",
                                          elem_id="top-k")
                        with gr.Accordion("Filters", open=False, elem_id="filters") as filters:
                            min_score = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Minimum score",
                                                  info="Hide results whose score (cosine similarity) is below "
                                                       "this. 0 = off: every result is shown.",
                                                  elem_id="min-score")
                            # A percentage, sent as `min_relevance`: a cut-off that means the same for
                            # every query, where a cosine score's meaning varies from query to query.
                            min_relevance = gr.Dropdown(RELEVANCE_CHOICES, value="0", allow_custom_value=True,
                                                        label="Relevance", info=RELEVANCE_HELP,
                                                        elem_id="min-relevance")
                            # The lists come from the gateway (page.load); a typed value is allowed too.
                            country = gr.Dropdown(label="Country", multiselect=True, allow_custom_value=True,
                                                  info="Pick from the list, or type a name and press Enter. "
                                                       "Several match any of them; none = any country.",
                                                  elem_id="filter-country")
                            photographer = gr.Dropdown(label="Photographer", multiselect=True,
                                                       allow_custom_value=True,
                                                       info="Unsplash usernames: pick from the list, or type one "
                                                            "and press Enter. Several match any of them; "
                                                            "none = anyone.",
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
                            with gr.Row():
                                more_button = gr.Button("More like this", elem_id="more-button")
                                less_button = gr.Button("Less like this", elem_id="less-button")
                                add_photo_button = gr.Button("Add to query", elem_id="add-photo-button")
                    with gr.Column(scale=5):
                        status = gr.Markdown("Type a query or upload an image to start.", elem_id="status")
                        notices = gr.Markdown("", visible=False, elem_id="notices")
                        gallery = gr.Gallery(label="Results", columns=4, height="fit-content", object_fit="cover",
                                             interactive=False, allow_preview=True, elem_id="results-gallery")
                        # Each result's description with the matched words marked, its relevance and why
                        # it matched: the gallery's captions are plain text.
                        cards = gr.HTML("", visible=False, elem_id="result-cards")
                        load_more = gr.Button("Load more", visible=False, elem_id="load-more")
            if settings.ingest_tab:
                with gr.Tab("Ingest", id="ingest", elem_id="ingest-tab"):
                    ingest_tab(IngestPanel(client, page.stats_line), stats)
        stats.render()
        results_state = gr.State([])
        photo_state = gr.State(None)
        query_state = gr.State(None)
        term_shown = gr.State([False] * MAX_ROWS)

        # Each event's outputs, by the names its handler's updates use; the order is Gradio's business.
        lists = {"country": country, "photographer": photographer, "camera": camera}
        shown = {"banner": banner, "status": status}
        chosen = {"photo_image": photo_image, "photo_details": photo_details_box, "photo": photo_state,
                  "photo_box": photo_box}
        searched = {**shown, "gallery": gallery, "results": results_state, "stats": stats, "query": query_state,
                    "load_more": load_more, "notices": notices, "cards": cards}
        row_inputs = [row[field] for row in rows for field in ROW_FIELDS]  # the handlers' *rows, in order
        row_outputs = {f"term{number}_{field}": row[field] for number, row in enumerate(rows, start=1)
                       for field in (*ROW_FIELDS, "row")}
        terms_out = {**row_outputs, "term_shown": term_shown, **shown}

        narrowing = [min_score, country, photographer, camera, taken]  # the parameters after top_k, in order
        on(app.load, page.load, [], {"banner": banner, "stats": stats, **lists})
        on(filters.expand, page.filters_opened, [], {**lists, "banner": banner}, show_progress="hidden")
        gr.on([query_text.change, query_image.change], page.query_changed, inputs=[query_text, query_image],
              outputs=weight, queue=False)
        # The mode and the relevance cut-off go first; `with_how` hands them on as keywords.
        how = [search_mode, min_relevance]
        searching = [*how, query_text, query_image, weight, top_k, *narrowing, *row_inputs]
        on([search_button.click, query_text.submit], with_how(page.search), searching, searched)
        # A clicked example fills the box, then searches: an example is a query to try, in one click.
        on(examples.load_input_event.then, with_how(page.search), searching, searched)
        on(search_mode.input, with_how(page.mode_changed), searching, searched)
        # "Load more" sends the last query again, its mode and cut-off included.
        on(load_more.click, page.load_more, [query_state, results_state], searched)
        on(more_button.click, with_how(page.more_like_this), [*how, photo_state, top_k, *narrowing], searched)
        on(less_button.click, with_how(page.less_like_this),
           [*how, photo_state, term_shown, query_text, query_image, weight, top_k, *narrowing, *row_inputs],
           {**searched, **terms_out})
        on(add_photo_button.click, page.add_to_query, [photo_state, term_shown, *row_inputs], terms_out)
        on(add_button.click, add_row, [term_shown], terms_out, queue=False)
        for number, row in enumerate(rows, start=1):
            on(row["remove"].click, remove_row(number), [term_shown], terms_out, queue=False)
        on(random_button.click, page.random_photo, narrowing[1:], {**chosen, **shown})
        on(gallery.select, page.select_result, [results_state], chosen)
    return app
