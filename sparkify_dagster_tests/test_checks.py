"""Every asset check fails on the defect it guards against, and blocking checks stop the star tables."""

import shutil

import dagster as dg
import duckdb
import pytest

from sparkify_dagster.catalog import ANALYTICS_TABLES
from sparkify_dagster.checks import CHECKS_JOB_NAME
from sparkify_dagster.definitions import build_defs
from sparkify_dagster.source import SAMPLE_DATA_DIR
from sparkify_dagster.warehouse.duckdb import DuckDBWarehouse
from sparkify_dagster_tests.conftest import materialize_all


@pytest.fixture(scope="module")
def loaded_sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("loaded") / "sample.duckdb"
    assert materialize_all(SAMPLE_DATA_DIR, path).success
    return path


def run_checks_job(db_path, monkeypatch):
    monkeypatch.setenv("SPARKIFY_DUCKDB_PATH", str(db_path))
    monkeypatch.setenv("SPARKIFY_DATA_URI", str(SAMPLE_DATA_DIR))
    job = build_defs("duckdb").resolve_job_def(CHECKS_JOB_NAME)
    result = job.execute_in_process(raise_on_error=False)
    return result, {
        (e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()
    }


def test_checks_job_runs_every_check_and_passes_on_a_good_warehouse(loaded_sample, monkeypatch):
    result, outcomes = run_checks_job(loaded_sample, monkeypatch)
    assert result.success
    defs = build_defs("duckdb")
    all_checks = {(key.asset_key.to_user_string(), key.name) for key in defs.resolve_asset_graph().asset_check_keys}
    assert len(all_checks) == 29  # 18 on staging and star, 11 on the analytics tables
    assert set(outcomes) == all_checks
    assert all(outcomes.values())
    # The checks run in their tables' steps, which can be subset: the checks job rebuilds nothing.
    assert result.get_asset_materialization_events() == []


def test_a_full_run_checks_each_table_in_the_step_that_builds_it(tmp_path):
    result = materialize_all(SAMPLE_DATA_DIR, tmp_path / "wh.duckdb")
    evaluations = [ev for ev in result.all_events if ev.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(evaluations) == 29
    analytics = {t.name for t in ANALYTICS_TABLES}
    for ev in evaluations:  # each check in the step that builds its table (staging and analytics: one step each)
        table = ev.event_specific_data.asset_key.to_user_string()
        assert ev.step_key == ("staging" if table.startswith("staging_") else "analytics" if table in analytics
                               else table)


CORRUPTIONS = [
    ("INSERT INTO users SELECT * FROM users LIMIT 1", ("users", "primary_key_unique")),
    ("INSERT INTO songs SELECT * FROM songs LIMIT 1", ("songs", "primary_key_unique")),
    ("INSERT INTO artists SELECT * FROM artists LIMIT 1", ("artists", "primary_key_unique")),
    ('INSERT INTO "time" SELECT * FROM "time" LIMIT 1', ("time", "primary_key_unique")),
    ("INSERT INTO songplays SELECT * FROM songplays LIMIT 1", ("songplays", "primary_key_unique")),
    # NOT NULL is also declared in the DDL; drop it to stand for a table created without it.
    ("ALTER TABLE songplays ALTER COLUMN user_id DROP NOT NULL; "
     "UPDATE songplays SET user_id = NULL WHERE songplay_id = (SELECT MIN(songplay_id) FROM songplays)",
     ("songplays", "required_columns_not_null")),
    ("ALTER TABLE songs ALTER COLUMN song_id DROP NOT NULL; "
     "UPDATE songs SET song_id = NULL WHERE song_id = (SELECT MIN(song_id) FROM songs "
     "WHERE song_id NOT IN (SELECT song_id FROM songplays WHERE song_id IS NOT NULL))",
     ("songs", "required_columns_not_null")),
    ("UPDATE songplays SET user_id = 'nobody' WHERE songplay_id = (SELECT MIN(songplay_id) FROM songplays)",
     ("songplays", "user_id_in_users")),
    ("UPDATE songplays SET song_id = 'SONOSUCHSONG' WHERE songplay_id = (SELECT MIN(songplay_id) FROM songplays)",
     ("songplays", "song_id_in_songs")),
    ("UPDATE songplays SET artist_id = 'ARNOSUCHARTIST' WHERE songplay_id = (SELECT MIN(songplay_id) FROM songplays)",
     ("songplays", "artist_id_in_artists")),
    ('DELETE FROM "time" WHERE start_time = (SELECT MIN(start_time) FROM "time")',
     ("time", "songplays_start_time_in_time")),
    ("UPDATE users SET level = 'gold' WHERE user_id = (SELECT MIN(user_id) FROM users)",
     ("users", "level_is_free_or_paid")),
    ("UPDATE songplays SET level = NULL WHERE songplay_id = (SELECT MIN(songplay_id) FROM songplays)",
     ("songplays", "level_is_free_or_paid")),
    ("DELETE FROM staging_events WHERE ts = (SELECT MIN(ts) FROM staging_events)",
     ("staging_events", "records_read_equal_staged_plus_rejected")),
    ("INSERT INTO staging_songs (song_id, source_file) VALUES ('SOSTRAY', 'song_data/never/read.json')",
     ("staging_songs", "records_read_equal_staged_plus_rejected")),
    ("UPDATE loaded_files SET records_rejected = records_rejected + 1 WHERE table_name = 'staging_songs' "
     "AND source_file = (SELECT MIN(source_file) FROM loaded_files WHERE table_name = 'staging_songs')",
     ("staging_songs", "records_read_equal_staged_plus_rejected")),
]


@pytest.mark.parametrize("sql, failing", CORRUPTIONS, ids=[f"{a}.{c}" for _, (a, c) in CORRUPTIONS])
def test_each_check_fails_on_its_defect_and_only_it(loaded_sample, tmp_path, monkeypatch, sql, failing):
    db = tmp_path / "corrupt.duckdb"
    shutil.copy(loaded_sample, db)
    with duckdb.connect(str(db)) as con:
        con.execute(sql)
    result, outcomes = run_checks_job(db, monkeypatch)
    assert not result.success  # a failed blocking check fails the run (non-zero exit on the CLI)
    # The analytics tables' checks (test_analytics_checks.py) also see a songplays that changed under them.
    analytics = {t.name for t in ANALYTICS_TABLES}
    assert {k for k, passed in outcomes.items() if not passed and k[0] not in analytics} == {failing}


def test_failed_staging_check_blocks_the_star_tables(tmp_path, monkeypatch):
    real_load = DuckDBWarehouse.load_staging

    def lossy_load(self, table, *args, **kwargs):
        report = real_load(self, table, *args, **kwargs)
        if table.name == "staging_events":  # simulate a loader that silently drops a record
            self.query("DELETE FROM staging_events WHERE ts = (SELECT MAX(ts) FROM staging_events)")
        return report

    monkeypatch.setattr(DuckDBWarehouse, "load_staging", lossy_load)
    result = materialize_all(SAMPLE_DATA_DIR, tmp_path / "wh.duckdb", raise_on_error=False)
    assert not result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "staging_events" in materialized
    assert not materialized & {"songplays", "users", "time"}
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [(e.asset_key.to_user_string(), e.check_name) for e in failed] == [
        ("staging_events", "records_read_equal_staged_plus_rejected")
    ]


def test_check_metadata_shows_the_offending_rows(loaded_sample, tmp_path, monkeypatch):
    db = tmp_path / "corrupt.duckdb"
    shutil.copy(loaded_sample, db)
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE users SET level = 'gold' WHERE user_id = (SELECT MIN(user_id) FROM users)")
    result, _ = run_checks_job(db, monkeypatch)
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "level_is_free_or_paid"
                      and e.asset_key == dg.AssetKey("users"))
    assert evaluation.metadata["violations"].value == 1
    sample = evaluation.metadata["sample"].value  # typed table metadata: the offending value and its count
    assert [c.name for c in sample.schema.columns] == ["level", "rows"]
    assert [r.data for r in sample.records] == [{"level": "gold", "rows": 1}]


def test_the_hashed_pretest_of_primary_keys_decides_nothing_alone(loaded_sample, tmp_path, monkeypatch):
    """DuckDB first groups the keys by hash: all distinct clears the check; a shared hash (a repeated
    key or a collision) leaves the verdict and the count to the exact query."""
    from sparkify_dagster.warehouse.dialect import DuckDBDialect

    db = tmp_path / "pk.duckdb"
    shutil.copy(loaded_sample, db)
    with duckdb.connect(str(db)) as con:
        assert con.execute(DuckDBDialect().keys_maybe_repeated_sql('"users"', ['"user_id"'])).fetchone()[0] == 0
        con.execute("INSERT INTO users SELECT * FROM users WHERE user_id IN (SELECT user_id FROM users LIMIT 2)")
        assert con.execute(DuckDBDialect().keys_maybe_repeated_sql('"users"', ['"user_id"'])).fetchone()[0] == 2
    _, outcomes = run_checks_job(db, monkeypatch)
    assert outcomes[("users", "primary_key_unique")] is False

    # Every hash shared (as if all collided): the exact query still passes a table with unique keys.
    monkeypatch.setattr(DuckDBDialect, "keys_maybe_repeated_sql", lambda self, rel, keys: "SELECT 1")
    result, outcomes = run_checks_job(loaded_sample, monkeypatch)
    assert result.success and all(outcomes.values())
