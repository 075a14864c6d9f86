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

from sparkify_dagster_tests.conftest import REAL_SAMPLE, requires_real_sample

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
                        "songplays", "users", "songs", "artists", "time"}
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
