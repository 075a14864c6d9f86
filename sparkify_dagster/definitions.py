"""The Dagster definitions: one asset graph, bound to the warehouse engine named by SPARKIFY_TARGET.

- ``duckdb`` (default): an embedded DuckDB file (SPARKIFY_DUCKDB_PATH, default data/sparkify.duckdb)
  loaded from a local folder or S3 prefix laid out like the bucket (SPARKIFY_DATA_URI, default: the
  bundled sample). Runs execute in process: DuckDB admits one writing process.
- ``redshift``: Amazon Redshift through redshift-connector, staging by COPY from S3; settings from
  the environment or a seeds-style dwh.cfg (see warehouse/redshift_config.py).

Nothing is built or read at import: ``defs`` is a ``@dg.definitions`` function that Dagster calls when
it loads the code location, so importing the package (or running a console script) never reads a
setting, and ``sparkify-infra up`` can write the dwh.cfg that the next command reads.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import warnings
from pathlib import Path

import dagster as dg

from sparkify_dagster.assets import build_assets
from sparkify_dagster.assets.metadata import Binding
from sparkify_dagster.catalog import Layer
from sparkify_dagster.checks import data_quality_checks_job
from sparkify_dagster.sensors import (
    SensorSettingsError,
    check_sensor_settings,
    daily_refresh_schedule,
    full_refresh_job,
    load_warehouse_job,
    new_raw_files_sensor,
)
from sparkify_dagster.source import LocalFolderSource, RawDataSource, default_data_uri
from sparkify_dagster.text import env_region, whole_number
from sparkify_dagster.warehouse.duckdb import DEFAULT_MEMORY_LIMIT, DuckDBWarehouse
from sparkify_dagster.warehouse.redshift import RedshiftWarehouse
from sparkify_dagster.warehouse.redshift_config import RedshiftConfigError, load_settings

DEFAULT_DUCKDB_PATH = "data/sparkify.duckdb"
TARGETS = ("duckdb", "redshift")
# A table not updated within this long of its last good load is stale (the logs arrive daily: a day
# plus two hours of slack for a late upload or a queued run); it warns a little earlier.
DEFAULT_FRESHNESS_HOURS = 26.0
DEFAULT_FRESHNESS_WARN_HOURS = 24.0
FRESH_LAYERS = (Layer.STAGING, Layer.STAR, Layer.ANALYTICS)
REPO_ROOT = Path(__file__).resolve().parents[1]


class ConfigurationError(Exception):
    """The environment names a target or setting this project does not know."""


def _max_errors() -> int:
    return whole_number("SPARKIFY_MAX_ERRORS", os.environ.get("SPARKIFY_MAX_ERRORS", "10"), 0, ConfigurationError)


def _hours(name: str, default: float) -> float:
    raw = os.environ.get(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of hours, not {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be more than 0 hours, not {raw}")
    return value


def freshness_policies() -> dict[Layer, dg.FreshnessPolicy]:
    """The freshness policy of the staging, star and analytics tables: fail after
    SPARKIFY_FRESHNESS_HOURS without a good load (default 26), warn after SPARKIFY_FRESHNESS_WARN_HOURS (24)."""
    fail = _hours("SPARKIFY_FRESHNESS_HOURS", DEFAULT_FRESHNESS_HOURS)
    warn = _hours("SPARKIFY_FRESHNESS_WARN_HOURS", min(DEFAULT_FRESHNESS_WARN_HOURS, fail * 12 / 13))
    if warn >= fail:
        raise ConfigurationError(
            f"SPARKIFY_FRESHNESS_WARN_HOURS ({warn:g}) must be less than SPARKIFY_FRESHNESS_HOURS ({fail:g})")
    policy = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=fail), warn_window=dt.timedelta(hours=warn))
    return {layer: policy for layer in FRESH_LAYERS}


def link_to_git(assets: list) -> list:
    """Code references as links into the repository when SPARKIFY_GIT_URL names one (e.g.
    https://github.com/org/sparkify-dagster; branch SPARKIFY_GIT_BRANCH, default main); else local files."""
    url = os.environ.get("SPARKIFY_GIT_URL")
    if not url:
        return assets
    return dg.link_code_references_to_git(
        assets, git_url=url.rstrip("/"), git_branch=os.environ.get("SPARKIFY_GIT_BRANCH") or "main",
        file_path_mapping=dg.AnchorBasedFilePathMapping(local_file_anchor=REPO_ROOT, file_anchor_path_in_repository=""),
    )


def build_source(data_uri: str) -> RawDataSource:
    """A local folder, or an S3 prefix read through dagster-aws's S3Resource (honours AWS_ENDPOINT_URL)."""
    if data_uri.startswith("s3://"):
        from dagster_aws.s3 import S3Resource

        from sparkify_dagster.source_s3 import S3Source

        return S3Source(uri=data_uri, s3=S3Resource(region_name=env_region()))
    return LocalFolderSource(root=data_uri)


def build_resources(target: str) -> dict:
    """The resources of a deployment target, chosen once here."""
    if target == "duckdb":
        return {
            "warehouse": DuckDBWarehouse(
                path=os.environ.get("SPARKIFY_DUCKDB_PATH") or DEFAULT_DUCKDB_PATH, max_errors=_max_errors(),
                memory_limit=os.environ.get("SPARKIFY_DUCKDB_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT,
            ),
            "raw_data": build_source(default_data_uri()),
        }
    if target == "redshift":
        from dagster_aws.s3 import S3Resource

        from sparkify_dagster.source_s3 import S3Source

        settings = load_settings()
        password = None
        if settings.auth == "password":
            # The password reaches the resource only through dg.EnvVar, so the UI and the run storage show
            # the variable's name, never its value (a dwh.cfg password is exported to this process first).
            os.environ.setdefault("REDSHIFT_PASSWORD", settings.password or "")
            password = dg.EnvVar("REDSHIFT_PASSWORD")
        return {
            "warehouse": RedshiftWarehouse(
                host=settings.host, port=settings.port, database=settings.database, user=settings.user,
                password=password, auth=settings.auth, cluster_identifier=settings.cluster_id,
                workgroup=settings.workgroup, iam_role_arn=settings.iam_role_arn,
                region=settings.region, max_errors=_max_errors(), sslmode=settings.sslmode,
            ),
            "raw_data": S3Source(uri=settings.data_uri, s3=S3Resource(region_name=settings.region)),
        }
    raise ConfigurationError(f"SPARKIFY_TARGET={target!r} is not one of: {', '.join(TARGETS)}")


def build_defs(target: str | None = None) -> dg.Definitions:
    target = (target or os.environ.get("SPARKIFY_TARGET") or "duckdb").lower()
    resources = build_resources(target)
    try:
        check_sensor_settings(resources["raw_data"])  # a wrong sensor setting stops the load, not each tick
    except SensorSettingsError as exc:
        raise ConfigurationError(str(exc)) from None
    warehouse = resources["warehouse"]
    binding = Binding(engine_kind=warehouse.kind, warehouse=warehouse, raw_data=resources["raw_data"],
                      freshness=freshness_policies())
    assets = build_assets(warehouse.kind, binding)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # code references are beta in Dagster 1.13
        # Each materializable asset links to the function that builds it ("Source code" in the UI).
        assets = link_to_git(dg.with_source_code_references(assets))
    return dg.Definitions(
        assets=assets,
        jobs=[data_quality_checks_job, load_warehouse_job, full_refresh_job],
        sensors=[new_raw_files_sensor],
        schedules=[daily_refresh_schedule],
        resources=resources,
        # One process per run: the embedded file admits a single writer, and on Redshift the run's steps
        # share one connection (a step per process would each connect and authenticate again).
        executor=dg.in_process_executor,
    )


# A one-shot command (materialize, execute a job, validate; dg launch, check, list) stops on a
# configuration mistake with one line; a long-lived code server (dagster dev, dg dev, the webserver,
# the daemon) raises it instead, so the UI shows the message on the code location.
_ONE_SHOT_COMMANDS = {"dagster": {"asset", "job", "definitions"}, "dg": {"launch", "check", "list"}}


@dg.definitions
def defs() -> dg.Definitions:
    """The code location: built when Dagster loads it, for the target named by SPARKIFY_TARGET."""
    try:
        return build_defs()
    except (ConfigurationError, RedshiftConfigError) as exc:
        command = Path(sys.argv[0]).name.removesuffix(".exe") if sys.argv else ""
        if _ONE_SHOT_COMMANDS.get(command, set()) & set(sys.argv[1:2]):
            print(f"sparkify-dagster: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        raise
