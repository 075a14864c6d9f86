"""The new_raw_files sensor: run requests and cursor, through build_sensor_context (no warehouse), and
what each tick lists (an in-memory S3 that counts requests), on a clock the tests move."""

import json
import os
import shutil

import dagster as dg
import pytest

from sparkify_dagster import defs as load_defs
from sparkify_dagster import sensors
from sparkify_dagster.assets.analytics import ANALYSES
from sparkify_dagster.definitions import ConfigurationError, build_defs
from sparkify_dagster.sensors import SensorSettings, evaluate, new_raw_files_sensor
from sparkify_dagster.source import SAMPLE_DATA_DIR, LocalFolderSource
from sparkify_dagster.warehouse.duckdb import DuckDBWarehouse
from sparkify_dagster_tests.fake_s3 import CountingS3, s3_source_on

ANALYTICS = {a.name for a in ANALYSES}  # every analytics table reads songplays
EVENTS_SIDE = {"staging_events", "users", "songplays", "time"} | ANALYTICS
SONGS_SIDE = {"staging_songs", "songs", "artists", "songplays", "time"} | ANALYTICS


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(SAMPLE_DATA_DIR, root)
    return root


class Clock:
    """The sensor's time.time(), moved by the test."""

    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def time(self):
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(sensors, "time", c)
    return c


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
    # The sample is one month: every day is in the window the next ticks list.
    assert cursor["logs"]["window"] == "log_data/2018/11/"
    assert len(cursor["logs"]["files"]) == len(list((raw / "log_data").rglob("*.json")))


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
    assert "log_data/2018/11/2018-11-30-events.json" in json.loads(result.cursor)["logs"]["files"]


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
    logs = json.loads(result.cursor)["logs"]["files"]
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


def test_a_new_song_file_refreshes_the_song_tables_at_the_next_song_pass(raw, clock):
    cursor = tick(raw).cursor
    path = raw / "song_data" / "A" / "Z" / "Z" / "TRAZZZZ12345678901.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"num_songs": 1, "artist_id": "ARX", "song_id": "SOX", "title": "X", "duration": 1.0}')
    clock.now += SensorSettings().song_seconds - 30
    quiet = tick(raw, cursor)
    assert not quiet.run_requests  # song_data is not listed on every tick
    clock.now += 30
    assert selected(tick(raw, quiet.cursor)) == SONGS_SIDE


def test_a_changed_song_file_is_seen_within_the_song_interval(raw, clock):
    cursor = tick(raw).cursor
    path = sorted((raw / "song_data").rglob("*.json"))[0]
    path.write_text(path.read_text().replace('"duration": ', '"duration": 1'))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    clock.now += SensorSettings().song_seconds
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


def test_a_wrong_sensor_setting_is_one_clear_message(monkeypatch):
    monkeypatch.setenv("SPARKIFY_SENSOR_SONG_SECONDS", "hourly")
    with pytest.raises(ConfigurationError, match="SPARKIFY_SENSOR_SONG_SECONDS must be a whole number, not 'hourly'"):
        build_defs("duckdb")
    monkeypatch.setenv("SPARKIFY_SENSOR_SONG_SECONDS", "0")
    with pytest.raises(ConfigurationError, match="must be 1 or more"):
        build_defs("duckdb")
    monkeypatch.delenv("SPARKIFY_SENSOR_SONG_SECONDS")
    monkeypatch.setenv("SPARKIFY_S3_EVENTS_QUEUE", "https://sqs.us-east-1.amazonaws.com/1/q")
    with pytest.raises(ConfigurationError, match="SPARKIFY_S3_EVENTS_QUEUE is set, but the raw data is not in S3"):
        build_defs("duckdb")


def test_a_cursor_of_the_previous_sensor_reports_no_log_file_again(raw):
    logs = {f.key: f.version for f in LocalFolderSource(root=str(raw)).list_files("log_data/")}
    old = json.dumps({"logs": logs, "songs": "0" * 64})
    result = tick(raw, old)
    assert selected(result) == SONGS_SIDE  # its song digest is not comparable: the song side reloads once
    assert not tick(raw, result.cursor).run_requests


# --- what a tick lists: an S3 bucket in memory that counts requests ----------------------------------


def day_key(day):
    return f"log_data/{day[:4]}/{day[5:7]}/{day}-events.json"


def days(n, first="2010-01-01"):
    import datetime as dt

    start = dt.date.fromisoformat(first)
    return [(start + dt.timedelta(d)).isoformat() for d in range(n)]


def song_keys(n):
    return [f"song_data/{i % 26:02d}/{i // 26 % 26:02d}/TR{i:016d}.json" for i in range(n)]


SETTINGS = SensorSettings(log_reconcile_seconds=600, song_seconds=3600, song_pages=20)


class Bucket:
    """A fake bucket, the real S3Source on it, and the sensor's logic on a clock advanced 30 s a tick."""

    def __init__(self, n_days=30, n_songs=10, settings=SETTINGS):
        self.s3 = CountingS3()
        for d in days(n_days):
            self.s3.put(day_key(d), d.encode())
        self.s3.put_many(song_keys(n_songs))
        self.settings, self.now, self.cursor = settings, 0.0, None

    def tick(self):
        """One tick: (the change, the ListObjectsV2 calls it made)."""
        before = self.s3.requests["ListObjectsV2"]
        with s3_source_on(self.s3) as source:
            change, self.cursor = evaluate(self.cursor, source, self.settings, self.now)
        self.now += 30
        return change, self.s3.requests["ListObjectsV2"] - before

    def ticks_until(self, predicate, limit):
        """How many ticks until one reports a change the predicate accepts (None: not within limit)."""
        for n in range(1, limit + 1):
            change, _ = self.tick()
            if predicate(change):
                return n
        return None


def test_a_quiet_tick_is_one_request_whatever_the_history_and_the_song_catalogue():
    b = Bucket(n_days=3650, n_songs=100_000)
    change, first = b.tick()
    assert len(change.logs) == 3650 and change.songs_changed  # the first tick loads everything
    assert first == 4 + 20  # all of log_data/ (3,650 keys), and the first 20 pages of a song pass
    ticks = [b.tick() for _ in range(10)]
    # The song pass lasts 100 pages at 20 a tick: 4 more ticks of the window and 20 song pages, the
    # last of which requests the song side (the first pass); then the window only.
    assert [calls for _, calls in ticks] == [21] * 4 + [1] * 6
    assert [c.songs_changed for c, _ in ticks] == [False] * 3 + [True] + [False] * 6


def test_a_new_day_and_a_window_day_reuploaded_or_deleted_are_seen_within_one_tick():
    b = Bucket(n_days=45)  # 2010-01-01 .. 2010-02-14: the window is February
    b.tick()
    b.s3.put(day_key("2010-02-15"), b"new")
    change, calls = b.tick()
    assert change.logs == {day_key("2010-02-15"): b.s3.objects[day_key("2010-02-15")]} and calls == 1
    b.s3.put(day_key("2010-02-03"), b"re-uploaded")
    assert list(b.tick()[0].logs) == [day_key("2010-02-03")]
    b.s3.delete(day_key("2010-02-04"))
    assert b.tick()[0].logs == {day_key("2010-02-04"): None}
    assert not b.tick()[0].any


def test_two_days_written_at_once_and_a_new_month_are_all_seen():
    b = Bucket(n_days=31)  # January
    b.tick()
    b.s3.put(day_key("2010-02-01"), b"a")
    b.s3.put(day_key("2010-02-02"), b"b")
    change, _ = b.tick()
    assert set(change.logs) == {day_key("2010-02-01"), day_key("2010-02-02")}
    assert json.loads(b.cursor)["logs"]["window"] == "log_data/2010/02/"
    b.s3.put(day_key("2010-02-01"), b"a again")  # the new window still sees re-uploads in its month
    assert list(b.tick()[0].logs) == [day_key("2010-02-01")]


@pytest.mark.parametrize("what", ["late day", "re-uploaded", "deleted"])
def test_an_older_day_is_seen_at_the_next_full_listing(what):
    b = Bucket(n_days=90)
    b.tick()
    key = day_key("2010-01-15")
    if what == "late day":
        key = day_key("2009-12-31")
        b.s3.put(key, b"late")
    elif what == "re-uploaded":
        b.s3.put(key, b"new content")
    else:
        b.s3.delete(key)
    # The first tick was a full listing at t=0; the next one is due at t=600 s, i.e. tick 21.
    ticks = b.ticks_until(lambda c: c.older_logs_changed, limit=40)
    assert ticks == SETTINGS.log_reconcile_seconds // 30
    assert not b.tick()[0].any  # and only once


def test_a_song_pass_spreads_over_ticks_and_catches_a_change_anywhere():
    b = Bucket(n_days=5, n_songs=2500, settings=SensorSettings(song_pages=1, song_seconds=3600))
    # The first tick loads everything; the first pass (3 pages, one a tick) reports when it ends.
    assert [b.tick()[0].songs_changed for _ in range(3)] == [True, False, True]
    b.s3.put(song_keys(2500)[1200], b"changed")  # in the middle page
    # The next pass starts 3,600 s after the last one started (tick 121), and ends two ticks later.
    ticks = b.ticks_until(lambda c: c.songs_changed, limit=200)
    assert ticks == 3600 // 30 - 3 + 3


def test_the_cursor_does_not_grow_with_history():
    sizes = {}
    for n in (30, 3650):
        b = Bucket(n_days=n)
        b.tick()
        sizes[n] = len(b.cursor)
        assert len(json.loads(b.cursor)["logs"]["files"]) <= 31
    assert sizes[3650] < sizes[30] * 1.2, sizes
