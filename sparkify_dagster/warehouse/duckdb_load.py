"""The embedded staging load, in the order a record goes through it.

``DuckDBWarehouse.load_staging`` calls these stages in order, inside the load's transaction; the rules
they apply (how a text is split into records, how a value is typed) are ``json_loader``'s, as SQL and
text helpers that call nothing back.

1. plan: ``planning.plan_load`` picks the files to read and the stale keys; ``delete_stale`` removes
   what they replace (rows, rejects and manifest rows of changed or vanished files).
2a. direct (``direct_files``): the big local files that DuckDB's newline-delimited JSON reader splits
   into the very records framing would give are only counted here; stage 4 types them straight from
   the reader (no framing table, no Parquet part, every core on one file).
2. frame (``frame_batch``): the other files of a batch become candidate records (file_idx,
   line_number, rec) in the scratch connection's ``_raw`` table.
3. type (``type_batch``): ``json_loader.typing_sql`` over ``_raw`` into a Parquet part; files whose
   lines are not each one JSON value are framed again as a JSON stream (``reframe_as_stream``) and
   typed again.
4. insert (``insert_load``): the load's transaction inserts the staged rows (of every part, and of
   the direct files: typed by DuckDB's typed reader where its rows are the typing SQL's,
   ``json_loader.reader_typed_sql``, else by the same SQL), the rejects and the manifest rows, one
   statement each. A direct file that rejected a record (or held one the typed reader leaves to the
   typing SQL) loses its rows again and is framed and typed like the others: a reject needs its line
   number, which the reader does not give.
5. record (``read_report``): the LoadReport, from the manifest just written; past the MAXERROR limit
   the load fails (``too_many_message``) and ``keep_failed_load_rejects`` keeps its rejects visible.

Stages 2a, 2 and 3 run batch by batch (``stage_batches``) on a scratch connection (``Scratch``),
outside the load's transaction: memory holds one batch's texts at a time, and the batches meet only
in stage 4, as Parquet files and the direct files' paths.

Invariants: every file to load gets one ``_files`` row and one manifest row, even when all its lines
were rejected while framing (its records read = staged + rejected); every typed record is either a
staging row (``err_reason`` NULL) or a reject, never both; nothing is visible before the COMMIT.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

import duckdb

from sparkify_dagster.catalog import LOAD_ERRORS, LOADED_FILES, Column, Table
from sparkify_dagster.source import LocalFolderSource, RawDataSource, RawFile, SourceError, local_version
from sparkify_dagster.warehouse import json_loader
from sparkify_dagster.warehouse.base import LoadReport, RunLog, Session
from sparkify_dagster.warehouse.dialect import quote_ident, quote_literal
from sparkify_dagster.warehouse.planning import LoadPlan

# A key with one of these is not given to read_text (it would be read as a glob pattern).
_GLOB_CHARS = "*?[]{}"
_SCRATCH_PREFIX = ".sparkify-load-"
_ERRORS, _MANIFEST = quote_ident(LOAD_ERRORS.name), quote_ident(LOADED_FILES.name)


class EmbeddedSession(Session, Protocol):
    """The load's session (``duckdb._DuckDBSession``): statements, and its connection for executemany."""

    con: duckdb.DuckDBPyConnection


@dataclass(frozen=True)
class StagingLoad:
    """What one staging load reads into what: fixed for the whole load, shared by every stage."""

    table: Table
    columns: tuple[Column, ...]  # the table's columns filled from a record (all but source_file)
    paths: tuple[str, ...]  # DuckDB JSON path of each column's value in a record
    arrays: bool  # the paths come from a JSONPaths file: a record may also be a JSON array
    load_id: str
    source: RawDataSource
    local_root: Path | None  # the absolute folder of a local source (DuckDB can read its files), else None
    in_place_min_bytes: int  # local files at least this big are read by DuckDB itself (read_text)
    reads_objects: bool  # those files may be read straight from DuckDB's JSON reader (``direct_files``)
    # The key each path selects, when DuckDB's typed reader can type the direct files
    # (``json_loader.reader_typed_sql``); None: they are typed by the typing SQL.
    reader_keys: tuple[str, ...] | None = None

    @classmethod
    def of(cls, table: Table, source: RawDataSource, load_id: str, jsonpaths: Sequence[str] | None, *,
           in_place_min_bytes: int, reads_objects: bool = True, typed_reader: bool = True) -> "StagingLoad":
        columns = tuple(table.copied_columns)
        paths = (
            tuple(json_loader.jsonpath_to_duckdb(p) for p in jsonpaths)
            if jsonpaths is not None
            else tuple(f'$."{c.name}"' for c in columns)
        )
        local_root = source.root_path.resolve() if isinstance(source, LocalFolderSource) else None
        return cls(table, columns, paths, jsonpaths is not None, load_id, source, local_root, in_place_min_bytes,
                   reads_objects, json_loader.reader_keys(paths) if reads_objects and typed_reader else None)

    def in_place(self, files: Sequence[tuple[int, RawFile]]) -> list[tuple[int, RawFile]]:
        """The (file_idx, file) pairs DuckDB reads itself: big local files whose key is no glob pattern."""
        return [(idx, f) for idx, f in files if self.local_root is not None and f.size >= self.in_place_min_bytes
                and not any(c in f.key for c in _GLOB_CHARS)]

    def local_paths(self, files: Sequence[tuple[int, RawFile]]) -> list[str]:
        return [str(self.local_root / f.key) for _, f in files]

    @property
    def batch_bytes(self) -> int:
        # Local files are read one at a time (or by DuckDB); texts fetched from S3 are held in Python.
        return json_loader.BATCH_BYTES if self.local_root else json_loader.REMOTE_BATCH_BYTES


# --- 1. plan -------------------------------------------------------------------------------------

def log_plan(load: StagingLoad, plan: LoadPlan, report: LoadReport, log: RunLog) -> None:
    """The plan in the report (files unchanged, files gone) and in the run log."""
    report.files_unchanged = plan.unchanged
    report.files_removed = plan.removed
    log.info(
        f"{load.table.name}: {len(plan.to_load):,} new or changed files to load, {plan.unchanged:,} "
        f"unchanged, {report.files_removed:,} gone from the source"
    )


def delete_stale(s: Session, load: StagingLoad, plan: LoadPlan, *, full_refresh: bool) -> None:
    """Remove what the load replaces: everything on a full refresh, else the rows of changed or vanished
    files and the rejects left by failed loads of a file; their manifest rows go too."""
    table = load.table
    name = quote_ident(table.name)
    if full_refresh:
        s.execute(f"DELETE FROM {name}")
        s.execute(f"DELETE FROM {_ERRORS} WHERE table_name = ?", [table.name])
        s.execute(f"DELETE FROM {_MANIFEST} WHERE table_name = ?", [table.name])
    elif plan.stale_keys or plan.to_load:
        stale = plan.replaced
        s.execute("CREATE OR REPLACE TEMP TABLE _stale AS SELECT unnest(?::VARCHAR[]) AS source_file", [stale])
        s.execute(f"DELETE FROM {name} WHERE source_file IN (SELECT source_file FROM _stale)")
        for book in (_ERRORS, _MANIFEST):
            s.execute(f"DELETE FROM {book} WHERE table_name = ? "
                      "AND source_file IN (SELECT source_file FROM _stale)", [table.name])


# --- stages 2 and 3, batch by batch ----------------------------------------------------------------

class Scratch:
    """Where a staging load frames and types its batches: a second connection to the same database
    (its own autocommit transactions, so each batch's temporary tables are freed when replaced; inside
    the load's transaction they would be kept until COMMIT) and a private folder beside the warehouse
    file for the typed batches (Parquet) that the load's transaction inserts from."""

    def __init__(self, con: duckdb.DuckDBPyConnection, db_path: Path):
        self._parent, self._db_path = con, db_path
        self.con: duckdb.DuckDBPyConnection | None = None
        self.folder: Path | None = None

    def __enter__(self) -> "Scratch":
        parent = self._db_path.resolve().parent
        for stale in parent.glob(f"{_SCRATCH_PREFIX}*"):  # left by a process that was killed
            pid = stale.name[len(_SCRATCH_PREFIX):].split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{os.getpid()}-", dir=parent))
        self.con = self._parent.cursor()  # the strict-JSON function is the connection's (DuckDBWarehouse._connect)
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


class DirectFile(NamedTuple):
    """A file the load's transaction reads straight from the JSON reader, and its number of records."""

    file: RawFile
    records: int


@dataclass
class Staged:
    """The batches staged so far: the framed files' Parquet parts and lines rejected while framing, the
    files read straight from the JSON reader at the insert, the counts."""

    parts: list[str] = field(default_factory=list)  # relations reading each framed batch's typed records
    early_rejects: list[tuple] = field(default_factory=list)  # load_errors rows, rejected in Python
    direct: dict[int, DirectFile] = field(default_factory=dict)  # typed at the insert
    files: int = 0
    read: int = 0
    rejected: int = 0  # by the framed files (the direct files' rejects are found at the insert)


def stage_batches(s: Session, scratch: Scratch, load: StagingLoad, files: Sequence[RawFile], *,
                  log: RunLog, started: float) -> Staged:
    """Frame and type ``files`` batch by batch into Parquet parts; the load's transaction gets their
    file list (``_files``: file_idx, source_file, file_version, file_size) for stage 4."""
    s.execute("CREATE OR REPLACE TEMP TABLE _files (file_idx INTEGER, source_file VARCHAR, "
              "file_version VARCHAR, file_size BIGINT)")
    out = Staged()
    for batch in json_loader.iter_batches(files, load.batch_bytes):  # a progress line after each but the last
        indexed = list(enumerate(batch, start=out.files))
        # 2a. the big local files the load's transaction will read straight from DuckDB's JSON reader
        direct = direct_files(scratch.con, load, indexed)
        out.direct.update(direct)
        out.read += sum(d.records for d in direct.values())
        rest = [(idx, f) for idx, f in indexed if idx not in direct]
        if rest:
            frame_and_type(scratch, load, rest, out, name=f"typed-{out.files}")  # 2.-3. the others: a Parquet part
        s.execute(
            "INSERT INTO _files SELECT unnest(?::INTEGER[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
            "unnest(?::BIGINT[])",
            [[idx for idx, _ in indexed], [f.key for f in batch], [f.version for f in batch],
             [f.size for f in batch]],
        )
        out.files += len(batch)
        if out.files == len(files):
            break  # the last batch: the load's own summary line follows, after the insert
        # The direct files' rejects are known only at the insert: "so far".
        log.info(
            f"{load.table.name}: {out.files:,}/{len(files):,} files read, {out.read:,} records "
            f"({out.rejected:,} rejected so far) in {time.monotonic() - started:.1f}s"
        )
    return out


def frame_and_type(scratch: Scratch, load: StagingLoad, files: list[tuple[int, RawFile]], out: Staged, *,
                   name: str) -> None:
    """Stages 2 and 3 for ``files``: their Parquet part (and their lines rejected while framing) into ``out``."""
    framed = frame_batch(scratch.con, load, files)  # 2. the candidate records, in _raw
    part = type_batch(scratch, load, framed, name=name)  # 3. into the Parquet part
    # One batch's texts at a time: they go, and so does _raw (autocommit: its memory is freed now).
    framed.release()
    scratch.con.execute("DROP TABLE _raw")
    (n_read, n_staged), = scratch.con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE err_reason IS NULL) FROM {part}").fetchall()
    out.parts.append(part)  # every framed batch has its part, even one whose lines were all rejected early
    out.early_rejects += framed.rejects
    out.read += n_read + len(framed.rejects)
    out.rejected += n_read - n_staged + len(framed.rejects)


# --- 2. (a) files the load's transaction reads straight from DuckDB's JSON reader -----------------

def direct_files(x: duckdb.DuckDBPyConnection, load: StagingLoad,
                 files: list[tuple[int, RawFile]]) -> dict[int, DirectFile]:
    """The batch's big local files that DuckDB's newline-delimited JSON reader splits into the very
    records framing would give (``json_loader.object_records``), with their number of records: the
    load's transaction types these straight from the reader into the table (``insert_load``), with
    no framing table and no Parquet part.

    A file qualifies when the reader reads it (one JSON value per line, valid UTF-8) and it holds none
    of the bytes the reader skips as whitespace and framing does not: its records are then framing's,
    less the whitespace around them, which the typing ignores. That is proved by the reader's own
    count when the records' bytes and one newline between each two make up the whole file
    (``_only_newlines_between``); any other file is scanned for those bytes (``OBJECTS_EXCLUDED_SQL``).
    When the typed reader will type them (``StagingLoad.reader_keys``), a file with a record the
    strict-JSON test refuses is left out too: that reader never sees a record's text.
    The reader gives no line numbers, so a file with a reject is framed after all (``insert_load``)."""
    candidates = load.in_place(files) if load.reads_objects else []
    if not candidates:
        return {}
    counts = _count_objects(x, load, candidates)
    if counts is None:  # some file is not one JSON value per line, or not valid UTF-8: each on its own
        counts = {}
        for pair in candidates:
            counts.update(_count_objects(x, load, [pair]) or {})
    counted = [(idx, f) for idx, f in candidates if idx in counts and not counts[idx][2]]
    to_scan = [(idx, f) for idx, f in counted if not _only_newlines_between(load, f, *counts[idx][:2])]
    excluded: set[int] = set()
    if to_scan:
        paths = load.local_paths(to_scan)
        readable = _readable_as_objects(x, paths)
        if readable is None:  # some file cannot be read as text (or is gone): each on its own, then
            readable = set().union(*(_readable_as_objects(x, [path]) or set() for path in paths))
        excluded = {idx for (idx, _), path in zip(to_scan, paths) if path not in readable}
    return {idx: DirectFile(f, counts[idx][0]) for idx, f in counted if idx not in excluded}


def _only_newlines_between(load: StagingLoad, f: RawFile, records: int, record_bytes: int) -> bool:
    """Whether the file as listed is its ``records`` (``record_bytes`` in all, as the reader gives them)
    with exactly one newline between each two and at most one after the last: nothing else, so no
    byte the reader skips. Every two records are apart by at least one byte, so ``records - 1`` bytes
    outside them leave none for anything else; one byte more must be the final newline."""
    outside = f.size - record_bytes
    if records == 0 or outside not in (records - 1, records):
        return False
    if outside == records - 1:
        return True
    try:
        with open(load.local_root / f.key, "rb") as fh:
            return os.pread(fh.fileno(), 1, f.size - 1) == b"\n"
    except OSError:
        return False


def _readable_as_objects(x: duckdb.DuckDBPyConnection, paths: list[str]) -> set[str] | None:
    """Which of ``paths`` hold no byte the JSON reader would skip where framing does not; None when
    one of them cannot be read as text."""
    try:
        excluded = {path for (path,) in x.execute(json_loader.OBJECTS_EXCLUDED_SQL, [paths]).fetchall()}
    except duckdb.Error:
        return None
    return set(paths) - excluded


def _count_objects(x: duckdb.DuckDBPyConnection, load: StagingLoad,
                   files: list[tuple[int, RawFile]]) -> dict[int, tuple[int, int, int]] | None:
    """Records per file as the JSON reader splits ``files``, their bytes, and (when the typed reader
    will type them) how many the strict-JSON test refuses (a file with none: 0, 0, 0); None if it
    refuses one."""
    if not files:
        return {}
    relation = json_loader.object_records([idx for idx, _ in files], load.local_paths(files))
    lenient = f"sum({json_loader.lenient_count_sql('rec')})" if load.reader_keys is not None else "0"
    try:
        counts = {idx: (n, size, refused or 0) for idx, n, size, refused in x.execute(
            f"SELECT file_idx, count(*), sum(strlen(rec)), {lenient} FROM {relation} GROUP BY file_idx").fetchall()}
    except duckdb.Error:
        return None
    return {idx: counts.get(idx, (0, 0, 0)) for idx, _ in files}


# --- 2. frame ------------------------------------------------------------------------------------

@dataclass
class FramedBatch:
    """How each file of a batch reached ``_raw``, kept until the batch is typed (re-framing needs it).

    Every file is in exactly one of ``in_place``, ``bound`` and ``in_python``."""

    in_place: dict[int, str] = field(default_factory=dict)  # file_idx -> key: read by DuckDB (read_text)
    bound: dict[int, str] = field(default_factory=dict)  # file_idx -> its text, bound as a parameter
    in_python: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # invalid UTF-8: lines
    rejects: list[tuple] = field(default_factory=list)  # load_errors rows of the lines rejected in Python

    def release(self) -> None:
        """Drop the texts (the rejects stay): the next batch's are read only after this one's go."""
        self.bound.clear()
        self.in_python.clear()


def frame_batch(x: duckdb.DuckDBPyConnection, load: StagingLoad, files: list[tuple[int, RawFile]]) -> FramedBatch:
    """Fill the scratch connection's ``_raw`` (file_idx, line_number, rec) with the candidate records
    of ``files`` ((file_idx, file) pairs).

    A valid UTF-8 file reaches DuckDB as one text and is framed there (``json_loader.FRAME_SQL``):
    nothing per line happens in Python. A big local file is read by DuckDB itself (``read_text``,
    which refuses invalid UTF-8: then the batch's big files take the Python path); other texts are
    bound as parameters. A file with invalid UTF-8 is framed in Python, its bad lines rejected.
    Texts are framed as they are read or bound, never stored whole in a table (a copy that costs
    more than the framing).
    """
    framed = FramedBatch()
    x.execute("CREATE OR REPLACE TEMP TABLE _raw (file_idx INTEGER, line_number BIGINT, rec VARCHAR)")
    in_place = load.in_place(files)
    if in_place:
        paths_in_place = load.local_paths(in_place)
        try:
            x.execute(f"INSERT INTO _raw {json_loader.FRAME_SQL.format(texts=json_loader.FILE_TEXTS)}",
                      [[idx for idx, _ in in_place], paths_in_place, paths_in_place])
            framed.in_place = {idx: f.key for idx, f in in_place}
        except duckdb.Error:  # invalid UTF-8 (or a file gone): the exact Python path, file by file
            pass
    rest = [(idx, f) for idx, f in files if idx not in framed.in_place]
    # A local folder is read file by file (one file's bytes held at a time); S3 concurrently.
    contents = ((read_local(load.local_root, load.source, f.key, f.size) for _, f in rest) if load.local_root
                else iter(load.source.read_many([f.key for _, f in rest])))
    for (idx, f), data in zip(rest, contents):
        text = json_loader.decode_text(data)
        if text is not None:
            framed.bound[idx] = text
            continue
        lines, rejects = json_loader.frame_lines(data)
        framed.in_python[idx] = lines
        framed.rejects += [(load.table.name, f.key, r.line_number, None, r.reason, r.raw_text, load.load_id, f.key)
                           for r in rejects]
    data = contents = None  # the last file's bytes are not held while DuckDB frames the texts
    if framed.bound:
        x.execute(f"INSERT INTO _raw {json_loader.FRAME_SQL.format(texts=json_loader.BOUND_TEXTS)}",
                  [list(framed.bound), list(framed.bound.values())])
    _insert_candidates(x, [(idx, n, text) for idx, lines in framed.in_python.items() for n, text in lines])
    return framed


def read_local(root: Path, source: RawDataSource, key: str, size: int = 0) -> bytes:
    """A local file's bytes with os.open/os.read, one read when ``size`` (from the listing) is right
    (faster than ``open()`` or ``LocalFolderSource.read_bytes`` over many small files); a file that
    grew is read to its end. On any error the source reads it, so a failure is the source's own
    ``SourceError``."""
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


def reframe_as_stream(x: duckdb.DuckDBPyConnection, load: StagingLoad, framed: FramedBatch,
                      file_idxs: Sequence[int]) -> None:
    """Replace the candidate records of ``file_idxs`` in ``_raw`` by one record per JSON value
    (``json_loader.frame_stream``): for files whose lines are not each one JSON value."""
    for idx in file_idxs:
        if idx in framed.in_python:
            candidates = framed.in_python[idx]
        elif idx in framed.bound:
            candidates = json_loader.frame_text(framed.bound[idx])
        else:  # read in place by DuckDB (valid UTF-8): read again
            data = read_local(load.local_root, load.source, framed.in_place[idx])
            candidates = json_loader.frame_text(json_loader.decode_text(data))
        x.execute("DELETE FROM _raw WHERE file_idx = ?", [idx])
        _insert_candidates(x, [(idx, n, text) for n, text in json_loader.frame_stream(candidates)])


def _insert_candidates(x: duckdb.DuckDBPyConnection, rows: list[tuple[int, int, str]]) -> None:
    if rows:
        idxs, numbers, texts = zip(*rows)
        x.execute(
            "INSERT INTO _raw SELECT unnest(?::INTEGER[]), unnest(?::BIGINT[]), unnest(?::VARCHAR[])",
            [list(idxs), list(numbers), list(texts)],
        )


# --- 3. type -------------------------------------------------------------------------------------

def type_batch(scratch: Scratch, load: StagingLoad, framed: FramedBatch, *, name: str) -> str:
    """Type the batch's ``_raw`` into the Parquet file ``name`` (in the scratch folder); returns the
    relation that reads the batch's typed records (file_idx, line_number, rec, columns..., err_column,
    err_reason).

    Files that have records rejected as malformed JSON are framed again as a stream of JSON values
    (``reframe_as_stream``) and typed again into a second file, which replaces their records."""
    x = scratch.con
    typed = _type_to_parquet(x, load, scratch.file(f"{name}.parquet"))
    reframe = [idx for (idx,) in x.execute(
        f"SELECT DISTINCT file_idx FROM {typed} WHERE err_reason = ? ORDER BY file_idx",
        [json_loader.MALFORMED_REASON],
    ).fetchall()]
    if not reframe:
        return typed
    reframe_as_stream(x, load, framed, reframe)
    in_list = ", ".join(str(int(i)) for i in reframe)
    again = _type_to_parquet(x, load, scratch.file(f"{name}-reframed.parquet"),
                             source=f"(SELECT * FROM _raw WHERE file_idx IN ({in_list}))")
    return f"(SELECT * FROM {typed} WHERE file_idx NOT IN ({in_list}) UNION ALL SELECT * FROM {again})"


def _type_to_parquet(x: duckdb.DuckDBPyConnection, load: StagingLoad, path: str, source: str = "_raw") -> str:
    sql = json_loader.typing_sql(load.table, load.columns, load.paths, source=source, arrays=load.arrays)
    x.execute(f"COPY ({sql}) TO {quote_literal(path)} (FORMAT parquet, COMPRESSION uncompressed)")
    return f"read_parquet({quote_literal(path)})"


# --- 4. insert -----------------------------------------------------------------------------------

def insert_load(s: EmbeddedSession, scratch: Scratch, load: StagingLoad, staged: Staged, *, sort: bool) -> None:
    """The load's transaction: staged rows, rejects and the manifest of every file, each in one
    statement over all the framed batches' Parquet parts and the direct files (typed here, straight
    from DuckDB's JSON reader: ``direct_files``). One INSERT per table writes whole compressed row
    groups; an INSERT per batch left partial row groups that the next checkpoint had to rewrite.

    A direct file with a reject (fewer rows staged than it has records) loses its rows again and is
    framed and typed like the others (a reject needs its line number), then inserted on its own.

    ``sort``: insert in file and line order. No rule depends on row order, but an unordered parallel
    insert leaves part-filled row groups in the middle of the table, which DuckDB's checkpoint merges
    once a later append makes that pay; sorted, every row group but the last is full. The caller
    sorts only a load that fits the sort in its memory limit."""
    direct = dict(staged.direct)
    try:
        _insert_rows(s, load, [*staged.parts, *([_direct_typed(load, direct)] if direct else [])], sort=sort)
    except (duckdb.InvalidInputException, duckdb.IOException) as exc:
        if not direct:
            raise
        # A direct file is read again here: one rewritten (or removed) since it was counted.
        raise SourceError(
            f"{load.table.name}: a raw file changed or went away while it was being loaded, so nothing was "
            f"loaded; the next run loads it as it is then. {str(exc).splitlines()[0]}"
        ) from None
    rejecting = _direct_files_with_rejects(s, load, direct)
    if rejecting:
        s.execute(f"DELETE FROM {quote_ident(load.table.name)} WHERE source_file IN "
                  "(SELECT source_file FROM _files WHERE file_idx IN (SELECT unnest(?::INTEGER[])))", [rejecting])
        framed_before = len(staged.parts)
        by_key = {direct[idx].file.key: idx for idx in rejecting}
        for batch in json_loader.iter_batches([direct.pop(idx).file for idx in rejecting], load.batch_bytes):
            frame_and_type(scratch, load, [(by_key[f.key], f) for f in batch], staged,
                           name=f"reframed-{by_key[batch[0].key]}")
        _insert_rows(s, load, staged.parts[framed_before:], sort=sort)
    staged.direct = direct
    typed = _union(staged.parts)
    if staged.early_rejects:
        s.con.executemany(f"INSERT INTO {_ERRORS} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", staged.early_rejects)
    if typed is not None:
        s.execute(
            f"INSERT INTO {_ERRORS} SELECT ?, f.source_file, line_number, err_column, "
            f"err_reason, left(rec, {json_loader.RAW_TEXT_LIMIT}), ?, f.source_file "
            f"FROM {typed} AS t JOIN _files f USING (file_idx) WHERE err_reason IS NOT NULL "
            "ORDER BY file_idx, line_number",
            [load.table.name, load.load_id],
        )
    early: dict[str, int] = {}
    for row in staged.early_rejects:
        early[row[1]] = early.get(row[1], 0) + 1
    # Records read and staged per file: the framed files' from their parts, the direct files' (every
    # record staged) from the reader's count.
    counts = "SELECT unnest(?::INTEGER[]) AS file_idx, unnest(?::BIGINT[]) AS n_read, unnest(?::BIGINT[]) AS n_staged"
    if typed is not None:
        counts += (f" UNION ALL SELECT file_idx, count(*), count(*) FILTER (WHERE err_reason IS NULL) "
                   f"FROM {typed} GROUP BY file_idx")
    n_direct = [d.records for d in direct.values()]
    s.execute(
        f"""INSERT INTO {_MANIFEST}
        SELECT ?, f.source_file, f.file_version, f.file_size,
            coalesce(t.n_read, 0) + coalesce(e.n, 0),
            coalesce(t.n_staged, 0),
            coalesce(t.n_read - t.n_staged, 0) + coalesce(e.n, 0), ?
        FROM _files f
        LEFT JOIN ({counts}) t USING (file_idx)
        LEFT JOIN (SELECT unnest(?::VARCHAR[]) AS source_file, unnest(?::BIGINT[]) AS n) e USING (source_file)""",
        [load.table.name, load.load_id, list(direct), n_direct, n_direct, list(early), list(early.values())],
    )


def _union(parts: Sequence[str]) -> str | None:
    return "(" + " UNION ALL ".join(f"SELECT * FROM {part}" for part in parts) + ")" if parts else None


def _direct_typed(load: StagingLoad, direct: dict[int, DirectFile]) -> str:
    """The direct files' typed records, straight from DuckDB's typed reader (``reader_typed_sql``, whose
    staged rows are the typing SQL's) or typed by the typing SQL from the JSON reader's records."""
    pairs = [(idx, d.file) for idx, d in direct.items()]
    idxs, paths = [idx for idx, _ in pairs], load.local_paths(pairs)
    if load.reader_keys is not None:
        return json_loader.reader_typed_sql(load.columns, load.reader_keys, idxs, paths)
    source = json_loader.object_records(idxs, paths)
    return "(" + json_loader.typing_sql(load.table, load.columns, load.paths, source=source, arrays=load.arrays) + ")"


def _insert_rows(s: EmbeddedSession, load: StagingLoad, parts: Sequence[str], *, sort: bool) -> None:
    typed = _union(parts)
    if typed is None:
        return
    col_list = ", ".join(quote_ident(c.name) for c in load.columns)
    order = " ORDER BY t.file_idx, t.line_number" if sort else ""
    s.execute(
        f"INSERT INTO {quote_ident(load.table.name)} ({col_list}, source_file) SELECT {col_list}, f.source_file "
        f"FROM {typed} AS t JOIN _files f USING (file_idx) WHERE err_reason IS NULL{order}"
    )


def _direct_files_with_rejects(s: EmbeddedSession, load: StagingLoad, direct: dict[int, DirectFile]) -> list[int]:
    """The direct files that staged another number of rows than they have records (the rest were
    rejected), or that changed since they were listed (their count and the insert may have read two
    versions, so the count proves nothing): framing reads each of these once more, as it is then."""
    if not direct:
        return []
    staged = dict(s.execute(
        f"SELECT f.file_idx, count(t.source_file) FROM _files f LEFT JOIN {quote_ident(load.table.name)} t "
        "ON t.source_file = f.source_file WHERE f.file_idx IN (SELECT unnest(?::INTEGER[])) GROUP BY f.file_idx",
        [list(direct)],
    ))
    return sorted(idx for idx, d in direct.items()
                  if staged.get(idx, 0) != d.records or _changed_since_listed(load, d.file))


def _changed_since_listed(load: StagingLoad, f: RawFile) -> bool:
    try:
        st = os.stat(load.local_root / f.key)
    except OSError:
        return True
    return local_version(st) != f.version


# --- 5. record -----------------------------------------------------------------------------------

def read_report(s: Session, load: StagingLoad, report: LoadReport) -> None:
    """Fill ``report`` from what the load wrote: its manifest rows' totals and its first rejects."""
    (report.files, report.records_read, report.records_staged, report.records_rejected), = s.execute(
        f"SELECT count(*), coalesce(sum(records_read), 0), coalesce(sum(records_staged), 0), "
        f"coalesce(sum(records_rejected), 0) FROM {_MANIFEST} WHERE table_name = ? AND load_id = ?",
        [load.table.name, load.load_id],
    )
    report.first_errors = [
        dict(zip(("source_file", "line_number", "column_name", "reason"), row))
        for row in s.execute(
            f"SELECT source_file, line_number, column_name, reason FROM {_ERRORS} "
            "WHERE table_name = ? AND load_id = ? ORDER BY source_file, line_number LIMIT 10",
            [load.table.name, load.load_id],
        )
    ]


def load_rejects(s: Session, load: StagingLoad) -> list[tuple]:
    """Every reject of this load (whole load_errors rows), to write back after a failed load's rollback."""
    return s.execute(f"SELECT * FROM {_ERRORS} WHERE table_name = ? AND load_id = ?", [load.table.name, load.load_id])


def too_many_message(report: LoadReport, max_errors: int) -> str:
    first = report.first_errors[0] if report.first_errors else {}
    return (
        f"{report.table}: {report.records_rejected} records rejected, more than SPARKIFY_MAX_ERRORS={max_errors}; "
        f"nothing was loaded. First bad record: {first.get('source_file')} line {first.get('line_number')}"
        f"{' column ' + first['column_name'] if first.get('column_name') else ''}: {first.get('reason')}. "
        f"All rejects are in the load_errors table."
    )


def keep_failed_load_rejects(s: EmbeddedSession, table: Table, rows: list[tuple]) -> None:
    """After a failed load's rollback, write its rejects back in a transaction of their own: like
    stl_load_errors, the rejects of a failed load stay visible while the table is untouched."""
    s.execute("BEGIN")
    # A retry of a failed load replaces that load's rejects instead of piling them up; rejects of
    # files that are loaded (in the manifest) belong to the staged data and stay.
    s.execute(
        f"DELETE FROM {_ERRORS} WHERE table_name = ? AND source_file IN "
        f"(SELECT unnest(?::VARCHAR[])) AND source_file NOT IN "
        f"(SELECT source_file FROM {_MANIFEST} WHERE table_name = ?)",
        [table.name, sorted({r[1] for r in rows}), table.name],
    )
    if rows:
        s.con.executemany(f"INSERT INTO {_ERRORS} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    s.execute("COMMIT")
