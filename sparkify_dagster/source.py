"""Where the raw data lives: a local folder laid out like the Sparkify S3 bucket.

Layout: ``song_data/**/*.json`` (one song object per file), ``log_data/YYYY/MM/YYYY-MM-DD-events.json``
(JSON lines, one file per day) and an optional ``log_json_path.json`` (the COPY JSONPaths file).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

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
    version: str  # mtime_ns locally; the ETag on S3


class LocalFolderSource(dg.ConfigurableResource):
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
                    found.append(RawFile(path.relative_to(base).as_posix(), st.st_size, str(st.st_mtime_ns)))
        return sorted(found, key=lambda f: f.key)

    def read_bytes(self, key: str) -> bytes:
        try:
            return (self.root_path / key).read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read raw file {key!r} under {self.describe()}: {exc.strerror}") from exc

    def event_jsonpaths(self) -> list[str]:
        """The JSONPaths that map an event record onto staging_events columns, by position."""
        path = self.root_path / JSONPATHS_KEY
        if not path.exists():
            return list(DEFAULT_EVENT_JSONPATHS)
        try:
            paths = json.loads(path.read_text(encoding="utf-8-sig"))["jsonpaths"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(f"{JSONPATHS_KEY} is not a JSONPaths file ({{\"jsonpaths\": [...]}}): {exc}") from exc
        if len(paths) != len(DEFAULT_EVENT_JSONPATHS) or not all(isinstance(p, str) for p in paths):
            raise SourceError(
                f"{JSONPATHS_KEY} has {len(paths)} paths; staging_events needs {len(DEFAULT_EVENT_JSONPATHS)} "
                f"(one per column, in column order)."
            )
        return paths


def default_data_uri() -> str:
    return os.environ.get("SPARKIFY_DATA_URI") or str(SAMPLE_DATA_DIR)
