"""What a run costs on the Redshift path, counted by the stand-in's statement log (no cluster needed).

    python benchmarks/redshift_statements.py [--data ../shared/data/udacity-sample | --days 365] [--code DIR]
                                             [--serverless]

Starts the Redshift stand-in (PostgreSQL behind the TLS proxy; needs PostgreSQL's server binaries) and a
moto S3 server, uploads the data, and runs ``dagster asset materialize -m sparkify_dagster --select '*'``
with SPARKIFY_TARGET=redshift: a first load, a run with nothing new, and a run after one more day
arrives (the data minus its last day first). ``--days N`` generates N days instead (sparkify-generate,
small days, so the stand-in's emulated COPY stays quick); ``--code DIR`` runs the project found there
(e.g. a checkout of an older commit) for a before/after; ``--serverless`` runs the stand-in as a
Serverless workgroup (no STL views) and names one (REDSHIFT_WORKGROUP). Prints one markdown row per run: connections
opened, statements executed, of them CREATE TABLE, COPY and LOCK, the rows the run inserted and deleted
in the warehouse's tables (PostgreSQL's own counters), and the wall time.
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


def _rows_written(standin: RedshiftStandin) -> int:
    """Rows inserted, updated and deleted in the stand-in's tables so far (PostgreSQL's counters)."""
    time.sleep(1.5)  # each backend flushes its counters within a second of its transaction's end
    ((n,),) = standin.admin("SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables")
    return int(n)


def _cost(standin: RedshiftStandin) -> dict[str, int]:
    connections, executed = run_statements(standin)
    sqls = [sql.lstrip().upper() for sql in executed]
    return {"connections": connections, "statements": len(sqls),
            "create table": sum(s.startswith("CREATE TABLE") for s in sqls),
            "copy": sum(s.startswith("COPY") for s in sqls), "lock": sum(s.startswith("LOCK") for s in sqls)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "udacity-sample"))
    parser.add_argument("--days", type=int, help="generate this many days (small) instead of --data")
    parser.add_argument("--code", type=Path, help="the project checkout to run (default: this one)")
    parser.add_argument("--serverless", action="store_true", help="the stand-in as a Serverless workgroup")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="redshift-cost-"))
    data = Path(args.data)
    if args.days:
        from sparkify_dagster.cli.generate import generate_dataset

        data = tmp / "generated"
        generate_dataset(data, songs=200, users=20, days=args.days, events_per_day=20, seed=5)
    days = sorted(p.name for p in (data / "log_data").rglob("*-events.json"))
    first = tmp / "first"
    shutil.copytree(data, first, ignore=lambda _, names: [n for n in names if n == days[-1]])
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    standin = RedshiftStandin(aws_endpoint_url=endpoint, serverless=args.serverless).start()
    try:
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        upload_tree(s3, BUCKET, first, "raw")
        env = redshift_env(standin, endpoint, f"s3://{BUCKET}/raw", standin.create_copy_role(), tmp / "home")
        if args.code:
            env["PYTHONPATH"] = str(args.code.resolve())
        if args.serverless:
            env["REDSHIFT_WORKGROUP"] = "sparkify-wg"
        rows = []
        for label, before in [(f"first load ({len(days) - 1} days)", None), ("nothing new", None),
                              ("one more day", lambda: upload_tree(s3, BUCKET, data, "raw"))]:
            if before:
                before()
            standin.statements.clear()
            written_before = _rows_written(standin)
            started = time.monotonic()
            # Dagster puts the working directory first on sys.path: run from the checkout under test.
            done = subprocess.run([DAGSTER, "asset", "materialize", "-m", "sparkify_dagster", "--select", "*"],
                                  cwd=args.code or REPO, env=env, capture_output=True, text=True)
            seconds = time.monotonic() - started
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            rows.append((label, {**_cost(standin), "rows": _rows_written(standin) - written_before}, seconds))
    finally:
        standin.stop()
        moto.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("| run | connections | statements | CREATE TABLE | COPY | LOCK | rows written | wall |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, cost, seconds in rows:
        print(f"| {label} | {cost['connections']} | {cost['statements']} | {cost['create table']} | "
              f"{cost['copy']} | {cost['lock']} | {cost['rows']:,} | {seconds:.1f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
