"""The "add term" rows' own events: show a row, clear and hide one, put a photo into a free one.

Rows are named `term{n}_{text|image|photo|weight|row}` in the updates (n from 1), with `term_shown`
the list of which rows are on the page: a removed row is emptied as well as hidden, so a hidden row
never adds a term to the query.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from ui.formatting import markdown_text
from ui.terms import MAX_ROWS, NO_FREE_ROW, free_row, rows_of

Updates = dict[str, Any]
EMPTY_ROW = {"text": "", "image": None, "photo": "", "weight": 1.0}


def _shown(shown: Sequence[bool] | None) -> list[bool]:
    return list(shown or [False] * MAX_ROWS)


def _no_room() -> Updates:
    gr.Warning(NO_FREE_ROW)
    return {"status": f"⚠️ {markdown_text(NO_FREE_ROW)}"}


def _fill(index: int, values: dict[str, Any], visible: bool) -> Updates:
    return {**{f"term{index + 1}_{name}": value for name, value in values.items()},
            f"term{index + 1}_row": gr.update(visible=visible)}


def add_row(shown: Sequence[bool] | None) -> Updates:
    """Show the first hidden row, empty, at weight +1."""
    visible = _shown(shown)
    index = next((index for index, on_page in enumerate(visible) if not on_page), None)
    if index is None:
        return _no_room()
    visible[index] = True
    return {**_fill(index, EMPTY_ROW, True), "term_shown": visible}


def remove_row(number: int) -> Callable[[Sequence[bool] | None], Updates]:
    """The ✕ of row `number` (from 1): empty it and hide it."""

    def remove_term(shown: Sequence[bool] | None) -> Updates:
        visible = _shown(shown)
        visible[number - 1] = False
        return {**_fill(number - 1, EMPTY_ROW, False), "term_shown": visible}

    return remove_term


def place_photo(photo_id: str, weight: float, shown: Sequence[bool] | None, rows: Sequence[Any]) -> Updates:
    """Updates that put `photo_id` at `weight` into its own row if it has one, else a free row, and show
    it ("_index" says which, for the caller to pop), or a warning when every row is taken."""
    visible = _shown(shown)
    # A photo already among the terms changes its weight rather than taking a second row.
    index = next((index for index, row in enumerate(rows_of(rows))
                  if visible[index] and str(row.get("photo") or "").strip() == photo_id), None)
    if index is None:
        index = free_row(rows_of(rows), visible)
    if index is None:
        return _no_room()
    visible[index] = True
    values = {"text": "", "image": None, "photo": photo_id, "weight": weight}
    return {**_fill(index, values, True), "term_shown": visible, "_index": index}
