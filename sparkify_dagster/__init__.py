"""sparkify-dagster: the Sparkify music-streaming warehouse as a Dagster asset graph."""

from sparkify_dagster.definitions import defs

__all__ = ["defs"]
