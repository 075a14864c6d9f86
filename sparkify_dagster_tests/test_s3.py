"""S3 as the raw source on the embedded engine, against a real S3 API on loopback (moto's server)."""

import json
import shutil
from pathlib import Path

import boto3
import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from sparkify_dagster.assets.analytics import ANALYSES
from sparkify_dagster.definitions import build_defs
from sparkify_dagster.sensors import new_raw_files_sensor
from sparkify_dagster.source import SAMPLE_DATA_DIR, LocalFolderSource
from sparkify_dagster.source_s3 import S3Source
from sparkify_dagster.warehouse.duckdb import DuckDBWarehouse
from sparkify_dagster_tests.conftest import delete_bucket, materialize_all, upload_tree

pytest.importorskip("moto.server", reason="moto[server] not installed (pip install -e '.[dev]')")
BUCKET = "sparkify-raw"
PREFIX = "landing/v1"


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    for k, v in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    yield client
    delete_bucket(client, BUCKET)


def upload(client, root: Path, prefix: str = PREFIX) -> int:
    return upload_tree(client, BUCKET, root, prefix)


def source() -> S3Source:
    return S3Source(uri=f"s3://{BUCKET}/{PREFIX}", s3=S3Resource(), max_concurrency=4)


def run(db, raw_source):
    return materialize_all(raw_source, db)


def rows(db, sql):
    return DuckDBWarehouse(path=str(db)).query(sql)


def test_listing_is_paginated_prefix_exact_and_ignores_neighbours(s3):
    upload(s3, SAMPLE_DATA_DIR)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/log_data_old/2018/11/2018-11-01-events.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/log_data/README.txt", Body=b"not json")
    logs = source().list_files("log_data/")
    assert logs and all(f.key.startswith("log_data/") and f.key.endswith(".json") for f in logs)
    songs = source().list_files("song_data/")
    assert len(songs) == len(list((SAMPLE_DATA_DIR / "song_data").rglob("*.json")))
    assert all(f.version for f in songs)  # ETags


def test_pages_after_a_key_are_prefix_exact(s3):
    upload(s3, SAMPLE_DATA_DIR)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/log_data/2018/12/2018-12-01-events.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/log_data_old/2018/12/2018-12-02-events.json", Body=b"{}")
    pages = list(source().list_pages("log_data/", "log_data/2018/12/"))
    assert [f.key for p in pages for f in p.files] == ["log_data/2018/12/2018-12-01-events.json"]
    everything = [f.key for p in source().list_pages("log_data/") for f in p.files]
    assert everything == [f.key for f in source().list_files("log_data/")]


def test_load_add_a_day_change_a_day_add_a_song_matches_local_full_load(s3, tmp_path):
    db = tmp_path / "s3.duckdb"
    upload(s3, SAMPLE_DATA_DIR)
    assert run(db, source()).success
    events_before = rows(db, "SELECT COUNT(*) FROM staging_events")[0][0]
    # A new day arrives.
    local = tmp_path / "final"
    shutil.copytree(SAMPLE_DATA_DIR, local)
    first_day = sorted((local / "log_data").rglob("*.json"))[0]
    new_day = local / "log_data" / "2018" / "12" / "2018-12-24-events.json"
    new_day.parent.mkdir(parents=True)
    new_day.write_text(first_day.read_text())
    upload(s3, local)
    result = run(db, source())
    md = {e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
          for e in result.get_asset_materialization_events()}
    assert md["staging_events"]["files"].value == 1
    # A day re-uploaded with different content (a new ETag), and a new song.
    lines = first_day.read_text().split("\n")
    first_day.write_text("\n".join(lines[: len(lines) // 2]))
    song = {"num_songs": 1, "artist_id": "ARS3ARTIST00000001", "artist_latitude": 1.5, "artist_longitude": 2.5,
            "artist_location": "Cloud", "artist_name": "S3 Artist", "song_id": "SOS3SONG0000000001",
            "title": "Object Storage", "duration": 99.0, "year": 2024}
    song_path = local / "song_data" / "A" / "S" / "3" / "TRAS3SONG00000001.json"
    song_path.parent.mkdir(parents=True)
    song_path.write_text(json.dumps(song))
    upload(s3, local)
    assert run(db, source()).success
    assert rows(db, "SELECT COUNT(*) FROM staging_events")[0][0] != events_before
    # Identical to a full load of the final data from a local folder.
    full = tmp_path / "full.duckdb"
    assert materialize_all(local, full).success
    for table in ("staging_events", "staging_songs", "songplays", "users", "songs", "artists", "time"):
        assert rows(db, f'SELECT * FROM "{table}" ORDER BY ALL') == rows(full, f'SELECT * FROM "{table}" ORDER BY ALL')


def test_sensor_on_s3_sees_new_and_reuploaded_keys(s3):
    upload(s3, SAMPLE_DATA_DIR)
    def tick(cursor):
        with dg.build_sensor_context(cursor=cursor, resources={"raw_data": source()}) as context:
            return new_raw_files_sensor(context)

    first = tick(None)
    assert first.run_requests
    assert not tick(first.cursor).run_requests
    key = f"{PREFIX}/log_data/2018/11/2018-11-01-events.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"userId":"1"}')  # same key, new content, new ETag
    again = tick(first.cursor)
    assert {k.to_user_string() for k in again.run_requests[0].asset_selection} == {
        "staging_events", "users", "songplays", "time", *(a.name for a in ANALYSES)}


def test_a_vanished_object_fails_with_a_clear_message(s3):
    upload(s3, SAMPLE_DATA_DIR)
    src = source()
    files = src.list_files("log_data/")
    s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/{files[0].key}")
    with pytest.raises(Exception, match="cannot read s3://sparkify-raw/landing/v1/log_data/"):
        src.read_many([files[0].key])


def test_data_uri_s3_selects_the_s3_source(s3, monkeypatch):
    monkeypatch.setenv("SPARKIFY_DATA_URI", f"s3://{BUCKET}/{PREFIX}")
    assert isinstance(build_defs("duckdb").resources["raw_data"], S3Source)
    monkeypatch.setenv("SPARKIFY_DATA_URI", str(SAMPLE_DATA_DIR))
    assert isinstance(build_defs("duckdb").resources["raw_data"], LocalFolderSource)


def test_s3_event_notifications_over_sqs_are_seen_at_the_next_tick(s3, monkeypatch):
    """moto delivers the bucket's notifications to SQS: a new song file and a late log day (before the
    window) each request their side at the next tick, long before the song pass or the full listing."""
    from sparkify_dagster import sensors

    upload(s3, SAMPLE_DATA_DIR)
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="sparkify-raw-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
    monkeypatch.setenv("SPARKIFY_S3_EVENTS_QUEUE", queue)
    now = [1_700_000_000.0]
    monkeypatch.setattr(sensors, "time", type("Clock", (), {"time": staticmethod(lambda: now[0])}))

    def tick(cursor):
        now[0] += 30
        with dg.build_sensor_context(cursor=cursor, resources={"raw_data": source()}) as context:
            return new_raw_files_sensor(context)

    cursor = tick(None).cursor  # the first load; its notifications (the upload) are drained with it
    quiet = tick(cursor)
    assert not quiet.run_requests
    song = {"num_songs": 1, "artist_id": "ARSQS", "song_id": "SOSQS", "title": "Queued", "duration": 1.0}
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/song_data/Q/Q/Q/TRQQQSQS.json", Body=json.dumps(song).encode())
    songs = tick(quiet.cursor)
    assert {k.to_user_string() for k in songs.run_requests[0].asset_selection} >= {"staging_songs", "songs", "artists"}
    assert "staging_events" not in {k.to_user_string() for k in songs.run_requests[0].asset_selection}
    # A day from before the window (November 2018): only a full listing would find it; the notification
    # brings that listing forward to this tick.
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/log_data/2018/10/2018-10-31-events.json", Body=b'{"userId":"1"}')
    late = tick(songs.cursor)
    assert "staging_events" in {k.to_user_string() for k in late.run_requests[0].asset_selection}
    # Every message was deleted once used: the next tick receives nothing and requests nothing.
    assert not tick(late.cursor).run_requests
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)
