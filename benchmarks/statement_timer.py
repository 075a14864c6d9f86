"""Count and time every statement the embedded warehouse's sessions execute, and run the whole graph
in-process (for the profiling scripts)."""

from __future__ import annotations

import collections
import time


def time_statements(width: int) -> dict[str, list]:
    """Wrap ``_DuckDBSession.execute`` from now on: each statement, whitespace collapsed and cut to
    ``width`` characters, maps to [times executed, seconds] in the returned dict."""
    from sparkify_dagster.warehouse import duckdb as duckdb_warehouse

    seconds: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])
    execute = duckdb_warehouse._DuckDBSession.execute

    def timed_execute(self, sql, params=None):
        start = time.perf_counter()
        try:
            return execute(self, sql, params)
        finally:
            entry = seconds[" ".join(sql.split())[:width]]
            entry[0] += 1
            entry[1] += time.perf_counter() - start

    duckdb_warehouse._DuckDBSession.execute = timed_execute
    return seconds


def materialize_whole_graph(defs) -> tuple[bool, float]:
    """Materialize every asset of ``defs`` (the embedded definitions, ``build_defs("duckdb")``) in this
    process, on an ephemeral instance (the warehouse and data as SPARKIFY_DUCKDB_PATH and
    SPARKIFY_DATA_URI say): (succeeded, wall seconds)."""
    import dagster as dg

    start = time.perf_counter()
    result = dg.materialize(list(defs.assets), resources=defs.resources, selection="*",
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    return result.success, time.perf_counter() - start
