"""The store client: photos and their vectors in a ClickHouse-compatible server (the embedded store,
ClickHouse or MyScale), through clickhouse-connect. See docs/architecture.md.

    errors       StoreError, StoreUnavailable, ModelMismatch, InvalidFilter
    columns      the table's columns and types
    filters      the filter grammar: parse_filters, filter_sql
    sql          pure SQL builders (values always bound server-side)
    dialects     every difference between servers (ClickHouseDialect, MyScaleDialect, dialect_for)
    connection   per-thread clickhouse-connect clients, errors translated
    results      search rows to ranked results
    client       PhotoStore
    index        the vector index's lifecycle
    words        a person's words as a lexical query (parse_query)
    lexical      word search: the search_text column, its full-text index, BM25 (lexical_search)
    cli          `python -m services.photostore index build|status|drop`
"""
from services.photostore.cli import main
from services.photostore.client import DEFAULT_EXACT_BELOW, DEFAULT_INDEX_TYPE, DEFAULT_SEARCH_WIDTH, PhotoStore
from services.photostore.dialects import CLICKHOUSE, MYSCALE, Dialect, dialect_for
from services.photostore.errors import InvalidFilter, ModelMismatch, StoreError, StoreUnavailable
from services.photostore.filters import FILTER_COLUMNS, Filters, parse_filters, parse_filters_json
from services.photostore.results import MAX_RESULTS

__all__ = [
    "CLICKHOUSE", "DEFAULT_EXACT_BELOW", "DEFAULT_INDEX_TYPE", "DEFAULT_SEARCH_WIDTH", "FILTER_COLUMNS",
    "MAX_RESULTS", "MYSCALE", "Dialect", "Filters", "InvalidFilter", "ModelMismatch", "PhotoStore",
    "StoreError", "StoreUnavailable", "dialect_for", "main", "parse_filters", "parse_filters_json",
]
