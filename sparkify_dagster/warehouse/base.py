"""The seam between the asset graph and a warehouse engine.

The assets say what: ``ensure_tables`` (the catalog's tables exist in their current shape),
``load_staging`` (bring a staging table up to date with these raw files), ``update_table`` (bring a
star or analytics table up to date with what it is built from), ``query``. Each engine says how:
``duckdb.py`` (embedded) and ``redshift.py`` (production), with their SQL spelling in
``dialect.py``; what both share is here, in ``planning.py`` (what a load reads and removes),
``star_update.py`` (how little of a derived table a change needs) and ``transforms.py`` (the
``sql/`` files rendered for a dialect).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import threading
import time

import dagster as dg
from pydantic import PrivateAttr

from sparkify_dagster.catalog import ALL_TABLES, BOOKKEEPING_TABLES, STAGING_TABLES, STATE_TABLES, Table
from sparkify_dagster.source import RawDataSource, RawFile
from sparkify_dagster.warehouse import star_update
from sparkify_dagster.warehouse.dialect import Dialect, quote_ident, relation
from sparkify_dagster.warehouse.star_update import TableUpdate, UpdateKind


class Session(Protocol):
    """What the shared code needs of an open connection."""

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]: ...


class RunLog(Protocol):
    """Where a load writes its progress (the run's log, or a queue the step's thread writes out)."""

    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...


@dataclass
class LoadReport:
    """What a staging load did, file by file; becomes run-log lines and asset metadata."""

    table: str
    files: int = 0
    records_read: int = 0
    records_staged: int = 0
    records_rejected: int = 0
    seconds: float = 0.0
    first_errors: list[dict] = field(default_factory=list)
    files_unchanged: int = 0
    files_removed: int = 0

    def add(self, read: int, staged: int, rejected: int) -> None:
        self.files += 1
        self.records_read += read
        self.records_staged += staged
        self.records_rejected += rejected


def rollback(s: Session, cause: BaseException) -> bool:
    """ROLLBACK after ``cause``; True if it ran. When the connection is gone the server discards the
    open transaction anyway, so a failing ROLLBACK must not replace the error that caused it."""
    try:
        s.execute("ROLLBACK")
        return True
    except Exception as exc:
        if hasattr(cause, "add_note"):  # Python 3.11+
            cause.add_note(f"(ROLLBACK failed too: {type(exc).__name__}: {exc})")
        return False


def _key(table: Table) -> tuple[str, str]:
    """(schema, name) as information_schema names them ('' for the warehouse's default schema)."""
    return (table.schema or "", table.name)


T = TypeVar("T")
# A deadlock between a reader and a writer's LOCK is broken by the server ending one of them.
LOCK_ATTEMPTS = 4
DEADLOCK_PAUSE_SECONDS = 0.5


class TooManyLoadErrors(Exception):
    """A load rejected more records than the configured limit; nothing was committed."""


class Warehouse(dg.ConfigurableResource):
    """A warehouse engine the assets write to. Subclasses: DuckDBWarehouse, (production) Redshift."""

    max_errors: int = 10

    # Within a run (the resource set up by Dagster) the schema is ensured once; engines keep their
    # connections open for the run (see their ``session``).
    _in_run: bool = PrivateAttr(default=False)
    _ensured: set = PrivateAttr(default_factory=set)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def setup_for_execution(self, context: Any) -> None:
        self._in_run = True

    def teardown_after_execution(self, context: Any) -> None:
        self._in_run = False
        self._ensured = set()
        self.close_run_connections()

    def close_run_connections(self) -> None:
        """Close what the engine kept open for the run (nothing by default)."""

    @property
    def incremental_star(self) -> bool:
        """Whether derived tables follow their catalog ``update`` rule (``star_update.py``) rather
        than being rebuilt in full every time."""
        return False

    @property
    @abstractmethod
    def dialect(self) -> Dialect: ...

    @property
    @abstractmethod
    def kind(self) -> str:
        """The Dagster kind tag of this engine (duckdb, redshift)."""

    @abstractmethod
    def describe(self) -> str:
        """Where the warehouse is, for logs and metadata (never a secret)."""

    @abstractmethod
    def qualified_name(self, table: Table) -> str:
        """database.schema.table, for dagster/table_name."""

    @contextmanager
    @abstractmethod
    def session(self) -> Iterator[Session]:
        """An open connection, closed on exit. Nothing is committed unless inside ``transaction``."""

    @abstractmethod
    def load_staging(self, table: Table, source: RawDataSource, files: Sequence[RawFile], load_id: str,
                     log: RunLog, jsonpaths: Sequence[str] | None = None, full_refresh: bool = False,
                     reload_keys: frozenset[str] = frozenset()) -> LoadReport:
        """Bring ``table`` up to date with ``files`` atomically (new/changed loaded, vanished removed).

        ``jsonpaths``: the COPY JSONPaths that map a record onto the columns by position (the
        table's ``raw.jsonpaths``), else records map by column name. ``reload_keys``: files loaded
        again even if unchanged; ``full_refresh``: every file, as on a fresh warehouse."""

    def loaded_versions(self, s: Session, table: Table) -> dict[str, str]:
        """The load manifest of a staging table: source_file -> version loaded."""
        rows = s.execute(
            f"SELECT source_file, file_version FROM {quote_ident('loaded_files')} WHERE table_name = ?", [table.name]
        )
        return {key: version for key, version in rows}

    # --- shared behaviour, written once -------------------------------------------------------------

    @contextmanager
    def transaction(self, locks: Sequence[Table] = ()) -> Iterator[Session]:
        """One transaction; ``locks``: every table it touches, locked first where the engine needs it
        (Redshift: concurrent writers then wait instead of failing with a serializable isolation
        violation; all of them at once, in one order, so no two transactions wait for each other)."""
        with self.session() as s:
            self.begin_locked(s, locks)
            try:
                yield s
            except BaseException as exc:
                rollback(s, exc)
                raise
            s.execute("COMMIT")

    def ensure_tables(self, tables: Sequence[Table] | None = None) -> list[str]:
        """Create missing tables; rebuild ones whose columns differ from the catalog (an older version).

        Every table is derived from the raw data, so a table with an outdated shape is dropped and
        recreated empty; if the load bookkeeping (``loaded_files``, ``load_errors``) is among them,
        staging is emptied too, so the next run reloads every raw file instead of duplicating rows.
        Only what is missing or outdated gets DDL, and within a run each table is looked at once.
        Returns the tables rebuilt.
        """
        if tables is None:  # the warehouse's own schema; the state of incremental updates where they run
            tables = ALL_TABLES + (STATE_TABLES if self.incremental_star else ())
        wanted = {_key(t): t for t in tables}
        if self._in_run and set(wanted) <= self._ensured:
            return []
        try:
            return self._ensure(wanted)
        except Exception:
            # Two runs creating the same missing table at once: CREATE TABLE IF NOT EXISTS is not atomic
            # against a concurrent creator (PostgreSQL and Redshift both fail one of them). Looked at
            # again, the table exists; any other failure fails again and surfaces.
            time.sleep(0.5)
            return self._ensure(wanted)

    def _ensure(self, wanted: dict[tuple[str, str], Table]) -> list[str]:
        tables = list(wanted.values())
        schemas = sorted({t.schema for t in tables if t.schema})
        with self.session() as s:
            existing: dict[tuple[str, str], list[str]] = {}
            where = " OR ".join(["table_schema = current_schema()", *["table_schema = ?"] * len(schemas)])
            for schema, table_name, column_name in s.execute(
                "SELECT CASE WHEN table_schema = current_schema() THEN '' ELSE table_schema END, table_name, "
                f"column_name FROM information_schema.columns WHERE {where} "
                "ORDER BY table_schema, table_name, ordinal_position", schemas or None,
            ):
                existing.setdefault((schema, table_name), []).append(column_name)
            outdated = {key for key, t in wanted.items() if key in existing and existing[key] != t.column_names}
            if outdated & {_key(t) for t in BOOKKEEPING_TABLES}:
                # Rows counted in bookkeeping of another shape cannot be trusted: reload staging.
                wanted.update({_key(t): t for t in STAGING_TABLES + BOOKKEEPING_TABLES})
                outdated |= set(wanted) & {_key(t) for t in STAGING_TABLES + BOOKKEEPING_TABLES} & set(existing)
            for schema in schemas:
                if any(t.schema == schema and key not in existing for key, t in wanted.items()):
                    s.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
            for key, table in wanted.items():
                if key in outdated:
                    s.execute(f"DROP TABLE {relation(table)}")
                if key in outdated or key not in existing:
                    s.execute(self.dialect.create_table(table))
        if self._in_run:
            self._ensured |= set(wanted)
        return sorted(relation(wanted[key]).replace('"', "") for key in outdated)

    def update_table(self, table: Table) -> TableUpdate:
        """Bring a star or analytics table up to date with what it is built from, atomically: by its
        catalog ``update`` rule where the engine supports it, else rebuilt in full."""
        if not self.incremental_star:
            return TableUpdate(self.rebuild_table(table), UpdateKind.FULL)
        with self.transaction(locks=star_update.touched(table)) as s:
            return star_update.update(s, table, self.dialect)

    def rebuild_table(self, table: Table) -> int:
        """Rebuild a star or analytics table in full from its SQL file, atomically (DELETE + INSERT in
        one transaction); returns its row count."""
        with self.transaction(locks=star_update.touched(table, state=False)) as s:
            return star_update.rebuild(s, table, self.dialect)

    def begin_locked(self, s: Session, locks: Sequence[Table]) -> None:
        """BEGIN, then the locks. A lock caught in a deadlock (with a reader holding one of the tables
        while it waits for another) has changed nothing yet: it is taken again after a pause."""

        def begin() -> None:
            s.execute("BEGIN")
            try:
                for statement in self.dialect.lock_statements(locks):
                    s.execute(statement)
            except Exception as exc:
                rollback(s, exc)
                raise

        self._again_after_deadlock(begin)

    def _again_after_deadlock(self, attempt_once: Callable[[], T]) -> T:
        """``attempt_once()``, run again (after a growing pause) while a deadlock ends it; it must
        change nothing when it fails."""
        for attempt in range(1, LOCK_ATTEMPTS + 1):
            try:
                return attempt_once()
            except Exception as exc:
                if attempt == LOCK_ATTEMPTS or not self.is_deadlock(exc):
                    raise
                time.sleep(DEADLOCK_PAUSE_SECONDS * attempt)
        raise AssertionError("unreachable")

    def is_deadlock(self, exc: BaseException) -> bool:
        """Whether the server ended a statement to break a deadlock (safe to run it again)."""
        return False

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        """One read (checks, previews). A read that a deadlock ended changed nothing: it runs again."""

        def read() -> list[tuple]:
            with self.session() as s:
                return s.execute(sql, params)

        return self._again_after_deadlock(read)

    def row_count(self, table: Table) -> int:
        return self.query(f"SELECT COUNT(*) FROM {relation(table)}")[0][0]
