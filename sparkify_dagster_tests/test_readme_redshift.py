"""The README's Redshift section, run as written, command by command, on a fresh DAGSTER_HOME.

AWS (IAM, the Redshift API, S3) is moto's server; the cluster is the Redshift stand-in. The only
differences from a user's shell: the password placeholder ``…`` is replaced by a real password,
AWS_ENDPOINT_URL points boto3 at moto, and REDSHIFT_HOST/REDSHIFT_PORT (which win over dwh.cfg, as
documented) point the run at the stand-in, since moto's cluster endpoint is a name nobody answers at.
Every other setting comes from what the commands themselves write (dwh.cfg) or the README's export.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
from pathlib import Path

import boto3
import pytest

from sparkify_dagster.source import SAMPLE_DATA_DIR
from sparkify_dagster_tests.conftest import upload_tree
from sparkify_dagster_tests.redshift_wire import REGION, query

pytestmark = pytest.mark.redshift_standin
REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def readme_redshift_commands() -> list[str]:
    """The commands of the first shell block under '## Redshift', continuation lines joined."""
    section = README.read_text(encoding="utf-8").split("\n## Redshift\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    joined = block.replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip()]


def test_the_readme_redshift_section_lists_the_whole_path():
    commands = readme_redshift_commands()
    assert commands[0].startswith("export SPARKIFY_TARGET=redshift")
    assert [c.split()[0] for c in commands[1:]] == ["sparkify-infra", "sparkify-sql", "dg", "dg",
                                                     "sparkify-infra"]


def test_every_command_of_the_readme_redshift_section_works_in_order(redshift_standin, s3_endpoint, tmp_path):
    redshift_standin.reset()
    commands = readme_redshift_commands()
    export = shlex.split(commands[0])[1:]
    exported = dict(item.split("=", 1) for item in export)
    password = redshift_standin.env()["REDSHIFT_PASSWORD"]
    assert exported["REDSHIFT_PASSWORD"] == "…"
    exported["REDSHIFT_PASSWORD"] = password
    # The user's data is already in the bucket the README names.
    bucket, prefix = exported["SPARKIFY_DATA_URI"].removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": exported["AWS_REGION"]})
    upload_tree(s3, bucket, SAMPLE_DATA_DIR, prefix)

    standin_env = redshift_standin.env()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPARKIFY_", "REDSHIFT_", "AWS_")) and k != "DAGSTER_HOME"}
    env.update(exported, DAGSTER_HOME=str(tmp_path / "dagster_home"), AWS_ENDPOINT_URL=s3_endpoint,
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               REDSHIFT_HOST=standin_env["REDSHIFT_HOST"], REDSHIFT_PORT=standin_env["REDSHIFT_PORT"],
               SSL_CERT_FILE=standin_env["SSL_CERT_FILE"])
    (tmp_path / "dagster_home").mkdir()
    bin_dir = Path(os.sys.executable).parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"

    outputs = []
    for command in commands[1:]:
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, f"{command!r} failed:\n{(done.stdout + done.stderr)[-4000:]}"
        assert password not in done.stdout + done.stderr, f"{command!r} printed the password"
        if command.startswith("sparkify-infra up"):
            cfg = configparser.ConfigParser()
            cfg.read(tmp_path / "dwh.cfg")
            assert cfg["CLUSTER"]["HOST"].endswith(".redshift.amazonaws.com")
            assert cfg["IAM_ROLE"]["ARN"].startswith("arn:aws:iam::")
            role_arn = cfg["IAM_ROLE"]["ARN"]
        if command.startswith("sparkify-sql"):
            sql = (tmp_path / "full_load.sql").read_text()
            assert f"IAM_ROLE '{role_arn}'" in sql and f"FROM 's3://{bucket}/{prefix}/_sparkify_manifests/" in sql
            assert "placeholder" not in sql
            assert "s3://{}/{}/log_data/".format(bucket, prefix) in sql  # the real log files, listed from S3
        if "--assets" in command:
            assert query(redshift_standin, "SELECT COUNT(*) FROM songplays")[0][0] > 0
    assert "RUN_SUCCESS" in outputs[3]  # the checks job
    redshift = boto3.client("redshift", endpoint_url=s3_endpoint, region_name=exported["AWS_REGION"],
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    assert not [c for c in redshift.describe_clusters()["Clusters"] if c["ClusterIdentifier"] == "sparkify"]
