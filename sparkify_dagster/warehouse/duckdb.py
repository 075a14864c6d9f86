"""The embedded engine: one DuckDB file, raw JSON loaded with Redshift's COPY rules."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
from pydantic import PrivateAttr

from sparkify_dagster.catalog import LOAD_ERRORS, LOADED_FILES, Table
from sparkify_dagster.source import LocalFolderSource
from sparkify_dagster.warehouse import json_loader
from sparkify_dagster.warehouse.base import LoadReport, TooManyLoadErrors, Warehouse, rollback
from sparkify_dagster.warehouse.planning import plan_load
from sparkify_dagster.warehouse.dialect import Dialect, DuckDBDialect, quote_ident, quote_literal

_LOCK_MESSAGES = ("Could not set lock", "Conflicting lock")
# Local files at least this big are read by DuckDB itself (read_text) rather than bound as parameters.
IN_PLACE_MIN_BYTES = 1 << 20
_GLOB_CHARS = "*?[]{}"
_SCRATCH_PREFIX = ".sparkify-load-"
DEFAULT_MEMORY_LIMIT = "1200MB"
# A staging load is inserted sorted when it has at most one row per this many bytes of DuckDB's
# memory limit (``_insert_typed``): 2M rows under the default 1200MB (measured peak: 1.24 GB RSS).
SORTED_INSERT_BYTES_PER_ROW = 600
_SIZE = re.compile(r"([0-9.]+)\s*([KMGT]?)(i?)B", re.IGNORECASE)


def _bytes(size: str) -> float | None:
    """DuckDB's way of showing a size ('1.1 GiB', '953.6 MiB', '1200MB') in bytes; None if not one."""
    m = _SIZE.fullmatch(size.strip())
    if not m:
        return None
    base = 1024 if m.group(3) else 1000
    return float(m.group(1)) * base ** "_KMGT".index(m.group(2).upper() or "_")


def _local_root(source: Any) -> Path | None:
    """The absolute folder of a local source (DuckDB can read its files itself), else None."""
    if isinstance(source, LocalFolderSource):
        return source.root_path.resolve()
    return None


class _Scratch:
    """Where a staging load frames and types its batches: a second connection to the same database
    (its own autocommit transactions, so each batch's temporary tables are freed when replaced; inside
    the load's transaction they would be kept until COMMIT) and a private folder beside the warehouse
    file for the typed batches (Parquet) that the load's transaction inserts from."""

    def __init__(self, con: duckdb.DuckDBPyConnection, db_path: Path):
        self._parent, self._db_path = con, db_path
        self.con: duckdb.DuckDBPyConnection | None = None
        self.folder: Path | None = None

    def __enter__(self) -> "_Scratch":
        parent = self._db_path.resolve().parent
        for stale in parent.glob(f"{_SCRATCH_PREFIX}*"):  # left by a process that was killed
            pid = stale.name[len(_SCRATCH_PREFIX):].split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{os.getpid()}-", dir=parent))
        self.con = self._parent.cursor()
        json_loader.register_strict_json(self.con)
        return self

    def file(self, name: str) -> str:
        return str(self.folder / name)

    def __exit__(self, *exc_info) -> None:
        try:
            self.con.close()
        except duckdb.Error:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_local(root: Path, source: Any, key: str, size: int = 0) -> bytes:
    """A local file's bytes with os.open/os.read, one read when ``size`` (from the listing) is right
    (100k song files: 0.45 s, where ``open()`` took 0.75-1.0 s and ``LocalFolderSource.read_bytes``
    seconds); a file that grew is read to its end. On any error the source reads it, so a failure is
    the source's own ``SourceError``."""
    try:
        fd = os.open(f"{root}/{key}", os.O_RDONLY)
        try:
            data = os.read(fd, size + 1)
            if len(data) > size:  # the size was stale (or not given): read the rest
                parts = [data]
                while chunk := os.read(fd, 1 << 20):
                    parts.append(chunk)
                data = b"".join(parts)
            return data
        finally:
            os.close(fd)
    except OSError:
        return source.read_bytes(key)


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
    # <file>.tmp/. The default keeps a whole run under 2 GB of RSS at the `large` preset (10M events);
    # None leaves DuckDB's default, faster when the memory is there.
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
                return duckdb.connect(str(path))
            except duckdb.IOException as exc:
                if not any(m in str(exc) for m in _LOCK_MESSAGES) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    # Within a run, one connection serves every step (the in-process executor sets the resource up
    # once per run): ~90 sessions of a run each paid a connect.
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
                s.execute("CREATE OR REPLACE TEMP TABLE _files (file_idx INTEGER, source_file VARCHAR, "
                          "file_version VARCHAR, file_size BIGINT)")
                done = read = staged = 0
                typed_parts: list[str] = []
                early_rejects: list[tuple] = []
                with _Scratch(s.con, Path(self.path).expanduser()) as scratch:
                    batch_bytes = json_loader.BATCH_BYTES if _local_root(source) else json_loader.REMOTE_BATCH_BYTES
                    for batch in json_loader.iter_batches(plan.to_load, batch_bytes):
                        typed, batch_read, batch_staged = self._type_batch(
                            s, scratch, table, columns, paths, source, batch, done, load_id, early_rejects,
                            arrays=jsonpaths is not None,
                        )
                        typed_parts.append(typed)
                        done, read, staged = done + len(batch), read + batch_read, staged + batch_staged
                        log.info(
                            f"{table.name}: {done:,}/{len(plan.to_load):,} files read, {read:,} records "
                            f"({staged:,} staged, {read - staged:,} rejected) in {time.monotonic() - started:.1f}s"
                        )
                    if typed_parts:  # every batch has its part, even one whose lines were all rejected early
                        self._insert_typed(s, table, name, col_list, typed_parts, early_rejects, load_id, staged)
                (report.files, report.records_read, report.records_staged, report.records_rejected), = s.execute(
                    f"SELECT count(*), coalesce(sum(records_read), 0), coalesce(sum(records_staged), 0), "
                    f"coalesce(sum(records_rejected), 0) FROM {manifest} WHERE table_name = ? AND load_id = ?",
                    [table.name, load_id],
                )
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

    def _type_batch(self, s, scratch, table, columns, paths, source, batch, offset, load_id,
                    early_rejects: list[tuple], *, arrays: bool = False) -> tuple[str, int, int]:
        """Frame and type one batch of files into a Parquet file; returns the relation that reads it,
        and the batch's records read and staged (``early_rejects`` gets the lines rejected in Python).

        Framing and typing run on the scratch connection (``_Scratch``), outside the load's
        transaction, and end in a Parquet file of typed records; once every batch is typed, the
        transaction inserts from all of them (``_insert_typed``), so memory holds one batch, not the
        whole load.

        A valid UTF-8 file reaches DuckDB as one text and is framed there (``FRAME_SQL``): nothing per
        line happens in Python. A big local file is read by DuckDB itself (``read_text``, which refuses
        invalid UTF-8: then the batch's big files take the Python path); other texts are bound as
        parameters. A file with invalid UTF-8 is framed in Python, its bad lines rejected. Files
        holding text that is not one JSON value per line are re-framed after typing (``frame_stream``)
        and typed again.
        """
        framed: dict[int, list[tuple[int, str]]] = {}  # files framed in Python (invalid UTF-8)
        first_early_reject = len(early_rejects)
        bound_idx, bound_text = [], []
        local_root = _local_root(source)
        keys = [f.key for f in batch]
        indexed = list(enumerate(batch, start=offset))
        # Big local files are read by DuckDB itself, which refuses invalid UTF-8 (then Python reads them).
        in_place = [(idx, f) for idx, f in indexed if local_root is not None and f.size >= IN_PLACE_MIN_BYTES
                    and not any(c in f.key for c in _GLOB_CHARS)]

        # Framing and typing, on the scratch connection (autocommit: each batch's memory is freed).
        # Texts are framed as they are read or bound, never stored whole in a table (a copy that costs
        # more than the framing).
        x = scratch.con
        x.execute("CREATE OR REPLACE TEMP TABLE _raw (file_idx INTEGER, line_number BIGINT, rec VARCHAR)")
        done_in_place: set[int] = set()
        if in_place:
            paths_in_place = [str(local_root / f.key) for _, f in in_place]
            try:
                x.execute(f"INSERT INTO _raw {json_loader.FRAME_SQL.format(texts=json_loader.FILE_TEXTS)}",
                          [[idx for idx, _ in in_place], paths_in_place, paths_in_place])
                done_in_place = {idx for idx, _ in in_place}
            except duckdb.Error:  # invalid UTF-8 (or a file gone): the exact Python path, file by file
                pass
        rest = [(idx, f) for idx, f in indexed if idx not in done_in_place]
        # A local folder is read file by file (one file's bytes held at a time); S3 concurrently.
        contents = ((_read_local(local_root, source, f.key, f.size) for _, f in rest) if local_root
                    else iter(source.read_many([f.key for _, f in rest])))
        for (idx, f), data in zip(rest, contents):
            text = json_loader.decode_text(data)
            if text is not None:
                bound_idx.append(idx)
                bound_text.append(text)
                continue
            lines, rejects = json_loader.frame_lines(data)
            framed[idx] = lines
            early_rejects += [(table.name, f.key, r.line_number, None, r.reason, r.raw_text, load_id, f.key)
                              for r in rejects]
        data = contents = None
        if bound_idx:
            x.execute(f"INSERT INTO _raw {json_loader.FRAME_SQL.format(texts=json_loader.BOUND_TEXTS)}",
                      [bound_idx, bound_text])
        self._insert_raw(x, [(idx, n, text) for idx, lines in framed.items() for n, text in lines])
        typed_file = scratch.file(f"typed-{offset}.parquet")
        x.execute(f"COPY ({json_loader.typing_sql(table, columns, paths, arrays=arrays)}) TO {quote_literal(typed_file)} "
                  "(FORMAT parquet, COMPRESSION uncompressed)")
        typed = f"read_parquet({quote_literal(typed_file)})"
        # Files whose lines are not each one JSON value are re-framed as a stream of JSON values.
        reframe = [idx for (idx,) in x.execute(
            f"SELECT DISTINCT file_idx FROM {typed} WHERE err_reason = ? ORDER BY file_idx",
            [json_loader.MALFORMED_REASON],
        ).fetchall()]
        if reframe:
            bound = dict(zip(bound_idx, bound_text))
            for idx in reframe:
                if idx in framed:
                    candidates = framed[idx]
                elif idx in bound:
                    candidates = json_loader.frame_text(bound[idx])
                else:  # read in place by DuckDB (valid UTF-8): read again
                    key = batch[idx - offset].key
                    candidates = json_loader.frame_text(json_loader.decode_text(_read_local(local_root, source, key)))
                x.execute("DELETE FROM _raw WHERE file_idx = ?", [idx])
                self._insert_raw(x, [(idx, n, text) for n, text in json_loader.frame_stream(candidates)])
            in_list = ", ".join(str(int(i)) for i in reframe)
            again_file = scratch.file(f"typed-{offset}-reframed.parquet")
            again = f"(SELECT * FROM _raw WHERE file_idx IN ({in_list}))"
            x.execute(f"COPY ({json_loader.typing_sql(table, columns, paths, source=again, arrays=arrays)}) "
                      f"TO {quote_literal(again_file)} (FORMAT parquet, COMPRESSION uncompressed)")
            typed = (f"(SELECT * FROM {typed} WHERE file_idx NOT IN ({in_list}) "
                     f"UNION ALL SELECT * FROM read_parquet({quote_literal(again_file)}))")
        framed.clear()
        bound_text.clear()
        x.execute("DROP TABLE _raw")

        s.execute(
            "INSERT INTO _files SELECT unnest(?::INTEGER[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
            "unnest(?::BIGINT[])",
            [list(range(offset, offset + len(batch))), keys, [f.version for f in batch], [f.size for f in batch]],
        )
        (n_read, n_staged), = x.execute(
            f"SELECT count(*), count(*) FILTER (WHERE err_reason IS NULL) FROM {typed}").fetchall()
        return typed, n_read + len(early_rejects) - first_early_reject, n_staged

    def _insert_typed(self, s, table, name, col_list, typed_parts: list[str], early_rejects: list[tuple],
                      load_id: str, staged: int) -> None:
        """The load's transaction: staged rows, rejects and the manifest of every file, each in one
        statement over all the batches' Parquet files. One INSERT per table writes whole compressed row
        groups; an INSERT per batch left partial row groups that the next checkpoint had to rewrite
        (measured: +0.6 s for 1M events at medium)."""
        typed = "(" + " UNION ALL ".join(f"SELECT * FROM {part}" for part in typed_parts) + ")"
        if early_rejects:
            s.con.executemany(f"INSERT INTO {quote_ident(LOAD_ERRORS.name)} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                              early_rejects)
        # No rule depends on row order, but an unordered parallel insert leaves part-filled row groups
        # in the middle of the table, which DuckDB's checkpoint merges once a later append makes that
        # pay (0.3 s of a one-day run at medium). A load that can be sorted well within the memory
        # limit goes in in file and line order (full row groups; ~0.2 s for 1M events); a bigger one
        # is not sorted (10M events ran out of memory under the default 1200MB limit).
        (limit,), = s.execute("SELECT current_setting('memory_limit')")
        limit_bytes = _bytes(limit)
        sort = limit_bytes is not None and staged <= limit_bytes / SORTED_INSERT_BYTES_PER_ROW
        order = " ORDER BY t.file_idx, t.line_number" if sort else ""
        s.execute(
            f"INSERT INTO {name} ({col_list}, source_file) SELECT {col_list}, f.source_file "
            f"FROM {typed} AS t JOIN _files f USING (file_idx) WHERE err_reason IS NULL{order}"
        )
        s.execute(
            f"INSERT INTO {quote_ident(LOAD_ERRORS.name)} SELECT ?, f.source_file, line_number, err_column, "
            f"err_reason, left(rec, {json_loader.RAW_TEXT_LIMIT}), ?, f.source_file "
            f"FROM {typed} AS t JOIN _files f USING (file_idx) WHERE err_reason IS NOT NULL "
            "ORDER BY file_idx, line_number",
            [table.name, load_id],
        )
        early: dict[str, int] = {}
        for row in early_rejects:
            early[row[1]] = early.get(row[1], 0) + 1
        counts = (f"(SELECT file_idx, count(*) AS n_read, count(*) FILTER (WHERE err_reason IS NULL) AS n_staged "
                  f"FROM {typed} GROUP BY file_idx)")
        s.execute(
            f"""INSERT INTO {quote_ident(LOADED_FILES.name)}
            SELECT ?, f.source_file, f.file_version, f.file_size,
                coalesce(t.n_read, 0) + coalesce(e.n, 0),
                coalesce(t.n_staged, 0),
                coalesce(t.n_read - t.n_staged, 0) + coalesce(e.n, 0), ?
            FROM _files f
            LEFT JOIN {counts} t USING (file_idx)
            LEFT JOIN (SELECT unnest(?::VARCHAR[]) AS source_file, unnest(?::BIGINT[]) AS n) e USING (source_file)""",
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
            s.con.executemany(f"INSERT INTO {quote_ident(LOAD_ERRORS.name)} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        s.execute("COMMIT")


def _too_many_message(report: LoadReport, max_errors: int) -> str:
    first = report.first_errors[0] if report.first_errors else {}
    return (
        f"{report.table}: {report.records_rejected} records rejected, more than SPARKIFY_MAX_ERRORS={max_errors}; "
        f"nothing was loaded. First bad record: {first.get('source_file')} line {first.get('line_number')}"
        f"{' column ' + first['column_name'] if first.get('column_name') else ''}: {first.get('reason')}. "
        f"All rejects are in the load_errors table."
    )
