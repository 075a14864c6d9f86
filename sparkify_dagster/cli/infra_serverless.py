"""`sparkify-infra up|status|down --serverless`: a Redshift Serverless namespace and workgroup.

``up --serverless --cidr CIDR`` does, idempotently (what exists is reused):

1. the same IAM role as for a cluster (its trust policy names redshift.amazonaws.com and
   redshift-serverless.amazonaws.com, as a namespace needs);
2. the namespace ``--namespace`` (database ``--db``, admin user ``--user`` with the password from
   ``REDSHIFT_PASSWORD``, never printed, logged or written), the role attached as one of its
   ``iamRoles`` and as its ``defaultIamRoleArn``; polls until it is AVAILABLE;
3. the workgroup ``--workgroup`` in that namespace, ``--base-capacity`` RPUs (validated before any
   AWS call, see :func:`parse_base_capacity`), publicly accessible unless ``--private``; polls until
   it is AVAILABLE with an endpoint;
4. opens the endpoint's port in the workgroup's security groups to ``--cidr`` only, with a rule
   description naming the workgroup, so that ``down`` revokes exactly that rule;
5. writes [CLUSTER] HOST, DB_NAME, DB_USER, DB_PORT, WORKGROUP (and drops a stale CLUSTER_ID) and
   [IAM_ROLE] ARN into dwh.cfg, as the cluster path does.

``down --serverless`` revokes our ingress rules, deletes the workgroup and waits until it is gone,
deletes the namespace (no final snapshot) and waits until it is gone, then deletes the role.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import ClientError

from sparkify_dagster.cli import infra

__all__ = [
    "BASE_CAPACITY_RULE", "cmd_down", "cmd_status", "cmd_up", "delete_namespace", "delete_workgroup",
    "ensure_namespace", "ensure_workgroup", "get_namespace", "get_workgroup", "make_serverless_client",
    "namespace_create_params", "parse_base_capacity", "parse_name", "role_arns",
    "wait_until_available", "wait_until_gone", "workgroup_create_params",
    "workgroup_security_group_ids",
]

DEFAULT_WORKGROUP = "sparkify-wg"
DEFAULT_NAMESPACE = "sparkify-ns"
DEFAULT_BASE_CAPACITY = 8
# From "Compute capacity for Amazon Redshift Serverless" (AWS docs; the service model has no bounds):
# 4 RPUs, or 8 to 512 in steps of 8, or above 512 up to 1024 in steps of 32 (1024 only in some
# regions: AWS rejects it elsewhere with a ValidationException).
BASE_CAPACITY_RULE = "4, or 8 to 512 in steps of 8, or 512 to 1024 in steps of 32"
# Workgroup states waited through; DELETING (or any failed state) means it will not become available.
WAIT_STATES = frozenset({"CREATING", "MODIFYING"})
_NAME_RE = re.compile(r"^[a-z0-9-]{3,64}$")  # namespaceName / workgroupName in the service model
_ROLE_ARN_IN_TEXT = re.compile(r"iamRoleArn=([^,)\s]+)")


# ----------------------------------------------------------------------------- inputs
def parse_base_capacity(text: str) -> int:
    """argparse type for --base-capacity: the RPU values Redshift Serverless accepts."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number of RPUs: {text!r}") from exc
    if value == 4 or (8 <= value <= 512 and value % 8 == 0) or (512 < value <= 1024 and value % 32 == 0):
        return value
    raise argparse.ArgumentTypeError(
        f"{value} RPUs is not a base capacity Redshift Serverless accepts ({BASE_CAPACITY_RULE})")


def parse_name(text: str) -> str:
    """argparse type for --workgroup and --namespace: 3 to 64 of a-z, 0-9 and '-'."""
    if not _NAME_RE.match(text):
        raise argparse.ArgumentTypeError(
            f"invalid name {text!r}: 3 to 64 characters, lower-case letters, digits and '-' only")
    return text


def make_serverless_client(region_name: str):
    """The redshift-serverless client; endpoint_url is left to boto3 so $AWS_ENDPOINT_URL applies."""
    return boto3.session.Session(region_name=region_name).client("redshift-serverless")


# ----------------------------------------------------------------------------- namespace
def _not_found(exc: ClientError) -> bool:
    """Whether a redshift-serverless error says the resource does not exist."""
    return infra._code(exc) == "ResourceNotFoundException"


def _get(call: Callable[..., dict], key: str, **params) -> dict | None:
    """``call(**params)[key]`` (get_namespace, get_workgroup), or None if it does not exist."""
    try:
        return call(**params)[key]
    except ClientError as exc:
        if _not_found(exc):
            return None
        raise


def get_namespace(client, name: str) -> dict | None:
    """The namespace from get_namespace, or None if it does not exist."""
    return _get(client.get_namespace, "namespace", namespaceName=name)


def _delete(kind: str, name: str, found: dict | None, delete: Callable[[], Any], deleting: str) -> bool:
    """Delete a namespace or workgroup ``found`` as it is now; False if it does not exist (or is gone
    before ``delete()`` reaches it), True if it is being deleted, by this call or already."""
    if found is None:
        return False
    if found.get("status") == "DELETING":
        infra._say(f"{kind} {name} is already being deleted")
        return True
    try:
        delete()
    except ClientError as exc:
        if _not_found(exc):
            return False
        raise
    infra._say(deleting)
    return True


def namespace_create_params(name: str, db: str, user: str, role_arn: str) -> dict:
    """create_namespace's parameters, without the password."""
    return {"namespaceName": name, "dbName": db, "adminUsername": user,
            "iamRoles": [role_arn], "defaultIamRoleArn": role_arn}


def role_arns(namespace: dict) -> list[str]:
    """The role ARNs of a namespace's iamRoles (the API gives 'IamRole(applyStatus=…, iamRoleArn=…)')."""
    arns = []
    for entry in namespace.get("iamRoles", []):
        m = _ROLE_ARN_IN_TEXT.search(entry)
        arns.append(m.group(1) if m else entry)
    return arns


def ensure_namespace(client, params: dict, password: str, *, role_wait: float = 60.0,
                     interval: float = 5.0) -> dict:
    """Create the namespace unless it exists; a reused one gets the role attached if it lacks it."""
    name = params["namespaceName"]
    existing = get_namespace(client, name)
    if existing is None:
        existing, created = infra.create_unless_taken(
            lambda: infra.create_while_role_settles(
                lambda: client.create_namespace(**params, adminUserPassword=password)["namespace"],
                lambda exc: infra.mentions_role(exc, "ValidationException"), role_wait, interval),
            lambda: get_namespace(client, name), "ConflictException")
        if created:
            infra._say(f"creating namespace {name} (database {params['dbName']})")
            return existing
    infra._say(f"reusing namespace {name} (state: {existing.get('status')})")
    role_arn = params["defaultIamRoleArn"]
    attached = role_arns(existing)
    if role_arn not in attached or existing.get("defaultIamRoleArn") != role_arn:
        # iamRoles and defaultIamRoleArn must be updated together; the other roles are kept.
        roles = attached + ([role_arn] if role_arn not in attached else [])
        existing = client.update_namespace(namespaceName=name, iamRoles=roles,
                                           defaultIamRoleArn=role_arn)["namespace"]
        infra._say(f"attached role {role_arn} to namespace {name} as its default role")
    return existing


def delete_namespace(client, name: str) -> bool:
    """Delete the namespace (no final snapshot); False if it does not exist."""
    return _delete("namespace", name, get_namespace(client, name),
                   lambda: client.delete_namespace(namespaceName=name), f"deleting namespace {name} (no final snapshot)")


# ----------------------------------------------------------------------------- workgroup
def get_workgroup(client, name: str) -> dict | None:
    """The workgroup from get_workgroup, or None if it does not exist."""
    return _get(client.get_workgroup, "workgroup", workgroupName=name)


def workgroup_create_params(name: str, namespace: str, base_capacity: int, public: bool = True) -> dict:
    """create_workgroup's parameters (the default VPC's subnets and security group: AWS's default)."""
    return {"workgroupName": name, "namespaceName": namespace, "baseCapacity": base_capacity,
            "publiclyAccessible": public}


def ensure_workgroup(client, params: dict) -> dict:
    """Create the workgroup unless it exists; a reused one must be in our namespace (not modified)."""
    name, namespace = params["workgroupName"], params["namespaceName"]
    existing = get_workgroup(client, name)
    if existing is None:
        existing, created = infra.create_unless_taken(lambda: client.create_workgroup(**params)["workgroup"],
                                                      lambda: get_workgroup(client, name), "ConflictException")
        if created:
            infra._say(f"creating workgroup {name} ({params['baseCapacity']} RPUs base capacity)")
            return existing
    if existing.get("namespaceName") != namespace:
        raise infra.InfraError(
            f"workgroup {name} exists in namespace {existing.get('namespaceName')!r}, not {namespace!r}: "
            "pick another --workgroup or pass that --namespace")
    infra._say(f"reusing workgroup {name} (state: {existing.get('status')})")
    differs = [f"{key} is {existing.get(key)!r}, not {params[key]!r}"
               for key in ("baseCapacity", "publiclyAccessible") if existing.get(key) != params[key]]
    if differs:
        infra._warn(f"workgroup {name}: {'; '.join(differs)} as asked: it is reused as it is")
    return existing


def delete_workgroup(client, name: str) -> bool:
    """Delete the workgroup; False if it does not exist."""
    return _delete("workgroup", name, get_workgroup(client, name),
                   lambda: client.delete_workgroup(workgroupName=name), f"deleting workgroup {name}")


def workgroup_security_group_ids(ec2, workgroup: dict) -> list[str]:
    """The workgroup's security groups (else the default VPC's default group, as AWS assigns it)."""
    return list(workgroup.get("securityGroupIds") or []) or [infra._default_security_group(ec2, None)]


# ----------------------------------------------------------------------------- waiting
def _is_ready(kind: str, found: dict) -> bool:
    """A namespace is ready when AVAILABLE; a workgroup also needs its endpoint address."""
    if found.get("status") != "AVAILABLE":
        return False
    return kind != "workgroup" or bool((found.get("endpoint") or {}).get("address"))


def wait_until_available(kind: str, get: Callable[[], dict | None], name: str, timeout: float,
                         interval: float) -> dict:
    """Poll `get` until the namespace/workgroup is AVAILABLE; InfraError on a failed state or timeout."""
    started = time.monotonic()
    deadline = started + timeout
    last = None
    while True:
        found = get()
        if found is None:
            raise infra.InfraError(f"{kind} {name} disappeared while waiting for it to become available")
        status = found.get("status", "?")
        if _is_ready(kind, found):
            return found
        if status == "DELETING" or "FAIL" in status.upper():
            raise infra.InfraError(
                f"{kind} {name} is in state '{status}' and will not become available; see the "
                f"Redshift Serverless console, then run `{infra.PROG} down --serverless` "
                f"(and `{infra.PROG} up --serverless` again)")
        if status != last:
            infra._say(f"waiting for {kind} {name}: {status} "
                       f"({time.monotonic() - started:.0f} s elapsed, timeout {timeout:g} s)")
            last = status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise infra.InfraError(
                f"{kind} {name} did not become available within {timeout:g} s (last state: "
                f"'{status}'); it may still come up: check `{infra.PROG} status --serverless`, then "
                f"rerun `{infra.PROG} up --serverless` (it reuses what exists) or run "
                f"`{infra.PROG} down --serverless`")
        time.sleep(min(interval, remaining))


def wait_until_gone(kind: str, get: Callable[[], dict | None], name: str, timeout: float,
                    interval: float) -> None:
    """Poll `get` until the namespace/workgroup no longer exists; InfraError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        found = get()
        if found is None:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise infra.InfraError(
                f"{kind} {name} still exists after {timeout:g} s (state: '{found.get('status')}'); "
                f"rerun `{infra.PROG} down --serverless` to keep waiting")
        time.sleep(min(interval, remaining))


# ----------------------------------------------------------------------------- commands
def _clients() -> tuple[Any, Any, Any]:
    """The (iam, redshift-serverless, ec2) clients for the region."""
    iam, _, ec2 = infra.make_clients(infra.region())
    return iam, make_serverless_client(infra.region()), ec2


def cmd_up(args: argparse.Namespace) -> int:
    """`up --serverless`: role, namespace, workgroup, waits, ingress, dwh.cfg."""
    password, path = infra.check_up_inputs(args, "workgroup")
    iam, client, ec2 = _clients()
    infra._say(f"region {infra.region()}")
    role_arn = infra.ensure_role(iam, args.role_name, args.bucket, serverless=True)
    ns_name, wg_name = args.namespace, args.workgroup
    ensure_namespace(client, namespace_create_params(ns_name, args.db, args.user, role_arn), password)
    namespace = wait_until_available("namespace", lambda: get_namespace(client, ns_name), ns_name,
                                     args.timeout, args.poll_interval)
    ensure_workgroup(client, workgroup_create_params(wg_name, ns_name, args.base_capacity,
                                                     public=not args.private))
    workgroup = wait_until_available("workgroup", lambda: get_workgroup(client, wg_name), wg_name,
                                     args.timeout, args.poll_interval)
    endpoint = workgroup["endpoint"]
    port = int(endpoint.get("port") or workgroup.get("port") or infra.DEFAULT_PORT)
    for group_id in workgroup_security_group_ids(ec2, workgroup):
        if infra.open_port(ec2, group_id, args.cidr, port, wg_name, "workgroup"):
            infra._say(f"opened tcp {port} to {args.cidr} in security group {group_id}")
        else:
            infra._say(f"tcp {port} from {args.cidr} was already open in security group {group_id}")
    db = namespace.get("dbName") or args.db
    user = namespace.get("adminUsername") or args.user
    infra.write_dwh_cfg(path, host=endpoint["address"], port=port, db=db, user=user, role_arn=role_arn,
                        workgroup=wg_name)
    infra._say(f"workgroup {wg_name} is available at {endpoint['address']}:{port}")
    infra._say(f"role ARN {role_arn}")
    infra._say(f"wrote [CLUSTER] HOST, DB_NAME, DB_USER, DB_PORT, WORKGROUP and [IAM_ROLE] ARN to {path}")
    infra.note_missing_db_password(path)
    return infra.EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """`status --serverless`: namespace and workgroup states, endpoint, capacity, role; 3 if no workgroup."""
    infra.note_other_deployment("workgroup")
    iam, client, _ = _clients()
    namespace = get_namespace(client, args.namespace)
    workgroup = get_workgroup(client, args.workgroup)
    where = f"region {infra.region()}"
    if namespace is None:
        infra._say(f"namespace {args.namespace}: not found ({where})")
    else:
        infra._say(f"namespace {args.namespace}: {namespace.get('status')} "
                   f"(database {namespace.get('dbName')}, default role {namespace.get('defaultIamRoleArn')})")
    if workgroup is None:
        infra._say(f"workgroup {args.workgroup}: not found ({where})")
    else:
        public = "public" if workgroup.get("publiclyAccessible") else "private"
        infra._say(f"workgroup {args.workgroup}: {workgroup.get('status')} "
                   f"({workgroup.get('baseCapacity')} RPUs base capacity, {public}, "
                   f"namespace {workgroup.get('namespaceName')}, {where})")
        if workgroup.get("workgroupArn"):
            # What an IAM policy for GetCredentials names (it ends in the workgroup's id, not its name).
            infra._say(f"workgroup ARN: {workgroup['workgroupArn']}")
        endpoint = workgroup.get("endpoint") or {}
        if endpoint.get("address"):
            infra._say(f"endpoint: {endpoint['address']}:{endpoint.get('port', infra.DEFAULT_PORT)}")
        else:
            infra._say("endpoint: (not yet assigned)")
    infra._say(f"role {args.role_name}: {infra.get_role_arn(iam, args.role_name) or 'not found'}")
    return infra.EXIT_OK if workgroup is not None else infra.EXIT_NOT_FOUND


def _revoke(ec2, workgroup: dict | None, name: str) -> bool:
    """Revoke our ingress rules for the workgroup; False (after a warning) if that failed."""
    try:
        groups = workgroup_security_group_ids(ec2, workgroup or {})
        for cidr in infra.revoke_our_ingress(ec2, groups, name, "workgroup"):
            infra._say(f"revoked tcp ingress from {cidr}")
    except infra.InfraError:
        pass  # no workgroup and no default VPC: there is no group we could have opened
    except ClientError as exc:  # carry on tearing down; report it at the end
        infra._warn(f"could not revoke the ingress rules in {exc.operation_name}: "
                    f"{infra._code(exc)}: {exc.response.get('Error', {}).get('Message', '')}")
        return False
    return True


def cmd_down(args: argparse.Namespace) -> int:
    """`down --serverless`: revoke our ingress, delete the workgroup, then the namespace, then the role."""
    infra.check_cfg_deployment("workgroup", args.workgroup, "down")
    iam, client, ec2 = _clients()
    wg_name, ns_name = args.workgroup, args.namespace
    revoked = _revoke(ec2, get_workgroup(client, wg_name), wg_name)
    if delete_workgroup(client, wg_name):
        wait_until_gone("workgroup", lambda: get_workgroup(client, wg_name), wg_name,
                        args.timeout, args.poll_interval)
        infra._say(f"workgroup {wg_name} deleted")
    else:
        infra._say(f"workgroup {wg_name}: not found (nothing to delete)")
    if delete_namespace(client, ns_name):
        wait_until_gone("namespace", lambda: get_namespace(client, ns_name), ns_name,
                        args.timeout, args.poll_interval)
        infra._say(f"namespace {ns_name} deleted")
    else:
        infra._say(f"namespace {ns_name}: not found (nothing to delete)")
    if infra.delete_role(iam, args.role_name):
        infra._say(f"role {args.role_name} and its policies deleted")
    else:
        infra._say(f"role {args.role_name}: not found (nothing to delete)")
    if not revoked:
        infra._error("everything else is deleted, but the ingress rules `up` added may remain: remove "
                     "them in the EC2 console (description 'sparkify-infra: redshift-serverless workgroup ...')")
        return infra.EXIT_FAILURE
    return infra.EXIT_OK
