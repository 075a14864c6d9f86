"""The new_raw_files sensor: run requests and cursor, through build_sensor_context (no warehouse)."""

import json
import os
import shutil

import dagster as dg
import pytest

from sparkify_dagster import defs as load_defs
from sparkify_dagster.assets.analytics import ANALYSES
from sparkify_dagster.sensors import new_raw_files_sensor
from sparkify_dagster.source import SAMPLE_DATA_DIR, LocalFolderSource
from sparkify_dagster.warehouse.duckdb import DuckDBWarehouse

ANALYTICS = {a.name for a in ANALYSES}  # every analytics table reads songplays
EVENTS_SIDE = {"staging_events", "users", "songplays", "time"} | ANALYTICS
SONGS_SIDE = {"staging_songs", "songs", "artists", "songplays", "time"} | ANALYTICS


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(SAMPLE_DATA_DIR, root)
    return root


def tick(root, cursor=None):
    context = dg.build_sensor_context(cursor=cursor, resources={"raw_data": LocalFolderSource(root=str(root))})
    return new_raw_files_sensor(context)


def selected(result):
    (request,) = result.run_requests
    return {k.to_user_string() for k in request.asset_selection}


def new_day(root, day="2018-11-30"):
    path = root / "log_data" / day[:4] / day[5:7] / f"{day}-events.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    src = sorted((root / "log_data").rglob("*.json"))[0]
    path.write_text(src.read_text())
    return path


def test_first_tick_requests_a_load_of_everything(raw):
    result = tick(raw)
    assert selected(result) == EVENTS_SIDE | SONGS_SIDE
    cursor = json.loads(result.cursor)
    assert len(cursor["logs"]) == len(list((raw / "log_data").rglob("*.json")))


def test_unchanged_files_never_trigger_a_run(raw):
    first = tick(raw)
    second = tick(raw, first.cursor)
    assert not second.run_requests and second.skip_reason
    assert second.cursor == first.cursor


def test_a_new_log_file_triggers_an_events_run_within_one_tick(raw):
    cursor = tick(raw).cursor
    new_day(raw)
    result = tick(raw, cursor)
    assert selected(result) == EVENTS_SIDE
    assert "log_data/2018/11/2018-11-30-events.json" in json.loads(result.cursor)["logs"]


def test_a_reuploaded_key_with_new_content_triggers_a_reload_once(raw):
    cursor = tick(raw).cursor
    path = sorted((raw / "log_data").rglob("*.json"))[0]
    path.write_text(path.read_text() + "\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a new version (the ETag on S3)
    result = tick(raw, cursor)
    assert selected(result) == EVENTS_SIDE
    assert not tick(raw, result.cursor).run_requests


def test_files_written_in_the_same_second_are_all_seen(raw):
    cursor = tick(raw).cursor
    a, b = new_day(raw, "2018-11-28"), new_day(raw, "2018-11-29")
    for p in (a, b):
        os.utime(p, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    result = tick(raw, cursor)
    logs = json.loads(result.cursor)["logs"]
    assert {"log_data/2018/11/2018-11-28-events.json", "log_data/2018/11/2018-11-29-events.json"} <= set(logs)
    assert selected(result) == EVENTS_SIDE


def test_a_deleted_key_requests_a_run_and_does_not_reprocess_everything(raw):
    cursor = tick(raw).cursor
    sorted((raw / "log_data").rglob("*.json"))[-1].unlink()
    result = tick(raw, cursor)
    assert selected(result) == EVENTS_SIDE
    (request,) = result.run_requests
    assert request.run_key  # deterministic: the same change never launches twice
    assert tick(raw, result.cursor).run_requests == []


def test_a_new_song_file_refreshes_the_song_tables(raw):
    cursor = tick(raw).cursor
    path = raw / "song_data" / "A" / "Z" / "Z" / "TRAZZZZ12345678901.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"num_songs": 1, "artist_id": "ARX", "song_id": "SOX", "title": "X", "duration": 1.0}')
    assert selected(tick(raw, cursor)) == SONGS_SIDE


def test_the_sensor_never_opens_the_warehouse(raw, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the sensor opened the DuckDB file")

    monkeypatch.setattr(DuckDBWarehouse, "_connect", refuse)
    assert tick(raw).run_requests


def test_sensor_targets_the_load_job_and_the_schedule_is_off_by_default():
    defs = load_defs()
    sensor = defs.resolve_sensor_def("new_raw_files")
    assert sensor.job_name == "load_warehouse"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    schedule = defs.resolve_schedule_def("daily_refresh")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
