"""Operator experience: the analytics assets (each table's rule, the analytics schema, atomic
replacement, charts, metadata, Redshift-parseable SQL), the operator-facing attributes of every asset
(owners, kinds, code references, previews), and the production instance file deploy/dagster.prod.yaml.

The bundled sample is materialized once per module (about 5 s); rules the sample cannot show (every
platform, ties, empty warehouse) run on songplays rows written straight into a fresh warehouse.
"""

import base64
import datetime as dt
import os
import re
import struct
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import sqlglot
from sqlglot import exp

from sparkify_dagster.assets import analytics as an
from sparkify_dagster.assets.charts import HEIGHT_PX, WIDTH_PX, bar_chart, chart_markdown
from sparkify_dagster.catalog import SONGPLAYS, TIME
from sparkify_dagster.definitions import build_defs
from sparkify_dagster.source import SAMPLE_DATA_DIR, LocalFolderSource
from sparkify_dagster.warehouse import star_update, transforms
from sparkify_dagster.warehouse import duckdb as duckdb_engine
from sparkify_dagster.warehouse.duckdb import DuckDBWarehouse
from sparkify_dagster.warehouse.dialect import RedshiftDialect

NAMES = [a.name for a in an.ANALYSES]
REPO = Path(__file__).resolve().parents[1]
GROUPS = {"raw", "staging", "star", "analytics"}


def wired_defs() -> dg.Definitions:
    """The real definitions once analytics are wired in; until then, the wiring they will get."""
    real = build_defs("duckdb")
    if dg.AssetKey("top_songs") in real.resolve_asset_graph().get_all_asset_keys():
        return real
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        assets = dg.with_source_code_references([*real.assets, an.build_analytics_assets("duckdb")])
    return dg.Definitions(
        assets=assets,
        asset_checks=real.asset_checks,
        resources=real.resources,
        executor=real.executor,
    )


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def chart_png(markdown: str) -> bytes:
    m = re.fullmatch(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert m, markdown[:100]
    return base64.b64decode(m.group(1))


# ----------------------------------------------------------------------------- the bundled sample
@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The whole graph (raw → staging → star → analytics) on the bundled sample, materialized once."""
    db = tmp_path_factory.mktemp("analytics") / "wh.duckdb"
    result = dg.materialize(
        list(wired_defs().assets),
        resources={"warehouse": DuckDBWarehouse(path=str(db)), "raw_data": LocalFolderSource(root=str(SAMPLE_DATA_DIR))},
    )
    metadata = {
        e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    con = duckdb.connect(str(db), read_only=True)
    yield con, metadata
    con.close()


def rows(con, name, order):
    return con.execute(f"SELECT * FROM analytics.{name} ORDER BY {order}").fetchall()


def songplays(con):
    return con.execute("SELECT start_time, user_id, level, song_id, artist_id, session_id, user_agent FROM songplays").fetchall()


def platform_of(agent):
    """The rule of sql/analytics_plays_by_platform.sql, restated: first matching substring wins."""
    for needle, name in (("Windows Phone", "Windows"), ("iPhone", "iPhone"), ("iPad", "iPad"),
                         ("Android", "Android"), ("Windows", "Windows"), ("Macintosh", "Mac"),
                         ("Mac OS X", "Mac"), ("Linux", "Linux")):
        if agent is not None and needle in agent:
            return name
    return "Other"


def test_tables_live_in_the_analytics_schema(sample):
    con, _ = sample
    found = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_name IN "
        f"({', '.join(repr(n) for n in NAMES)})"
    ).fetchall()
    assert sorted(found) == sorted(("analytics", n) for n in NAMES)


def test_top_songs_and_artists_count_matched_plays_with_stable_ties(sample):
    con, _ = sample
    plays = songplays(con)
    by_song = Counter(p[3] for p in plays if p[3] is not None)
    expected = sorted(by_song.items(), key=lambda kv: (-kv[1], kv[0]))[: an.TOP_N]
    got = rows(con, "top_songs", "play_rank")
    assert [(r[1], r[5]) for r in got] == expected
    assert [r[0] for r in got] == list(range(1, len(expected) + 1))
    assert len({r[5] for r in got}) < len(got), "the sample has ties: the tie-break is exercised"
    titles = dict(con.execute("SELECT song_id, title FROM songs").fetchall())
    assert all(r[2] == titles[r[1]] for r in got)

    by_artist = Counter(p[4] for p in plays if p[4] is not None)
    expected = sorted(by_artist.items(), key=lambda kv: (-kv[1], kv[0]))[: an.TOP_N]
    assert [(r[1], r[3]) for r in rows(con, "top_artists", "play_rank")] == expected


def test_plays_by_hour_has_all_24_hours_and_by_weekday_all_7_days(sample):
    con, _ = sample
    plays = songplays(con)
    hours = Counter(p[0].hour for p in plays)
    got = rows(con, "plays_by_hour", "hour")
    assert [(r[0], r[1]) for r in got] == [(h, hours.get(h, 0)) for h in range(24)]
    assert any(r[1] == 0 for r in got), "the sample has hours without plays: they are still present"
    # Python's weekday() has Monday = 0; the table has Sunday = 0, like Redshift's EXTRACT(dow).
    days = Counter((p[0].weekday() + 1) % 7 for p in plays)
    got = rows(con, "plays_by_weekday", "weekday")
    assert [(r[0], r[1], r[2]) for r in got] == [(d, an.WEEKDAY_NAMES[d], days.get(d, 0)) for d in range(7)]
    assert sum(r[2] for r in got) == len(plays)


def test_free_vs_paid_users_and_platforms(sample):
    con, _ = sample
    plays = songplays(con)
    levels = Counter(p[2] for p in plays)
    got = {r[0]: r for r in rows(con, "plays_by_level", "level")}
    assert set(got) == {"free", "paid"}
    assert {k: r[1] for k, r in got.items()} == {"free": levels["free"], "paid": levels["paid"]}
    assert got["free"][3] == round(100 * levels["free"] / len(plays), 2)

    per_user, sessions = Counter(p[1] for p in plays), defaultdict(set)
    for p in plays:
        sessions[p[1]].add(p[5])
    expected = sorted(per_user.items(), key=lambda kv: (-kv[1], kv[0]))[: an.TOP_N]
    got = rows(con, "most_active_users", "play_rank")
    assert [(r[1], r[5], r[6]) for r in got] == [(u, n, len(sessions[u])) for u, n in expected]

    platforms = Counter(platform_of(p[6]) for p in plays)
    got = {r[0]: r[1] for r in rows(con, "plays_by_platform", "platform")}
    assert got == {p: platforms.get(p, 0) for p in an.PLATFORMS}
    assert got["Windows"] and got["Linux"] and got["Mac"], "the sample's quoted agents are all classified"


def test_materializations_carry_row_count_schema_table_name_preview_and_a_chart(sample):
    _, metadata = sample
    for name in NAMES:
        md = metadata[name]
        analysis = an.ANALYSES_BY_NAME[name]
        assert md["dagster/row_count"].value == {"plays_by_hour": 24, "plays_by_weekday": 7, "plays_by_level": 2,
                                                "plays_by_platform": 7}.get(name, an.TOP_N), name
        assert md["dagster/table_name"].value == f"wh.analytics.{name}"
        schema = md["dagster/column_schema"].schema
        assert [c.name for c in schema.columns] == analysis.column_names
        assert all(c.description for c in schema.columns)
        preview = md["preview"]  # typed table metadata: every row of the table, its columns described
        assert len(preview.records) == md["dagster/row_count"].value
        assert [c.name for c in preview.schema.columns] == list(analysis.preview_columns or analysis.column_names)
        assert png_size(chart_png(md["chart"].value)) == (WIDTH_PX, HEIGHT_PX)


def test_staging_materializations_have_a_preview(sample):
    _, metadata = sample
    for name in ("staging_events", "staging_songs"):
        preview = metadata[name]["preview"]
        assert "source_file" in [c.name for c in preview.schema.columns]
        assert len(preview.records) == 5 and all(r.data["source_file"] for r in preview.records)


# ----------------------------------------------------------------------------- hand-written songplays
AGENTS = {
    '"Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/36.0 Safari/537.36"': "Windows",
    "Mozilla/5.0 (Windows NT 5.1; rv:31.0) Gecko/20100101 Firefox/31.0": "Windows",
    '"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_4) AppleWebKit/537.36 (KHTML, like Gecko)"': "Mac",
    '"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/37.0 Safari/537.36"': "Linux",
    '"Mozilla/5.0 (iPhone; CPU iPhone OS 7_1_2 like Mac OS X) AppleWebKit/537.51.2 (KHTML, like Gecko)"': "iPhone",
    '"Mozilla/5.0 (iPad; CPU OS 7_1_2 like Mac OS X) AppleWebKit/537.51.2 (KHTML, like Gecko) Mobile/11D257"': "iPad",
    '"Mozilla/5.0 (Linux; Android 4.4.2; SM-T230NU Build/KOT49H) AppleWebKit/537.36"': "Android",
    "Mozilla/5.0 (Mobile; Windows Phone 8.1; Android 4.0; ARM; Trident/7.0; like iPhone OS 7_0_3 Mac OS X)": "Windows",
    "curl/7.35.0": "Other",
    "it's \"quoted\" and 100% _odd_": "Other",
    None: "Other",
}
BASE = dt.datetime(2018, 11, 4, 0, 0)  # a Sunday


@pytest.fixture
def wh(tmp_path):
    w = DuckDBWarehouse(path=str(tmp_path / "hand.duckdb"))
    w.ensure_tables()
    return w


def insert_plays(wh, plays):
    """plays: (user_id, level, song_id, artist_id, hours after BASE, user_agent); time rebuilt from them."""
    cols = ", ".join(SONGPLAYS.column_names)
    with wh.transaction() as s:
        for i, (user, level, song, artist, hours, agent) in enumerate(plays):
            s.execute(f"INSERT INTO songplays ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      [f"id{i}", BASE + dt.timedelta(hours=hours), user, level, song, artist, i, "X", agent])
    wh.rebuild_table(TIME)


def rebuilt(wh, name):
    return an.rebuild(wh, an.ANALYSES_BY_NAME[name])[1]


def test_platforms_from_user_agents_with_literal_quotes(wh):
    insert_plays(wh, [("1", "free", None, None, i, agent) for i, agent in enumerate(AGENTS)])
    got = {r["platform"]: r["plays"] for r in rebuilt(wh, "plays_by_platform")}
    assert got == {p: Counter(AGENTS.values()).get(p, 0) for p in an.PLATFORMS}
    assert all(platform_of(a) == p for a, p in AGENTS.items())  # the restated rule agrees with the cases


def test_ties_break_by_smallest_id_and_only_top_n_are_kept(wh):
    # 12 songs by 12 artists, 2 plays each except S05 (3 plays); one unmatched play (no song) is ignored.
    plays = [(str(u), "paid", f"S{n:02d}", f"A{n:02d}", n, None) for n in range(12, 0, -1) for u in (1, 2)]
    plays += [("3", "paid", "S05", "A05", 1, None), ("3", "paid", None, None, 2, None)]
    insert_plays(wh, plays)
    top = rebuilt(wh, "top_songs")
    assert [r["song_id"] for r in top] == ["S05"] + [f"S{n:02d}" for n in (1, 2, 3, 4, 6, 7, 8, 9, 10)]
    assert [r["play_rank"] for r in top] == list(range(1, 11))
    assert top[0]["title"] is None  # the song is not in songs: kept, with no title (left join)
    assert [r["artist_id"] for r in rebuilt(wh, "top_artists")][:3] == ["A05", "A01", "A02"]
    users = rebuilt(wh, "most_active_users")
    assert [(r["user_id"], r["plays"]) for r in users] == [("1", 12), ("2", 12), ("3", 2)]


def test_an_empty_warehouse_gives_complete_zero_series_and_empty_rankings(wh):
    hours = rebuilt(wh, "plays_by_hour")
    assert [(r["hour"], r["plays"]) for r in hours] == [(h, 0) for h in range(24)]
    assert [r["plays"] for r in rebuilt(wh, "plays_by_weekday")] == [0] * 7
    assert {(r["level"], r["plays"], r["share_pct"]) for r in rebuilt(wh, "plays_by_level")} == {
        ("free", 0, 0), ("paid", 0, 0)}
    assert rebuilt(wh, "top_songs") == []
    assert png_size(an.chart_png(an.ANALYSES_BY_NAME["top_songs"], [])) == (WIDTH_PX, HEIGHT_PX)


def test_replacement_is_atomic_and_repeatable(wh, monkeypatch):
    insert_plays(wh, [("1", "free", None, None, 5, None), ("2", "paid", None, None, 5, None)])
    first = rebuilt(wh, "plays_by_hour")
    assert rebuilt(wh, "plays_by_hour") == first  # DELETE + INSERT: no duplicates on a rerun
    monkeypatch.setattr(star_update, "render", lambda table, dialect, affected=None: "SELECT 1/0 AS hour, 1, 1 FROM songplays")
    with pytest.raises(Exception):
        rebuilt(wh, "plays_by_hour")
    with duckdb.connect(wh.path, read_only=True) as con:
        assert con.execute("SELECT hour, plays, listeners FROM analytics.plays_by_hour ORDER BY hour").fetchall() == [
            (r["hour"], r["plays"], r["listeners"]) for r in first]


def test_fact_rows_never_come_back_to_python(wh, monkeypatch):
    insert_plays(wh, [(str(i % 7), "free", f"S{i % 13}", "A", i % 30, None) for i in range(300)])
    fetched = []
    real = duckdb_engine._DuckDBSession.execute

    def recording(self, sql, params=None):
        out = real(self, sql, params)
        if "information_schema" not in sql:  # the catalog's own column lists are not table rows
            fetched.append(len(out))
        return out

    monkeypatch.setattr(duckdb_engine._DuckDBSession, "execute", recording)
    for analysis in an.ANALYSES:
        an.rebuild(wh, analysis)
    assert fetched and max(fetched) <= 24


def test_an_outdated_analytics_table_is_recreated(wh):
    with wh.session() as s:
        s.execute("CREATE SCHEMA analytics")
        s.execute("CREATE TABLE analytics.plays_by_hour (hour INTEGER, plays BIGINT)")  # an older shape
        s.execute("INSERT INTO analytics.plays_by_hour VALUES (99, 1)")
    assert [r["hour"] for r in rebuilt(wh, "plays_by_hour")] == list(range(24))
    assert wh.ensure_tables([an.ANALYSES_BY_NAME["plays_by_hour"]]) == []  # now of the current shape


# ----------------------------------------------------------------------------- SQL for Redshift
def test_every_analytics_statement_parses_under_the_redshift_grammar():
    statements = an.analytics_statements(RedshiftDialect())
    assert statements[0] == 'CREATE SCHEMA IF NOT EXISTS "analytics"'
    assert sum(s.startswith('INSERT INTO "analytics".') for s in statements) == len(NAMES)
    for stmt in statements:
        if stmt in ("BEGIN", "COMMIT") or stmt.startswith("LOCK "):  # sqlglot has no LOCK
            continue
        tree = sqlglot.parse_one(stmt, read="redshift", error_level=sqlglot.ErrorLevel.RAISE)
        assert not isinstance(tree, exp.Command), f"parsed only as an opaque command: {stmt[:80]}"
        assert "TRUNCATE" not in stmt.upper()
    ddl = next(s for s in statements if s.startswith('CREATE TABLE IF NOT EXISTS "analytics"."plays_by_hour"'))
    assert "DISTSTYLE ALL" in ddl and 'PRIMARY KEY ("hour")' in ddl and 'SORTKEY ("hour")' in ddl
    ddl = next(s for s in statements if s.startswith('CREATE TABLE IF NOT EXISTS "analytics"."plays_by_level"'))
    assert '"share_pct" DOUBLE PRECISION NOT NULL' in ddl


def test_ref_resolves_catalog_and_analytics_tables_only():
    assert transforms.ref("songplays") == '"songplays"'
    assert transforms.ref("top_songs") == '"analytics"."top_songs"'
    with pytest.raises(KeyError):
        transforms.ref("nope")


# ----------------------------------------------------------------------------- the asset graph
def test_analytics_assets_lineage_group_kinds_pool():
    graph = wired_defs().resolve_asset_graph()
    for analysis in an.ANALYSES:
        node = graph.get(dg.AssetKey(analysis.name))
        assert node.group_name == "analytics"
        assert {p.to_user_string() for p in node.parent_keys} == set(analysis.built_from)
        assert "duckdb" in node.kinds
        assert node.pools == {"sparkify_warehouse"}
    assert {p.to_user_string() for p in graph.get(dg.AssetKey("plays_by_hour")).parent_keys} == {"songplays", "time"}


def test_every_asset_has_description_owners_kinds_group_and_code_references():
    graph = wired_defs().resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert len(keys) == 2 + 2 + 5 + len(NAMES)
    for key in keys:
        node = graph.get(key)
        assert node.description, key
        assert node.owners and all(o.startswith("team:") for o in node.owners), key
        assert node.kinds, key
        assert node.group_name in GROUPS, key
        refs = node.metadata["dagster/code_references"].code_references
        assert refs and all(os.path.isfile(r.file_path) for r in refs), key
        if node.is_materializable:  # with_source_code_references adds the function that builds it
            assert any(r.file_path.endswith(".py") and r.line_number for r in refs), key
    top = graph.get(dg.AssetKey("top_songs")).metadata["dagster/code_references"].code_references
    assert any(r.file_path.endswith("sql/analytics_top_songs.sql") for r in top)


def test_bar_chart_is_a_small_png_and_markdown_embeds_it():
    png = bar_chart(["a" * 80, None, "c"], [3, None, 1], title="t", value_label="plays", horizontal=True)
    assert png_size(png) == (WIDTH_PX, HEIGHT_PX)
    md = chart_markdown(png, "Top [10]")
    assert md.startswith("![Top (10)](data:image/png;base64,") and chart_png(md) == png


# ----------------------------------------------------------------------------- deploy/dagster.prod.yaml
PROD_ENV = {"DAGSTER_PG_HOST": "db.internal", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_DB": "dagster",
            "DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": "not-in-the-file"}


def test_production_instance_file_is_valid_and_keeps_one_writer(tmp_path, monkeypatch):
    from dagster._core.instance.config import dagster_instance_config, validate_concurrency_config

    prod = REPO / "deploy" / "dagster.prod.yaml"
    text = prod.read_text()
    assert "not-in-the-file" not in text and "password: {env: DAGSTER_PG_PASSWORD}" in text
    for var, value in PROD_ENV.items():
        monkeypatch.setenv(var, value)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(text)
    config, _ = dagster_instance_config(str(home))  # raises on any key or value the schema refuses
    validate_concurrency_config(config)
    assert set(config["storage"]["postgres"]["postgres_db"]) >= {"hostname", "db_name", "username", "password"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["pools"] == {"granularity": "run", "default_limit": 1}
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= 1
    assert config["run_monitoring"]["enabled"] and config["run_monitoring"]["max_runtime_seconds"] > 0


def test_one_analytics_table_can_be_materialized_alone(tmp_path):
    db = tmp_path / "wh.duckdb"
    resources = {"warehouse": DuckDBWarehouse(path=str(db)), "raw_data": LocalFolderSource(root=str(SAMPLE_DATA_DIR))}
    assets = list(wired_defs().assets)
    assert dg.materialize(assets, resources=resources, selection=["*time"]).success
    result = dg.materialize(assets, resources=resources, selection="top_artists")
    assert [e.asset_key.to_user_string() for e in result.get_asset_materialization_events()] == ["top_artists"]
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM analytics.top_artists").fetchone()[0] > 0
        built = {n for (n,) in con.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema = 'analytics'").fetchall()}
        assert built == {"top_artists"}
    finally:
        con.close()
