"""Staging tables: the raw JSON records as loaded, one row per record, rejects in load_errors.

Loads are incremental against the load manifest (``loaded_files``): a run reads only new or changed
raw files and removes the rows of files that changed or vanished, so any number of runs, in any
order, leave staging equal to one full load of the raw data as it is now.
"""


import datetime as dt
import gc
import queue
from collections.abc import Iterator
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait

import dagster as dg
from pydantic import Field

from sparkify_dagster.assets.metadata import Binding, table_spec
from sparkify_dagster.catalog import STAGING_EVENTS, STAGING_TABLES, Table
from sparkify_dagster.checks import check_specs, run_selected_checks
from sparkify_dagster.catalog import LOAD_ERRORS
from sparkify_dagster.metadata import sample_table, table_metadata, table_preview
from sparkify_dagster.source import RawDataSource, RawFile
from sparkify_dagster.warehouse.base import LoadReport, RunLog, Warehouse

STAGING_GROUP = "staging"
STAGING_STEP = "staging"  # the op (and step) that loads both staging tables; its config: StagingLoadConfig
WAREHOUSE_POOL = "sparkify_warehouse"
# Where a raw record becomes a row: the embedded engine's COPY, and Redshift's.
STAGING_CODE = ("warehouse/duckdb_load.py", "warehouse/json_loader.py", "warehouse/redshift.py")


class StagingLoadConfig(dg.Config):
    """How a staging load treats files it has loaded before (default: only new or changed files)."""

    full_refresh: bool = Field(False, description="Reload every raw file, as on a fresh warehouse.")
    reload_days: list[str] = Field(
        default_factory=list,
        description="staging_events only: days (YYYY-MM-DD) to reload even if their log file is unchanged.",
    )


def _day_keys(days: list[str], files: list[RawFile]) -> frozenset[str]:
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


def _load(table: Table, *, files: list[RawFile] | None, jsonpaths: list[str] | None,
          reload_keys: frozenset[str], config: StagingLoadConfig, warehouse: Warehouse, raw_data: RawDataSource,
          run_id: str, log: RunLog) -> dg.MaterializeResult:
    """One staging table brought up to date with its raw prefix (listed here unless ``files``)."""
    files = raw_data.list_files(table.raw.prefix) if files is None else files
    report = warehouse.load_staging(
        table, raw_data, files, run_id, log, jsonpaths=jsonpaths,
        full_refresh=config.full_refresh, reload_keys=reload_keys,
    )
    _log_report(log, report)
    return dg.MaterializeResult(
        asset_key=table.name,
        metadata={
            **table_metadata(table, warehouse),
            **_report_metadata(report),
            "preview": table_preview(warehouse, table),
        }
    )


def _log_report(log: RunLog, report: LoadReport) -> None:
    log.info(
        f"{report.table}: {report.files:,} files loaded ({report.files_unchanged:,} unchanged, "
        f"{report.files_removed:,} removed), {report.records_read:,} records read, "
        f"{report.records_staged:,} staged, {report.records_rejected:,} rejected in {report.seconds:.2f}s"
    )
    for err in report.first_errors:
        log.warning(
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
        "first_rejects": sample_table(report.first_errors, LOAD_ERRORS),
    }


@contextmanager
def _heap_frozen() -> Iterator[None]:
    """Python's garbage collector leaves the objects alive before the block alone during it.

    The loads keep a few objects per raw file (100k song files at medium), so the collector runs
    full collections as they go, and each one walks every object of the process, most of them
    Dagster's (the cost: benchmarks/README.md, tenth pass). Objects created in the block are collected
    as usual. A process that froze objects itself (gc.freeze before a fork) is left as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _QueuedLog:
    """A run log for worker threads: messages are queued and written by the step's own thread."""

    def __init__(self, messages: queue.Queue):
        self._messages = messages

    def info(self, message: str) -> None:
        self._messages.put(("info", message))

    def warning(self, message: str) -> None:
        self._messages.put(("warning", message))


def build_staging_assets(binding: Binding) -> list[dg.AssetsDefinition]:
    """Every staging table of the catalog: one step that loads them side by side, each with its checks."""
    tables = STAGING_TABLES

    @dg.multi_asset(
        name=STAGING_STEP,
        specs=[table_spec(t, binding, group_name=STAGING_GROUP, code=STAGING_CODE) for t in tables],
        check_specs=[spec for t in tables for spec in check_specs(t.name)],
        can_subset=True,  # one table alone, or the checks alone (the checks-only job)
        pool=WAREHOUSE_POOL,
    )
    def staging(context: dg.AssetExecutionContext, config: StagingLoadConfig, warehouse: Warehouse,
                raw_data: RawDataSource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """Load new and changed raw files into staging_events and staging_songs, side by side."""
        selected = [t for t in tables if dg.AssetKey(t.name) in context.selected_asset_keys]
        if config.reload_days and STAGING_EVENTS not in selected:
            raise dg.Failure("reload_days applies to staging_events, which is not selected")
        if selected:
            rebuilt = warehouse.ensure_tables()
            if rebuilt:
                context.log.warning(f"rebuilt tables of an older shape (every raw file reloads): {', '.join(rebuilt)}")
            # The log files are listed first, so a bad reload_days fails before anything loads.
            event_files = raw_data.list_files(STAGING_EVENTS.raw.prefix) if STAGING_EVENTS in selected else None
            reload_keys = _day_keys(config.reload_days, event_files or [])
            messages: queue.Queue = queue.Queue()
            log = _QueuedLog(messages)
            # The loads run at once, each in its own transaction: the song side is mostly Python
            # (listing and reading many small files) while the event side is mostly the engine, so
            # together they take less than one after the other (benchmarks/README.md).
            with _heap_frozen(), ThreadPoolExecutor(max_workers=len(selected), thread_name_prefix="staging") as pool:
                futures = {
                    t.name: pool.submit(
                        _load, t, files=event_files if t is STAGING_EVENTS else None,
                        jsonpaths=raw_data.event_jsonpaths() if t.raw.jsonpaths else None,
                        reload_keys=reload_keys if t is STAGING_EVENTS else frozenset(),
                        config=config, warehouse=warehouse, raw_data=raw_data, run_id=context.run.run_id, log=log,
                    )
                    for t in selected
                }
                pending = set(futures.values())
                while pending:  # the run log, written as the loads go (waits on the unfinished ones only)
                    pending = futures_wait(pending, timeout=0.2, return_when=FIRST_COMPLETED).not_done
                    _write_queued(context, messages)
            failures = [f.exception() for f in futures.values() if f.exception() is not None]
            for name, future in futures.items():  # a table that loaded is reported even if the other failed
                if future.exception() is None:
                    yield future.result()
            if failures:
                raise failures[0]
        for t in tables:
            yield from run_selected_checks(context, warehouse, t.name)

    return [staging]


def _write_queued(context: dg.AssetExecutionContext, messages: queue.Queue) -> None:
    while True:
        try:
            level, message = messages.get_nowait()
        except queue.Empty:
            return
        getattr(context.log, level)(message)
