"""Configuration as a new user meets it: importing reads nothing, a mistake is one line and a non-zero exit.

The Definitions are built lazily (``@dg.definitions``), so importing the package or running a console
script never reads a Redshift setting (``sparkify-infra up`` writes the dwh.cfg the next command
reads); the region comes from the cluster's endpoint name when AWS_REGION is not set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sparkify_dagster.warehouse.redshift_config import RedshiftConfigError, load_settings, region_from_host

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SETTINGS_VARS = ("REDSHIFT_HOST", "REDSHIFT_PORT", "REDSHIFT_DB", "REDSHIFT_USER", "REDSHIFT_PASSWORD",
                 "REDSHIFT_IAM_ROLE_ARN", "SPARKIFY_DATA_URI", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "SPARKIFY_DWH_CFG", "SPARKIFY_MAX_ERRORS", "REDSHIFT_SSLMODE", "SPARKIFY_TARGET")
SEED_CFG = textwrap.dedent("""\
    [CLUSTER]
    HOST=dwhcluster.cxyz123abc.us-west-2.redshift.amazonaws.com
    DB_NAME=dwh
    DB_USER=dwhuser
    DB_PASSWORD=Passw0rd
    DB_PORT=5439

    [IAM_ROLE]
    ARN=arn:aws:iam::123456789012:role/dwhRole

    [S3]
    LOG_DATA='s3://udacity-dend/log_data'
    LOG_JSONPATH='s3://udacity-dend/log_json_path.json'
    SONG_DATA='s3://udacity-dend/song_data'
    """)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARS}
    env.update(DAGSTER_HOME=str(tmp_path), SPARKIFY_SQL_LIST_S3="0", **extra)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("host, region", [
    ("dwhcluster.cxyz123abc.us-west-2.redshift.amazonaws.com", "us-west-2"),
    ("c.abc.eu-central-1.redshift.amazonaws.com", "eu-central-1"),
    ("wg.123456789012.ap-southeast-2.redshift-serverless.amazonaws.com", "ap-southeast-2"),
    ("c.abc.cn-north-1.redshift.amazonaws.com.cn", "cn-north-1"),
    ("127.0.0.1", None),
    ("redshift.example.com", None),
])
def test_the_region_is_read_from_the_endpoint_name(host, region):
    assert region_from_host(host) == region


def test_a_seeds_dwh_cfg_works_unchanged_without_aws_region(tmp_path):
    cfg = tmp_path / "dwh.cfg"
    cfg.write_text(SEED_CFG)
    settings = load_settings({"SPARKIFY_DWH_CFG": str(cfg)})
    assert settings.region == "us-west-2" and settings.data_uri == "s3://udacity-dend"
    # The environment still wins.
    assert load_settings({"SPARKIFY_DWH_CFG": str(cfg), "AWS_REGION": "eu-west-1"}).region == "eu-west-1"


def test_an_unknown_sslmode_is_refused_by_name():
    with pytest.raises(RedshiftConfigError, match="REDSHIFT_SSLMODE"):
        load_settings({"REDSHIFT_SSLMODE": "prefer"})


def test_importing_the_package_reads_no_setting(tmp_path):
    """With SPARKIFY_TARGET=redshift and nothing configured, importing still works (nothing is built)."""
    env = _env(tmp_path, SPARKIFY_TARGET="redshift", SPARKIFY_DWH_CFG=str(tmp_path / "not-yet-written.cfg"))
    code = "import sparkify_dagster, sparkify_dagster.definitions as d; print(type(sparkify_dagster.defs).__name__)"
    done = _run([sys.executable, "-c", code], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "LazyDefinitions"


def test_sparkify_sql_fills_every_real_setting_of_a_seeds_cfg(tmp_path):
    cfg = tmp_path / "dwh.cfg"
    cfg.write_text(SEED_CFG)
    done = _run([str(BIN / "sparkify-sql"), "--target", "redshift"],
                _env(tmp_path, SPARKIFY_TARGET="redshift", SPARKIFY_DWH_CFG=str(cfg)), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "arn:aws:iam::123456789012:role/dwhRole" in done.stdout
    assert "FROM 's3://udacity-dend/_sparkify_manifests/" in done.stdout
    assert "REGION 'us-west-2'" in done.stdout
    assert "placeholder" not in done.stdout and "REPLACE-ME" not in done.stdout
    assert "Passw0rd" not in done.stdout


def test_sparkify_sql_marks_only_the_missing_settings(tmp_path):
    env = _env(tmp_path, REDSHIFT_IAM_ROLE_ARN="arn:aws:iam::123456789012:role/real", AWS_REGION="eu-west-1")
    done = _run([str(BIN / "sparkify-sql"), "--target", "redshift"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stdout.splitlines() if line.startswith("-- placeholder")]
    assert any("SPARKIFY_DATA_URI" in n for n in notes) and any("REDSHIFT_HOST" in n for n in notes)
    assert not any("IAM_ROLE_ARN" in n or "AWS_REGION" in n for n in notes)
    assert "IAM_ROLE 'arn:aws:iam::123456789012:role/real'" in done.stdout
    assert "REGION 'eu-west-1'" in done.stdout


MATERIALIZE = ["dagster", "asset", "materialize", "-m", "sparkify_dagster", "--select", "*"]
VALIDATE = ["dagster", "definitions", "validate", "-m", "sparkify_dagster"]
SQL = ["sparkify-sql", "--target", "redshift"]
MISTAKES = [
    (MATERIALIZE, {"SPARKIFY_TARGET": "oracle"}, "SPARKIFY_TARGET='oracle'"),
    (MATERIALIZE, {"SPARKIFY_TARGET": "redshift"}, "Redshift target is missing settings"),
    (MATERIALIZE, {"SPARKIFY_MAX_ERRORS": "lots"}, "SPARKIFY_MAX_ERRORS must be a whole number"),
    (VALIDATE, {"SPARKIFY_TARGET": "redshift", "SPARKIFY_DWH_CFG": "nowhere/dwh.cfg"}, "is not a file"),
    (VALIDATE, {"SPARKIFY_TARGET": "redshift", "REDSHIFT_PORT": "fifty"}, "REDSHIFT_PORT must be a number"),
    (SQL, {"SPARKIFY_DWH_CFG": "nowhere/dwh.cfg"}, "is not a file"),
    (SQL, {"REDSHIFT_SSLMODE": "prefer"}, "REDSHIFT_SSLMODE must be one of"),
]


@pytest.mark.slow
@pytest.mark.parametrize("command, mistake, says", MISTAKES, ids=[f"{c[0]}-{m}" for c, m, _ in MISTAKES])
def test_a_configuration_mistake_is_one_clear_line_and_a_non_zero_exit(tmp_path, command, mistake, says):
    done = _run([str(BIN / command[0]), *command[1:]], _env(tmp_path, **mistake), tmp_path)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and says in errors[0], output[-3000:]
