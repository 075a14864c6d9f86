"""Bring a derived table (star or analytics) up to date with staging, doing only what the change needs.

Every derived table is defined as a full rebuild from its SQL file, so any order of arrival equals
one full load. How much of that rebuild a run needs is the table's catalog ``update`` rule:

- ``Rebuild``: the full rebuild; with ``skip_unchanged``, nothing when the table's sources are those
  of its last build (the same log files at the same version and load, the same song manifest, the
  same row count, the same SQL);
- ``ReplaceKeys``: when only new log files came (nothing changed or vanished, the song side the
  same), just the rows of the keys those files hold are rebuilt: the table's SQL restricted to those
  keys (``affected``), over every copy in staging, so every rule (latest copy, latest event, song
  match) gives exactly what a full rebuild gives; those rows replace the rows of the same primary
  key. Anything else: the full rebuild;
- ``Difference``: one row per distinct key of another table: rows whose key is gone are deleted,
  keys new to it are built (two anti-joins, not a rebuild of every row).

What a table was built from is recorded in ``star_sources`` in the same transaction as the table,
with the version of its SQL and of the SQL of every table it is built from (``sql_version``): an
edited SQL file rebuilds its table, and what is built from it, in full on the next run, even when no
raw file changed.
Written against the ``Session`` and the dialect only, in SQL both engines run (non-correlated IN /
NOT IN on one-column keys, temp tables dropped before COMMIT); an engine opts in with
``Warehouse.incremental_star`` (both do; one that does not rebuilds every table in full).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum

from sparkify_dagster.catalog import (
    LOADED_FILES,
    STAGING_EVENTS,
    STAR_SOURCES,
    TABLES,
    Difference,
    Rebuild,
    ReplaceKeys,
    Table,
    staging_sources,
    upstream_of,
)
from sparkify_dagster.warehouse.dialect import Dialect, quote_ident, relation, replace_statements
from sparkify_dagster.warehouse.transforms import code_version, render

# A manifest entry as star_sources records it (a loaded_files row: the file, its version, its load).
VERSION_AT_LOAD = "source_file || '|' || file_version || '@' || load_id"
ROWS_MARK = "#rows"  # the star_sources row holding the table's row count after the build
SQL_MARK = "#sql"  # the star_sources row holding the sql_version the table was built with


class UpdateKind(Enum):
    """How a table was brought up to date (its value: the run log's words for it)."""

    FULL = "rebuilt in full"
    UNCHANGED = "unchanged since its last build (same raw files, same SQL)"
    KEYS = "rows of the keys in {new_files:,} new log file(s) replaced"
    DIFFERENCE = "{added:,} {key}s added, {removed:,} removed (the difference with {of})"


@dataclass(frozen=True)
class TableUpdate:
    rows: int
    kind: UpdateKind
    new_files: int = 0
    added: int = 0
    removed: int = 0
    key: str = ""
    of: str = ""

    def describe(self) -> str:
        return self.kind.value.format(new_files=self.new_files, added=self.added, removed=self.removed,
                                      key=self.key, of=self.of)


def tracks_sources(table: Table) -> bool:
    """Whether updating ``table`` compares what it was built from (``star_sources``, ``loaded_files``)."""
    rule = table.update
    return isinstance(rule, ReplaceKeys) or (isinstance(rule, Rebuild) and rule.skip_unchanged)


def sql_version(table: Table) -> str:
    """One digest of the code versions of ``table``'s SQL and of every derived table it is built from."""
    derived = [table, *(TABLES[n] for n in sorted(upstream_of(table)) if n in TABLES and TABLES[n].sql_file)]
    return hashlib.sha256("|".join(code_version(t) for t in derived).encode()).hexdigest()[:16]


def touched(table: Table, state: bool | None = None) -> list[Table]:
    """Every table an update of ``table`` reads or writes: locked together at its start (Redshift), so
    two runs' transactions never hold one each of two tables while waiting for the other. ``state``
    (default: the table's rule tracks its sources): also the bookkeeping the comparison reads."""
    reads = [TABLES[name] for name in table.built_from if name in TABLES]
    if tracks_sources(table) if state is None else state:
        reads += [STAR_SOURCES, LOADED_FILES, *staging_sources(table)]
    elif state is None and isinstance(table.update, Difference):
        reads.append(STAR_SOURCES)  # its SQL version
    return [table, *reads]


def _count(s, table: Table) -> int:
    return s.execute(f"SELECT COUNT(*) FROM {relation(table)}")[0][0]


def rebuild(s, table: Table, dialect: Dialect) -> int:
    """The full rebuild inside the caller's transaction; returns the row count."""
    for statement in replace_statements(table, render(table, dialect)):
        s.execute(statement)
    return _count(s, table)


def recorded_sources(s, table: Table) -> dict[str, str]:
    """What ``table`` was last built from, as star_sources holds it (its entries and marks)."""
    return dict(s.execute(f"SELECT source_file, file_version FROM {relation(STAR_SOURCES)} WHERE table_name = ?",
                          [table.name]))


def current_sources(s, table: Table, dialect: Dialect) -> dict[str, str]:
    """What ``table`` would be built from now: each loaded_files entry -> version@load, or, for a staging
    table with an entry per song file, one row "#<table>" -> count:digest of those entries."""
    manifest = relation(LOADED_FILES)
    current: dict[str, str] = {}
    for staging in staging_sources(table):
        # One entry per file (log files), or every entry of an engine without a set digest (Redshift:
        # its song manifest is one entry); else one digest of the many entries (a song file each).
        if staging.raw.copy_per_file or not dialect.has_set_digest:
            current.update(dict(s.execute(
                f"SELECT source_file, file_version || '@' || load_id FROM {manifest} WHERE table_name = ?",
                [staging.name])))
        else:
            (count, digest), = s.execute(
                f"SELECT count(*), {dialect.set_digest(VERSION_AT_LOAD)} FROM {manifest} WHERE table_name = ?",
                [staging.name])
            current[f"#{staging.name}"] = f"{count}:{digest}"
    return current


def update(s, table: Table, dialect: Dialect) -> TableUpdate:
    """Bring ``table`` up to date inside the caller's transaction (see the module docstring)."""
    rule = table.update
    if isinstance(rule, Difference):
        return _update_difference(s, table, rule, dialect)
    if not tracks_sources(table):
        return TableUpdate(rebuild(s, table, dialect), UpdateKind.FULL)
    current = current_sources(s, table, dialect)
    recorded = recorded_sources(s, table)
    previous = dict(recorded)
    rows_before = _count(s, table)
    sql = sql_version(table)
    rows_mark, sql_mark = recorded.pop(ROWS_MARK, None), recorded.pop(SQL_MARK, None)
    kept = rows_mark == str(rows_before) and sql_mark == sql and all(
        current.get(key) == version for key, version in recorded.items())
    new_files = sorted(set(current) - set(recorded)) if kept else []
    if kept and not new_files:
        return TableUpdate(rows_before, UpdateKind.UNCHANGED)
    if kept and isinstance(rule, ReplaceKeys):
        rows, kind = _replace_keys(s, table, rule, dialect, new_files), UpdateKind.KEYS
    else:
        rows, kind, new_files = rebuild(s, table, dialect), UpdateKind.FULL, []
    _record_sources(s, table, dialect, previous, {**current, ROWS_MARK: str(rows), SQL_MARK: sql})
    return TableUpdate(rows, kind, new_files=len(new_files))


def _record_sources(s, table: Table, dialect: Dialect, previous: dict[str, str], now: dict[str, str]) -> None:
    """Bring the table's star_sources rows from ``previous`` to ``now``, writing only the entries that
    changed (a new day writes a few rows, not one per day of history)."""
    stale = sorted(k for k in previous if previous[k] != now.get(k))
    fresh = [(table.name, k, v) for k, v in now.items() if previous.get(k) != v]
    for start in range(0, len(stale), 500):  # a bounded parameter list per statement
        chunk = stale[start:start + 500]
        s.execute(f"DELETE FROM {relation(STAR_SOURCES)} WHERE table_name = ? AND source_file IN "
                  f"({', '.join(['?'] * len(chunk))})", [table.name, *chunk])
    if fresh:
        sql, params = dialect.insert_strings(relation(STAR_SOURCES), fresh)
        s.execute(sql, params)


def _replace_keys(s, table: Table, rule: ReplaceKeys, dialect: Dialect, new_files: list[str]) -> int:
    """Rebuild the rows of the keys that ``new_files`` hold; they replace the rows of the same primary key.

    Every key of a new file yields a row of the rebuild (staging still holds that record), and only
    files were added, so the rows replaced are exactly the rows of those keys."""
    name = relation(table)
    (key,) = [quote_ident(c) for c in table.primary_key]  # one-column keys: IN, not a correlated subquery
    cols = ", ".join(quote_ident(c) for c in table.column_names)
    s.execute(f"CREATE TEMP TABLE _new_files (source_file {dialect.column_type('varchar(1024)')})")
    sql, params = dialect.insert_strings("_new_files", [(f,) for f in new_files])
    s.execute(sql, params)
    s.execute(f"CREATE TEMP TABLE _affected AS SELECT DISTINCT {', '.join(quote_ident(c) for c in rule.key)} "
              f"FROM {relation(STAGING_EVENTS)} WHERE source_file IN (SELECT source_file FROM _new_files)")
    s.execute(f"CREATE TEMP TABLE _rebuilt AS {render(table, dialect, affected='_affected')}")
    s.execute(f"DELETE FROM {name} WHERE {key} IN (SELECT {key} FROM _rebuilt)")
    s.execute(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM _rebuilt")
    for temp in ("_rebuilt", "_affected", "_new_files"):
        s.execute(f"DROP TABLE {temp}")
    return _count(s, table)


def _update_difference(s, table: Table, rule: Difference, dialect: Dialect) -> TableUpdate:
    """Built in full when empty or built by other SQL; else only the keys that came or went."""
    name, of, key = relation(table), relation(TABLES[rule.of]), quote_ident(rule.key)
    rows_before = _count(s, table)
    recorded = recorded_sources(s, table)  # its SQL version only: a Difference tracks no raw file
    version = sql_version(table)
    if rows_before == 0 or recorded.get(SQL_MARK) != version:
        rows = rebuild(s, table, dialect)
        _record_sources(s, table, dialect, recorded, {SQL_MARK: version})
        return TableUpdate(rows, UpdateKind.FULL)
    # The key is never null in the table (its primary key), so NOT IN is the anti-join on both engines.
    s.execute(f"DELETE FROM {name} WHERE {key} NOT IN (SELECT {key} FROM {of} WHERE {key} IS NOT NULL)")
    removed = rows_before - _count(s, table)
    s.execute(f"CREATE TEMP TABLE _affected AS SELECT DISTINCT {key} FROM {of} "
              f"WHERE {key} IS NOT NULL AND {key} NOT IN (SELECT {key} FROM {name})")
    (added,), = s.execute("SELECT count(*) FROM _affected")
    if added:
        cols = ", ".join(quote_ident(c) for c in table.column_names)
        s.execute(f"INSERT INTO {name} ({cols})\n{render(table, dialect, affected='_affected')}")
    s.execute("DROP TABLE _affected")
    return TableUpdate(_count(s, table), UpdateKind.DIFFERENCE, added=added, removed=removed, key=rule.key, of=rule.of)
