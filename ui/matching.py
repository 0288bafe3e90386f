"""What the page says about how a result matched: the search modes a person picks from, a result's
relevance ("closer than 99.2% of the library"), why it matched ("words: beach, dog · meaning #3"), its
description with the matched words marked, and the gateway's notices. Plain functions of the gateway's
answers, no Gradio and no calls, so that every sentence can be tested on its own.

A description is untrusted text (whoever ingested the photo wrote it), so everything shown as HTML is
escaped here, and only the `<mark>` tags this module adds are markup.
"""
from __future__ import annotations

import html
import math
import re
from typing import Any

# The gateway's `mode` values, as the page's toggle names them.
MODE_LABELS = {"vector": "Meaning", "lexical": "Words", "hybrid": "Both"}
MODE_CHOICES = [(label, mode) for mode, label in MODE_LABELS.items()]
MODE_HELP = "Meaning: photos like what the words describe · Words: photos whose text has the words · Both: either."

# The relevance cut-off's choices: (shown, sent as a percentage); another percentage can be typed.
RELEVANCE_CHOICES = [("Off", "0"), ("Closer than 50%", "50"), ("Closer than 90%", "90"),
                     ("Closer than 99%", "99"), ("Closer than 99.9%", "99.9")]
RELEVANCE_HELP = ("Show only photos closer to the query than this share of the library. "
                  "Off = every result; type another percentage if you like, e.g. 95.")
BAD_RELEVANCE = "Type the relevance cut-off as a percentage from 0 to 100, e.g. 95 (0 = off)."

# How much of a description a result card shows.
CARD_CHARS = 240


def min_relevance_of(value: Any) -> float | None:
    """The gateway's `min_relevance` (0..1) from the cut-off's value: a percentage ("99", "99.9%",
    or a number), None for off (0 or empty). ValueError with the sentence to show for anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        percent = float(str(value).strip().rstrip("%").strip())
    except ValueError:
        raise ValueError(BAD_RELEVANCE) from None
    if not math.isfinite(percent) or not 0 <= percent < 100:
        raise ValueError(BAD_RELEVANCE)
    return percent / 100 or None


def _percent(value: float) -> str:
    """One decimal, without a trailing ".0": 99.2, 50."""
    return f"{value:.1f}".removesuffix(".0")


def relevance_text(relevance: Any) -> str:
    """"closer than 99.2% of the library"; "" when the gateway does not say. Rounded down, so a
    photo is never said to be closer than it is, and never "100%": the library is only sampled."""
    if not isinstance(relevance, (int, float)) or isinstance(relevance, bool) or not 0 <= relevance <= 1:
        return ""
    return f"closer than {_percent(min(math.floor(round(relevance * 1000, 6)) / 10, 99.9))}% of the library"


def relevance_compact(relevance: Any) -> str:
    """The same, short, for a gallery caption: "top 0.8%"; "" when the gateway does not say."""
    if not isinstance(relevance, (int, float)) or isinstance(relevance, bool) or not 0 <= relevance <= 1:
        return ""
    return f"top {_percent(max(math.ceil(round((1 - relevance) * 1000, 6)) / 10, 0.1))}%"


def match_reason(match: Any) -> str:
    """Why a result matched, from its `match`: "words: beach, dog · meaning #3" (the query's words
    found in its text, and its place in the search by meaning); "" when the gateway does not say."""
    if not isinstance(match, dict):
        return ""
    parts = []
    words = matched_words(match)
    if words:
        parts.append(f"words: {', '.join(words)}")
    elif isinstance(match.get("lexical_rank"), int):
        parts.append(f"words #{match['lexical_rank']}")
    if isinstance(match.get("vector_rank"), int):
        parts.append(f"meaning #{match['vector_rank']}")
    return " · ".join(parts)


def matched_words(match: Any) -> list[str]:
    """The query's words the gateway found in a result's text, without blanks or repeats."""
    words = match.get("words") if isinstance(match, dict) else None
    if not isinstance(words, list):
        return []
    return list(dict.fromkeys(word.strip() for word in words if isinstance(word, str) and word.strip()))


# A word's edges as the store's text index sees them: any ASCII character that is not a letter or a digit
# separates words (so "red_dog" holds "dog"); every other character is part of a word.
_WORD_CHAR = r"[A-Za-z0-9\u0080-\U0010ffff]"


def highlight(text: str, words: list[str]) -> str:
    """`text` as HTML, escaped, with each whole-word occurrence of `words` (any case) in `<mark>`."""
    if not words:
        return html.escape(text)
    # Longest first, so "dogs" is marked whole rather than as "dog" plus a letter.
    alternatives = "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))
    pattern = re.compile(rf"(?<!{_WORD_CHAR})(?:{alternatives})(?!{_WORD_CHAR})", re.IGNORECASE)
    out, end = [], 0
    for found in pattern.finditer(text):
        out += [html.escape(text[end:found.start()]), f"<mark>{html.escape(found.group())}</mark>"]
        end = found.end()
    out.append(html.escape(text[end:]))
    return "".join(out)


def description_of(result: dict[str, Any], limit: int = CARD_CHARS) -> str:
    """The text a card shows: the best description there is (whitespace tidied, cut at `limit`), else the id."""
    words = " ".join(str(result.get("photo_description") or result.get("ai_description") or "").split())
    words = words or str(result.get("photo_id", ""))
    return words if len(words) <= limit else words[: limit - 1].rstrip() + "…"


def card_html(number: int, result: dict[str, Any]) -> str:
    """One result's card: its number in the gallery, its description with the matched words marked,
    then its relevance and why it matched."""
    match = result.get("match")
    why = " · ".join(part for part in (relevance_text(result.get("relevance")), match_reason(match)) if part)
    return (f'<li class="result-card" data-photo-id="{html.escape(str(result.get("photo_id", "")), quote=True)}">'
            f'<span class="card-number">{number}.</span> '
            f'<span class="card-text">{highlight(description_of(result), matched_words(match))}</span>'
            + (f' <span class="card-why">{html.escape(why)}</span>' if why else "") + "</li>")


def result_cards(results: list[dict[str, Any]]) -> str:
    """The results as cards (HTML), numbered as the gallery shows them; "" when no result says how it
    matched (an older gateway), since the cards would only repeat the gallery's captions."""
    if not any(r.get("match") or r.get("relevance") is not None for r in results):
        return ""
    return '<ol class="result-cards">' + "".join(card_html(n, r) for n, r in enumerate(results, 1)) + "</ol>"
