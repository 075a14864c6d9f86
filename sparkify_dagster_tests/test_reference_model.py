"""The star schema, table by table, equals an independent pure-Python oracle (reference_model.py).

Datasets: several small synthetic ones (sparkify-generate, different seeds, sizes and start dates,
one across a year boundary) and the real Udacity sample. Each dataset is materialized once per
module; every star table is then compared with the oracle exactly. Reloading into the same file
must give the same contents for every table.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from sparkify_dagster.catalog import ALL_TABLES, BOOKKEEPING_TABLES, STAGING_TABLES, STAR_TABLES
from sparkify_dagster.cli.generate import generate_dataset
from sparkify_dagster_tests import reference_model as ref
from sparkify_dagster_tests.conftest import REAL_SAMPLE, materialize_all, requires_real_sample, table_rows

STAR = [t.name for t in STAR_TABLES]

# name -> generate_dataset keyword arguments (small: each loads in about two seconds).
DATASETS = {
    "seed1-200songs": dict(songs=200, users=15, days=3, events_per_day=150, seed=1),
    "seed2-tiny": dict(songs=30, users=5, days=2, events_per_day=120, seed=2),
    # 2018-12-30 is a Sunday in ISO week 52; 2018-12-31 is in ISO week 1 (of 2019); 2019-01-01 too.
    "seed3-year-end-2018": dict(songs=150, users=10, days=3, events_per_day=150, seed=3, start_date="2018-12-30"),
    # 2020-12-31 and 2021-01-01 are both in ISO week 53 (of 2020).
    "seed4-busy-2020": dict(songs=60, users=12, days=2, events_per_day=300, seed=4, start_date="2020-12-31"),
}

# The (year, week, weekday) triples each year-end dataset must produce, so it really tests the boundary.
YEAR_END_WEEKS = {
    "seed3-year-end-2018": {(2018, 52, 0), (2018, 1, 1), (2019, 1, 2)},
    "seed4-busy-2020": {(2020, 53, 4), (2021, 53, 5)},
}


def _sorted(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=lambda r: (r[0], repr(r)))


def assert_table_equals(db_path: Path, table: str, expected: list[tuple]) -> None:
    """Exact equality of a table with the oracle's rows, with a readable diff keyed by the first column."""
    actual = _sorted(table_rows(db_path, table))
    expected = _sorted(expected)
    if actual == expected:
        return
    act = {r[0]: r for r in actual}
    exp = {r[0]: r for r in expected}
    missing = [exp[k] for k in exp if k not in act]
    extra = [act[k] for k in act if k not in exp]
    differ = [(exp[k], act[k]) for k in exp if k in act and exp[k] != act[k]]
    lines = [
        f"{table}: {len(actual)} rows in the warehouse, {len(expected)} expected; "
        f"{len(missing)} missing, {len(extra)} unexpected, {len(differ)} different"
        f"{'; duplicate keys in the warehouse' if len(act) != len(actual) else ''}",
        *(f"  missing:  {r}" for r in missing[:5]),
        *(f"  extra:    {r}" for r in extra[:5]),
        *(f"  expected: {e}\n  actual:   {a}" for e, a in differ[:5]),
    ]
    pytest.fail("\n".join(lines))


def _all_tables(db_path: Path) -> dict[str, list[tuple]]:
    """Every staging and star table in full, and the bookkeeping tables without the run-specific load_id."""
    out = {t.name: table_rows(db_path, t.name) for t in (*STAGING_TABLES, *STAR_TABLES)}
    with duckdb.connect(str(db_path), read_only=True) as con:
        for t in BOOKKEEPING_TABLES:
            cols = ", ".join(f'"{c}"' for c in t.column_names if c != "load_id")
            out[t.name] = con.execute(f'SELECT {cols} FROM "{t.name}" ORDER BY ALL').fetchall()
    return out


# ----------------------------------------------------------------------------- synthetic datasets
@pytest.fixture(scope="module", params=list(DATASETS))
def generated(request, tmp_path_factory):
    """(raw folder, warehouse file, generator stats, oracle tables) of one synthetic dataset."""
    base = tmp_path_factory.mktemp(request.param)
    raw, db = base / "raw", base / "wh.duckdb"
    stats = generate_dataset(raw, **DATASETS[request.param])
    result = materialize_all(raw, db)
    assert result.success
    return request.param, raw, db, stats, ref.expected_tables(raw)


@pytest.mark.parametrize("table", STAR)
def test_generated_star_table_equals_oracle(generated, table):
    _name, _raw, db, _stats, expected = generated
    assert_table_equals(db, table, expected[table])


def test_oracle_agrees_with_generator_counts_and_is_not_trivial(generated):
    """Guards the oracle itself: its counts match what the generator says it wrote, and every
    matching outcome (a song found, none found) occurs, so the table comparisons are meaningful."""
    _name, _raw, _db, stats, expected = generated
    songplays = expected["songplays"]
    assert len(songplays) == stats.nextsong_events  # the generator never duplicates an event
    assert len(expected["users"]) == stats.users
    assert len(expected["songs"]) == stats.song_files
    matched = [r for r in songplays if r[4] is not None]
    assert matched and len(matched) < len(songplays)
    assert all(r[5] is not None for r in matched)
    assert {r[3] for r in songplays} == {"free", "paid"}
    assert len(expected["time"]) == len({r[1] for r in songplays})


def test_generated_staging_counts(generated):
    _name, raw, db, stats, _expected = generated
    assert len(table_rows(db, "staging_events")) == stats.events
    assert len(table_rows(db, "staging_songs")) == stats.song_files
    assert len(list(raw.joinpath("song_data").rglob("*.json"))) == stats.song_files


@pytest.mark.parametrize("generated", list(YEAR_END_WEEKS), indirect=True)
def test_year_end_datasets_cross_the_iso_year_boundary(generated):
    """The year-end datasets really hold plays on the days whose ISO week differs from the naive one."""
    name, _raw, db, _stats, expected = generated
    wanted = YEAR_END_WEEKS[name]
    assert {(r[5], r[3], r[6]) for r in expected["time"]} == wanted
    assert {(r[5], r[3], r[6]) for r in table_rows(db, "time")} == wanted


def test_materializing_twice_into_the_same_file_gives_identical_tables(tmp_path):
    raw, db = tmp_path / "raw", tmp_path / "wh.duckdb"
    generate_dataset(raw, songs=80, users=8, days=2, events_per_day=150, seed=11)
    assert materialize_all(raw, db).success
    first = _all_tables(db)
    assert materialize_all(raw, db).success
    second = _all_tables(db)
    assert set(first) == {t.name for t in ALL_TABLES}
    for name in first:
        assert second[name] == first[name], f"{name} changed on a second load"
    assert first["songplays"] and first["staging_events"]


# ----------------------------------------------------------------------------- the real sample
@pytest.fixture(scope="module")
def real_sample(tmp_path_factory):
    db = tmp_path_factory.mktemp("real") / "wh.duckdb"
    assert materialize_all(REAL_SAMPLE, db).success
    return db, ref.expected_tables(REAL_SAMPLE)


@requires_real_sample
@pytest.mark.parametrize("table", STAR)
def test_real_sample_star_table_equals_oracle(real_sample, table):
    db, expected = real_sample
    assert_table_equals(db, table, expected[table])


@requires_real_sample
def test_real_sample_known_counts(real_sample):
    """Facts known independently of this project (the numbers peers argue about, stated once)."""
    db, expected = real_sample
    assert len(table_rows(db, "staging_events")) == 8056
    assert len(table_rows(db, "staging_songs")) == 71
    songplays = table_rows(db, "songplays")
    assert len(songplays) == 6820
    assert len(table_rows(db, "users")) == 97
    assert sum(1 for r in songplays if r[4] is not None) == 1
    # The oracle reaches the same facts on its own.
    assert len(expected["songplays"]) == 6820
    assert len(expected["users"]) == 97
    assert sum(1 for r in expected["songplays"] if r[4] is not None) == 1
    assert len(expected["songs"]) == 71
