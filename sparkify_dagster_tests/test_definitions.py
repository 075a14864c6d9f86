"""The asset graph as a user sees it in the UI: lineage, groups, kinds, descriptions, metadata."""

import dagster as dg
import pytest

from sparkify_dagster import defs as load_defs
from sparkify_dagster.assets.analytics import ANALYSES
from sparkify_dagster.catalog import STAGING_TABLES, STAR_TABLES
from sparkify_dagster.definitions import ConfigurationError, build_defs
from sparkify_dagster.source import SAMPLE_DATA_DIR
from sparkify_dagster_tests.conftest import materialize_all

defs = load_defs()  # the code location, as Dagster loads it
TABLE_ASSETS = [t.name for t in STAGING_TABLES + STAR_TABLES]
ANALYTICS_ASSETS = [a.name for a in ANALYSES]


def _graph():
    return defs.resolve_asset_graph()


def test_lineage_raw_to_staging_to_star():
    graph = _graph()
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()}
    assert parents["staging_events"] == {"log_data"}
    assert parents["staging_songs"] == {"song_data"}
    assert parents["users"] == {"staging_events"}
    assert parents["songs"] == {"staging_songs"}
    assert parents["artists"] == {"staging_songs"}
    assert {"staging_events", "staging_songs"} <= parents["songplays"]
    assert parents["time"] == {"songplays"}
    assert not graph.get(dg.AssetKey("song_data")).is_materializable
    assert not graph.get(dg.AssetKey("log_data")).is_materializable


def test_every_table_asset_has_description_group_kind_and_pool():
    graph = _graph()
    for name in TABLE_ASSETS:
        node = graph.get(dg.AssetKey(name))
        assert node.description, name
        assert node.group_name in {"staging", "star"}
        assert "duckdb" in node.kinds
        assert node.pools == {"sparkify_warehouse"}
    for raw in ("song_data", "log_data"):
        assert "s3" in graph.get(dg.AssetKey(raw)).kinds


def test_embedded_engine_runs_in_process():
    # DuckDB admits one writing process: a run must not fan out into several processes.
    assert defs.executor.name == "in_process"


def test_checks_only_job_exists():
    job = defs.resolve_job_def("data_quality_checks")
    assert job.name == "data_quality_checks"


def test_unknown_target_and_bad_settings_give_clear_errors(monkeypatch):
    with pytest.raises(ConfigurationError, match="SPARKIFY_TARGET='oracle'"):
        build_defs("oracle")
    monkeypatch.setenv("SPARKIFY_MAX_ERRORS", "lots")
    with pytest.raises(ConfigurationError, match="SPARKIFY_MAX_ERRORS"):
        build_defs("duckdb")


def test_every_materialization_reports_row_count_schema_and_table_name(tmp_path):
    result = materialize_all(SAMPLE_DATA_DIR, tmp_path / "wh.duckdb")
    seen = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        seen[mat.asset_key.to_user_string()] = mat.metadata
    assert set(seen) == set(TABLE_ASSETS) | set(ANALYTICS_ASSETS)
    for name, md in seen.items():
        assert md["dagster/row_count"].value > 0, name
        schema = "analytics" if name in ANALYTICS_ASSETS else "main"
        assert md["dagster/table_name"].value == f"wh.{schema}.{name}"
        schema = md["dagster/column_schema"].schema
        assert [c.name for c in schema.columns][:2] and all(c.description for c in schema.columns)
    assert seen["staging_events"]["records_read"].value == seen["staging_events"]["dagster/row_count"].value
    assert "|" in seen["songplays"]["preview"].value


def test_tables_of_an_older_shape_are_rebuilt_and_staging_reloads(tmp_path):
    import duckdb

    from sparkify_dagster_tests.conftest import table_rows

    db = tmp_path / "old.duckdb"
    assert materialize_all(SAMPLE_DATA_DIR, db).success
    events = table_rows(db, "staging_events")
    with duckdb.connect(str(db)) as con:  # the manifest as an older version wrote it
        con.execute("ALTER TABLE loaded_files DROP COLUMN file_version")
    assert materialize_all(SAMPLE_DATA_DIR, db).success
    assert table_rows(db, "staging_events") == events  # reloaded once, not duplicated


def test_a_run_opens_the_warehouse_once_and_releases_it(tmp_path, monkeypatch):
    """The in-process run shares one DuckDB connection across its steps and closes it at the end."""
    import duckdb

    from sparkify_dagster.warehouse.duckdb import DuckDBWarehouse

    opened = []
    real_connect = DuckDBWarehouse._connect

    def counting_connect(self):
        con = real_connect(self)
        opened.append(con)
        return con

    monkeypatch.setattr(DuckDBWarehouse, "_connect", counting_connect)
    db = tmp_path / "wh.duckdb"
    assert materialize_all(SAMPLE_DATA_DIR, db).success
    assert len(opened) == 1
    with pytest.raises(duckdb.ConnectionException):
        opened[0].execute("SELECT 1")  # closed by the resource's teardown
    outside_a_run = DuckDBWarehouse(path=str(db))
    assert outside_a_run.query("SELECT count(*) FROM songplays")[0][0] > 0
    assert len(opened) == 2  # outside a run, each session opens and closes its own connection
