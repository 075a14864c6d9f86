"""A Redshift Serverless control plane for tests: the part of the API this project calls, on loopback.

moto has no redshift-serverless API, so a real boto3 client (and the redshift-connector driver, whose
IAM sign-in calls GetCredentials) cannot be pointed at moto for it. This server answers the same
JSON 1.1 protocol (``X-Amz-Target: RedshiftServerless.<Operation>``) for CreateNamespace,
GetNamespace, DeleteNamespace, ListNamespaces, CreateWorkgroup, GetWorkgroup, DeleteWorkgroup,
ListWorkgroups and GetCredentials, with the service's rules this project depends on:

- names are unique (``ConflictException``); a workgroup needs its namespace; a namespace that still
  has a workgroup cannot be deleted (``ConflictException``); anything unknown is
  ``ResourceNotFoundException``;
- a new workgroup is ``CREATING`` for ``polls_until_available`` reads, then ``AVAILABLE``; a deleted
  one is ``DELETING`` for one read, then gone; its endpoint is
  ``<workgroup>.<account>.<region>.redshift-serverless.amazonaws.com:5439`` and, without
  ``securityGroupIds``, it gets the default VPC's default security group (read from moto's EC2, as
  AWS does from the account's default VPC);
- GetCredentials needs an AVAILABLE workgroup and answers for the caller's own IAM identity (moto's
  STS ``GetCallerIdentity`` for the request's access key): ``IAM:<user>`` or ``IAMR:<role>``,
  valid ``durationSeconds`` (default 3600). ``on_credentials(login, password, expiration)`` is called
  with each answer, so the Redshift stand-in can accept exactly that login.

Point clients at it with ``AWS_ENDPOINT_URL_REDSHIFT_SERVERLESS`` (boto3 reads the service-specific
variable before ``AWS_ENDPOINT_URL``). Requests are checked by the client against the real service
model before they are sent; what this server checks is the service's behaviour, not the shapes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

ACCOUNT = "123456789012"
TARGET_PREFIX = "RedshiftServerless."
_ACCESS_KEY = re.compile(r"Credential=([^/,\s]+)/")


class ServiceError(Exception):
    """An error answer: the service's error code and message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class ServerlessControlPlane:
    """The in-memory state and the operations (one method per API operation)."""

    def __init__(self, moto_endpoint: str, region: str, *, polls_until_available: int = 1,
                 on_credentials: Callable[[str, str, dt.datetime], Any] | None = None):
        self.moto_endpoint, self.region = moto_endpoint, region
        self.polls_until_available = polls_until_available
        self.on_credentials = on_credentials
        self.namespaces: dict[str, dict] = {}
        self.workgroups: dict[str, dict] = {}
        self.calls: list[tuple[str, dict]] = []
        self._lock = threading.Lock()

    def handle(self, operation: str, request: dict, access_key: str | None) -> dict:
        """Run one operation (under a lock: the service is consistent per call)."""
        method = getattr(self, "op_" + re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower(), None)
        if method is None:
            raise ServiceError("UnknownOperationException", f"{operation} is not served here")
        with self._lock:
            self.calls.append((operation, request))
            return method(request, access_key)

    def _arn(self, kind: str, ident: str) -> str:
        return f"arn:aws:redshift-serverless:{self.region}:{ACCOUNT}:{kind}/{ident}"

    def _namespace(self, name: str) -> dict:
        if name not in self.namespaces:
            raise ServiceError("ResourceNotFoundException", f"namespace {name} not found")
        return self.namespaces[name]

    def _workgroup(self, name: str) -> dict:
        workgroup = self.workgroups.get(name)
        if workgroup is None:
            raise ServiceError("ResourceNotFoundException", f"Workgroup {name} not found")
        return workgroup

    def op_create_namespace(self, request: dict, _key) -> dict:
        name = request["namespaceName"]
        if name in self.namespaces:
            raise ServiceError("ConflictException", f"Namespace {name} already exists")
        ident = str(uuid.uuid4())
        self.namespaces[name] = {
            "namespaceName": name, "namespaceId": ident, "namespaceArn": self._arn("namespace", ident),
            "adminUsername": request.get("adminUsername", "admin"), "dbName": request.get("dbName", "dev"),
            "iamRoles": list(request.get("iamRoles", [])), "defaultIamRoleArn": request.get("defaultIamRoleArn"),
            "creationDate": dt.datetime.now(dt.timezone.utc).timestamp(), "status": "AVAILABLE",
        }
        self.namespaces[name] = {k: v for k, v in self.namespaces[name].items() if v is not None}
        return {"namespace": self.namespaces[name]}

    def op_get_namespace(self, request: dict, _key) -> dict:
        return {"namespace": self._namespace(request["namespaceName"])}

    def op_list_namespaces(self, _request: dict, _key) -> dict:
        return {"namespaces": list(self.namespaces.values())}

    def op_delete_namespace(self, request: dict, _key) -> dict:
        namespace = self._namespace(request["namespaceName"])
        users = [w["workgroupName"] for w in self.workgroups.values() if w["namespaceName"] == namespace["namespaceName"]]
        if users:
            raise ServiceError("ConflictException", f"Namespace has workgroups: {', '.join(users)}")
        del self.namespaces[namespace["namespaceName"]]
        return {"namespace": {**namespace, "status": "DELETING"}}

    def _default_security_group(self) -> list[str]:
        ec2 = boto3.client("ec2", endpoint_url=self.moto_endpoint, region_name=self.region,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpcs[0]["VpcId"]]},
                                                       {"Name": "group-name", "Values": ["default"]}])
        return [groups["SecurityGroups"][0]["GroupId"]]

    def op_create_workgroup(self, request: dict, _key) -> dict:
        name = request["workgroupName"]
        if name in self.workgroups:
            raise ServiceError("ConflictException", f"Workgroup {name} already exists")
        self._namespace(request["namespaceName"])
        ident = str(uuid.uuid4())
        port = request.get("port", 5439)
        self.workgroups[name] = {
            "workgroupName": name, "workgroupId": ident, "workgroupArn": self._arn("workgroup", ident),
            "namespaceName": request["namespaceName"], "baseCapacity": request.get("baseCapacity", 128),
            "publiclyAccessible": bool(request.get("publiclyAccessible", False)),
            "securityGroupIds": list(request.get("securityGroupIds") or self._default_security_group()),
            "subnetIds": list(request.get("subnetIds", [])), "port": port,
            "endpoint": {"address": f"{name}.{ACCOUNT}.{self.region}.redshift-serverless.amazonaws.com",
                         "port": port},
            "creationDate": dt.datetime.now(dt.timezone.utc).timestamp(), "status": "CREATING",
            "_reads_left": self.polls_until_available,
        }
        return {"workgroup": self._public(self.workgroups[name])}

    @staticmethod
    def _public(workgroup: dict) -> dict:
        return {k: v for k, v in workgroup.items() if not k.startswith("_")}

    def op_get_workgroup(self, request: dict, _key) -> dict:
        workgroup = self._workgroup(request["workgroupName"])
        answer = self._public(workgroup)
        if workgroup["status"] == "DELETING":
            del self.workgroups[workgroup["workgroupName"]]
        elif workgroup["status"] == "CREATING":
            workgroup["_reads_left"] -= 1
            if workgroup["_reads_left"] < 0:
                workgroup["status"] = answer["status"] = "AVAILABLE"
        return {"workgroup": answer}

    def op_list_workgroups(self, _request: dict, _key) -> dict:
        return {"workgroups": [self._public(w) for w in self.workgroups.values()]}

    def op_delete_workgroup(self, request: dict, _key) -> dict:
        workgroup = self._workgroup(request["workgroupName"])
        if workgroup["status"] == "DELETING":
            raise ServiceError("ConflictException", "Workgroup is already being deleted")
        workgroup["status"] = "DELETING"
        return {"workgroup": self._public(workgroup)}

    def _caller_login(self, access_key: str | None) -> str:
        sts = boto3.client("sts", endpoint_url=self.moto_endpoint, region_name=self.region,
                           aws_access_key_id=access_key or "testing", aws_secret_access_key="testing")
        arn = sts.get_caller_identity()["Arn"]
        kind, _, name = arn.split(":", 5)[5].partition("/")
        if kind == "assumed-role":
            return "IAMR:" + name.split("/")[0]
        return "IAM:" + name.split("/")[-1]

    def op_get_credentials(self, request: dict, access_key: str | None) -> dict:
        workgroup = self._workgroup(request.get("workgroupName", ""))
        if workgroup["status"] != "AVAILABLE":
            raise ServiceError("ValidationException", f"Workgroup {workgroup['workgroupName']} is not available")
        login = self._caller_login(access_key)
        password = secrets.token_urlsafe(24) + "aA1"
        expiration = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=request.get("durationSeconds", 3600))
        if self.on_credentials is not None:
            self.on_credentials(login, password, expiration)
        return {"dbUser": login, "dbPassword": password, "expiration": expiration.timestamp(),
                "nextRefreshTime": expiration.timestamp()}


class _Handler(BaseHTTPRequestHandler):
    plane: ServerlessControlPlane

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        """One JSON 1.1 call: the target names the operation, the body is its request."""
        target = self.headers.get("X-Amz-Target", "")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = _ACCESS_KEY.search(self.headers.get("Authorization", ""))
        try:
            if not target.startswith(TARGET_PREFIX):
                raise ServiceError("UnknownOperationException", f"unknown target {target!r}")
            answer, status = self.plane.handle(target[len(TARGET_PREFIX):], json.loads(body or b"{}"),
                                               key.group(1) if key else None), 200
        except ServiceError as exc:
            answer, status = {"__type": exc.code, "message": exc.message}, 400
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if status != 200:
            self.send_header("x-amzn-ErrorType", answer["__type"])
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args) -> None:
        """Quiet: tests read ``plane.calls``."""


class ServerlessApiServer:
    """The control plane on ``http://127.0.0.1:<port>`` in a thread; ``url`` for AWS_ENDPOINT_URL_REDSHIFT_SERVERLESS."""

    def __init__(self, plane: ServerlessControlPlane):
        self.plane = plane
        handler = type("Handler", (_Handler,), {"plane": plane})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where clients send their requests."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ServerlessApiServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._server.shutdown()
        self._server.server_close()
