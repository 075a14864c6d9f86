from sparkify_dagster.source import SAMPLE_DATA_DIR
from sparkify_dagster_tests.conftest import materialize_all, table_rows


def test_bundled_sample_materializes_with_all_checks_passing(tmp_path):
    result = materialize_all(SAMPLE_DATA_DIR, tmp_path / "wh.duckdb")
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations)
    assert len(table_rows(tmp_path / "wh.duckdb", "songplays")) > 0


def test_the_run_log_holds_only_what_the_metadata_does_not(tmp_path):
    """Each log line is a write to the instance's event storage: a run logs each staging load's plan and
    summary (and a progress line per batch but the last, none for this one-batch sample), nothing that
    repeats a materialization's metadata; the rest of the run's events are Dagster's own."""
    import dagster as dg

    instance = dg.DagsterInstance.ephemeral()
    for run in ("full", "nothing new"):
        result = materialize_all(SAMPLE_DATA_DIR, tmp_path / "wh.duckdb", instance=instance)
        assert result.success
        lines = [e.user_message for e in instance.all_logs(result.run_id) if e.dagster_event is None]
        assert len(lines) == 4, (run, lines)
        for table in ("staging_events", "staging_songs"):
            assert sum(line.startswith(f"{table}: ") and "to load" in line for line in lines) == 1, lines
            assert sum(line.startswith(f"{table}: ") and " files loaded " in line for line in lines) == 1, lines


def test_the_staging_loads_run_with_the_heap_frozen_and_leave_the_collector_as_found(tmp_path):
    """The loads run while the objects alive before them are frozen (so the collector's full collections
    do not walk Dagster's objects for every few thousand raw files); after the step nothing stays
    frozen, and a process that froze objects itself keeps exactly those frozen."""
    import gc

    from sparkify_dagster.source import LocalFolderSource

    frozen_while_listing: dict[str, int] = {}

    class RecordingSource(LocalFolderSource):
        def list_files(self, prefix):
            frozen_while_listing[prefix] = gc.get_freeze_count()
            return super().list_files(prefix)

    assert gc.get_freeze_count() == 0
    result = materialize_all(RecordingSource(root=str(SAMPLE_DATA_DIR)), tmp_path / "wh.duckdb")
    assert result.success
    # The song files are listed inside the load (the log files before it, so a bad reload_days fails first).
    assert frozen_while_listing["song_data/"] > 0, frozen_while_listing
    assert gc.get_freeze_count() == 0

    gc.freeze()
    try:
        assert materialize_all(SAMPLE_DATA_DIR, tmp_path / "again.duckdb").success
        assert gc.get_freeze_count() > 0  # the process's own freeze is not undone by the step
    finally:
        gc.unfreeze()
