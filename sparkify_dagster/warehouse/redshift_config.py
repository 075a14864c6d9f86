"""Redshift settings from the environment or a seeds-style dwh.cfg (SPARKIFY_DWH_CFG); environment wins.

dwh.cfg, as the seed projects write it:

    [CLUSTER]   HOST, DB_NAME, DB_USER, DB_PASSWORD, DB_PORT
    [IAM_ROLE]  ARN
    [S3]        LOG_DATA, LOG_JSONPATH, SONG_DATA     (e.g. 's3://udacity-dend/log_data')

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
}


# <cluster>.<id>.<region>.redshift.amazonaws.com (and the Serverless and China forms).
_REGION_IN_HOST = re.compile(
    r"\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.redshift(?:-serverless)?\.amazonaws\.com(?:\.cn)?$"
)


def region_from_host(host: str | None) -> str | None:
    """The AWS region named in a Redshift endpoint's host name, else None."""
    m = _REGION_IN_HOST.search((host or "").strip().lower())
    return m.group("region") if m else None


@dataclass(frozen=True)
class RedshiftSettings:
    host: str
    port: int
    database: str
    user: str
    password: str | None  # None only when rendering SQL; never printed
    iam_role_arn: str
    data_uri: str
    region: str
    sslmode: str | None = None  # REDSHIFT_SSLMODE (verify-ca, verify-full); None: the driver's default


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
        if values[name] is None and not (name == "port" or (name == "password" and not require_password)):
            missing.append(f"{var} (or [{section}] {key} in dwh.cfg)")
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


def load_settings(environ: Mapping[str, str] | None = None, *, require_password: bool = True) -> RedshiftSettings:
    """Resolve every setting (environment first, then dwh.cfg); one error lists everything missing."""
    values, missing = resolve_settings(environ, require_password=require_password)
    if missing:
        raise RedshiftConfigError("Redshift target is missing settings: " + "; ".join(missing))
    return RedshiftSettings(**values)  # type: ignore[arg-type]
