from sparkify_dagster.source import SAMPLE_DATA_DIR
from sparkify_dagster_tests.conftest import materialize_all, table_rows


def test_bundled_sample_materializes_with_all_checks_passing(tmp_path):
    result = materialize_all(SAMPLE_DATA_DIR, tmp_path / "wh.duckdb")
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations)
    assert len(table_rows(tmp_path / "wh.duckdb", "songplays")) > 0
