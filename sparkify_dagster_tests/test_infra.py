"""Tests for `sparkify-infra` (sparkify_dagster.cli.infra) against a moto server on loopback.

One ThreadedMotoServer on 127.0.0.1 serves the module; each test resets it (POST /moto-api/reset)
and points boto3 at it through AWS_ENDPOINT_URL, with fake credentials and no AWS config files, so
nothing leaves the machine. REDSHIFT_PASSWORD is a recognisable canary that must never appear in
anything a test captures (stdout, stderr) nor in any file the CLI writes.
"""

from __future__ import annotations

import configparser
import json
import logging
import os
import stat
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[dev]')")
import boto3  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from sparkify_dagster.cli import infra, infra_cli  # noqa: E402

PASSWORD = "Canary-Pw-7fK2qZ"
CIDR = "203.0.113.0/24"
FAST = ["--poll-interval", "0.01", "--timeout", "10"]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def moto_endpoint():
    """A moto server on a free loopback port for the whole module."""
    werkzeug_log = logging.getLogger("werkzeug")
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.ERROR)  # no request log lines in the captured output
    with pytest.MonkeyPatch.context() as mp:
        # The server runs in this process and reads moto's settings from os.environ: skipping the
        # default AMI catalogue makes each EC2 backend (re)build after a reset ~100x faster.
        mp.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()
            werkzeug_log.setLevel(level)


@pytest.fixture(autouse=True)
def aws_env(moto_endpoint, monkeypatch, tmp_path, capfd):
    """Reset moto, point boto3 at it, isolate from any real AWS setup; check the password never leaks."""
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    env = {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_EC2_METADATA_DISABLED": "true",  # never probe the instance metadata address
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "REDSHIFT_PASSWORD": PASSWORD,
        "SPARKIFY_DWH_CFG": str(tmp_path / "dwh.cfg"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    yield
    out, err = capfd.readouterr()
    assert PASSWORD not in out + err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), f"password written to {path}"


@pytest.fixture
def run(capfd):
    """Run the CLI in-process; return (exit code, stdout, stderr) and check the password is absent."""
    def _run(*argv: str) -> tuple[int, str, str]:
        code = infra_cli.main(list(argv))
        out, err = capfd.readouterr()
        assert PASSWORD not in out + err
        assert "Traceback" not in out + err
        return code, out, err
    return _run


@pytest.fixture
def usage_error(capfd):
    """Run the CLI expecting an argparse error; return its stderr."""
    def _usage_error(*argv: str) -> str:
        with pytest.raises(SystemExit) as info:
            infra_cli.main(list(argv))
        assert info.value.code == 2
        out, err = capfd.readouterr()
        assert PASSWORD not in out + err
        return err
    return _usage_error


@pytest.fixture(scope="module")
def aws(moto_endpoint):
    """boto3 clients on the moto server (us-west-2) for the tests' own checks, made once per module."""
    session = boto3.session.Session(region_name="us-west-2", aws_access_key_id="testing",
                                    aws_secret_access_key="testing")
    return {name: session.client(name, endpoint_url=moto_endpoint) for name in ("iam", "redshift", "ec2")}


# ----------------------------------------------------------------------------- helpers
def clusters(redshift) -> list[dict]:
    return redshift.describe_clusters()["Clusters"]


def ingress_rules(ec2) -> list[tuple[str, str, int, int, str]]:
    """Every ingress CIDR rule in the region: (group id, protocol, from, to, cidr)."""
    rules = []
    for group in ec2.describe_security_groups()["SecurityGroups"]:
        for perm in group["IpPermissions"]:
            for rng in perm.get("IpRanges", []):
                rules.append((group["GroupId"], perm["IpProtocol"], perm.get("FromPort"),
                              perm.get("ToPort"), rng["CidrIp"]))
            for rng in perm.get("Ipv6Ranges", []):
                rules.append((group["GroupId"], perm["IpProtocol"], perm.get("FromPort"),
                              perm.get("ToPort"), rng["CidrIpv6"]))
    return rules


def default_group_id(ec2) -> str:
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    return ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]},
    ])["SecurityGroups"][0]["GroupId"]


def read_cfg(path: Path) -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.optionxform = str
    config.read(path, encoding="utf-8")
    return config


def policy_actions_and_resources(iam, role: str) -> tuple[set[str], set[str]]:
    actions: set[str] = set()
    resources: set[str] = set()
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        for st in document["Statement"]:
            assert st["Effect"] == "Allow"
            assert "NotAction" not in st and "NotResource" not in st
            acts, res = st["Action"], st["Resource"]
            actions |= {acts} if isinstance(acts, str) else set(acts)
            resources |= {res} if isinstance(res, str) else set(res)
    return actions, resources


def stuck_in(monkeypatch, status: str) -> None:
    """Make every describe_cluster of an existing cluster report `status`."""
    real = infra.describe_cluster

    def fake(redshift, cluster_id):
        cluster = real(redshift, cluster_id)
        return None if cluster is None else {**cluster, "ClusterStatus": status}
    monkeypatch.setattr(infra, "describe_cluster", fake)


# ----------------------------------------------------------------------------- up
def test_up_creates_role_cluster_ingress_and_cfg(run, aws, tmp_path):
    code, out, err = run("up", "--cidr", CIDR, "--node-type", "ra3.xlplus", "--nodes", "3",
                         "--bucket", "udacity-dend", *FAST)
    assert code == 0, err
    iam, redshift, ec2 = aws["iam"], aws["redshift"], aws["ec2"]

    role = iam.get_role(RoleName="sparkify-redshift-s3-read")["Role"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    # both names, so that the same role serves a Serverless namespace too
    assert statement["Principal"] == {"Service": ["redshift.amazonaws.com", "redshift-serverless.amazonaws.com"]}
    assert statement["Action"] == "sts:AssumeRole"
    assert iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"] == [infra.POLICY_NAME]
    assert iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"] == []
    actions, resources = policy_actions_and_resources(iam, role["RoleName"])
    assert actions == {"s3:GetObject", "s3:ListBucket"}
    assert resources == {"arn:aws:s3:::udacity-dend", "arn:aws:s3:::udacity-dend/*"}

    (cluster,) = clusters(redshift)
    assert cluster["ClusterIdentifier"] == "sparkify"
    assert (cluster["NodeType"], cluster["NumberOfNodes"]) == ("ra3.xlplus", 3)
    assert (cluster["DBName"], cluster["MasterUsername"]) == ("sparkify", "sparkify")
    assert [r["IamRoleArn"] for r in cluster["IamRoles"]] == [role["Arn"]]
    assert cluster["PubliclyAccessible"] is True

    rules = ingress_rules(ec2)
    assert [r for r in rules if r[2] == 5439 or r[3] == 5439] == [
        (default_group_id(ec2), "tcp", 5439, 5439, CIDR)]
    assert not any(r[4] in ("0.0.0.0/0", "::/0") for r in rules)

    cfg = read_cfg(tmp_path / "dwh.cfg")
    assert dict(cfg["CLUSTER"]) == {
        "HOST": cluster["Endpoint"]["Address"], "DB_NAME": "sparkify", "DB_USER": "sparkify",
        "DB_PORT": "5439", "CLUSTER_ID": "sparkify",
    }
    assert dict(cfg["IAM_ROLE"]) == {"ARN": role["Arn"]}
    assert cluster["Endpoint"]["Address"] in out
    assert "no DB_PASSWORD" in out
    assert stat.S_IMODE((tmp_path / "dwh.cfg").stat().st_mode) == 0o600


def test_up_single_node_and_unscoped_policy(run, aws):
    code, _, err = run("up", "--cidr", "198.51.100.7", "--nodes", "1", "--cluster-id", "solo",
                       "--role-name", "solo-role", "--db", "dev2", "--user", "admin", *FAST)
    assert code == 0, err
    (cluster,) = clusters(aws["redshift"])
    assert (cluster["ClusterIdentifier"], cluster["NodeType"], cluster["NumberOfNodes"]) == (
        "solo", "ra3.large", 1)  # the default node type (DC2 is deprecated)
    assert (cluster["DBName"], cluster["MasterUsername"]) == ("dev2", "admin")
    actions, resources = policy_actions_and_resources(aws["iam"], "solo-role")
    assert actions == {"s3:GetObject", "s3:ListBucket"}
    assert resources == {"*"}
    # a bare address is a /32
    assert [r[4] for r in ingress_rules(aws["ec2"]) if r[2] == 5439] == ["198.51.100.7/32"]


def test_up_keeps_the_rest_of_an_existing_dwh_cfg(run, aws, tmp_path):
    path = tmp_path / "dwh.cfg"
    path.write_text(
        "[CLUSTER]\nHOST=''\nDB_NAME=''\nDB_USER=''\nDB_PASSWORD=Keep%Me1\nDB_PORT=5439\n\n"
        "[IAM_ROLE]\nARN=''\n\n"
        "[S3]\nLOG_DATA='s3://udacity-dend/log_data'\nLOG_JSONPATH='s3://udacity-dend/log_json_path.json'\n"
        "SONG_DATA='s3://udacity-dend/song_data'\n\n"
        "[Extra]\nMixedCase_Key = Some Value\n",
        encoding="utf-8",
    )
    path.chmod(0o640)
    before = read_cfg(path)
    code, out, err = run("up", "--cidr", CIDR, *FAST)
    assert code == 0, err
    after = read_cfg(path)
    assert after.sections() == ["CLUSTER", "IAM_ROLE", "S3", "Extra"]
    assert dict(after["S3"]) == dict(before["S3"])
    assert dict(after["Extra"]) == {"MixedCase_Key": "Some Value"}
    assert after["CLUSTER"]["DB_PASSWORD"] == "Keep%Me1"
    (cluster,) = clusters(aws["redshift"])
    assert after["CLUSTER"]["HOST"] == cluster["Endpoint"]["Address"]
    assert list(after["CLUSTER"]) == ["HOST", "DB_NAME", "DB_USER", "DB_PASSWORD", "DB_PORT", "CLUSTER_ID"]
    assert after["IAM_ROLE"]["ARN"].endswith(":role/sparkify-redshift-s3-read")
    assert "no DB_PASSWORD" not in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_up_writes_dwh_cfg_in_the_working_directory_by_default(run, monkeypatch, tmp_path):
    monkeypatch.delenv("SPARKIFY_DWH_CFG")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert run("up", "--cidr", CIDR, *FAST)[0] == 0
    assert read_cfg(work / "dwh.cfg")["CLUSTER"]["HOST"].startswith("sparkify.")


def test_up_twice_is_idempotent(run, aws):
    assert run("up", "--cidr", CIDR, "--bucket", "s3://my-bucket/", *FAST)[0] == 0
    code, out, err = run("up", "--cidr", CIDR, "--bucket", "my-bucket", *FAST)
    assert code == 0, err
    assert "reusing IAM role" in out and "reusing cluster" in out and "already open" in out
    assert "replacing the inline policy" not in err and "not resized" not in err
    assert len(clusters(aws["redshift"])) == 1
    assert [r for r in ingress_rules(aws["ec2"]) if r[2] == 5439] == [
        (default_group_id(aws["ec2"]), "tcp", 5439, 5439, CIDR)]
    roles = [r["RoleName"] for r in aws["iam"].list_roles()["Roles"]]
    assert roles.count("sparkify-redshift-s3-read") == 1
    assert aws["iam"].list_role_policies(RoleName="sparkify-redshift-s3-read")["PolicyNames"] == [
        infra.POLICY_NAME]


def test_up_says_when_it_changes_the_policy_scope(run, aws):
    assert run("up", "--cidr", CIDR, "--bucket", "my-bucket", *FAST)[0] == 0
    code, _, err = run("up", "--cidr", CIDR, *FAST)
    assert code == 0
    assert ("replacing the inline policy sparkify-s3-read-only of role sparkify-redshift-s3-read: "
            "S3 resources were arn:aws:s3:::my-bucket, arn:aws:s3:::my-bucket/*, now *") in err
    assert policy_actions_and_resources(aws["iam"], "sparkify-redshift-s3-read")[1] == {"*"}


def test_up_reuses_a_cluster_and_opens_its_own_security_group(run, aws):
    iam, redshift, ec2 = aws["iam"], aws["redshift"], aws["ec2"]
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    group = ec2.create_security_group(GroupName="sparkify-redshift", Description="x", VpcId=vpc)["GroupId"]
    arn = iam.create_role(RoleName="sparkify-redshift-s3-read",
                          AssumeRolePolicyDocument=json.dumps(infra.trust_policy()))["Role"]["Arn"]
    redshift.create_cluster(ClusterIdentifier="sparkify", NodeType="dc2.large", ClusterType="multi-node",
                            NumberOfNodes=2, MasterUsername="sparkify", MasterUserPassword=PASSWORD,
                            DBName="sparkify", VpcSecurityGroupIds=[group], IamRoles=[arn])
    code, out, err = run("up", "--cidr", CIDR, "--nodes", "4", *FAST)
    assert code == 0, err
    assert "reusing cluster sparkify" in out
    assert "not resized" in err
    (cluster,) = clusters(redshift)
    assert cluster["NumberOfNodes"] == 2
    assert [r for r in ingress_rules(ec2) if r[2] == 5439] == [(group, "tcp", 5439, 5439, CIDR)]


def test_explicit_open_to_the_world_is_allowed_with_a_loud_warning(run, aws):
    code, _, err = run("up", "--cidr", "0.0.0.0/0", *FAST)
    assert code == 0, err
    assert "WHOLE INTERNET" in err
    assert [r[4] for r in ingress_rules(aws["ec2"]) if r[2] == 5439] == ["0.0.0.0/0"]


# ----------------------------------------------------------------------------- bad input
def test_cidr_is_required(usage_error, aws):
    err = usage_error("up")
    assert "the following arguments are required: --cidr" in err
    assert clusters(aws["redshift"]) == []


@pytest.mark.parametrize("cidr", ["not-a-cidr", "10.0.0.0/33", "300.1.2.3/32", ""])
def test_invalid_cidr_is_a_clear_error(usage_error, aws, cidr):
    err = usage_error("up", "--cidr", cidr)
    assert f"argument --cidr: invalid CIDR {cidr!r}" in err
    assert clusters(aws["redshift"]) == []


def test_invalid_bucket_is_a_clear_error(usage_error):
    assert "invalid S3 bucket name" in usage_error("up", "--cidr", CIDR, "--bucket", "Bad_Bucket/x")


def test_missing_password_is_a_clear_error_and_touches_nothing(run, aws, monkeypatch, tmp_path):
    monkeypatch.delenv("REDSHIFT_PASSWORD")
    code, out, err = run("up", "--cidr", CIDR, *FAST)
    assert code == 2
    assert "REDSHIFT_PASSWORD is not set" in err
    assert clusters(aws["redshift"]) == []
    assert aws["iam"].list_roles()["Roles"] == []
    assert not (tmp_path / "dwh.cfg").exists()


@pytest.mark.parametrize("password", ["Sh0rt", "alllowercase123", "Has Space1", "At@Sign1x", "NoDigitsHere"])
def test_password_that_redshift_would_reject_is_a_clear_error(run, aws, monkeypatch, password):
    monkeypatch.setenv("REDSHIFT_PASSWORD", password)
    code, out, err = run("up", "--cidr", CIDR, *FAST)
    assert code == 2
    assert "does not meet Redshift's password rules" in err
    assert password not in out + err
    assert clusters(aws["redshift"]) == []


def test_unreadable_dwh_cfg_fails_before_touching_aws(run, aws, tmp_path):
    (tmp_path / "dwh.cfg").write_text("[CLUSTER]\nHOST=a\nHOST=b\n", encoding="utf-8")
    code, _, err = run("up", "--cidr", CIDR, *FAST)
    assert code == 1
    assert "cannot read" in err and "dwh.cfg" in err
    assert aws["iam"].list_roles()["Roles"] == []


def test_missing_dwh_cfg_folder_fails_before_touching_aws(run, aws, monkeypatch, tmp_path):
    monkeypatch.setenv("SPARKIFY_DWH_CFG", str(tmp_path / "nope" / "dwh.cfg"))
    code, _, err = run("up", "--cidr", CIDR, *FAST)
    assert code == 2
    assert "does not exist (SPARKIFY_DWH_CFG)" in err
    assert aws["iam"].list_roles()["Roles"] == []


# ----------------------------------------------------------------------------- status / down
def test_status_before_and_after_up(run):
    code, out, _ = run("status")
    assert code == 3
    assert "cluster sparkify: not found" in out
    assert "role sparkify-redshift-s3-read: not found" in out
    assert run("up", "--cidr", CIDR, *FAST)[0] == 0
    code, out, _ = run("status")
    assert code == 0
    assert "cluster sparkify: available" in out
    assert "endpoint: sparkify." in out and ":5439" in out
    assert ":role/sparkify-redshift-s3-read" in out


def test_down_removes_cluster_rule_and_role_and_is_idempotent(run, aws, tmp_path):
    assert run("up", "--cidr", CIDR, *FAST)[0] == 0
    assert run("up", "--cidr", "192.0.2.0/24", *FAST)[0] == 0  # a second rule, also ours
    other = default_group_id(aws["ec2"])
    aws["ec2"].authorize_security_group_ingress(  # not ours: must survive `down`
        GroupId=other, IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                       "IpRanges": [{"CidrIp": "192.0.2.9/32"}]}])
    cfg_before = (tmp_path / "dwh.cfg").read_text()
    code, out, err = run("down", *FAST)
    assert code == 0, err
    assert clusters(aws["redshift"]) == []
    with pytest.raises(ClientError) as info:
        aws["iam"].get_role(RoleName="sparkify-redshift-s3-read")
    assert info.value.response["Error"]["Code"] == "NoSuchEntity"
    assert [r[4] for r in ingress_rules(aws["ec2"])] == ["192.0.2.9/32"]
    assert (tmp_path / "dwh.cfg").read_text() == cfg_before
    code, out, err = run("down", *FAST)
    assert code == 0, err
    assert "nothing to delete" in out
    assert run("status")[0] == 3


def test_down_detaches_managed_policies_too(run, aws):
    assert run("up", "--cidr", CIDR, *FAST)[0] == 0
    arn = aws["iam"].create_policy(PolicyName="extra", PolicyDocument=json.dumps(
        infra.s3_read_policy(None)))["Policy"]["Arn"]
    aws["iam"].attach_role_policy(RoleName="sparkify-redshift-s3-read", PolicyArn=arn)
    assert run("down", *FAST)[0] == 0
    assert aws["iam"].list_roles()["Roles"] == []


# ----------------------------------------------------------------------------- failures
@pytest.mark.parametrize("state", ["incompatible-network", "hardware-failure", "deleting"])
def test_up_fails_clearly_when_the_cluster_ends_in_a_failed_state(run, aws, monkeypatch, tmp_path, state):
    stuck_in(monkeypatch, state)
    code, out, err = run("up", "--cidr", CIDR, *FAST)
    assert code == 1
    assert f"cluster sparkify is in state '{state}' and will not become available" in err
    assert not (tmp_path / "dwh.cfg").exists()
    assert [r for r in ingress_rules(aws["ec2"]) if r[2] == 5439] == []


def test_up_fails_clearly_after_the_timeout(run, aws, monkeypatch, tmp_path):
    stuck_in(monkeypatch, "creating")
    started = time.monotonic()
    code, out, err = run("up", "--cidr", CIDR, "--timeout", "0.3", "--poll-interval", "0.05")
    assert time.monotonic() - started < 5
    assert code == 1
    assert "did not become available within 0.3 s (last state: 'creating')" in err
    assert "waiting for cluster sparkify: creating" in out
    assert not (tmp_path / "dwh.cfg").exists()


def test_down_fails_clearly_when_the_cluster_does_not_go_away(run, monkeypatch):
    assert run("up", "--cidr", CIDR, *FAST)[0] == 0
    monkeypatch.setattr(infra, "delete_cluster", lambda redshift, cluster_id: True)  # never deleted
    code, _, err = run("down", "--timeout", "0.2", "--poll-interval", "0.05")
    assert code == 1
    assert "still exists after 0.2 s" in err


def test_down_still_tears_down_when_revoking_fails_and_says_so(run, aws, monkeypatch):
    assert run("up", "--cidr", CIDR, *FAST)[0] == 0
    monkeypatch.setattr(infra, "cluster_security_group_ids", lambda ec2, cluster: ["sg-0123456789abcdef0"])
    code, _, err = run("down", *FAST)
    assert code == 1
    assert "could not revoke the ingress rules in DescribeSecurityGroups: InvalidGroup.NotFound" in err
    assert "ingress rules `up` added may remain" in err
    assert clusters(aws["redshift"]) == []
    assert aws["iam"].list_roles()["Roles"] == []


def test_aws_error_is_reported_with_code_and_message(run, monkeypatch):
    monkeypatch.setattr(infra, "cluster_security_group_ids", lambda ec2, cluster: ["sg-0123456789abcdef0"])
    code, _, err = run("up", "--cidr", CIDR, *FAST)
    assert code == 1
    assert "AWS error InvalidGroup.NotFound in AuthorizeSecurityGroupIngress" in err
    assert "sg-0123456789abcdef0" in err


def test_missing_credentials_is_a_clear_error(run, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, _, err = run("status")
    assert code == 1
    assert "no AWS credentials found" in err


def test_region_comes_from_aws_region_first(run, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert run("up", "--cidr", CIDR, *FAST)[0] == 0
    session = boto3.session.Session()
    eu = session.client("redshift", region_name="eu-west-1")
    us = session.client("redshift", region_name="us-west-2")
    assert [c["ClusterIdentifier"] for c in clusters(eu)] == ["sparkify"]
    assert clusters(us) == []
    assert ".eu-west-1." in clusters(eu)[0]["Endpoint"]["Address"]


def test_help_documents_status_exit_codes(capfd):
    with pytest.raises(SystemExit) as info:
        infra_cli.main(["status", "--help"])
    assert info.value.code == 0
    out = capfd.readouterr().out
    assert "3 if it is not found" in out
    assert "3  `status` only: the cluster (with --serverless: the workgroup) was not found" in out


# ----------------------------------------------------------------------------- pure helpers
def test_cluster_create_params():
    single = infra.cluster_create_params("c", "dc2.large", 1, "db", "u", "arn:r")
    assert single["ClusterType"] == "single-node" and "NumberOfNodes" not in single
    multi = infra.cluster_create_params("c", "ra3.4xlarge", 4, "db", "u", "arn:r", public=False)
    assert (multi["ClusterType"], multi["NumberOfNodes"], multi["NodeType"]) == ("multi-node", 4, "ra3.4xlarge")
    assert multi["PubliclyAccessible"] is False and multi["IamRoles"] == ["arn:r"]
    assert not any("Password" in key for key in single)


def test_parse_cidr_normalises():
    assert str(infra.parse_cidr("203.0.113.7/24")) == "203.0.113.0/24"
    assert str(infra.parse_cidr("203.0.113.7")) == "203.0.113.7/32"
    assert str(infra.parse_cidr("2001:db8::1/64")) == "2001:db8::/64"


def test_ensure_role_attached_only_adds_a_missing_role():
    calls = []

    class FakeRedshift:
        def modify_cluster_iam_roles(self, **kwargs):
            calls.append(kwargs)

    cluster = {"ClusterIdentifier": "c", "IamRoles": [{"IamRoleArn": "arn:a"}]}
    infra.ensure_role_attached(FakeRedshift(), cluster, "arn:a")
    assert calls == []
    infra.ensure_role_attached(FakeRedshift(), cluster, "arn:b")
    assert calls == [{"ClusterIdentifier": "c", "AddIamRoles": ["arn:b"]}]


def test_create_cluster_is_retried_while_a_new_role_is_not_visible_yet(capfd):
    attempts = []

    class FakeRedshift:
        def describe_clusters(self, **kwargs):
            raise ClientError({"Error": {"Code": "ClusterNotFound", "Message": "nope"}}, "DescribeClusters")

        def create_cluster(self, **kwargs):
            attempts.append(kwargs["MasterUserPassword"] == PASSWORD)
            if len(attempts) < 3:
                raise ClientError({"Error": {"Code": "InvalidParameterValue",
                                             "Message": "The IAM role arn:r is not valid"}}, "CreateCluster")
            return {"Cluster": {"ClusterIdentifier": "c", "ClusterStatus": "creating"}}

    params = infra.cluster_create_params("c", "dc2.large", 2, "db", "u", "arn:r")
    cluster = infra.ensure_cluster(FakeRedshift(), params, PASSWORD, role_wait=5, interval=0.01)
    assert cluster["ClusterStatus"] == "creating" and attempts == [True, True, True]
    assert "not visible to Redshift yet" in capfd.readouterr().out

    other = ClientError({"Error": {"Code": "InvalidParameterValue", "Message": "bad node type"}},
                        "CreateCluster")

    class Rejecting(FakeRedshift):
        def create_cluster(self, **kwargs):
            attempts.append(False)
            raise other

    with pytest.raises(ClientError):
        infra.ensure_cluster(Rejecting(), params, PASSWORD, role_wait=5, interval=0.01)
    assert attempts[3:] == [False]  # not retried
