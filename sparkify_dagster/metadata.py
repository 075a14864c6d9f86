"""The Dagster metadata of a warehouse table: column schema, row count, name, previews, small tables.

Shared by the assets and the checks (both show tables in the UI); the facts come from the catalog.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from sparkify_dagster.catalog import Table
from sparkify_dagster.warehouse.base import Warehouse
from sparkify_dagster.warehouse.dialect import quote_ident, relation

PREVIEW_ROWS = 5


def column_schema(table: Table) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.type,
                description=c.description,
                constraints=dg.TableColumnConstraints(
                    nullable=not c.not_null, unique=table.primary_key == (c.name,)
                ),
            )
            for c in table.columns
        ]
    )


def table_metadata(table: Table, warehouse: Warehouse, row_count: int | None = None) -> dict[str, Any]:
    """dagster/row_count, dagster/column_schema and dagster/table_name for a materialized table."""
    return {
        "dagster/row_count": warehouse.row_count(table) if row_count is None else row_count,
        "dagster/column_schema": column_schema(table),
        "dagster/table_name": warehouse.qualified_name(table),
        "warehouse": warehouse.describe(),
    }


def markdown_table(rows: list[dict]) -> str:
    """A small markdown table (for previews and reject lists in the UI)."""
    if not rows:
        return "_none_"
    headers = list(rows[0])
    esc = lambda v: "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")[:120]  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(esc(r[h]) for h in headers) + " |" for r in rows]
    return "\n".join(lines)


def ordered_rows(warehouse: Warehouse, table: Table, limit: int | None = None) -> list[dict]:
    """A table's rows in its ``row_order`` (nulls last), its preview columns only, at most ``limit``."""
    names = list(table.preview_columns or table.column_names)
    order = ", ".join(
        f"{quote_ident(c[1:])} DESC NULLS LAST" if c.startswith("-") else f"{quote_ident(c)} NULLS LAST"
        for c in table.row_order
    )
    rows = warehouse.query(
        f"SELECT {', '.join(quote_ident(c) for c in names)} FROM {relation(table)} ORDER BY {order}"
        + (f" LIMIT {int(limit)}" if limit is not None else "")
    )
    return [dict(zip(names, r)) for r in rows]


def table_preview(warehouse: Warehouse, table: Table, limit: int = PREVIEW_ROWS) -> dg.MarkdownMetadataValue:
    """The first ``limit`` rows of a table, in its order (so the preview is stable), as markdown."""
    return dg.MetadataValue.md(markdown_table(ordered_rows(warehouse, table, limit)))
