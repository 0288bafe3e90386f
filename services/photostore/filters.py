"""The filter grammar: which columns a search (or a random draw) may be filtered on, and how.

The one place that knows it. `parse_filters` checks a caller's mapping once, at the edge (the
gateway's request schema, or the store when called directly), and returns `Filters`; `filter_sql`
turns validated filters into WHERE conditions whose values are bound parameters, never SQL text.

    {"photo_location_country": "Spain"}                   equality
    {"photo_location_country": ["Spain", "France"]}       one of
    {"photo_width": {"gte": 100, "lt": 4000}}             ranges (eq, ne, gt, gte, lt, lte)
    {"photo_description": {"contains": "beach"}}          text contains, case-insensitive

Every refusal is an `InvalidFilter` (422, code `invalid_filter`) with a sentence naming the field or value.
Imports no database driver: the gateway's schema module uses it.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from services.common.schemas import METADATA_FIELDS
from services.photostore.columns import is_numeric
from services.photostore.errors import InvalidFilter

# Columns a caller may filter on: the photo's id and its metadata.
FILTER_COLUMNS: tuple[str, ...] = ("photo_id", *METADATA_FIELDS)
_COMPARISONS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
OPERATORS: tuple[str, ...] = (*_COMPARISONS, "in", "contains")


@dataclass(frozen=True)
class Condition:
    """One checked condition: `op` is a key of _COMPARISONS, "in" or "contains"; `value` is already
    converted (float for numeric columns, str for text, a list of them for "in")."""

    column: str
    op: str
    value: Any


class Filters(Mapping[str, Any]):
    """Validated filters. Reads as the caller's mapping (so fakes and logs see what was asked); the
    store builds its SQL from `conditions`."""

    def __init__(self, spec: Mapping[str, Any], conditions: tuple[Condition, ...]):
        self._spec = dict(spec)
        self.conditions = conditions

    def __getitem__(self, key: str) -> Any:
        return self._spec[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._spec)

    def __len__(self) -> int:
        return len(self._spec)

    def __repr__(self) -> str:
        return f"Filters({self._spec!r})"


def parse_filters(value: Any) -> Filters | None:
    """`value` checked against the grammar: Filters, or None when there is nothing to filter on."""
    if isinstance(value, Filters):
        return value or None
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidFilter('filters must be a JSON object mapping a field to a value or to operators, '
                            'e.g. {"photo_location_country": "Spain"}.')
    if not value:
        return None
    conditions: list[Condition] = []
    for column, spec in value.items():
        if column not in FILTER_COLUMNS:
            raise InvalidFilter(f"Cannot filter on {column!r}: filters may only name the metadata fields "
                                f"{', '.join(FILTER_COLUMNS)}.")
        numeric = is_numeric(column)
        if isinstance(spec, Mapping):
            if not spec:
                raise InvalidFilter(f"The filter on {column!r} has no operator.")
            for op, operand in spec.items():
                conditions.append(_condition(column, op, operand, numeric))
        elif isinstance(spec, (list, tuple)):
            conditions.append(_condition(column, "in", spec, numeric))
        else:
            conditions.append(_condition(column, "eq", spec, numeric))
    return Filters(value, tuple(conditions))


def parse_filters_json(text: str | None) -> Filters | None:
    """Filters sent as JSON text (a form field, a query parameter), checked like a JSON body's."""
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InvalidFilter('filters must be a JSON object, e.g. {"photo_location_country": "Spain"}.')
    return parse_filters(value)


def _condition(column: str, op: Any, operand: Any, numeric: bool) -> Condition:
    if op == "contains":
        if numeric:
            raise InvalidFilter(f"'contains' works on text columns; {column!r} is a number.")
        return Condition(column, op, _value(column, operand, numeric=False))
    if op == "in":
        if not isinstance(operand, (list, tuple)) or not operand:
            raise InvalidFilter(f"The filter on {column!r} needs a non-empty list of values.")
        return Condition(column, op, [_value(column, item, numeric) for item in operand])
    if op in _COMPARISONS:
        return Condition(column, op, _value(column, operand, numeric))
    raise InvalidFilter(f"Unknown filter operator {op!r} on {column!r}: use one of {', '.join(OPERATORS)}.")


def _value(column: str, value: Any, numeric: bool) -> Any:
    if numeric:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidFilter(f"The filter on {column!r} needs a number, not {value!r}.")
        return float(value)
    if not isinstance(value, str):
        raise InvalidFilter(f"The filter on {column!r} needs text, not {value!r}.")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # A JSON "\ud800" escape: half a UTF-16 pair, which the store's UTF-8 cannot carry.
            raise InvalidFilter(f"The filter on {column!r} holds a lone surrogate, which is not valid "
                                "Unicode; send valid UTF-8 text.") from None
    return value


def filter_sql(filters: Mapping[str, Any] | None) -> tuple[list[str], dict[str, Any]]:
    """WHERE conditions and their bound values. Validated `Filters` are trusted; anything else (a direct
    caller's mapping) is parsed first."""
    parsed = parse_filters(filters)
    conditions: list[str] = []
    params: dict[str, Any] = {}
    if parsed is None:
        return conditions, params
    for condition in parsed.conditions:
        name, column = f"f{len(params)}", condition.column
        bind_type = "Float64" if is_numeric(column) else "String"
        params[name] = condition.value
        if condition.op == "contains":
            conditions.append(f"positionCaseInsensitiveUTF8({column}, {{{name}:String}}) > 0")
        elif condition.op == "in":
            conditions.append(f"{column} IN {{{name}:Array({bind_type})}}")
        else:
            conditions.append(f"{column} {_COMPARISONS[condition.op]} {{{name}:{bind_type}}}")
    return conditions, params
