"""The checks on the analytics tables: each passes on the sample and fails on a table broken its way."""

import shutil

import dagster as dg
import duckdb
import pytest

from sparkify_dagster.catalog import ANALYTICS_TABLES
from sparkify_dagster.checks import checks_of
from sparkify_dagster_tests.test_checks import loaded_sample, run_checks_job  # noqa: F401  (shared fixture)

# Defects, each breaking a shape (and what it breaks with it): every check below is failed by one.
ADD_UP = "plays_add_up_to_songplays"
BROKEN = [
    ("INSERT INTO analytics.plays_by_hour VALUES (24, 0, 0)", {("plays_by_hour", "one_row_per_hour")}),
    # A missing hour that had plays: its plays no longer add up either.
    ("DELETE FROM analytics.plays_by_hour WHERE hour = (SELECT hour FROM analytics.plays_by_hour "
     "ORDER BY plays DESC LIMIT 1)", {("plays_by_hour", "one_row_per_hour"), ("plays_by_hour", ADD_UP)}),
    ("UPDATE analytics.plays_by_hour SET plays = plays + 1 WHERE hour = 12", {("plays_by_hour", ADD_UP)}),
    ("INSERT INTO analytics.plays_by_weekday SELECT weekday, day_name, 0, 0 FROM analytics.plays_by_weekday "
     "WHERE weekday = 3", {("plays_by_weekday", "one_row_per_weekday")}),
    ("UPDATE analytics.plays_by_weekday SET plays = plays - 1 WHERE weekday = "
     "(SELECT MIN(weekday) FROM analytics.plays_by_weekday WHERE plays > 0)", {("plays_by_weekday", ADD_UP)}),
    ("UPDATE analytics.plays_by_level SET level = 'gold' WHERE level = 'paid'",
     {("plays_by_level", "one_row_per_level")}),
    ("UPDATE analytics.plays_by_level SET plays = 2 * plays + 1 WHERE level = 'free'", {("plays_by_level", ADD_UP)}),
    ("UPDATE analytics.plays_by_platform SET platform = 'BeOS' WHERE platform = 'Other'",
     {("plays_by_platform", "one_row_per_platform")}),
    ("UPDATE analytics.plays_by_platform SET plays = plays + 5 WHERE platform = 'Linux'",
     {("plays_by_platform", ADD_UP)}),
    *[(f"INSERT INTO analytics.{t} SELECT 100 + r.range AS play_rank, x.* EXCLUDE (play_rank) "
       f"FROM (SELECT * FROM analytics.{t} LIMIT 1) AS x, range(11) AS r", {(t, "at_most_10_rows")})
      for t in ("top_songs", "top_artists", "most_active_users")],
]
ANALYTICS_CHECKS = {(t.name, c.name) for t in ANALYTICS_TABLES for c in checks_of(t.name)}


def test_every_analytics_check_is_broken_by_some_defect_below():
    # A check no defect fails is a check that cannot fail.
    assert ANALYTICS_CHECKS == {check for _sql, failing in BROKEN for check in failing}
    assert {t.name for t in ANALYTICS_TABLES} == {table for table, _ in ANALYTICS_CHECKS}


def test_every_analytics_check_passes_on_the_sample(loaded_sample, monkeypatch):  # noqa: F811
    result, outcomes = run_checks_job(loaded_sample, monkeypatch)
    assert result.success
    assert {k: v for k, v in outcomes.items() if k in ANALYTICS_CHECKS} == dict.fromkeys(ANALYTICS_CHECKS, True)


@pytest.mark.parametrize("sql, failing", BROKEN, ids=[f"{n}-{'+'.join(sorted(c for _, c in f))}"
                                                     for n, (_, f) in enumerate(BROKEN)])
def test_each_analytics_check_fails_on_a_table_broken_its_way(loaded_sample, tmp_path, monkeypatch, sql,  # noqa: F811
                                                             failing):
    db = tmp_path / "broken.duckdb"
    shutil.copy(loaded_sample, db)
    with duckdb.connect(str(db)) as con:
        con.execute(sql)
    result, outcomes = run_checks_job(db, monkeypatch)
    assert {k for k, passed in outcomes.items() if not passed} == failing
    severities = {(e.asset_key.to_user_string(), e.check_name): e.severity for e in result.get_asset_check_evaluations()}
    shape_broken = any(name != ADD_UP for _, name in failing)
    # A wrong shape is an error that fails the run; totals that do not add up only warn.
    assert result.success is not shape_broken
    for check in failing:
        assert severities[check] == (dg.AssetCheckSeverity.WARN if check[1] == ADD_UP else dg.AssetCheckSeverity.ERROR)
