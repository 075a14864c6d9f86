"""What the typing of the event logs costs, piece by piece: the direct path's INSERT (every log file
typed straight from DuckDB's JSON reader under the COPY rules) against the same INSERT with parts of
its work taken away, and against DuckDB's typed reader.

    python benchmarks/typing_cost.py /tmp/sparkify-bench/large/raw [--repeat 2] [--files 30]

Each variant inserts every event of the first ``--files`` log files into a fresh staging_events table
in a fresh DuckDB file, under the pipeline's memory limit, and is timed (wall and CPU, fastest of
``--repeat``, the variants interleaved). The variants:

- floor: ``benchmarks/floor.py``'s own statement (``read_json`` with the columns declared by type);
- typed reader, no rules: ``read_ndjson`` with every column declared VARCHAR, cast to the column types;
- objects reader, no rules: ``read_ndjson_objects`` and ``json_extract_string`` of the paths, cast;
- values only: the typing SQL's values (its ``json_type`` and conversions), no errors computed;
- the typing SQL: ``json_loader.typing_sql`` over ``json_loader.object_records``, the rows without an
  error (what ``duckdb_load.insert_load`` ran for the direct files before the ninth pass, and still
  runs for a table whose paths are not all top-level keys);
- the typing SQL without the strict-JSON test (what that test costs; not a correct loader);
- typed reader, every value by the string rules: ``read_ndjson`` with VARCHAR columns, the COPY rules
  of a JSON string applied to every value, a text value that a double could have become flagged (the
  seventh pass's proposal);
- the typed reader as the loader runs it (``json_loader.reader_typed_sql``, ninth pass);
- and the direct path's count (``duckdb_load._count_objects``' statement), batch by batch, without and
  with the strict-JSON count that the typed reader needs.

Not the project's code: the figures behind the ninth pass in benchmarks/README.md. Exits 1 if the
typed readers' rows differ from the typing SQL's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import floor  # noqa: E402
from sparkify_dagster.catalog import STAGING_EVENTS  # noqa: E402
from sparkify_dagster.source import parse_jsonpaths  # noqa: E402
from sparkify_dagster.warehouse import json_loader  # noqa: E402
from sparkify_dagster.warehouse.dialect import DuckDBDialect, quote_ident, quote_literal  # noqa: E402
from sparkify_dagster.warehouse.duckdb import DEFAULT_MEMORY_LIMIT  # noqa: E402

COLUMNS = tuple(STAGING_EVENTS.copied_columns)
# How DuckDB writes a double into a VARCHAR column when json_extract_string's text differs from it
# (always with an exponent sign: 1e+21 against 1e21; benchmarks/README.md, ninth pass).
DOUBLE_WITH_EXPONENT = r"-?[0-9]+([.][0-9]+)?e[+-][0-9]+"


def variants(root: Path, paths: list[str]) -> dict[str, str]:
    """Each variant's SELECT of (the staging columns..., source_file), by name."""
    plan = floor.write_plan(root)
    spec = plan["staging_events"]
    keys = spec["keys"]
    file_list = "[" + ", ".join(quote_literal(p) for p in paths) + "]"
    duck_paths = [json_loader.jsonpath_to_duckdb(p) for p in
                  parse_jsonpaths((root / "log_json_path.json").read_bytes())]
    path_list = "[" + ", ".join(quote_literal(p) for p in duck_paths) + "]"
    sql_types = {"integer": "INTEGER", "bigint": "BIGINT", "double": "DOUBLE"}

    def cast(expr: str, col) -> str:
        return f"TRY_CAST({expr} AS {sql_types[col.type]})" if col.max_bytes is None else expr

    names = ", ".join(quote_ident(c.name) for c in COLUMNS)
    source_file = f"{file_list}[file_idx + 1] AS source_file"
    varchar_reader = (f"(SELECT list_position({file_list}, filename) - 1 AS file_idx, "
                      + ", ".join(f'"{k}" AS v{i}' for i, k in enumerate(keys, 1))
                      + f" FROM read_ndjson({file_list}, columns = "
                      + "{" + ", ".join(f"{quote_literal(k)}: 'VARCHAR'" for k in keys) + "}"
                      + ", filename = true, ignore_errors = true))")
    objects = json_loader.object_records(list(range(len(paths))), paths)
    extracted = f"(SELECT file_idx, json_extract_string(rec, {path_list}) AS s FROM {objects})"

    number_cols = [i for i, c in enumerate(COLUMNS) if c.max_bytes is None]
    typed_paths = "[" + ", ".join(["'$'"] + [quote_literal(duck_paths[i]) for i in number_cols]) + "]"
    type_index = {i: k for k, i in enumerate(number_cols, start=1)}
    pairs = [json_loader._value_and_error(c, i + 1, type_index.get(i)) for i, c in enumerate(COLUMNS)]
    loader = json_loader.typing_sql(STAGING_EVENTS, COLUMNS, duck_paths, source=objects, arrays=True)
    lenient = f"WHEN {json_loader.lenient_json_sql('rec')} AND NOT {json_loader.STRICT_FUNCTION}(rec) THEN NULL"
    assert lenient in loader

    # The candidate: every value as DuckDB's reader writes it into VARCHAR, typed by the rules for a
    # JSON string (which give the same rows for a number), a text value that may be a double's
    # rewritten text flagged like a reject (the file would be framed).
    def as_text(expr: str, i: int) -> str:
        return expr.replace(f"s[{i}]", f"v{i}").replace("t[1]", "'VARCHAR'")

    candidate_values, candidate_errors = [], []
    for i, c in enumerate(COLUMNS, 1):
        value, error = json_loader._value_and_error(c, i, None if c.max_bytes else 1)
        if c.max_bytes is not None:
            error = (f"CASE WHEN strlen(v{i}) > {c.max_bytes} THEN 'too long' WHEN strlen(v{i}) <= 25 "
                     f"AND contains(v{i}, 'e') AND regexp_full_match(v{i}, '{DOUBLE_WITH_EXPONENT}') "
                     "THEN 'maybe a double' END")
        candidate_values.append(f"{as_text(value, i)} AS {quote_ident(c.name)}")
        candidate_errors.append(as_text(error, i))

    return {
        "floor (read_json, columns typed)":
            f"SELECT {', '.join(chr(34) + k + chr(34) for k in keys)}, substr(filename, {len(str(root)) + 2}) "
            f"FROM read_json({file_list}, format = 'newline_delimited', filename = true, columns = "
            + "{" + ", ".join(f"{quote_literal(k)}: '{t}'" for k, t in spec["types"].items()) + "})",
        "typed reader, VARCHAR columns, no rules":
            f"SELECT {', '.join(cast(f'v{i}', c) for i, c in enumerate(COLUMNS, 1))}, {source_file} FROM {varchar_reader}",
        "objects reader + json_extract_string, no rules":
            f"SELECT {', '.join(cast(f's[{i}]', c) for i, c in enumerate(COLUMNS, 1))}, {source_file} FROM {extracted}",
        "values only (json_type + conversions)":
            f"SELECT {', '.join(v for v, _ in pairs)}, {source_file} FROM (SELECT file_idx, types[2:] AS t, "
            f"json_extract_string(rec, {path_list}) AS s FROM (SELECT file_idx, rec, "
            f"json_type(rec, {typed_paths}) AS types FROM {objects}))",
        "the typing SQL (typing_sql, rows without error)":
            f"SELECT {names}, {source_file} FROM ({loader}) WHERE err_reason IS NULL",
        "the typing SQL without the strict-JSON test":
            f"SELECT {names}, {source_file} FROM ({loader.replace(lenient, 'WHEN false THEN NULL')}) "
            "WHERE err_reason IS NULL",
        "typed reader, every value by the string rules":
            f"SELECT {names}, {source_file} FROM (SELECT file_idx, {', '.join(candidate_values)}, "
            f"coalesce({', '.join(candidate_errors)}) AS err_reason FROM {varchar_reader}) WHERE err_reason IS NULL",
        "typed reader as the loader runs it (reader_typed_sql)":
            f"SELECT {names}, {source_file} FROM "
            f"{json_loader.reader_typed_sql(COLUMNS, json_loader.reader_keys(duck_paths), range(len(paths)), paths)} "
            "WHERE err_reason IS NULL",
    }


def count_statements(paths: list[str]) -> dict[str, str]:
    """The direct path's count, without and with the strict-JSON count (``duckdb_load._count_objects``)."""
    objects = json_loader.object_records(list(range(len(paths))), paths)
    lenient = f"sum({json_loader.lenient_count_sql('rec')})"
    return {
        "count: records and bytes per file":
            f"SELECT file_idx, count(*), sum(strlen(rec)), 0 FROM {objects} GROUP BY file_idx",
        "count: and the records the strict-JSON test refuses":
            f"SELECT file_idx, count(*), sum(strlen(rec)), {lenient} FROM {objects} GROUP BY file_idx",
    }


def run(db: Path, select: str) -> tuple[float, float, list]:
    for suffix in ("", ".wal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    con = duckdb.connect(str(db))
    try:
        con.execute(f"SET memory_limit = {quote_literal(DEFAULT_MEMORY_LIMIT)}")
        json_loader.register_strict_json(con)
        con.execute(DuckDBDialect().create_table(STAGING_EVENTS))
        targets = ", ".join(quote_ident(c.name) for c in STAGING_EVENTS.columns)
        wall, cpu = time.perf_counter(), os.times()
        con.execute(f"INSERT INTO staging_events ({targets}) {select}")
        con.execute("CHECKPOINT")
        after = os.times()
        digest = con.execute("SELECT count(*), sum(hash(COLUMNS(* EXCLUDE (source_file)))) FROM staging_events").fetchone()
        return (time.perf_counter() - wall, after.user + after.system - cpu.user - cpu.system, list(digest))
    finally:
        con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a raw-data folder (as SPARKIFY_DATA_URI)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--files", type=int, default=30, help="the first N log files (sorted by key)")
    parser.add_argument("--db", type=Path, default=Path("/tmp/sparkify-typing-cost.duckdb"))
    args = parser.parse_args()
    root = args.data.resolve()
    paths = sorted(str(p) for p in (root / "log_data").rglob("*.json"))[: args.files]
    chosen = variants(root, paths)
    best: dict[str, tuple[float, float, list]] = {}
    for rep in range(args.repeat):
        for name, select in chosen.items():
            wall, cpu, digest = run(args.db, select)
            print(f"[{rep + 1}/{args.repeat}] {name}: {wall:.2f} s wall, {cpu:.2f} s CPU, {digest[0]:,} rows",
                  file=sys.stderr, flush=True)
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu, digest)
        for name in count_statements(paths):
            # Batch by batch, as the load counts them (json_loader.BATCH_BYTES holds two of these files).
            wall, cpu = time.perf_counter(), os.times()
            con = duckdb.connect()
            json_loader.register_strict_json(con)
            for start in range(0, len(paths), 2):
                con.execute(count_statements(paths[start:start + 2])[name]).fetchall()
            con.close()
            after = os.times()
            seconds = time.perf_counter() - wall
            print(f"[{rep + 1}/{args.repeat}] {name}: {seconds:.2f} s wall", file=sys.stderr, flush=True)
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, after.user + after.system - cpu.user - cpu.system, [0])
    records = best["the typing SQL (typing_sql, rows without error)"][2][0]
    print(f"\n{len(paths)} log files, {records:,} events, DuckDB {duckdb.__version__}, "
          f"memory_limit {DEFAULT_MEMORY_LIMIT}, fastest of {args.repeat}\n")
    print("| variant | wall s | CPU s |\n|---|---:|---:|")
    for name, (wall, cpu, _) in best.items():
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")
    reference = best["the typing SQL (typing_sql, rows without error)"][2]
    same = True
    for name in ("typed reader, every value by the string rules", "typed reader as the loader runs it (reader_typed_sql)"):
        equal = best[name][2] == reference
        same &= equal
        print(f"\n{name}: rows {'equal' if equal else 'DIFFER FROM'} the typing SQL's (count and per-column hash sums)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
