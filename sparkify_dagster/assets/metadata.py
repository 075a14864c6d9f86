"""Materialization metadata shared by every warehouse table asset."""

from __future__ import annotations

from typing import Any

import dagster as dg

from sparkify_dagster.catalog import Table
from sparkify_dagster.warehouse.base import Warehouse


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
