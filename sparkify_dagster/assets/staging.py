"""Staging tables: the raw JSON records as loaded, one row per record, rejects in load_errors.

Loads are incremental against the load manifest (``loaded_files``): a run reads only new or changed
raw files and removes the rows of files that changed or vanished, so any number of runs, in any
order, leave staging equal to one full load of the raw data as it is now.
"""


import datetime as dt
from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from sparkify_dagster.assets.metadata import OWNERS, code_references, markdown_table, table_metadata, table_preview
from sparkify_dagster.assets.raw import LOG_DATA, SONG_DATA
from sparkify_dagster.catalog import STAGING_EVENTS, STAGING_SONGS, Table
from sparkify_dagster.checks import check_specs, run_selected_checks
from sparkify_dagster.source import LOG_PREFIX, SONG_PREFIX, RawDataSource
from sparkify_dagster.warehouse.base import LoadReport, Warehouse

STAGING_GROUP = "staging"
WAREHOUSE_POOL = "sparkify_warehouse"
# A few staged rows in the UI (the telling columns), in a stable order: staging has no key, so
# file, then time and position.
PREVIEW_ORDER = {
    STAGING_EVENTS.name: ("source_file", "ts", "session_id", "item_in_session"),
    STAGING_SONGS.name: ("source_file", "song_id"),
}
PREVIEW_COLUMNS = {
    STAGING_EVENTS.name: ("source_file", "ts", "user_id", "level", "page", "song", "artist", "length",
                          "session_id", "item_in_session"),
    STAGING_SONGS.name: ("source_file", "song_id", "title", "artist_id", "artist_name", "duration", "year"),
}
# Where a raw record becomes a row: the embedded engine's COPY, and Redshift's.
STAGING_CODE = ("warehouse/json_loader.py", "warehouse/redshift.py")


class StagingLoadConfig(dg.Config):
    """How a staging load treats files it has loaded before (default: only new or changed files)."""

    full_refresh: bool = Field(False, description="Reload every raw file, as on a fresh warehouse.")
    reload_days: list[str] = Field(
        default_factory=list,
        description="staging_events only: days (YYYY-MM-DD) to reload even if their log file is unchanged.",
    )


def _day_keys(days: list[str], files: list) -> frozenset[str]:
    keys = set()
    for day in days:
        try:
            dt.date.fromisoformat(day)
        except ValueError:
            raise dg.Failure(f"reload_days: {day!r} is not a date like 2018-11-12") from None
        matching = {f.key for f in files if f.key.endswith(f"/{day}-events.json")}
        if not matching:
            raise dg.Failure(f"reload_days: no log file for {day} (expected log_data/YYYY/MM/{day}-events.json)")
        keys |= matching
    return frozenset(keys)


def _load(context: dg.AssetExecutionContext, config: StagingLoadConfig, warehouse: Warehouse,
          raw_data: RawDataSource, table: Table, prefix: str, jsonpaths: list[str] | None) -> dg.MaterializeResult:
    rebuilt = warehouse.ensure_tables()
    if rebuilt:
        context.log.warning(f"rebuilt tables of an older shape (every raw file reloads): {', '.join(rebuilt)}")
    files = raw_data.list_files(prefix)
    if config.reload_days and table.name != STAGING_EVENTS.name:
        raise dg.Failure("reload_days applies to staging_events only")
    context.log.info(f"{table.name}: {len(files):,} raw files under {raw_data.describe()}/{prefix}")
    report = warehouse.load_staging(
        table, raw_data, files, context.run.run_id, context.log, jsonpaths=jsonpaths,
        full_refresh=config.full_refresh, reload_keys=_day_keys(config.reload_days, files),
    )
    _log_report(context, report)
    return dg.MaterializeResult(
        asset_key=table.name,
        metadata={
            **table_metadata(table, warehouse),
            **_report_metadata(report),
            "preview": table_preview(warehouse, table, PREVIEW_ORDER[table.name],
                                     columns=PREVIEW_COLUMNS[table.name]),
        }
    )


def _log_report(context: dg.AssetExecutionContext, report: LoadReport) -> None:
    context.log.info(
        f"{report.table}: {report.files:,} files loaded ({report.files_unchanged:,} unchanged, "
        f"{report.files_removed:,} removed), {report.records_read:,} records read, "
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
        "files_unchanged": report.files_unchanged,
        "files_removed": report.files_removed,
        "records_read": report.records_read,
        "records_staged": report.records_staged,
        "records_rejected": report.records_rejected,
        "load_seconds": dg.MetadataValue.float(round(report.seconds, 3)),
        "first_rejects": dg.MetadataValue.md(markdown_table(report.first_errors)),
    }


def _staging_asset(table: Table, raw: dg.AssetKey, prefix: str, engine_kind: str, summary: str) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=table.name,
        specs=[dg.AssetSpec(
            table.name, deps=[raw], group_name=STAGING_GROUP, kinds={engine_kind}, description=table.description,
            owners=OWNERS, metadata=code_references(*STAGING_CODE),
        )],
        check_specs=check_specs(table.name),
        can_subset=True,  # the checks-only job runs the checks without reloading
        pool=WAREHOUSE_POOL,
        description=summary,
    )
    def _asset(context: dg.AssetExecutionContext, config: StagingLoadConfig, warehouse: Warehouse,
               raw_data: RawDataSource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        if dg.AssetKey(table.name) in context.selected_asset_keys:
            jsonpaths = raw_data.event_jsonpaths() if table.name == STAGING_EVENTS.name else None
            yield _load(context, config, warehouse, raw_data, table, prefix, jsonpaths)
        yield from run_selected_checks(context, warehouse, table.name)

    return _asset


def build_staging_assets(engine_kind: str) -> list[dg.AssetsDefinition]:
    """staging_events and staging_songs, tagged with the engine's kind, each with its checks."""
    return [
        _staging_asset(STAGING_EVENTS, LOG_DATA.key, LOG_PREFIX, engine_kind,
                       "Every event record of log_data, typed per log_json_path.json; bad records to load_errors."),
        _staging_asset(STAGING_SONGS, SONG_DATA.key, SONG_PREFIX, engine_kind,
                       "Every song record of song_data (keys match column names); bad records to load_errors."),
    ]
