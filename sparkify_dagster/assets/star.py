"""The star schema: songplays (fact) and users, songs, artists, time (dimensions), from the catalog."""

from collections.abc import Iterator

import dagster as dg

from sparkify_dagster.assets.metadata import Binding, table_spec
from sparkify_dagster.assets.staging import WAREHOUSE_POOL
from sparkify_dagster.catalog import STAR_TABLES, Table
from sparkify_dagster.checks import check_specs, run_selected_checks
from sparkify_dagster.metadata import table_metadata, table_preview
from sparkify_dagster.warehouse.base import Warehouse

STAR_GROUP = "star"


def rebuild(context: dg.AssetExecutionContext, warehouse: Warehouse, table: Table) -> dg.MaterializeResult:
    """Bring a star table up to date with staging, atomically (the engine does only what the change
    needs, by the table's update rule), and describe the result."""
    warehouse.ensure_tables()
    done = warehouse.update_table(table)
    return dg.MaterializeResult(
        asset_key=table.name,
        metadata={
            **table_metadata(table, warehouse, row_count=done.rows),
            "preview": table_preview(warehouse, table),
            "build": done.describe(),
        }
    )


def _star_asset(table: Table, binding: Binding) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=table.name,
        specs=[table_spec(table, binding, group_name=STAR_GROUP, code=(f"sql/{table.sql_file}",))],
        check_specs=check_specs(table.name),
        can_subset=True,  # the checks-only job runs the checks without rebuilding
        pool=WAREHOUSE_POOL,
        description=f"Rebuild {table.name} from sql/{table.sql_file}, then check it.",
    )
    def _asset(context: dg.AssetExecutionContext,
               warehouse: Warehouse) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        if dg.AssetKey(table.name) in context.selected_asset_keys:
            yield rebuild(context, warehouse, table)
        yield from run_selected_checks(context, warehouse, table.name)

    return _asset


def build_star_assets(binding: Binding) -> list[dg.AssetsDefinition]:
    """Every star table of the catalog, each rebuilt by its SQL file and checked in its own step."""
    return [_star_asset(t, binding) for t in STAR_TABLES]
