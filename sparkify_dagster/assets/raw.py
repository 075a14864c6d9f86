"""The raw Sparkify data in S3 (or a local folder laid out like the bucket): external assets."""

from __future__ import annotations

import dagster as dg

RAW_GROUP = "raw"

SONG_DATA = dg.AssetSpec(
    "song_data",
    description="Raw song metadata: one JSON object per file under song_data/A/B/C/TR….json.",
    group_name=RAW_GROUP,
    kinds={"s3", "json"},
)

LOG_DATA = dg.AssetSpec(
    "log_data",
    description="Raw app event logs: one JSON-lines file per day under log_data/YYYY/MM/YYYY-MM-DD-events.json.",
    group_name=RAW_GROUP,
    kinds={"s3", "json"},
)
