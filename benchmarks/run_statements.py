"""Time every warehouse statement of one run of the whole graph, in-process (no CLI), slowest first.

    python benchmarks/run_statements.py /tmp/sparkify-bench/medium/raw WAREHOUSE.duckdb [--top 30]

Runs a copy of WAREHOUSE.duckdb (a warehouse a full load left: the run is then a nothing-new run, or a
one-day run if a day was added to the data since), so the file itself is not changed. Prints the run's
wall time, the statements' total and each distinct statement's count and seconds; benchmarks/README.md
quotes it (seventh pass).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a raw-data folder (as SPARKIFY_DATA_URI)")
    parser.add_argument("warehouse", type=Path, help="a DuckDB warehouse file; a copy is run")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sparkify-run-statements-"))
    copy = work / "wh.duckdb"
    shutil.copy(args.warehouse, copy)
    os.environ.update(SPARKIFY_DATA_URI=str(args.data), SPARKIFY_DUCKDB_PATH=str(copy))

    from sparkify_dagster.definitions import build_defs
    from statement_timer import materialize_whole_graph, time_statements

    seconds = time_statements(width=140)
    succeeded, wall = materialize_whole_graph(build_defs("duckdb"))
    shutil.rmtree(work, ignore_errors=True)
    total = sum(s for _, s in seconds.values())
    print(f"run {'succeeded' if succeeded else 'FAILED'} in {wall:.2f} s; "
          f"{sum(n for n, _ in seconds.values())} statements, {total:.2f} s")
    for sql, (n, s) in sorted(seconds.items(), key=lambda kv: -kv[1][1])[:args.top]:
        print(f"{s:7.3f} s {n:4d}x  {sql}")
    return 0 if succeeded else 1


if __name__ == "__main__":
    raise SystemExit(main())
