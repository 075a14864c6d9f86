"""Analytics: small summary tables of the star schema, in their own ``analytics`` schema, each with a chart.

Every table is a catalog record (``layer=ANALYTICS``: its columns, what it reads, its row order and
its chart) and one SELECT in ``sql/analytics_<name>.sql``, rendered like the star transforms and run
in the warehouse: only the few result rows (at most 24) come back to Python, to draw the chart and the
preview. A table is replaced atomically: DELETE + INSERT in one transaction, never TRUNCATE (which
commits on Redshift), so a reader sees the old rows or the new ones, never an empty table.

The tables live in the schema ``analytics`` (``CREATE SCHEMA IF NOT EXISTS``, on DuckDB and Redshift
alike), so BI users can be granted that schema alone.
"""

from collections.abc import Iterator

import dagster as dg

from sparkify_dagster.assets.charts import bar_chart, chart_markdown
from sparkify_dagster.assets.metadata import OWNERS, Binding, table_spec
from sparkify_dagster.assets.staging import WAREHOUSE_POOL
from sparkify_dagster.catalog import (  # noqa: F401  (the analytics parameters, for readers of this module)
    ANALYTICS_SCHEMA,
    ANALYTICS_TABLES,
    PLATFORMS,
    TOP_N,
    WEEKDAY_NAMES,
    Table,
)
from sparkify_dagster.checks import check_specs, run_selected_checks
from sparkify_dagster.metadata import ordered_rows, preview, table_metadata, table_name
from sparkify_dagster.warehouse.base import TableUpdate, Warehouse
from sparkify_dagster.warehouse.dialect import Dialect, quote_ident
from sparkify_dagster.warehouse.transforms import rebuild_statements, render

ANALYTICS_GROUP = "analytics"
ANALYTICS_OWNERS = [*OWNERS, "team:analytics"]
ANALYSES: tuple[Table, ...] = ANALYTICS_TABLES
ANALYSES_BY_NAME = {t.name: t for t in ANALYSES}


def analytics_sql(name: str, dialect: Dialect) -> str:
    """The SELECT that builds analytics table ``name``, rendered for ``dialect``."""
    return render(ANALYSES_BY_NAME[name], dialect)


def create_statements(table: Table, dialect: Dialect) -> list[str]:
    """CREATE SCHEMA / CREATE TABLE IF NOT EXISTS for an analytics table, in the dialect's spelling."""
    return [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(ANALYTICS_SCHEMA)}", dialect.create_table(table)]


def analytics_statements(dialect: Dialect) -> list[str]:
    """Every statement that builds the analytics schema, in order (e.g. for ``sparkify-sql``)."""
    statements: list[str] = []
    for table in ANALYSES:
        statements += [s for s in create_statements(table, dialect) if s not in statements]
    for table in ANALYSES:
        statements += rebuild_statements(table, dialect)
    return statements


def qualified_name(warehouse: Warehouse, table: Table) -> str:
    """database.analytics.table, for dagster/table_name (the warehouse names its own schema)."""
    return table_name(warehouse, table)


def rebuild(warehouse: Warehouse, table: Table) -> tuple[TableUpdate, list[dict]]:
    """Replace the table atomically; return how it was brought up to date and its (few) rows in
    display order."""
    # The star tables it reads (a fresh warehouse gives empty results) and its own, in the analytics
    # schema; each is derived from the star schema, so one of an older shape is dropped and recreated.
    warehouse.ensure_tables()
    warehouse.ensure_tables([table])
    done = warehouse.update_table(table)
    return done, ordered_rows(warehouse, table)


def chart_png(table: Table, rows: list[dict]) -> bytes:
    chart = table.chart
    return bar_chart([chart.label_of(r) for r in rows], [r[chart.value] for r in rows], title=chart.title,
                     value_label=chart.value, horizontal=chart.horizontal)


def _materialization(warehouse: Warehouse, table: Table, done: TableUpdate, rows: list[dict],
                     png: bytes) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        asset_key=table.name,
        metadata={
            **table_metadata(table, warehouse, row_count=done.rows),
            "chart": dg.MetadataValue.md(chart_markdown(png, table.chart.title)),
            "preview": preview(table, rows),
            "build": done.describe(),
        },
    )


def materialize_selected(context: dg.AssetExecutionContext,
                         warehouse: Warehouse) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Rebuild the selected analytics tables, in one step, each with its chart; then their checks."""
    for table in ANALYSES:
        if dg.AssetKey(table.name) in context.selected_asset_keys:
            done, rows = rebuild(warehouse, table)
            yield _materialization(warehouse, table, done, rows, chart_png(table, rows))
    for table in ANALYSES:
        yield from run_selected_checks(context, warehouse, table.name)


def build_analytics_assets(binding: Binding) -> dg.AssetsDefinition:
    """The analytics tables (group "analytics"): one asset each, built together in one step, with their checks."""

    @dg.multi_asset(
        name="analytics",
        specs=[
            table_spec(
                t, binding, group_name=ANALYTICS_GROUP, code=(f"sql/{t.sql_file}", "assets/charts.py"),
                kinds={binding.engine_kind, "sql", "pillow"}, owners=ANALYTICS_OWNERS,
                description=f"{t.description} Table {ANALYTICS_SCHEMA}.{t.name}; a chart in the "
                "materialization metadata.",
            )
            for t in ANALYSES
        ],
        check_specs=[spec for t in ANALYSES for spec in check_specs(t.name)],
        can_subset=True,
        pool=WAREHOUSE_POOL,
        description="Rebuild the analytics tables from the star schema and draw their charts.",
    )
    def analytics(context: dg.AssetExecutionContext,
                  warehouse: Warehouse) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        yield from materialize_selected(context, warehouse)

    return analytics
