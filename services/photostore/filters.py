"""The filter grammar: which columns a search (or a random draw) may be filtered on, and how.

The one place that knows it. `parse_filters` checks a caller's mapping once, at the edge (the
gateway's request schema, or the store when called directly), and returns `Filters`; `filter_sql`
turns validated filters into WHERE conditions whose values are bound parameters, never SQL text.

    {"photo_location_country": "Spain"}                   equality
    {"photo_location_country": ["Spain", "France"]}       one of
    {"photo_width": {"gte": 100, "lt": 4000}}             ranges (eq, ne, gt, gte, lt, lte)
    {"photo_description": {"contains": "beach"}}          text contains, case-insensitive
    {"taken_at": {"gte": "2023-01-01", "lt": "2024-01-01"}}   a time range (ISO 8601 dates or times, UTC)
    {"exif_camera_model": "X-T4"}                         equality on the camera fields, as on any text
    {"near": {"lat": 48.85, "lon": 2.35, "km": 25}}       within a great-circle distance of a point

Every refusal is an `InvalidFilter` (422, code `invalid_filter`) with a sentence naming the field or value.
Imports no database driver: the gateway's schema module uses it.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from services.common.schemas import METADATA_FIELDS, parse_timestamp
from services.photostore.columns import is_numeric, is_time
from services.photostore.errors import InvalidFilter

# Columns a caller may filter on: the photo's id and its metadata; and "near", the geo filter.
FILTER_COLUMNS: tuple[str, ...] = ("photo_id", *METADATA_FIELDS)
NEAR = "near"
EARTH_KM = 20_037.5  # half the equator: no two points are farther apart
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
        if column == NEAR:
            conditions.append(_near(spec))
            continue
        if column not in FILTER_COLUMNS:
            raise InvalidFilter(f"Cannot filter on {column!r}: filters may only name the metadata fields "
                                f"{', '.join(FILTER_COLUMNS)}, or {NEAR!r}.")
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


def _near(spec: Any) -> Condition:
    example = '{"near": {"lat": 48.85, "lon": 2.35, "km": 25}}'
    if not isinstance(spec, Mapping) or set(spec) != {"lat", "lon", "km"}:
        raise InvalidFilter(f"The 'near' filter takes lat, lon and km, e.g. {example}.")
    values = {}
    for key, low, high in (("lat", -90, 90), ("lon", -180, 180), ("km", 0, EARTH_KM)):
        number = spec[key]
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not low <= number <= high:
            raise InvalidFilter(f"The 'near' filter's {key} must be a number from {low} to {high:g}, "
                                f"not {number!r}.")
        values[key] = float(number)
    return Condition(NEAR, NEAR, (values["lat"], values["lon"], values["km"]))


def _condition(column: str, op: Any, operand: Any, numeric: bool) -> Condition:
    if is_time(column):
        if op not in _COMPARISONS:
            raise InvalidFilter(f"The filter on {column!r} takes a time or a range of times "
                                f'(e.g. {{"gte": "2023-01-01", "lt": "2024-01-01"}}), not {op!r}.')
        try:
            moment = parse_timestamp(operand) if isinstance(operand, str) and operand.strip() else None
        except ValueError as exc:
            raise InvalidFilter(f"The filter on {column!r}: {exc}.") from None
        if moment is None:
            raise InvalidFilter(f"The filter on {column!r} needs an ISO 8601 date or time, not {operand!r}.")
        return Condition(column, op, moment.replace("T", " "))
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
        if condition.op == NEAR:
            lat, lon, km = condition.value
            params.update({f"{name}_lat": lat, f"{name}_lon": lon, f"{name}_m": km * 1000.0})
            # greatCircleDistance(lon1, lat1, lon2, lat2) in metres; NULL (no location) never matches.
            conditions.append(f"greatCircleDistance(photo_location_longitude, photo_location_latitude, "
                              f"{{{name}_lon:Float64}}, {{{name}_lat:Float64}}) <= {{{name}_m:Float64}}")
            continue
        if is_time(column):
            params[name] = condition.value
            conditions.append(f"{column} {_COMPARISONS[condition.op]} toDateTime({{{name}:String}}, 'UTC')")
            continue
        bind_type = "Float64" if is_numeric(column) else "String"
        params[name] = condition.value
        if condition.op == "contains":
            conditions.append(f"positionCaseInsensitiveUTF8({column}, {{{name}:String}}) > 0")
        elif condition.op == "in":
            conditions.append(f"{column} IN {{{name}:Array({bind_type})}}")
        else:
            conditions.append(f"{column} {_COMPARISONS[condition.op]} {{{name}:{bind_type}}}")
    return conditions, params
