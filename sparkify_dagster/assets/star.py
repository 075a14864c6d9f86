"""The star schema: songplays (fact) and users, songs, artists, time (dimensions)."""


from collections.abc import Iterator

import dagster as dg

from sparkify_dagster.assets import star_updates
from sparkify_dagster.assets.metadata import OWNERS, code_references, markdown_table, table_metadata
from sparkify_dagster.assets.staging import WAREHOUSE_POOL
from sparkify_dagster.checks import check_specs, run_selected_checks
from sparkify_dagster.catalog import ARTISTS, SONGPLAYS, SONGS, TIME, USERS, Table
from sparkify_dagster.warehouse.base import Warehouse, quote_ident

STAR_GROUP = "star"

# Each star table and what it is built from. songplays also waits for the dimensions it
# references, so its foreign-key checks see them in their new state.
STAR_DEPS: dict[str, list[str]] = {
    USERS.name: ["staging_events"],
    SONGS.name: ["staging_songs"],
    ARTISTS.name: ["staging_songs"],
    SONGPLAYS.name: ["staging_events", "staging_songs", USERS.name, SONGS.name, ARTISTS.name],
    TIME.name: [SONGPLAYS.name],
}

PREVIEW_ROWS = 5


def rebuild(context: dg.AssetExecutionContext, warehouse: Warehouse, table: Table) -> dg.MaterializeResult:
    """Bring a star table up to date with staging, atomically (in full, or only what changed), and
    describe the result."""
    warehouse.ensure_tables()
    done = star_updates.update(warehouse, table)
    how = {"full": "rebuilt in full", "unchanged": "unchanged since its last build (same raw files)",
           "new log files": f"rows of the keys in {done.new_files:,} new log file(s) replaced",
           "differences": f"{done.added:,} start_times added, {done.removed:,} removed (the difference with songplays)",
           }[done.how]
    context.log.info(f"{table.name}: {done.rows:,} rows; {how}")
    rows = done.rows
    order = ", ".join(quote_ident(c) for c in table.primary_key)
    preview = warehouse.query(f"SELECT * FROM {quote_ident(table.name)} ORDER BY {order} LIMIT {PREVIEW_ROWS}")
    return dg.MaterializeResult(
        asset_key=table.name,
        metadata={
            **table_metadata(table, warehouse, row_count=rows),
            "preview": dg.MetadataValue.md(markdown_table([dict(zip(table.column_names, r)) for r in preview])),
            "build": how,
        }
    )


def _star_asset(table: Table, engine_kind: str) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=table.name,
        specs=[dg.AssetSpec(
            table.name, deps=STAR_DEPS[table.name], group_name=STAR_GROUP, kinds={engine_kind},
            description=table.description, owners=OWNERS, metadata=code_references(f"sql/{table.name}.sql"),
        )],
        check_specs=check_specs(table.name),
        can_subset=True,  # the checks-only job runs the checks without rebuilding
        pool=WAREHOUSE_POOL,
        description=f"Rebuild {table.name} from sql/{table.name}.sql, then check it.",
    )
    def _asset(context: dg.AssetExecutionContext,
               warehouse: Warehouse) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        if dg.AssetKey(table.name) in context.selected_asset_keys:
            yield rebuild(context, warehouse, table)
        yield from run_selected_checks(context, warehouse, table.name)

    return _asset


def build_star_assets(engine_kind: str) -> list[dg.AssetsDefinition]:
    """songplays, users, songs, artists and time, each rebuilt by its sql/<table>.sql."""
    return [_star_asset(t, engine_kind) for t in (USERS, SONGS, ARTISTS, SONGPLAYS, TIME)]
