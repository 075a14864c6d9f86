"""Nobody in: secrets never leak, hostile object keys never become SQL, config values are validated.

- Secrets (REDSHIFT_PASSWORD, AWS_SECRET_ACCESS_KEY, a dwh.cfg DB_PASSWORD) never appear in run logs,
  materialization metadata, exceptions, the Dagster instance's storage (every file under
  DAGSTER_HOME, sqlite tables read with their zlib-compressed snapshots expanded) or rendered SQL.
- Hostile object keys (quotes and SQL in a file name): the embedded loader binds keys as parameters
  (tables intact, key stored verbatim in source_file / loaded_files / load_errors); the Redshift path
  refuses them with UnsafeValueError before any statement runs, and rendered SQL never contains them.
- Config values (reload_days) are validated before they are used.
- Infrastructure least privilege is tested in test_infra.py and not repeated here: the Redshift role
  may only s3:GetObject/s3:ListBucket (on --bucket when given), ingress on 5439 only from a required
  --cidr, dwh.cfg written 0600 without the password.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import traceback
import zlib
from pathlib import Path

import boto3
import dagster as dg
import duckdb
import pytest

from sparkify_dagster.catalog import ALL_TABLES, STAGING_EVENTS, STAGING_SONGS
from sparkify_dagster.cli import sql as sql_cli
from sparkify_dagster.definitions import build_defs
from sparkify_dagster.source import SAMPLE_DATA_DIR, RawFile
from sparkify_dagster.warehouse.duckdb import DuckDBWarehouse
from sparkify_dagster.warehouse.redshift import RedshiftWarehouse, UnsafeValueError
from sparkify_dagster.warehouse.redshift_config import RedshiftConfigError, load_settings
from sparkify_dagster_tests.conftest import FakeS3Source, delete_bucket, materialize_all, upload_tree

pytest.importorskip("moto.server", reason="moto[server] not installed (pip install -e '.[dev]')")

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REDSHIFT_PASSWORD = "Rs-Pa55-7d1e9a-QUOTE'x"
AWS_SECRET = "AwsSecretKey/7c2b+Zq9=w0rthProtecting"
CFG_PASSWORD = "Cfg-Pa55-from-dwh-cfg-91f3"
SECRETS = (REDSHIFT_PASSWORD, AWS_SECRET, CFG_PASSWORD)
ARN = "arn:aws:iam::123456789012:role/sparkify-s3-read"
BUCKET = "sparkify-secure"
PREFIX = "raw"
HOSTILE_LOG_KEY = "log_data/2018/11/2018-11-01'); DROP TABLE users; --events.json"


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret ({secret[:6]}…) appears in {where}"


# --------------------------------------------------------------------------------------------- S3
@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """A bucket holding the sample under raw/, with the secret AWS key in the environment."""
    for k, v in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "AKIASPARKIFYTEST0001",
                 "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_DEFAULT_REGION": "us-west-2"}.items():
        monkeypatch.setenv(k, v)
    for k in [k for k in os.environ if k.startswith(("SPARKIFY_", "REDSHIFT_"))] + ["AWS_PROFILE", "AWS_REGION"]:
        monkeypatch.delenv(k, raising=False)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    upload_tree(client, BUCKET, SAMPLE_DATA_DIR, PREFIX)
    yield client
    delete_bucket(client, BUCKET)


# ------------------------------------------------------------------------------ instance storage scan
def storage_text(home: Path) -> str:
    """Everything stored under DAGSTER_HOME as text: raw bytes of every file, and every value of every
    sqlite table with zlib blobs (Dagster's compressed snapshots) expanded."""
    parts = []
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        data = path.read_bytes()
        parts.append(data.decode("utf-8", "replace"))
        if not data.startswith(b"SQLite format 3"):
            continue
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                for row in con.execute(f'SELECT * FROM "{table}"'):
                    for value in row:
                        if isinstance(value, bytes):
                            try:
                                value = zlib.decompress(value)
                            except zlib.error:
                                pass
                            value = value.decode("utf-8", "replace")
                        parts.append(str(value))
        finally:
            con.close()
    return "\n".join(parts)


def _redshift_env(monkeypatch, data_uri: str) -> None:
    for k, v in {"REDSHIFT_HOST": "cluster.example.us-west-2.redshift.amazonaws.com", "REDSHIFT_DB": "sparkify",
                 "REDSHIFT_USER": "etl", "REDSHIFT_PASSWORD": REDSHIFT_PASSWORD, "REDSHIFT_IAM_ROLE_ARN": ARN,
                 "SPARKIFY_DATA_URI": data_uri, "AWS_REGION": "us-west-2"}.items():
        monkeypatch.setenv(k, v)


class PermissiveRedshift:
    """A redshift_connector connection that accepts every statement (so a whole run can succeed)."""

    def __init__(self):
        self.statements: list = []
        self.autocommit = False

    def cursor(self):
        return self

    def close(self):
        pass

    def execute(self, sql, params=None):
        self.statements.append((sql, params))
        self.description, self.rows = None, []
        if "SUM(records_read)" in sql:
            self.description, self.rows = [("x",)], [(0, 0, 0)]
        elif re.match(r"SELECT (pg_last_copy_\w+\(\)|COALESCE\(MAX\(query_id\))", sql):  # one value
            self.description, self.rows = [("x",)], [(5,)]
        elif re.match(r"SELECT (COUNT\(\*\)|\(SELECT COUNT|CASE WHEN t\.)", sql):  # one count
            self.description, self.rows = [("x",)], [(0,)]
        elif sql.startswith("SELECT"):
            self.description = [("x",)]

    def fetchall(self):
        return self.rows


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInJobResult:
    assets = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]
    return dg.materialize(list(defs.assets), resources=defs.resources, instance=instance,
                          selection=dg.AssetSelection.assets(*assets), raise_on_error=False)


def test_secrets_never_reach_the_instance_storage_logs_metadata_or_errors(s3, tmp_path, monkeypatch, capfd):
    import redshift_connector

    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SPARKIFY_DUCKDB_PATH", str(tmp_path / "wh.duckdb"))
    instance = dg.DagsterInstance.from_config(str(home))
    results = []
    try:
        # 1. Embedded engine reading S3 with the secret key: a successful run...
        monkeypatch.setenv("REDSHIFT_PASSWORD", REDSHIFT_PASSWORD)
        monkeypatch.setenv("SPARKIFY_DATA_URI", f"s3://{BUCKET}/{PREFIX}")
        results.append(_materialize(build_defs("duckdb"), instance))
        assert results[-1].success
        # ...and a failing one (the bucket does not exist).
        monkeypatch.setenv("SPARKIFY_DATA_URI", "s3://no-such-sparkify-bucket/raw")
        results.append(_materialize(build_defs("duckdb"), instance))
        assert not results[-1].success
        # 2. Redshift, whole graph, through a connection that accepts everything (metadata, COPY SQL)...
        _redshift_env(monkeypatch, f"s3://{BUCKET}/{PREFIX}")
        conn = PermissiveRedshift()
        monkeypatch.setattr(redshift_connector, "connect", lambda **kwargs: conn)
        results.append(_materialize(build_defs("redshift"), instance))
        assert results[-1].success, [e.message for e in results[-1].get_step_failure_events()]
        assert_no_secret(repr(conn.statements), "statements sent to Redshift")

        # ...and through a driver whose connection error echoes the password (worst case).
        def refuse(**kwargs):
            raise redshift_connector.InterfaceError(f"could not connect with password={kwargs['password']}")

        monkeypatch.setattr(redshift_connector, "connect", refuse)
        results.append(_materialize(build_defs("redshift"), instance))
        assert not results[-1].success
        events = "\n".join(
            repr(e.event_specific_data) for r in results for e in r.all_events if e.event_specific_data
        )
        assert_no_secret(events, "run events (metadata, errors)")
    finally:
        instance.dispose()
    captured = capfd.readouterr()
    assert_no_secret(captured.out + captured.err, "the run logs")
    stored = storage_text(home)
    assert_no_secret(stored, f"the Dagster instance storage under {home}")
    # The scan does see what is stored: the env var's name (not its value), errors, metadata.
    assert "REDSHIFT_PASSWORD" in stored
    assert "cannot connect to redshift://etl@cluster.example" in stored
    assert "no-such-sparkify-bucket" in stored and "dagster/row_count" in stored


@pytest.mark.slow
def test_secrets_never_reach_dagster_home_through_the_cli(s3, s3_endpoint, tmp_path):
    """`dagster asset materialize` with DAGSTER_HOME: grep every file the instance wrote, and the CLI's output."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    closed_port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARKIFY_", "REDSHIFT_"))}
    env.update({"DAGSTER_HOME": str(home), "SPARKIFY_DUCKDB_PATH": str(tmp_path / "wh.duckdb"),
                "SPARKIFY_DATA_URI": f"s3://{BUCKET}/{PREFIX}", "REDSHIFT_PASSWORD": REDSHIFT_PASSWORD})
    outputs = []
    done = subprocess.run([str(BIN / "dagster"), "asset", "materialize", "-m", "sparkify_dagster", "--select", "*"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs.append(done.stdout + done.stderr)
    env.update({"SPARKIFY_TARGET": "redshift", "REDSHIFT_HOST": "127.0.0.1", "REDSHIFT_PORT": str(closed_port),
                "REDSHIFT_DB": "sparkify", "REDSHIFT_USER": "etl", "REDSHIFT_IAM_ROLE_ARN": ARN,
                "AWS_REGION": "us-west-2"})
    failed = subprocess.run([str(BIN / "dagster"), "asset", "materialize", "-m", "sparkify_dagster", "--select",
                             "staging_events"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert failed.returncode != 0
    outputs.append(failed.stdout + failed.stderr)
    assert "cannot connect to redshift://etl@127.0.0.1" in outputs[-1]
    for out in outputs:
        assert_no_secret(out, "the CLI output")
    stored = storage_text(home)
    assert "cannot connect to redshift://etl@127.0.0.1" in stored  # the scan sees the failed run
    assert_no_secret(stored, f"the Dagster instance storage under {home}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_settings_and_connection_errors_never_carry_a_secret(tmp_path):
    cfg = tmp_path / "dwh.cfg"
    cfg.write_text(textwrap.dedent(f"""\
        [CLUSTER]
        HOST=h
        DB_NAME=d
        DB_USER=u
        DB_PASSWORD={CFG_PASSWORD}
        DB_PORT=not-a-port
        [IAM_ROLE]
        ARN={ARN}
        """))
    for environ in ({"SPARKIFY_DWH_CFG": str(cfg), "AWS_REGION": "us-west-2"},  # no data URI, bad port
                    {"SPARKIFY_DWH_CFG": str(cfg), "AWS_REGION": "us-west-2", "SPARKIFY_DATA_URI": "s3://b/p",
                     "REDSHIFT_PASSWORD": REDSHIFT_PASSWORD}):
        with pytest.raises(RedshiftConfigError) as err:
            load_settings(environ)
        assert_no_secret("".join(traceback.format_exception(err.value)), "a settings error")
    wh = RedshiftWarehouse(host="h", database="d", user="u", password=REDSHIFT_PASSWORD, iam_role_arn=ARN,
                           region="us-west-2")
    assert_no_secret(wh.describe() + wh.qualified_name(STAGING_EVENTS), "warehouse metadata")


def _render(monkeypatch, capsys, env: dict) -> str:
    for k in [k for k in os.environ if k.startswith(("SPARKIFY_", "REDSHIFT_"))]:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert sql_cli.main(["--target", "redshift"]) == 0
    return capsys.readouterr().out


def test_rendered_redshift_sql_never_contains_a_secret(s3, tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "dwh.cfg"
    cfg.write_text(f"[CLUSTER]\nHOST=h\nDB_NAME=d\nDB_USER=u\nDB_PASSWORD={CFG_PASSWORD}\n[IAM_ROLE]\nARN={ARN}\n")
    for env in ({"REDSHIFT_HOST": "h", "REDSHIFT_DB": "d", "REDSHIFT_USER": "u", "REDSHIFT_PASSWORD": REDSHIFT_PASSWORD,
                 "REDSHIFT_IAM_ROLE_ARN": ARN, "SPARKIFY_DATA_URI": f"s3://{BUCKET}/{PREFIX}", "AWS_REGION": "us-west-2"},
                {"SPARKIFY_DWH_CFG": str(cfg), "SPARKIFY_DATA_URI": f"s3://{BUCKET}/{PREFIX}",
                 "AWS_REGION": "us-west-2"}):
        out = _render(monkeypatch, capsys, env)
        # The real objects were listed from S3 (with the secret key) and rendered.
        assert f"s3://{BUCKET}/{PREFIX}/log_data/2018/11/2018-11-05-events.json" in out
        assert_no_secret(out, "sparkify-sql output")


# ------------------------------------------------------------------------------- hostile object keys
HOSTILE_NAMES = [
    "2018-11-01'); DROP TABLE users; --events.json",
    '2018-11-02"; DROP TABLE songs; --events.json',
    "2018-11-03\\'; DELETE FROM loaded_files WHERE '1'='1'; --events.json",
    "2018-11-04$$; DROP TABLE \"time\"; $$ é ❄ events.json",
    "2018-11-05'\n); DROP TABLE artists; --events.json",
]


def _hostile_day(src: Path, dst: Path, offset: int) -> int:
    """New events (shifted sessions) from a sample day, plus one malformed record; returns good lines."""
    lines = []
    for line in src.read_text().split("\n"):
        record = json.loads(line)
        record["sessionId"] += offset
        lines.append(json.dumps(record))
    dst.write_text("\n".join(lines + ['{"ts": "not a number"}']))
    return len(lines)


def _counts(db: Path) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {t.name: con.execute(f'SELECT COUNT(*) FROM "{t.name}"').fetchone()[0] for t in ALL_TABLES}


def _contents(db: Path) -> dict:
    with duckdb.connect(str(db), read_only=True) as con:
        return {t.name: con.execute(
            f'SELECT {", ".join(chr(34) + c + chr(34) for c in t.column_names if c != "load_id")} '
            f'FROM "{t.name}" ORDER BY ALL').fetchall() for t in ALL_TABLES}


def test_hostile_file_names_are_bound_not_executed_on_the_embedded_engine(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(SAMPLE_DATA_DIR, raw)
    sample_day = sorted((raw / "log_data").rglob("*.json"))[0]
    good = {}
    for n, name in enumerate(HOSTILE_NAMES, start=1):
        good[f"log_data/2018/11/{name}"] = _hostile_day(sample_day, raw / "log_data" / "2018" / "11" / name,
                                                        100_000 * n)
    db = tmp_path / "wh.duckdb"
    assert materialize_all(raw, db).success
    counts = _counts(db)
    assert all(counts[t] > 0 for t in ("users", "songs", "artists", "time", "songplays", "loaded_files"))
    with duckdb.connect(str(db), read_only=True) as con:
        for key, n in good.items():
            assert con.execute("SELECT COUNT(*) FROM staging_events WHERE source_file = ?", [key]).fetchone()[0] == n
            assert con.execute("SELECT records_staged, records_rejected FROM loaded_files WHERE source_file = ?",
                               [key]).fetchall() == [(n, 1)]
            assert con.execute("SELECT COUNT(*) FROM load_errors WHERE source_file = ?", [key]).fetchone()[0] == 1
    # Change one hostile file and delete another: the incremental delete paths bind the keys too.
    keys = list(good)
    changed, deleted = raw / keys[0], raw / keys[1]
    changed.write_text("\n".join(changed.read_text().split("\n")[:4]))  # 4 good records, no bad one
    deleted.unlink()
    assert materialize_all(raw, db).success
    fresh = tmp_path / "fresh.duckdb"
    assert materialize_all(raw, fresh).success
    assert _contents(db) == _contents(fresh)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT COUNT(*) FROM staging_events WHERE source_file = ?", [keys[0]]).fetchone()[0] == 4
        assert con.execute("SELECT COUNT(*) FROM load_errors WHERE source_file = ?", [keys[0]]).fetchone()[0] == 0
        assert con.execute("SELECT COUNT(*) FROM loaded_files WHERE source_file = ?", [keys[1]]).fetchone()[0] == 0
        assert con.execute("SELECT COUNT(*) FROM staging_events WHERE source_file = ?", [keys[1]]).fetchone()[0] == 0


def test_hostile_object_keys_on_s3_load_verbatim_on_the_embedded_engine(s3, tmp_path, monkeypatch):
    keys = [HOSTILE_LOG_KEY, "log_data/2018/11/2018-11-02 ?#%&=+;$ @events.json"]
    sample_day = (SAMPLE_DATA_DIR / "log_data" / "2018" / "11" / "2018-11-03-events.json").read_bytes()
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{key}", Body=sample_day)
    monkeypatch.setenv("SPARKIFY_DATA_URI", f"s3://{BUCKET}/{PREFIX}")
    monkeypatch.setenv("SPARKIFY_DUCKDB_PATH", str(tmp_path / "wh.duckdb"))
    defs = build_defs("duckdb")
    assets = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]
    assert dg.materialize(list(defs.assets), resources=defs.resources,
                          selection=dg.AssetSelection.assets(*assets)).success
    lines = sample_day.decode().count("\n") + 1
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        for key in keys:
            assert con.execute("SELECT COUNT(*) FROM staging_events WHERE source_file = ?", [key]).fetchone()[0] == lines
        assert con.execute("SELECT COUNT(*) FROM users").fetchone()[0] > 0


def test_hostile_keys_never_reach_rendered_redshift_sql(s3, monkeypatch, capsys):
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{HOSTILE_LOG_KEY}", Body=b'{"userId": "1"}')
    env = {"REDSHIFT_HOST": "h", "REDSHIFT_DB": "d", "REDSHIFT_USER": "u", "REDSHIFT_IAM_ROLE_ARN": ARN,
           "SPARKIFY_DATA_URI": f"s3://{BUCKET}/{PREFIX}", "AWS_REGION": "us-west-2"}
    for k in [k for k in os.environ if k.startswith(("SPARKIFY_", "REDSHIFT_"))]:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert sql_cli.main(["--target", "redshift"]) == 2  # refused: a clear error, no traceback
    out = capsys.readouterr()
    refusal = out.err.replace("\\'", "'").replace('\\"', '"')
    assert HOSTILE_LOG_KEY in refusal and "rename the object" in refusal
    assert "DROP TABLE" not in out.out  # nothing rendered


@pytest.mark.slow
def test_sparkify_sql_cli_refuses_a_hostile_key_and_prints_no_sql(s3, s3_endpoint):
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{HOSTILE_LOG_KEY}", Body=b'{"userId": "1"}')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARKIFY_", "REDSHIFT_"))}
    env.update({"REDSHIFT_HOST": "h", "REDSHIFT_DB": "d", "REDSHIFT_USER": "u", "REDSHIFT_IAM_ROLE_ARN": ARN,
                "SPARKIFY_DATA_URI": f"s3://{BUCKET}/{PREFIX}", "AWS_REGION": "us-west-2",
                "REDSHIFT_PASSWORD": REDSHIFT_PASSWORD})
    done = subprocess.run([str(BIN / "sparkify-sql"), "--target", "redshift"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0
    assert "DROP TABLE" not in done.stdout and "COPY" not in done.stdout
    refusal = done.stderr.replace("\\'", "'").replace('\\"', '"')
    assert "cannot be used in a COPY statement safely" in refusal and HOSTILE_LOG_KEY in refusal
    assert_no_secret(done.stdout + done.stderr, "sparkify-sql output")


@pytest.mark.parametrize("table, key", [
    (STAGING_EVENTS, HOSTILE_LOG_KEY),
    (STAGING_SONGS, "song_data/A/B/C/TRABC'; DROP TABLE songs; --.json"),
    (STAGING_EVENTS, "log_data/2018/11/2018-11-01-events\\.json"),
])
def test_redshift_load_refuses_a_hostile_key_before_any_statement(monkeypatch, table, key):
    import redshift_connector

    conn = PermissiveRedshift()
    monkeypatch.setattr(redshift_connector, "connect", lambda **kwargs: conn)
    wh = RedshiftWarehouse(host="h", database="d", user="u", password=REDSHIFT_PASSWORD, iam_role_arn=ARN,
                           region="us-west-2")
    source = FakeS3Source()
    benign = "song_data/A/B/C/TRABC.json" if table is STAGING_SONGS else "log_data/2018/11/2018-11-02-events.json"
    files = [RawFile(benign, 1, "a"), RawFile(key, 1, "b")]
    with pytest.raises(UnsafeValueError) as err:
        wh.load_staging(table, source, files, "run-1", logging.getLogger("t"))
    assert repr(f"s3://bkt/p/{key}") in str(err.value)  # the offending object, named
    sqls = [s for s, _ in conn.statements]
    assert not any(s.startswith(("BEGIN", "COPY", "INSERT", "DELETE")) for s in sqls), sqls
    assert not any(b"DROP TABLE" in body for body in source.written.values())


def test_a_redshift_copy_loads_exactly_its_own_object(s3, monkeypatch, capsys):
    """COPY FROM 's3://…/key' loads every object whose key starts with that string (it is a prefix).
    A neighbour of a daily log file (a .bak, a .gz, a "folder" of that name) must not be loaded with it."""
    day = "log_data/2018/11/2018-11-05-events.json"
    for neighbour in (f"{day}.bak", f"{day}/part-0.json"):
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{neighbour}", Body=b'{"userId": "666"}')
    env = {"REDSHIFT_HOST": "h", "REDSHIFT_DB": "d", "REDSHIFT_USER": "u", "REDSHIFT_IAM_ROLE_ARN": ARN,
           "SPARKIFY_DATA_URI": f"s3://{BUCKET}/{PREFIX}", "AWS_REGION": "us-west-2"}
    out = _render(monkeypatch, capsys, env)
    every_object = [f"s3://{BUCKET}/{o['Key']}" for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
                    for o in page.get("Contents", [])]
    copies = [c for c in out.split(";\n") if c.strip().startswith("COPY")]
    assert copies
    for copy in copies:
        if "\nMANIFEST" in copy:
            continue
        uri = re.search(r"FROM '([^']*)'", copy).group(1)
        loaded = [o for o in every_object if o.startswith(uri)]
        assert loaded == [uri], f"COPY FROM '{uri}' would also load {sorted(set(loaded) - {uri})}"


# ---------------------------------------------------------------------------------- config values
@pytest.mark.parametrize("days, message", [
    (["2018-11-12'); DROP TABLE users; --"], "is not a date"),
    (["../../etc/passwd"], "is not a date"),
    (["2018-13-45"], "is not a date"),
    (["2018-11-30"], "no log file for 2018-11-30"),
])
def test_reload_days_are_validated_before_use(tmp_path, days, message):
    db = tmp_path / "wh.duckdb"
    assert materialize_all(SAMPLE_DATA_DIR, db).success
    before = _contents(db)
    defs = build_defs("duckdb")
    result = dg.materialize(
        [*defs.assets], selection=["staging_events"], raise_on_error=False,
        resources={"warehouse": DuckDBWarehouse(path=str(db)), "raw_data": defs.resources["raw_data"]},
        run_config={"ops": {"staging": {"config": {"reload_days": days}}}},
    )
    assert not result.success
    failures = [e.event_specific_data.error for e in result.get_step_failure_events()]
    assert any(message in (f.message + (f.cause.message if f.cause else "")) for f in failures), failures
    assert _contents(db) == before


@pytest.mark.parametrize("config", [
    {"reload_days": "2018-11-12"},  # a string, not a list
    {"reload_days": [20181112]},
    {"full_refresh": "yes; DROP TABLE users"},
    {"unknown_option": True},
])
def test_malformed_load_config_is_refused_before_the_run_starts(tmp_path, config):
    defs = build_defs("duckdb")
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.materialize([*defs.assets], selection=["staging_events"],
                       resources={"warehouse": DuckDBWarehouse(path=str(tmp_path / "wh.duckdb")),
                                  "raw_data": defs.resources["raw_data"]},
                       run_config={"ops": {"staging": {"config": config}}})
    assert not (tmp_path / "wh.duckdb").exists()
