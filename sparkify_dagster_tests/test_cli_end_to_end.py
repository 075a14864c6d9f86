"""The README's commands, run as a user runs them: the dagster CLI in a subprocess (slow)."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from sparkify_dagster.assets.analytics import ANALYSES
from sparkify_dagster_tests.conftest import REAL_SAMPLE, requires_real_sample, stop_process_groups

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
pytestmark = pytest.mark.slow


def run(args, env_extra, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKIFY_")}
    env.update(env_extra)
    env.pop("DAGSTER_HOME", None)
    return subprocess.run([DAGSTER, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def counts(db):
    with duckdb.connect(str(db), read_only=True) as con:
        return {t: con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]
                for t in ("staging_events", "staging_songs", "songplays", "users", "songs", "artists", "time")}


def test_quickstart_materialize_all_then_checks_job(tmp_path):
    db = tmp_path / "wh.duckdb"
    env = {"SPARKIFY_DUCKDB_PATH": str(db)}
    done = run(["asset", "materialize", "-m", "sparkify_dagster", "--select", "*"], env, REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert all(n > 0 for n in counts(db).values())
    checks = run(["job", "execute", "-m", "sparkify_dagster", "-j", "data_quality_checks"], env, REPO)
    assert checks.returncode == 0, checks.stderr[-3000:]
    assert "RUN_SUCCESS" in checks.stderr + checks.stdout


def test_default_warehouse_path_is_relative_to_the_working_directory(tmp_path):
    done = run(["asset", "materialize", "-m", "sparkify_dagster", "--select", "*"], {}, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "data" / "sparkify.duckdb").is_file()


def test_checks_job_exits_non_zero_on_a_broken_warehouse(tmp_path):
    db = tmp_path / "wh.duckdb"
    env = {"SPARKIFY_DUCKDB_PATH": str(db)}
    assert run(["asset", "materialize", "-m", "sparkify_dagster", "--select", "*"], env, REPO).returncode == 0
    with duckdb.connect(str(db)) as con:
        con.execute("INSERT INTO users SELECT * FROM users LIMIT 1")
    checks = run(["job", "execute", "-m", "sparkify_dagster", "-j", "data_quality_checks"], env, REPO)
    assert checks.returncode != 0
    assert "users_primary_key_unique" in checks.stderr


@requires_real_sample
def test_real_sample_through_environment_variables(tmp_path):
    db = tmp_path / "real.duckdb"
    env = {"SPARKIFY_DUCKDB_PATH": str(db), "SPARKIFY_DATA_URI": str(REAL_SAMPLE)}
    done = run(["asset", "materialize", "-m", "sparkify_dagster", "--select", "*"], env, REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    c = counts(db)
    assert (c["staging_events"], c["staging_songs"], c["songplays"], c["users"]) == (8056, 71, 6820, 97)


def test_bad_data_uri_fails_with_a_clear_message(tmp_path):
    env = {"SPARKIFY_DUCKDB_PATH": str(tmp_path / "wh.duckdb"), "SPARKIFY_DATA_URI": str(tmp_path / "missing")}
    done = run(["asset", "materialize", "-m", "sparkify_dagster", "--select", "*"], env, REPO)
    assert done.returncode != 0
    assert "is not a folder" in done.stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dagster_dev_serves_the_same_graph(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKIFY_")}
    env.update({"DAGSTER_HOME": str(tmp_path), "SPARKIFY_DUCKDB_PATH": str(tmp_path / "wh.duckdb")})
    proc = subprocess.Popen(
        [DAGSTER, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    query = json.dumps({"query": "{ assetNodes { assetKey { path } groupName } }"}).encode()
    try:
        deadline, nodes = time.monotonic() + 120, None
        while time.monotonic() < deadline and nodes is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                             headers={"Content-Type": "application/json"})
                body = json.load(urllib.request.urlopen(req, timeout=5))
                nodes = body["data"]["assetNodes"] or None
            except (OSError, KeyError, TypeError, ValueError):
                time.sleep(1)
        assert nodes, "dagster dev did not serve the asset graph within 120 s"
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert keys == {"song_data", "log_data", "staging_events", "staging_songs",
                        "songplays", "users", "songs", "artists", "time", *(a.name for a in ANALYSES)}
    finally:
        stop_process_groups([proc])


def test_two_materializations_at_once_both_succeed_and_agree(tmp_path):
    db = tmp_path / "wh.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKIFY_")}
    env.update({"SPARKIFY_DUCKDB_PATH": str(db)})
    env.pop("DAGSTER_HOME", None)
    procs = [subprocess.Popen([DAGSTER, "asset", "materialize", "-m", "sparkify_dagster", "--select", "*"],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outcomes = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    for code, err in outcomes:
        assert code == 0, err[-3000:]
        assert "Conflicting lock" not in err and "Could not set lock" not in err
    assert all(n > 0 for n in counts(db).values())


def test_dagster_dev_sensor_loads_a_new_day_with_no_manual_step(tmp_path):
    raw = tmp_path / "raw"
    import shutil

    from sparkify_dagster.source import SAMPLE_DATA_DIR

    shutil.copytree(SAMPLE_DATA_DIR, raw)
    db = tmp_path / "wh.duckdb"
    port = _free_port()
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARKIFY_")}
    env.update({"DAGSTER_HOME": str(home), "SPARKIFY_DUCKDB_PATH": str(db), "SPARKIFY_DATA_URI": str(raw)})
    log = open(tmp_path / "dev.log", "w")
    proc = subprocess.Popen([DAGSTER, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for(predicate, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return True
            except (duckdb.Error, OSError):
                pass
            time.sleep(2)
        return False

    def events_from(day):
        with duckdb.connect(str(db), read_only=True) as con:
            return con.execute("SELECT COUNT(*) FROM staging_events WHERE source_file LIKE ?",
                               [f"%{day}-events.json"]).fetchone()[0]

    def songplays():
        with duckdb.connect(str(db), read_only=True) as con:
            return con.execute("SELECT COUNT(*) FROM songplays").fetchone()[0]

    try:
        # First tick: the sensor (on by default) loads the whole sample.
        assert wait_for(lambda: songplays() > 0, 240), (tmp_path / "dev.log").read_text()[-4000:]
        before = songplays()
        first = sorted((raw / "log_data").rglob("*.json"))[0]
        new = raw / "log_data" / "2018" / "12" / "2018-12-31-events.json"
        new.parent.mkdir(parents=True)
        lines = []
        for i, line in enumerate(first.read_text().split("\n")):
            record = json.loads(line)
            record["sessionId"] = 900_000 + record["sessionId"]  # new events, not copies of old ones
            record["ts"] += 40 * 86_400_000
            lines.append(json.dumps(record))
        new.write_text("\n".join(lines))
        assert wait_for(lambda: events_from("2018-12-31") == len(lines) and songplays() > before, 240), (
            (tmp_path / "dev.log").read_text()[-4000:])
    finally:
        stop_process_groups([proc])
        log.close()
