"""React to the raw data: a sensor on new or changed files, a daily fallback schedule, and the jobs.

The sensor lists the raw prefixes (S3 or a local folder) and never opens the warehouse. Its cursor
holds every log file's version (ETag on S3) and one digest of the song files, so:
- a new log file, or a key re-uploaded with new content, requests a run within one tick;
- unchanged files request nothing; a deleted key requests a run that removes its rows;
- nothing depends on timestamps, so objects written in the same second are never missed.
The run itself is incremental (see assets/staging.py): it loads exactly what changed.
"""

import json

import dagster as dg

from sparkify_dagster.assets import asset_graph, downstream_of
from sparkify_dagster.assets.raw import RAW_ASSETS
from sparkify_dagster.assets.staging import STAGING_STEP, StagingLoadConfig
from sparkify_dagster.catalog import STAGING_EVENTS, STAGING_SONGS
from sparkify_dagster.source import LOG_PREFIX, SONG_PREFIX, RawDataSource
from sparkify_dagster.text import digest

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


@dg.sensor(
    name="new_raw_files",
    job=load_warehouse_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Loads new or changed log files (and refreshes song tables when song_data changes).",
)
def new_raw_files_sensor(context: dg.SensorEvaluationContext, raw_data: RawDataSource) -> dg.SensorResult:
    """Request a load when a log file (or any song file) is new, re-uploaded with new content, or gone."""
    seen = json.loads(context.cursor) if context.cursor else {"logs": {}, "songs": None}
    logs = {f.key: f.version for f in raw_data.list_files(LOG_PREFIX)}
    songs = digest({f.key: f.version for f in raw_data.list_files(SONG_PREFIX)})
    changed_logs = sorted(k for k, v in logs.items() if seen["logs"].get(k) != v)
    removed_logs = sorted(set(seen["logs"]) - set(logs))
    songs_changed = songs != seen["songs"]
    # What to run: the staging table of what changed and every table built from it, by the asset graph.
    graph = context.repository_def.asset_graph if context.repository_def is not None else asset_graph()
    tables: set[str] = set()
    if changed_logs or removed_logs:
        tables |= set(downstream_of(STAGING_EVENTS.name, graph=graph))
    if songs_changed:
        tables |= set(downstream_of(STAGING_SONGS.name, graph=graph))
    cursor = json.dumps({"logs": logs, "songs": songs}, sort_keys=True)
    if not tables:
        return dg.SensorResult(skip_reason="no new, changed or deleted raw files", cursor=cursor)
    change = {"logs": {k: logs.get(k) for k in changed_logs + removed_logs}, "songs": songs if songs_changed else None}
    context.log.info(
        f"{len(changed_logs)} new or changed log files, {len(removed_logs)} deleted, songs changed: {songs_changed}"
    )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=digest({"change": json.dumps(change, sort_keys=True)}),
                asset_selection=[dg.AssetKey(t) for t in sorted(tables)],
                tags={"sparkify/trigger": "new_raw_files"},
            )
        ],
        cursor=cursor,
    )
