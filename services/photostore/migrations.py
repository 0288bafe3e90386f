"""Bringing a table made by an older version up to date: the newer metadata columns, added in place."""
from __future__ import annotations

import logging

from services.common.schemas import METADATA_FIELDS
from services.photostore import sql
from services.photostore.cluster import Layout
from services.photostore.connection import Connection
from services.photostore.lexical import add_search_text

logger = logging.getLogger(__name__)


def add_missing_columns(connection: Connection, layout: Layout, database: str, table: str) -> None:
    """Add the metadata columns an older table lacks (empty for the rows already there), so old data
    keeps working beside new; then the searchable words (`lexical.add_search_text`)."""
    present = {row[0] for row in connection.query(
        "column check", sql.columns_sql(), {"db": database, "name": table}).result_rows}
    for name in METADATA_FIELDS:
        if name not in present:
            for statement in layout.alter_table(sql.add_column_sql(database, table, name), database, table):
                connection.command("column addition", statement)
            logger.info("added the column %s to %s.%s", name, database, table)
            present.add(name)
    add_search_text(connection, layout, database, table, present)
