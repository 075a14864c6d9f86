"""The asset graph, built from the catalog: raw (external), staging, star and analytics assets.

``asset_graph()`` is that graph on its own (no resources): Dagster's answer to "in what order" and
"what is downstream of", for the sensor and ``sparkify-sql``.
"""

from __future__ import annotations

from functools import lru_cache

import dagster as dg

from sparkify_dagster.assets.analytics import build_analytics_assets
from sparkify_dagster.assets.metadata import Binding
from sparkify_dagster.assets.raw import build_raw_assets
from sparkify_dagster.assets.staging import build_staging_assets
from sparkify_dagster.assets.star import build_star_assets


def build_assets(engine_kind: str, binding: Binding | None = None) -> list:
    """Every asset of the project, its kind tag naming the engine it is bound to; with a ``binding``,
    each table's definition also names its table and location, and carries its freshness policy."""
    binding = binding or Binding(engine_kind=engine_kind)
    return [*build_raw_assets(binding), *build_staging_assets(binding), *build_star_assets(binding),
            build_analytics_assets(binding)]


@lru_cache(maxsize=1)
def asset_graph():
    """The asset graph's shape (the same for every engine)."""
    # The graph needs no resource: stand-ins let Dagster resolve it without binding an engine.
    stand_ins = {key: dg.ResourceDefinition.none_resource() for key in ("warehouse", "raw_data")}
    return dg.Definitions(assets=build_assets("duckdb"), resources=stand_ins).resolve_asset_graph()


def downstream_of(*keys: str, graph=None) -> list[str]:
    """The assets built from ``keys``, directly or not (``keys`` included), by Dagster's asset graph."""
    selection = dg.AssetSelection.assets(*keys).downstream()
    return sorted(k.to_user_string() for k in selection.resolve(graph or asset_graph()))


def build_order(graph=None) -> list[str]:
    """Every asset, each after everything it is built from (Dagster's topological order)."""
    return [k.to_user_string() for k in (graph or asset_graph()).toposorted_asset_keys]
