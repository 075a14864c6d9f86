"""Redshift settings from the environment or a seeds-style dwh.cfg (SPARKIFY_DWH_CFG); environment wins.

dwh.cfg, as the seed projects write it (the last three [CLUSTER] keys are this project's):

    [CLUSTER]   HOST, DB_NAME, DB_USER, DB_PASSWORD, DB_PORT, WORKGROUP, AUTH, CLUSTER_ID
    [IAM_ROLE]  ARN
    [S3]        LOG_DATA, LOG_JSONPATH, SONG_DATA     (e.g. 's3://udacity-dend/log_data')

Deployment: a provisioned cluster, or a Serverless workgroup when WORKGROUP is set or the host is a
workgroup endpoint (``<workgroup>.<account>.<region>.redshift-serverless.amazonaws.com``).

Authentication (AUTH): ``password`` (the default: DB_USER and DB_PASSWORD), or ``iam``: the driver
gets temporary database credentials from the standard AWS credential chain, and no password is
asked for. On a cluster that needs the cluster identifier (CLUSTER_ID, else the first label of a
cluster endpoint) and the database user (DB_USER); on Serverless, the workgroup.

The region is AWS_REGION (or AWS_DEFAULT_REGION), else the one in the cluster's endpoint name
(``<cluster>.<id>.us-west-2.redshift.amazonaws.com``), so a seeds' dwh.cfg works unchanged.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sparkify_dagster.text import env_region


class RedshiftConfigError(Exception):
    """Settings are missing or inconsistent; the message lists all of them (never a secret's value)."""


# setting -> (environment variable, (dwh.cfg section, key))
SETTINGS = {
    "host": ("REDSHIFT_HOST", ("CLUSTER", "HOST")),
    "port": ("REDSHIFT_PORT", ("CLUSTER", "DB_PORT")),
    "database": ("REDSHIFT_DB", ("CLUSTER", "DB_NAME")),
    "user": ("REDSHIFT_USER", ("CLUSTER", "DB_USER")),
    "password": ("REDSHIFT_PASSWORD", ("CLUSTER", "DB_PASSWORD")),
    "iam_role_arn": ("REDSHIFT_IAM_ROLE_ARN", ("IAM_ROLE", "ARN")),
    "workgroup": ("REDSHIFT_WORKGROUP", ("CLUSTER", "WORKGROUP")),
    "auth": ("REDSHIFT_AUTH", ("CLUSTER", "AUTH")),
    "cluster_id": ("REDSHIFT_CLUSTER_ID", ("CLUSTER", "CLUSTER_ID")),
}
AUTH_METHODS = ("password", "iam")
# Settings with a default or needed only in some deployments; the rest are always required.
_CONDITIONAL = {"port", "password", "workgroup", "auth", "cluster_id", "user"}


# <cluster>.<id>.<region>.redshift.amazonaws.com (and the Serverless and China forms).
_REGION_IN_HOST = re.compile(
    r"\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.redshift(?:-serverless)?\.amazonaws\.com(?:\.cn)?$"
)


def region_from_host(host: str | None) -> str | None:
    """The AWS region named in a Redshift endpoint's host name, else None."""
    m = _REGION_IN_HOST.search((host or "").strip().lower())
    return m.group("region") if m else None


# <workgroup>.<12-digit account>.<region>.redshift-serverless.amazonaws.com
_SERVERLESS_HOST = re.compile(
    r"^(?P<workgroup>[a-z0-9-]+)\.(?P<account>\d{12})\.[a-z]{2}(?:-[a-z]+)+-\d\.redshift-serverless\.amazonaws\.com(?:\.cn)?$"
)
# <cluster>.<id>.<region>.redshift.amazonaws.com
_CLUSTER_HOST = re.compile(r"^(?P<cluster>[a-z][a-z0-9-]*)\.[a-z0-9]+\.[a-z]{2}(?:-[a-z]+)+-\d\.redshift\.amazonaws\.com(?:\.cn)?$")


def workgroup_from_host(host: str | None) -> str | None:
    """The workgroup a Serverless endpoint names, else None (a cluster, a custom name, an IP)."""
    m = _SERVERLESS_HOST.match((host or "").strip().lower())
    return m.group("workgroup") if m else None


def cluster_from_host(host: str | None) -> str | None:
    """The cluster identifier a provisioned cluster's endpoint starts with, else None."""
    m = _CLUSTER_HOST.match((host or "").strip().lower())
    return m.group("cluster") if m else None


@dataclass(frozen=True)
class RedshiftSettings:
    host: str
    port: int
    database: str
    user: str | None  # None only on Serverless with IAM (the caller's identity names the user)
    password: str | None  # None with IAM, or when rendering SQL; never printed
    iam_role_arn: str
    data_uri: str
    region: str
    sslmode: str | None = None  # REDSHIFT_SSLMODE (verify-ca, verify-full); None: the driver's default
    workgroup: str | None = None  # a Serverless workgroup: the load reads SYS views, never STL
    auth: str = "password"  # or "iam": temporary credentials from the AWS credential chain
    cluster_id: str | None = None  # the provisioned cluster IAM credentials are asked for

    @property
    def serverless(self) -> bool:
        return self.workgroup is not None


def _read_cfg(path: str | None) -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.optionxform = str.upper  # type: ignore[assignment]
    if path:
        if not Path(path).is_file():
            raise RedshiftConfigError(f"SPARKIFY_DWH_CFG={path!r} is not a file")
        cfg.read(path, encoding="utf-8")
    return cfg


def _cfg_value(cfg: configparser.ConfigParser, section: str, key: str) -> str | None:
    if cfg.has_option(section, key):
        value = cfg.get(section, key).strip().strip("'\"").strip()
        return value or None
    return None


def _data_uri_from_cfg(cfg: configparser.ConfigParser) -> str | None:
    """The bucket root shared by [S3] LOG_DATA and SONG_DATA (…/log_data and …/song_data)."""
    log, song = _cfg_value(cfg, "S3", "LOG_DATA"), _cfg_value(cfg, "S3", "SONG_DATA")
    if not log and not song:
        return None
    roots = {u.rstrip("/").rsplit("/", 1)[0] for u in (log, song) if u}
    if len(roots) != 1 or not all(u.rstrip("/").endswith(("/log_data", "/song_data")) for u in (log, song) if u):
        raise RedshiftConfigError(
            "[S3] LOG_DATA and SONG_DATA must be <root>/log_data and <root>/song_data under one root; "
            "set SPARKIFY_DATA_URI=s3://bucket/prefix instead"
        )
    return roots.pop()


SSLMODES = ("verify-ca", "verify-full")


def resolve_settings(environ: Mapping[str, str] | None = None, *,
                     require_password: bool = True) -> tuple[dict[str, object], list[str]]:
    """Every setting that is given (environment first, then dwh.cfg), and a line per missing one.

    The values are those of ``RedshiftSettings`` (None where missing); ``sparkify-sql`` renders
    with what it has, ``load_settings`` refuses to run without all of them."""
    env = os.environ if environ is None else environ
    cfg = _read_cfg(env.get("SPARKIFY_DWH_CFG"))
    values: dict[str, object] = {}
    missing = []
    for name, (var, (section, key)) in SETTINGS.items():
        values[name] = env.get(var) or _cfg_value(cfg, section, key)
        if values[name] is None and name not in _CONDITIONAL:
            missing.append(_named(name))
    missing += _deployment_and_auth(values, require_password)
    try:
        values["port"] = int(values["port"] or 5439)  # type: ignore[arg-type]
    except ValueError:
        raise RedshiftConfigError(f"REDSHIFT_PORT must be a number, not {values['port']!r}") from None
    data_uri = env.get("SPARKIFY_DATA_URI") or _data_uri_from_cfg(cfg)
    if not data_uri or not data_uri.startswith("s3://"):
        missing.append("SPARKIFY_DATA_URI=s3://bucket/prefix (or [S3] LOG_DATA and SONG_DATA in dwh.cfg)")
        data_uri = None
    values["data_uri"] = data_uri
    values["region"] = env_region(env) or region_from_host(values["host"])  # type: ignore[arg-type]
    if not values["region"]:
        missing.append("AWS_REGION (or AWS_DEFAULT_REGION, or a cluster endpoint named <cluster>.<id>.<region>.redshift.amazonaws.com)")
    sslmode = env.get("REDSHIFT_SSLMODE") or None
    if sslmode is not None and sslmode not in SSLMODES:
        raise RedshiftConfigError(f"REDSHIFT_SSLMODE must be one of {', '.join(SSLMODES)}, not {sslmode!r}")
    values["sslmode"] = sslmode
    return values, missing


def _named(name: str) -> str:
    var, (section, key) = SETTINGS[name]
    return f"{var} (or [{section}] {key} in dwh.cfg)"


def _deployment_and_auth(values: dict[str, object], require_password: bool) -> list[str]:
    """Settle the deployment (cluster or workgroup) and the authentication method in ``values``;
    a line for each setting they need that is missing."""
    host = values["host"]  # type: ignore[assignment]
    values["auth"] = auth = str(values["auth"] or "password").strip().lower()
    if auth not in AUTH_METHODS:
        raise RedshiftConfigError(f"REDSHIFT_AUTH (or [CLUSTER] AUTH) must be one of {', '.join(AUTH_METHODS)}, "
                                  f"not {values['auth']!r}")
    values["workgroup"] = values["workgroup"] or workgroup_from_host(host)  # type: ignore[arg-type]
    if values["workgroup"] and values["cluster_id"]:
        raise RedshiftConfigError(
            "REDSHIFT_WORKGROUP and REDSHIFT_CLUSTER_ID (or [CLUSTER] WORKGROUP and CLUSTER_ID) are both set: "
            "name either the Serverless workgroup or the provisioned cluster")
    missing = []
    if auth == "password":
        values["cluster_id"] = None  # used for IAM credentials only
        if values["user"] is None:
            missing.append(_named("user"))
        if values["password"] is None and require_password:
            missing.append(_named("password"))
        return missing
    values["password"] = None  # IAM: the driver fetches a temporary one; a stored one is never used
    if values["workgroup"]:
        return missing  # Serverless maps the caller's IAM identity to a database user itself
    values["cluster_id"] = values["cluster_id"] or cluster_from_host(host)  # type: ignore[arg-type]
    if values["cluster_id"] is None:
        missing.append(_named("cluster_id") + ", needed with REDSHIFT_AUTH=iam on a provisioned cluster")
    if values["user"] is None:
        missing.append(_named("user") + ": the database user to get temporary credentials for")
    return missing


def load_settings(environ: Mapping[str, str] | None = None, *, require_password: bool = True) -> RedshiftSettings:
    """Resolve every setting (environment first, then dwh.cfg); one error lists everything missing."""
    values, missing = resolve_settings(environ, require_password=require_password)
    if missing:
        raise RedshiftConfigError("Redshift target is missing settings: " + "; ".join(missing))
    return RedshiftSettings(**values)  # type: ignore[arg-type]
