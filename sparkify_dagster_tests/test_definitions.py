"""The asset graph as a user sees it in the UI: lineage, groups, kinds, descriptions, metadata."""

import dagster as dg
import pytest

from sparkify_dagster import defs as load_defs
from sparkify_dagster.assets.analytics import ANALYSES
import datetime as dt
import shutil
from pathlib import Path

import jinja2

from sparkify_dagster.catalog import ANALYTICS_TABLES, SONGPLAYS, STAGING_TABLES, STAR_TABLES, TABLES, USERS
from sparkify_dagster.warehouse import transforms
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
    preview = seen["songplays"]["preview"].value  # typed table metadata, the catalog's columns
    assert [c.name for c in preview.schema.columns] == [c.name for c in SONGPLAYS.columns]
    assert len(preview.records) == 5 and all(r.data["songplay_id"] for r in preview.records)


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


# --- what the definitions say before anything is materialized -------------------------------------


def _text(value) -> str:
    """A string metadata entry, as the definition holds it (plain, or a MetadataValue)."""
    return getattr(value, "value", value)


def _bound(monkeypatch, **env):
    monkeypatch.setenv("SPARKIFY_DUCKDB_PATH", "/tmp/never/wh.duckdb")  # never opened: nothing runs
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return build_defs("duckdb").resolve_asset_graph()


def test_table_facts_are_on_the_definitions_before_any_run(monkeypatch):
    graph = _bound(monkeypatch)
    for table in STAGING_TABLES + STAR_TABLES + ANALYTICS_TABLES:
        node = graph.get(dg.AssetKey(table.name))
        schema = node.metadata["dagster/column_schema"]
        assert [(c.name, c.type, c.description) for c in schema.columns] == [
            (c.name, c.type, c.description) for c in table.columns]
        assert _text(node.metadata["dagster/table_name"]) == f"wh.{table.schema or 'main'}.{table.name}"
        # A star or analytics table's code version is its SQL's; staging has no SQL file.
        assert (node.code_version == transforms.code_version(table)) if table.sql_file else node.code_version is None
    for raw, prefix in (("song_data", "song_data/"), ("log_data", "log_data/")):
        assert _text(graph.get(dg.AssetKey(raw)).metadata["dagster/uri"]) == (SAMPLE_DATA_DIR / prefix).as_uri() + "/"


def test_star_column_lineage_names_the_staging_columns_from_the_sql(monkeypatch):
    graph = _bound(monkeypatch)
    for table in STAR_TABLES:
        lineage = graph.get(dg.AssetKey(table.name)).metadata["dagster/column_lineage"]
        assert set(lineage.deps_by_column) == set(table.column_names), table.name  # every column has a source
        for column, deps in lineage.deps_by_column.items():
            for dep in deps:  # each source is a column of a table this one is built from
                source = dep.asset_key.to_user_string()
                assert source in table.built_from and dep.column_name in TABLES[source].column_names
    songplays = {c: {(d.asset_key.to_user_string(), d.column_name) for d in deps} for c, deps in
                 graph.get(dg.AssetKey("songplays")).metadata["dagster/column_lineage"]
                 .deps_by_column.items()}
    assert songplays["start_time"] == {("staging_events", "ts")}
    assert songplays["songplay_id"] == {("staging_events", c) for c in ("user_id", "session_id", "item_in_session")}
    assert ("staging_songs", "song_id") in songplays["song_id"]
    assert songplays["user_agent"] == {("staging_events", "user_agent")}


def _edited_sql(tmp_path, monkeypatch, name: str, old: str, new: str) -> None:
    """The sql/ folder with one edit, as the templates the transforms render."""
    folder = tmp_path / "sql"
    shutil.copytree(Path(transforms.__file__).parents[1] / "sql", folder)
    text = (folder / name).read_text()
    assert old in text
    (folder / name).write_text(text.replace(old, new))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(folder), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)
    monkeypatch.setattr(transforms, "SQL_TEMPLATES", env)


def test_code_version_and_lineage_follow_the_sql(tmp_path, monkeypatch):
    before = {t.name: transforms.code_version(t) for t in STAR_TABLES + ANALYTICS_TABLES}
    assert len(set(before.values())) == len(before)  # one version per transform
    # The shared song-record rule is part of songs, artists and songplays, not of users or time.
    _edited_sql(tmp_path / "a", monkeypatch, "_song_records.sql", "WHERE s.song_id IS NOT NULL",
                "WHERE s.song_id IS NOT NULL AND s.duration > 0")
    changed = {t.name for t in STAR_TABLES if transforms.code_version(t) != before[t.name]}
    assert changed == {"songs", "artists", "songplays"}
    # An edit to what a column is made of changes its lineage in the definitions: nothing is kept beside the SQL.
    _edited_sql(tmp_path / "b", monkeypatch, "songplays.sql", "    e.location,\n", "    e.user_agent AS location,\n")
    assert transforms.code_version(SONGPLAYS) != before["songplays"]
    assert transforms.code_version(USERS) == before["users"]
    graph = _bound(monkeypatch)
    deps = graph.get(dg.AssetKey("songplays")).metadata["dagster/column_lineage"].deps_by_column
    assert {(d.asset_key.to_user_string(), d.column_name) for d in deps["location"]} == {
        ("staging_events", "user_agent")}


def test_staging_star_and_analytics_tables_have_a_configurable_freshness_policy(monkeypatch):
    graph = _bound(monkeypatch)
    for table in STAGING_TABLES + STAR_TABLES + ANALYTICS_TABLES:
        policy = graph.get(dg.AssetKey(table.name)).freshness_policy
        assert policy.fail_window.to_timedelta() == dt.timedelta(hours=26), table.name
        assert policy.warn_window.to_timedelta() == dt.timedelta(hours=24), table.name
    assert graph.get(dg.AssetKey("log_data")).freshness_policy is None  # raw data is not ours to refresh
    graph = _bound(monkeypatch, SPARKIFY_FRESHNESS_HOURS="50", SPARKIFY_FRESHNESS_WARN_HOURS="30")
    policy = graph.get(dg.AssetKey("songplays")).freshness_policy
    assert (policy.fail_window.to_timedelta(), policy.warn_window.to_timedelta()) == (
        dt.timedelta(hours=50), dt.timedelta(hours=30))
    for bad, message in (("soon", "SPARKIFY_FRESHNESS_HOURS must be a number"), ("-1", "more than 0"),
                         ("20", "SPARKIFY_FRESHNESS_WARN_HOURS \\(30\\) must be less")):
        monkeypatch.setenv("SPARKIFY_FRESHNESS_HOURS", bad)
        with pytest.raises(ConfigurationError, match=message):
            build_defs("duckdb")


def test_code_references_link_to_the_git_repository_when_one_is_configured(monkeypatch):
    def references(graph):
        return graph.get(dg.AssetKey("songplays")).metadata["dagster/code_references"].code_references

    assert all(isinstance(r, dg.LocalFileCodeReference) for r in references(_bound(monkeypatch)))
    graph = _bound(monkeypatch, SPARKIFY_GIT_URL="https://github.com/example/sparkify-dagster",
                   SPARKIFY_GIT_BRANCH="release")
    urls = [r.url for r in references(graph)]
    assert "https://github.com/example/sparkify-dagster/tree/release/sparkify_dagster/sql/songplays.sql" in urls
    assert any(u.startswith("https://github.com/example/sparkify-dagster/tree/release/sparkify_dagster/assets/star.py")
               for u in urls)


def test_traced_lineage_is_cached_by_the_digest_of_its_sql(tmp_path, monkeypatch):
    from sparkify_dagster import lineage
    from sparkify_dagster.warehouse.dialect import DuckDBDialect

    monkeypatch.setenv("SPARKIFY_CACHE_DIR", str(tmp_path / "cache"))
    lineage.column_sources.cache_clear()
    sql = transforms.render(SONGPLAYS, DuckDBDialect())
    traced = lineage.trace_column_sources("songplays", "duckdb", sql)
    assert lineage.column_sources("songplays", "duckdb", sql) == traced
    (cached,) = (tmp_path / "cache").glob("lineage-*.json")
    # A later process reads the file and traces nothing.
    lineage.column_sources.cache_clear()
    monkeypatch.setattr(lineage, "trace_column_sources", lambda *a: pytest.fail("traced again"))
    assert lineage.column_sources("songplays", "duckdb", sql) == traced
    # Other SQL is another digest, so it is traced; a damaged file is traced again and replaced.
    calls = []
    monkeypatch.setattr(lineage, "trace_column_sources", lambda *a: calls.append(a) or traced)
    lineage.column_sources("songplays", "duckdb", sql + " ")
    cached.write_text("{not json")
    lineage.column_sources.cache_clear()
    assert lineage.column_sources("songplays", "duckdb", sql) == traced
    assert len(calls) == 2 and len(list((tmp_path / "cache").glob("lineage-*.json"))) == 2
    # Where the cache cannot be written, lineage is still traced.
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("SPARKIFY_CACHE_DIR", str(tmp_path / "file"))
    lineage.column_sources.cache_clear()
    assert lineage.column_sources("songplays", "duckdb", sql) == traced
    lineage.column_sources.cache_clear()
