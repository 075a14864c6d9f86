"""The floor: the same load and star transforms as the asset graph, as one plain DuckDB script.

No Dagster, no load manifest, no per-record rejection bookkeeping, no asset checks: DuckDB's own
``read_json`` reads every raw file (typed by the staging columns) straight into the staging tables,
then each star table is built by the very SQL the assets use
(``sparkify_dagster.transforms.transform_sql(name, DuckDBDialect())``). It is what the warehouse
costs with zero orchestration; ``benchmarks/run.py`` times it next to the Dagster runs.

    python benchmarks/floor.py --data /tmp/sparkify-bench/medium/data --db /tmp/floor.duckdb
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import duckdb

from sparkify_dagster.catalog import ALL_TABLES, STAGING_EVENTS, STAGING_SONGS, TABLES
from sparkify_dagster.source import DEFAULT_EVENT_JSONPATHS, parse_jsonpaths
from sparkify_dagster.transforms import transform_sql
from sparkify_dagster.warehouse.base import quote_ident, quote_literal, replace_statements
from sparkify_dagster.warehouse.duckdb import DuckDBDialect

STAR_ORDER = ("users", "songs", "artists", "songplays", "time")
_DUCKDB_TYPES = {"integer": "INTEGER", "bigint": "BIGINT", "double": "DOUBLE"}


def _json_type(logical: str) -> str:
    return "VARCHAR" if logical.startswith("varchar(") else _DUCKDB_TYPES[logical]


def _event_keys(root: Path) -> list[str]:
    """The JSON key of each staging_events column (log_json_path.json maps them by position)."""
    jsonpaths_file = root / "log_json_path.json"
    paths = parse_jsonpaths(jsonpaths_file.read_bytes()) if jsonpaths_file.exists() else DEFAULT_EVENT_JSONPATHS
    keys = []
    for path in paths:  # $['firstName'] -> firstName (the floor handles flat paths only)
        if not (path.startswith("$['") and path.endswith("']")):
            raise SystemExit(f"floor.py handles $['key'] JSONPaths only, not {path!r}")
        keys.append(path[3:-2])
    return keys


def _load_sql(table, root: Path, pattern: str, keys: list[str], fmt: str) -> str:
    columns = [c for c in table.columns if c.name != "source_file"]
    spec = "{" + ", ".join(f"{quote_literal(k)}: '{_json_type(c.type)}'" for k, c in zip(keys, columns)) + "}"
    select = ", ".join(f'"{k}"' for k in keys)
    targets = ", ".join(quote_ident(c.name) for c in columns)
    prefix_len = len(str(root)) + 2  # key = path relative to the data root
    glob = quote_literal(str(root / pattern))
    return (
        f"INSERT INTO {quote_ident(table.name)} ({targets}, source_file) "
        f"SELECT {select}, substr(filename, {prefix_len}) "
        f"FROM read_json({glob}, format = '{fmt}', columns = {spec}, filename = true)"
    )


def _from_json_sql(table, keys: list[str], key_expr: str, relation: str, text_col: str) -> str:
    """INSERT … SELECT from_json(text, typed structure): one JSON object per text, typed like read_json."""
    columns = [c for c in table.columns if c.name != "source_file"]
    structure = json.dumps({k: _json_type(c.type) for k, c in zip(keys, columns)})
    targets = ", ".join(quote_ident(c.name) for c in columns)
    fields = ", ".join(f'j."{k}"' for k in keys)
    return (
        f"INSERT INTO {quote_ident(table.name)} ({targets}, source_file) "
        f"SELECT {fields}, key FROM (SELECT {key_expr} AS key, from_json({text_col}, {quote_literal(structure)}) AS j "
        f"FROM {relation})"
    )


def _read_song_files(root: Path) -> tuple[list[str], list[str]]:
    keys, texts = [], []
    base = len(str(root)) + 1
    for dirpath, _dirs, names in os.walk(root / "song_data"):
        for name in names:
            if name.endswith(".json"):
                path = os.path.join(dirpath, name)
                with open(path, "rb") as handle:
                    texts.append(handle.read().decode("utf-8-sig"))
                keys.append(path[base:])
    return keys, texts


def run(root: Path, db: Path, songs_reader: str = "python", memory_limit: str | None = None) -> dict:
    timings: dict[str, float] = {}
    con = duckdb.connect(str(db))
    con.execute("SET integer_division = true")
    if memory_limit:
        con.execute(f"SET memory_limit = {quote_literal(memory_limit)}")
    dialect = DuckDBDialect()
    for table in ALL_TABLES:
        con.execute(dialect.create_table(table))

    start = time.perf_counter()
    con.execute("BEGIN")
    con.execute(_load_sql(STAGING_EVENTS, root, "log_data/**/*.json", _event_keys(root), "newline_delimited"))
    con.execute("COMMIT")
    timings["staging_events"] = time.perf_counter() - start

    start = time.perf_counter()
    song_keys = [c.name for c in STAGING_SONGS.columns if c.name != "source_file"]
    con.execute("BEGIN")
    if songs_reader == "read_json":  # DuckDB's JSON reader over the glob: slow for many small files
        con.execute(_load_sql(STAGING_SONGS, root, "song_data/**/*.json", song_keys, "auto"))
    elif songs_reader == "read_text":  # DuckDB reads every file whole, from_json types it
        con.execute(_from_json_sql(STAGING_SONGS, song_keys, "substr(filename, {n})".format(n=len(str(root)) + 2),
                                   f"read_text({quote_literal(str(root / 'song_data/**/*.json'))})", "content"))
    else:  # Python reads the files (fast for small files), DuckDB gets one list of texts
        keys, texts = _read_song_files(root)
        con.execute(_from_json_sql(STAGING_SONGS, song_keys, "k", "(SELECT unnest(?::VARCHAR[]) AS k, "
                                   "unnest(?::VARCHAR[]) AS content)", "content"), [keys, texts])
    con.execute("COMMIT")
    timings["staging_songs"] = time.perf_counter() - start

    for name in STAR_ORDER:
        start = time.perf_counter()
        con.execute("BEGIN")
        for statement in replace_statements(TABLES[name], transform_sql(name, dialect)):
            con.execute(statement)
        con.execute("COMMIT")
        timings[name] = time.perf_counter() - start

    counts = {
        t.name: con.execute(f"SELECT count(*) FROM {quote_ident(t.name)}").fetchone()[0]
        for t in ALL_TABLES
    }
    con.close()
    return {"seconds": timings, "rows": counts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="raw data root (song_data/, log_data/)")
    parser.add_argument("--db", required=True, type=Path, help="DuckDB file to create (must not exist)")
    parser.add_argument("--json", type=Path, help="write step timings and row counts here")
    parser.add_argument("--songs-reader", choices=["python", "read_text", "read_json"], default="python",
                        help="how the many small song files are read (default: python, the fastest measured)")
    parser.add_argument("--memory-limit", help="DuckDB memory_limit (default: DuckDB's, 80%% of RAM)")
    args = parser.parse_args(argv)
    if args.db.exists():
        print(f"floor.py: {args.db} exists; give a fresh path", file=sys.stderr)
        return 2
    result = run(args.data.resolve(), args.db, args.songs_reader, args.memory_limit)
    for step, seconds in result["seconds"].items():
        print(f"{step:>15}: {seconds:7.2f}s")
    print("rows:", ", ".join(f"{k}={v:,}" for k, v in result["rows"].items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
