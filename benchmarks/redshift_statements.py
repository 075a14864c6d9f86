"""What a run costs on the Redshift path, counted by the stand-in's statement log (no cluster needed).

    python benchmarks/redshift_statements.py [--data ../shared/data/udacity-sample]

Starts the Redshift stand-in (PostgreSQL behind the TLS proxy; needs PostgreSQL's server binaries) and a
moto S3 server, uploads the data, and runs ``dagster asset materialize -m sparkify_dagster --select '*'``
with SPARKIFY_TARGET=redshift: a first load, a run with nothing new, and a run after one more day
arrives (the data minus its last day first). Prints one markdown row per run: connections opened,
statements executed, of them CREATE TABLE, COPY and LOCK, and the wall time.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from moto.server import ThreadedMotoServer  # noqa: E402

from sparkify_dagster_tests.conftest import upload_tree  # noqa: E402
from sparkify_dagster_tests.redshift_standin import RedshiftStandin  # noqa: E402
from sparkify_dagster_tests.redshift_wire import redshift_env, run_statements, s3_client  # noqa: E402

DAGSTER = str(Path(sys.executable).with_name("dagster"))
BUCKET = "sparkify-bench"


def _cost(standin: RedshiftStandin) -> dict[str, int]:
    connections, executed = run_statements(standin)
    sqls = [sql.lstrip().upper() for sql in executed]
    return {"connections": connections, "statements": len(sqls),
            "create table": sum(s.startswith("CREATE TABLE") for s in sqls),
            "copy": sum(s.startswith("COPY") for s in sqls), "lock": sum(s.startswith("LOCK") for s in sqls)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "udacity-sample"))
    args = parser.parse_args()
    data = Path(args.data)
    tmp = Path(tempfile.mkdtemp(prefix="redshift-cost-"))
    days = sorted(p.name for p in (data / "log_data").rglob("*-events.json"))
    first = tmp / "first"
    shutil.copytree(data, first, ignore=lambda _, names: [n for n in names if n == days[-1]])
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    standin = RedshiftStandin(aws_endpoint_url=endpoint).start()
    try:
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        upload_tree(s3, BUCKET, first, "raw")
        env = redshift_env(standin, endpoint, f"s3://{BUCKET}/raw", standin.create_copy_role(), tmp / "home")
        rows = []
        for label, before in [(f"first load ({len(days) - 1} days)", None), ("nothing new", None),
                              ("one more day", lambda: upload_tree(s3, BUCKET, data, "raw"))]:
            if before:
                before()
            standin.statements.clear()
            started = time.monotonic()
            done = subprocess.run([DAGSTER, "asset", "materialize", "-m", "sparkify_dagster", "--select", "*"],
                                  cwd=REPO, env=env, capture_output=True, text=True)
            seconds = time.monotonic() - started
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            rows.append((label, _cost(standin), seconds))
    finally:
        standin.stop()
        moto.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("| run | connections | statements | CREATE TABLE | COPY | LOCK | wall |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, cost, seconds in rows:
        print(f"| {label} | {cost['connections']} | {cost['statements']} | {cost['create table']} | "
              f"{cost['copy']} | {cost['lock']} | {seconds:.1f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
