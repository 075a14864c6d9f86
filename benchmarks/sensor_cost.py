"""What a tick of the new_raw_files sensor costs, before and after the sensor listed only what can change.

    python benchmarks/sensor_cost.py [--songs 100000 1000000] [--days 365] [--before-rev afd5cc4]

The bucket is in memory (sparkify_dagster_tests/fake_s3.py: ListObjectsV2 paged as S3 pages it, 1,000
keys a page, Prefix/StartAfter, every request counted), read through the real S3Source, and each
sensor is evaluated through Dagster's build_sensor_context. "Before" is the sensor of ``--before-rev``
(default: the last commit before the change), loaded from git, on the same bucket.

Prints markdown tables: ListObjectsV2 requests and wall time per tick (wall time is the sensor's own
work here, no network; the "at 100 ms a request" column adds an assumed S3 round trip per request, not
measured), over two simulated hours of 30-second ticks; the cursor's size at 30 and 3,650 daily files;
and the longest time from an upload to the tick that requests its run, each change made at its worst
moment (right after the listing that would have seen it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402

from sparkify_dagster import sensors  # noqa: E402
from sparkify_dagster.sensors import SensorSettings  # noqa: E402
from sparkify_dagster_tests.fake_s3 import CountingS3, s3_source_on  # noqa: E402

TICK = 30
ASSUMED_REQUEST_SECONDS = 0.1


class Clock:
    """The sensor's time.time(): simulated, advanced one interval per tick."""

    def __init__(self):
        self.now = 1_700_000_000.0

    def time(self):
        return self.now


def load_before(rev: str):
    """The sensor as it was at ``rev`` (its module executed from git, importing today's package)."""
    try:
        text = subprocess.run(["git", "show", f"{rev}:sparkify_dagster/sensors.py"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"sensor_cost.py: cannot read the sensor at {rev} from git ({exc}); pass --before-rev")
    module = types.ModuleType("sensors_before")
    exec(compile(text, f"{rev}:sparkify_dagster/sensors.py", "exec"), module.__dict__)
    return module.new_raw_files_sensor


def day_key(d: dt.date) -> str:
    return f"log_data/{d:%Y}/{d:%m}/{d:%Y-%m-%d}-events.json"


def make_bucket(n_songs: int, n_days: int) -> tuple[CountingS3, list[str], list[str]]:
    s3 = CountingS3()
    start = dt.date(2018, 11, 1) - dt.timedelta(n_days - 30)
    logs = [day_key(start + dt.timedelta(i)) for i in range(n_days)]
    for key in logs:
        s3.put(key, key.encode())
    songs = [f"song_data/{chr(65 + i % 26)}/{chr(65 + i // 26 % 26)}/{chr(65 + i // 676 % 26)}/TR{i:016d}.json"
             for i in range(n_songs)]
    s3.put_many(songs)
    return s3, logs, songs


class Sensor:
    """One sensor on one bucket, ticked on the simulated clock."""

    instance = None  # one ephemeral instance for every tick, as the daemon has one (making one costs ~0.3 s)

    def __init__(self, sensor_def, s3: CountingS3, clock: Clock):
        self.sensor_def, self.s3, self.clock, self.cursor = sensor_def, s3, clock, None
        if Sensor.instance is None:
            Sensor.instance = dg.DagsterInstance.ephemeral()

    def tick(self):
        """(requests, wall seconds, whether it requested a run)."""
        before = sum(self.s3.requests.values())
        with s3_source_on(self.s3) as source:
            start = time.perf_counter()
            with dg.build_sensor_context(cursor=self.cursor, resources={"raw_data": source},
                                         instance=self.instance) as context:
                result = self.sensor_def(context)
            wall = time.perf_counter() - start
        self.cursor = result.cursor
        self.clock.now += TICK
        return sum(self.s3.requests.values()) - before, wall, bool(result.run_requests)

    def ticks_until_run(self, limit: int) -> tuple[int | None, float]:
        """Ticks until one requests a run, and the wall time of that tick."""
        for n in range(1, limit + 1):
            _, wall, requested = self.tick()
            if requested:
                return n, wall
        return None, 0.0


def per_tick(sensor: Sensor, hours: float) -> dict:
    sensor.tick()  # the first tick lists everything in both versions; it is not a steady state
    results = [sensor.tick() for _ in range(int(hours * 3600 / TICK))]
    requests = [r for r, _, _ in results]
    walls = [w for _, w, _ in results]
    quiet = [w for r, w, _ in results if r == min(requests)]
    return {"quiet_requests": min(requests), "max_requests": max(requests), "mean_requests": statistics.mean(requests),
            "quiet_wall": statistics.median(quiet), "max_wall": max(walls),
            "max_estimate": max(r * ASSUMED_REQUEST_SECONDS + w for r, w, _ in results)}


def worst_latencies(make_sensor, logs: list[str], songs: list[str], s3: CountingS3, settings: SensorSettings) -> dict:
    """Seconds from an upload to the tick that requests its run, each change made at its worst moment."""
    out = {}
    limit = int(2 * (settings.song_seconds + settings.log_reconcile_seconds) / TICK) + 2000

    def state(sensor):
        return sensors.json.loads(sensor.cursor) if sensor.cursor else {}

    def measure(name, change, worst_moment=None):
        sensor = make_sensor()
        sensor.tick()
        if state(sensor).get("v"):
            # Past the first song pass (which reports when it ends, whatever changed), then on to the
            # moment the listing that would have seen the change has just been made.
            while state(sensor)["songs"]["pass"] is not None:
                sensor.tick()
            while not worst_moment(sensor, state(sensor)):
                sensor.tick()
        change()
        ticks, wall = sensor.ticks_until_run(limit)
        # The change landed just as the previous tick ended; the run is requested when the tick that sees it ends.
        out[name] = None if ticks is None else ticks * TICK + wall

    last = dt.date.fromisoformat(logs[-1][-22:-12])
    new = day_key(last + dt.timedelta(1))
    def after_full_listing(sensor, st):
        return st["logs"]["full_at"] == sensor.clock.now - TICK

    def after_first_song_page(sensor, st):
        return (st["songs"]["pass"] or {}).get("started") == sensor.clock.now - TICK

    measure("a new day", lambda: s3.put(new, b"new"), lambda sensor, st: True)
    s3.delete(new)
    measure("an older day re-uploaded", lambda: s3.put(logs[0], b"re-uploaded"), after_full_listing)
    measure("an older day deleted", lambda: s3.delete(logs[1]), after_full_listing)
    # A song changed just after a pass listed it (its first page), so only the next pass can see it.
    measure("a song file changed", lambda: s3.put(songs[0], b"changed"), after_first_song_page)
    return out


def cursor_sizes(before_def, clock: Clock) -> dict:
    sizes = {}
    for days in (30, 3650):
        s3, _, _ = make_bucket(100, days)
        for label, sensor_def in (("before", before_def), ("after", sensors.new_raw_files_sensor)):
            s = Sensor(sensor_def, s3, clock)
            s.tick()
            sizes[(label, days)] = len(s.cursor)
    return sizes


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "not seen"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def print_latencies(latencies: dict) -> None:
    print("\nLongest time from an upload to the requested run (the change made at its worst moment):\n")
    kinds = list(next(iter(latencies.values())))
    print("| song files | sensor | " + " | ".join(kinds) + " |")
    print("|---|---|" + "---|" * len(kinds))
    for (n, label), found in latencies.items():
        print(f"| {n:,} | {label} | " + " | ".join(fmt_s(found[k]) for k in kinds) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--days", type=int, default=365, help="daily log files in the bucket")
    parser.add_argument("--hours", type=float, default=2.0, help="simulated hours of ticks per measurement")
    parser.add_argument("--before-rev", default="afd5cc4")
    parser.add_argument("--latency-only", action="store_true",
                        help="only the longest upload-to-run times of the current sensor (quick)")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # each run request is logged otherwise
    clock = Clock()
    sensors.time = clock  # the sensor reads time.time(): the simulated clock
    before_def = load_before(args.before_rev)
    settings = sensors.sensor_settings()

    print(f"Settings: {settings}; a tick every {TICK} s; {args.days} daily log files.\n")
    if args.latency_only:
        latencies = {}
        for n in args.songs:
            s3, logs, songs = make_bucket(n, args.days)
            latencies[(n, "after")] = worst_latencies(lambda s3=s3: Sensor(sensors.new_raw_files_sensor, s3, clock),
                                                      logs, songs, s3, settings)
        print_latencies(latencies)
        return
    print("| song files | sensor | ListObjectsV2 per tick: quiet / max / mean | wall per tick: quiet / max "
          f"| max tick at {ASSUMED_REQUEST_SECONDS * 1000:.0f} ms a request |")
    print("|---|---|---|---|---|")
    latencies = {}
    for n in args.songs:
        s3, logs, songs = make_bucket(n, args.days)
        for label, sensor_def, hours in (("before", before_def, 3 * TICK / 3600), ("after", sensors.new_raw_files_sensor, args.hours)):
            m = per_tick(Sensor(sensor_def, s3, clock), hours)
            print(f"| {n:,} | {label} | {m['quiet_requests']} / {m['max_requests']} / {m['mean_requests']:.1f} "
                  f"| {m['quiet_wall'] * 1000:.0f} ms / {m['max_wall'] * 1000:.0f} ms | {m['max_estimate']:.1f} s |")
            latencies[(n, label)] = worst_latencies(lambda d=sensor_def, s3=s3: Sensor(d, s3, clock), logs, songs, s3, settings)
            s3, logs, songs = make_bucket(n, args.days)  # the latency run changed the bucket
    print_latencies(latencies)
    sizes = cursor_sizes(before_def, clock)
    print("\nCursor size (bytes) after the first tick:\n")
    print("| daily log files | before | after |\n|---|---|---|")
    for days in (30, 3650):
        print(f"| {days:,} | {sizes[('before', days)]:,} | {sizes[('after', days)]:,} |")


if __name__ == "__main__":
    main()
