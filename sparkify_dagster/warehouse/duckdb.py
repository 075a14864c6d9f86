"""The embedded engine: one DuckDB file, raw JSON loaded with Redshift's COPY rules.

This module is the engine (connection, lock wait, memory limit, sessions); a staging load's stages are
``duckdb_load``'s, and the COPY rules they apply are ``json_loader``'s.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
from pydantic import PrivateAttr

from sparkify_dagster.catalog import Table
from sparkify_dagster.source import RawDataSource, RawFile
from sparkify_dagster.warehouse import duckdb_load, json_loader
from sparkify_dagster.warehouse.base import LoadReport, RunLog, TooManyLoadErrors, Warehouse, rollback
from sparkify_dagster.warehouse.planning import plan_load
from sparkify_dagster.warehouse.dialect import Dialect, DuckDBDialect, quote_literal

_LOCK_MESSAGES = ("Could not set lock", "Conflicting lock")
# Local files at least this big are read by DuckDB itself (read_text) rather than bound as parameters
# (``StagingLoad.in_place_min_bytes``; read here at each load, so a test can send every file that way).
IN_PLACE_MIN_BYTES = 1 << 20
# Those files are read straight from DuckDB's JSON reader at the insert where that gives the same
# records (``duckdb_load.direct_files``); False frames them all (a test compares both ways).
READ_OBJECTS = True
# And typed by DuckDB's typed reader where its rows are the typing SQL's (``json_loader.reader_typed_sql``);
# False types them with the typing SQL from the reader's records (a test compares the three ways).
TYPED_READER = True
DEFAULT_MEMORY_LIMIT = "1200MB"
# A staging load is inserted sorted (``duckdb_load.insert_load``) when it has at most one row per this
# many bytes of DuckDB's memory limit: a sort that fits stays in memory; a bigger load goes in unsorted
# rather than run out of memory (the measured peak is in benchmarks/README.md).
SORTED_INSERT_BYTES_PER_ROW = 600
_SIZE = re.compile(r"([0-9.]+)\s*([KMGT]?)(i?)B", re.IGNORECASE)


def _bytes(size: str) -> float | None:
    """DuckDB's way of showing a size ('1.1 GiB', '953.6 MiB', '1200MB') in bytes; None if not one."""
    m = _SIZE.fullmatch(size.strip())
    if not m:
        return None
    base = 1024 if m.group(3) else 1000
    return float(m.group(1)) * base ** "_KMGT".index(m.group(2).upper() or "_")


def _sorts_in_memory(s: _DuckDBSession, rows: int) -> bool:
    """Whether ``rows`` staged rows are few enough to be inserted sorted under the session's memory limit."""
    (limit,), = s.execute("SELECT current_setting('memory_limit')")
    limit_bytes = _bytes(limit)
    return limit_bytes is not None and rows <= limit_bytes / SORTED_INSERT_BYTES_PER_ROW


class _DuckDBSession:
    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        cur = self.con.execute(sql, params) if params is not None else self.con.execute(sql)
        return cur.fetchall() if cur.description else []


class DuckDBWarehouse(Warehouse):
    """The Sparkify warehouse in one DuckDB file (the embedded default)."""

    path: str = "data/sparkify.duckdb"
    # DuckDB admits one writing process; a second run waits for the file instead of failing.
    lock_timeout_seconds: float = 600.0
    # DuckDB's memory_limit (its default is 80% of RAM): above it, sorts, joins and windows spill to
    # <file>.tmp/. The default bounds a whole run's memory at the `large` preset (its measured RSS is
    # in benchmarks/README.md); None leaves DuckDB's default, faster when the memory is there.
    memory_limit: str | None = DEFAULT_MEMORY_LIMIT

    @property
    def dialect(self) -> Dialect:
        return DuckDBDialect()

    @property
    def kind(self) -> str:
        return "duckdb"

    @property
    def incremental_star(self) -> bool:
        return True

    def describe(self) -> str:
        return f"duckdb:{Path(self.path).expanduser().resolve()}"

    def qualified_name(self, table: Table) -> str:
        return f"{Path(self.path).stem}.main.{table.name}"

    def _connect(self) -> duckdb.DuckDBPyConnection:
        path = Path(self.path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(path))
            except duckdb.IOException as exc:
                if not any(m in str(exc) for m in _LOCK_MESSAGES) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            # The typing SQL's strict-JSON test, for every cursor of this connection: registered
            # here, before any transaction (one that started earlier would not see it).
            json_loader.register_strict_json(con)
            return con

    # Within a run, one connection serves every step (the in-process executor sets the resource up
    # once per run), instead of a connect for each of the run's many sessions.
    _run_connection: Any = PrivateAttr(default=None)

    def close_run_connections(self) -> None:
        con, self._run_connection = self._run_connection, None
        if con is not None:
            con.close()

    def _configure(self, con: duckdb.DuckDBPyConnection) -> None:
        # Redshift semantics: integer / integer truncates.
        con.execute("SET integer_division = true")
        if self.memory_limit:
            con.execute(f"SET memory_limit = {quote_literal(self.memory_limit)}")

    @contextmanager
    def session(self) -> Iterator[_DuckDBSession]:
        if self._in_run:
            with self._lock:
                if self._run_connection is None:
                    self._run_connection = self._connect()
                # A cursor: its own connection to the open database (own transaction; safe in a thread).
                con = self._run_connection.cursor()
        else:
            con = self._connect()
        try:
            self._configure(con)
            yield _DuckDBSession(con)
        finally:
            con.close()

    def load_staging(
        self, table: Table, source: RawDataSource, files: Sequence[RawFile], load_id: str, log: RunLog,
        jsonpaths: Sequence[str] | None = None, full_refresh: bool = False,
        reload_keys: frozenset[str] = frozenset(),
    ) -> LoadReport:
        """Bring ``table`` up to date with ``files`` in one transaction (the stages: ``duckdb_load``).

        New and changed files (by version) are loaded, rows of changed and vanished files removed;
        unchanged files are not read. ``full_refresh`` reloads every file.
        """
        started = time.monotonic()
        load = duckdb_load.StagingLoad.of(table, source, load_id, jsonpaths,
                                          in_place_min_bytes=IN_PLACE_MIN_BYTES, reads_objects=READ_OBJECTS,
                                          typed_reader=TYPED_READER)
        report = LoadReport(table=table.name)
        rejected_rows: list[tuple] = []
        with self.session() as s:
            s.execute("BEGIN")
            try:
                # 1. plan: the files to read, and the rows, rejects and manifest rows they replace.
                plan = plan_load(self.loaded_versions(s, table), files, full_refresh=full_refresh,
                                 reload_keys=reload_keys)
                duckdb_load.log_plan(load, plan, report, log)
                duckdb_load.delete_stale(s, load, plan, full_refresh=full_refresh)
                with duckdb_load.Scratch(s.con, Path(self.path).expanduser()) as scratch:
                    # 2.-3. batch by batch on the scratch connection: the files the JSON reader splits
                    # as framing would are counted; the others framed and typed into Parquet parts.
                    staged = duckdb_load.stage_batches(s, scratch, load, plan.to_load, log=log, started=started)
                    # 4. insert: staged rows, rejects and manifest rows, one statement each over all parts
                    # and the direct files.
                    if staged.parts or staged.direct:
                        duckdb_load.insert_load(s, scratch, load, staged,
                                                sort=_sorts_in_memory(s, staged.read - staged.rejected))
                # 5. record: the report from the manifest; past MAXERROR the load fails.
                duckdb_load.read_report(s, load, report)
                if report.records_rejected > self.max_errors:
                    rejected_rows = duckdb_load.load_rejects(s, load)
                    raise TooManyLoadErrors(duckdb_load.too_many_message(report, self.max_errors))
            except TooManyLoadErrors as exc:
                if rollback(s, exc):
                    # Like stl_load_errors, the rejects of a failed load stay visible; the table is untouched.
                    duckdb_load.keep_failed_load_rejects(s, table, rejected_rows)
                raise
            except BaseException as exc:
                rollback(s, exc)
                raise
            s.execute("COMMIT")
        report.seconds = time.monotonic() - started
        return report
