"""Where the raw data lives: a local folder or an S3 prefix laid out like the Sparkify bucket.

Layout: ``song_data/**/*.json`` (one song object per file), ``log_data/YYYY/MM/YYYY-MM-DD-events.json``
(JSON lines, one file per day) and an optional ``log_json_path.json`` (the COPY JSONPaths file).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

SAMPLE_DATA_DIR = Path(__file__).parent / "sample_data"
SONG_PREFIX = "song_data/"
LOG_PREFIX = "log_data/"
JSONPATHS_KEY = "log_json_path.json"

# The JSONPaths of the public bucket, used when the data root has no log_json_path.json.
DEFAULT_EVENT_JSONPATHS = [
    f"$['{key}']"
    for key in (
        "artist", "auth", "firstName", "gender", "itemInSession", "lastName", "length", "level",
        "location", "method", "page", "registration", "sessionId", "song", "status", "ts",
        "userAgent", "userId",
    )
]


class SourceError(Exception):
    """The raw data cannot be read as configured."""


@dataclass(frozen=True)
class RawFile:
    """One raw object: its key relative to the data root, size and a change marker."""

    key: str
    size: int
    version: str  # "<mtime_ns>-<size>" locally; the ETag on S3


class RawDataSource(dg.ConfigurableResource):
    """Where raw objects are listed and read; keys are relative to the data root (e.g. log_data/…)."""

    def describe(self) -> str:
        raise NotImplementedError

    def list_files(self, prefix: str) -> list[RawFile]:
        raise NotImplementedError

    def read_bytes(self, key: str) -> bytes:
        raise NotImplementedError

    def read_many(self, keys: Sequence[str]) -> list[bytes]:
        raise NotImplementedError

    def event_jsonpaths(self) -> list[str]:
        raise NotImplementedError


class LocalFolderSource(RawDataSource):
    """Raw JSON in a local folder laid out like the S3 bucket (default: the bundled sample)."""

    root: str = str(SAMPLE_DATA_DIR)

    @property
    def root_path(self) -> Path:
        path = Path(self.root.removeprefix("file://")).expanduser()
        if not path.is_dir():
            raise SourceError(
                f"SPARKIFY_DATA_URI points to {str(path)!r}, which is not a folder. Expected a folder "
                f"holding song_data/ and log_data/ like the Sparkify S3 bucket."
            )
        return path

    def describe(self) -> str:
        return str(self.root_path)

    def list_files(self, prefix: str) -> list[RawFile]:
        """Every *.json object under a prefix (which ends with '/'), sorted by key."""
        base = self.root_path
        folder = base / prefix
        if not folder.is_dir():
            return []
        found = []
        for dirpath, _dirnames, filenames in os.walk(folder):
            for name in filenames:
                if name.endswith(".json"):
                    path = Path(dirpath) / name
                    st = path.stat()
                    version = f"{st.st_mtime_ns}-{st.st_size}"
                    found.append(RawFile(path.relative_to(base).as_posix(), st.st_size, version))
        return sorted(found, key=lambda f: f.key)

    def read_bytes(self, key: str) -> bytes:
        try:
            return (self.root_path / key).read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read raw file {key!r} under {self.describe()}: {exc.strerror}") from exc

    def read_many(self, keys: Sequence[str]) -> list[bytes]:
        return [self.read_bytes(k) for k in keys]

    def event_jsonpaths(self) -> list[str]:
        """The JSONPaths that map an event record onto staging_events columns, by position."""
        path = self.root_path / JSONPATHS_KEY
        return parse_jsonpaths(path.read_bytes()) if path.exists() else list(DEFAULT_EVENT_JSONPATHS)


def parse_jsonpaths(data: bytes) -> list[str]:
    """Validate a JSONPaths file: {"jsonpaths": [one path per staging_events column]}."""
    try:
        paths = json.loads(data.decode("utf-8-sig"))["jsonpaths"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"{JSONPATHS_KEY} is not a JSONPaths file ({{\"jsonpaths\": [...]}}): {exc}") from exc
    if not isinstance(paths, list) or len(paths) != len(DEFAULT_EVENT_JSONPATHS) or not all(
        isinstance(p, str) for p in paths
    ):
        count = len(paths) if isinstance(paths, list) else "no list of"
        raise SourceError(
            f"{JSONPATHS_KEY} has {count} paths; staging_events needs {len(DEFAULT_EVENT_JSONPATHS)} "
            f"(one per column, in column order)."
        )
    from sparkify_dagster.warehouse.json_loader import jsonpath_to_duckdb

    for number, path in enumerate(paths, start=1):
        try:
            jsonpath_to_duckdb(path)
        except ValueError as exc:
            raise SourceError(f"{JSONPATHS_KEY}: path {number} is not supported: {exc}") from None
    return paths


_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/some/prefix → ("bucket", "some/prefix/") (prefix empty or ending with '/')."""
    m = _S3_URI.match(uri)
    if not m:
        raise SourceError(f"not an s3://bucket/prefix URI: {uri!r}")
    prefix = (m.group("prefix") or "").strip("/")
    return m.group("bucket"), f"{prefix}/" if prefix else ""


class S3Source(RawDataSource):
    """Raw JSON under an S3 prefix laid out like the Sparkify bucket, read with dagster-aws's S3Resource."""

    uri: str
    s3: S3Resource
    max_concurrency: int = 16

    @property
    def bucket_and_prefix(self) -> tuple[str, str]:
        return split_s3_uri(self.uri)

    def describe(self) -> str:
        return self.uri.rstrip("/")

    def s3_uri(self, key: str) -> str:
        bucket, prefix = self.bucket_and_prefix
        return f"s3://{bucket}/{prefix}{key}"

    def list_files(self, prefix: str) -> list[RawFile]:
        """Every *.json object under a prefix ending with '/' (so log_data/ never matches log_data_old/)."""
        bucket, root = self.bucket_and_prefix
        paginator = self.s3.get_client().get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=bucket, Prefix=root + prefix):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(".json"):
                    found.append(RawFile(obj["Key"][len(root):], obj["Size"], obj["ETag"].strip('"')))
        return sorted(found, key=lambda f: f.key)

    def read_bytes(self, key: str) -> bytes:
        bucket, root = self.bucket_and_prefix
        try:
            return self.s3.get_client().get_object(Bucket=bucket, Key=root + key)["Body"].read()
        except Exception as exc:  # botocore errors carry the S3 error code in their message
            raise SourceError(f"cannot read s3://{bucket}/{root}{key}: {exc}") from exc

    def read_many(self, keys: Sequence[str]) -> list[bytes]:
        """Fetch many small objects concurrently (song_data has one object per song)."""
        client = self.s3.get_client()
        bucket, root = self.bucket_and_prefix

        def fetch(key: str) -> bytes:
            try:
                return client.get_object(Bucket=bucket, Key=root + key)["Body"].read()
            except Exception as exc:
                raise SourceError(f"cannot read s3://{bucket}/{root}{key}: {exc}") from exc

        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(fetch, keys))

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write an object under the data root (COPY manifests); returns its key."""
        bucket, root = self.bucket_and_prefix
        self.s3.get_client().put_object(Bucket=bucket, Key=root + key, Body=data)
        return key

    def has(self, key: str) -> bool:
        bucket, root = self.bucket_and_prefix
        resp = self.s3.get_client().list_objects_v2(Bucket=bucket, Prefix=root + key, MaxKeys=1)
        return any(o["Key"] == root + key for o in resp.get("Contents", []))

    def event_jsonpaths(self) -> list[str]:
        return parse_jsonpaths(self.read_bytes(JSONPATHS_KEY)) if self.has(JSONPATHS_KEY) else list(DEFAULT_EVENT_JSONPATHS)


def default_data_uri() -> str:
    return os.environ.get("SPARKIFY_DATA_URI") or str(SAMPLE_DATA_DIR)
