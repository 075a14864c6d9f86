"""Tests for `sparkify-infra ... --serverless` (sparkify_dagster.cli.infra_serverless).

moto has no redshift-serverless API, so those calls go to a real boto3 client under botocore's
Stubber: every request is validated against the real service model and compared with the
parameters we expect, in the order we expect them (the queue is checked empty after each test).
IAM and EC2 are moto's server, as in test_infra.py (whose fixtures this module reuses), so the role,
the security group and the ingress rules are real objects we can inspect. REDSHIFT_PASSWORD is a
canary that must appear in no output and no file, only in create_namespace's parameters.
"""

from __future__ import annotations

import argparse
import json

import boto3
import pytest
from botocore.stub import Stubber

from sparkify_dagster.cli import infra, infra_cli, infra_serverless
from sparkify_dagster.warehouse.redshift_config import resolve_settings
from sparkify_dagster_tests import test_infra as cluster_tests
from sparkify_dagster_tests.test_infra import CIDR, FAST, PASSWORD, default_group_id, ingress_rules, read_cfg

# test_infra.py's fixtures, shared by name: the moto server, the isolated AWS environment with the
# password canary check, and the in-process CLI runners.
moto_endpoint = cluster_tests.moto_endpoint
aws_env = cluster_tests.aws_env
aws = cluster_tests.aws
run = cluster_tests.run
usage_error = cluster_tests.usage_error

ACCOUNT = "123456789012"  # moto's default account
ROLE = "sparkify-redshift-s3-read"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
NS, WG = "sparkify-ns", "sparkify-wg"
ADDRESS = f"{WG}.{ACCOUNT}.us-west-2.redshift-serverless.amazonaws.com"
UP = ("up", "--serverless", "--cidr", CIDR, *FAST)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def stub(monkeypatch):
    """A Stubber on a real redshift-serverless client, which the CLI is made to use."""
    client = boto3.client("redshift-serverless", region_name="us-west-2")
    stubber = Stubber(client)
    stubber.activate()
    monkeypatch.setattr(infra_serverless, "make_serverless_client", lambda region_name: client)
    stubber.strict = True  # a test that queues more than it may use says so
    yield stubber
    stubber.deactivate()
    if stubber.strict:
        stubber.assert_no_pending_responses()


def namespace(status: str = "AVAILABLE", roles: tuple[str, ...] = (ROLE_ARN,), default: str | None = ROLE_ARN):
    """A GetNamespace/CreateNamespace response (iamRoles in the API's 'IamRole(...)' form)."""
    body = {"namespaceName": NS, "namespaceId": "ns-1", "status": status, "dbName": "sparkify",
            "adminUsername": "sparkify",
            "iamRoles": [f"IamRole(applyStatus=in-sync, iamRoleArn={arn})" for arn in roles]}
    if default:
        body["defaultIamRoleArn"] = default
    return {"namespace": body}


WG_ARN = "arn:aws:redshift-serverless:us-west-2:123456789012:workgroup/wg-1"


def workgroup(status: str = "AVAILABLE", groups: list[str] | None = None, capacity: int = 8,
              address: str | None = ADDRESS, ns: str = NS, public: bool = True):
    """A GetWorkgroup/CreateWorkgroup response."""
    body = {"workgroupName": WG, "workgroupId": "wg-1", "workgroupArn": WG_ARN, "namespaceName": ns, "status": status,
            "baseCapacity": capacity, "publiclyAccessible": public, "securityGroupIds": groups or []}
    if address:
        body["endpoint"] = {"address": address, "port": 5439}
    return {"workgroup": body}


def not_found(stubber, operation: str, **params) -> None:
    """Queue a ResourceNotFoundException for `operation` called with `params`."""
    stubber.add_client_error(operation, "ResourceNotFoundException", "not found", 404,
                             expected_params=params)


def queue_fresh_up(stubber, group: str, capacity: int = 8, public: bool = True) -> None:
    """What `up --serverless` asks for when nothing exists yet, through CREATING/MODIFYING."""
    not_found(stubber, "get_namespace", namespaceName=NS)
    stubber.add_response("create_namespace", namespace("MODIFYING"), {
        "namespaceName": NS, "dbName": "sparkify", "adminUsername": "sparkify",
        "adminUserPassword": PASSWORD, "iamRoles": [ROLE_ARN], "defaultIamRoleArn": ROLE_ARN})
    stubber.add_response("get_namespace", namespace("MODIFYING"), {"namespaceName": NS})
    stubber.add_response("get_namespace", namespace(), {"namespaceName": NS})
    not_found(stubber, "get_workgroup", workgroupName=WG)
    stubber.add_response("create_workgroup", workgroup("CREATING", address=None, capacity=capacity), {
        "workgroupName": WG, "namespaceName": NS, "baseCapacity": capacity, "publiclyAccessible": public})
    stubber.add_response("get_workgroup", workgroup("CREATING", address=None, capacity=capacity),
                         {"workgroupName": WG})
    stubber.add_response("get_workgroup", workgroup("MODIFYING", [group], capacity), {"workgroupName": WG})
    stubber.add_response("get_workgroup", workgroup("AVAILABLE", [group], capacity), {"workgroupName": WG})


def queue_reuse_up(stubber, group: str) -> None:
    """What `up --serverless` asks for when namespace and workgroup exist and are AVAILABLE."""
    for _ in range(2):  # ensure, then wait
        stubber.add_response("get_namespace", namespace(), {"namespaceName": NS})
    for _ in range(2):
        stubber.add_response("get_workgroup", workgroup("AVAILABLE", [group]), {"workgroupName": WG})


def queue_down(stubber, group: str) -> None:
    """What `down --serverless` asks for when both exist: workgroup first, then the namespace."""
    stubber.add_response("get_workgroup", workgroup("AVAILABLE", [group]), {"workgroupName": WG})  # groups
    stubber.add_response("get_workgroup", workgroup("AVAILABLE", [group]), {"workgroupName": WG})
    stubber.add_response("delete_workgroup", workgroup("DELETING", [group]), {"workgroupName": WG})
    stubber.add_response("get_workgroup", workgroup("DELETING", [group]), {"workgroupName": WG})
    not_found(stubber, "get_workgroup", workgroupName=WG)
    stubber.add_response("get_namespace", namespace(), {"namespaceName": NS})
    stubber.add_response("delete_namespace", namespace("DELETING"), {"namespaceName": NS})
    stubber.add_response("get_namespace", namespace("DELETING"), {"namespaceName": NS})
    not_found(stubber, "get_namespace", namespaceName=NS)


def port_rules(ec2) -> list[tuple[str, str, int, int, str]]:
    return [r for r in ingress_rules(ec2) if r[2] == 5439 or r[3] == 5439]


# ----------------------------------------------------------------------------- up
def test_up_creates_namespace_workgroup_ingress_and_cfg(run, stub, aws, tmp_path):
    group = default_group_id(aws["ec2"])
    queue_fresh_up(stub, group, capacity=32)
    code, out, err = run(*UP, "--base-capacity", "32", "--bucket", "udacity-dend")
    assert code == 0, err
    # the namespace waited through MODIFYING, the workgroup through CREATING and MODIFYING
    assert "waiting for namespace sparkify-ns: MODIFYING" in out
    assert "waiting for workgroup sparkify-wg: CREATING" in out
    assert "waiting for workgroup sparkify-wg: MODIFYING" in out
    assert f"workgroup {WG} is available at {ADDRESS}:5439" in out

    role = aws["iam"].get_role(RoleName=ROLE)["Role"]
    assert role["Arn"] == ROLE_ARN
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert set(statement["Principal"]["Service"]) == {"redshift.amazonaws.com",
                                                      "redshift-serverless.amazonaws.com"}

    assert port_rules(aws["ec2"]) == [(group, "tcp", 5439, 5439, CIDR)]
    assert not any(r[4] in ("0.0.0.0/0", "::/0") for r in ingress_rules(aws["ec2"]))

    cfg = read_cfg(tmp_path / "dwh.cfg")
    assert dict(cfg["CLUSTER"]) == {"HOST": ADDRESS, "DB_NAME": "sparkify", "DB_USER": "sparkify",
                                    "DB_PORT": "5439", "WORKGROUP": WG}
    assert dict(cfg["IAM_ROLE"]) == {"ARN": ROLE_ARN}
    # the runtime reads it as a Serverless deployment
    values, _ = resolve_settings({"SPARKIFY_DWH_CFG": str(tmp_path / "dwh.cfg")}, require_password=False)
    assert (values["workgroup"], values["host"], values["cluster_id"]) == (WG, ADDRESS, None)


def test_up_twice_reuses_namespace_and_workgroup(run, stub, aws):
    group = default_group_id(aws["ec2"])
    queue_fresh_up(stub, group)
    assert run(*UP)[0] == 0
    queue_reuse_up(stub, group)  # no create_* queued: a second create would fail the Stubber
    code, out, err = run(*UP)
    assert code == 0, err
    assert "reusing namespace sparkify-ns" in out and "reusing workgroup sparkify-wg" in out
    assert "already open" in out and "reused as it is" not in err
    assert port_rules(aws["ec2"]) == [(group, "tcp", 5439, 5439, CIDR)]


def test_up_attaches_the_role_to_a_reused_namespace_and_keeps_its_other_roles(run, stub, aws):
    group = default_group_id(aws["ec2"])
    other = f"arn:aws:iam::{ACCOUNT}:role/theirs"
    stub.add_response("get_namespace", namespace(roles=(other,), default=other), {"namespaceName": NS})
    stub.add_response("update_namespace", namespace("MODIFYING"), {
        "namespaceName": NS, "iamRoles": [other, ROLE_ARN], "defaultIamRoleArn": ROLE_ARN})
    stub.add_response("get_namespace", namespace(), {"namespaceName": NS})
    stub.add_response("get_workgroup", workgroup("AVAILABLE", [group], capacity=64), {"workgroupName": WG})
    stub.add_response("get_workgroup", workgroup("AVAILABLE", [group], capacity=64), {"workgroupName": WG})
    code, out, err = run(*UP)
    assert code == 0, err
    assert f"attached role {ROLE_ARN} to namespace {NS}" in out
    assert "baseCapacity is 64, not 8 as asked: it is reused as it is" in err


def test_up_private_workgroup(run, stub, aws):
    queue_fresh_up(stub, default_group_id(aws["ec2"]), public=False)
    assert run(*UP, "--private")[0] == 0


def test_a_workgroup_of_another_namespace_is_not_reused(run, stub, aws, tmp_path):
    stub.add_response("get_namespace", namespace(), {"namespaceName": NS})
    stub.add_response("get_namespace", namespace(), {"namespaceName": NS})
    stub.add_response("get_workgroup", workgroup(ns="elsewhere"), {"workgroupName": WG})
    code, _, err = run(*UP)
    assert code == 1
    assert "workgroup sparkify-wg exists in namespace 'elsewhere', not 'sparkify-ns'" in err
    assert not (tmp_path / "dwh.cfg").exists()


def test_up_updates_the_trust_policy_of_a_role_an_older_version_made(run, stub, aws):
    aws["iam"].create_role(RoleName=ROLE, Description=infra.ROLE_DESCRIPTION, AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                  "Principal": {"Service": "redshift.amazonaws.com"}}]}))
    queue_fresh_up(stub, default_group_id(aws["ec2"]))
    code, out, _ = run(*UP)
    assert code == 0
    assert f"updated the trust policy of role {ROLE}" in out
    document = aws["iam"].get_role(RoleName=ROLE)["Role"]["AssumeRolePolicyDocument"]
    assert "redshift-serverless.amazonaws.com" in infra.trusted_services(document)


@pytest.mark.parametrize("state", ["DELETING", "FAILED"])
def test_up_fails_clearly_when_the_workgroup_ends_in_a_failed_state(run, stub, aws, tmp_path, state):
    stub.add_response("get_namespace", namespace(), {"namespaceName": NS})
    stub.add_response("get_namespace", namespace(), {"namespaceName": NS})
    not_found(stub, "get_workgroup", workgroupName=WG)
    stub.add_response("create_workgroup", workgroup("CREATING", address=None), {
        "workgroupName": WG, "namespaceName": NS, "baseCapacity": 8, "publiclyAccessible": True})
    stub.add_response("get_workgroup", workgroup("CREATING", address=None), {"workgroupName": WG})
    # The service model's enum has no failed state: a response from a newer API would still parse.
    stub.add_response("get_workgroup", workgroup(state), {"workgroupName": WG})
    code, out, err = run(*UP)
    assert code == 1
    assert f"workgroup sparkify-wg is in state '{state}' and will not become available" in err
    assert err.count("\n") == 1  # one line
    assert not (tmp_path / "dwh.cfg").exists()
    assert port_rules(aws["ec2"]) == []


def test_up_fails_clearly_after_the_timeout(run, stub, aws, tmp_path):
    stub.strict = False  # how many polls fit in the timeout varies
    stub.add_response("get_namespace", namespace(), {"namespaceName": NS})
    for _ in range(500):
        stub.add_response("get_namespace", namespace("MODIFYING"), {"namespaceName": NS})
    code, out, err = run(*UP[:-4], "--timeout", "0.3", "--poll-interval", "0.05")
    assert code == 1
    assert "namespace sparkify-ns did not become available within 0.3 s (last state: 'MODIFYING')" in err
    assert "waiting for namespace sparkify-ns: MODIFYING" in out
    assert not (tmp_path / "dwh.cfg").exists()


@pytest.mark.parametrize("capacity", ["0", "7", "12", "-8", "520", "1025", "2048", "eight"])
def test_invalid_base_capacity_is_rejected_before_any_aws_call(usage_error, stub, aws, tmp_path, capacity):
    err = usage_error(*UP, "--base-capacity", capacity)
    (line,) = [x for x in err.splitlines() if "error:" in x]
    assert "argument --base-capacity" in line
    assert ("not a base capacity Redshift Serverless accepts" in line) or ("not a whole number" in line)
    assert aws["iam"].list_roles()["Roles"] == []
    assert not (tmp_path / "dwh.cfg").exists()


def test_base_capacity_rule():
    accepted = [v for v in range(0, 1100) if _accepts(v)]
    assert accepted == [4, *range(8, 513, 8), *range(544, 1025, 32)]


def _accepts(value: int) -> bool:
    try:
        return infra_serverless.parse_base_capacity(str(value)) == value
    except argparse.ArgumentTypeError:
        return False


@pytest.mark.parametrize("name", ["ab", "Sparkify", "my_wg", "x" * 65])
def test_invalid_workgroup_name_is_rejected(usage_error, stub, name):
    assert "invalid name" in usage_error(*UP, "--workgroup", name)


def test_missing_password_fails_before_any_aws_call(run, stub, aws, monkeypatch):
    monkeypatch.delenv("REDSHIFT_PASSWORD")
    code, _, err = run(*UP)
    assert code == 2 and "REDSHIFT_PASSWORD is not set" in err
    assert aws["iam"].list_roles()["Roles"] == []


# ----------------------------------------------------------------------------- dwh.cfg, both ways
def test_serverless_up_drops_a_stale_cluster_id_and_cluster_up_drops_a_stale_workgroup(run, stub, aws, tmp_path):
    path = tmp_path / "dwh.cfg"
    path.write_text("[CLUSTER]\nHOST=old\nDB_PASSWORD=Keep%Me1\ncluster_id=sparkify\n", encoding="utf-8")
    queue_fresh_up(stub, default_group_id(aws["ec2"]))
    assert run(*UP)[0] == 0
    cfg = read_cfg(path)["CLUSTER"]
    assert cfg["WORKGROUP"] == WG and "cluster_id" not in cfg and "CLUSTER_ID" not in cfg
    assert cfg["DB_PASSWORD"] == "Keep%Me1"

    code, _, err = run("up", "--cidr", CIDR, *FAST)  # the provisioned path, on moto
    assert code == 0, err
    cfg = read_cfg(path)["CLUSTER"]
    assert cfg["CLUSTER_ID"] == "sparkify" and "WORKGROUP" not in cfg
    assert cfg["HOST"].startswith("sparkify.") and cfg["DB_PASSWORD"] == "Keep%Me1"
    values, _ = resolve_settings({"SPARKIFY_DWH_CFG": str(path)}, require_password=False)
    assert (values["workgroup"], values["cluster_id"]) == (None, None)  # cluster id: for IAM auth only
    values, _ = resolve_settings({"SPARKIFY_DWH_CFG": str(path), "REDSHIFT_AUTH": "iam"})
    assert (values["workgroup"], values["cluster_id"]) == (None, "sparkify")


# ----------------------------------------------------------------------------- status
def test_status_prints_namespace_workgroup_endpoint_capacity_and_role(run, stub, aws):
    queue_fresh_up(stub, default_group_id(aws["ec2"]), capacity=16)
    assert run(*UP, "--base-capacity", "16")[0] == 0
    stub.add_response("get_namespace", namespace(), {"namespaceName": NS})
    stub.add_response("get_workgroup", workgroup(capacity=16), {"workgroupName": WG})
    code, out, _ = run("status", "--serverless")
    assert code == 0
    assert f"namespace {NS}: AVAILABLE (database sparkify, default role {ROLE_ARN})" in out
    assert f"workgroup {WG}: AVAILABLE (16 RPUs base capacity, public, namespace {NS}" in out
    assert f"endpoint: {ADDRESS}:5439" in out
    assert f"workgroup ARN: {WG_ARN}" in out  # what the README's GetCredentials policy names
    assert f"role {ROLE}: {ROLE_ARN}" in out
    # the cluster status says the dwh.cfg names a workgroup (and shows the cluster, not found)
    code, out, _ = run("status")
    assert code == 3
    assert "names workgroup 'sparkify-wg': `sparkify-infra status --serverless` shows it" in out
    assert "cluster sparkify: not found" in out


def test_status_when_nothing_exists(run, stub):
    not_found(stub, "get_namespace", namespaceName=NS)
    not_found(stub, "get_workgroup", workgroupName=WG)
    code, out, _ = run("status", "--serverless")
    assert code == 3
    assert f"namespace {NS}: not found" in out and f"workgroup {WG}: not found" in out
    assert f"role {ROLE}: not found" in out


# ----------------------------------------------------------------------------- down
def test_down_deletes_in_order_revokes_our_rule_only_and_is_idempotent(run, stub, aws, tmp_path):
    ec2 = aws["ec2"]
    group = default_group_id(ec2)
    queue_fresh_up(stub, group)
    assert run(*UP)[0] == 0
    ec2.authorize_security_group_ingress(  # not ours: must survive `down`
        GroupId=group, IpPermissions=[{"IpProtocol": "tcp", "FromPort": 5439, "ToPort": 5439,
                                       "IpRanges": [{"CidrIp": "192.0.2.9/32"}]}])
    queue_down(stub, group)  # the Stubber checks the order: workgroup gone before the namespace
    code, out, err = run("down", "--serverless", *FAST)
    assert code == 0, err
    assert f"revoked tcp ingress from {CIDR}" in out
    assert out.index("workgroup sparkify-wg deleted") < out.index("deleting namespace sparkify-ns")
    assert out.index("namespace sparkify-ns deleted") < out.index(f"role {ROLE} and its policies deleted")
    assert port_rules(ec2) == [(group, "tcp", 5439, 5439, "192.0.2.9/32")]
    assert aws["iam"].list_roles()["Roles"] == []

    for _ in range(2):
        not_found(stub, "get_workgroup", workgroupName=WG)
    not_found(stub, "get_namespace", namespaceName=NS)
    code, out, err = run("down", "--serverless", *FAST)
    assert code == 0, err
    assert out.count("nothing to delete") == 3


def test_down_waits_for_a_workgroup_already_being_deleted(run, stub):
    stub.add_response("get_workgroup", workgroup("DELETING"), {"workgroupName": WG})
    stub.add_response("get_workgroup", workgroup("DELETING"), {"workgroupName": WG})
    not_found(stub, "get_workgroup", workgroupName=WG)
    not_found(stub, "get_namespace", namespaceName=NS)
    code, out, err = run("down", "--serverless", *FAST)
    assert code == 0, err
    assert "workgroup sparkify-wg is already being deleted" in out and "workgroup sparkify-wg deleted" in out


def test_down_fails_clearly_when_the_workgroup_does_not_go_away(run, stub, aws):
    stub.strict = False
    stub.add_response("get_workgroup", workgroup("AVAILABLE"), {"workgroupName": WG})
    stub.add_response("get_workgroup", workgroup("AVAILABLE"), {"workgroupName": WG})
    stub.add_response("delete_workgroup", workgroup("DELETING"), {"workgroupName": WG})
    for _ in range(500):
        stub.add_response("get_workgroup", workgroup("DELETING"), {"workgroupName": WG})
    code, _, err = run("down", "--serverless", "--timeout", "0.2", "--poll-interval", "0.05")
    assert code == 1
    assert "workgroup sparkify-wg still exists after 0.2 s (state: 'DELETING')" in err


def test_down_refuses_when_dwh_cfg_names_the_other_deployment(run, stub, aws, tmp_path):
    (tmp_path / "dwh.cfg").write_text("[CLUSTER]\nCLUSTER_ID=sparkify\n", encoding="utf-8")
    code, _, err = run("down", "--serverless", *FAST)  # nothing is queued: no AWS call may happen
    assert code == 2
    assert "names cluster 'sparkify'" in err and "`sparkify-infra down` for it" in err
    (tmp_path / "dwh.cfg").write_text("[CLUSTER]\nWORKGROUP=sparkify-wg\n", encoding="utf-8")
    code, _, err = run("down", *FAST)
    assert code == 2
    assert "names workgroup 'sparkify-wg'" in err and "`sparkify-infra down --serverless` for it" in err


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("code_name", ["AccessDeniedException", "ValidationException"])
def test_aws_errors_are_one_line_with_the_password_scrubbed(run, stub, aws, code_name):
    not_found(stub, "get_namespace", namespaceName=NS)
    # a message that echoes the password (no real error should, but nothing may print it)
    stub.add_client_error("create_namespace", code_name, f"rejected: {PASSWORD} is not allowed", 400)
    code, out, err = run(*UP)  # `run` asserts the password and "Traceback" are absent
    assert code == 1
    assert err.startswith(f"sparkify-infra: error: AWS error {code_name} in CreateNamespace: rejected: ***")
    assert err.count("\n") == 1


def test_conflict_on_delete_is_one_clear_line(run, stub, aws):
    stub.add_response("get_workgroup", workgroup("MODIFYING"), {"workgroupName": WG})
    stub.add_response("get_workgroup", workgroup("MODIFYING"), {"workgroupName": WG})
    stub.add_client_error("delete_workgroup", "ConflictException",
                          "There is an operation running on the workgroup", 409)
    code, _, err = run("down", "--serverless", *FAST)
    assert code == 1
    assert err == ("sparkify-infra: error: AWS error ConflictException in DeleteWorkgroup: "
                   "There is an operation running on the workgroup\n")


def test_missing_credentials_is_a_clear_error(run, monkeypatch):
    # a real, unstubbed client: botocore finds no credentials before anything is sent
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, _, err = run("status", "--serverless")
    assert code == 1
    assert "no AWS credentials found" in err


def test_up_help_names_the_defaults_of_both_deployments(capfd):
    with pytest.raises(SystemExit) as info:
        infra_cli.main(["up", "--help"])
    assert info.value.code == 0
    out = " ".join(capfd.readouterr().out.split())  # argparse wraps lines
    assert "--serverless" in out
    assert "default: ra3.large" in out and "DC2 clusters can no longer be created" in out
    assert f"RPUs: {infra_serverless.BASE_CAPACITY_RULE} (default: 8" in out
    assert "default: sparkify-wg" in out and "default: sparkify-ns" in out
