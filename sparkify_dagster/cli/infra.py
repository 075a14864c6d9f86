"""Create, inspect and tear down the Sparkify Redshift cluster: the seeds' IaC notebooks, as a CLI.

``sparkify-infra up --cidr CIDR`` does, idempotently (anything that already exists is reused):

1. creates the IAM role that Redshift assumes (trust policy for ``redshift.amazonaws.com`` and
   ``redshift-serverless.amazonaws.com``) and puts on it one inline, least-privilege, read-only S3
   policy (``s3:GetObject`` and ``s3:ListBucket``, scoped to ``--bucket`` when given, else ``*``);
2. launches the cluster with that role attached (``--node-type``, default ``ra3.large``: DC2 nodes
   were deprecated in 2025 and new DC2 clusters cannot be created; ``--nodes``; one node means
   ``ClusterType=single-node``), the master password taken from ``REDSHIFT_PASSWORD``, which this
   tool never prints, logs or writes anywhere;
3. polls ``describe_clusters`` until the cluster is available (fails on a failed state or after
   ``--timeout`` seconds);
4. opens the cluster's port (5439) in its VPC security group to ``--cidr`` only (there is no
   0.0.0.0/0 default; an identical existing rule is fine). The rule's description marks it as ours,
   so that ``down`` can revoke it: the group is often the VPC's default group, which outlives the
   cluster;
5. writes HOST, DB_NAME, DB_USER, DB_PORT, CLUSTER_ID (``[CLUSTER]``; a stale WORKGROUP key is
   removed) and ARN (``[IAM_ROLE]``) into the seeds-style ``dwh.cfg`` at ``$SPARKIFY_DWH_CFG``
   (default ``./dwh.cfg``), keeping every other section and key, DB_PASSWORD included (it is never
   written by this tool). The file is rewritten by configparser, so its comments are not kept.

``sparkify-infra status`` prints the cluster's state, endpoint and the role; ``sparkify-infra down``
revokes our ingress rules, deletes the cluster (no final snapshot), waits until it is gone, then
removes the role's policies and the role. Both are idempotent.

With ``--serverless`` (given to ``up``, ``status`` and ``down`` alike, so each command says what it
acts on) the same steps make a Redshift Serverless namespace and workgroup instead, and dwh.cfg gets
WORKGROUP (a stale CLUSTER_ID is removed): see :mod:`sparkify_dagster.cli.infra_serverless`.
``down`` refuses (exit 2, before any AWS call) when dwh.cfg names the other kind of deployment,
since both share the role; ``status`` only notes it.

The region is ``$AWS_REGION``, else ``$AWS_DEFAULT_REGION``, else us-west-2. No endpoint is set
here, so boto3 honours ``$AWS_ENDPOINT_URL`` (e.g. a moto server in tests).
"""

from __future__ import annotations

import argparse
import configparser
import ipaddress
import json
import os
import re
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from sparkify_dagster.text import env_region, scrub

__all__ = [
    "InfraError", "cfg_deployment", "check_cfg_deployment", "check_up_inputs",
    "cluster_create_params", "cluster_security_group_ids", "delete_cluster",
    "delete_role", "describe_cluster", "ensure_cluster", "ensure_role", "ensure_role_attached",
    "note_missing_db_password", "note_other_deployment", "open_port", "read_password", "revoke_our_ingress", "s3_read_policy", "trust_policy",
    "trusted_services", "wait_until_available", "wait_until_gone", "write_dwh_cfg",
]

PROG = "sparkify-infra"
DEFAULT_REGION = "us-west-2"
DEFAULT_PORT = 5439
POLICY_NAME = "sparkify-s3-read-only"
ROLE_DESCRIPTION = "Lets Redshift read the Sparkify raw data from S3 (created by sparkify-infra)"
# A cluster assumes the role as redshift.amazonaws.com; a Serverless namespace needs both names
# in the trust policy (AWS: "Granting permissions to Amazon Redshift Serverless").
TRUSTED_SERVICES = ("redshift.amazonaws.com", "redshift-serverless.amazonaws.com")
PASSWORD_ENV = "REDSHIFT_PASSWORD"
CFG_ENV = "SPARKIFY_DWH_CFG"
READ_ONLY_ACTIONS = ("s3:GetObject", "s3:ListBucket")
# Cluster states from which waiting cannot lead to "available".
FAILED_STATES = frozenset({
    "failed", "hardware-failure", "incompatible-hsm", "incompatible-network",
    "incompatible-parameters", "incompatible-restore", "storage-full",
    "deleting", "final-snapshot", "paused",
})
RULE_KINDS = {"cluster": "redshift cluster", "workgroup": "redshift-serverless workgroup"}
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NOT_FOUND = 0, 1, 2, 3
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class InfraError(Exception):
    """A failure with a message meant for the user (printed without a traceback)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE):
        """Keep the message and the exit code main() returns for it."""
        super().__init__(message)
        self.exit_code = exit_code


# ----------------------------------------------------------------------------- inputs
def region() -> str:
    """The AWS region: $AWS_REGION, else $AWS_DEFAULT_REGION, else us-west-2."""
    return env_region() or DEFAULT_REGION


def make_clients(region_name: str) -> tuple[Any, Any, Any]:
    """The (iam, redshift, ec2) clients; endpoint_url is left to boto3 so $AWS_ENDPOINT_URL applies."""
    session = boto3.session.Session(region_name=region_name)
    return session.client("iam"), session.client("redshift"), session.client("ec2")


def parse_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse --cidr with ipaddress.ip_network (host bits are masked off; a bare address is a /32)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"invalid CIDR {text!r} ({exc}); give a network such as 203.0.113.7/32") from exc


def parse_bucket(text: str) -> str:
    """Validate --bucket (an S3 bucket name; a leading s3:// and a trailing / are accepted)."""
    name = text.strip()
    name = name[5:] if name.startswith("s3://") else name
    name = name.rstrip("/")
    if not _BUCKET_RE.match(name) or ".." in name:
        raise argparse.ArgumentTypeError(
            f"invalid S3 bucket name {text!r} (a bucket name only, e.g. udacity-dend; no prefix)")
    return name


def read_password(environ: dict[str, str] | None = None) -> str:
    """Return $REDSHIFT_PASSWORD after checking Redshift's rules; errors never include the value."""
    env = os.environ if environ is None else environ
    password = env.get(PASSWORD_ENV, "")
    if not password:
        raise InfraError(
            f"{PASSWORD_ENV} is not set: export the cluster's master password in it "
            "(it is read from the environment only, never from the command line or dwh.cfg)",
            EXIT_USAGE)
    problems = []
    if not 8 <= len(password) <= 64:
        problems.append("8 to 64 characters")
    if not (re.search(r"[A-Z]", password) and re.search(r"[a-z]", password)
            and re.search(r"[0-9]", password)):
        problems.append("at least one upper-case letter, one lower-case letter and one digit")
    if any(not 33 <= ord(ch) <= 126 or ch in "'\"\\/@" for ch in password):
        problems.append("printable ASCII only, without spaces, ' \" \\ / or @")
    if problems:
        raise InfraError(f"{PASSWORD_ENV} does not meet Redshift's password rules: "
                         + "; ".join(problems), EXIT_USAGE)
    return password


def cfg_path() -> Path:
    """Where dwh.cfg lives: $SPARKIFY_DWH_CFG, else dwh.cfg in the working directory."""
    return Path(os.environ.get(CFG_ENV) or "dwh.cfg")


# ----------------------------------------------------------------------------- IAM
def trust_policy() -> dict:
    """The trust policy that lets Redshift (a cluster, or a Serverless namespace) assume the role."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": list(TRUSTED_SERVICES)},
            "Action": "sts:AssumeRole",
        }],
    }


def s3_read_policy(bucket: str | None) -> dict:
    """The inline read-only S3 policy: ListBucket on the bucket, GetObject on its objects (or *)."""
    if not bucket:
        statements = [{"Sid": "SparkifyS3ReadOnly", "Effect": "Allow",
                       "Action": list(READ_ONLY_ACTIONS), "Resource": "*"}]
    else:
        statements = [
            {"Sid": "SparkifyListBucket", "Effect": "Allow", "Action": ["s3:ListBucket"],
             "Resource": [f"arn:aws:s3:::{bucket}"]},
            {"Sid": "SparkifyGetObject", "Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": [f"arn:aws:s3:::{bucket}/*"]},
        ]
    return {"Version": "2012-10-17", "Statement": statements}


def trusted_services(document: Any) -> set[str]:
    """The services a trust policy document allows to assume the role (sts:AssumeRole, Allow)."""
    if isinstance(document, str):
        document = json.loads(urllib.parse.unquote(document))
    statements = document.get("Statement", [])
    found: set[str] = set()
    for st in statements if isinstance(statements, list) else [statements]:
        principal = st.get("Principal")
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        actions = st.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        services = [services] if isinstance(services, str) else services
        if st.get("Effect") == "Allow" and "sts:AssumeRole" in actions:
            found.update(services)
    return found


def ensure_role(iam, role_name: str, bucket: str | None, *, serverless: bool = False) -> str:
    """Create (or reuse) the role, put the read-only S3 inline policy on it, return its ARN."""
    try:
        role = iam.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=json.dumps(trust_policy()),
            Description=ROLE_DESCRIPTION,
        )["Role"]
        _say(f"created IAM role {role_name}")
    except ClientError as exc:
        if _code(exc) != "EntityAlreadyExists":
            raise
        role = iam.get_role(RoleName=role_name)["Role"]
        _say(f"reusing IAM role {role_name}")
        _check_trust(iam, role, serverless)
    wanted = s3_read_policy(bucket)
    previous = _inline_policy(iam, role_name, POLICY_NAME)
    if previous is not None and previous != wanted:
        _warn(f"replacing the inline policy {POLICY_NAME} of role {role_name}: S3 resources were "
              f"{_resources(previous)}, now {_resources(wanted)}")
    iam.put_role_policy(RoleName=role_name, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(wanted))
    scope = f"bucket {bucket}" if bucket else "all buckets (*)"
    _say(f"put inline policy {POLICY_NAME} (s3:GetObject, s3:ListBucket on {scope})")
    return role["Arn"]


def _check_trust(iam, role: dict, serverless: bool) -> None:
    """Make a reused role trust the services it needs: ours are updated, anyone else's only warned of."""
    needed = set(TRUSTED_SERVICES) if serverless else {TRUSTED_SERVICES[0]}
    missing = needed - trusted_services(role.get("AssumeRolePolicyDocument", {}))
    if not missing:
        return
    name = role["RoleName"]
    if role.get("Description") == ROLE_DESCRIPTION:  # made by an older sparkify-infra (cluster only)
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust_policy()))
        _say(f"updated the trust policy of role {name}: {', '.join(TRUSTED_SERVICES)} may assume it")
        return
    _warn(f"role {name} exists but its trust policy does not let {', '.join(sorted(missing))} "
          "assume it: COPY will fail until you fix it or pick another --role-name")


def _inline_policy(iam, role_name: str, policy_name: str) -> dict | None:
    """The role's inline policy document, or None if it has no such policy."""
    try:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
    except ClientError as exc:
        if _code(exc) == "NoSuchEntity":
            return None
        raise
    return json.loads(urllib.parse.unquote(document)) if isinstance(document, str) else document


def _resources(policy: dict) -> str:
    """The resources a policy document names, for messages."""
    found: list[str] = []
    for st in policy.get("Statement", []):
        res = st.get("Resource", [])
        found += [res] if isinstance(res, str) else list(res)
    return ", ".join(found) or "(none)"


def get_role_arn(iam, role_name: str) -> str | None:
    """The role's ARN, or None if there is no such role."""
    try:
        return iam.get_role(RoleName=role_name)["Role"]["Arn"]
    except ClientError as exc:
        if _code(exc) == "NoSuchEntity":
            return None
        raise


def delete_role(iam, role_name: str) -> bool:
    """Delete the role's policies, instance-profile links and the role itself; False if gone."""
    try:
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=role_name):
            for name in page["PolicyNames"]:
                iam.delete_role_policy(RoleName=role_name, PolicyName=name)
        for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name):
            for policy in page["AttachedPolicies"]:
                iam.detach_role_policy(RoleName=role_name, PolicyArn=policy["PolicyArn"])
        for page in iam.get_paginator("list_instance_profiles_for_role").paginate(RoleName=role_name):
            for profile in page["InstanceProfiles"]:
                iam.remove_role_from_instance_profile(
                    RoleName=role_name, InstanceProfileName=profile["InstanceProfileName"])
        iam.delete_role(RoleName=role_name)
        return True
    except ClientError as exc:
        if _code(exc) == "NoSuchEntity":
            return False
        raise


# ----------------------------------------------------------------------------- Redshift
def describe_cluster(redshift, cluster_id: str) -> dict | None:
    """The cluster's description from describe_clusters, or None if it does not exist."""
    try:
        return redshift.describe_clusters(ClusterIdentifier=cluster_id)["Clusters"][0]
    except ClientError as exc:
        if _code(exc) == "ClusterNotFound":
            return None
        raise


def cluster_create_params(cluster_id: str, node_type: str, nodes: int, db: str, user: str,
                          role_arn: str, public: bool = True) -> dict:
    """create_cluster's parameters, without the password (single-node when nodes == 1)."""
    params: dict[str, Any] = {
        "ClusterIdentifier": cluster_id, "NodeType": node_type, "DBName": db,
        "MasterUsername": user, "IamRoles": [role_arn], "Port": DEFAULT_PORT,
        "PubliclyAccessible": public,
    }
    if nodes == 1:
        params["ClusterType"] = "single-node"
    else:
        params.update(ClusterType="multi-node", NumberOfNodes=nodes)
    return params


def create_while_role_settles(create: Callable[[], dict], role_not_visible: Callable[[ClientError], bool],
                              role_wait: float, interval: float) -> dict:
    """``create()``, retried for up to role_wait seconds while the error says a new IAM role is not yet
    visible to Redshift (IAM is eventually consistent); any other error is raised at once."""
    deadline = time.monotonic() + role_wait
    while True:
        try:
            return create()
        except ClientError as exc:
            if not role_not_visible(exc) or time.monotonic() + interval > deadline:
                raise
            _say("the new IAM role is not visible to Redshift yet (IAM is eventually consistent); "
                 f"retrying in {interval:g} s")
            time.sleep(interval)


def mentions_role(exc: ClientError, code_prefix: str) -> bool:
    """Whether an error of a code starting with ``code_prefix`` is about the role."""
    message = exc.response.get("Error", {}).get("Message", "").lower()
    return _code(exc).startswith(code_prefix) and "role" in message


def create_unless_taken(create: Callable[[], dict], find: Callable[[], dict | None],
                        taken_code: str) -> tuple[dict, bool]:
    """(the resource, whether this call created it): ``create()``, or when another caller created it
    meanwhile (``taken_code``), what ``find()`` returns."""
    try:
        return create(), True
    except ClientError as exc:
        if _code(exc) != taken_code:
            raise
        existing = find()
        if existing is None:
            raise
        return existing, False


def ensure_cluster(redshift, params: dict, password: str, *, role_wait: float = 60.0,
                   interval: float = 5.0) -> dict:
    """Create the cluster unless one with that identifier exists; return its description."""
    cluster_id = params["ClusterIdentifier"]
    existing = describe_cluster(redshift, cluster_id)
    if existing is None:
        existing, created = create_unless_taken(
            lambda: create_while_role_settles(
                lambda: redshift.create_cluster(**params, MasterUserPassword=password)["Cluster"],
                lambda exc: mentions_role(exc, "InvalidParameter"), role_wait, interval),
            lambda: describe_cluster(redshift, cluster_id), "ClusterAlreadyExists")
        if created:
            nodes = params.get("NumberOfNodes", 1)
            kind = "1 node" if nodes == 1 else f"{nodes} nodes"
            _say(f"creating cluster {cluster_id} ({params['NodeType']}, {kind})")
            return existing
    _say(f"reusing cluster {cluster_id} (state: {existing.get('ClusterStatus')})")
    wanted_nodes = params.get("NumberOfNodes", 1)
    if existing.get("NodeType") != params["NodeType"] or existing.get("NumberOfNodes") != wanted_nodes:
        _warn(f"cluster {cluster_id} is {existing.get('NodeType')} x {existing.get('NumberOfNodes')}, "
              f"not {params['NodeType']} x {wanted_nodes} as asked: it is reused as it is (not resized)")
    return existing


def ensure_role_attached(redshift, cluster: dict, role_arn: str) -> None:
    """Attach the role to a (reused) cluster that does not have it yet."""
    attached = {r.get("IamRoleArn") for r in cluster.get("IamRoles", [])}
    if role_arn not in attached:
        redshift.modify_cluster_iam_roles(
            ClusterIdentifier=cluster["ClusterIdentifier"], AddIamRoles=[role_arn])
        _say(f"attached role {role_arn} to cluster {cluster['ClusterIdentifier']}")


def wait_until_available(redshift, cluster_id: str, timeout: float, interval: float) -> dict:
    """Poll describe_clusters until the cluster is available; InfraError on a failed state or timeout."""
    started = time.monotonic()
    deadline = started + timeout
    last = None
    while True:
        cluster = describe_cluster(redshift, cluster_id)
        if cluster is None:
            raise InfraError(f"cluster {cluster_id} disappeared while waiting for it to come up")
        status = cluster.get("ClusterStatus", "?")
        if status == "available" and (cluster.get("Endpoint") or {}).get("Address"):
            return cluster
        if status in FAILED_STATES or cluster.get("ClusterAvailabilityStatus") == "Failed":
            raise InfraError(
                f"cluster {cluster_id} is in state '{status}' and will not become available; "
                f"see the Redshift console, then run `{PROG} down` (and `{PROG} up` again)")
        # Every state seen is reported, even the one the wait times out in (a slow first describe
        # could otherwise time out before saying anything).
        if status != last:
            _say(f"waiting for cluster {cluster_id}: {status} "
                 f"({time.monotonic() - started:.0f} s elapsed, timeout {timeout:g} s)")
            last = status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise InfraError(
                f"cluster {cluster_id} did not become available within {timeout:g} s "
                f"(last state: '{status}'); it may still come up: check `{PROG} status`, then rerun "
                f"`{PROG} up` (it reuses what exists) or run `{PROG} down`")
        time.sleep(min(interval, remaining))


def delete_cluster(redshift, cluster_id: str) -> bool:
    """Delete the cluster without a final snapshot; False if it does not exist."""
    cluster = describe_cluster(redshift, cluster_id)
    if cluster is None:
        return False
    if cluster.get("ClusterStatus") == "deleting":
        _say(f"cluster {cluster_id} is already being deleted")
        return True
    try:
        redshift.delete_cluster(ClusterIdentifier=cluster_id, SkipFinalClusterSnapshot=True)
    except ClientError as exc:
        if _code(exc) == "ClusterNotFound":
            return False
        raise
    _say(f"deleting cluster {cluster_id} (no final snapshot)")
    return True


def wait_until_gone(redshift, cluster_id: str, timeout: float, interval: float) -> None:
    """Poll describe_clusters until the cluster no longer exists; InfraError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        cluster = describe_cluster(redshift, cluster_id)
        if cluster is None:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise InfraError(
                f"cluster {cluster_id} still exists after {timeout:g} s (state: "
                f"'{cluster.get('ClusterStatus')}'); rerun `{PROG} down` to keep waiting")
        time.sleep(min(interval, remaining))


# ----------------------------------------------------------------------------- EC2
def _rule_description(name: str, kind: str = "cluster") -> str:
    """The description that marks an ingress rule as made by this tool for this cluster (or workgroup)."""
    return f"sparkify-infra: {RULE_KINDS[kind]} {name}"


def _default_security_group(ec2, vpc_id: str | None) -> str:
    """The 'default' security group of vpc_id (or of the region's default VPC)."""
    if vpc_id is None:
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise InfraError("the cluster reports no VPC security group and the region has no default "
                             "VPC: open the port in the cluster's security group by hand")
        vpc_id = vpcs[0]["VpcId"]
    groups = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]},
    ])["SecurityGroups"]
    if not groups:
        raise InfraError(f"VPC {vpc_id} has no default security group")
    return groups[0]["GroupId"]


def cluster_security_group_ids(ec2, cluster: dict) -> list[str]:
    """The cluster's VPC security groups (else its VPC's default group, as Redshift assigns it)."""
    ids = [g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", [])
           if g.get("Status", "active") == "active"]
    return ids or [_default_security_group(ec2, cluster.get("VpcId"))]


def open_port(ec2, group_id: str, network, port: int, cluster_id: str, kind: str = "cluster") -> bool:
    """Allow tcp `port` from `network` in the group; False if an identical rule already exists."""
    description = _rule_description(cluster_id, kind)
    if network.version == 6:
        ranges = {"Ipv6Ranges": [{"CidrIpv6": str(network), "Description": description}]}
    else:
        ranges = {"IpRanges": [{"CidrIp": str(network), "Description": description}]}
    try:
        ec2.authorize_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": port, "ToPort": port, **ranges}],
        )
        return True
    except ClientError as exc:
        if _code(exc) == "InvalidPermission.Duplicate":
            return False
        raise


def revoke_our_ingress(ec2, group_ids: list[str], cluster_id: str, kind: str = "cluster") -> list[str]:
    """Revoke the ingress rules this tool added for the cluster (or workgroup); return the CIDRs revoked."""
    marker = _rule_description(cluster_id, kind)
    revoked = []
    for group in ec2.describe_security_groups(GroupIds=group_ids)["SecurityGroups"]:
        for perm in group.get("IpPermissions", []):
            v4 = [{"CidrIp": r["CidrIp"]} for r in perm.get("IpRanges", [])
                  if r.get("Description") == marker]
            v6 = [{"CidrIpv6": r["CidrIpv6"]} for r in perm.get("Ipv6Ranges", [])
                  if r.get("Description") == marker]
            if not (v4 or v6):
                continue
            rule = {k: perm[k] for k in ("IpProtocol", "FromPort", "ToPort") if k in perm}
            ec2.revoke_security_group_ingress(
                GroupId=group["GroupId"], IpPermissions=[{**rule, "IpRanges": v4, "Ipv6Ranges": v6}])
            revoked += [r["CidrIp"] for r in v4] + [r["CidrIpv6"] for r in v6]
    return revoked


# ----------------------------------------------------------------------------- dwh.cfg
def _new_config() -> configparser.ConfigParser:
    """A ConfigParser that keeps key case and does no interpolation (values may hold '%')."""
    config = configparser.ConfigParser(interpolation=None)
    config.optionxform = str  # type: ignore[assignment,method-assign]
    return config


def read_dwh_cfg(path: Path) -> configparser.ConfigParser:
    """Read dwh.cfg (an empty config if the file does not exist); InfraError if it cannot be parsed."""
    config = _new_config()
    try:
        if path.exists():
            with path.open(encoding="utf-8") as fh:
                config.read_file(fh)
    except (configparser.Error, OSError, UnicodeDecodeError) as exc:
        raise InfraError(f"cannot read {path}: {exc}") from exc
    return config


def _set(config: configparser.ConfigParser, section: str, key: str, value: str) -> None:
    """Set section.key, reusing the file's spelling of the key if it differs only in case."""
    if not config.has_section(section):
        config.add_section(section)
    spelling = next((k for k in config[section] if k.lower() == key.lower()), key)
    config[section][spelling] = value


def _remove(config: configparser.ConfigParser, section: str, key: str) -> None:
    """Remove section.key, however the file spells it, if it is there."""
    if config.has_section(section):
        for spelling in [k for k in config[section] if k.lower() == key.lower()]:
            config.remove_option(section, spelling)


def cfg_deployment(config: configparser.ConfigParser) -> tuple[str, str] | None:
    """("workgroup" or "cluster", its name) as dwh.cfg's [CLUSTER] WORKGROUP / CLUSTER_ID name it."""
    section = config["CLUSTER"] if config.has_section("CLUSTER") else {}
    values = {k.upper(): str(v).strip().strip("'\"").strip() for k, v in section.items()}
    if values.get("WORKGROUP"):
        return "workgroup", values["WORKGROUP"]
    if values.get("CLUSTER_ID"):
        return "cluster", values["CLUSTER_ID"]
    return None


def write_dwh_cfg(path: Path, *, host: str, port: int, db: str, user: str, role_arn: str,
                  cluster_id: str | None = None, workgroup: str | None = None) -> None:
    """Write the endpoint, the deployment and the role ARN into dwh.cfg atomically, keeping the rest.

    The deployment is [CLUSTER] CLUSTER_ID for a cluster or WORKGROUP for Serverless; the other key
    is removed, since the runtime refuses a dwh.cfg that names both."""
    if (cluster_id is None) == (workgroup is None):
        raise ValueError("write_dwh_cfg needs exactly one of cluster_id and workgroup")
    config = read_dwh_cfg(path)
    _set(config, "CLUSTER", "HOST", host)
    _set(config, "CLUSTER", "DB_NAME", db)
    _set(config, "CLUSTER", "DB_USER", user)
    _set(config, "CLUSTER", "DB_PORT", str(port))
    if workgroup is not None:
        _set(config, "CLUSTER", "WORKGROUP", workgroup)
        _remove(config, "CLUSTER", "CLUSTER_ID")
    else:
        _set(config, "CLUSTER", "CLUSTER_ID", cluster_id)  # type: ignore[arg-type]
        _remove(config, "CLUSTER", "WORKGROUP")
    _set(config, "IAM_ROLE", "ARN", role_arn)
    try:
        mode = path.stat().st_mode & 0o777 if path.exists() else None
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                config.write(fh)
            if mode is not None:
                os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise InfraError(f"cannot write {path}: {exc}") from exc


# ----------------------------------------------------------------------------- commands
def check_up_inputs(args: argparse.Namespace, what: str = "cluster") -> tuple[str, Path]:
    """Everything `up` checks before any AWS call: --cidr (warned if open to all), the password, dwh.cfg."""
    network = args.cidr
    if network.prefixlen == 0:
        bar = "!" * 78
        print(f"{bar}\n{PROG}: WARNING: --cidr {network} opens port {DEFAULT_PORT} of the {what} to "
              f"the WHOLE INTERNET.\nAnyone can then try passwords against it. Prefer your own "
              f"address, e.g. 203.0.113.7/32.\n{bar}", file=sys.stderr, flush=True)
    password = read_password()
    path = cfg_path()
    if not path.parent.is_dir():
        raise InfraError(f"cannot write {path}: folder {path.parent} does not exist ({CFG_ENV})",
                         EXIT_USAGE)
    read_dwh_cfg(path)  # fail before touching AWS if the file is unreadable
    return password, path


def note_missing_db_password(path: Path) -> None:
    """Say that dwh.cfg has no DB_PASSWORD (this tool never writes it)."""
    config = read_dwh_cfg(path)
    if not (config.has_section("CLUSTER") and any(k.lower() == "db_password" for k in config["CLUSTER"])):
        _say(f"note: {path} has no DB_PASSWORD; add it yourself if your tools read it from there "
             "(this tool never writes the password)")


def _cfg_deployment_if_readable() -> tuple[str, str] | None:
    """dwh.cfg's deployment, or None when the file is missing or unreadable (status/down need no file)."""
    try:
        return cfg_deployment(read_dwh_cfg(cfg_path()))
    except InfraError:
        return None


def check_cfg_deployment(kind: str, name: str, command: str) -> None:
    """Refuse `down` for a cluster when dwh.cfg was written for a workgroup, or the other way round.

    The role is shared: tearing down the wrong kind would delete the role the other one uses."""
    found = _cfg_deployment_if_readable()
    if found is None or found[0] == kind:
        return
    other_kind, other_name = found
    flag = " --serverless" if other_kind == "workgroup" else ""
    raise InfraError(
        f"{cfg_path()} names {other_kind} {other_name!r} ([CLUSTER] "
        f"{'WORKGROUP' if other_kind == 'workgroup' else 'CLUSTER_ID'}), not a {kind}: run "
        f"`{PROG} {command}{flag}` for it; to {command} a {kind} {name!r} anyway, point "
        f"{CFG_ENV} at another file", EXIT_USAGE)


def cmd_up(args: argparse.Namespace) -> int:
    """`up`: role, cluster, wait, ingress, dwh.cfg."""
    network = args.cidr
    password, path = check_up_inputs(args)
    iam, redshift, ec2 = make_clients(region())
    _say(f"region {region()}")
    role_arn = ensure_role(iam, args.role_name, args.bucket)
    params = cluster_create_params(args.cluster_id, args.node_type, args.nodes, args.db, args.user,
                                   role_arn, public=not args.private)
    ensure_cluster(redshift, params, password)
    cluster = wait_until_available(redshift, args.cluster_id, args.timeout, args.poll_interval)
    ensure_role_attached(redshift, cluster, role_arn)
    endpoint = cluster["Endpoint"]
    port = int(endpoint.get("Port") or DEFAULT_PORT)
    group_id = cluster_security_group_ids(ec2, cluster)[0]
    if open_port(ec2, group_id, network, port, args.cluster_id):
        _say(f"opened tcp {port} to {network} in security group {group_id}")
    else:
        _say(f"tcp {port} from {network} was already open in security group {group_id}")
    db = cluster.get("DBName") or args.db
    user = cluster.get("MasterUsername") or args.user
    write_dwh_cfg(path, host=endpoint["Address"], port=port, db=db, user=user, role_arn=role_arn,
                  cluster_id=args.cluster_id)
    _say(f"cluster {args.cluster_id} is available at {endpoint['Address']}:{port}")
    _say(f"role ARN {role_arn}")
    _say(f"wrote [CLUSTER] HOST, DB_NAME, DB_USER, DB_PORT, CLUSTER_ID and [IAM_ROLE] ARN to {path}")
    note_missing_db_password(path)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """`status`: the cluster's state and endpoint, and the role; exit 3 if the cluster is not found."""
    note_other_deployment("cluster")
    iam, redshift, _ = make_clients(region())
    cluster = describe_cluster(redshift, args.cluster_id)
    role_arn = get_role_arn(iam, args.role_name)
    if cluster is None:
        _say(f"cluster {args.cluster_id}: not found (region {region()})")
    else:
        _say(f"cluster {args.cluster_id}: {cluster.get('ClusterStatus')} "
             f"({cluster.get('NodeType')} x {cluster.get('NumberOfNodes')}, region {region()})")
        endpoint = cluster.get("Endpoint") or {}
        if endpoint.get("Address"):
            _say(f"endpoint: {endpoint['Address']}:{endpoint.get('Port', DEFAULT_PORT)}")
        else:
            _say("endpoint: (not yet assigned)")
    _say(f"role {args.role_name}: {role_arn or 'not found'}")
    return EXIT_OK if cluster is not None else EXIT_NOT_FOUND


def note_other_deployment(kind: str) -> None:
    """For `status`: say so when dwh.cfg names the other kind of deployment (status is harmless)."""
    found = _cfg_deployment_if_readable()
    if found is not None and found[0] != kind:
        flag = " --serverless" if found[0] == "workgroup" else ""
        _say(f"note: {cfg_path()} names {found[0]} {found[1]!r}: `{PROG} status{flag}` shows it")


def cmd_down(args: argparse.Namespace) -> int:
    """`down`: revoke our ingress rules, delete the cluster, wait, delete the role."""
    check_cfg_deployment("cluster", args.cluster_id, "down")
    iam, redshift, ec2 = make_clients(region())
    cluster = describe_cluster(redshift, args.cluster_id)
    revoke_failed = False
    try:
        groups = cluster_security_group_ids(ec2, cluster or {})
        for cidr in revoke_our_ingress(ec2, groups, args.cluster_id):
            _say(f"revoked tcp ingress from {cidr}")
    except InfraError:
        pass  # no default VPC and no cluster: there is no group we could have opened
    except ClientError as exc:  # carry on tearing down; report it at the end
        revoke_failed = True
        _warn(f"could not revoke the ingress rules in {exc.operation_name}: "
              f"{_code(exc)}: {exc.response.get('Error', {}).get('Message', '')}")
    if delete_cluster(redshift, args.cluster_id):
        wait_until_gone(redshift, args.cluster_id, args.timeout, args.poll_interval)
        _say(f"cluster {args.cluster_id} deleted")
    else:
        _say(f"cluster {args.cluster_id}: not found (nothing to delete)")
    if delete_role(iam, args.role_name):
        _say(f"role {args.role_name} and its policies deleted")
    else:
        _say(f"role {args.role_name}: not found (nothing to delete)")
    if revoke_failed:
        _error("everything else is deleted, but the ingress rules `up` added may remain: "
               "remove them in the EC2 console (description 'sparkify-infra: redshift cluster ...')")
        return EXIT_FAILURE
    return EXIT_OK


# ----------------------------------------------------------------------------- CLI
def _say(message: str) -> None:
    """Print a progress or result line on stdout."""
    print(message, flush=True)


def _warn(message: str) -> None:
    """Print a warning line on stderr."""
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def _code(exc: ClientError) -> str:
    """The AWS error code of a ClientError."""
    return exc.response.get("Error", {}).get("Code", "")


def _positive_float(text: str) -> float:
    """argparse type: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _error(message: str) -> None:
    """Print an error line on stderr (the password masked, long messages shortened)."""
    message = scrub(message, os.environ.get(PASSWORD_ENV))  # the master password, should it appear
    if len(message) > 1000:
        message = message[:1000] + " ..."
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
