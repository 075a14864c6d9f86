"""Benchmark harness (not pytest): time the embedded warehouse at udacity / medium / large sizes.

For each preset it generates the data with ``sparkify-generate`` (kept between invocations unless
``--regenerate``), then times, each under ``/usr/bin/time -v`` (wall clock, CPU time and peak RSS of the
whole process) and each right after reading every raw file once (page cache warm):

  full        ``dagster asset materialize -m sparkify_dagster --select '*'`` into a fresh DuckDB file
  nothing new the same command on a copy of the 30-day warehouse: no raw file changed (fixed cost:
              Dagster, listing, checks, analytics)
  one day     a 31st daily log file (a copy of the last day, shifted by one day, with new sessionIds)
              is added and the command runs on another copy: the incremental load into the 30-day warehouse
  floor       ``benchmarks/floor.py``: the same load and star SQL as one plain DuckDB script
  Dagster     ``benchmarks/dagster_fixed_cost.py``'s graph of this pipeline's shape with no-op assets:
              what the same command costs before any data work (``--fixed-repeat`` runs at the start of
              the invocation, and one more right before each full load of each preset; a preset's *F* is
              the fastest of those), so the targets that include Dagster's cost are measured side by side

``--repeat N`` runs the sequence N times and reports the fastest of each (the machine may be shared);
``--inc-repeat M`` runs the nothing-new / one-day pair M times per full load, each from the same copy,
and reports the ratio per pair too. Every measurement is kept in ``results.json``. Results go to
``benchmarks/results.md``.

    python benchmarks/run.py --presets udacity medium --repeat 3 --inc-repeat 3 --no-naive-floor
    python benchmarks/run.py --presets large --repeat 1 --inc-repeat 2 --no-naive-floor
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from sparkify_dagster.warehouse.duckdb import DEFAULT_MEMORY_LIMIT  # noqa: E402
import dagster_fixed_cost  # noqa: E402  (benchmarks/, beside this file)
REPO = HERE.parent
BIN = Path(sys.executable).parent
TIME = "/usr/bin/time"
MATERIALIZE = [str(BIN / "dagster"), "asset", "materialize", "-m", "sparkify_dagster", "--select", "*"]
STAGING = ("staging", "staging_events", "staging_songs")  # the pipeline loads both in one step "staging"
STAR = ("songplays", "users", "songs", "artists", "time")
ANALYTICS_STEP = "analytics"
ANALYTICS_TABLES = ("top_songs", "top_artists", "plays_by_hour", "plays_by_weekday", "plays_by_level",
                    "most_active_users", "plays_by_platform")  # one step builds the analytics tables (and draws their charts)
DAY_MS = 86_400_000
SESSION_SHIFT = 100_000_000  # new sessionIds for the added day: far above any generated one

_TS = re.compile(rb'"ts":(\d+)')
_SESSION = re.compile(rb'"sessionId":(\d+)')
_STEP_DONE = re.compile(r'Finished execution of step "([a-z_]+)" in ((?:[0-9.]+(?:ms|s|m))+)')
_DURATION = re.compile(r"([0-9.]+)(ms|s|m)")
_MATERIALIZED = re.compile(r" - ([a-z_]+) - ASSET_MATERIALIZATION - ")


# ------------------------------------------------------------------------------------------ helpers
def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def timed(cmd: list[str], env: dict, out: Path, warm: Path | None = None) -> dict:
    """Run ``cmd`` under /usr/bin/time -v (after reading ``warm`` once, so the page cache holds the raw
    files): wall seconds, CPU seconds (user + system), peak RSS (MiB), the step times in its log."""
    if warm is not None:
        warm_cache(warm)
    load_before = os.getloadavg()[0]
    with out.open("w") as handle:
        proc = subprocess.run([TIME, "-v", *cmd], env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    text = out.read_text(errors="replace")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    cpu = sum(float(v) for v in re.findall(r"(?:User|System) time \(seconds\): ([0-9.]+)", text))
    if proc.returncode != 0 or not wall or not rss:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {out}")
    parts = [float(p) for p in wall.group(1).split(":")]
    seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    steps, assets = parse_steps(text)
    measured = {"seconds": seconds, "cpu_seconds": round(cpu, 2), "rss_mib": int(rss.group(1)) / 1024,
                "log": str(out), "steps": steps, "assets": assets, "load_before": round(load_before, 2)}
    if "DAGSTER_HOME" in env and cmd == MATERIALIZE:
        events = run_events(Path(env["DAGSTER_HOME"]))
        # A step whose "Finished execution" line is missing from the output (seen once at large) is
        # timed from the instance's events instead.
        for step, seconds in events.pop("steps").items():
            measured["steps"].setdefault(step, seconds)
        measured["events"] = events
    return measured


def run_events(home: Path) -> dict[str, int]:
    """The newest run's events in the instance's SQLite event log: all of them, and its log lines."""
    import sqlite3

    runs = [p for p in (home / "history" / "runs").glob("*.db") if p.name != "index.db"]
    newest = max(runs, key=lambda p: p.stat().st_mtime)
    con = sqlite3.connect(newest)
    try:
        total, lines = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE dagster_event_type IS NULL) FROM event_logs").fetchone()
        marks = con.execute(
            "SELECT step_key, dagster_event_type, timestamp FROM event_logs "
            "WHERE dagster_event_type IN ('STEP_START', 'STEP_SUCCESS')").fetchall()
    finally:
        con.close()
    started = {step: dt.datetime.fromisoformat(ts) for step, kind, ts in marks if kind == "STEP_START"}
    steps = {step: round((dt.datetime.fromisoformat(ts) - started[step]).total_seconds(), 3)
             for step, kind, ts in marks if kind == "STEP_SUCCESS" and step in started}
    return {"total": total, "log_lines": lines, "steps": steps}


def parse_steps(text: str) -> tuple[dict[str, float], list[str]]:
    """Each step's duration (Dagster's own timer) and the steps that materialized an asset (not checks)."""
    steps: dict[str, float] = {}
    for step, *parts in _STEP_DONE.findall(text):
        steps[step] = sum(float(v) * {"ms": 0.001, "s": 1, "m": 60}[u] for v, u in _DURATION.findall(parts[0]))
    assets = sorted(set(_MATERIALIZED.findall(text)))
    return steps, assets


def table_digests(db: Path) -> dict[str, str]:
    """Each staging, star and analytics table's row count and a digest of its rows (the sum of every
    row's hash: independent of row order, sensitive to every value and to repeated rows)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [f'"{t}"' for t in ("staging_events", "staging_songs", *STAR)]
        tables += [f"analytics.{a}" for a in ANALYTICS_TABLES]
        out = {}
        for t in tables:
            count, digest = con.execute(f"SELECT count(*), sum(hash(r)::HUGEINT) FROM {t} AS r").fetchone()
            out[t.strip('"')] = f"{count}:{digest or 0}"
        return out
    finally:
        con.close()


def remove_db(db: Path) -> None:
    for path in (db, db.with_name(db.name + ".wal"), db.with_name(db.name + ".tmp")):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def copy_db(src: Path, dst: Path) -> None:
    """``dst`` becomes a copy of the warehouse ``src`` (its WAL too, if a run left one)."""
    remove_db(dst)
    for suffix in ("", ".wal"):
        if src.with_name(src.name + suffix).exists():
            shutil.copyfile(src.with_name(src.name + suffix), dst.with_name(dst.name + suffix))


def warm_cache(root: Path) -> tuple[int, int, float]:
    """Read every raw file once so that no timed run pays for the disk: (files, bytes, seconds)."""
    started, files, size = time.monotonic(), 0, 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as handle:
                while chunk := handle.read(1 << 24):
                    size += len(chunk)
            files += 1
    return files, size, time.monotonic() - started


def add_day(root: Path, marker: Path) -> tuple[Path, int]:
    """A 31st day: the last day's events, one day later, with new sessionIds (streamed line by line)."""
    days = sorted((root / "log_data").rglob("*-events.json"))
    last = days[-1]
    date = dt.date.fromisoformat(last.name[:10]) + dt.timedelta(days=1)
    new = root / "log_data" / f"{date.year:04d}" / f"{date.month:02d}" / f"{date.isoformat()}-events.json"
    new.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(new))
    records = 0
    with last.open("rb") as src, new.open("wb") as dst:
        for line in src:
            line = _TS.sub(lambda m: b'"ts":%d' % (int(m.group(1)) + DAY_MS), line, count=1)
            line = _SESSION.sub(lambda m: b'"sessionId":%d' % (int(m.group(1)) + SESSION_SHIFT), line, count=1)
            dst.write(line)
            records += line.strip() != b""
    return new, records


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    import dagster
    import duckdb

    return {
        "nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(mem_kb / 1024 ** 2, 1),
        "python": platform.python_version(), "duckdb": duckdb.__version__, "dagster": dagster.__version__,
        "kernel": platform.release(),
    }


# ------------------------------------------------------------------------------------------ one preset
def bench_preset(preset: str, work: Path, args: argparse.Namespace, fixed: FixedCost) -> dict:
    base = work / preset
    raw, logs = base / "raw", base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPARKIFY_TARGET": "duckdb", "SPARKIFY_DATA_URI": str(raw),
           "DAGSTER_HOME": str(base / "dagster_home"), "PYTHONUNBUFFERED": "1"}
    env.pop("SPARKIFY_MAX_ERRORS", None)
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    result: dict = {"preset": preset, "runs": [],
                    "when": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"}

    marker = base / "added_day"  # a day added by an interrupted earlier invocation goes first
    if marker.exists():
        Path(marker.read_text()).unlink(missing_ok=True)
        marker.unlink()
    if args.regenerate or not (raw / "log_data").is_dir():
        if raw.exists():
            shutil.rmtree(raw)
        log(f"{preset}: generating data")
        gen = timed([str(BIN / "sparkify-generate"), "--out", str(raw), "--preset", preset], env, logs / "generate.log")
        result["generate"] = gen
        log(f"{preset}: generated in {gen['seconds']:.1f}s")
    files, size, seconds = warm_cache(raw)
    result["raw"] = {"files": files, "bytes": size, "warm_seconds": round(seconds, 1)}
    log(f"{preset}: {files:,} raw files, {size / 1e6:,.0f} MB (page cache warmed in {seconds:.1f}s)")

    db = base / "warehouse.duckdb"
    for rep in range(1, args.repeat + 1):
        run: dict = {}
        remove_db(db)
        env_db = {**env, "SPARKIFY_DUCKDB_PATH": str(db)}
        result.setdefault("fixed_interleaved", []).append(fixed.sample())
        run["full"] = timed(MATERIALIZE, env_db, logs / f"full-{rep}.log", raw)
        run["rows"] = table_digests(db)
        log(f"{preset} #{rep}: full {run['full']['seconds']:.1f}s, {run['full']['rss_mib']:.0f} MiB")
        # Nothing new and one day, each from a copy of the 30-day warehouse, ``--inc-repeat`` times.
        snapshot = base / "warehouse-30-days.duckdb"
        copy_db(db, snapshot)
        for inc in range(1, args.inc_repeat + 1):
            tag = f"{rep}" if args.inc_repeat == 1 else f"{rep}.{inc}"
            copy_db(snapshot, db)
            noop = timed(MATERIALIZE, env_db, logs / f"nothing-new-{tag}.log", raw)
            log(f"{preset} #{tag}: nothing new {noop['seconds']:.1f}s")
            copy_db(snapshot, db)
            new_day, records = add_day(raw, marker)
            try:
                day = timed(MATERIALIZE, env_db, logs / f"one-day-{tag}.log", raw)
                day["records"] = records
                day["rows"] = table_digests(db)  # each one-day run's tables, kept with its timing
            finally:
                new_day.unlink()
                marker.unlink()
            log(f"{preset} #{tag}: one day {day['seconds']:.1f}s ({records:,} events)")
            run.setdefault("nothing_new_all", []).append(noop)
            run.setdefault("one_day_all", []).append(day)
        remove_db(snapshot)
        run["nothing_new"] = min(run["nothing_new_all"], key=lambda m: m["seconds"])
        run["one_day"] = min(run["one_day_all"], key=lambda m: m["seconds"])
        floor_db = base / "floor.duckdb"
        remove_db(floor_db)
        plan = base / "floor-plan.json"  # the floor's SQL, rendered by the project (not timed)
        subprocess.run([sys.executable, str(HERE / "floor.py"), "--data", str(raw), "--write-plan", str(plan)],
                       env=env, check=True, cwd=REPO)
        floor_cmd = [sys.executable, str(HERE / "floor.py"), "--data", str(raw), "--plan", str(plan)]
        run["floor"] = timed([*floor_cmd, "--db", str(floor_db), "--json", str(logs / f"floor-{rep}.json")],
                             env, logs / f"floor-{rep}.log", raw)
        run["floor"]["steps"] = json.loads((logs / f"floor-{rep}.json").read_text())["seconds"]
        run["floor_rows"] = table_digests(floor_db)
        remove_db(floor_db)
        log(f"{preset} #{rep}: floor {run['floor']['seconds']:.1f}s, {run['floor']['rss_mib']:.0f} MiB")
        if args.naive_floor and preset != "large" and rep == 1:
            run["floor_naive"] = timed(
                [*floor_cmd, "--db", str(floor_db), "--songs-reader", "read_json"], env, logs / f"floor-naive-{rep}.log", raw)
            remove_db(floor_db)
            log(f"{preset} #{rep}: floor with DuckDB's glob reader for songs {run['floor_naive']['seconds']:.1f}s")
        if args.limited_floor and rep == 1:  # the floor under the memory limit the pipeline runs with
            run["floor_limited"] = timed(
                [*floor_cmd, "--db", str(floor_db), "--memory-limit", DEFAULT_MEMORY_LIMIT, "--json", str(logs / f"floor-limited-{rep}.json")],
                env, logs / f"floor-limited-{rep}.log", raw)
            run["floor_limited"]["steps"] = json.loads((logs / f"floor-limited-{rep}.json").read_text())["seconds"]
            remove_db(floor_db)
            log(f"{preset} #{rep}: floor with memory_limit={DEFAULT_MEMORY_LIMIT} "
                f"{run['floor_limited']['seconds']:.1f}s, {run['floor_limited']['rss_mib']:.0f} MiB")
        result["runs"].append(run)
    remove_db(db)
    if not args.keep_data:
        shutil.rmtree(raw)
    return result


class FixedCost:
    """Dagster's own cost for this graph's shape: the same CLI and instance on no-op assets. Sampled at
    the start of the invocation and again right before each full load, because it moves between
    invocations on this VM by more than the pipeline does (benchmarks/README.md, tenth pass)."""

    def __init__(self, work: Path):
        self.base = work / "dagster-fixed-cost"
        shutil.rmtree(self.base, ignore_errors=True)
        self.home = self.base / "dagster_home"
        self.home.mkdir(parents=True)
        (self.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.module = self.base / "same_shape.py"
        self.module.write_text(dagster_fixed_cost.same_shape())
        dagster_fixed_cost.timed(self.module, self.home)  # creates the instance's databases: not counted

    def sample(self) -> float:
        return dagster_fixed_cost.timed(self.module, self.home)

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def fixed_summary(initial: list[float], interleaved: list[float]) -> dict:
    every = sorted(initial + interleaved)
    return {"seconds": every[0], "median": statistics.median(every), "all": every,
            "initial": initial, "interleaved": interleaved}


# ------------------------------------------------------------------------------------------ report
def best(runs: list[dict], key: str) -> dict:
    return min((r[key] for r in runs if key in r), key=lambda m: m["seconds"])


def step_groups(m: dict) -> dict[str, float]:
    """A run's wall time by kind of step; "other" = process start, run setup, between steps.

    Each table's checks run in its own step (staging and star include them); the analytics step
    includes drawing the charts. For the floor, "analytics" is its analytics SQL and "other" includes
    the final checkpoint (``close``)."""
    steps = m["steps"]
    groups = {"staging": sum(steps.get(k, 0) for k in STAGING), "star": sum(steps.get(k, 0) for k in STAR)}
    groups["analytics"] = sum(v for k, v in steps.items() if k not in (*STAGING, *STAR, "close"))
    groups["other"] = m["seconds"] - sum(groups.values())
    return groups


def summarise(res: dict) -> dict:
    runs = res["runs"]
    full, noop, day, floor = (best(runs, k) for k in ("full", "nothing_new", "one_day", "floor"))
    rows = runs[0]["rows"]
    records = sum(int(str(rows[t]).split(":")[0]) for t in ("staging_events", "staging_songs"))
    above_noop_full = full["seconds"] - noop["seconds"]
    staging = lambda m: sum(m["steps"].get(k, 0) for k in STAGING)  # noqa: E731
    out = {
        "command": res.get("command", "?"), "when": res.get("when", "?"),
        "preset": res["preset"], "files": res["raw"]["files"], "mb": res["raw"]["bytes"] / 1e6, "records": records,
        "full": full, "nothing_new": noop, "one_day": day, "floor": floor,
        "full_over_floor": full["seconds"] / floor["seconds"],
        "fixed": res.get("dagster_fixed", {}).get("seconds"),
        "fixed_all": res.get("dagster_fixed", {}).get("all", []),
        "day_over_full_above_noop": (day["seconds"] - noop["seconds"]) / above_noop_full,
        "day_over_full_staging": (staging(day) - staging(noop)) / (staging(full) - staging(noop)),
        "rows_match_floor": all(r["rows"] == r["floor_rows"] for r in runs),
        "day_records": day.get("records", 0),
        # The same ratio for each pair of runs (nothing new, one day) from the same warehouse copy.
        "day_ratio_pairs": sorted(
            (d["seconds"] - n["seconds"]) / (r["full"]["seconds"] - n["seconds"])
            for r in runs for n, d in zip(r.get("nothing_new_all", [r["nothing_new"]]),
                                          r.get("one_day_all", [r["one_day"]]))
        ),
    }
    for extra in ("floor_naive", "floor_limited"):
        if any(extra in r for r in runs):
            out[extra] = best(runs, extra)
    return out


def render(results: list[dict], mach: dict) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Generated by `benchmarks/run.py` (fastest of each preset's repetitions; every run, with its log "
        "path and the load average before it, is in `results.json`). Commands: "
        + "; ".join(f"{s['preset']}: `{s['command']}` at {s['when']}" for s in results) + ".",
        "",
        f"Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['ram_gib']} GiB RAM, Linux {mach['kernel']}; "
        f"Python {mach['python']}, DuckDB {mach['duckdb']}, Dagster {mach['dagster']}. Every raw file "
        "is read once right before each run (page cache warm, as far as the machine keeps it). CPU s = user + "
        "system time of the whole process; load avg = the machine's 1-minute load average before the run "
        "(other work on a shared machine slows wall time, not CPU time).",
        "",
        "| preset | raw files / MB | records | run | wall s | CPU s | records/s | peak RSS MiB | load avg |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in results:
        head = f"| {s['preset']} | {s['files']:,} / {s['mb']:,.0f} | {s['records']:,} "
        for label, key in (("full load (Dagster)", "full"), ("nothing new", "nothing_new"),
                           ("one-day incremental", "one_day"), ("floor (plain DuckDB)", "floor"),
                           (f"floor, memory_limit {DEFAULT_MEMORY_LIMIT} like the pipeline", "floor_limited"),
                           ("floor, DuckDB glob reader for songs", "floor_naive")):
            if key not in s:
                continue
            m = s[key]
            n = s["day_records"] if key == "one_day" else 0 if key == "nothing_new" else s["records"]
            rate = f"{n / m['seconds']:,.0f}" if n else "–"
            lines.append(f"{head}| {label} | {m['seconds']:.1f} | {m.get('cpu_seconds', 0):.1f} | {rate} "
                         f"| {m['rss_mib']:,.0f} | {m.get('load_before', 0):.1f} |")
            head = "| | | "
    lines += [
        "",
        "Targets. *Incremental, wall*: (one day − nothing new) / (full − nothing new), from the wall times "
        "above (noisy: a difference of two runs). *Per pair*: the same ratio for each nothing-new and one-day "
        "pair run from the same copy of the 30-day warehouse (median, and lowest–highest). *Incremental, "
        "staging*: the ratio of the fastest runs from the staging steps' own timers (what the staging load "
        "changes).",
        "",
        "| preset | full / floor (target ≤ 1.5) | incremental, wall (target < 0.1) | per pair: median (range) "
        "| incremental, staging (target < 0.1) | peak RSS of the full load (target < 2048 MiB at large) "
        "| tables equal the floor's |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for s in results:
        pairs = s["day_ratio_pairs"]
        spread = f"{statistics.median(pairs):.3f} ({pairs[0]:.3f}–{pairs[-1]:.3f}, {len(pairs)} pairs)"
        lines.append(
            f"| {s['preset']} | {s['full_over_floor']:.2f} | {s['day_over_full_above_noop']:.3f} | {spread} "
            f"| {s['day_over_full_staging']:.3f} | {s['full']['rss_mib']:,.0f} "
            f"| {'yes' if s['rows_match_floor'] else 'NO'} |"
        )
    lines += [
        "",
        "Against Dagster's own cost. *F*: the same command on a graph of this pipeline's shape whose assets "
        "do nothing (`dagster_fixed_cost.py`: 8 steps, 14 assets, the same checks, no log lines), fastest of "
        "its runs in the same invocation as the preset (those at its start and one right before each of the "
        "preset's full loads; the range in brackets). *Run events*: what the run wrote to the instance's "
        "event log (all events; in brackets the log lines among them).",
        "",
        "| preset | F s | full / (floor + F) (target ≤ 1.25 at medium) | nothing new − F, s (target ≤ 1.0 at medium) "
        "| run events: full (log lines) | nothing new (log lines) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in results:
        if s.get("fixed") is None:
            continue
        fixed = s["fixed"]
        events = [s[k].get("events") for k in ("full", "nothing_new")]
        shown = [f"{e['total']} ({e['log_lines']})" if e else "–" for e in events]
        every = s.get("fixed_all") or [fixed]
        lines.append(f"| {s['preset']} | {fixed:.2f} ({min(every):.2f}–{max(every):.2f}) "
                     f"| {s['full']['seconds'] / (s['floor']['seconds'] + fixed):.2f} "
                     f"| {s['nothing_new']['seconds'] - fixed:.2f} | {shown[0]} | {shown[1]} |")
    lines += ["", "Where the wall time goes (seconds; each step's own timer; staging and star include their "
              "tables' checks, analytics includes the charts; \"other\" = process start, run setup, the time "
              "between steps and, for the floor, the final checkpoint):", "",
              "| preset | run | staging | star | analytics | other | total |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for s in results:
        for label, key in (("full", "full"), ("nothing new", "nothing_new"), ("one day", "one_day"),
                           ("floor", "floor")):
            g = step_groups(s[key])
            lines.append(f"| {s['preset']} | {label} | {g['staging']:.1f} | {g['star']:.1f} | {g['analytics']:.1f} "
                         f"| {g['other']:.1f} | {s[key]['seconds']:.1f} |")
    lines += ["", "Steps of the fastest full load (seconds): ", ""]
    for s in results:
        steps = s["full"]["steps"]
        shown = [k for k in (*STAGING, *STAR, ANALYTICS_STEP) if k in steps]
        lines.append(f"- {s['preset']}: " + ", ".join(f"{k} {steps[k]:.1f}" for k in shown)
                     + "; floor: " + ", ".join(f"{k} {v:.1f}" for k, v in s["floor"]["steps"].items()))
    return "\n".join(lines) + "\n"


def reparse(results: list[dict]) -> None:
    """Step times and asset steps again from the kept logs (for results measured by an older harness)."""
    for res in results:
        for run in res["runs"]:
            for key in ("full", "nothing_new", "one_day"):
                log_path = Path(run[key]["log"])
                if log_path.exists():
                    steps, run[key]["assets"] = parse_steps(log_path.read_text(errors="replace"))
                    # A step timed from the instance's events (no line in the log) keeps that time.
                    run[key]["steps"] = {**run[key]["steps"], **steps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["udacity", "medium"],
                        choices=["sample", "udacity", "medium", "large"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/sparkify-bench"), help="data, warehouses, logs")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--inc-repeat", type=int, default=1,
                        help="nothing-new and one-day runs per full load, each from a copy of its warehouse")
    parser.add_argument("--regenerate", action="store_true", help="generate the data again even if present")
    parser.add_argument("--keep-data", action="store_true", help="keep the generated data (default: delete it)")
    parser.add_argument("--no-naive-floor", dest="naive_floor", action="store_false",
                        help="skip the floor variant that reads song files with DuckDB's glob reader")
    parser.add_argument("--no-limited-floor", dest="limited_floor", action="store_false",
                        help=f"skip the floor variant run under the pipeline's memory_limit ({DEFAULT_MEMORY_LIMIT})")
    parser.add_argument("--fixed-repeat", type=int, default=5,
                        help="runs of the no-op graph of this pipeline's shape (Dagster's fixed cost)")
    parser.add_argument("--render-only", action="store_true", help="rewrite results.md from results.json")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    args = parser.parse_args()
    if not Path(TIME).exists():
        raise SystemExit(f"{TIME} is missing: apt-get install -y time")
    mach = machine()
    store = args.out.with_suffix(".json")
    if args.render_only:
        data = json.loads(store.read_text())
        reparse(data["results"])
        store.write_text(json.dumps(data, indent=2))
        args.out.write_text(render([summarise(r) for r in data["results"]], data["machine"]))
        print(args.out.read_text())
        return 0
    log(f"machine: {mach}")
    fixed = FixedCost(args.work)
    initial = [fixed.sample() for _ in range(args.fixed_repeat)]
    log(f"Dagster's fixed cost for this graph's shape: {min(initial):.2f}s (fastest of {args.fixed_repeat})")
    raw_results = [bench_preset(p, args.work, args, fixed) for p in args.presets]
    fixed.close()
    for r in raw_results:
        r["dagster_fixed"] = fixed_summary(initial, r.pop("fixed_interleaved"))
        log(f"{r['preset']}: F {r['dagster_fixed']['seconds']:.2f}s (fastest of {len(r['dagster_fixed']['all'])}: "
            f"{', '.join(f'{x:.2f}' for x in r['dagster_fixed']['interleaved'])} before the full loads)")
    # Presets measured by earlier invocations stay in the report (results.json keeps every run).
    previous = json.loads(store.read_text())["results"] if store.exists() else []
    done = {r["preset"] for r in raw_results}
    order = ["sample", "udacity", "medium", "large"]
    merged = sorted([r for r in previous if r["preset"] not in done] + raw_results,
                    key=lambda r: order.index(r["preset"]))
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:])
    for r in raw_results:
        r["command"] = command
    args.out.write_text(render([summarise(r) for r in merged], mach))
    store.write_text(json.dumps({"machine": mach, "results": merged}, indent=2))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
