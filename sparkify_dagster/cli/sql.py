"""sparkify-sql: print every statement a full load runs, for review before spending cluster time.

``sparkify-sql --target redshift`` prints the DDL, the staging loads (COPY from S3) and the star
transforms, separated by semicolons. With a dwh.cfg (SPARKIFY_DWH_CFG) or the environment it fills in
every real setting it has (IAM role ARN, region, S3 paths) and lists the real log files when S3 can
be listed; only a setting that is missing becomes a placeholder, named in a comment at the top. The
password is never needed and never printed.
"""

from __future__ import annotations

import argparse
import os
import sys

from sparkify_dagster.assets import build_order
from sparkify_dagster.assets.analytics import analytics_statements
from sparkify_dagster.catalog import ALL_TABLES, STAGING_EVENTS, STAGING_SONGS, STAR_TABLES
from sparkify_dagster.source import LOG_PREFIX, RawFile, split_s3_uri
from sparkify_dagster.warehouse.dialect import Dialect, DuckDBDialect, RedshiftDialect
from sparkify_dagster.warehouse.redshift import MANIFEST_PREFIX, RedshiftWarehouse, UnsafeValueError, event_manifest_key
from sparkify_dagster.warehouse.transforms import rebuild_statements
from sparkify_dagster.warehouse.redshift_config import RedshiftConfigError, RedshiftSettings, resolve_settings

# Stand-ins for missing settings only (each one missing is named in a comment above the SQL).
PLACEHOLDERS = dict(
    host="<REDSHIFT_HOST>", database="<REDSHIFT_DB>", user="<REDSHIFT_USER>",
    iam_role_arn="arn:aws:iam::000000000000:role/REPLACE-ME", data_uri="s3://replace-me/sparkify",
    region="us-west-2",
)
EXAMPLE_LOG_FILE = RawFile("log_data/2018/11/2018-11-01-events.json", 0, "")
SONG_FILES = [RawFile("song_data/<every song file, listed in the manifest>.json", 0, "")]


def star_order() -> list[str]:
    """The star tables in the asset graph's order (each after what it is built from)."""
    star = {t.name for t in STAR_TABLES}
    return [name for name in build_order() if name in star]


def _star_and_analytics(dialect: Dialect) -> list[str]:
    """Every star table rebuilt in full, in the graph's order, then the analytics schema."""
    by_name = {t.name: t for t in STAR_TABLES}
    return [s for name in star_order() for s in rebuild_statements(by_name[name], dialect)] + analytics_statements(dialect)


def _settings(notes: list[str]) -> tuple[RedshiftSettings, set[str]]:
    """The settings as given, a placeholder for each missing one; and the names of those missing."""
    values, missing = resolve_settings(require_password=False)
    placeholders = {name for name, value in values.items() if value is None and name in PLACEHOLDERS}
    for line in missing:
        notes.append(f"placeholder used for the missing setting {line}")
    values.update({name: PLACEHOLDERS[name] for name in placeholders})
    return RedshiftSettings(**values), placeholders  # type: ignore[arg-type]


def _log_files(settings: RedshiftSettings, notes: list[str], placeholders: set[str] = frozenset()) -> list[RawFile]:
    listable = not placeholders & {"data_uri", "region"}
    if listable and os.environ.get("SPARKIFY_SQL_LIST_S3", "1") != "0":
        try:
            from dagster_aws.s3 import S3Resource

            from sparkify_dagster.source_s3 import S3Source

            files = S3Source(uri=settings.data_uri, s3=S3Resource(region_name=settings.region)).list_files(LOG_PREFIX)
            if files:
                return files
            notes.append(f"no log files found under {settings.data_uri}/{LOG_PREFIX}")
        except Exception as exc:  # no credentials or no network: still render, with an example file
            notes.append(f"could not list S3 ({type(exc).__name__}); one example COPY per log file is shown")
    return [EXAMPLE_LOG_FILE]


def redshift_statements(settings: RedshiftSettings, log_files: list[RawFile], max_errors: int = 10) -> list[str]:
    """Every statement of a full load on Redshift, in order."""
    wh = RedshiftWarehouse.model_construct(
        host=settings.host, port=settings.port, database=settings.database, user=settings.user, password="",
        iam_role_arn=settings.iam_role_arn, region=settings.region, max_errors=max_errors,
    )
    dialect = RedshiftDialect()
    bucket, prefix = split_s3_uri(settings.data_uri)

    def s3_uri(key: str) -> str:
        return f"s3://{bucket}/{prefix}{key}"

    out = [dialect.create_table(t) for t in ALL_TABLES]
    loads = [
        (STAGING_EVENTS, log_files, "log_json_path.json", None),
        (STAGING_SONGS, SONG_FILES, None, f"{MANIFEST_PREFIX}staging_songs/RUN_ID.manifest"),
    ]
    for table, files, jsonpaths_key, manifest_key in loads:
        event_manifests = ({f.key: event_manifest_key("RUN_ID", n) for n, f in enumerate(files)}
                           if table.raw.copy_per_file else {})
        script = wh.staging_script(table, files, s3_uri, jsonpaths_key and s3_uri(jsonpaths_key), manifest_key,
                                   event_manifests)
        out += script.statements(dialect, notes={key: f"manifest entry: {s3_uri(key)}" for key in event_manifests})
    return out + _star_and_analytics(dialect)


def duckdb_statements() -> list[str]:
    """DDL and transforms on the embedded engine (staging there is the Python/SQL JSON loader)."""
    dialect = DuckDBDialect()
    return [dialect.create_table(t) for t in ALL_TABLES] + _star_and_analytics(dialect)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparkify-sql", description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("redshift", "duckdb"), default="redshift")
    args = parser.parse_args(argv)
    notes: list[str] = []
    try:
        if args.target == "redshift":
            settings, placeholders = _settings(notes)
            statements = redshift_statements(settings, _log_files(settings, notes, placeholders))
        else:
            statements = duckdb_statements()
    except (UnsafeValueError, RedshiftConfigError) as exc:
        print(f"sparkify-sql: error: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"-- {note}")
    sys.stdout.write(";\n\n".join(statements) + ";\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
