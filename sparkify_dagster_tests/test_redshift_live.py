"""Live integration: the whole graph against a real Redshift cluster. Skipped unless REDSHIFT_HOST is set.

Needs the Redshift settings (environment or SPARKIFY_DWH_CFG), SPARKIFY_DATA_URI=s3://… holding the
Sparkify layout, and AWS credentials allowed to write COPY manifests under that prefix. It replaces
the tables of the configured database: point it at a scratch database.
"""

import os

import dagster as dg
import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("REDSHIFT_HOST"), reason="REDSHIFT_HOST not set: no live cluster"),
]


def test_whole_graph_and_every_check_on_redshift():
    from sparkify_dagster.definitions import build_defs

    defs = build_defs("redshift")
    assets = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]
    result = dg.materialize(list(defs.assets), resources=defs.resources,
                            selection=dg.AssetSelection.assets(*assets))
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    warehouse = defs.resources["warehouse"].process_config_and_initialize()
    assert warehouse.query('SELECT COUNT(*) FROM "songplays"')[0][0] > 0
