"""Shared fixtures: a fresh warehouse file, raw-data folders, a moto S3 server, and helpers that run the
whole graph and read every table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from sparkify_dagster.catalog import ALL_TABLES
from sparkify_dagster.definitions import build_defs
from sparkify_dagster.source import LocalFolderSource, RawDataSource
from sparkify_dagster.warehouse.duckdb import DuckDBWarehouse
# The Redshift stand-in (PostgreSQL behind a TLS proxy), for the tests marked redshift_standin.
from sparkify_dagster_tests.redshift_standin.fixtures import redshift_standin  # noqa: F401

REAL_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "udacity-sample"
requires_real_sample = pytest.mark.skipif(
    not REAL_SAMPLE.is_dir(),
    reason=f"real Udacity sample not found at {REAL_SAMPLE} (it lives in ../shared, present in CI only)",
)


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    wh.ensure_tables()
    return wh


def write_events(root: Path, day: str, records: list, *, raw_lines: list[str] | None = None) -> Path:
    """Write log_data/YYYY/MM/<day>-events.json: JSON lines with no trailing newline (like the real logs)."""
    path = root / "log_data" / day[:4] / day[5:7] / f"{day}-events.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = raw_lines if raw_lines is not None else [json.dumps(r) for r in records]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_song(root: Path, record: dict, track_id: str | None = None) -> Path:
    """Write one song object under song_data/A/B/C/TR….json."""
    track = track_id or "TR" + record["song_id"][2:]
    path = root / "song_data" / track[2] / track[3] / track[4] / f"{track}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def materialize_all(data: Path | RawDataSource, db_path: Path, *, max_errors: int = 10, raise_on_error: bool = True,
                    instance: dg.DagsterInstance | None = None):
    """Materialize every asset (and run every check) of the real definitions against a raw-data source
    (a folder, or any source such as an S3Source) and a DuckDB file (in ``instance``, else an
    ephemeral one)."""
    defs = build_defs("duckdb")
    resources = {
        "warehouse": DuckDBWarehouse(path=str(db_path), max_errors=max_errors),
        "raw_data": data if isinstance(data, RawDataSource) else LocalFolderSource(root=str(data)),
    }
    assets = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]
    return dg.materialize(
        list(defs.assets),
        resources=resources,
        selection=dg.AssetSelection.assets(*assets),
        raise_on_error=raise_on_error,
        instance=instance,
    )


def table_rows(db_path: Path, table: str, order_by: str | None = None) -> list[tuple]:
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as con:
        order = f" ORDER BY {order_by}" if order_by else " ORDER BY ALL"
        return con.execute(f'SELECT * FROM "{table}"{order}').fetchall()


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on loopback, fresh for each test module that uses it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def upload_tree(client, bucket: str, root: Path, prefix: str) -> int:
    """Put every *.json file under ``root`` into ``bucket`` at ``prefix``/<its relative path>; return how many."""
    paths = sorted(root.rglob("*.json"))
    for path in paths:
        client.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(root).as_posix()}", Body=path.read_bytes())
    return len(paths)


def delete_bucket(client, bucket: str) -> None:
    """Empty ``bucket``, then delete it."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


class FakeS3Source:
    """Stands in for S3Source where a Redshift load only writes its COPY manifests beside the data."""

    def __init__(self):
        self.written = {}

    def s3_uri(self, key):
        return f"s3://bkt/p/{key}"

    def has(self, key):
        return True

    def write_bytes(self, key, data):
        self.written[key] = data
        return key


def contents(db: Path, *, without: tuple[str, ...] = ()) -> dict[str, list[tuple]]:
    """Every table's rows, sorted (optionally without some columns, e.g. load_id)."""
    import duckdb

    out = {}
    with duckdb.connect(str(db), read_only=True) as con:
        for table in ALL_TABLES:
            cols = ", ".join(f'"{c}"' for c in table.column_names if c not in without)
            out[table.name] = con.execute(f'SELECT {cols} FROM "{table.name}" ORDER BY ALL').fetchall()
    return out


def stop_process_groups(procs: list[subprocess.Popen], grace: float = 60) -> None:
    """SIGTERM each process's group (each started with ``start_new_session``), then SIGKILL any group
    still running ``grace`` seconds later: on a loaded machine a Dagster server's shutdown can take that
    long, and the tests check what it served, not how fast it stops."""
    for proc in procs:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=30)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:  # the group ended between the check and the signal
        pass
