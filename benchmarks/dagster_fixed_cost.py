"""What `dagster asset materialize` costs before any data work: the same CLI, instance and executor as
the pipeline, on graphs whose assets do nothing.

    python benchmarks/dagster_fixed_cost.py [--repeat 5]

Two graphs, each timed under /usr/bin/time with a persistent DAGSTER_HOME (SQLite run and event
storage, as `dagster dev` and the benchmarks use):

- ``trivial``: three no-op assets, one step each.
- ``same shape``: the pipeline's shape with no-op bodies: 8 steps (one multi-asset for both staging
  tables, five star tables, one multi-asset for the seven analytics tables), 14 assets, the same
  checks (read from the project), no log lines (those are the project's own cost); no DuckDB, no data.
  Its time is what the pipeline pays for Dagster whatever the data size. ``benchmarks/run.py``
  measures it in the same invocation as the presets.

It prints a table (fastest and median of ``--repeat`` runs); benchmarks/README.md quotes it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TIME = "/usr/bin/time"

TRIVIAL = '''
import dagster as dg

@dg.asset
def a() -> None: ...

@dg.asset(deps=[a])
def b() -> None: ...

@dg.asset(deps=[b])
def c() -> None: ...

defs = dg.Definitions(assets=[a, b, c], executor=dg.in_process_executor)
'''

# As the pipeline: 2 staging tables, 5 star tables, 7 analytics tables, each with the project's checks.
SAME_SHAPE = '''
import dagster as dg

CHECKS = {checks!r}
ANALYTICS = {analytics!r}
STAR_DEPS = {star_deps!r}


def specs(table):
    return [dg.AssetCheckSpec(f"check_{i}", asset=table) for i in range(CHECKS.get(table, 0))]


def results(context, tables):
    for table in tables:
        yield dg.MaterializeResult(asset_key=table, metadata={"dagster/row_count": 0})
        for i in range(CHECKS.get(table, 0)):
            yield dg.AssetCheckResult(asset_key=table, check_name=f"check_{i}", passed=True)


@dg.multi_asset(specs=[dg.AssetSpec("staging_events"), dg.AssetSpec("staging_songs")],
                check_specs=specs("staging_events") + specs("staging_songs"), can_subset=True)
def staging(context: dg.AssetExecutionContext):
    yield from results(context, ["staging_events", "staging_songs"])


def star(table):
    @dg.multi_asset(name=table, specs=[dg.AssetSpec(table, deps=STAR_DEPS[table])], check_specs=specs(table),
                    can_subset=True)
    def _star(context: dg.AssetExecutionContext):
        yield from results(context, [table])
    return _star


@dg.multi_asset(specs=[dg.AssetSpec(a, deps=["songplays", "time", "users", "songs", "artists"]) for a in ANALYTICS],
                check_specs=[spec for a in ANALYTICS for spec in specs(a)], can_subset=True)
def analytics(context: dg.AssetExecutionContext):
    yield from results(context, ANALYTICS)


defs = dg.Definitions(assets=[staging, *[star(t) for t in STAR_DEPS], analytics], executor=dg.in_process_executor)
'''


def same_shape() -> str:
    """SAME_SHAPE with the pipeline's tables, dependencies and check counts, read from the project."""
    from sparkify_dagster.catalog import ANALYTICS_TABLES, CATALOG, STAR_TABLES
    from sparkify_dagster.checks import checks_of

    graph = SAME_SHAPE.replace("{", "{{").replace("}", "}}")
    for name in ("checks", "analytics", "star_deps"):
        graph = graph.replace(f"{{{{{name}!r}}}}", f"{{{name}!r}}")
    return graph.format(
        checks={t.name: len(checks_of(t.name)) for t in CATALOG if checks_of(t.name)},
        analytics=[t.name for t in ANALYTICS_TABLES],
        star_deps={t.name: list(t.built_from) for t in STAR_TABLES},
    )


def timed(module: Path, home: Path) -> float:
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    cmd = [TIME, "-f", "%e", sys.executable, "-m", "dagster", "asset", "materialize", "-f", str(module),
           "--select", "*"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{module.name} failed:\n{proc.stderr[-3000:]}")
    return float(proc.stderr.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not Path(TIME).exists():
        raise SystemExit(f"{TIME} is missing: apt-get install -y time")
    from sparkify_dagster.checks import CHECKS

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        home = base / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        for name, source in (("trivial (3 assets, 3 steps)", TRIVIAL),
                             (f"same shape (14 assets, {len(CHECKS)} checks, 8 steps)", same_shape())):
            module = base / f"graph_{len(rows)}.py"
            module.write_text(source)
            timed(module, home)  # the first run creates the instance's databases: not counted
            seconds = [timed(module, home) for _ in range(args.repeat)]
            rows.append((name, min(seconds), statistics.median(seconds)))
    print("| graph (no-op assets) | fastest s | median s |\n|---|---:|---:|")
    for name, fastest, median in rows:
        print(f"| {name} | {fastest:.2f} | {median:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
