"""Bring a star table up to date with staging doing only the work the change needs (embedded engine).

Every star table is defined as a full rebuild from staging (``sql/<table>.sql``), so any order of
arrival equals one full load. Rebuilding songplays and users from all of history for one new day
costs the history, not the day; so each build records what it was built from, in ``star_sources``:
the log files (with version and load) and a digest of the song files' manifest, plus the table's
row count. The next build compares that with the load manifest (``loaded_files``):

- nothing changed (same files, same loads, same row count): the table is left as it is;
- only new log files, the song side unchanged: users and songplays replace just the rows of the keys
  those files hold (the users in them; the (user, session, item) of their NextSong events), computed
  by the same SQL restricted to those keys, over every copy in staging, so the rules (latest copy,
  latest event, song match) give exactly what a full rebuild gives;
- anything else (a file changed, reloaded or gone, a song file changed, no record, a row count that
  does not match): the full rebuild.

time is one row per distinct songplays.start_time, its other columns a function of start_time alone;
so once built it only needs the difference with songplays: rows whose start_time no longer has a
songplay go, start_times new to songplays are added (two anti-joins, not a rebuild of every row).

The record is written in the same transaction as the table. Redshift always rebuilds in full.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkify_dagster.catalog import LOADED_FILES, SONGPLAYS, SONGS, ARTISTS, TIME, USERS, Table
from sparkify_dagster.transforms import transform_sql
from sparkify_dagster.warehouse.base import Session, Warehouse, quote_ident, replace_statements

STATE_TABLE = "star_sources"
SONGS_MARK = "#staging_songs"  # the row holding the digest of the song files' manifest
ROWS_MARK = "#rows"  # the row holding the table's row count after the build
# What each tracked table is built from (time follows songplays: ``_update_time``).
TRACKED: dict[str, tuple[bool, bool]] = {  # table: (reads log files, reads song files)
    USERS.name: (True, False),
    SONGS.name: (False, True),
    ARTISTS.name: (False, True),
    SONGPLAYS.name: (True, True),
}
PARTIAL = {USERS.name, SONGPLAYS.name}  # can replace just the rows of new log files' keys
_CREATE_STATE = (
    f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (table_name VARCHAR NOT NULL, source_file VARCHAR NOT NULL, "
    "file_version VARCHAR)"
)


@dataclass
class StarUpdate:
    rows: int
    how: str  # "full", "unchanged", "new log files" or "differences"
    new_files: int = 0
    added: int = 0
    removed: int = 0


def _sources(s: Session, table: Table) -> dict[str, str]:
    """What ``table`` would be built from now: log file -> version@load, and the song digest."""
    events, songs = TRACKED[table.name]
    manifest = quote_ident(LOADED_FILES.name)
    current: dict[str, str] = {}
    if events:
        current.update(dict(s.execute(
            f"SELECT source_file, file_version || '@' || load_id FROM {manifest} WHERE table_name = 'staging_events'")))
    if songs:
        (count, digest), = s.execute(
            f"SELECT count(*), coalesce(bit_xor(hash(source_file || '|' || file_version || '@' || load_id)), 0) "
            f"FROM {manifest} WHERE table_name = 'staging_songs'")
        current[SONGS_MARK] = f"{count}:{digest}"
    return current


def update(warehouse: Warehouse, table: Table) -> StarUpdate:
    """Bring ``table`` up to date (see the module docstring), atomically; returns how."""
    name = quote_ident(table.name)
    if table.name == TIME.name and warehouse.incremental_star:
        return _update_time(warehouse)
    if table.name not in TRACKED or not warehouse.incremental_star:
        return StarUpdate(warehouse.replace_table(table, transform_sql(table.name, warehouse.dialect)), "full")
    with warehouse.transaction() as s:
        s.execute(_CREATE_STATE)
        current = _sources(s, table)
        recorded = dict(s.execute(f"SELECT source_file, file_version FROM {STATE_TABLE} WHERE table_name = ?",
                                  [table.name]))
        rows_before = s.execute(f"SELECT count(*) FROM {name}")[0][0]
        kept = recorded.pop(ROWS_MARK, None) == str(rows_before) and all(
            current.get(key) == version for key, version in recorded.items())
        new_files = sorted(set(current) - set(recorded)) if kept else []
        if kept and not new_files:
            return StarUpdate(rows_before, "unchanged")
        if kept and table.name in PARTIAL:
            _replace_keys_of(s, warehouse, table, new_files)
            how = "new log files"
        else:
            for statement in replace_statements(table, transform_sql(table.name, warehouse.dialect)):
                s.execute(statement)
            how, new_files = "full", []
        rows = s.execute(f"SELECT count(*) FROM {name}")[0][0]
        s.execute(f"DELETE FROM {STATE_TABLE} WHERE table_name = ?", [table.name])
        s.execute(
            f"INSERT INTO {STATE_TABLE} SELECT ?, unnest(?::VARCHAR[]), unnest(?::VARCHAR[])",
            [table.name, [*current, ROWS_MARK], [*current.values(), str(rows)]],
        )
    return StarUpdate(rows, how, len(new_files))


def _replace_keys_of(s: Session, warehouse: Warehouse, table: Table, new_files: list[str]) -> None:
    """Replace the rows of the keys that ``new_files`` hold, computed over every copy in staging."""
    name = quote_ident(table.name)
    s.execute("CREATE OR REPLACE TEMP TABLE _new_files AS SELECT unnest(?::VARCHAR[]) AS source_file", [new_files])
    if table.name == USERS.name:
        s.execute("CREATE OR REPLACE TEMP TABLE _affected AS SELECT DISTINCT user_id FROM staging_events "
                  "WHERE source_file IN (SELECT source_file FROM _new_files) AND user_id IS NOT NULL AND user_id <> ''")
        s.execute(f"DELETE FROM {name} WHERE user_id IN (SELECT user_id FROM _affected)")
    else:  # songplays: songplay_id is the md5 of the (user_id, session_id, item_in_session) key
        s.execute("CREATE OR REPLACE TEMP TABLE _affected AS SELECT DISTINCT user_id, session_id, item_in_session "
                  "FROM staging_events WHERE source_file IN (SELECT source_file FROM _new_files) "
                  "AND page = 'NextSong' AND user_id IS NOT NULL AND user_id <> '' AND ts IS NOT NULL")
        s.execute(
            f"DELETE FROM {name} WHERE songplay_id IN (SELECT MD5(user_id || '|' || "
            "COALESCE(CAST(session_id AS VARCHAR), '') || '|' || COALESCE(CAST(item_in_session AS VARCHAR), '')) "
            "FROM _affected)"
        )
    cols = ", ".join(quote_ident(c) for c in table.column_names)
    s.execute(f"INSERT INTO {name} ({cols})\n{transform_sql(table.name, warehouse.dialect, affected='_affected')}")
    s.execute("DROP TABLE _affected")
    s.execute("DROP TABLE _new_files")


def _update_time(warehouse: Warehouse) -> StarUpdate:
    """time from songplays: built in full when empty, else only the start_times that came or went."""
    time_table, plays = quote_ident(TIME.name), quote_ident(SONGPLAYS.name)
    with warehouse.transaction() as s:
        if s.execute(f"SELECT count(*) FROM {time_table}")[0][0] == 0:
            for statement in replace_statements(TIME, transform_sql(TIME.name, warehouse.dialect)):
                s.execute(statement)
            return StarUpdate(s.execute(f"SELECT count(*) FROM {time_table}")[0][0], "full")
        (removed,), = s.execute(
            f"DELETE FROM {time_table} WHERE NOT EXISTS "
            f"(SELECT 1 FROM {plays} AS p WHERE p.start_time = {time_table}.start_time)")
        s.execute(
            f"CREATE OR REPLACE TEMP TABLE _affected AS SELECT DISTINCT p.start_time FROM {plays} AS p "
            f"WHERE p.start_time IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM {time_table} AS t WHERE t.start_time = p.start_time)")
        (added,), = s.execute("SELECT count(*) FROM _affected")
        if added:
            cols = ", ".join(quote_ident(c) for c in TIME.column_names)
            s.execute(f"INSERT INTO {time_table} ({cols})\n"
                      f"{transform_sql(TIME.name, warehouse.dialect, affected='_affected')}")
        s.execute("DROP TABLE _affected")
        rows = s.execute(f"SELECT count(*) FROM {time_table}")[0][0]
    return StarUpdate(rows, "differences", added=added, removed=removed)
