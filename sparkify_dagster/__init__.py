"""sparkify-dagster: the Sparkify music-streaming warehouse as a Dagster asset graph.

``defs`` is the code location (``dagster … -m sparkify_dagster``): a ``@dg.definitions`` function,
so importing the package builds nothing and reads no setting.
"""

from sparkify_dagster.definitions import defs

__all__ = ["defs"]
