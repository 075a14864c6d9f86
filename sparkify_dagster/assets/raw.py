"""The raw Sparkify data in S3 (or a local folder laid out like the bucket): external assets."""

from __future__ import annotations

import dagster as dg

from sparkify_dagster.assets.metadata import OWNERS, code_references

RAW_GROUP = "raw"

SONG_DATA = dg.AssetSpec(
    "song_data",
    description="Raw song metadata: one JSON object per file under song_data/A/B/C/TR….json.",
    group_name=RAW_GROUP,
    kinds={"s3", "json"},
    owners=OWNERS,
    metadata=code_references("source.py"),
)

LOG_DATA = dg.AssetSpec(
    "log_data",
    description="Raw app event logs: one JSON-lines file per day under log_data/YYYY/MM/YYYY-MM-DD-events.json.",
    group_name=RAW_GROUP,
    kinds={"s3", "json"},
    owners=OWNERS,
    metadata=code_references("source.py", "sample_data/log_json_path.json"),
)

RAW_ASSETS = (SONG_DATA, LOG_DATA)
