"""The Filters panel's "Taken" box: a date range as a person types it, turned into the gateway's
`taken_at` range filter, and back into words for the status line."""
from __future__ import annotations

import re
from datetime import date, timedelta

TAKEN_HELP = "Dates as 2023-06-01: 'FROM to TO', 'FROM to' or 'to TO'; both ends included."


def taken_range(text: str | None) -> dict[str, str] | None:
    """{"gte": FROM, "lt": the day after TO} from "FROM to TO" (either side may be left out; one date
    alone is that day); None when empty. Raises ValueError with a sentence for anything else."""
    text = (text or "").strip()
    if not text:
        return None
    parts = [part.strip() for part in re.split(r"\s+to\s+|^to\s+|\s+to$|\s*\.\.\s*", text)]
    if len(parts) == 1:  # one date: that day
        parts = [parts[0], parts[0]]
    if len(parts) != 2 or not any(parts):
        raise ValueError(f"“{text}” is not a date range. {TAKEN_HELP}")
    try:
        start, end = (date.fromisoformat(part) if part else None for part in parts)
    except ValueError:
        raise ValueError(f"“{text}” has a date that is not YYYY-MM-DD. {TAKEN_HELP}") from None
    if start and end and end < start:
        raise ValueError(f"“{text}” ends before it starts.")
    wanted = {}
    if start:
        wanted["gte"] = start.isoformat()
    if end:
        wanted["lt"] = (end + timedelta(days=1)).isoformat()
    return wanted


def describe_range(value: dict) -> str:
    """The range in the words it was typed in: "2023-01-01 to 2023-12-31"."""
    start = value.get("gte", "")
    end = (date.fromisoformat(value["lt"]) - timedelta(days=1)).isoformat() if value.get("lt") else ""
    return f"{start} to {end}".strip() if start != end else start
