"""Materialization metadata shared by every warehouse table asset."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from sparkify_dagster.catalog import Table
from sparkify_dagster.warehouse.base import Warehouse, quote_ident


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


# --- ownership, code references and previews (shown on every asset in the UI) ----------------------

OWNERS = ["team:data-engineering"]
PREVIEW_ROWS = 5
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def code_references(*files: str | tuple[str, str]) -> dict[str, Any]:
    """dagster/code_references to files of this package (``"sql/users.sql"`` or ``(path, label)``).

    Merged with the reference to the asset's function that ``dg.with_source_code_references`` adds
    in the definitions; ``dg.link_code_references_to_git`` turns both into links to the repository.
    """
    refs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # code references are beta in Dagster 1.13
        for item in files:
            path, label = item if isinstance(item, tuple) else (item, None)
            full = PACKAGE_DIR / path
            if not full.is_file():
                raise FileNotFoundError(f"code reference to a file that does not exist: {full}")
            refs.append(dg.LocalFileCodeReference(file_path=str(full), label=label))
        return {"dagster/code_references": dg.CodeReferencesMetadataValue(code_references=refs)}


def table_preview(warehouse: Warehouse, table: Table, order_by: Sequence[str], limit: int = PREVIEW_ROWS,
                  columns: Sequence[str] | None = None) -> dg.MarkdownMetadataValue:
    """The first ``limit`` rows of a table (ordered, so the preview is stable) as markdown.

    ``columns`` (default: all) keeps a wide table's preview readable in the UI.
    """
    names = list(columns or table.column_names)
    order = ", ".join(f"{quote_ident(c)} NULLS LAST" for c in order_by)
    rows = warehouse.query(
        f"SELECT {', '.join(quote_ident(c) for c in names)} "
        f"FROM {quote_ident(table.name)} ORDER BY {order} LIMIT {int(limit)}"
    )
    return dg.MetadataValue.md(markdown_table([dict(zip(names, r)) for r in rows]))
