"""The shared planning of both engines: what a load must read and remove, from the load manifest.

Plain Python over listings and manifests (no SQL): each engine turns a plan into its own statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sparkify_dagster.source import RawFile


@dataclass
class LoadPlan:
    """Which files a staging load reads, and whose rows it removes first (changed or vanished files)."""

    to_load: list[RawFile]
    stale_keys: list[str]
    unchanged: int

    @property
    def is_empty(self) -> bool:
        return not self.to_load and not self.stale_keys

    @property
    def removed(self) -> int:
        """Files whose rows go and are not loaded again: gone from the source."""
        return len(set(self.stale_keys) - {f.key for f in self.to_load})

    @property
    def replaced(self) -> list[str]:
        """Every file whose rows, rejects and manifest entry the load removes first: changed or vanished
        files, and files loaded again (whose rejects of a failed earlier load go too)."""
        return sorted(set(self.stale_keys) | {f.key for f in self.to_load})


def plan_load(loaded: dict[str, str], files: Sequence[RawFile], *, full_refresh: bool = False,
              reload_keys: set[str] | frozenset[str] = frozenset()) -> LoadPlan:
    """Compare the raw files with the load manifest (key -> version): load new/changed, drop vanished."""
    current = {f.key: f for f in files}
    if full_refresh:
        return LoadPlan(list(files), sorted(set(loaded) | set(current)), 0)
    to_load = [f for f in files if loaded.get(f.key) != f.version or f.key in reload_keys]
    vanished = sorted(set(loaded) - set(current))
    stale = sorted({f.key for f in to_load if f.key in loaded} | set(vanished))
    return LoadPlan(to_load, stale, len(files) - len(to_load))
