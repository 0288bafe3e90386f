"""What the search page writes for a person: captions, the chosen photo's details, the stats line and
the status lines. Plain functions of the gateway's answers, no Gradio and no calls, so that every
sentence can be tested on its own."""
from __future__ import annotations

import html
from typing import Any
from urllib.parse import urljoin, urlparse

from ui.dates import describe_range
from ui.matching import match_reason, relevance_compact, relevance_text

CAPTION_CHARS = 90

# A one-language text tower's language by name; any other code is shown as it is.
LANGUAGE_NAMES = {"en": "English"}

# The metadata column each of the Filters accordion's dropdowns filters, and its name in the status line.
FILTER_NAMES = {"photo_location_country": "country", "photographer_username": "photographer",
                "exif_camera_model": "camera"}


def markdown_text(sentence: str) -> str:
    """Plain text made safe for Markdown: the gateway's sentences are plain text, and `*`/`_` in ids
    must not turn into emphasis."""
    for char in ("\\", "*", "_", "`", "[", "]", "<", ">"):
        sentence = sentence.replace(char, "\\" + char)
    return sentence


def caption_for(result: dict[str, Any]) -> str:
    """What a person reads under a result: its relevance (else its score), then the best description
    there is. Plain text: the gallery escapes it."""
    words = (result.get("photo_description") or result.get("ai_description") or "").strip()
    words = " ".join(words.split()) or str(result.get("photo_id", ""))
    if len(words) > CAPTION_CHARS:
        words = words[: CAPTION_CHARS - 1].rstrip() + "…"
    words = video_mark(result) + words
    # Where the gateway says how the photo ranks in the library ("top 0.8%"), that says more than a score.
    if relevance := relevance_compact(result.get("relevance")):
        return f"{relevance} · {words}"
    score = result.get("score")
    return f"{score:.3f} · {words}" if isinstance(score, (int, float)) else words


def video_mark(result: dict[str, Any]) -> str:
    """"▶ 0:03 / 0:12 · " for a video (the frame shown, of its length); "" for a photo."""
    if result.get("kind") != "video":
        return ""
    return f"▶ {_clock(result.get('frame_s'))} / {_clock(result.get('duration_s'))} · "


def _clock(seconds: Any) -> str:
    whole = int(seconds) if isinstance(seconds, (int, float)) else 0
    return f"{whole // 60}:{whole % 60:02d}"


def result_image(result: dict[str, Any], base: str = "") -> str:
    """The image a result shows in the gallery: the gateway's small `thumbnail_url` when it has one (a
    path is the gateway's own, under `base`), else the photo's own `photo_image_url`."""
    thumbnail = str(result.get("thumbnail_url") or "")
    if thumbnail.startswith(("http://", "https://")):
        return thumbnail
    if thumbnail.startswith("/") and base:
        return urljoin(base.rstrip("/") + "/", thumbnail.lstrip("/"))
    return str(result.get("photo_image_url") or "")


def gallery_items(results: list[dict[str, Any]], base: str = "") -> list[tuple[str, str]]:
    """The gallery shows image URLs directly: the browser loads them, the UI server never does."""
    return [(image, caption_for(r)) for r in results if (image := result_image(r, base))]


def photo_html(photo: dict[str, Any]) -> str:
    """An <img> the browser loads itself: gr.Image would make the UI server download the URL."""
    url = str(photo.get("photo_image_url") or "")
    if not url.startswith(("http://", "https://")):
        return "<p>This photo has no image address.</p>"
    alt = photo.get("photo_description") or photo.get("ai_description") or photo.get("photo_id") or "photo"
    return (f'<img src="{html.escape(url, quote=True)}" alt="{html.escape(str(alt), quote=True)}" '
            'style="max-width:100%; max-height:260px; border-radius:8px; display:block; margin:auto;">')


def photo_details(photo: dict[str, Any]) -> str:
    """The chosen photo in one line: what it shows, who took it, where, a link to its page, its id, and
    for a result its relevance and why it matched."""
    words = (photo.get("photo_description") or photo.get("ai_description") or "").strip()
    lines = [f"**{markdown_text(words)}**" if words else f"**{markdown_text(str(photo.get('photo_id')))}**"]
    if photo.get("kind") == "video":
        lines.append(f"video, shown at {_clock(photo.get('frame_s'))} of {_clock(photo.get('duration_s'))}")
    who = " ".join(p for p in (photo.get("photographer_first_name"), photo.get("photographer_last_name")) if p)
    if who:
        lines.append(f"by {markdown_text(who)}")
    # Where it was taken: what the country filter matches, so a person can check a result against it.
    where_taken = photo.get("photo_location_name") or photo.get("photo_location_country")
    if where_taken:
        lines.append(f"in {markdown_text(str(where_taken))}")
    page = photo.get("photo_url", "")
    if page.startswith(("http://", "https://")):
        where = "Unsplash" if urlparse(page).hostname in ("unsplash.com", "www.unsplash.com") else "its page"
        lines.append(f"[open on {where}]({page})")
    lines.append(f"id `{photo.get('photo_id')}`")
    # A chosen result also says how it matched the search that found it.
    lines += [markdown_text(said) for said in (relevance_text(photo.get("relevance")), match_reason(photo.get("match")))
              if said]
    return " · ".join(lines)


def languages_text(languages: Any) -> str | None:
    """What a text tower's `languages` (ISO 639-1 codes) tell a person: "English", "3 languages",
    "50+ languages"; None when the embedder does not say (an older one), which is not "none"."""
    if not isinstance(languages, list):
        return None
    codes = list(dict.fromkeys(code for code in languages if isinstance(code, str) and code))
    if len(codes) == 1:
        return LANGUAGE_NAMES.get(codes[0], f"language: {codes[0]}")
    if len(codes) < 10:
        return f"{len(codes)} languages" if codes else None
    # The codes are the languages a multilingual tower was trained on; it copes with kin of them too,
    # so a round "50+" says its reach better than an exact count.
    return f"{len(codes) // 10 * 10}+ languages"


def model_line(model: dict[str, Any] | None) -> str:
    """Which models answer, in plain text: "Model: X (English)" when one model embeds images and texts,
    "Images: X · Texts: Y (50+ languages)" when a separate text tower embeds the queries' words.
    An older embedder names no text tower (its model does both) and no languages (unknown: unsaid)."""
    if not isinstance(model, dict) or not model.get("name"):
        return "Model unknown (the embedder did not answer)"
    name = str(model["name"])
    text_model = str(model.get("text_model") or name)
    languages = languages_text(model.get("languages"))
    said = f" ({languages})" if languages else ""
    if text_model == name:
        return f"Model: {name}{said}"
    return f"Images: {name} · Texts: {text_model}{said}"


def stats_markdown(stats: dict[str, Any] | None) -> str:
    """The line under the page: how many photos, which models (and their vectors' size), random weights
    or not."""
    if not stats:
        return "Index statistics are not available right now."
    photos = stats.get("photos")
    model = stats.get("model")
    parts = [f"**{photos:,}** photos indexed" if isinstance(photos, int) else "photos indexed: unknown",
             markdown_text(model_line(model))]
    if isinstance(model, dict) and model.get("name") and model.get("dim"):
        parts.append(f"{model['dim']}-d vectors")
    if stats.get("random_weights"):
        parts.append("random weights")
    return " · ".join(parts)


def facet_choices(values: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """A dropdown's choices from the gateway's facet values: "Japan (10)" is shown, "Japan" is sent."""
    choices = []
    for item in values:
        value, photos = item.get("value"), item.get("photos")
        if value:
            choices.append((f"{value} ({photos:,})" if isinstance(photos, int) else str(value), str(value)))
    return choices


def describe_filters(filters: dict[str, Any] | None, min_score: float | None,
                     min_relevance: float | None = None) -> str:
    """The active filters in words for the status line, e.g. `country: Japan or Norway, score ≥ 0.20`."""
    parts = []
    for column, value in (filters or {}).items():
        if isinstance(value, dict):  # the Taken range
            parts.append(f"taken: {describe_range(value)}")
            continue
        values = value if isinstance(value, list) else [value]
        parts.append(f"{FILTER_NAMES.get(column, column)}: {' or '.join(str(v) for v in values)}")
    if min_score is not None:
        parts.append(f"score ≥ {min_score:.2f}")
    if min_relevance is not None:
        parts.append(f"closer than {min_relevance * 100:.3g}% of the library")
    return ", ".join(parts)


def describe_query(text: str, has_image: bool) -> str:
    """What was searched for, as the status line names it."""
    if text and has_image:
        return f"“{text}” and your image"
    return f"“{text}”" if text else "your image"


def timing_text(answer: dict[str, Any]) -> str:
    """" in 45 ms (embedding 30 ms, store 12 ms)": the gateway's `timings` when it sends them, else
    `took_ms`; nothing when it sends neither."""
    timings = answer.get("timings") if isinstance(answer.get("timings"), dict) else {}
    took = timings.get("total_ms", answer.get("took_ms"))
    if not isinstance(took, (int, float)):
        return ""
    parts = [f"{label} {timings[name]:.0f} ms" for name, label in (("embed_ms", "embedding"), ("store_ms", "store"))
             if isinstance(timings.get(name), (int, float))]
    if answer.get("cached") is True:  # the gateway reused its answer: the store was only asked if it changed
        parts.append("a kept answer")
    return f" in {took:.0f} ms" + (f" ({', '.join(parts)})" if parts else "")


def result_status(answer: dict[str, Any], results: list[dict[str, Any]], what: str, query: dict[str, Any]) -> str:
    """The status line after a search: how many, for what, within which filters; or why there are none."""
    timing = timing_text(answer)
    narrowed = describe_filters(query.get("filters"), query.get("min_score"), query.get("min_relevance"))
    within = f" ({markdown_text(narrowed)})" if narrowed else ""
    if results:
        return f"{len(results)} result{'s' if len(results) != 1 else ''} for {markdown_text(what)}{within}{timing}."
    if not narrowed:
        return f"No photos found for {markdown_text(what)}. Is anything indexed yet?"
    # Say what to loosen: only what is set.
    loosen = [*(["clear them"] if query.get("filters") else []),
              *(["lower the minimum score"] if query.get("min_score") is not None else []),
              *(["lower the relevance cut-off"] if query.get("min_relevance") is not None else [])]
    return f"No photos match these filters{within} for {markdown_text(what)}; {' or '.join(loosen)}."


def random_status(filters: dict[str, Any] | None) -> str:
    """The status line under a random photo: within which filters, and what to do next."""
    within = f" ({markdown_text(describe_filters(filters, None))})" if filters else ""
    return f"Random photo{within}: press **More like this** to search with it."


TRUNCATED = "Your query was long: only its first part was searched."


def notices_markdown(answer: dict[str, Any]) -> str:
    """The gateway's notices about this search (e.g. "Only stop-words: searched by meaning instead."),
    one per line, as Markdown; "" when there are none. Random weights are left to the banner, which
    says so above every tab. A cut query is said by the gateway's own notice (where it was cut), else
    here."""
    notices = [str(notice) for notice in answer.get("notices") or [] if str(notice).strip()]
    if answer.get("random_weights"):
        notices = [notice for notice in notices if "random weights" not in notice.lower()]
    if answer.get("query_truncated") and not notices:
        notices.append(TRUNCATED)
    return "\n\n".join(f"ℹ️ {markdown_text(notice)}" for notice in notices)
