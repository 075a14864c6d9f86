"""The floor: the same loads and transforms as the asset graph, as one plain DuckDB script.

No Dagster, no load manifest, no per-record rejection bookkeeping, no asset checks, no charts: DuckDB's
own ``read_json`` reads every raw file (typed by the staging columns) straight into the staging
tables, then each star table and each analytics table is built by the very SQL the assets use. It is
what the warehouse costs with zero orchestration; ``benchmarks/run.py`` times it next to the Dagster
runs.

The SQL is rendered from the project first (``--write-plan``, not timed); the timed process
(``--plan``) imports only DuckDB and the standard library, so its wall time carries no Dagster import.

    python benchmarks/floor.py --data <raw> --write-plan /tmp/plan.json
    python benchmarks/floor.py --data <raw> --plan /tmp/plan.json --db /tmp/floor.duckdb
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import duckdb

_DUCKDB_TYPES = {"integer": "INTEGER", "bigint": "BIGINT", "double": "DOUBLE"}


def _quote_literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _json_type(logical: str) -> str:
    return "VARCHAR" if logical.startswith("varchar(") else _DUCKDB_TYPES[logical]


def _event_keys(root: Path, parse_jsonpaths, default: list[str]) -> list[str]:
    """The JSON key of each staging_events column (log_json_path.json maps them by position)."""
    jsonpaths_file = root / "log_json_path.json"
    paths = parse_jsonpaths(jsonpaths_file.read_bytes()) if jsonpaths_file.exists() else default
    keys = []
    for path in paths:  # $['firstName'] -> firstName (the floor handles flat paths only)
        if not (path.startswith("$['") and path.endswith("']")):
            raise SystemExit(f"floor.py handles $['key'] JSONPaths only, not {path!r}")
        keys.append(path[3:-2])
    return keys


def write_plan(root: Path) -> dict:
    """Every statement the floor runs, rendered by the project's own code (imports the project)."""
    from sparkify_dagster.assets.analytics import ANALYSES, create_statements
    from sparkify_dagster.catalog import BOOKKEEPING_TABLES, STAGING_EVENTS, STAGING_SONGS, STAGING_TABLES, TABLES
    from sparkify_dagster.cli.sql import star_order
    from sparkify_dagster.source import DEFAULT_EVENT_JSONPATHS, parse_jsonpaths
    from sparkify_dagster.warehouse.dialect import DuckDBDialect, quote_ident, relation, replace_statements
    from sparkify_dagster.warehouse.transforms import render

    # The floor's own tables: staging, star and the load bookkeeping (no star_sources: it never updates).
    tables = [*STAGING_TABLES, *(TABLES[name] for name in star_order()), *BOOKKEEPING_TABLES]

    dialect = DuckDBDialect()

    def staging(table, keys):
        columns = [c for c in table.columns if c.name != "source_file"]
        return {
            "table": quote_ident(table.name),
            "targets": ", ".join(quote_ident(c.name) for c in columns),
            "keys": keys,
            "types": {k: _json_type(c.type) for k, c in zip(keys, columns)},
        }

    ddl = [dialect.create_table(t) for t in tables]
    for a in ANALYSES:
        ddl += [s for s in create_statements(a, dialect) if s not in ddl]
    steps = [(t.name, replace_statements(t, render(t, dialect))) for t in tables if t.sql_file]
    steps += [(a.name, replace_statements(a, render(a, dialect))) for a in ANALYSES]
    return {
        "ddl": ddl,
        "staging_events": staging(STAGING_EVENTS, _event_keys(root, parse_jsonpaths, list(DEFAULT_EVENT_JSONPATHS))),
        "staging_songs": staging(STAGING_SONGS, [c.name for c in STAGING_SONGS.columns if c.name != "source_file"]),
        "steps": steps,
        "counted": [quote_ident(t.name) for t in tables] + [relation(a) for a in ANALYSES],
    }


def _load_sql(spec: dict, root: Path, pattern: str, fmt: str) -> str:
    columns = "{" + ", ".join(f"{_quote_literal(k)}: '{t}'" for k, t in spec["types"].items()) + "}"
    select = ", ".join(f'"{k}"' for k in spec["keys"])
    prefix_len = len(str(root)) + 2  # key = path relative to the data root
    glob = _quote_literal(str(root / pattern))
    return (
        f"INSERT INTO {spec['table']} ({spec['targets']}, source_file) "
        f"SELECT {select}, substr(filename, {prefix_len}) "
        f"FROM read_json({glob}, format = '{fmt}', columns = {columns}, filename = true)"
    )


def _from_json_sql(spec: dict, key_expr: str, relation: str, text_col: str) -> str:
    """INSERT … SELECT from_json(text, typed structure): one JSON object per text, typed like read_json."""
    fields = ", ".join(f'j."{k}"' for k in spec["keys"])
    return (
        f"INSERT INTO {spec['table']} ({spec['targets']}, source_file) "
        f"SELECT {fields}, key FROM (SELECT {key_expr} AS key, "
        f"from_json({text_col}, {_quote_literal(json.dumps(spec['types']))}) AS j FROM {relation})"
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


def run(root: Path, db: Path, plan: dict, songs_reader: str = "python", memory_limit: str | None = None) -> dict:
    timings: dict[str, float] = {}
    con = duckdb.connect(str(db))
    con.execute("SET integer_division = true")
    if memory_limit:
        con.execute(f"SET memory_limit = {_quote_literal(memory_limit)}")
    for statement in plan["ddl"]:
        con.execute(statement)

    start = time.perf_counter()
    con.execute("BEGIN")
    con.execute(_load_sql(plan["staging_events"], root, "log_data/**/*.json", "newline_delimited"))
    con.execute("COMMIT")
    timings["staging_events"] = time.perf_counter() - start

    start = time.perf_counter()
    songs = plan["staging_songs"]
    con.execute("BEGIN")
    if songs_reader == "read_json":  # DuckDB's JSON reader over the glob: slow for many small files
        con.execute(_load_sql(songs, root, "song_data/**/*.json", "auto"))
    elif songs_reader == "read_text":  # DuckDB reads every file whole, from_json types it
        con.execute(_from_json_sql(songs, "substr(filename, {n})".format(n=len(str(root)) + 2),
                                   f"read_text({_quote_literal(str(root / 'song_data/**/*.json'))})", "content"))
    else:  # Python reads the files (fast for small files), DuckDB gets one list of texts
        keys, texts = _read_song_files(root)
        con.execute(_from_json_sql(songs, "k", "(SELECT unnest(?::VARCHAR[]) AS k, "
                                   "unnest(?::VARCHAR[]) AS content)", "content"), [keys, texts])
    con.execute("COMMIT")
    timings["staging_songs"] = time.perf_counter() - start

    for name, statements in plan["steps"]:
        start = time.perf_counter()
        con.execute("BEGIN")
        for statement in statements:
            con.execute(statement)
        con.execute("COMMIT")
        timings[name] = time.perf_counter() - start

    counts = {name.replace('"', ""): con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
              for name in plan["counted"]}
    start = time.perf_counter()
    con.close()  # a DuckDB file is checkpointed when its last connection closes
    timings["close"] = time.perf_counter() - start
    return {"seconds": timings, "rows": counts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="raw data root (song_data/, log_data/)")
    parser.add_argument("--db", type=Path, help="DuckDB file to create (must not exist)")
    parser.add_argument("--plan", type=Path, help="statements written by --write-plan (default: render them now)")
    parser.add_argument("--write-plan", type=Path, help="render the statements into this file and stop")
    parser.add_argument("--json", type=Path, help="write step timings and row counts here")
    parser.add_argument("--songs-reader", choices=["python", "read_text", "read_json"], default="python",
                        help="how the many small song files are read (default: python, the fastest measured)")
    parser.add_argument("--memory-limit", help="DuckDB memory_limit (default: DuckDB's, 80%% of RAM)")
    args = parser.parse_args(argv)
    root = args.data.resolve()
    if args.write_plan:
        args.write_plan.write_text(json.dumps(write_plan(root), indent=1))
        return 0
    if args.db is None:
        parser.error("--db is required unless --write-plan")
    if args.db.exists():
        print(f"floor.py: {args.db} exists; give a fresh path", file=sys.stderr)
        return 2
    plan = json.loads(args.plan.read_text()) if args.plan else write_plan(root)
    result = run(root, args.db, plan, args.songs_reader, args.memory_limit)
    for step, seconds in result["seconds"].items():
        print(f"{step:>17}: {seconds:7.2f}s")
    print("rows:", ", ".join(f"{k}={v:,}" for k, v in result["rows"].items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
