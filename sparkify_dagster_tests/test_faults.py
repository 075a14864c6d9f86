"""Faults: nothing lost, nothing half-done (issue "Bad input and faults: nothing lost, nobody in").

Fault injection, fast unless marked slow:
- S3 throttling (503 SlowDown), 5xx, a body cut off mid-read and an object that vanished between
  list and get, injected into the botocore clients that S3Source gets from dagster-aws's S3Resource
  (a ``before-send`` handler answers instead of moto's server, N times or always): retried by
  botocore's standard retry mode with backoff, then a SourceError naming the object;
- a warehouse statement failing (or the connection dropping) mid-transaction: DuckDB and a fake
  Redshift connection roll back, previous contents and the load manifest are intact, the original
  error surfaces (without the password);
- kill -9 of ``dagster asset materialize`` mid staging load and mid star rebuild (slow): the rerun
  equals a clean full load into a fresh file;
- a full_refresh job and an incremental materialize at once on one DuckDB file (slow).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import types
from pathlib import Path
from urllib.parse import unquote, urlsplit

import boto3
import botocore.endpoint
import dagster as dg
import duckdb
import pytest
from botocore.awsrequest import AWSResponse
from dagster_aws.s3 import S3Resource

from sparkify_dagster import source_s3 as source_module
from sparkify_dagster.catalog import SONGPLAYS, STAGING_EVENTS, STAGING_TABLES
from sparkify_dagster.cli.generate import generate_dataset
from sparkify_dagster.definitions import build_defs, build_source
from sparkify_dagster.source import SAMPLE_DATA_DIR, LocalFolderSource, RawFile, SourceError
from sparkify_dagster.source_s3 import S3Source
from sparkify_dagster.warehouse import duckdb as duckdb_module
from sparkify_dagster.warehouse import json_loader
from sparkify_dagster.warehouse.base import TooManyLoadErrors
from sparkify_dagster.warehouse.duckdb import DuckDBWarehouse
from sparkify_dagster.warehouse.redshift import RedshiftError, RedshiftWarehouse
from sparkify_dagster_tests.conftest import contents, delete_bucket, materialize_all, upload_tree

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


# --------------------------------------------------------------------------------------------- helpers
def assert_same(got: dict, want: dict, what: str) -> None:
    for table in want:
        assert got[table] == want[table], f"{table}: {what} ({len(got[table])} rows vs {len(want[table])})"


def assert_manifest_consistent(db: Path) -> None:
    """loaded_files says, file by file, exactly what staging and load_errors hold."""
    with duckdb.connect(str(db), read_only=True) as con:
        for table in STAGING_TABLES:
            bad = con.execute(
                f"""
                WITH staged AS (SELECT source_file, COUNT(*) AS n FROM "{table.name}" GROUP BY 1),
                     rejected AS (SELECT source_file, COUNT(*) AS n FROM load_errors
                                  WHERE table_name = ? GROUP BY 1),
                     manifest AS (SELECT * FROM loaded_files WHERE table_name = ?)
                SELECT coalesce(m.source_file, s.source_file) FROM manifest m
                FULL JOIN staged s USING (source_file) LEFT JOIN rejected r USING (source_file)
                WHERE m.source_file IS NULL
                   OR m.records_staged <> coalesce(s.n, 0)
                   OR m.records_rejected <> coalesce(r.n, 0)
                   OR m.records_read <> m.records_staged + m.records_rejected
                """,
                [table.name, table.name],
            ).fetchall()
            assert not bad, f"{table.name}: load manifest disagrees with the table for {bad[:5]}"
            dup = con.execute(
                "SELECT source_file FROM loaded_files WHERE table_name = ? GROUP BY 1 HAVING COUNT(*) > 1",
                [table.name],
            ).fetchall()
            assert not dup, f"{table.name}: files twice in the load manifest: {dup[:5]}"


def new_day(src: Path, dst: Path, shift_days: int, session_offset: int) -> list[str]:
    """A copy of a log file's records moved ``shift_days`` later, with new session ids (new events)."""
    import json

    lines = []
    for line in src.read_text().split("\n"):
        if line.strip():
            record = json.loads(line)
            record["sessionId"] = session_offset + record["sessionId"]
            record["ts"] += shift_days * 86_400_000
            lines.append(json.dumps(record))
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(lines))
    return lines


# ============================================================================================== S3
pytest.importorskip("moto.server", reason="moto[server] not installed (pip install -e '.[dev]')")
BUCKET = "sparkify-faults"
PREFIX = "landing"
SLOW_DOWN = (503, "SlowDown", "Please reduce your request rate.")
INTERNAL = (500, "InternalError", "We encountered an internal error. Please try again.")
BAD_GATEWAY = (502, "BadGateway", "Bad gateway.")
NO_SUCH_KEY = (404, "NoSuchKey", "The specified key does not exist.")


class _RawBody:
    """The raw stream of a faked response (what urllib3 would hand botocore)."""

    def __init__(self, body: bytes = b"", cut: bool = False):
        self.body, self.cut = body, cut

    def stream(self, **kwargs):
        yield self.body

    def read(self, amt=None):
        if self.cut:
            from urllib3.exceptions import ProtocolError

            raise ProtocolError("Connection broken: IncompleteRead(10 bytes read, 990 more expected)")
        body, self.body = self.body, b""
        return body

    def close(self):
        pass


class S3Faults:
    """Answers chosen S3 requests with an error instead of moto's server; counts every attempt.

    ``fail(operation, key_part, fault, times=None)``: the next ``times`` requests of ``operation``
    whose URL contains ``key_part`` get ``fault`` (None = every one). A fault is (status, code,
    message), or "cut" for a 200 whose body breaks mid-read.
    """

    def __init__(self):
        self.rules: list[dict] = []
        self.attempts: list[tuple[str, str]] = []  # (operation, url path), every request sent
        self.sleeps: list[float] = []  # the backoff botocore asked for
        self.clients: list = []
        self.lock = threading.Lock()

    def fail(self, operation: str, key_part: str, fault, times: int | None = None) -> None:
        self.rules.append({"op": operation, "part": key_part, "fault": fault, "left": times})

    def count(self, operation: str, key_part: str = "") -> int:
        return sum(1 for op, path in self.attempts if op == operation and key_part in path)

    def before_send(self, request, event_name: str, **kwargs):
        operation = event_name.rsplit(".", 1)[-1]
        url = urlsplit(request.url)
        path = unquote(url.path) + ("?" + unquote(url.query) if url.query else "")
        with self.lock:
            self.attempts.append((operation, path))
            for rule in self.rules:
                if rule["op"] == operation and rule["part"] in path and rule["left"] != 0:
                    if rule["left"] is not None:
                        rule["left"] -= 1
                    fault = rule["fault"]
                    break
            else:
                return None  # to moto's server
        if fault == "cut":
            return AWSResponse(request.url, 200, {"Content-Length": "1000"}, _RawBody(b"", cut=True))
        status, code, message = fault
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
                f"<RequestId>FAULT</RequestId></Error>").encode()
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _RawBody(body))


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    for k, v in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(k, raising=False)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    upload_tree(client, BUCKET, SAMPLE_DATA_DIR, PREFIX)
    yield client
    delete_bucket(client, BUCKET)


@pytest.fixture
def faults(s3, monkeypatch) -> S3Faults:
    """Every client S3Resource builds gets the fault injector; botocore's backoff is recorded, not slept."""
    injector = S3Faults()
    original = S3Resource.get_client

    def get_client(self):
        client = original(self)
        client.meta.events.register("before-send.s3", injector.before_send)
        injector.clients.append(client)
        return client

    monkeypatch.setattr(S3Resource, "get_client", get_client)
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=injector.sleeps.append))
    monkeypatch.setattr(source_module, "time", types.SimpleNamespace(sleep=injector.sleeps.append))
    return injector


def s3_source(**kwargs) -> S3Source:
    """The S3 source exactly as definitions.build_source makes it (default S3Resource retry settings)."""
    src = build_source(f"s3://{BUCKET}/{PREFIX}")
    return S3Source(uri=src.uri, s3=src.s3, **kwargs) if kwargs else src


LOG_KEY = "log_data/2018/11/2018-11-03-events.json"


def test_build_source_gets_botocores_standard_retry_mode(s3):
    """Answer to "should build_source pass max_attempts?": S3Resource's default (5) already gives
    botocore's standard retry mode — exponential backoff with jitter, throttling and 5xx retried."""
    src = s3_source()
    assert isinstance(src, S3Source)
    retries = src.s3.get_client().meta.config.retries
    assert retries["mode"] in ("standard", "adaptive")
    assert retries["total_max_attempts"] >= 4


def test_throttling_is_retried_with_backoff_then_succeeds(faults):
    faults.fail("GetObject", LOG_KEY, SLOW_DOWN, times=3)
    data = s3_source().read_bytes(LOG_KEY)
    assert data == (SAMPLE_DATA_DIR / LOG_KEY).read_bytes()
    assert faults.count("GetObject", LOG_KEY) == 4
    # Three backoffs, each within botocore's throttling cap (1 s x 2^attempt, jittered), not all zero.
    assert len(faults.sleeps) == 3 and sum(faults.sleeps) > 0
    assert all(0 <= s <= 2 ** i for i, s in enumerate(faults.sleeps))


def test_5xx_on_listing_and_on_concurrent_reads_are_retried(faults):
    faults.fail("ListObjectsV2", "log_data/", INTERNAL, times=2)
    for n, day in enumerate(("01", "02", "04")):
        faults.fail("GetObject", f"2018-11-{day}-events.json", (INTERNAL, BAD_GATEWAY, (504, "GatewayTimeout", "x"))[n],
                    times=2)
    src = s3_source(max_concurrency=3)
    files = src.list_files("log_data/")
    assert [f.key for f in files] == sorted(p.relative_to(SAMPLE_DATA_DIR).as_posix()
                                            for p in (SAMPLE_DATA_DIR / "log_data").rglob("*.json"))
    assert faults.count("ListObjectsV2") == 3
    got = src.read_many([f.key for f in files])
    assert got == [(SAMPLE_DATA_DIR / f.key).read_bytes() for f in files]
    assert len(faults.sleeps) == 2 + 3 * 2


def test_persistent_throttling_fails_with_a_source_error_naming_the_object(faults):
    faults.fail("GetObject", LOG_KEY, SLOW_DOWN)
    src = s3_source(max_concurrency=2)
    keys = [f.key for f in src.list_files("log_data/")]
    with pytest.raises(SourceError) as err:
        src.read_many(keys)
    message = str(err.value)
    total = faults.clients[-1].meta.config.retries["total_max_attempts"]
    assert faults.count("GetObject", LOG_KEY) == total  # every attempt botocore allows, no more
    assert f"s3://{BUCKET}/{PREFIX}/{LOG_KEY}" in message
    assert "SlowDown" in message and f"{total} attempts" in message
    assert "Traceback" not in message and "\n" not in message


def test_an_object_gone_between_list_and_get_is_named_and_not_retried(faults, s3):
    src = s3_source()
    files = src.list_files("log_data/")
    s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/{LOG_KEY}")
    with pytest.raises(SourceError, match="no longer exists") as err:
        src.read_many([f.key for f in files])
    assert f"s3://{BUCKET}/{PREFIX}/{LOG_KEY}" in str(err.value)
    assert faults.count("GetObject", LOG_KEY) == 1 and not faults.sleeps  # a 404 is not worth a retry


def test_a_failing_listing_is_a_source_error_naming_the_prefix(faults):
    faults.fail("ListObjectsV2", "", INTERNAL)
    with pytest.raises(SourceError) as err:
        s3_source().list_files("log_data/")
    assert f"s3://{BUCKET}/{PREFIX}/log_data/" in str(err.value) and "InternalError" in str(err.value)


def test_a_missing_bucket_and_access_denied_say_so(faults):
    with pytest.raises(SourceError, match="bucket does not exist"):
        S3Source(uri="s3://no-such-bucket-here/x", s3=S3Resource()).list_files("log_data/")
    faults.fail("GetObject", LOG_KEY, (403, "AccessDenied", "Access Denied"))
    with pytest.raises(SourceError, match="access denied") as err:
        s3_source().read_bytes(LOG_KEY)
    assert LOG_KEY in str(err.value) and faults.count("GetObject", LOG_KEY) == 1


def test_a_body_cut_off_mid_read_is_read_again_then_named(faults):
    faults.fail("GetObject", LOG_KEY, "cut", times=1)
    assert s3_source().read_bytes(LOG_KEY) == (SAMPLE_DATA_DIR / LOG_KEY).read_bytes()
    assert faults.count("GetObject", LOG_KEY) == 2
    faults.fail("GetObject", LOG_KEY, "cut")
    with pytest.raises(SourceError, match="cut off") as err:
        s3_source().read_bytes(LOG_KEY)
    assert f"s3://{BUCKET}/{PREFIX}/{LOG_KEY}" in str(err.value)


def test_a_failed_fetch_cancels_the_fetches_not_started(faults):
    song_keys = [f.key for f in s3_source().list_files("song_data/")]
    faults.fail("GetObject", song_keys[0], NO_SUCH_KEY)
    before = faults.count("GetObject")
    with pytest.raises(SourceError, match=song_keys[0]):
        s3_source(max_concurrency=1).read_many(song_keys)
    assert faults.count("GetObject") - before < len(song_keys) // 2


def _materialize(db: Path, raw_source, raise_on_error=True):
    defs = build_defs("duckdb")
    assets = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]
    return dg.materialize(list(defs.assets),
                          resources={"warehouse": DuckDBWarehouse(path=str(db)), "raw_data": raw_source},
                          selection=dg.AssetSelection.assets(*assets), raise_on_error=raise_on_error)


def _failure_messages(result) -> str:
    out = []
    for event in result.get_step_failure_events():
        error = event.event_specific_data.error
        while error is not None:
            out.append(f"{error.cls_name}: {error.message}")
            error = error.cause
    return "\n".join(out)


def test_a_run_through_intermittent_s3_faults_equals_a_local_load(faults, tmp_path):
    # Every listing and every log object fails twice first; one song file is cut off once.
    faults.fail("ListObjectsV2", "", SLOW_DOWN, times=2)
    for path in (SAMPLE_DATA_DIR / "log_data").rglob("*.json"):
        faults.fail("GetObject", path.name, INTERNAL, times=2)
    faults.fail("GetObject", "song_data/", "cut", times=1)
    assert _materialize(tmp_path / "s3.duckdb", s3_source()).success
    assert materialize_all(SAMPLE_DATA_DIR, tmp_path / "local.duckdb").success
    got = contents(tmp_path / "s3.duckdb", without=("load_id", "file_version"))
    assert_same(got, contents(tmp_path / "local.duckdb", without=("load_id", "file_version")), "S3 ≠ local")
    assert faults.sleeps


def test_a_run_that_cannot_read_an_object_fails_clearly_and_changes_nothing(faults, s3, tmp_path):
    db = tmp_path / "s3.duckdb"
    assert _materialize(db, s3_source()).success
    before = contents(db)
    # A day is re-delivered (new ETag), a new day arrives, and S3 keeps throttling the new day.
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{LOG_KEY}", Body=(SAMPLE_DATA_DIR / LOG_KEY).read_bytes()[:5000]
                  .rsplit(b"\n", 1)[0])
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/log_data/2018/11/2018-11-30-events.json",
                  Body=(SAMPLE_DATA_DIR / LOG_KEY).read_bytes())
    faults.fail("GetObject", "2018-11-30-events.json", SLOW_DOWN)
    result = _materialize(db, s3_source(), raise_on_error=False)
    assert not result.success
    messages = _failure_messages(result)
    assert "SourceError" in messages
    assert f"s3://{BUCKET}/{PREFIX}/log_data/2018/11/2018-11-30-events.json" in messages and "SlowDown" in messages
    assert_same(contents(db), before, "a failed load changed the warehouse")


# ================================================================== warehouse failure mid-transaction
class InjectedFault(Exception):
    pass


def _fail_on(monkeypatch, predicate, *, drop_connection=False):
    """Make the DuckDB session raise on the first statement matching ``predicate`` (optionally after
    closing its connection, as when the connection drops); returns the statements seen."""
    seen: list[str] = []
    original = duckdb_module._DuckDBSession.execute

    def execute(self, sql, params=None):
        seen.append(sql)
        if predicate(sql, seen):
            if drop_connection:
                self.con.close()
                raise duckdb.ConnectionException("connection dropped mid-transaction (injected)")
            raise InjectedFault(f"injected failure at: {sql[:60]}")
        return original(self, sql, params)

    monkeypatch.setattr(duckdb_module._DuckDBSession, "execute", execute)
    return seen


@pytest.fixture
def loaded(tmp_path):
    """A warehouse holding a full load of a small generated dataset, and its raw folder."""
    raw = tmp_path / "raw"
    generate_dataset(raw, songs=80, users=10, days=4, events_per_day=120, seed=5)
    db = tmp_path / "wh.duckdb"
    assert materialize_all(raw, db).success
    return raw, db


def _change_raw_data(raw: Path) -> None:
    """A re-delivered (shorter) day, and a new day: both a stale-row delete and an insert are needed."""
    days = sorted((raw / "log_data").rglob("*.json"))
    lines = days[1].read_text().split("\n")
    days[1].write_text("\n".join(lines[: len(lines) // 2]))
    new_day(days[0], raw / "log_data" / "2018" / "12" / "2018-12-01-events.json", 30, 700_000)


def _single_file_batches(monkeypatch):
    original = json_loader.iter_batches
    monkeypatch.setattr(json_loader, "iter_batches", lambda files, *_: original(files, 1))


@pytest.mark.parametrize("drop_connection", [False, True], ids=["statement-fails", "connection-drops"])
def test_duckdb_staging_load_failing_midway_rolls_back_everything(loaded, monkeypatch, drop_connection):
    raw, db = loaded
    before = contents(db)
    _change_raw_data(raw)
    _single_file_batches(monkeypatch)  # several batches: the staging insert reads all their Parquet files
    # The manifest is written last, after every file's rows were staged: fail there.
    seen = _fail_on(monkeypatch, lambda sql, seen: sql.lstrip().startswith('INSERT INTO "loaded_files"'),
                    drop_connection=drop_connection)
    wh = DuckDBWarehouse(path=str(db))
    files = LocalFolderSource(root=str(raw)).list_files("log_data/")
    with pytest.raises((InjectedFault, duckdb.ConnectionException)) as err:
        wh.load_staging(STAGING_EVENTS, LocalFolderSource(root=str(raw)), files, "run-x", logging.getLogger("t"),
                        jsonpaths=LocalFolderSource(root=str(raw)).event_jsonpaths())
    assert any(s.startswith('DELETE FROM "staging_events" WHERE') for s in seen)  # stale rows were deleted...
    assert sum(s.startswith('INSERT INTO "staging_events"') for s in seen) == 1  # ...and every file staged
    monkeypatch.undo()
    assert_same(contents(db), before, "a failed staging load left changes")
    assert_manifest_consistent(db)
    # The error that surfaces is the failure itself, not a failed ROLLBACK on a dead connection.
    assert "injected" in str(err.value), f"the original error was masked by: {err.value!r}"


@pytest.mark.parametrize("drop_connection", [False, True], ids=["statement-fails", "connection-drops"])
def test_duckdb_star_rebuild_failing_after_the_delete_keeps_the_old_rows(loaded, monkeypatch, drop_connection):
    raw, db = loaded
    before = contents(db)
    seen = _fail_on(monkeypatch, lambda sql, seen: sql.startswith('INSERT INTO "songplays"'),
                    drop_connection=drop_connection)
    wh = DuckDBWarehouse(path=str(db))
    with pytest.raises((InjectedFault, duckdb.ConnectionException)) as err:
        wh.rebuild_table(SONGPLAYS)
    assert 'DELETE FROM "songplays"' in seen
    monkeypatch.undo()
    assert before["songplays"] and contents(db) == before
    assert "injected" in str(err.value), f"the original error was masked by: {err.value!r}"


def test_a_failed_asset_in_a_run_leaves_the_previous_tables_and_manifest(loaded, monkeypatch):
    raw, db = loaded
    before = contents(db)
    _change_raw_data(raw)
    _fail_on(monkeypatch, lambda sql, seen: sql.startswith('INSERT INTO "staging_events"'))
    result = materialize_all(raw, db, raise_on_error=False)
    assert not result.success and "InjectedFault" in _failure_messages(result)
    monkeypatch.undo()
    assert_same(contents(db), before, "a failed run left changes")
    # And the next run brings it up to date as if nothing had happened.
    assert materialize_all(raw, db).success
    fresh = raw.parent / "fresh.duckdb"
    assert materialize_all(raw, fresh).success
    assert_same(contents(db, without=("load_id",)), contents(fresh, without=("load_id",)), "≠ a clean full load")


# --- Redshift, through a fake redshift_connector connection -----------------------------------------
PASSWORD = "Fault-Pa55word!xyz"
ARN = "arn:aws:iam::123456789012:role/sparkify-s3-read"
LOG_FILES = [RawFile(f"log_data/2018/11/2018-11-0{d}-events.json", 1, f"e{d}") for d in (1, 2, 3)]


class FakeRedshift:
    """A redshift_connector connection: records statements; ``fail(sql, conn)`` decides which one raises.

    Redshift's load bookkeeping is modelled in an in-memory DuckDB, so whatever query the loader uses
    to find rejects gets Redshift's answer: every statement has a query id; ``stl_load_errors`` keeps
    the rejects of this session's COPYs (``rejects[i]``: rows of the i-th COPY) across rollbacks;
    ``pg_last_copy_id()`` is the last COPY that began loading — a COPY failing before the load starts
    (access denied, a dropped connection) does not update it, one failing on its data does
    (https://docs.aws.amazon.com/redshift/latest/dg/PG_LAST_COPY_ID.html). With ``dead_after_failure``
    every statement after the failure raises too, as on a dropped connection.
    """

    SESSION = 4242

    def __init__(self, fail, rejects=(), dead_after_failure=False):
        self.statements: list[str] = []
        self.fail, self.rejects, self.dead_after_failure = fail, list(rejects), dead_after_failure
        self.copies, self.query_id, self.dead, self.autocommit = 0, 1000, False, False
        self.closed_after: list[int] = []  # len(statements) at each close()
        self.db = duckdb.connect()
        self.db.execute("CREATE TABLE stl_load_errors (query BIGINT, session INTEGER, filename VARCHAR, "
                        "line_number BIGINT, colname VARCHAR, err_reason VARCHAR, raw_line VARCHAR)")
        # SYS views number queries apart from STL (docs, STL_QUERY: "not the same identifier").
        self.db.execute("CREATE VIEW sys_load_error_detail AS SELECT query + 1000000 AS query_id, "
                        "session AS session_id, filename AS file_name, line_number, colname AS column_name, "
                        "err_reason AS error_message FROM stl_load_errors")
        self.db.execute("CREATE TABLE _copy_state (id BIGINT, n BIGINT)")
        self.db.execute("INSERT INTO _copy_state VALUES (-1, 0)")
        self.db.execute(f"CREATE MACRO pg_backend_pid() AS {self.SESSION}")
        self.db.execute("CREATE MACRO pg_last_copy_id() AS (SELECT id FROM _copy_state)")
        self.db.execute("CREATE MACRO pg_last_copy_count() AS (SELECT n FROM _copy_state)")

    def cursor(self):
        return _FakeCursor(self)

    def close(self):
        self.closed_after.append(len(self.statements))

    def copy(self, error):
        """A COPY: its rejects go to stl_load_errors unless it failed before loading."""
        rows = self.rejects[self.copies] if self.copies < len(self.rejects) else []
        self.copies += 1
        loads = error is None or isinstance(error, MaxErrorExceeded)
        if loads:
            self.db.execute("UPDATE _copy_state SET id = ?, n = ?", [self.query_id, 0 if error else 10])
            for row in rows:
                self.db.execute("INSERT INTO stl_load_errors VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [self.query_id, self.SESSION, *row])
        if error is not None:
            raise error


class MaxErrorExceeded(Exception):
    """What the driver raises when a COPY rejects more than MAXERROR records."""


class _FakeCursor:
    def __init__(self, conn):
        self.conn, self.description, self.rows = conn, None, []

    def execute(self, sql, params=None):
        import redshift_connector

        conn = self.conn
        conn.statements.append(sql)
        conn.query_id += 1
        self.description, self.rows = None, []
        if conn.dead:
            raise redshift_connector.InterfaceError("BrokenPipe: server socket closed. Please check that client "
                                                    "side networking configurations such as Proxies, firewalls, "
                                                    "VPN, etc. are not affecting your network connection.")
        error = conn.fail(sql, conn)
        if error is not None:
            conn.dead = conn.dead_after_failure
        if sql.startswith("COPY"):
            conn.copy(error)
        elif error is not None:
            raise error
        elif "stl_load_errors" in sql or "sys_load_error_detail" in sql or "pg_last_copy" in sql:
            cur = conn.db.execute(sql, params)
            self.description, self.rows = cur.description, cur.fetchall()
        elif sql.startswith("SELECT source_file, file_version"):
            self.description = [("k",)]
        elif sql.startswith("SELECT COUNT(*)"):
            self.description, self.rows = [("n",)], [(1,)]

    def fetchall(self):
        return self.rows

    def close(self):
        pass


class _FakeS3:
    def s3_uri(self, key):
        return f"s3://bkt/p/{key}"

    def has(self, key):
        return True

    def write_bytes(self, key, data):
        return key


def _redshift(monkeypatch, conn) -> RedshiftWarehouse:
    import redshift_connector

    monkeypatch.setattr(redshift_connector, "connect", lambda **kwargs: conn)
    return RedshiftWarehouse(host="h", database="d", user="u", password=PASSWORD, iam_role_arn=ARN,
                             region="us-west-2", max_errors=10)


def _second_copy_fails(error):
    def fail(sql, conn):
        return error if sql.startswith("COPY") and conn.copies == 1 else None
    return fail


def _assert_rolled_back_and_clean(conn: FakeRedshift, err: pytest.ExceptionInfo, original: str) -> None:
    sqls = conn.statements
    begin = sqls.index("BEGIN")
    assert "ROLLBACK" in sqls[begin:], "no ROLLBACK after the failure"
    assert "COMMIT" not in sqls[begin: sqls.index("ROLLBACK")]
    assert conn.closed_after and conn.closed_after[-1] > sqls.index("ROLLBACK"), "connection left open"
    text = "".join(traceback.format_exception(err.value))
    assert PASSWORD not in text and PASSWORD not in repr(err.value)
    assert original in str(err.value), f"the original error did not surface; got {type(err.value).__name__}: {err.value}"


def test_redshift_statement_failing_mid_load_rolls_back_and_surfaces(monkeypatch):
    import redshift_connector

    boom = redshift_connector.ProgrammingError("S3ServiceException:Access Denied,Status 403 (injected)")
    conn = FakeRedshift(_second_copy_fails(boom))
    with pytest.raises(RedshiftError) as err:  # the server's words, and which statement failed
        _redshift(monkeypatch, conn).load_staging(STAGING_EVENTS, _FakeS3(), LOG_FILES, "run-1",
                                                  logging.getLogger("t"))
    _assert_rolled_back_and_clean(conn, err, "Access Denied")
    assert "statement: COPY" in str(err.value) and err.value.__cause__ is boom
    after = conn.statements[conn.statements.index("ROLLBACK"):]
    assert not any(s.startswith("INSERT") for s in after)


def test_redshift_failure_after_a_copy_with_tolerated_rejects_is_not_blamed_on_them(monkeypatch):
    """Day 1 loads with one reject (under MAXERROR); day 2's COPY then fails for another reason.
    The error is day 2's; day 1's rejects must not be reported as a MAXERROR failure nor recorded."""
    import redshift_connector

    day1_reject = [("s3://bkt/p/log_data/2018/11/2018-11-01-events.json", 3, "ts", "Invalid digit", "{}")]
    boom = redshift_connector.ProgrammingError("S3ServiceException:Access Denied,Status 403 (injected)")
    conn = FakeRedshift(_second_copy_fails(boom), rejects=[day1_reject])
    with pytest.raises(Exception) as err:
        _redshift(monkeypatch, conn).load_staging(STAGING_EVENTS, _FakeS3(), LOG_FILES, "run-1",
                                                  logging.getLogger("t"))
    assert not isinstance(err.value, TooManyLoadErrors), f"misreported as: {err.value}"
    _assert_rolled_back_and_clean(conn, err, "Access Denied")
    after = conn.statements[conn.statements.index("ROLLBACK"):]
    assert not any(s.startswith("INSERT") for s in after), "rolled-back rejects were recorded again"


def test_redshift_copy_over_maxerror_after_tolerated_rejects_reports_its_own_rejects(monkeypatch):
    day1 = [("s3://bkt/p/log_data/2018/11/2018-11-01-events.json", 3, "ts", "Invalid digit", "{}")]
    day2 = [("s3://bkt/p/log_data/2018/11/2018-11-02-events.json", n, "status", "Invalid digit", "{}")
            for n in range(1, 13)]
    conn = FakeRedshift(_second_copy_fails(MaxErrorExceeded("Load into table failed. Check 'stl_load_errors'")),
                        rejects=[day1, day2])
    with pytest.raises(TooManyLoadErrors, match="2018-11-02-events.json line 1 column status") as err:
        _redshift(monkeypatch, conn).load_staging(STAGING_EVENTS, _FakeS3(), LOG_FILES, "run-1",
                                                  logging.getLogger("t"))
    assert PASSWORD not in "".join(traceback.format_exception(err.value))
    sqls = conn.statements
    assert "ROLLBACK" in sqls and sqls[-1] == "COMMIT"  # the rejects are kept, in their own transaction


def test_redshift_connection_dropped_mid_load_surfaces_the_drop_without_the_password(monkeypatch):
    import redshift_connector

    drop = redshift_connector.InterfaceError("connection reset by peer during COPY (injected)")
    conn = FakeRedshift(_second_copy_fails(drop), dead_after_failure=True)
    with pytest.raises(Exception) as err:
        _redshift(monkeypatch, conn).load_staging(STAGING_EVENTS, _FakeS3(), LOG_FILES, "run-1",
                                                  logging.getLogger("t"))
    _assert_rolled_back_and_clean(conn, err, "connection reset by peer during COPY")


@pytest.mark.parametrize("dead", [False, True], ids=["statement-fails", "connection-drops"])
def test_redshift_star_rebuild_failing_after_the_delete_rolls_back(monkeypatch, dead):
    import redshift_connector

    def fail(sql, conn):
        if sql.startswith('INSERT INTO "songplays"'):
            return redshift_connector.InterfaceError("connection reset by peer during INSERT (injected)")
        return None

    conn = FakeRedshift(fail, dead_after_failure=dead)
    wh = _redshift(monkeypatch, conn)
    with pytest.raises(Exception) as err:
        wh.rebuild_table(SONGPLAYS)
    # Every table the rebuild reads is locked with the one it writes, at once (no two runs deadlock).
    locked = 'LOCK "staging_events", "staging_songs", "songplays", "users", "songs", "artists"'
    assert conn.statements[:3] == ["BEGIN", locked, 'DELETE FROM "songplays"']
    _assert_rolled_back_and_clean(conn, err, "connection reset by peer during INSERT")


# ==================================================================== kill -9, concurrency (slow)
def _env(db: Path, raw: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARKIFY_", "DAGSTER_HOME"))}
    env.update({"SPARKIFY_DUCKDB_PATH": str(db), "SPARKIFY_DATA_URI": str(raw), "PYTHONUNBUFFERED": "1"})
    return env


MATERIALIZE = ["asset", "materialize", "-m", "sparkify_dagster", "--select", "*"]


def run_and_kill(args: list[str], env: dict, trigger, delay: float, timeout: float = 600) -> tuple[int, list[str]]:
    """Start the dagster CLI; SIGKILL it ``delay`` seconds after a log line satisfies ``trigger``."""
    proc = subprocess.Popen([DAGSTER, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    killer: list[threading.Timer] = []
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stdout:
            lines.append(line)
            if not killer and trigger(line):
                timer = threading.Timer(delay, lambda: proc.poll() is None and os.kill(proc.pid, signal.SIGKILL))
                timer.start()
                killer.append(timer)
            assert time.monotonic() < deadline, "the run did not end in time"
        return proc.wait(timeout=60), lines
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _mid_staging_batch(line: str) -> bool:
    """staging_events has staged a batch of files and has more to read (so it has not committed)."""
    import re

    m = re.search(r"staging_events: ([\d,]+)/([\d,]+) files read", line)
    return bool(m) and int(m.group(1).replace(",", "")) < int(m.group(2).replace(",", ""))


def _run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([DAGSTER, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def big_dataset(tmp_path_factory):
    """Large enough that staging_events reads several 64 MB batches and songplays takes ~1 s or more."""
    root = tmp_path_factory.mktemp("big") / "raw"
    generate_dataset(root, songs=3000, users=300, days=20, events_per_day=15_000, seed=21)
    return root


@pytest.mark.slow
def test_kill_9_mid_staging_and_mid_star_rebuild_then_rerun_equals_a_clean_load(big_dataset, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(big_dataset, raw, ignore=shutil.ignore_patterns("log_data"))
    days = sorted((big_dataset / "log_data").rglob("*.json"))
    for day in days[:8]:
        (raw / day.relative_to(big_dataset)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(day, raw / day.relative_to(big_dataset))
    db = tmp_path / "wh.duckdb"
    env = _env(db, raw)
    assert _run(MATERIALIZE, env).returncode == 0
    committed = contents(db)

    # 1. The rest of the month arrives and day 1 is re-delivered; kill -9 once a batch is staged.
    for day in days[8:]:
        (raw / day.relative_to(big_dataset)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(day, raw / day.relative_to(big_dataset))
    first = raw / days[0].relative_to(big_dataset)
    first.write_text(first.read_text().rsplit("\n", 100)[0])
    small_batches = {**env, "SPARKIFY_LOAD_BATCH_MB": "1"}  # a progress line after each file
    code, out = run_and_kill(MATERIALIZE, small_batches, _mid_staging_batch, delay=0.1)
    log = "".join(out)
    assert code == -signal.SIGKILL, log[-3000:]
    assert not re.search(r"staging_events: [\d,]+ files loaded", log), "killed too late: staging had committed"
    assert_same(contents(db), committed, "kill -9 mid staging load left a partial load")
    assert_manifest_consistent(db)

    # 2. The rerun completes; then a new day arrives and the run is killed mid songplays rebuild.
    done = _run(MATERIALIZE, env)
    assert done.returncode == 0, done.stderr[-3000:]
    complete = contents(db)
    new_day(days[-1], raw / "log_data" / "2018" / "12" / "2018-12-24-events.json", 30, 900_000)
    # A song file changes too, so songplays is rebuilt in full (a new day alone only replaces its keys,
    # which is over before the kill).
    song = sorted((raw / "song_data").rglob("*.json"))[0]
    record = json.loads(song.read_text())
    record["year"] = (record.get("year") or 0) + 1
    song.write_text(json.dumps(record))
    # The kill lands 0.1 s into the step: the rebuild is a fraction of a second at this size.
    code, out = run_and_kill(MATERIALIZE, env, lambda line: 'Started execution of step "songplays"' in line,
                             delay=0.1)
    log = "".join(out)
    assert code == -signal.SIGKILL, log[-3000:]
    # The materialization is reported right after the rebuild's transaction commits (the checks follow).
    assert "Materialized value songplays." not in log, "killed too late: songplays had committed"
    assert 'Finished execution of step "songplays"' not in log, "killed too late: songplays had committed"
    after_kill = contents(db)
    assert after_kill["songplays"] == complete["songplays"], "kill -9 mid rebuild left a half-built songplays"
    assert after_kill["time"] == complete["time"]
    assert after_kill["staging_events"] != complete["staging_events"]  # the new day had been staged
    assert_manifest_consistent(db)

    # 3. The rerun equals a clean full load of the final raw data into a fresh file.
    done = _run(MATERIALIZE, env)
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = tmp_path / "fresh.duckdb"
    assert _run(MATERIALIZE, _env(fresh, raw)).returncode == 0
    assert_same(contents(db, without=("load_id",)), contents(fresh, without=("load_id",)),
                "rerun after kill -9 ≠ a clean full load")
    assert_manifest_consistent(db)


@pytest.mark.slow
def test_full_refresh_job_and_incremental_materialize_at_once_agree_with_a_clean_load(tmp_path):
    raw = tmp_path / "raw"
    generate_dataset(raw, songs=1500, users=100, days=8, events_per_day=6000, seed=8)
    days = sorted((raw / "log_data").rglob("*.json"))
    held_back = {day: day.read_bytes() for day in days[5:]}
    for day in held_back:
        day.unlink()
    db = tmp_path / "wh.duckdb"
    env = _env(db, raw)
    assert _run(MATERIALIZE, env).returncode == 0
    for day, data in held_back.items():  # new days arrive; both runs see them
        day.write_bytes(data)
    started = time.monotonic()
    procs = [subprocess.Popen([DAGSTER, *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
             for args in (["job", "execute", "-m", "sparkify_dagster", "-j", "full_refresh"], MATERIALIZE)]
    try:
        outcomes = [(p.communicate(timeout=300)[1], p.returncode) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
    assert time.monotonic() - started < 300, "two runs at once did not finish in bounded time"
    for err, code in outcomes:
        assert code == 0, err[-3000:]
    fresh = tmp_path / "fresh.duckdb"
    assert _run(MATERIALIZE, _env(fresh, raw)).returncode == 0
    assert_same(contents(db, without=("load_id",)), contents(fresh, without=("load_id",)),
                "full_refresh + incremental at once ≠ a clean full load")
    assert_manifest_consistent(db)
