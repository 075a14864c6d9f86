"""The Redshift target end to end over the wire: `dagster asset materialize` with SPARKIFY_TARGET=redshift
in a subprocess, the unmodified RedshiftWarehouse talking redshift-connector over TLS to the stand-in
(``redshift_standin/``), raw data in moto's S3. Each run is compared, table by table, with what the
embedded engine builds from the same files.

Covers: the real sample and generated data (a second day added, equal again); bad records rejected
by both engines with the same file and line; the checks job; a session killed mid-COPY and mid-star
rebuild; two runs at once; both isolation modes; a refused connection and a wrong password; how many
connections and DDL statements a run costs.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from sparkify_dagster.cli.generate import generate_dataset
from sparkify_dagster_tests.conftest import REAL_SAMPLE, requires_real_sample, upload_tree, write_events, write_song
from sparkify_dagster_tests.redshift_wire import (
    DAGSTER,
    REJECT_COLUMNS,
    REPO,
    assert_same_tables,
    build_embedded,
    dagster,
    duckdb_tables,
    materialize,
    query,
    redshift_env,
    redshift_tables,
    run_statements,
    s3_client,
)

pytestmark = pytest.mark.redshift_standin
BUCKET = "sparkify-wire"


@pytest.fixture(scope="module")
def aws(s3_endpoint, redshift_standin):
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    return {"endpoint": s3_endpoint, "s3": client, "role": redshift_standin.create_copy_role()}


@pytest.fixture
def standin(redshift_standin):
    """The stand-in with an empty warehouse, SERIALIZABLE (Redshift's isolation before 2024), no faults."""
    redshift_standin.reset()
    redshift_standin.set_isolation("serializable")
    redshift_standin.copy_delay_seconds = 0
    redshift_standin.statement_delays.clear()
    redshift_standin.serverless = False
    yield redshift_standin
    redshift_standin.copy_delay_seconds = 0
    redshift_standin.statement_delays.clear()
    redshift_standin.serverless = False


def _deployment(standin, deployment: str) -> dict[str, str]:
    """The stand-in as a provisioned cluster or as a Serverless workgroup (no STL views at all), and
    the setting that tells the project which."""
    standin.serverless = deployment == "serverless"
    return {"REDSHIFT_WORKGROUP": "sparkify-wg"} if standin.serverless else {}


def _no_stl_on_serverless(standin, deployment: str) -> None:
    if deployment == "serverless":
        sent = run_statements(standin)[1]
        assert sent and not [sql for sql in sent if "stl_" in sql.lower()], "an STL view queried on Serverless"


def _prefix(request) -> str:
    """A prefix of the bucket for this test alone (parametrized cases too: the tail tells them apart)."""
    name = request.node.name
    return name.replace("[", "-").replace("]", "").replace(" ", "-")[:50] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]


def _upload(aws, root: Path, prefix: str) -> str:
    upload_tree(aws["s3"], BUCKET, root, prefix)
    return f"s3://{BUCKET}/{prefix}"


def _ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


def _log_day_copy(src: Path, dst: Path, keep: set[str]) -> None:
    """Copy a raw-data tree, keeping only the log files of the given days."""
    shutil.copytree(src, dst, ignore=lambda folder, names: [
        n for n in names if n.endswith("-events.json") and n[:10] not in keep])


# ------------------------------------------------------------------ the whole graph, equal to DuckDB
@requires_real_sample
def test_the_real_sample_over_the_wire_equals_the_embedded_engine_then_a_new_day(standin, aws, tmp_path, request):
    days = sorted(p.name[:10] for p in (REAL_SAMPLE / "log_data").rglob("*-events.json"))
    first = tmp_path / "first"
    _log_day_copy(REAL_SAMPLE, first, set(days[:-1]))
    prefix = _prefix(request)
    data_uri = _upload(aws, first, prefix)
    env = redshift_env(standin, aws["endpoint"], data_uri, aws["role"], tmp_path / "home")

    standin.statements.clear()
    _ok(materialize(env))
    connections, executed = run_statements(standin)
    build_embedded(tmp_path / "first.duckdb", data_uri, aws["endpoint"])
    got, want = redshift_tables(standin), duckdb_tables(tmp_path / "first.duckdb")
    assert len(want["staging_events"]) > 7000 and len(want["songplays"]) > 6000
    assert_same_tables(got, want)
    # One run: a connection or two (the staging loads run side by side), DDL only for missing tables.
    creates = [sql for sql in executed if sql.lstrip().upper().startswith("CREATE TABLE")]
    assert connections <= 3, f"{connections} connections in one run"
    assert len(creates) == 10 + 7, creates  # 9 warehouse tables, star_sources, 7 analytics tables, once each

    # The last day arrives: loaded, equal again; no DDL now that every table exists.
    upload_tree(aws["s3"], BUCKET, REAL_SAMPLE, prefix)
    standin.statements.clear()
    _ok(materialize(env))
    connections, executed = run_statements(standin)
    assert connections <= 3
    assert not [sql for sql in executed if sql.lstrip().upper().startswith(("CREATE TABLE", "CREATE SCHEMA"))]
    # Only the new day is copied (the song files did not change), and the star tables replace only its keys.
    copies = [sql for sql in executed if sql.lstrip().upper().startswith("COPY")]
    assert len(copies) == 1 and '"staging_events_load"' in copies[0], copies
    assert not [sql for sql in executed if sql.startswith('DELETE FROM "songplays"\n') or sql == 'DELETE FROM "songplays"']
    build_embedded(tmp_path / "all.duckdb", data_uri, aws["endpoint"])
    got, want = redshift_tables(standin), duckdb_tables(tmp_path / "all.duckdb")
    assert len(got["loaded_files(events)"]) == len(days)
    assert_same_tables(got, want)


def _copies(standin) -> list[str]:
    return [sql for sql in run_statements(standin)[1] if sql.lstrip().upper().startswith("COPY")]


def test_days_in_any_order_late_repeated_redelivered_and_deleted_equal_one_full_load_on_both_engines(
        standin, aws, tmp_path, request):
    """The embedded engine's incremental test, on Redshift: each run COPYs only the new or changed day,
    and after every run both engines hold what one full load of the raw data holds."""
    full = tmp_path / "full"
    generate_dataset(full, songs=60, users=8, days=6, events_per_day=60, seed=21)
    days = sorted((full / "log_data").rglob("*-events.json"))
    raw = tmp_path / "raw"
    _log_day_copy(full, raw, set())  # the songs, no log file yet
    prefix = _prefix(request)
    data_uri = _upload(aws, raw, prefix)
    env = redshift_env(standin, aws["endpoint"], data_uri, aws["role"], tmp_path / "home")
    embedded = tmp_path / "inc.duckdb"

    def arrive(day: Path, text: str | None = None) -> None:
        key = f"{prefix}/{day.relative_to(full)}"
        aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=(text if text is not None else day.read_text()).encode())

    def run_both(step: str, copies_expected: int) -> None:
        standin.statements.clear()
        _ok(materialize(env))
        assert len(_copies(standin)) == copies_expected, f"{step}: {_copies(standin)}"
        build_embedded(embedded, data_uri, aws["endpoint"])  # the embedded engine, incrementally too
        clean = tmp_path / f"clean-{step}.duckdb"
        build_embedded(clean, data_uri, aws["endpoint"])
        want = duckdb_tables(clean)
        assert_same_tables(redshift_tables(standin), want)
        assert_same_tables(duckdb_tables(embedded), want)

    run_both("songs only", 1)  # the song manifest
    for n, day in enumerate([days[3], days[5], days[0]]):  # newer days first, an older one late
        arrive(day)
        run_both(f"day {n}", 1)
    run_both("nothing new", 0)
    arrive(days[3])  # the same bytes again: the same ETag, nothing to do
    run_both("repeat", 0)
    lines = days[5].read_text().splitlines()
    arrive(days[5], "\n".join(lines[: len(lines) // 2]))  # re-delivered with different content
    run_both("re-delivered", 1)
    aws["s3"].delete_object(Bucket=BUCKET, Key=f"{prefix}/{days[0].relative_to(full)}")
    run_both("deleted", 0)


BAD_LINES = [
    '{"artist": "A", "auth": "Logged In", "userId": "7", "page": "NextSong", "ts": 1541121934796, '
    '"sessionId": 5, "itemInSession": 0, "length": 200.5, "song": "S", "level": "free"}',
    '{"userId": "7", "page": "Home", "ts": 1541121934797, "sessionId": 5, "itemInSession": 1',  # malformed
    '{"userId": "7", "page": "Home", "ts": "abc", "sessionId": 5, "itemInSession": 2}',  # "abc" into bigint
    '{"userId": "7", "page": "Home", "ts": 1541121934799, "sessionId": 5, "itemInSession": 3, "gender": "'
    + "F" * 9 + '"}',  # longer than varchar(8)
    '{"userId": "7", "page": "NextSong", "ts": 1541121934800, "sessionId": 5, "itemInSession": 4, "length": NaN}',
    '{"userId": "7", "page": "Home", "ts": 1541121934801, "sessionId": 5, "itemInSession": 5,}',  # trailing comma
    '{"userId": "7", "page": "Home", "ts": 1541121934802, "sessionId": 5, "itemInSession": 6.5}',  # fraction
    '{"userId": "7", "page": "Home", "ts": 1541121934803, "sessionId": 99999999999999999999, "itemInSession": 7}',
    '["not", "an", "object"]',
    '',
    '{"userId": "8", "page": "Home", "ts": "", "sessionId": "12", "itemInSession": 8, "status": ""}',  # "" -> NULL
    '{"userId": "8", "page": "Home", "ts": 1541121934805, "sessionId": 6,',  # object spread over two lines
    '  "itemInSession": 9, "registration": 1.540919166796E12}',
    '{"userId": "8", "page": "Home", "ts": 1541121934806, "sessionId": 6, "itemInSession": 10} '
    '{"userId": "8", "page": "Home", "ts": 1541121934807, "sessionId": 6, "itemInSession": 11}',  # back to back
    '{"userId": 9, "page": true, "ts": 1541121934808, "sessionId": 7, "itemInSession": 0, "location": {"a": 1}}',
]


def _bad_dataset(root: Path) -> None:
    generate_dataset(root, songs=40, users=6, days=2, events_per_day=50, seed=13)
    # Every record names a level, so the users and songplays that the good ones make pass the checks.
    lines = [line if '"level"' in line else line.replace('"page"', '"level": "paid", "page"', 1) for line in BAD_LINES]
    write_events(root, "2018-11-05", [], raw_lines=lines)
    # Bytes that are not UTF-8 on one line: that line alone is rejected.
    path = root / "log_data" / "2018" / "11" / "2018-11-06-events.json"
    path.write_bytes(b'\xef\xbb\xbf{"userId": "10", "page": "Home", "ts": 1541121934900, "sessionId": 8, '
                     b'"itemInSession": 0, "level": "free"}\n{"userId": "10", "page": "Home", "firstName": "\xff\xfe", "ts": 1}\n'
                     b'{"userId": "10", "page": "Home", "ts": 1541121934902, "sessionId": 8, "itemInSession": 2, '
                     b'"level": "free"}')
    # A song_id in two files with different content, and a song file with a bad year.
    twin = {"num_songs": 1, "artist_id": "ARTWIN0000000001", "artist_latitude": None, "artist_longitude": None,
            "artist_location": "", "artist_name": "Twins", "song_id": "SOTWIN0000000001", "title": "Zulu",
            "duration": 200.0, "year": 0}
    write_song(root, twin, "TRAAAAA000000001")
    write_song(root, {**twin, "title": "Alpha", "duration": 201.0}, "TRZZZZZ000000001")
    write_song(root, {**twin, "song_id": "SOBADYEAR0000001", "year": "nineteen"}, "TRBBBBB000000001")


@pytest.mark.parametrize("deployment", ["cluster", "serverless"])
def test_bad_records_are_staged_or_rejected_alike_on_both_engines(standin, aws, tmp_path, request, deployment):
    root = tmp_path / "raw"
    _bad_dataset(root)
    data_uri = _upload(aws, root, _prefix(request))
    env = redshift_env(standin, aws["endpoint"], data_uri, aws["role"], tmp_path / "home", SPARKIFY_MAX_ERRORS="50",
                       **_deployment(standin, deployment))
    standin.statements.clear()
    _ok(materialize(env))
    _no_stl_on_serverless(standin, deployment)
    build_embedded(tmp_path / "bad.duckdb", data_uri, aws["endpoint"], max_errors=50)
    got, want = redshift_tables(standin), duckdb_tables(tmp_path / "bad.duckdb")
    rejected = {(r[1].rsplit("/", 1)[-1], r[2]) for r in want["load_errors"]}
    # 2 malformed, 3 "abc" into a bigint, 4 too long, 5 NaN, 6 trailing comma, 7 a fraction into an integer,
    # 8 overflow; the rest load ("" is NULL, numbers and objects into varchar are their text, and the
    # array on line 9 is a record whose key paths select nothing: a row of NULLs).
    assert {("2018-11-05-events.json", n) for n in range(2, 9)} == {
        r for r in rejected if r[0] == "2018-11-05-events.json"}, rejected
    assert ("2018-11-06-events.json", 2) in rejected and ("TRBBBBB000000001.json", 1) in rejected
    assert_same_tables(got, want)
    with duckdb.connect(str(tmp_path / "bad.duckdb"), read_only=True) as con:
        embedded_columns = sorted(con.execute(REJECT_COLUMNS).fetchall())
    assert sorted(query(standin, REJECT_COLUMNS)) == embedded_columns  # the column each reject names
    songs = query(standin, "SELECT title FROM songs WHERE song_id = 'SOTWIN0000000001'")
    assert songs == [("Alpha",)]  # by content, on both engines
    # The raw line: from STL_LOAD_ERRORS on a cluster; Serverless has none, so from the file itself.
    raw = dict(query(standin, "SELECT line_number, raw_text FROM load_errors "
                              "WHERE source_file LIKE '%2018-11-05-events.json' ORDER BY line_number"))
    lines = (root / "log_data" / "2018" / "11" / "2018-11-05-events.json").read_text().splitlines()
    assert raw == {n: lines[n - 1] for n in range(2, 9)}


@pytest.mark.parametrize("deployment", ["cluster", "serverless"])
def test_over_maxerror_the_load_fails_changes_nothing_and_keeps_the_rejects(standin, aws, tmp_path, request, deployment):
    root = tmp_path / "raw"
    _bad_dataset(root)
    data_uri = _upload(aws, root, _prefix(request))
    env = redshift_env(standin, aws["endpoint"], data_uri, aws["role"], tmp_path / "home", SPARKIFY_MAX_ERRORS="2",
                       **_deployment(standin, deployment))
    standin.statements.clear()
    done = materialize(env)
    _no_stl_on_serverless(standin, deployment)
    assert done.returncode != 0
    assert "rejected more than SPARKIFY_MAX_ERRORS=2" in done.stdout + done.stderr
    assert query(standin, "SELECT COUNT(*) FROM staging_events") == [(0,)]
    assert query(standin, "SELECT COUNT(*) FROM loaded_files WHERE table_name = 'staging_events'") == [(0,)]
    kept = query(standin, "SELECT source_file, line_number FROM load_errors WHERE table_name = 'staging_events'")
    assert ("log_data/2018/11/2018-11-05-events.json", 2) in kept


def test_the_checks_job_passes_then_fails_on_a_broken_warehouse(standin, aws, tmp_path, request):
    root = tmp_path / "raw"
    generate_dataset(root, songs=30, users=5, days=2, events_per_day=40, seed=3)
    env = redshift_env(standin, aws["endpoint"], _upload(aws, root, _prefix(request)), aws["role"], tmp_path / "home")
    _ok(materialize(env))
    checks = ["job", "execute", "-m", "sparkify_dagster", "-j", "data_quality_checks"]
    _ok(dagster(checks, env))
    standin.admin("INSERT INTO users SELECT * FROM users LIMIT 1")  # not enforced, as on Redshift
    broken = dagster(checks, env)
    assert broken.returncode != 0 and "primary_key_unique" in broken.stdout + broken.stderr


# ------------------------------------------------------------------ faults on a real server
def _wait_for(predicate, timeout: float = 120.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _start_materialize(env: dict) -> subprocess.Popen:
    return subprocess.Popen([DAGSTER, "asset", "materialize", "-m", "sparkify_dagster", "--select", "*"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_backend_running(standin, needle: str) -> str:
    """Terminate the first session caught running ``needle``; return the last statement it was sent."""
    def busy():
        return [b for b in standin.backends() if needle in (b["query"] or "") and b["state"] == "active"]

    backend = _wait_for(busy, what=f"a backend running {needle!r}")[0]
    standin.terminate(backend["pid"])
    standin.copy_delay_seconds = 0
    standin.statement_delays.clear()
    (number,) = [c["connection"] for c in standin.statements.connections if c["pid"] == backend["pid"]]
    return [e.sql for e in list(standin.statements.entries) if e.connection == number][-1]


@pytest.mark.parametrize("fault", ["mid-COPY", "mid-star-rebuild"])
def test_a_session_killed_mid_run_fails_clearly_leaves_nothing_half_written_and_the_rerun_is_clean(
        standin, aws, tmp_path, request, fault):
    root = tmp_path / "raw"
    generate_dataset(root, songs=60, users=8, days=3, events_per_day=80, seed=9)
    days = sorted(p.name[:10] for p in (root / "log_data").rglob("*-events.json"))
    _log_day_copy(root, tmp_path / "two_days", set(days[:2]))
    prefix = _prefix(request)
    data_uri = _upload(aws, tmp_path / "two_days", prefix)
    env = redshift_env(standin, aws["endpoint"], data_uri, aws["role"], tmp_path / "home")
    _ok(materialize(env))  # two days loaded; the third arrives and the run loading it is killed
    before = redshift_tables(standin)
    upload_tree(aws["s3"], BUCKET, root, prefix)
    # The stand-in holds the statement in the server (pg_sleep in the session) so it can be killed there.
    if fault == "mid-COPY":
        standin.copy_delay_seconds = 30
        needle = "copy_apply"  # the emulated COPY, sleeping inside
    else:
        standin.statement_delays.append(('INSERT INTO "songplays"', 30))
        needle = "pg_sleep"  # after songplays' DELETE, before its INSERT
    run = _start_materialize(env)
    try:
        killed = _kill_backend_running(standin, needle)
        output, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0
    # The server's words ("terminating connection due to administrator command") or the driver's (the
    # connection closed under it), and which statement it was.
    assert "Redshift: " in output and ("terminat" in output or "connection was lost" in output), output[-3000:]
    assert standin.env()["REDSHIFT_PASSWORD"] not in output
    after = redshift_tables(standin)
    if fault == "mid-COPY":  # that staging load rolled back: its table and bookkeeping as before
        assert killed.startswith("COPY")
        table = "staging_events" if '"staging_events_load"' in killed else "staging_songs"
        assert after[table] == before[table]
        if table == "staging_events":
            assert after["loaded_files(events)"] == before["loaded_files(events)"]
    else:  # staging committed; songplays was deleted and refilled in one transaction: as before
        assert killed.startswith('INSERT INTO "songplays"')
        assert after["songplays"] == before["songplays"] and before["songplays"]
        assert len(after["loaded_files(events)"]) == 3
    _ok(materialize(env))
    build_embedded(tmp_path / "clean.duckdb", data_uri, aws["endpoint"])
    assert_same_tables(redshift_tables(standin), duckdb_tables(tmp_path / "clean.duckdb"))


@pytest.mark.parametrize("isolation", ["serializable", "read committed"])
def test_two_runs_at_once_both_succeed_and_equal_one_clean_load(standin, aws, tmp_path, request, isolation):
    standin.set_isolation(isolation)
    root = tmp_path / "raw"
    generate_dataset(root, songs=60, users=8, days=4, events_per_day=80, seed=4)
    data_uri = _upload(aws, root, _prefix(request))
    runs = [_start_materialize(redshift_env(standin, aws["endpoint"], data_uri, aws["role"], tmp_path / f"home{n}"))
            for n in range(2)]
    outputs = [r.communicate(timeout=600)[0] for r in runs]
    for r, out in zip(runs, outputs):
        assert r.returncode == 0, out[-4000:]
        assert "Serializable isolation" not in out and "could not serialize" not in out
    build_embedded(tmp_path / "clean.duckdb", data_uri, aws["endpoint"])
    assert_same_tables(redshift_tables(standin), duckdb_tables(tmp_path / "clean.duckdb"))


@pytest.mark.parametrize("what", ["refused", "wrong password"])
def test_a_refused_connection_or_a_wrong_password_is_one_clear_line_without_the_secret(
        standin, aws, tmp_path, what):
    from sparkify_dagster_tests.redshift_standin.server import free_port

    extra = {"REDSHIFT_PORT": str(free_port())} if what == "refused" else {"REDSHIFT_PASSWORD": "Wr0ng-S3cret-pw"}
    env = redshift_env(standin, aws["endpoint"], f"s3://{BUCKET}/nothing", aws["role"], tmp_path / "home", **extra)
    done = materialize(env)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    lines = [line for line in output.splitlines() if "cannot connect to redshift://" in line]
    assert lines, output[-3000:]
    assert ("refused" if what == "refused" else "password") in lines[0].lower()
    assert env["REDSHIFT_PASSWORD"] not in output and standin.env()["REDSHIFT_PASSWORD"] not in output
