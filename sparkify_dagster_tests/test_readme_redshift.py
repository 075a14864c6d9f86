"""The README's Redshift section, run as written, block by block and command by command, each block on a
fresh DAGSTER_HOME.

AWS (IAM, EC2, the Redshift API, STS, S3) is moto's server; the Redshift Serverless API, which moto
lacks, is ``redshift_standin/serverless_api.py``; the cluster or workgroup is the Redshift stand-in.
The only differences from a user's shell: the password placeholder ``…`` is replaced by a real
password, AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_REDSHIFT_SERVERLESS) point boto3 and the driver at
those servers, and REDSHIFT_HOST/REDSHIFT_PORT (which win over dwh.cfg, as documented) point the run
at the stand-in, since the endpoints AWS would return are names nobody answers at. Every other
setting comes from what the commands themselves write (dwh.cfg) or the README's own lines.
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
from sparkify_dagster_tests.redshift_standin.iam import moto_issues_logins
from sparkify_dagster_tests.redshift_standin.serverless_api import ServerlessApiServer, ServerlessControlPlane
from sparkify_dagster_tests.redshift_wire import REGION, query

pytestmark = pytest.mark.redshift_standin
REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def readme_redshift_blocks() -> list[list[str]]:
    """The commands of each shell block under '## Redshift' (up to its next '## '), continuation lines joined."""
    section = README.read_text(encoding="utf-8").split("\n## Redshift\n", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        joined = block.replace("\\\n", " ")
        blocks.append([line.split("  #")[0].strip() for line in joined.splitlines() if line.strip()])
    return blocks


def _apply_shell_env(command: str, env: dict) -> bool:
    """Apply a line made only of ``export``/``unset`` statements to ``env`` (each command runs in its own
    shell here, a user's runs in one); False for any other line."""
    statements = [shlex.split(part) for part in command.split(";") if part.strip()]
    if not statements or any(words[0] not in ("export", "unset") for words in statements):
        return False
    for words in statements:
        for word in words[1:]:
            if words[0] == "export":
                name, value = word.split("=", 1)
                env[name] = value
            else:
                env.pop(word, None)
    return True


def test_the_readme_redshift_section_shows_cluster_and_serverless_password_and_iam():
    cluster, serverless = readme_redshift_blocks()
    for block in (cluster, serverless):
        assert block[0].startswith("export SPARKIFY_TARGET=redshift") and "REDSHIFT_PASSWORD=…" in block[0]
    assert [c.split()[0] for c in cluster[1:]] == ["sparkify-infra", "unset", "sparkify-sql", "dg", "dg",
                                                    "sparkify-infra"]
    assert cluster[1].startswith("sparkify-infra up --cidr") and cluster[-1] == "sparkify-infra down"
    assert cluster[2] == "unset REDSHIFT_PASSWORD; export REDSHIFT_AUTH=iam"
    assert serverless[1].startswith("sparkify-infra up --serverless")
    assert not any("REDSHIFT_AUTH" in c for c in serverless)  # password sign-in
    assert serverless[-1] == "sparkify-infra down --serverless"


@pytest.fixture
def aws_for_readme(redshift_standin, s3_endpoint):
    """moto (S3 with the README's bucket holding the sample), the Serverless control plane beside it, and
    the stand-in in the mode each block needs; the stand-in is a cluster again afterwards."""
    redshift_standin.reset()
    plane = ServerlessControlPlane(s3_endpoint, REGION, polls_until_available=2, on_credentials=(
        lambda login, password, expires: redshift_standin.grant_temporary_login(login, password, expires, login, True)))
    with ServerlessApiServer(plane) as api:
        yield {"standin": redshift_standin, "moto": s3_endpoint, "plane": plane, "serverless_url": api.url}
    redshift_standin.serverless = False


def _shell_env(aws, exported: dict, home: Path) -> dict:
    standin_env = aws["standin"].env()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPARKIFY_", "REDSHIFT_", "AWS_")) and k != "DAGSTER_HOME"}
    env.update(exported, DAGSTER_HOME=str(home), AWS_ENDPOINT_URL=aws["moto"],
               AWS_ENDPOINT_URL_REDSHIFT_SERVERLESS=aws["serverless_url"],
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               REDSHIFT_HOST=standin_env["REDSHIFT_HOST"], REDSHIFT_PORT=standin_env["REDSHIFT_PORT"],
               SSL_CERT_FILE=standin_env["SSL_CERT_FILE"])
    home.mkdir()
    env["PATH"] = f"{Path(os.sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run_block(commands: list[str], aws, tmp_path: Path, on_done) -> list[str]:
    """Run one README block in ``tmp_path`` as written (the data already in the bucket it names);
    ``on_done(command, output)`` checks each command's effect; returns every command's output."""
    standin = aws["standin"]
    exported = dict(item.split("=", 1) for item in shlex.split(commands[0])[1:])
    password = standin.env()["REDSHIFT_PASSWORD"]
    assert exported["REDSHIFT_PASSWORD"] == "…"
    exported["REDSHIFT_PASSWORD"] = password
    bucket, prefix = exported["SPARKIFY_DATA_URI"].removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3", endpoint_url=aws["moto"], region_name=REGION,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": exported["AWS_REGION"]})
        upload_tree(s3, bucket, SAMPLE_DATA_DIR, prefix)
    env = _shell_env(aws, exported, tmp_path / "dagster_home")
    outputs = []
    for command in commands[1:]:
        if _apply_shell_env(command, env):
            continue
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        output = done.stdout + done.stderr
        outputs.append(output)
        assert done.returncode == 0, f"{command!r} failed:\n{output[-4000:]}"
        assert password not in output, f"{command!r} printed the password"
        on_done(command, output, env)
    return outputs


def _dwh_cfg(tmp_path: Path) -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(tmp_path / "dwh.cfg")
    return cfg


def test_the_cluster_iam_block_works_in_order(aws_for_readme, tmp_path):
    standin = aws_for_readme["standin"]
    commands = readme_redshift_blocks()[0]
    bucket, prefix = shlex.split(commands[0])[-2].split("=", 1)[1].removeprefix("s3://").split("/", 1)
    seen = {}

    def check(command, output, env):
        if command.startswith("sparkify-infra up"):
            cfg = _dwh_cfg(tmp_path)
            assert cfg["CLUSTER"]["HOST"].endswith(".redshift.amazonaws.com")
            assert cfg["CLUSTER"]["CLUSTER_ID"] == "sparkify" and "WORKGROUP" not in cfg["CLUSTER"]
            assert cfg["IAM_ROLE"]["ARN"].startswith("arn:aws:iam::")
            seen["role"] = cfg["IAM_ROLE"]["ARN"]
        if command.startswith(("sparkify-sql", "dg")):
            assert "REDSHIFT_PASSWORD" not in env and env["REDSHIFT_AUTH"] == "iam"
        if command.startswith("sparkify-sql"):
            sql = (tmp_path / "full_load.sql").read_text()
            assert f"IAM_ROLE '{seen['role']}'" in sql and f"FROM 's3://{bucket}/{prefix}/_sparkify_manifests/" in sql
            assert "placeholder" not in sql
            assert "s3://{}/{}/log_data/".format(bucket, prefix) in sql  # the real log files, listed from S3
        if "--assets" in command:
            # Every connection of the run signed in with what moto's GetClusterCredentials issued for
            # the cluster and database user the dwh.cfg names, working as that user.
            assert {c["user"] for c in standin.statements.connections} == {f"IAMA:{standin.user}"}
            assert {(i["cluster"], i["db_user"]) for i in issued} == {("sparkify", "sparkify")}
            assert query(standin, "SELECT COUNT(*) FROM songplays")[0][0] > 0  # (this test's own connection)

    with moto_issues_logins(standin) as issued:
        outputs = _run_block(commands, aws_for_readme, tmp_path, check)
    assert "RUN_SUCCESS" in outputs[3]  # the checks job
    redshift = boto3.client("redshift", endpoint_url=aws_for_readme["moto"], region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    assert not [c for c in redshift.describe_clusters()["Clusters"] if c["ClusterIdentifier"] == "sparkify"]


def test_the_serverless_block_works_in_order(aws_for_readme, tmp_path):
    standin, plane = aws_for_readme["standin"], aws_for_readme["plane"]
    standin.serverless = True  # no STL views from here on, as on a workgroup
    commands = readme_redshift_blocks()[1]

    def check(command, output, env):
        if command.startswith("sparkify-infra up"):
            cfg = _dwh_cfg(tmp_path)
            assert cfg["CLUSTER"]["HOST"].endswith(".redshift-serverless.amazonaws.com")
            assert cfg["CLUSTER"]["WORKGROUP"] == "sparkify-wg" and "CLUSTER_ID" not in cfg["CLUSTER"]
            assert [w["status"] for w in plane.workgroups.values()] == ["AVAILABLE"]
            assert [n["iamRoles"] for n in plane.namespaces.values()] == [[cfg["IAM_ROLE"]["ARN"]]]
        if command.startswith("sparkify-infra status"):
            assert f"workgroup ARN: {plane.workgroups['sparkify-wg']['workgroupArn']}" in output
        if "--assets" in command:
            assert {c["user"] for c in standin.statements.connections} == {standin.user}
            # Serverless: the rejects query went to the SYS view only.
            assert standin.statements.count(r"sys_load_error_detail") and not standin.statements.count(r"stl_")
            assert query(standin, "SELECT COUNT(*) FROM songplays")[0][0] > 0

    outputs = _run_block(commands, aws_for_readme, tmp_path, check)
    assert "RUN_SUCCESS" in outputs[3]  # the checks job
    assert not plane.workgroups and not plane.namespaces
