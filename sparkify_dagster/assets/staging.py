"""Staging tables: the raw JSON records as loaded, one row per record, rejects in load_errors."""


import dagster as dg

from sparkify_dagster.assets.metadata import markdown_table, table_metadata
from sparkify_dagster.assets.raw import LOG_DATA, SONG_DATA
from sparkify_dagster.catalog import STAGING_EVENTS, STAGING_SONGS, Table
from sparkify_dagster.source import LOG_PREFIX, SONG_PREFIX, RawDataSource
from sparkify_dagster.warehouse.base import LoadReport, Warehouse

STAGING_GROUP = "staging"
WAREHOUSE_POOL = "sparkify_warehouse"


def _load(context: dg.AssetExecutionContext, warehouse: Warehouse, raw_data: RawDataSource,
          table: Table, prefix: str, jsonpaths: list[str] | None) -> dg.MaterializeResult:
    warehouse.ensure_tables()
    files = raw_data.list_files(prefix)
    context.log.info(f"{table.name}: loading {len(files):,} files from {raw_data.describe()}/{prefix}")
    report = warehouse.load_staging(table, raw_data, files, context.run.run_id, context.log, jsonpaths=jsonpaths)
    _log_report(context, report)
    return dg.MaterializeResult(metadata={**table_metadata(table, warehouse), **_report_metadata(report)})


def _log_report(context: dg.AssetExecutionContext, report: LoadReport) -> None:
    context.log.info(
        f"{report.table}: {report.files:,} files, {report.records_read:,} records read, "
        f"{report.records_staged:,} staged, {report.records_rejected:,} rejected in {report.seconds:.2f}s"
    )
    for err in report.first_errors:
        context.log.warning(
            f"{report.table}: rejected {err['source_file']} line {err['line_number']}"
            f"{' column ' + err['column_name'] if err['column_name'] else ''}: {err['reason']}"
        )


def _report_metadata(report: LoadReport) -> dict:
    return {
        "files": report.files,
        "records_read": report.records_read,
        "records_staged": report.records_staged,
        "records_rejected": report.records_rejected,
        "load_seconds": dg.MetadataValue.float(round(report.seconds, 3)),
        "first_rejects": dg.MetadataValue.md(markdown_table(report.first_errors)),
    }


def build_staging_assets(engine_kind: str) -> list[dg.AssetsDefinition]:
    """staging_events and staging_songs, tagged with the engine's kind."""

    @dg.asset(
        name=STAGING_EVENTS.name,
        deps=[LOG_DATA],
        group_name=STAGING_GROUP,
        kinds={engine_kind},
        pool=WAREHOUSE_POOL,
        description=STAGING_EVENTS.description,
    )
    def staging_events(
        context: dg.AssetExecutionContext, warehouse: Warehouse, raw_data: RawDataSource
    ) -> dg.MaterializeResult:
        """Every event record of log_data, typed per log_json_path.json; bad records to load_errors."""
        return _load(context, warehouse, raw_data, STAGING_EVENTS, LOG_PREFIX, raw_data.event_jsonpaths())

    @dg.asset(
        name=STAGING_SONGS.name,
        deps=[SONG_DATA],
        group_name=STAGING_GROUP,
        kinds={engine_kind},
        pool=WAREHOUSE_POOL,
        description=STAGING_SONGS.description,
    )
    def staging_songs(
        context: dg.AssetExecutionContext, warehouse: Warehouse, raw_data: RawDataSource
    ) -> dg.MaterializeResult:
        """Every song record of song_data (keys match column names); bad records to load_errors."""
        return _load(context, warehouse, raw_data, STAGING_SONGS, SONG_PREFIX, None)

    return [staging_events, staging_songs]
