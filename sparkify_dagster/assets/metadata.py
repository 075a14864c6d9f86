"""What every asset of this project shows in the UI: owners, code references, and a table's spec."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from sparkify_dagster.catalog import Layer, Table
from sparkify_dagster.metadata import definition_metadata
from sparkify_dagster.source import RawDataSource
from sparkify_dagster.warehouse.base import Warehouse
from sparkify_dagster.warehouse.transforms import code_version

OWNERS = ["team:data-engineering"]
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


@dataclass(frozen=True)
class Binding:
    """What the definitions know when they build the assets: the bound warehouse and raw source (so a
    definition names its table and location before any run) and the freshness policy of each layer.
    The default binds nothing: the graph's shape only (for the sensor and ``sparkify-sql``)."""

    engine_kind: str = "duckdb"
    warehouse: Warehouse | None = None
    raw_data: RawDataSource | None = None
    freshness: Mapping[Layer, dg.FreshnessPolicy] = field(default_factory=dict)


def table_spec(table: Table, binding: Binding, *, group_name: str, code: tuple[str, ...],
               kinds: set[str] | None = None, owners: list[str] | None = None,
               description: str | None = None) -> dg.AssetSpec:
    """The asset spec of a warehouse table: its inputs, and the facts the UI shows before its first run
    (column schema, table name, column lineage, the code version of its SQL, its freshness policy)."""
    return dg.AssetSpec(
        table.name, deps=list(table.built_from), group_name=group_name, kinds=kinds or {binding.engine_kind},
        description=description or table.description, owners=owners or OWNERS,
        metadata={**definition_metadata(table, binding.warehouse), **code_references(*code)},
        code_version=code_version(table) if table.sql_file else None,
        freshness_policy=binding.freshness.get(table.layer),
    )
