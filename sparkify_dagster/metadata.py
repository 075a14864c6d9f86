"""The Dagster metadata of a warehouse table: column schema, row count, name, lineage, previews, samples.

Shared by the assets and the checks (both show tables in the UI); the facts come from the catalog.
``definition_metadata`` is what an asset's definition carries, so the UI shows a table's columns,
name and column lineage before its first run; ``table_metadata`` is what each materialization adds.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import dagster as dg

from sparkify_dagster.catalog import Column, Layer, Table
from sparkify_dagster.lineage import column_lineage
from sparkify_dagster.warehouse.base import Warehouse
from sparkify_dagster.warehouse.dialect import quote_ident, relation

PREVIEW_ROWS = 5
# Dagster's table metadata types for the catalog's logical types (the exact type is the column's description).
_UI_TYPES = {"integer": "integer", "bigint": "integer", "double": "float", "timestamp": "timestamp"}


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


def table_name(warehouse: Warehouse, table: Table) -> str:
    """database.schema.table as the bound engine names it (a table with its own schema keeps it)."""
    database, schema, name = warehouse.qualified_name(table).rsplit(".", 2)
    return f"{database}.{table.schema or schema}.{name}"


def definition_metadata(table: Table, warehouse: Warehouse | None = None) -> dict[str, Any]:
    """What the definition of a table's asset shows before any run: its column schema; with the bound
    engine, its table name; for a star table, each column's lineage (read from its SQL; the analytics
    tables are left out, as reading their SQL would double what it adds to every load of the definitions)."""
    metadata: dict[str, Any] = {"dagster/column_schema": column_schema(table)}
    if warehouse is not None:
        metadata["dagster/table_name"] = table_name(warehouse, table)
        if table.layer is Layer.STAR:
            metadata["dagster/column_lineage"] = column_lineage(table, warehouse.dialect)
    return metadata


def table_metadata(table: Table, warehouse: Warehouse, row_count: int | None = None) -> dict[str, Any]:
    """dagster/row_count, dagster/column_schema and dagster/table_name for a materialized table."""
    return {
        "dagster/row_count": warehouse.row_count(table) if row_count is None else row_count,
        "dagster/column_schema": column_schema(table),
        "dagster/table_name": table_name(warehouse, table),
        "warehouse": warehouse.describe(),
    }


def _cell(value: Any) -> str | int | float | bool | None:
    """A value Dagster's table metadata can hold (timestamps and decimals as text, long text cut)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return str(value)[:200]


def _ui_column(name: str, column: Column | None, values: list[Any]) -> dg.TableColumn:
    if column is not None:
        return dg.TableColumn(name=name, type=_UI_TYPES.get(column.type, "string"), description=column.description)
    kinds = {type(v) for v in values if v is not None}
    ui_type = "integer" if kinds and kinds <= {int} else "float" if kinds and kinds <= {int, float} else "string"
    return dg.TableColumn(name=name, type=ui_type)


def sample_table(rows: list[dict], table: Table | None = None,
                 names: list[str] | None = None) -> dg.TableMetadataValue:
    """Rows as Dagster's typed table metadata (previews, rejects, check samples); a column of ``table``
    keeps its catalog description."""
    names = names or (list(rows[0]) if rows else [])
    known = {c.name: c for c in table.columns} if table is not None else {}
    schema = dg.TableSchema(columns=[_ui_column(n, known.get(n), [r.get(n) for r in rows]) for n in names])
    records = [dg.TableRecord({n: _cell(r.get(n)) for n in names}) for r in rows]
    return dg.MetadataValue.table(records=records, schema=schema)


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


def preview(table: Table, rows: list[dict]) -> dg.TableMetadataValue:
    """A table's rows (in its order, its preview columns) as typed table metadata."""
    return sample_table(rows, table, names=list(table.preview_columns or table.column_names))


def table_preview(warehouse: Warehouse, table: Table, limit: int = PREVIEW_ROWS) -> dg.TableMetadataValue:
    """The first ``limit`` rows of a table, in its order (so the preview is stable)."""
    return preview(table, ordered_rows(warehouse, table, limit))
