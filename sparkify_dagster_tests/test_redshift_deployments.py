"""Redshift deployments and sign-in methods, as settings and connect arguments: a provisioned cluster
or a Serverless workgroup; a stored password or IAM (temporary credentials the driver fetches).

The end-to-end paths on the stand-in are in test_redshift_serverless_and_iam.py."""

from __future__ import annotations

import textwrap

import pytest

from sparkify_dagster.definitions import build_defs
from sparkify_dagster.warehouse.redshift import RedshiftWarehouse
from sparkify_dagster.warehouse.redshift_config import (
    RedshiftConfigError,
    cluster_from_host,
    load_settings,
    workgroup_from_host,
)

ARN = "arn:aws:iam::123456789012:role/sparkify-s3-read"
PASSWORD = "S3cret-Pa55word!"
CLUSTER_HOST = "sparkify.cxyz123abc.us-west-2.redshift.amazonaws.com"
SERVERLESS_HOST = "sparkify-wg.123456789012.us-west-2.redshift-serverless.amazonaws.com"
BASE = {"REDSHIFT_DB": "dev", "REDSHIFT_IAM_ROLE_ARN": ARN, "SPARKIFY_DATA_URI": "s3://bkt/p"}


def _settings(**env):
    return load_settings({**BASE, **env})


def _warehouse(settings) -> RedshiftWarehouse:
    return RedshiftWarehouse(host=settings.host, port=settings.port, database=settings.database,
                             user=settings.user, password=settings.password, auth=settings.auth,
                             cluster_identifier=settings.cluster_id, workgroup=settings.workgroup,
                             iam_role_arn=settings.iam_role_arn, region=settings.region)


def test_endpoints_name_their_cluster_or_workgroup():
    assert cluster_from_host(CLUSTER_HOST) == "sparkify"
    assert workgroup_from_host(SERVERLESS_HOST) == "sparkify-wg"
    assert cluster_from_host(SERVERLESS_HOST) is None and workgroup_from_host(CLUSTER_HOST) is None
    assert cluster_from_host("10.0.0.5") is None and workgroup_from_host("redshift.example.com") is None


def test_password_on_a_cluster_is_the_default_and_unchanged():
    settings = _settings(REDSHIFT_HOST=CLUSTER_HOST, REDSHIFT_USER="awsuser", REDSHIFT_PASSWORD=PASSWORD)
    assert (settings.auth, settings.serverless, settings.cluster_id) == ("password", False, None)
    args = _warehouse(settings).connect_arguments()
    assert args == {"host": CLUSTER_HOST, "port": 5439, "database": "dev", "timeout": 30,
                    "user": "awsuser", "password": PASSWORD}


def test_iam_on_a_cluster_asks_the_driver_for_temporary_credentials_and_needs_no_password():
    settings = _settings(REDSHIFT_HOST=CLUSTER_HOST, REDSHIFT_USER="awsuser", REDSHIFT_AUTH="iam",
                         REDSHIFT_PASSWORD=PASSWORD)
    assert settings.password is None  # a stored one is never used with IAM
    args = _warehouse(settings).connect_arguments()
    assert args == {"host": CLUSTER_HOST, "port": 5439, "database": "dev", "timeout": 30, "iam": True,
                    "region": "us-west-2", "cluster_identifier": "sparkify", "db_user": "awsuser",
                    "auto_create": True}
    # An explicit identifier wins over the endpoint's first label (a custom domain name, an NLB).
    explicit = _settings(REDSHIFT_HOST="redshift.example.com", AWS_REGION="eu-west-1", REDSHIFT_USER="u",
                         REDSHIFT_AUTH="IAM", REDSHIFT_CLUSTER_ID="prod-dwh")
    assert _warehouse(explicit).connect_arguments()["cluster_identifier"] == "prod-dwh"


def test_iam_on_a_cluster_without_an_identifier_or_user_names_what_is_missing():
    with pytest.raises(RedshiftConfigError) as err:
        _settings(REDSHIFT_HOST="10.0.0.5", AWS_REGION="us-west-2", REDSHIFT_AUTH="iam")
    message = str(err.value)
    assert "REDSHIFT_CLUSTER_ID (or [CLUSTER] CLUSTER_ID in dwh.cfg)" in message
    assert "REDSHIFT_USER" in message and "REDSHIFT_PASSWORD" not in message


def test_a_serverless_endpoint_implies_serverless_and_its_workgroup():
    settings = _settings(REDSHIFT_HOST=SERVERLESS_HOST, REDSHIFT_USER="admin", REDSHIFT_PASSWORD=PASSWORD)
    assert settings.serverless and settings.workgroup == "sparkify-wg" and settings.region == "us-west-2"
    warehouse = _warehouse(settings)
    assert warehouse.serverless
    assert warehouse.connect_arguments()["password"] == PASSWORD  # password sign-in works on Serverless too


def test_a_named_workgroup_switches_to_serverless_on_any_host():
    settings = _settings(REDSHIFT_HOST="127.0.0.1", AWS_REGION="us-west-2", REDSHIFT_WORKGROUP="wg",
                         REDSHIFT_AUTH="iam")
    assert settings.serverless and settings.user is None  # Serverless maps the IAM identity to a user
    args = _warehouse(settings).connect_arguments()
    assert args == {"host": "127.0.0.1", "port": 5439, "database": "dev", "timeout": 30, "iam": True,
                    "region": "us-west-2", "is_serverless": True, "serverless_work_group": "wg"}


def test_workgroup_and_cluster_together_or_an_unknown_method_are_one_clear_error():
    with pytest.raises(RedshiftConfigError, match="name either the Serverless workgroup or the provisioned cluster"):
        _settings(REDSHIFT_HOST=SERVERLESS_HOST, REDSHIFT_AUTH="iam", REDSHIFT_CLUSTER_ID="c")
    with pytest.raises(RedshiftConfigError, match="must be one of password, iam, not 'kerberos'"):
        _settings(REDSHIFT_HOST=CLUSTER_HOST, REDSHIFT_AUTH="kerberos")


def test_dwh_cfg_names_the_workgroup_the_method_and_the_cluster(tmp_path):
    cfg = tmp_path / "dwh.cfg"
    cfg.write_text(textwrap.dedent(f"""\
        [CLUSTER]
        HOST={CLUSTER_HOST}
        DB_NAME=dev
        DB_USER=awsuser
        AUTH=iam
        CLUSTER_ID=sparkify-prod
        [IAM_ROLE]
        ARN={ARN}
        [S3]
        LOG_DATA=s3://bkt/log_data
        SONG_DATA=s3://bkt/song_data
        """))
    settings = load_settings({"SPARKIFY_DWH_CFG": str(cfg)})
    assert (settings.auth, settings.cluster_id, settings.workgroup, settings.password) == (
        "iam", "sparkify-prod", None, None)
    cfg.write_text(cfg.read_text().replace("CLUSTER_ID=sparkify-prod", "WORKGROUP=sparkify-wg"))
    settings = load_settings({"SPARKIFY_DWH_CFG": str(cfg)})
    assert settings.serverless and settings.workgroup == "sparkify-wg" and settings.cluster_id is None


def test_the_iam_binding_holds_no_password_and_describes_the_workgroup(monkeypatch):
    for name in ("REDSHIFT_PASSWORD", "SPARKIFY_DWH_CFG", "REDSHIFT_USER", "REDSHIFT_CLUSTER_ID"):
        monkeypatch.delenv(name, raising=False)
    for k, v in {**BASE, "REDSHIFT_HOST": SERVERLESS_HOST, "REDSHIFT_AUTH": "iam"}.items():
        monkeypatch.setenv(k, v)
    warehouse = build_defs("redshift").resources["warehouse"]
    assert warehouse.auth == "iam" and warehouse.password is None and warehouse.serverless
    assert "REDSHIFT_PASSWORD" not in __import__("os").environ  # nothing exported for a password
    assert warehouse.describe() == f"workgroup sparkify-wg redshift://iam@{SERVERLESS_HOST}:5439/dev"
