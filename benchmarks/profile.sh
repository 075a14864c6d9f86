#!/usr/bin/env bash
# Profile one full load with py-spy (sampling, native frames included): the hot spots of a size.
#
#   pip install py-spy        # from PyPI; not a project dependency
#   benchmarks/profile.sh /tmp/sparkify-bench/medium/raw [out-dir]
#
# Writes <out-dir>/full.txt (collapsed stacks, `py-spy record --format raw`), full.speedscope.json
# (open it in https://www.speedscope.app) and prints the hottest frames (benchmarks/profile_summary.py).
set -euo pipefail
data=${1:?usage: profile.sh DATA_DIR [OUT_DIR]}
out=${2:-/tmp/sparkify-profile}
here=$(cd "$(dirname "$0")" && pwd)
bin=$(dirname "$(command -v python)")
mkdir -p "$out/dagster_home"
printf 'telemetry:\n  enabled: false\n' > "$out/dagster_home/dagster.yaml"
rm -rf "$out/warehouse.duckdb" "$out/warehouse.duckdb.wal" "$out/warehouse.duckdb.tmp"
export SPARKIFY_TARGET=duckdb SPARKIFY_DATA_URI="$data" SPARKIFY_DUCKDB_PATH="$out/warehouse.duckdb" \
       DAGSTER_HOME="$out/dagster_home"
materialize=("$bin/python" "$bin/dagster" asset materialize -m sparkify_dagster --select '*')
py-spy record --native --rate 100 --format raw -o "$out/full.txt" -- "${materialize[@]}" > "$out/run.log" 2>&1
rm -rf "$out/warehouse.duckdb" "$out/warehouse.duckdb.wal"
py-spy record --rate 100 --format speedscope -o "$out/full.speedscope.json" -- "${materialize[@]}" \
  > /dev/null 2>&1
rm -rf "$out/warehouse.duckdb" "$out/warehouse.duckdb.wal" "$out/warehouse.duckdb.tmp"
python "$here/profile_summary.py" "$out/full.txt" --top 30 --match sparkify_dagster
python "$here/profile_summary.py" "$out/full.txt" --top 15 | sed -n '/--- self ---/,$p'
