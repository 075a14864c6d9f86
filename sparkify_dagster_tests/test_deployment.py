"""The deployed instance, run: `dagster-daemon run` and `dagster-webserver` with deploy/dagster.prod.yaml
unchanged, on a PostgreSQL server started here (Debian's binaries, a free port), raw data in moto S3,
the embedded engine on a file (slow; docs/deploy.md "Tested in CI" lists what this runs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import duckdb
import pytest

from sparkify_dagster.source import SAMPLE_DATA_DIR
from sparkify_dagster_tests.conftest import delete_bucket, stop_process_groups, upload_tree

pytest.importorskip("dagster_postgres", reason="dagster-postgres not installed (pip install -e '.[dev,deploy]')")
pytest.importorskip("moto.server", reason="moto[server] not installed (pip install -e '.[dev]')")
from sparkify_dagster_tests.redshift_standin.server import (  # noqa: E402
    PostgresCluster,
    PostgresNotFound,
    find_bindir,
    free_port,
)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BUCKET, PREFIX = "sparkify-deploy", "raw"
PG_USER, PG_PASSWORD, PG_DB = "dagster", "deploy-test-password", "dagster"
TRIGGER_TAG = "sparkify/trigger"


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on a free port with a database and a password user for the Dagster instance."""
    try:
        find_bindir()
    except PostgresNotFound as exc:
        pytest.skip(str(exc))
    cluster = PostgresCluster(max_connections=100).start()
    try:
        cluster.wait_ready()
        cluster.query(f"CREATE USER {PG_USER} PASSWORD '{PG_PASSWORD}'")
        cluster.query(f"CREATE DATABASE {PG_DB} OWNER {PG_USER}")
        yield cluster
    finally:
        cluster.stop()


class Deployment:
    """DAGSTER_HOME holding deploy/dagster.prod.yaml and workspace.yaml, and the two processes it serves."""

    def __init__(self, tmp: Path, env: dict[str, str]):
        self.tmp, self.env, self.home = tmp, env, Path(env["DAGSTER_HOME"])
        self.port = free_port()
        self.procs: list[subprocess.Popen] = []
        self.logs = []

    def start(self) -> None:
        for name, cmd in (
            ("daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]),
            ("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port),
                           "-w", "workspace.yaml"]),
        ):
            log = open(self.tmp / f"{name}.log", "a")
            self.logs.append(log)
            self.procs.append(subprocess.Popen(cmd, cwd=self.home, env=self.env, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))
        wait_for(lambda: self.graphql("{ version }"), 180, self, "the webserver did not answer")

    def stop(self) -> None:
        stop_process_groups(self.procs)
        for log in self.logs:
            log.close()
        self.procs, self.logs = [], []

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"})
        try:
            body = json.load(urllib.request.urlopen(req, timeout=10))
        except urllib.error.HTTPError as exc:  # a query this schema rejects: say why
            raise AssertionError(f"GraphQL {exc.code}: {exc.read()[:2000]!r}") from None
        assert "errors" not in body, body["errors"]
        return body["data"]

    def dagster(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "dagster"), *args], cwd=self.home, env=self.env, capture_output=True,
                              text=True, timeout=300)

    def tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.tmp.glob("*.log")))


def wait_for(predicate, seconds: float, deployment: Deployment, what: str, every: float = 0.5):
    """predicate()'s first truthy value within ``seconds``; fails with the processes' logs otherwise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(every)
    pytest.fail(f"{what} within {seconds:.0f} s\n{deployment.tail()}")


RUNS = "{ runsOrError { ... on Runs { results { runId status creationTime startTime endTime tags { key value } } } } }"


def runs(d: Deployment) -> dict[str, dict]:
    """Every run the instance holds, as the webserver reports it, by id."""
    return {r["runId"]: r for r in d.graphql(RUNS)["runsOrError"]["results"]}


def materializations(d: Deployment, asset: str) -> list[str]:
    query = ('query($p: [String!]!) { assetOrError(assetKey: {path: $p}) { ... on Asset { '
             'assetMaterializations(limit: 1000) { runId timestamp } } } }')
    found = d.graphql(query, {"p": [asset]})["assetOrError"].get("assetMaterializations") or []
    return sorted(f"{m['runId']}@{m['timestamp']}" for m in found)


def sensor_state(d: Deployment) -> tuple[str | None, list[float]]:
    """The sensor's cursor and its ticks' timestamps, from the instance through the webserver."""
    query = ("{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name sensorState { "
             "typeSpecificData { ... on SensorData { lastCursor } } ticks(limit: 200) { timestamp } } } } } } }")
    (node,) = d.graphql(query)["repositoriesOrError"]["nodes"]
    (sensor,) = [s for s in node["sensors"] if s["name"] == "new_raw_files"]
    state = sensor["sensorState"]
    return state["typeSpecificData"]["lastCursor"], [t["timestamp"] for t in state["ticks"]]


def job_selector(d: Deployment) -> dict:
    query = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
    (node,) = d.graphql(query)["repositoriesOrError"]["nodes"]
    return {"repositoryLocationName": node["location"]["name"], "repositoryName": node["name"],
            "jobName": "load_warehouse"}


def launch(d: Deployment) -> str:
    """Launch load_warehouse from the webserver, as the UI's Materialize does: the run is queued."""
    query = ("mutation($p: ExecutionParams!) { launchPipelineExecution(executionParams: $p) { __typename "
             "... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }")
    result = d.graphql(query, {"p": {"selector": job_selector(d), "runConfigData": {}}})["launchPipelineExecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def new_day(s3, day: str) -> None:
    """A new log day in the bucket: the sample's first day with new session ids and timestamps."""
    first = sorted((SAMPLE_DATA_DIR / "log_data").rglob("*.json"))[0]
    lines = []
    for line in first.read_text().split("\n"):
        record = json.loads(line)
        record["sessionId"] += 900_000
        record["ts"] += 40 * 86_400_000
        lines.append(json.dumps(record))
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/log_data/{day[:4]}/{day[5:7]}/{day}-events.json",
                  Body="\n".join(lines).encode())


def events_from(db: Path, day: str) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT COUNT(*) FROM staging_events WHERE source_file LIKE ?",
                           [f"%{day}-events.json"]).fetchone()[0]


def test_the_production_instance_on_postgres(postgres, s3_endpoint, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.prod.yaml", home / "dagster.yaml")  # unchanged
    shutil.copy(REPO / "workspace.yaml", home / "workspace.yaml")
    db = tmp_path / "warehouse" / "sparkify.duckdb"
    db.parent.mkdir()
    aws = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARKIFY_", "DAGSTER_", "AWS_"))}
    env.update(aws, DAGSTER_HOME=str(home), DAGSTER_PG_HOST="127.0.0.1", DAGSTER_PG_PORT=str(postgres.port),
               DAGSTER_PG_DB=PG_DB, DAGSTER_PG_USER=PG_USER, DAGSTER_PG_PASSWORD=PG_PASSWORD,
               SPARKIFY_DATA_URI=f"s3://{BUCKET}/{PREFIX}", SPARKIFY_DUCKDB_PATH=str(db),
               # The processes import this checkout, wherever the package is installed from.
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET)
    upload_tree(s3, BUCKET, SAMPLE_DATA_DIR, PREFIX)
    d = Deployment(tmp_path, env)
    try:
        # The instance is the Postgres one, by its storage classes.
        info = d.dagster("instance", "info")
        assert info.returncode == 0, info.stderr[-3000:]
        for storage in ("PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage"):
            assert storage in info.stdout, info.stdout
        assert PG_PASSWORD not in info.stdout + info.stderr

        d.start()
        # 1. The sensor (on by default) requests the first load; the daemon dequeues and runs it.
        first = wait_for(lambda: [r for r in runs(d).values() if r["status"] == "SUCCESS"], 300, d,
                         "the sensor's first run did not succeed")
        assert {t["key"]: t["value"] for t in first[0]["tags"]}.get(TRIGGER_TAG) == "new_raw_files"

        # 2. A new log file: the sensor requests a run; a second run launched while it is going waits in
        #    the queue behind the sparkify_warehouse pool (limit 1) instead of running beside it.
        known = set(runs(d))
        new_day(s3, "2018-12-31")
        sensor_run = wait_for(lambda: [i for i in runs(d) if i not in known], 120, d,
                              "the sensor did not request a run for the new log file", every=0.2)[0]
        manual = launch(d)
        queued_behind = False

        def both_done():
            nonlocal queued_behind
            now = runs(d)
            a, b = now[sensor_run], now[manual]
            # Either may be dequeued first: the sensor's run is created before it is submitted to the
            # queue, so the manual one can be enqueued ahead of it.
            running, waiting = ("STARTING", "STARTED"), "QUEUED"
            queued_behind |= (a["status"] in running and b["status"] == waiting) or (
                b["status"] in running and a["status"] == waiting)
            assert "FAILURE" not in (a["status"], b["status"]), d.tail()
            return a["status"] == b["status"] == "SUCCESS" and (a, b)

        a, b = wait_for(both_done, 300, d, "the two runs did not both succeed", every=0.2)
        assert queued_behind, "neither run waited in the queue while the other one ran"
        assert b["creationTime"] < a["endTime"] and a["creationTime"] < b["endTime"]  # launched while the other ran ...
        assert b["startTime"] >= a["endTime"] or a["startTime"] >= b["endTime"]  # ... and never ran beside it
        assert events_from(db, "2018-12-31") > 0

        # 3. Restart both processes: run history, sensor cursor and materializations are all in Postgres.
        history = {i: r["status"] for i, r in runs(d).items()}
        cursor, _ = sensor_state(d)
        materialized = materializations(d, "staging_events")
        assert cursor and len(materialized) == len(history)
        d.stop()
        restarted = time.time()
        d.start()
        assert {i: r["status"] for i, r in runs(d).items()} == history
        assert materializations(d, "staging_events") == materialized
        # The restarted daemon ticks the sensor from the stored cursor: nothing has changed, so no run.
        wait_for(lambda: any(t > restarted for t in sensor_state(d)[1]), 120, d,
                 "the restarted daemon did not tick the sensor")
        assert set(runs(d)) == set(history), "the sensor lost its cursor and requested a run again"
        after, _ = sensor_state(d)
        assert json.loads(after)["logs"] == json.loads(cursor)["logs"]
    finally:
        d.stop()
        delete_bucket(s3, BUCKET)
