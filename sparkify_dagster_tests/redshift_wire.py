"""Helpers for the tests that run the Redshift path over the wire (redshift-connector -> stand-in).

Raw data lives in moto's S3; the warehouse is the stand-in (``redshift_standin/``). The same files
are also loaded by the embedded engine (reading the same bucket, so file versions are the same
ETags), and the two warehouses are compared table by table.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import duckdb
from dagster_aws.s3 import S3Resource

from sparkify_dagster.assets.analytics import ANALYSES
from sparkify_dagster.catalog import LOAD_ERRORS, LOADED_FILES, STAGING_EVENTS, STAGING_SONGS, STAR_TABLES
from sparkify_dagster.source_s3 import S3Source
from sparkify_dagster.warehouse.dialect import relation
from sparkify_dagster_tests.conftest import materialize_all

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
REGION = "us-west-2"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION,
       "AWS_DEFAULT_REGION": REGION}

# What each engine must build identically. staging_songs.source_file differs by design (a Redshift COPY
# from a manifest does not say which file a row came from: the rows carry the manifest's key).
COMPARED = {
    STAGING_EVENTS.name: [c for c in STAGING_EVENTS.column_names],
    STAGING_SONGS.name: [c for c in STAGING_SONGS.column_names if c != "source_file"],
    **{t.name: list(t.column_names) for t in STAR_TABLES},
    **{relation(a): list(a.column_names) for a in ANALYSES},
}
# Rejects: which record of which file (the reason texts are each engine's own, and for invalid UTF-8
# Redshift names the column while the embedded engine, which rejects such a line before parsing it,
# does not; the columns of the other rejects are compared by the bad-records test).
REJECTS = f"SELECT table_name, source_file, line_number FROM {LOAD_ERRORS.name}"
REJECT_COLUMNS = (f"SELECT table_name, source_file, line_number, column_name FROM {LOAD_ERRORS.name} "
                  "WHERE reason NOT LIKE '%UTF-8%'")
EVENT_FILES = (f"SELECT source_file, file_version, records_read, records_staged, records_rejected "
               f"FROM {LOADED_FILES.name} WHERE table_name = 'staging_events'")


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, **_boto_keys())


def _boto_keys() -> dict:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": REGION}


def redshift_env(standin: Any, s3_endpoint: str, data_uri: str, role_arn: str, home: Path, **extra: str) -> dict:
    """The environment of a `dagster` subprocess on the Redshift target, through the stand-in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPARKIFY_", "REDSHIFT_", "AWS_")) and k != "DAGSTER_HOME"}
    env.update(AWS, **standin.env(), DAGSTER_HOME=str(home), SPARKIFY_TARGET="redshift",
               SPARKIFY_DATA_URI=data_uri, REDSHIFT_IAM_ROLE_ARN=role_arn, AWS_ENDPOINT_URL=s3_endpoint)
    env.update(extra)
    home.mkdir(parents=True, exist_ok=True)
    return env


def dagster(args: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([DAGSTER, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def materialize(env: dict, *extra: str) -> subprocess.CompletedProcess:
    return dagster(["asset", "materialize", "-m", "sparkify_dagster", "--select", "*", *extra], env)


def query(standin: Any, sql: str) -> list[tuple]:
    """Rows of ``sql``, as the project's user over TLS."""
    conn = standin.connect()
    try:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()] if cur.description else []
    finally:
        conn.close()


def _normal(value: Any) -> Any:
    """One spelling per value across the two drivers (floats to 12 significant digits)."""
    if isinstance(value, float):
        return float(f"{value:.12g}") if math.isfinite(value) else value
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if hasattr(value, "as_tuple"):  # Decimal (PostgreSQL's numeric results)
        return float(f"{float(value):.12g}")
    return value


def _rows(rows: list[tuple]) -> list[tuple]:
    return sorted((tuple(_normal(v) for v in r) for r in rows), key=repr)


def run_statements(standin: Any) -> tuple[int, list[str]]:
    """Connections the project's user opened, and the statements it executed, since the last clear()."""
    user = standin.env()["REDSHIFT_USER"]
    numbers = {c["connection"] for c in standin.statements.connections if c["user"] == user}
    return len(numbers), [e.sql for e in list(standin.statements.entries)
                          if e.connection in numbers and e.event in ("execute", "query")]


def redshift_tables(standin: Any) -> dict[str, list[tuple]]:
    out = {name: _rows(query(standin, f"SELECT {', '.join(cols)} FROM {name}")) for name, cols in COMPARED.items()}
    out["load_errors"] = _rows(query(standin, REJECTS))
    out["loaded_files(events)"] = _rows(query(standin, EVENT_FILES))
    return out


def duckdb_tables(db: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db), read_only=True) as con:
        out = {name: _rows(con.execute(f"SELECT {', '.join(cols)} FROM {name}").fetchall())
               for name, cols in COMPARED.items()}
        out["load_errors"] = _rows(con.execute(REJECTS).fetchall())
        out["loaded_files(events)"] = _rows(con.execute(EVENT_FILES).fetchall())
    return out


def build_embedded(db: Path, data_uri: str, s3_endpoint: str, max_errors: int = 10) -> None:
    """Materialize every asset on the embedded engine from the same S3 prefix (same ETags)."""
    source = S3Source(uri=data_uri, s3=S3Resource(endpoint_url=s3_endpoint, region_name=REGION,
                                                   aws_access_key_id="testing", aws_secret_access_key="testing"))
    materialize_all(source, db, max_errors=max_errors)


def assert_same_tables(got: dict, want: dict) -> None:
    """Table by table, so a failure names the table and a few differing rows."""
    for name in want:
        if got[name] != want[name]:
            missing = [r for r in want[name] if r not in got[name]][:3]
            extra = [r for r in got[name] if r not in want[name]][:3]
            raise AssertionError(f"{name}: {len(got[name])} rows on Redshift, {len(want[name])} embedded; "
                                 f"only embedded: {missing}; only Redshift: {extra}")
