"""Where the raw data lives: a local folder or an S3 prefix laid out like the Sparkify bucket.

Layout: ``song_data/**/*.json`` (one song object per file), ``log_data/YYYY/MM/YYYY-MM-DD-events.json``
(JSON lines, one file per day) and an optional ``log_json_path.json`` (the COPY JSONPaths file).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import dagster as dg

from sparkify_dagster.catalog import STAGING_EVENTS, STAGING_SONGS
from sparkify_dagster.jsonpath import parse_jsonpath

SAMPLE_DATA_DIR = Path(__file__).parent / "sample_data"
# The prefixes are the staging tables' raw inputs, declared in the catalog.
SONG_PREFIX = STAGING_SONGS.raw.prefix
LOG_PREFIX = STAGING_EVENTS.raw.prefix
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


def local_version(st: os.stat_result) -> str:
    """A local file's change marker (``RawFile.version``), from its stat."""
    return f"{st.st_mtime_ns}-{st.st_size}"


class RawFile(NamedTuple):
    """One raw object: its key relative to the data root, size and a change marker.

    A NamedTuple (immutable, like a frozen dataclass, and cheaper to make): a listing makes one per
    song file."""

    key: str
    size: int
    version: str  # "<mtime_ns>-<size>" locally; the ETag on S3


# Keys per listing page: what one S3 ListObjectsV2 request returns at most.
PAGE_KEYS = 1000


class ListPage(NamedTuple):
    """One page of a listing in key order: its *.json files, the last key it covered (any suffix), and
    whether more keys follow (S3's IsTruncated). A listing resumes after ``last_key``."""

    files: list[RawFile]
    last_key: str | None
    truncated: bool


class RawDataSource(dg.ConfigurableResource):
    """Where raw objects are listed and read; keys are relative to the data root (e.g. log_data/…)."""

    def describe(self) -> str:
        raise NotImplementedError

    def list_files(self, prefix: str) -> list[RawFile]:
        raise NotImplementedError

    def list_pages(self, prefix: str, start_after: str | None = None) -> Iterator[ListPage]:
        """The *.json objects under a prefix whose keys sort after ``start_after``, page by page in key
        order; a caller that stops iterating sends no further request."""
        raise NotImplementedError

    def read_bytes(self, key: str) -> bytes:
        raise NotImplementedError

    def read_many(self, keys: Sequence[str]) -> list[bytes]:
        raise NotImplementedError

    def event_jsonpaths(self) -> list[str]:
        raise NotImplementedError

    # What Redshift's COPY needs besides reading: the objects' s3:// URIs, and a place beside them
    # for its manifests (and the default JSONPaths). Only an S3 source has them.

    def location_uri(self, prefix: str) -> str:
        """Where a prefix under the data root is, as a URI (for dagster/uri): s3://… or file://…."""
        raise NotImplementedError

    def s3_uri(self, key: str) -> str:
        """The s3:// URI of an object under the data root."""
        raise SourceError(
            f"Redshift's COPY reads from S3, and the raw data is at {self.describe()}: set SPARKIFY_DATA_URI "
            f"to an s3://bucket/prefix URI."
        )

    def has(self, key: str) -> bool:
        """Whether an object exists under the data root."""
        self.s3_uri(key)
        raise NotImplementedError

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write an object under the data root (COPY manifests); returns its key."""
        self.s3_uri(key)  # refuses, with the reason, where COPY cannot read
        raise NotImplementedError


# Folders are scanned through an open descriptor where the platform allows it (POSIX, not Windows).
_SCAN_BY_FD = os.scandir in os.supports_fd and hasattr(os, "O_DIRECTORY")


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

    def location_uri(self, prefix: str) -> str:
        # Not root_path: the definitions name the folder even before it exists (a run then says why).
        return (Path(self.root.removeprefix("file://")).expanduser().resolve() / prefix).as_uri() + "/"

    def list_files(self, prefix: str) -> list[RawFile]:
        """Every *.json object under a prefix (which ends with '/'), sorted by key."""
        return self._scan(prefix, None)

    def list_pages(self, prefix: str, start_after: str | None = None) -> Iterator[ListPage]:
        """The listing after ``start_after`` in pages of PAGE_KEYS, like S3 (folders wholly before it are skipped)."""
        found = self._scan(prefix, start_after)
        for i in range(0, max(len(found), 1), PAGE_KEYS):
            page = found[i:i + PAGE_KEYS]
            yield ListPage(page, page[-1].key if page else None, i + PAGE_KEYS < len(found))

    def _scan(self, prefix: str, start_after: str | None) -> list[RawFile]:
        base = self.root_path
        folder = base / prefix
        if not folder.is_dir():
            return []
        # os.scandir of an open folder: each file's stat is relative to it (fstatat), no path to walk
        # (faster than by full path, far faster than pathlib per file; figures in benchmarks/README.md).
        found: list[RawFile] = []
        pending = [(str(folder), prefix.rstrip("/"))]
        while pending:
            directory, key_prefix = pending.pop()
            handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY) if _SCAN_BY_FD else directory
            try:
                with os.scandir(handle) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):  # like os.walk: symlinked folders not entered
                            if start_after is not None and _wholly_before(f"{key_prefix}/{entry.name}/", start_after):
                                continue
                            pending.append((os.path.join(directory, entry.name), f"{key_prefix}/{entry.name}"))
                        elif entry.name.endswith(".json") and entry.is_file():
                            try:
                                st = entry.stat()
                            except FileNotFoundError:  # removed while the folder was listed: gone
                                continue
                            key = f"{key_prefix}/{entry.name}"
                            if start_after is None or key > start_after:
                                found.append(RawFile(key, st.st_size, local_version(st)))
            finally:
                if _SCAN_BY_FD:
                    os.close(handle)
        found.sort()  # by key: keys are unique, so the tuples sort by key
        return found

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


def _wholly_before(folder: str, start_after: str) -> bool:
    """Whether every key under ``folder`` (ending with '/') sorts before ``start_after``."""
    return folder < start_after and not start_after.startswith(folder)


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
    for number, path in enumerate(paths, start=1):
        try:
            parse_jsonpath(path)
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


def default_data_uri() -> str:
    return os.environ.get("SPARKIFY_DATA_URI") or str(SAMPLE_DATA_DIR)
