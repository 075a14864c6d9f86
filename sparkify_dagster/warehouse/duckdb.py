"""The embedded engine: one DuckDB file, raw JSON loaded with Redshift's COPY rules."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from sparkify_dagster.catalog import LOAD_ERRORS, LOADED_FILES, Table
from sparkify_dagster.warehouse import json_loader
from sparkify_dagster.warehouse.base import (
    Dialect,
    LoadReport,
    TooManyLoadErrors,
    Warehouse,
    plan_load,
    quote_ident,
    rollback,
)

_LOCK_MESSAGES = ("Could not set lock", "Conflicting lock")


class DuckDBDialect(Dialect):
    name = "duckdb"
    # varchar(n) is not enforced by DuckDB; the JSON loader enforces the byte limit instead.
    types = {"integer": "INTEGER", "bigint": "BIGINT", "double": "DOUBLE", "timestamp": "TIMESTAMP"}

    def varchar(self, logical: str) -> str:
        return "VARCHAR"

    def epoch_ms_to_timestamp(self, expr: str) -> str:
        return f"epoch_ms({expr})"


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

    @property
    def dialect(self) -> Dialect:
        return DuckDBDialect()

    @property
    def kind(self) -> str:
        return "duckdb"

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
                return duckdb.connect(str(path))
            except duckdb.IOException as exc:
                if not any(m in str(exc) for m in _LOCK_MESSAGES) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    @contextmanager
    def session(self) -> Iterator[_DuckDBSession]:
        con = self._connect()
        try:
            # Redshift semantics: integer / integer truncates.
            con.execute("SET integer_division = true")
            yield _DuckDBSession(con)
        finally:
            con.close()

    def load_staging(
        self, table: Table, source: Any, files: Sequence[Any], load_id: str, log: Any,
        jsonpaths: Sequence[str] | None = None, full_refresh: bool = False,
        reload_keys: frozenset[str] = frozenset(),
    ) -> LoadReport:
        """Bring ``table`` up to date with ``files`` in one transaction (see json_loader).

        New and changed files (by version) are loaded, rows of changed and vanished files removed;
        unchanged files are not read. ``full_refresh`` reloads every file.
        """
        started = time.monotonic()
        columns = [c for c in table.columns if c.name != "source_file"]
        paths = (
            [json_loader.jsonpath_to_duckdb(p) for p in jsonpaths]
            if jsonpaths is not None
            else [f'$."{c.name}"' for c in columns]
        )
        select_typed = json_loader.typing_sql(table, columns, paths)
        report = LoadReport(table=table.name)
        name = quote_ident(table.name)
        col_list = ", ".join(quote_ident(c.name) for c in columns)
        errors, manifest = quote_ident(LOAD_ERRORS.name), quote_ident(LOADED_FILES.name)
        rejected_rows: list[tuple] = []
        with self.session() as s:
            s.execute("BEGIN")
            try:
                plan = plan_load(self.loaded_versions(s, table), files, full_refresh=full_refresh,
                                 reload_keys=reload_keys)
                report.files_unchanged = plan.unchanged
                report.files_removed = len(set(plan.stale_keys) - {f.key for f in plan.to_load})
                log.info(
                    f"{table.name}: {len(plan.to_load):,} new or changed files to load, {plan.unchanged:,} "
                    f"unchanged, {report.files_removed:,} gone from the source"
                )
                if full_refresh:
                    s.execute(f"DELETE FROM {name}")
                    s.execute(f"DELETE FROM {errors} WHERE table_name = ?", [table.name])
                    s.execute(f"DELETE FROM {manifest} WHERE table_name = ?", [table.name])
                elif plan.stale_keys or plan.to_load:
                    # Rows of changed or vanished files go; so do rejects left by failed loads of a file.
                    stale = sorted(set(plan.stale_keys) | {f.key for f in plan.to_load})
                    s.execute("CREATE OR REPLACE TEMP TABLE _stale AS SELECT unnest(?::VARCHAR[]) AS source_file",
                              [stale])
                    s.execute(f"DELETE FROM {name} WHERE source_file IN (SELECT source_file FROM _stale)")
                    for book in (errors, manifest):
                        s.execute(f"DELETE FROM {book} WHERE table_name = ? "
                                  "AND source_file IN (SELECT source_file FROM _stale)", [table.name])
                s.execute("CREATE OR REPLACE TEMP TABLE _raw (file_idx INTEGER, line_number BIGINT, rec VARCHAR)")
                s.execute("CREATE OR REPLACE TEMP TABLE _files (file_idx INTEGER, source_file VARCHAR, "
                          "file_version VARCHAR, file_size BIGINT)")
                done = 0
                for batch in json_loader.iter_batches(plan.to_load):
                    self._load_batch(s, table, name, col_list, select_typed, source, batch, done, load_id)
                    done += len(batch)
                    log.info(f"{table.name}: {done:,}/{len(plan.to_load):,} files read")
                for read, staged, rejected in s.execute(
                    f"SELECT records_read, records_staged, records_rejected FROM {manifest} "
                    "WHERE table_name = ? AND load_id = ?",
                    [table.name, load_id],
                ):
                    report.add(read, staged, rejected)
                report.first_errors = [
                    dict(zip(("source_file", "line_number", "column_name", "reason"), row))
                    for row in s.execute(
                        f"SELECT source_file, line_number, column_name, reason FROM {errors} "
                        "WHERE table_name = ? AND load_id = ? ORDER BY source_file, line_number LIMIT 10",
                        [table.name, load_id],
                    )
                ]
                if report.records_rejected > self.max_errors:
                    rejected_rows = s.execute(
                        f"SELECT * FROM {errors} WHERE table_name = ? AND load_id = ?", [table.name, load_id]
                    )
                    raise TooManyLoadErrors(_too_many_message(report, self.max_errors))
            except TooManyLoadErrors as exc:
                if rollback(s, exc):
                    # Like stl_load_errors, the rejects of a failed load stay visible; the table is untouched.
                    self._record_failed_load_errors(s, table, rejected_rows)
                raise
            except BaseException as exc:
                rollback(s, exc)
                raise
            s.execute("COMMIT")
        report.seconds = time.monotonic() - started
        return report

    def _load_batch(self, s, table, name, col_list, select_typed, source, batch, offset, load_id) -> None:
        s.execute("DELETE FROM _raw")
        s.execute("DELETE FROM _files")
        framed: dict[int, list[tuple[int, str]]] = {}
        early_rejects: list[tuple] = []
        for idx, (f, data) in enumerate(zip(batch, source.read_many([f.key for f in batch])), start=offset):
            lines, rejects = json_loader.frame_lines(data)
            framed[idx] = lines
            early_rejects += [(table.name, f.key, r.line_number, None, r.reason, r.raw_text, load_id) for r in rejects]
        s.execute(
            "INSERT INTO _files SELECT unnest(?::INTEGER[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
            "unnest(?::BIGINT[])",
            [list(range(offset, offset + len(batch))), [f.key for f in batch], [f.version for f in batch],
             [f.size for f in batch]],
        )
        self._insert_raw(s, [(idx, n, text) for idx, lines in framed.items() for n, text in lines])
        # Files whose lines are not each one JSON value are re-framed as a stream of JSON values.
        for (idx,) in s.execute("SELECT DISTINCT file_idx FROM _raw WHERE NOT json_valid(rec)"):
            s.execute("DELETE FROM _raw WHERE file_idx = ?", [idx])
            self._insert_raw(s, [(idx, n, text) for n, text in json_loader.frame_stream(framed[idx])])
        if early_rejects:
            s.con.executemany(f"INSERT INTO {quote_ident(LOAD_ERRORS.name)} VALUES (?, ?, ?, ?, ?, ?, ?)", early_rejects)
        s.execute(f"CREATE OR REPLACE TEMP TABLE _typed AS {select_typed}")
        s.execute(
            f"INSERT INTO {name} ({col_list}, source_file) SELECT {col_list}, f.source_file "
            "FROM _typed JOIN _files f USING (file_idx) WHERE err_reason IS NULL ORDER BY file_idx, line_number"
        )
        s.execute(
            f"INSERT INTO {quote_ident(LOAD_ERRORS.name)} SELECT ?, f.source_file, line_number, err_column, "
            f"err_reason, left(rec, {json_loader.RAW_TEXT_LIMIT}), ? "
            "FROM _typed JOIN _files f USING (file_idx) WHERE err_reason IS NOT NULL ORDER BY file_idx, line_number",
            [table.name, load_id],
        )
        early = {}
        for row in early_rejects:
            early[row[1]] = early.get(row[1], 0) + 1
        s.execute(
            f"""INSERT INTO {quote_ident(LOADED_FILES.name)}
            SELECT ?, f.source_file, f.file_version, f.file_size,
                count(t.file_idx) + coalesce(e.n, 0),
                count(t.file_idx) FILTER (WHERE t.err_reason IS NULL),
                count(t.file_idx) FILTER (WHERE t.err_reason IS NOT NULL) + coalesce(e.n, 0), ?
            FROM _files f
            LEFT JOIN _typed t USING (file_idx)
            LEFT JOIN (SELECT unnest(?::VARCHAR[]) AS source_file, unnest(?::BIGINT[]) AS n) e USING (source_file)
            GROUP BY f.source_file, f.file_version, f.file_size, e.n""",
            [table.name, load_id, list(early), list(early.values())],
        )

    @staticmethod
    def _insert_raw(s, rows: list[tuple[int, int, str]]) -> None:
        if rows:
            idxs, numbers, texts = zip(*rows)
            s.execute(
                "INSERT INTO _raw SELECT unnest(?::INTEGER[]), unnest(?::BIGINT[]), unnest(?::VARCHAR[])",
                [list(idxs), list(numbers), list(texts)],
            )

    def _record_failed_load_errors(self, s, table: Table, rows: list[tuple]) -> None:
        s.execute("BEGIN")
        # A retry of a failed load replaces that load's rejects instead of piling them up; rejects of
        # files that are loaded (in the manifest) belong to the staged data and stay.
        s.execute(
            f"DELETE FROM {quote_ident(LOAD_ERRORS.name)} WHERE table_name = ? AND source_file IN "
            f"(SELECT unnest(?::VARCHAR[])) AND source_file NOT IN "
            f"(SELECT source_file FROM {quote_ident(LOADED_FILES.name)} WHERE table_name = ?)",
            [table.name, sorted({r[1] for r in rows}), table.name],
        )
        if rows:
            s.con.executemany(f"INSERT INTO {quote_ident(LOAD_ERRORS.name)} VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        s.execute("COMMIT")


def _too_many_message(report: LoadReport, max_errors: int) -> str:
    first = report.first_errors[0] if report.first_errors else {}
    return (
        f"{report.table}: {report.records_rejected} records rejected, more than SPARKIFY_MAX_ERRORS={max_errors}; "
        f"nothing was loaded. First bad record: {first.get('source_file')} line {first.get('line_number')}"
        f"{' column ' + first['column_name'] if first.get('column_name') else ''}: {first.get('reason')}. "
        f"All rejects are in the load_errors table."
    )
