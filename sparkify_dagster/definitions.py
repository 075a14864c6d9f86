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

import os
import sys
import warnings
from pathlib import Path

import dagster as dg

from sparkify_dagster.assets import build_assets
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
from sparkify_dagster.text import env_region
from sparkify_dagster.warehouse.duckdb import DEFAULT_MEMORY_LIMIT, DuckDBWarehouse
from sparkify_dagster.warehouse.redshift import RedshiftWarehouse
from sparkify_dagster.warehouse.redshift_config import RedshiftConfigError, load_settings

DEFAULT_DUCKDB_PATH = "data/sparkify.duckdb"
TARGETS = ("duckdb", "redshift")


class ConfigurationError(Exception):
    """The environment names a target or setting this project does not know."""


def _max_errors() -> int:
    raw = os.environ.get("SPARKIFY_MAX_ERRORS", "10")
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"SPARKIFY_MAX_ERRORS must be a whole number, not {raw!r}") from None
    if value < 0:
        raise ConfigurationError(f"SPARKIFY_MAX_ERRORS must be 0 or more, not {value}")
    return value


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
    engine_kind = resources["warehouse"].kind
    assets = build_assets(engine_kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # code references are beta in Dagster 1.13
        # Each materializable asset links to the function that builds it ("Source code" in the UI).
        assets = dg.with_source_code_references(assets)
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


# A one-shot command (materialize, execute a job, validate) stops on a configuration mistake with one
# line; a long-lived code server (dagster dev, the webserver, the daemon) raises it instead, so the UI
# shows the message on the code location.
_ONE_SHOT_COMMANDS = {"asset", "job", "definitions"}


@dg.definitions
def defs() -> dg.Definitions:
    """The code location: built when Dagster loads it, for the target named by SPARKIFY_TARGET."""
    try:
        return build_defs()
    except (ConfigurationError, RedshiftConfigError) as exc:
        command = Path(sys.argv[0]).name if sys.argv else ""
        if command in ("dagster", "dagster.exe") and _ONE_SHOT_COMMANDS & set(sys.argv[1:2]):
            print(f"sparkify-dagster: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        raise
