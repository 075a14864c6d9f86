"""Time Python's garbage collections during one run of the whole graph, by generation and by where they ran.

    python benchmarks/gc_cost.py /tmp/sparkify-bench/medium/raw [--top 15]

Runs ``dagster asset materialize -m sparkify_dagster --select '*'`` in this process into a fresh DuckDB
file (a full load; an ephemeral DAGSTER_HOME), with a ``gc.callbacks`` hook that times each collection
and names the innermost project frame that triggered it (else the innermost frame). benchmarks/README.md
quotes it (tenth pass: the staging loads' full collections before and after the heap was frozen).
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_started: dict[int, float] = {}
_seen: dict[tuple[int, str], list] = collections.defaultdict(lambda: [0, 0.0])


def _where() -> str:
    frames = traceback.extract_stack(sys._getframe(2), limit=60)
    ours = [f for f in frames if "sparkify_dagster" in f.filename]
    f = ours[-1] if ours else (frames[-1] if frames else None)
    return f"{Path(f.filename).name}:{f.lineno} {f.name}" if f else "?"


def _on_collection(phase: str, info: dict) -> None:
    thread = threading.get_ident()
    if phase == "start":
        _started[thread] = time.perf_counter()
        return
    began = _started.pop(thread, None)
    if began is not None:
        entry = _seen[(info["generation"], _where())]
        entry[0] += 1
        entry[1] += time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a raw-data folder (as SPARKIFY_DATA_URI)")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sparkify-gc-cost-"))
    os.environ.update(SPARKIFY_DATA_URI=str(args.data), SPARKIFY_DUCKDB_PATH=str(work / "wh.duckdb"),
                      SPARKIFY_TARGET="duckdb")

    from sparkify_dagster.definitions import build_defs
    from statement_timer import materialize_whole_graph

    defs = build_defs("duckdb")
    gc.callbacks.append(_on_collection)
    try:
        succeeded, wall = materialize_whole_graph(defs)
    finally:
        gc.callbacks.remove(_on_collection)
    shutil.rmtree(work, ignore_errors=True)
    seen = dict(_seen)
    print(f"run {'succeeded' if succeeded else 'FAILED'} in {wall:.2f} s; "
          f"{sum(n for n, _ in seen.values())} collections, {sum(s for _, s in seen.values()):.3f} s")
    for gen in (0, 1, 2):
        mine = [v for (g, _), v in seen.items() if g == gen]
        print(f"  generation {gen}: {sum(n for n, _ in mine):5d} collections, {sum(s for _, s in mine):.3f} s")
    for (gen, where), (n, s) in sorted(seen.items(), key=lambda kv: -kv[1][1])[:args.top]:
        print(f"{s:7.3f} s {n:5d}x gen{gen}  {where}")
    return 0 if succeeded else 1


if __name__ == "__main__":
    raise SystemExit(main())
