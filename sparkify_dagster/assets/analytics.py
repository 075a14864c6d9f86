"""Analytics: small summary tables of the star schema, in their own ``analytics`` schema, each with a chart.

Every table is one SELECT in ``sql/analytics_<name>.sql``, rendered like the star transforms (Jinja,
``ref()`` to catalog tables, ``d`` for the dialect) and run in the warehouse: only the few result rows
(at most 24) come back to Python, to draw the chart and the preview. A table is replaced atomically:
DELETE + INSERT in one transaction (``Warehouse.transaction``), never TRUNCATE (which commits on
Redshift), so a reader sees the old rows or the new ones, never an empty table.

The tables live in the schema ``analytics`` (``CREATE SCHEMA IF NOT EXISTS``, on DuckDB and Redshift
alike), so BI users can be granted that schema alone. The DDL is built here from the same logical
types as the catalog (``Dialect.column_type``), without changing how the catalog's tables are named.
"""


from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg

from sparkify_dagster.assets.charts import bar_chart, chart_markdown
from sparkify_dagster.assets.metadata import OWNERS, code_references, markdown_table, table_metadata
from sparkify_dagster.assets.staging import WAREHOUSE_POOL
from sparkify_dagster.catalog import ARTISTS, SONGPLAYS, SONGS, TABLES, TIME, USERS, Column, Table
from sparkify_dagster.transforms import SQL_TEMPLATES
from sparkify_dagster.warehouse.base import Dialect, Warehouse, quote_ident, relation, replace_statements

ANALYTICS_GROUP = "analytics"
ANALYTICS_SCHEMA = "analytics"
ANALYTICS_OWNERS = [*OWNERS, "team:analytics"]
TOP_N = 10
PLATFORMS = ("Windows", "Mac", "Linux", "iPhone", "iPad", "Android", "Other")
WEEKDAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _cols(*specs: tuple) -> tuple[Column, ...]:
    return tuple(Column(*spec) for spec in specs)


def _table(name: str, description: str, columns: tuple[Column, ...], key: str) -> Table:
    # Small tables: a full copy on every Redshift node, sorted by their key.
    return Table(name=name, description=description, columns=columns, primary_key=(key,), diststyle="ALL",
                 sortkey=(key,), schema=ANALYTICS_SCHEMA)


_RANK = ("play_rank", "integer", f"Rank by plays, 1 = most played (ties broken by id); at most {TOP_N}.", True)
_PLAYS = ("plays", "bigint", "Number of songplays.", True)
_LISTENERS = ("listeners", "bigint", "Distinct users among those songplays.", True)
_SHARE = ("share_pct", "double", "Percent of all songplays (0 when there are none).", True)


@dataclass(frozen=True)
class Chart:
    title: str
    label: Callable[[dict], object]
    value: str = "plays"
    horizontal: bool = False


@dataclass(frozen=True)
class Analysis:
    """One analytics table: its columns, what it reads, its row order and its chart."""

    table: Table
    deps: tuple[str, ...]
    order_by: tuple[str, ...]  # column names, "-name" for descending; used for the preview and chart
    chart: Chart

    @property
    def name(self) -> str:
        return self.table.name


ANALYSES: tuple[Analysis, ...] = (
    Analysis(
        _table(
            "top_songs",
            f"The {TOP_N} most played songs (songplays matched to a song only); ties: smallest song_id.",
            _cols(_RANK, ("song_id", "varchar(32)", "Song identifier.", True),
                  ("title", "varchar(512)", "Song title."), ("artist_id", "varchar(32)", "Artist identifier."),
                  ("artist_name", "varchar(512)", "The artist's name (from artists)."), _PLAYS, _LISTENERS),
            "play_rank",
        ),
        deps=(SONGPLAYS.name, SONGS.name, ARTISTS.name),
        order_by=("play_rank",),
        chart=Chart(f"Top {TOP_N} songs by plays", lambda r: f"{r['title']} — {r['artist_name']}", horizontal=True),
    ),
    Analysis(
        _table(
            "top_artists",
            f"The {TOP_N} most played artists (songplays matched to a song only); ties: smallest artist_id.",
            _cols(_RANK, ("artist_id", "varchar(32)", "Artist identifier.", True),
                  ("name", "varchar(512)", "The artist's name (from artists)."), _PLAYS,
                  ("songs_played", "bigint", "Distinct songs of the artist that were played.", True), _LISTENERS),
            "play_rank",
        ),
        deps=(SONGPLAYS.name, ARTISTS.name),
        order_by=("play_rank",),
        chart=Chart(f"Top {TOP_N} artists by plays", lambda r: r["name"], horizontal=True),
    ),
    Analysis(
        _table(
            "plays_by_hour",
            "Songplays per hour of day (UTC): one row for every hour 0-23, 0 plays when none.",
            _cols(("hour", "integer", "Hour of day, 0-23, UTC.", True), _PLAYS, _LISTENERS),
            "hour",
        ),
        deps=(SONGPLAYS.name, TIME.name),
        order_by=("hour",),
        chart=Chart("Plays by hour of day (UTC)", lambda r: r["hour"]),
    ),
    Analysis(
        _table(
            "plays_by_weekday",
            "Songplays per day of week (UTC), 0 = Sunday: all seven days, 0 plays when none.",
            _cols(("weekday", "integer", "Day of week, 0 = Sunday .. 6 = Saturday (as time.weekday).", True),
                  ("day_name", "varchar(16)", "Sunday .. Saturday.", True), _PLAYS, _LISTENERS),
            "weekday",
        ),
        deps=(SONGPLAYS.name, TIME.name),
        order_by=("weekday",),
        chart=Chart("Plays by day of week (UTC)", lambda r: r["day_name"][:3]),
    ),
    Analysis(
        _table(
            "plays_by_level",
            "Free vs paid: songplays by the user's level at the time of the play (both always present).",
            _cols(("level", "varchar(16)", "free or paid (unknown if a play had no level).", True),
                  _PLAYS, _LISTENERS, _SHARE),
            "level",
        ),
        deps=(SONGPLAYS.name,),
        order_by=("-plays", "level"),
        chart=Chart("Plays by subscription level", lambda r: r["level"]),
    ),
    Analysis(
        _table(
            "most_active_users",
            f"The {TOP_N} users with the most songplays, with their current name and level; ties: smallest user_id.",
            _cols(_RANK, ("user_id", "varchar(64)", "User id (a string, as in the logs).", True),
                  ("first_name", "varchar(256)", "First name (from users)."),
                  ("last_name", "varchar(256)", "Last name (from users)."),
                  ("level", "varchar(16)", "Current level (from users)."), _PLAYS,
                  ("sessions", "bigint", "Distinct sessions with a songplay.", True)),
            "play_rank",
        ),
        deps=(SONGPLAYS.name, USERS.name),
        order_by=("play_rank",),
        chart=Chart(f"Top {TOP_N} users by plays",
                    lambda r: f"{r['first_name'] or ''} {r['last_name'] or ''} ({r['user_id']})".strip(),
                    horizontal=True),
    ),
    Analysis(
        _table(
            "plays_by_platform",
            "Songplays per client platform (Windows, Mac, Linux, iPhone, iPad, Android, Other), parsed "
            "from the user agent with LIKE patterns; every platform present, 0 plays when none.",
            _cols(("platform", "varchar(16)", "One of: " + ", ".join(PLATFORMS) + ".", True),
                  _PLAYS, _LISTENERS, _SHARE),
            "platform",
        ),
        deps=(SONGPLAYS.name,),
        order_by=("-plays", "platform"),
        chart=Chart("Plays by platform (from the user agent)", lambda r: r["platform"]),
    ),
)
ANALYSES_BY_NAME = {a.name: a for a in ANALYSES}


# --- SQL: rendering, DDL, replacement -------------------------------------------------------------

def _ref(name: str) -> str:
    if name in ANALYSES_BY_NAME:
        return relation(ANALYSES_BY_NAME[name].table)
    if name in TABLES:
        return quote_ident(name)
    raise KeyError(f"ref() to a table that is neither in the catalog nor an analytics table: {name!r}")


def analytics_sql(name: str, dialect: Dialect) -> str:
    """The SELECT that builds analytics table ``name``, rendered for ``dialect``."""
    template = SQL_TEMPLATES.get_template(f"analytics_{name}.sql")
    return template.render(ref=_ref, d=dialect, top_n=TOP_N, platforms=PLATFORMS).strip()


def create_statements(table: Table, dialect: Dialect) -> list[str]:
    """CREATE SCHEMA / CREATE TABLE IF NOT EXISTS for an analytics table, in the dialect's spelling."""
    return [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(ANALYTICS_SCHEMA)}", dialect.create_table(table)]


def analytics_statements(dialect: Dialect) -> list[str]:
    """Every statement that builds the analytics schema, in order (e.g. for ``sparkify-sql``)."""
    statements: list[str] = []
    for a in ANALYSES:
        statements += [s for s in create_statements(a.table, dialect) if s not in statements]
    for a in ANALYSES:
        statements += ["BEGIN", *dialect.lock_statements([a.table]),
                       *replace_statements(a.table, analytics_sql(a.name, dialect)), "COMMIT"]
    return statements


def _order_sql(order_by: tuple[str, ...]) -> str:
    return ", ".join(f"{quote_ident(c[1:])} DESC" if c.startswith("-") else quote_ident(c) for c in order_by)


def qualified_name(warehouse: Warehouse, table: Table) -> str:
    """database.analytics.table, for dagster/table_name (the warehouse names its own schema)."""
    database, _schema, name = warehouse.qualified_name(table).rsplit(".", 2)
    return f"{database}.{ANALYTICS_SCHEMA}.{name}"


def rebuild(warehouse: Warehouse, analysis: Analysis) -> tuple[int, list[dict]]:
    """Replace the table atomically; return its row count and its (few) rows in display order."""
    table = analysis.table
    # The star tables it reads (a fresh warehouse gives empty results) and its own, in the analytics
    # schema; each is derived from the star schema, so one of an older shape is dropped and recreated.
    warehouse.ensure_tables()
    warehouse.ensure_tables([table])
    cols = ", ".join(quote_ident(c) for c in table.column_names)
    with warehouse.transaction(locks=[table]) as s:
        for statement in replace_statements(table, analytics_sql(analysis.name, warehouse.dialect)):
            s.execute(statement)
        count = s.execute(f"SELECT COUNT(*) FROM {relation(table)}")[0][0]
        rows = s.execute(f"SELECT {cols} FROM {relation(table)} ORDER BY {_order_sql(analysis.order_by)}")
    return count, [dict(zip(table.column_names, r)) for r in rows]


def chart_png(analysis: Analysis, rows: list[dict]) -> bytes:
    chart = analysis.chart
    return bar_chart([chart.label(r) for r in rows], [r[chart.value] for r in rows], title=chart.title,
                     value_label=chart.value, horizontal=chart.horizontal)


def _materialization(warehouse: Warehouse, analysis: Analysis, count: int, rows: list[dict],
                     png: bytes) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        asset_key=analysis.name,
        metadata={
            **table_metadata(analysis.table, warehouse, row_count=count),
            "dagster/table_name": qualified_name(warehouse, analysis.table),
            "chart": dg.MetadataValue.md(chart_markdown(png, analysis.chart.title)),
            "preview": dg.MetadataValue.md(markdown_table(rows)),
        },
    )


def materialize_selected(context: dg.AssetExecutionContext, warehouse: Warehouse) -> Iterator[dg.MaterializeResult]:
    """Rebuild the selected analytics tables, in one step, each with its chart."""
    for analysis in ANALYSES:
        if dg.AssetKey(analysis.name) in context.selected_asset_keys:
            count, rows = rebuild(warehouse, analysis)
            context.log.info(f"{ANALYTICS_SCHEMA}.{analysis.name}: {count:,} rows")
            yield _materialization(warehouse, analysis, count, rows, chart_png(analysis, rows))


def build_analytics_assets(engine_kind: str) -> dg.AssetsDefinition:
    """The analytics tables (group "analytics"): one asset each, built together in one step."""

    @dg.multi_asset(
        name="analytics",
        specs=[
            dg.AssetSpec(
                a.name, deps=list(a.deps), group_name=ANALYTICS_GROUP, kinds={engine_kind, "sql", "pillow"},
                description=f"{a.table.description} Table {ANALYTICS_SCHEMA}.{a.name}; a chart in the "
                "materialization metadata.",
                owners=ANALYTICS_OWNERS,
                metadata=code_references(f"sql/analytics_{a.name}.sql", "assets/charts.py"),
            )
            for a in ANALYSES
        ],
        can_subset=True,
        pool=WAREHOUSE_POOL,
        description="Rebuild the analytics tables from the star schema and draw their charts.",
    )
    def analytics(context: dg.AssetExecutionContext, warehouse: Warehouse) -> Iterator[dg.MaterializeResult]:
        yield from materialize_selected(context, warehouse)

    return analytics
