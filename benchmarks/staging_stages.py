"""Time the embedded staging load of one table stage by stage, without Dagster (the profile of a load).

    python benchmarks/staging_stages.py /tmp/sparkify-bench/large/raw staging_events [--db /tmp/stages.duckdb]
        [--framed-only | --typing-sql]

Loads every raw file of the table into a fresh DuckDB file through ``DuckDBWarehouse.load_staging``
(the very code a run uses) and prints the seconds spent in each stage of ``warehouse/duckdb_load.py``
(counting the files read straight from DuckDB's JSON reader, framing and typing the others into
Parquet parts, the insert, which types the direct files) and in the statements of the load's own session,
slowest first. benchmarks/README.md quotes it.
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sparkify_dagster.catalog import TABLES  # noqa: E402
from sparkify_dagster.source import LocalFolderSource  # noqa: E402
from sparkify_dagster.warehouse import duckdb as duckdb_warehouse  # noqa: E402
from sparkify_dagster.warehouse import duckdb_load  # noqa: E402
from statement_timer import time_statements  # noqa: E402

# Per batch, not per file: a timer around each of 300k small-file reads would cost more than they do.
STAGES = ("direct_files", "frame_batch", "_type_to_parquet", "reframe_as_stream", "insert_load", "delete_stale", "read_report")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a raw-data folder (as SPARKIFY_DATA_URI)")
    parser.add_argument("table", choices=["staging_events", "staging_songs"])
    parser.add_argument("--db", type=Path, default=Path("/tmp/sparkify-staging-stages.duckdb"))
    parser.add_argument("--framed-only", action="store_true",
                        help="frame every file (READ_OBJECTS off): the load before the JSON reader's path")
    parser.add_argument("--typing-sql", action="store_true",
                        help="type the direct files with the typing SQL (TYPED_READER off): the load before the "
                             "typed reader (ninth pass)")
    args = parser.parse_args()
    duckdb_warehouse.READ_OBJECTS = not args.framed_only
    duckdb_warehouse.TYPED_READER = not args.typing_sql

    stage_seconds: dict[str, float] = collections.defaultdict(float)

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                stage_seconds[name] += time.perf_counter() - start
        return wrapper

    for name in STAGES:
        setattr(duckdb_load, name, timed(name, getattr(duckdb_load, name)))
    statements = time_statements(width=80)

    class Log:
        def info(self, message: str) -> None:
            print(f"{time.perf_counter() - started:6.1f}s {message}", flush=True)

        warning = info

    for stale in args.db.parent.glob(args.db.name + "*"):
        stale.unlink()
    warehouse = duckdb_warehouse.DuckDBWarehouse(path=str(args.db))
    source = LocalFolderSource(root=str(args.data))
    table = TABLES[args.table]
    started = time.perf_counter()
    warehouse.ensure_tables()
    files = source.list_files(table.raw.prefix)
    stage_seconds["list"] = time.perf_counter() - started
    report = warehouse.load_staging(table, source, files, "stages", Log(),
                                    jsonpaths=source.event_jsonpaths() if table.raw.jsonpaths else None)
    total = time.perf_counter() - started
    print(f"\n{args.table}: {report.records_staged:,} rows staged in {total:.1f}s")
    print("stage seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in stage_seconds.items()))
    print("slowest statements of the load's session:")
    for sql, (_count, seconds) in sorted(statements.items(), key=lambda kv: -kv[1][1])[:6]:
        print(f"  {seconds:6.2f}  {sql}")
    for stale in args.db.parent.glob(args.db.name + "*"):
        stale.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
