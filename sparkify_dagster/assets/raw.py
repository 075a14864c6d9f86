"""The raw Sparkify data in S3 (or a local folder laid out like the bucket): external assets."""

from __future__ import annotations

import dagster as dg

from sparkify_dagster.assets.metadata import OWNERS, Binding, code_references
from sparkify_dagster.catalog import STAGING_TABLES

RAW_GROUP = "raw"
RAW_DESCRIPTIONS = {
    "song_data": "Raw song metadata: one JSON object per file under song_data/A/B/C/TR….json.",
    "log_data": "Raw app event logs: one JSON-lines file per day under log_data/YYYY/MM/YYYY-MM-DD-events.json.",
}
RAW_CODE = {"song_data": ("source.py",), "log_data": ("source.py", "sample_data/log_json_path.json")}


def build_raw_assets(binding: Binding = Binding()) -> tuple[dg.AssetSpec, ...]:
    """One external asset per raw prefix a staging table reads; with a bound source, its location
    (``dagster/uri``: the S3 prefix or the folder)."""
    specs = []
    for table in STAGING_TABLES:
        name = table.built_from[0]
        uri = {"dagster/uri": binding.raw_data.location_uri(table.raw.prefix)} if binding.raw_data is not None else {}
        specs.append(dg.AssetSpec(
            name, description=RAW_DESCRIPTIONS[name], group_name=RAW_GROUP, kinds={"s3", "json"}, owners=OWNERS,
            metadata={**uri, **code_references(*RAW_CODE[name])},
        ))
    return tuple(specs)


RAW_ASSETS = build_raw_assets()
