"""Incremental loads: any order, any number of times, changed and deleted files ≡ one full load."""

import json
import random
import re
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from sparkify_dagster.cli.generate import generate_dataset
from sparkify_dagster.definitions import build_defs
from sparkify_dagster.source import LocalFolderSource
from sparkify_dagster.warehouse.duckdb import DuckDBWarehouse
from sparkify_dagster_tests.conftest import contents, materialize_all, table_rows

# Columns that depend on the run, not on the data.
RUN_COLUMNS = ("load_id", "file_version")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen") / "full"
    generate_dataset(root, songs=120, users=12, days=6, events_per_day=80, seed=11)
    return root


def log_files(root: Path) -> list[Path]:
    return sorted((root / "log_data").rglob("*.json"))


def copy_tree_without_logs(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("log_data"))
    (dst / "log_data").mkdir()


def place(src_root: Path, dst_root: Path, log: Path, text: str | None = None) -> None:
    target = dst_root / log.relative_to(src_root)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(log.read_text() if text is None else text)


def assert_same_as_full_load(raw: Path, incremental_db: Path, tmp_path: Path) -> None:
    full_db = tmp_path / "full.duckdb"
    assert materialize_all(raw, full_db).success
    got, want = contents(incremental_db, without=RUN_COLUMNS), contents(full_db, without=RUN_COLUMNS)
    for table in want:
        assert got[table] == want[table], f"{table} differs from a full load of the final raw data"


def test_days_in_any_order_late_repeated_redelivered_and_deleted_equal_one_full_load(dataset, tmp_path):
    raw, db = tmp_path / "raw", tmp_path / "inc.duckdb"
    copy_tree_without_logs(dataset, raw)
    days = log_files(dataset)
    order = [days[3], days[5], days[0]]  # newer days first, an older one late
    for day in order:
        place(dataset, raw, day)
        assert materialize_all(raw, db).success
    assert materialize_all(raw, db).success  # nothing new: loads nothing, changes nothing
    for day in random.Random(1).sample(days, len(days)):  # the rest, with repeats
        place(dataset, raw, day)
        assert materialize_all(raw, db).success
    # A day re-delivered with different content: fewer events, and a user's level changed.
    lines = days[2].read_text().split("\n")
    changed = [json.loads(line) for line in lines[: len(lines) // 2]]
    for record in changed:
        if record["userId"]:
            record["level"] = "paid" if record["level"] == "free" else "free"
    place(dataset, raw, days[2], "\n".join(json.dumps(r) for r in changed))
    assert materialize_all(raw, db).success
    # A day deleted from the source disappears from the warehouse.
    (raw / days[4].relative_to(dataset)).unlink()
    assert materialize_all(raw, db).success
    assert_same_as_full_load(raw, db, tmp_path)


def test_a_second_run_reads_no_file_and_reports_it(dataset, tmp_path):
    db = tmp_path / "wh.duckdb"
    assert materialize_all(dataset, db).success
    result = materialize_all(dataset, db)
    md = {e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
          for e in result.get_asset_materialization_events()}
    assert md["staging_events"]["files"].value == 0
    assert md["staging_events"]["files_unchanged"].value == len(log_files(dataset))
    assert md["staging_events"]["dagster/row_count"].value > 0


def _run_with_config(raw, db, run_config):
    defs = build_defs("duckdb")
    assets = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]
    return dg.materialize(
        list(defs.assets),
        resources={"warehouse": DuckDBWarehouse(path=str(db)), "raw_data": LocalFolderSource(root=str(raw))},
        selection=dg.AssetSelection.assets(*assets),
        run_config=run_config,
    )


def test_reload_one_day_on_purpose(dataset, tmp_path):
    db = tmp_path / "wh.duckdb"
    assert materialize_all(dataset, db).success
    before = contents(db, without=RUN_COLUMNS)
    day = log_files(dataset)[1].name[:10]
    result = _run_with_config(dataset, db, {"ops": {"staging": {"config": {"reload_days": [day]}}}})
    md = {e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
          for e in result.get_asset_materialization_events()}
    assert md["staging_events"]["files"].value == 1
    assert contents(db, without=RUN_COLUMNS) == before


def test_reload_day_that_does_not_exist_is_a_clear_failure(dataset, tmp_path):
    with pytest.raises(dg.Failure, match="no log file for 2031-01-01"):
        _run_with_config(dataset, tmp_path / "wh.duckdb",
                         {"ops": {"staging": {"config": {"reload_days": ["2031-01-01"]}}}})
    with pytest.raises(dg.Failure, match="not a date"):
        _run_with_config(dataset, tmp_path / "wh.duckdb",
                         {"ops": {"staging": {"config": {"reload_days": ["12/11/2018'; --"]}}}})


def test_full_refresh_rereads_everything_with_the_same_result(dataset, tmp_path):
    db = tmp_path / "wh.duckdb"
    assert materialize_all(dataset, db).success
    before = contents(db, without=RUN_COLUMNS)
    config = {"ops": {"staging": {"config": {"full_refresh": True}}}}
    result = _run_with_config(dataset, db, config)
    md = {e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
          for e in result.get_asset_materialization_events()}
    assert md["staging_events"]["files"].value == len(log_files(dataset))
    assert contents(db, without=RUN_COLUMNS) == before



def test_new_song_file_is_loaded_and_matched(dataset, tmp_path):
    raw, db = tmp_path / "raw", tmp_path / "wh.duckdb"
    shutil.copytree(dataset, raw)
    assert materialize_all(raw, db).success
    song = {"num_songs": 1, "artist_id": "ARNEWARTIST0000001", "artist_latitude": None, "artist_longitude": None,
            "artist_location": "", "artist_name": "New Artist", "song_id": "SONEWSONG000000001",
            "title": "Brand New", "duration": 180.5, "year": 2020}
    path = raw / "song_data" / "A" / "Z" / "Z" / "TRAZZNEW000000001.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(song))
    assert materialize_all(raw, db).success
    assert ("SONEWSONG000000001", "Brand New", "ARNEWARTIST0000001", 2020, 180.5) in table_rows(db, "songs")
    assert_same_as_full_load(raw, db, tmp_path)


def _builds(result) -> dict[str, str]:
    return {e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata["build"].value
            for e in result.get_asset_materialization_events()
            if "build" in e.event_specific_data.materialization.metadata}


def test_new_days_replace_only_their_keys_and_equal_a_full_load_after_every_run(dataset, tmp_path):
    """The star update for new log files (star_updates.py) is checked against a full load at every step,
    including a new file that holds later copies of events already loaded (the latest copy must win)."""
    raw, db = tmp_path / "raw", tmp_path / "inc.duckdb"
    copy_tree_without_logs(dataset, raw)
    days = log_files(dataset)
    step = 0

    def run_and_compare(expect: dict[str, str]) -> dict[str, str]:
        nonlocal step
        step += 1
        result = materialize_all(raw, db)
        assert result.success
        builds = _builds(result)
        for table, how in expect.items():
            assert builds[table].startswith(how), (table, builds[table])
        full_db = tmp_path / f"full-{step}.duckdb"
        assert materialize_all(raw, full_db).success
        got, want = contents(db, without=RUN_COLUMNS), contents(full_db, without=RUN_COLUMNS)
        for table in ("users", "songs", "artists", "songplays", "time"):
            assert got[table] == want[table], f"step {step}: {table} differs from a full load"
        return builds

    def time_changes(builds: dict[str, str]) -> tuple[int, int]:
        """(added, removed) of time's update: only the difference with songplays."""
        found = re.fullmatch(r"([\d,]+) start_times added, ([\d,]+) removed .*", builds["time"])
        assert found, builds["time"]
        return int(found[1].replace(",", "")), int(found[2].replace(",", ""))

    place(dataset, raw, days[2])
    run_and_compare({"songplays": "rebuilt in full", "users": "rebuilt in full", "time": "rebuilt in full"})
    for day in (days[4], days[0], days[5]):  # newer and older days
        place(dataset, raw, day)
        builds = run_and_compare({"songplays": "rows of the keys in 1 new log file", "users": "rows of the keys in 1",
                                  "songs": "unchanged", "artists": "unchanged"})
        added, removed = time_changes(builds)
        assert added > 0 and removed == 0
    assert time_changes(run_and_compare({"songplays": "unchanged", "users": "unchanged", "songs": "unchanged"})) == (0, 0)

    # A new file with later copies of events of a loaded day: other level, song, and a later ts.
    copies = []
    for line in days[2].read_text().splitlines()[:40]:
        record = json.loads(line)
        if record.get("page") == "NextSong" and record.get("userId"):
            record["ts"] += 1000
            record["level"] = "paid" if record["level"] == "free" else "free"
            copies.append(json.dumps(record))
    assert copies
    extra = raw / "log_data" / "2018" / "12" / "2018-12-31-events.json"
    extra.parent.mkdir(parents=True, exist_ok=True)
    extra.write_text("\n".join(copies) + "\n")
    builds = run_and_compare({"songplays": "rows of the keys in 1 new log file", "users": "rows of the keys in 1"})
    added, removed = time_changes(builds)  # the copies moved their plays 1 s later: old start_times go
    assert added > 0 and removed > 0

    # A song file added: whatever reads songs is rebuilt in full.
    song = next((raw / "song_data").rglob("*.json"))
    record = json.loads(song.read_text())
    record["song_id"], record["title"] = "SONEWSONG00000", "A brand new song"
    (song.parent / "TRNEWSONG00000.json").write_text(json.dumps(record))
    run_and_compare({"songs": "rebuilt in full", "artists": "rebuilt in full", "songplays": "rebuilt in full",
                     "users": "unchanged"})

    # A table changed behind the pipeline's back (its row count no longer matches): rebuilt in full.
    with duckdb.connect(str(db)) as con:
        con.execute("DELETE FROM songplays WHERE songplay_id = (SELECT min(songplay_id) FROM songplays)")
    place(dataset, raw, days[1])
    run_and_compare({"songplays": "rebuilt in full", "users": "rows of the keys in 1"})


def test_nothing_new_leaves_every_derived_table_but_an_edited_sql_file_rebuilds_it_and_what_reads_it(
        dataset, tmp_path, monkeypatch):
    """A run with no new raw file leaves the star tables as they are (their checks still run on them;
    the analytics are recomputed on every run); an edited SQL file rebuilds its table in full, and the
    tables built from it."""
    import jinja2

    from sparkify_dagster.checks import CHECKS
    from sparkify_dagster.warehouse import transforms

    db = tmp_path / "wh.duckdb"
    assert materialize_all(dataset, db).success
    again = materialize_all(dataset, db)
    builds = _builds(again)
    assert set(builds) == {"songplays", "users", "songs", "artists", "time", "top_songs", "top_artists",
                           "plays_by_hour", "plays_by_weekday", "plays_by_level", "most_active_users",
                           "plays_by_platform"}
    star = {"songplays", "users", "songs", "artists", "time"}
    assert all(b.startswith("unchanged") or b.startswith("0 start_times added")
               for t, b in builds.items() if t in star), builds
    assert len(again.get_asset_check_evaluations()) == len(CHECKS)  # every check still runs

    folder = tmp_path / "sql"
    shutil.copytree(Path(transforms.__file__).parents[1] / "sql", folder)
    users_sql = folder / "users.sql"
    text = users_sql.read_text()
    assert "SELECT user_id, first_name," in text
    users_sql.write_text(text.replace("SELECT user_id, first_name,", "SELECT user_id, upper(first_name) AS first_name,"))
    monkeypatch.setattr(transforms, "SQL_TEMPLATES", jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder), undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        autoescape=False))
    edited = _builds(materialize_all(dataset, db))
    assert edited["users"] == "rebuilt in full"
    # Every table built from users follows: songplays reads it, time is built from songplays.
    assert edited["songplays"] == edited["time"] == "rebuilt in full"
    assert edited["songs"].startswith("unchanged")  # not built from users
    with duckdb.connect(str(db), read_only=True) as con:
        names = [n for (n,) in con.execute("SELECT first_name FROM users WHERE first_name IS NOT NULL").fetchall()]
        top = [n for (n,) in con.execute(
            "SELECT first_name FROM analytics.most_active_users WHERE first_name IS NOT NULL").fetchall()]
    assert names and all(n == n.upper() for n in names)
    assert top and all(n == n.upper() for n in top)
