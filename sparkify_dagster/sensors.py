"""React to the raw data: a sensor on new or changed files, a daily fallback schedule, and the jobs.

The sensor lists the raw prefixes (S3 or a local folder) and never opens the warehouse. What a tick
costs follows what can change, not the size of the bucket:

- **Log files, every tick**: one listing from the month of the newest day seen onward
  (``StartAfter=log_data/YYYY/MM/``: one request whatever the history). Its cursor holds the version
  (ETag on S3) of each file in that window, so a new day, or a day of the window re-uploaded with new
  content or deleted, requests a run within one tick.
- **Log files, every SPARKIFY_SENSOR_LOG_RECONCILE_SECONDS**: a full listing of log_data/, compared
  with one order-independent digest of every file before the window, so a late day, or an older day
  re-uploaded or deleted, requests a run within that interval plus one tick.
- **Song files, every SPARKIFY_SENSOR_SONG_SECONDS**: a pass over song_data/ spread over ticks, at most
  SPARKIFY_SENSOR_SONG_PAGES listing pages (1,000 keys each) per tick, digested the same way; a pass
  that ends with another digest than the last one requests the song side.
- Optionally **S3 event notifications** (SPARKIFY_S3_EVENTS_QUEUE, an SQS queue URL): a created or
  removed song file requests the song side at the next tick; a log file outside the window brings
  the full log listing forward to that tick.

Versions, never timestamps, are compared, so objects written in the same second are never missed.
The cursor holds one month of log files and two digests: its size does not grow with history. The run
itself is incremental (see assets/staging.py): it loads exactly what changed, whoever requested it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from sparkify_dagster.assets import asset_graph, downstream_of
from sparkify_dagster.assets.raw import RAW_ASSETS
from sparkify_dagster.assets.staging import STAGING_STEP, StagingLoadConfig
from sparkify_dagster.catalog import STAGING_EVENTS, STAGING_SONGS
from sparkify_dagster.source import LOG_PREFIX, SONG_PREFIX, RawDataSource, RawFile
from sparkify_dagster.text import digest, whole_number

LOAD_JOB_NAME = "load_warehouse"
FULL_REFRESH_JOB_NAME = "full_refresh"
TABLE_ASSETS = dg.AssetSelection.all() - dg.AssetSelection.assets(*(spec.key for spec in RAW_ASSETS))

load_warehouse_job = dg.define_asset_job(
    LOAD_JOB_NAME,
    selection=TABLE_ASSETS,
    description="Bring the warehouse up to date: load new or changed raw files, rebuild the star tables.",
)

full_refresh_job = dg.define_asset_job(
    FULL_REFRESH_JOB_NAME,
    selection=TABLE_ASSETS,
    config=dg.RunConfig(
        ops={STAGING_STEP: StagingLoadConfig(full_refresh=True)}
    ),
    description="Rebuild the warehouse from scratch: reload every raw file, rebuild the star tables.",
)

daily_refresh_schedule = dg.ScheduleDefinition(
    name="daily_refresh",
    job=load_warehouse_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Fallback for the sensor: bring the warehouse up to date every day at 06:00 UTC.",
)



# The settings, their defaults and the bound each one sets (README "Incremental loads, sensor, schedule").
SENSOR_SETTINGS = {
    "SPARKIFY_SENSOR_LOG_RECONCILE_SECONDS": 600,  # full log listing: catches late, re-uploaded, deleted days
    "SPARKIFY_SENSOR_SONG_SECONDS": 3600,  # a song pass starts at most this often
    "SPARKIFY_SENSOR_SONG_PAGES": 20,  # listing pages (1,000 keys each) of a song pass per tick
}
EVENTS_QUEUE_VARIABLE = "SPARKIFY_S3_EVENTS_QUEUE"
CURSOR_VERSION = 2
_MONTH = re.compile(re.escape(LOG_PREFIX) + r"(\d{4})/(\d{2})/")
_HASH_MOD = 1 << 128


class SensorSettingsError(ValueError):
    """A sensor setting in the environment is not a positive whole number."""


@dataclass(frozen=True)
class SensorSettings:
    """How often the sensor lists what: see the module docstring for the bound each one sets."""

    log_reconcile_seconds: int = SENSOR_SETTINGS["SPARKIFY_SENSOR_LOG_RECONCILE_SECONDS"]
    song_seconds: int = SENSOR_SETTINGS["SPARKIFY_SENSOR_SONG_SECONDS"]
    song_pages: int = SENSOR_SETTINGS["SPARKIFY_SENSOR_SONG_PAGES"]
    events_queue: str | None = None


def sensor_settings(environ: Mapping[str, str] = os.environ) -> SensorSettings:
    """The sensor's settings from the environment (defaults in SENSOR_SETTINGS); one clear error if wrong."""
    values = [whole_number(name, environ.get(name) or str(default), 1, SensorSettingsError)
              for name, default in SENSOR_SETTINGS.items()]
    return SensorSettings(*values, events_queue=environ.get(EVENTS_QUEUE_VARIABLE) or None)


def check_sensor_settings(source: RawDataSource, environ: Mapping[str, str] = os.environ) -> SensorSettings:
    """The settings, checked against the raw data's location (called when the definitions load)."""
    settings = sensor_settings(environ)
    if settings.events_queue and not source.describe().startswith("s3://"):
        raise SensorSettingsError(
            f"{EVENTS_QUEUE_VARIABLE} is set, but the raw data is not in S3 ({source.describe()}): S3 event "
            f"notifications need SPARKIFY_DATA_URI=s3://bucket/prefix, or unset {EVENTS_QUEUE_VARIABLE}."
        )
    return settings


def _entry_hash(f: RawFile) -> int:
    return int.from_bytes(hashlib.blake2b(f"{f.key}\0{f.version}".encode(), digest_size=16).digest(), "big")


@dataclass
class SetDigest:
    """An order-independent digest of a set of (key, version): the sum of their 128-bit hashes and their
    count. Files can be added one at a time in any order, so a listing spread over ticks, or files
    moved out of the log window, are digested without being kept."""

    total: int = 0
    count: int = 0

    def add(self, files: Iterable[RawFile]) -> None:
        for f in files:
            self.total = (self.total + _entry_hash(f)) % _HASH_MOD
            self.count += 1

    def dump(self) -> list:
        return [f"{self.total:032x}", self.count]

    @classmethod
    def load(cls, value: list | None) -> SetDigest:
        return cls(int(value[0], 16), int(value[1])) if value else cls()


@dataclass
class Change:
    """What one tick found: the log files new, changed or gone, and whether either side must be reloaded."""

    logs: dict[str, str | None] = field(default_factory=dict)  # key -> new version, None when deleted
    older_logs_changed: bool = False  # the full listing found a difference before the window
    songs_changed: bool = False
    requests: int = 0  # listing pages and queue calls this tick made (for the benchmark)

    @property
    def any(self) -> bool:
        return bool(self.logs) or self.older_logs_changed or self.songs_changed


def _month_start(key: str) -> str | None:
    m = _MONTH.match(key)
    return f"{LOG_PREFIX}{m.group(1)}/{m.group(2)}/" if m else None


def _upgrade(old: dict) -> dict:
    """A cursor of the sensor before version 2 (every log file's version, one digest of song_data):
    its log files become the window, so no log file is reported again; the song side is reloaded once."""
    return {"v": CURSOR_VERSION, "logs": {"window": None, "files": old.get("logs") or {}, "older": None,
                                          "full_at": 0}, "songs": None}


def evaluate(cursor: str | None, source: RawDataSource, settings: SensorSettings, now: float,
             events: Any = None) -> tuple[Change, str]:
    """One tick: what changed since ``cursor`` and the next cursor. ``events`` (optional) receives the
    S3 event notifications (see S3EventQueue). Pure but for the listing, so tests and the benchmark
    drive it with their own clock."""
    state = json.loads(cursor) if cursor else {}
    if state and state.get("v") != CURSOR_VERSION:
        state = _upgrade(state)
    # The first tick requests the whole graph (the warehouse may be empty); the first song pass, if it
    # takes more ticks, still reports when it ends (its digest is the first one to compare with).
    change = Change(songs_changed=not state)
    log_state = state.get("logs") or {"window": None, "files": {}, "older": None, "full_at": None}
    song_state = state.get("songs") or {"done": None, "pass": None, "next": 0}
    window: str | None = log_state["window"]
    full_due = log_state["full_at"] is None or now - log_state["full_at"] >= settings.log_reconcile_seconds
    if events is not None:
        notified = events.receive()
        change.requests += notified.requests
        change.songs_changed |= notified.songs
        # A log file before the window is not in the window's listing: list everything this tick.
        full_due |= any(window is not None and key <= window for key in notified.logs)

    # Log files: the window every tick; everything when a reconciliation is due.
    listed: list[RawFile] = []
    for page in source.list_pages(LOG_PREFIX, None if full_due else window):
        change.requests += 1
        listed.extend(page.files)
    older = SetDigest.load(log_state["older"])
    if full_due:
        before = [f for f in listed if window is not None and f.key <= window]
        listed = [f for f in listed if window is None or f.key > window]
        found = SetDigest()
        found.add(before)
        if log_state["older"] is not None and found != older:
            change.older_logs_changed = True
        older = found
        log_state["full_at"] = now
    files = {f.key: f.version for f in listed}
    seen = log_state["files"]
    change.logs = {k: v for k, v in files.items() if seen.get(k) != v}
    change.logs.update({k: None for k in seen if k not in files})
    # The window moves forward to the month of the newest day; the files it leaves go into the digest.
    months = [m for m in map(_month_start, files) if m]
    if months and (window is None or max(months) > window):
        window = max(months)
        leaving = [f for f in listed if f.key <= window]
        older.add(leaving)
        for f in leaving:
            del files[f.key]
    log_state.update(window=window, files=files, older=older.dump())

    # Song files: a pass at most every song_seconds, spread over ticks at song_pages pages each.
    if song_state["pass"] is None and now >= song_state["next"]:
        song_state["pass"] = {"after": None, "digest": None, "started": now}
    current = song_state["pass"]
    if current is not None:
        found = SetDigest.load(current["digest"])
        finished, pages = True, 0
        for page in source.list_pages(SONG_PREFIX, current["after"]):
            change.requests += 1
            pages += 1
            found.add(page.files)
            current["after"] = page.last_key or current["after"]
            if page.truncated and pages >= settings.song_pages:
                finished = False
                break
        current["digest"] = found.dump()
        if finished:
            change.songs_changed |= current["digest"] != song_state["done"]
            song_state.update(done=current["digest"], next=current["started"] + settings.song_seconds)
            song_state["pass"] = None
    new_cursor = json.dumps({"v": CURSOR_VERSION, "logs": log_state, "songs": song_state}, sort_keys=True)
    return change, new_cursor


@dg.sensor(
    name="new_raw_files",
    job=load_warehouse_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Loads new or changed log files (the newest month listed every tick, all of log_data/ every "
        "SPARKIFY_SENSOR_LOG_RECONCILE_SECONDS) and refreshes the song tables when song_data changes (a pass "
        "every SPARKIFY_SENSOR_SONG_SECONDS)."
    ),
)
def new_raw_files_sensor(context: dg.SensorEvaluationContext, raw_data: RawDataSource) -> dg.SensorResult:
    """Request a load when a log or song file is new, re-uploaded with new content, or gone (bounds above)."""
    settings = sensor_settings()
    events = None
    if settings.events_queue:
        from sparkify_dagster.source_s3 import S3EventQueue

        events = S3EventQueue.for_source(settings.events_queue, raw_data)
    change, cursor = evaluate(context.cursor, raw_data, settings, time.time(), events)
    if events is not None:
        events.acknowledge()  # only now: a tick that failed before this point sees the messages again
    if not change.any:
        return dg.SensorResult(skip_reason="no new, changed or deleted raw files", cursor=cursor)
    # What to run: the staging table of what changed and every table built from it, by the asset graph.
    graph = context.repository_def.asset_graph if context.repository_def is not None else asset_graph()
    tables: set[str] = set()
    if change.logs or change.older_logs_changed:
        tables |= set(downstream_of(STAGING_EVENTS.name, graph=graph))
    if change.songs_changed:
        tables |= set(downstream_of(STAGING_SONGS.name, graph=graph))
    deleted = sum(v is None for v in change.logs.values())
    context.log.info(
        f"{len(change.logs) - deleted} new or changed log files, {deleted} deleted, older log files changed: "
        f"{change.older_logs_changed}, songs changed: {change.songs_changed}"
    )
    # The same change from the same state is the same run key, so a tick evaluated twice launches once.
    key = {"from": digest({"cursor": context.cursor or ""}), "logs": json.dumps(change.logs, sort_keys=True),
           "older": str(change.older_logs_changed), "songs": str(change.songs_changed)}
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=digest(key),
                asset_selection=[dg.AssetKey(t) for t in sorted(tables)],
                tags={"sparkify/trigger": "new_raw_files"},
            )
        ],
        cursor=cursor,
    )
