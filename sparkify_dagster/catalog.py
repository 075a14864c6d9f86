"""Every warehouse table once: what it holds, how it is built, how it is kept up to date, what checks it.

One ``Table`` record per table (staging, star, analytics, bookkeeping). Everything else derives from
it: the DDL of both engines and the ``sparkify-sql`` script, the assets and their dependencies (so
Dagster's asset graph, which gives every order and every "what is downstream"), the column schema in
the UI, the checks (primary key, required columns, accepted values, foreign keys, staging counts),
the incremental update rule, previews and charts. A star or analytics table's transform is its one
SQL file (``sql_file``), rendered for each engine by ``warehouse/transforms.py``.

Types are logical (``varchar(n)``, ``integer``, ``bigint``, ``double``, ``timestamp``); each
engine's dialect renders them (``warehouse/dialect.py``). ``varchar(n)`` counts bytes, as on
Redshift, and the embedded loader rejects longer values instead of truncating them.

Plain data, no imports from the rest of the package: every layer may read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Layer(str, Enum):
    """Where a table sits in the warehouse (its asset group, and which rules apply to it)."""

    STAGING = "staging"  # raw records as loaded by COPY, one row per record
    STAR = "star"  # the star schema, built by its SQL file from staging (and other star tables)
    ANALYTICS = "analytics"  # small summaries of the star schema, in their own schema, with a chart
    BOOKKEEPING = "bookkeeping"  # what was loaded and what was rejected, file by file
    # What the engine remembers to do less work next time (names the loads, so it differs between
    # two warehouses holding the same data; never compared).
    STATE = "state"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    not_null: bool = False
    # Values the column may hold (a null is a violation too): checked by an asset check.
    accepted_values: tuple[str, ...] = ()

    @property
    def max_bytes(self) -> int | None:
        """The byte limit of a varchar column, else None."""
        if self.type.startswith("varchar("):
            return int(self.type[len("varchar(") : -1])
        return None


@dataclass(frozen=True)
class RawInput:
    """Where a staging table's records come from (its raw asset is its ``built_from``), and how COPY
    maps them onto its columns."""

    prefix: str  # its prefix under the data root, ending with '/'
    # Mapped by the JSONPaths file (log_json_path.json, by position), else by column name ('auto').
    jsonpaths: bool
    # One COPY per raw file (a day of events: each row keeps its file), else one COPY of a manifest
    # of every file (a song per file: thousands of tiny files in one statement).
    copy_per_file: bool


@dataclass(frozen=True)
class Rebuild:
    """Rebuilt in full from its SQL file; with ``skip_unchanged``, left as it is when the raw files
    it is built from (and its row count) are those of its last build."""

    skip_unchanged: bool = True


@dataclass(frozen=True)
class ReplaceKeys:
    """When only new log files arrived: replace just the rows of the keys those files hold, built by
    the same SQL restricted to them (its ``affected`` relation: distinct ``key`` columns of
    staging_events), over every copy in staging, so the result equals a full rebuild. Anything else
    (a file changed or gone, a song file changed): the full rebuild."""

    key: tuple[str, ...]


@dataclass(frozen=True)
class Difference:
    """One row per distinct ``key`` of table ``of``, its other columns a function of the key alone:
    once built, only the keys that came or went are added or removed."""

    of: str
    key: str


@dataclass(frozen=True)
class Chart:
    """An analytics table's bar chart: one bar per row, in the table's order."""

    title: str
    label: str  # a format string over the row's columns ("{title} — {artist_name}"); null shows as ""
    value: str = "plays"
    horizontal: bool = False

    def label_of(self, row: dict) -> str:
        return self.label.format(**{k: "" if v is None else v for k, v in row.items()}).strip()


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    layer: Layer
    # The assets it is built from: a raw asset for staging, tables for star and analytics. A star
    # table also waits for the tables its foreign keys name, so their checks see the new state.
    built_from: tuple[str, ...] = ()
    primary_key: tuple[str, ...] = ()
    foreign_keys: dict[str, str] = field(default_factory=dict)
    # Redshift physical design (rendered only for Redshift).
    diststyle: str = "AUTO"
    distkey: str | None = None
    sortkey: tuple[str, ...] = ()
    schema: str | None = None  # None: the warehouse's default schema
    raw: RawInput | None = None  # staging tables only
    update: Rebuild | ReplaceKeys | Difference = Rebuild()
    # Row order of previews and charts ("-name": descending); default: the primary key.
    order_by: tuple[str, ...] = ()
    preview_columns: tuple[str, ...] = ()  # default: every column
    chart: Chart | None = None
    # Analytics shapes, each checked by an asset check: the values the (single) key takes, one row
    # each and no other; at most this many rows (a top-N); its ``plays`` add up to every songplay.
    every_key: tuple = ()
    max_rows: int | None = None
    plays_add_up: bool = False

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def sql_file(self) -> str | None:
        """Its transform under sql/ (star and analytics tables), else None."""
        if self.layer is Layer.STAR:
            return f"{self.name}.sql"
        if self.layer is Layer.ANALYTICS:
            return f"analytics_{self.name}.sql"
        return None

    @property
    def row_order(self) -> tuple[str, ...]:
        return self.order_by or self.primary_key

    @property
    def copied_columns(self) -> list[Column]:
        """The columns a COPY fills (a staging table's source_file is the load's own)."""
        return [c for c in self.columns if c.name != "source_file"]


LEVELS = ("free", "paid")  # subscription levels (songplays.level, users.level, analytics.plays_by_level)


def _cols(*specs: tuple) -> tuple[Column, ...]:
    return tuple(c if isinstance(c, Column) else Column(*c) for c in specs)


# Staging columns follow log_json_path.json position by position (COPY maps JSONPaths by position).
STAGING_EVENTS = Table(
    name="staging_events",
    description="One row per JSON record of the daily event logs, as loaded (COPY semantics).",
    layer=Layer.STAGING,
    built_from=("log_data",),
    raw=RawInput(prefix="log_data/", jsonpaths=True, copy_per_file=True),
    # Staging has no key: previews go by file, then time and position.
    order_by=("source_file", "ts", "session_id", "item_in_session"),
    preview_columns=("source_file", "ts", "user_id", "level", "page", "song", "artist", "length",
                     "session_id", "item_in_session"),
    columns=_cols(
        ("artist", "varchar(512)", "Artist name as logged (NextSong events only)."),
        ("auth", "varchar(32)", "Logged In / Logged Out / Guest / Cancelled."),
        ("first_name", "varchar(256)", "User's first name (null when logged out)."),
        ("gender", "varchar(8)", "User's gender, M or F."),
        ("item_in_session", "integer", "Position of the event in its session, from 0."),
        ("last_name", "varchar(256)", "User's last name."),
        ("length", "double", "Length of the song played, seconds."),
        ("level", "varchar(16)", "Subscription level at the event: free or paid."),
        ("location", "varchar(512)", "User's metro area."),
        ("method", "varchar(16)", "HTTP method of the request."),
        ("page", "varchar(64)", "App page; NextSong means a song was played."),
        ("registration", "double", "Registration time, epoch milliseconds (a float in the logs)."),
        ("session_id", "bigint", "Session identifier."),
        ("song", "varchar(512)", "Song title as logged."),
        ("status", "integer", "HTTP status code."),
        ("ts", "bigint", "Event time, epoch milliseconds UTC."),
        ("user_agent", "varchar(1024)", "Browser user agent string, as logged."),
        ("user_id", "varchar(64)", "User id; a string, empty for logged-out events."),
        ("source_file", "varchar(1024)", "Raw file the record came from, relative to the data root."),
    ),
)

STAGING_SONGS = Table(
    name="staging_songs",
    description="One row per song record of song_data, as loaded (COPY semantics).",
    layer=Layer.STAGING,
    built_from=("song_data",),
    raw=RawInput(prefix="song_data/", jsonpaths=False, copy_per_file=False),
    order_by=("source_file", "song_id"),
    preview_columns=("source_file", "song_id", "title", "artist_id", "artist_name", "duration", "year"),
    columns=_cols(
        ("num_songs", "integer", "Always 1 in the Million Song Dataset subset."),
        ("artist_id", "varchar(32)", "Artist identifier."),
        ("artist_latitude", "double", "Artist latitude, often null."),
        ("artist_longitude", "double", "Artist longitude, often null."),
        ("artist_location", "varchar(512)", "Artist location, free text, often empty."),
        ("artist_name", "varchar(512)", "Artist name on this song."),
        ("song_id", "varchar(32)", "Song identifier."),
        ("title", "varchar(512)", "Song title."),
        ("duration", "double", "Song duration, seconds."),
        ("year", "integer", "Release year; 0 means unknown."),
        ("source_file", "varchar(1024)",
         "Raw file the record came from, relative to the data root (on Redshift: the COPY manifest)."),
    ),
)

SONGPLAYS = Table(
    name="songplays",
    description="Fact: one row per song play (NextSong event of a logged-in user).",
    layer=Layer.STAR,
    built_from=("staging_events", "staging_songs", "users", "songs", "artists"),
    # The rows of a new log file's events: songplay_id is the md5 of this key (sql/songplays.sql).
    update=ReplaceKeys(key=("user_id", "session_id", "item_in_session")),
    columns=_cols(
        ("songplay_id", "varchar(32)", "md5 of user_id|session_id|item_in_session: stable across reloads.", True),
        ("start_time", "timestamp", "Play time, UTC, millisecond precision.", True),
        ("user_id", "varchar(64)", "User who played the song.", True),
        Column("level", "varchar(16)", "User's level at the time of the play.", accepted_values=LEVELS),
        ("song_id", "varchar(32)", "Matched song (title, artist and duration within 0.01 s), else null."),
        ("artist_id", "varchar(32)", "Artist of the matched song, else null."),
        ("session_id", "bigint", "Session identifier."),
        ("location", "varchar(512)", "User's location at the time of the play."),
        ("user_agent", "varchar(1024)", "User agent at the time of the play."),
    ),
    primary_key=("songplay_id",),
    diststyle="KEY",
    distkey="song_id",
    sortkey=("start_time",),
    foreign_keys={"user_id": "users", "song_id": "songs", "artist_id": "artists", "start_time": "time"},
)

USERS = Table(
    name="users",
    description="Dimension: one row per user id seen in any event, attributes from the latest event.",
    layer=Layer.STAR,
    built_from=("staging_events",),
    update=ReplaceKeys(key=("user_id",)),
    columns=_cols(
        ("user_id", "varchar(64)", "User id (a string in the logs).", True),
        ("first_name", "varchar(256)", "First name on the user's latest event."),
        ("last_name", "varchar(256)", "Last name on the user's latest event."),
        ("gender", "varchar(8)", "Gender on the user's latest event."),
        Column("level", "varchar(16)", "Level (free/paid) on the user's latest event.", accepted_values=LEVELS),
    ),
    primary_key=("user_id",),
    diststyle="ALL",
    sortkey=("user_id",),
)

SONGS = Table(
    name="songs",
    description="Dimension: one row per song_id of song_data.",
    layer=Layer.STAR,
    built_from=("staging_songs",),
    columns=_cols(
        ("song_id", "varchar(32)", "Song identifier.", True),
        ("title", "varchar(512)", "Song title."),
        ("artist_id", "varchar(32)", "Artist identifier."),
        ("year", "integer", "Release year; null when song_data says 0 (unknown)."),
        ("duration", "double", "Duration, seconds."),
    ),
    primary_key=("song_id",),
    diststyle="KEY",
    distkey="song_id",
    sortkey=("song_id",),
)

ARTISTS = Table(
    name="artists",
    description="Dimension: one row per artist_id; attributes from its most-used name's first song.",
    layer=Layer.STAR,
    built_from=("staging_songs",),
    columns=_cols(
        ("artist_id", "varchar(32)", "Artist identifier.", True),
        ("name", "varchar(512)", "The name on most of the artist's songs (ties: smallest name)."),
        ("location", "varchar(512)", "Location on the chosen song record; null when empty."),
        ("latitude", "double", "Latitude on the chosen song record."),
        ("longitude", "double", "Longitude on the chosen song record."),
    ),
    primary_key=("artist_id",),
    diststyle="ALL",
    sortkey=("artist_id",),
)

TIME = Table(
    name="time",
    description="Dimension: one row per distinct songplays.start_time, broken into calendar units.",
    layer=Layer.STAR,
    built_from=("songplays",),
    update=Difference(of="songplays", key="start_time"),
    columns=_cols(
        ("start_time", "timestamp", "Play time, UTC, millisecond precision.", True),
        ("hour", "integer", "Hour of day, 0-23."),
        ("day", "integer", "Day of month."),
        ("week", "integer", "ISO 8601 week number."),
        ("month", "integer", "Month, 1-12."),
        ("year", "integer", "Year (calendar year, not ISO year)."),
        ("weekday", "integer", "Day of week, 0 = Sunday (Redshift's EXTRACT(dow))."),
    ),
    primary_key=("start_time",),
    diststyle="ALL",
    sortkey=("start_time",),
)

# Bookkeeping tables, shared by both engines.
LOAD_ERRORS = Table(
    name="load_errors",
    description="Rejected raw records, like Redshift's stl_load_errors: file, line, column, reason, raw text.",
    layer=Layer.BOOKKEEPING,
    columns=_cols(
        ("table_name", "varchar(128)", "Staging table the record was meant for."),
        ("source_file", "varchar(1024)", "Raw file, relative to the data root."),
        ("line_number", "bigint", "Line of the file where the record ends (1-based; Redshift's rule for JSON)."),
        ("column_name", "varchar(128)", "Column that failed, when known."),
        ("reason", "varchar(1024)", "Why the record was rejected."),
        ("raw_text", "varchar(65535)", "The record's text (cut at 1,024 characters)."),
        ("load_id", "varchar(64)", "The load (Dagster run id) that rejected it."),
        ("load_unit", "varchar(1024)",
         "The loaded_files entry that counts it: its own file, or the COPY manifest that listed the file."),
    ),
    diststyle="ALL",
)

LOADED_FILES = Table(
    name="loaded_files",
    description="The load manifest: one row per raw file in a staging table, its version and record counts.",
    layer=Layer.BOOKKEEPING,
    columns=_cols(
        ("table_name", "varchar(128)", "Staging table."),
        ("source_file", "varchar(1024)",
         "Raw file, relative to the data root; on Redshift's song load, the COPY manifest of all song files."),
        ("file_version", "varchar(256)", "The file's version when loaded: its S3 ETag, or mtime locally."),
        ("file_size", "bigint", "The file's size in bytes when loaded."),
        ("records_read", "bigint", "JSON records (or unparseable lines) read from the file."),
        ("records_staged", "bigint", "Records that became staging rows."),
        ("records_rejected", "bigint", "Records written to load_errors instead."),
        ("load_id", "varchar(64)", "The load (Dagster run id) that read it."),
    ),
    diststyle="ALL",
)

STAR_SOURCES = Table(
    name="star_sources",
    description="What each star table was last built from: its log files (version@load), a digest of the "
                "song files' manifest, its row count and the version of its SQL; the incremental star update "
                "compares it with loaded_files and the SQL files.",
    layer=Layer.STATE,
    columns=_cols(
        ("table_name", "varchar(128)", "Star table.", True),
        ("source_file", "varchar(1024)",
         "A log file it was built from, or a mark: #staging_songs (the song manifest), #rows (its row count), "
         "#sql (the version of its SQL and of the SQL of the tables it is built from).",
         True),
        ("file_version", "varchar(256)", "The file's version@load when built; the digest or count for a mark."),
    ),
    diststyle="ALL",
)


# --- analytics: small tables of the star schema, in their own schema, each with a chart -----------

ANALYTICS_SCHEMA = "analytics"
TOP_N = 10
PLATFORMS = ("Windows", "Mac", "Linux", "iPhone", "iPad", "Android", "Other")
WEEKDAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
HOURS = tuple(range(24))
# What every SQL template may read besides ref() and the dialect.
TEMPLATE_PARAMETERS = {"top_n": TOP_N, "platforms": PLATFORMS, "weekday_names": WEEKDAY_NAMES, "hours": HOURS,
                       "levels": LEVELS}

_RANK = Column("play_rank", "integer", f"Rank by plays, 1 = most played (ties broken by id); at most {TOP_N}.",
               True)
_PLAYS = Column("plays", "bigint", "Number of songplays.", True)
_LISTENERS = Column("listeners", "bigint", "Distinct users among those songplays.", True)
_SHARE = Column("share_pct", "double", "Percent of all songplays (0 when there are none).", True)


def _analytics(name: str, description: str, columns: tuple[Column, ...], key: str, built_from: tuple[str, ...],
               chart: Chart, order_by: tuple[str, ...] = (), every_key: tuple = (), max_rows: int | None = None,
               plays_add_up: bool = False) -> Table:
    # Small tables, rebuilt in full on every run (see benchmarks/README.md, "Incremental"): a full copy
    # on every Redshift node, sorted by their key.
    return Table(name=name, description=description, columns=columns, layer=Layer.ANALYTICS,
                 built_from=built_from, primary_key=(key,), diststyle="ALL", sortkey=(key,),
                 schema=ANALYTICS_SCHEMA, update=Rebuild(skip_unchanged=False), order_by=order_by, chart=chart,
                 every_key=every_key, max_rows=max_rows, plays_add_up=plays_add_up)


TOP_SONGS = _analytics(
    "top_songs",
    f"The {TOP_N} most played songs (songplays matched to a song only); ties: smallest song_id.",
    _cols(_RANK, ("song_id", "varchar(32)", "Song identifier.", True),
          ("title", "varchar(512)", "Song title."), ("artist_id", "varchar(32)", "Artist identifier."),
          ("artist_name", "varchar(512)", "The artist's name (from artists)."), _PLAYS, _LISTENERS),
    "play_rank", ("songplays", "songs", "artists"),
    Chart(f"Top {TOP_N} songs by plays", "{title} — {artist_name}", horizontal=True),
    max_rows=TOP_N,
)
TOP_ARTISTS = _analytics(
    "top_artists",
    f"The {TOP_N} most played artists (songplays matched to a song only); ties: smallest artist_id.",
    _cols(_RANK, ("artist_id", "varchar(32)", "Artist identifier.", True),
          ("name", "varchar(512)", "The artist's name (from artists)."), _PLAYS,
          ("songs_played", "bigint", "Distinct songs of the artist that were played.", True), _LISTENERS),
    "play_rank", ("songplays", "artists"),
    Chart(f"Top {TOP_N} artists by plays", "{name}", horizontal=True),
    max_rows=TOP_N,
)
PLAYS_BY_HOUR = _analytics(
    "plays_by_hour",
    "Songplays per hour of day (UTC): one row for every hour 0-23, 0 plays when none.",
    _cols(("hour", "integer", "Hour of day, 0-23, UTC.", True), _PLAYS, _LISTENERS),
    "hour", ("songplays", "time"),
    Chart("Plays by hour of day (UTC)", "{hour}"),
    every_key=HOURS, plays_add_up=True,
)
PLAYS_BY_WEEKDAY = _analytics(
    "plays_by_weekday",
    "Songplays per day of week (UTC), 0 = Sunday: all seven days, 0 plays when none.",
    _cols(("weekday", "integer", "Day of week, 0 = Sunday .. 6 = Saturday (as time.weekday).", True),
          ("day_name", "varchar(16)", "Sunday .. Saturday.", True), _PLAYS, _LISTENERS),
    "weekday", ("songplays", "time"),
    Chart("Plays by day of week (UTC)", "{day_name:.3}"),
    every_key=tuple(range(len(WEEKDAY_NAMES))), plays_add_up=True,
)
PLAYS_BY_LEVEL = _analytics(
    "plays_by_level",
    "Free vs paid: songplays by the user's level at the time of the play (both always present).",
    _cols(("level", "varchar(16)", "free or paid (unknown if a play had no level).", True),
          _PLAYS, _LISTENERS, _SHARE),
    "level", ("songplays",),
    Chart("Plays by subscription level", "{level}"),
    order_by=("-plays", "level"), every_key=LEVELS, plays_add_up=True,
)
MOST_ACTIVE_USERS = _analytics(
    "most_active_users",
    f"The {TOP_N} users with the most songplays, with their current name and level; ties: smallest user_id.",
    _cols(_RANK, ("user_id", "varchar(64)", "User id (a string, as in the logs).", True),
          ("first_name", "varchar(256)", "First name (from users)."),
          ("last_name", "varchar(256)", "Last name (from users)."),
          ("level", "varchar(16)", "Current level (from users)."), _PLAYS,
          ("sessions", "bigint", "Distinct sessions with a songplay.", True)),
    "play_rank", ("songplays", "users"),
    Chart(f"Top {TOP_N} users by plays", "{first_name} {last_name} ({user_id})", horizontal=True),
    max_rows=TOP_N,
)
PLAYS_BY_PLATFORM = _analytics(
    "plays_by_platform",
    "Songplays per client platform (Windows, Mac, Linux, iPhone, iPad, Android, Other), parsed "
    "from the user agent with LIKE patterns; every platform present, 0 plays when none.",
    _cols(("platform", "varchar(16)", "One of: " + ", ".join(PLATFORMS) + ".", True),
          _PLAYS, _LISTENERS, _SHARE),
    "platform", ("songplays",),
    Chart("Plays by platform (from the user agent)", "{platform}"),
    order_by=("-plays", "platform"), every_key=PLATFORMS, plays_add_up=True,
)


# --- the catalog ---------------------------------------------------------------------------------

CATALOG: tuple[Table, ...] = (
    STAGING_EVENTS, STAGING_SONGS, SONGPLAYS, USERS, SONGS, ARTISTS, TIME, LOAD_ERRORS, LOADED_FILES,
    STAR_SOURCES, TOP_SONGS, TOP_ARTISTS, PLAYS_BY_HOUR, PLAYS_BY_WEEKDAY, PLAYS_BY_LEVEL, MOST_ACTIVE_USERS,
    PLAYS_BY_PLATFORM,
)
TABLES = {t.name: t for t in CATALOG}


def tables_of(layer: Layer) -> tuple[Table, ...]:
    return tuple(t for t in CATALOG if t.layer is layer)


STAGING_TABLES = tables_of(Layer.STAGING)
STAR_TABLES = tables_of(Layer.STAR)
BOOKKEEPING_TABLES = tables_of(Layer.BOOKKEEPING)  # the load bookkeeping: if its shape changed, staging reloads
STATE_TABLES = tables_of(Layer.STATE)
ANALYTICS_TABLES = tables_of(Layer.ANALYTICS)
# The data of the warehouse's own schema and its load bookkeeping: equal in two warehouses loaded
# from the same raw files (the analytics tables have their own schema).
ALL_TABLES = STAGING_TABLES + STAR_TABLES + BOOKKEEPING_TABLES


def staging_sources(table: Table) -> tuple[Table, ...]:
    """The staging tables ``table`` is built from, directly or through other tables."""
    upstream = upstream_of(table)
    return tuple(t for t in STAGING_TABLES if t.name in upstream)


def upstream_of(table: Table) -> set[str]:
    """Every asset ``table`` is built from, directly or through other tables (raw assets included)."""
    found: set[str] = set()
    pending = list(table.built_from)
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending += TABLES[name].built_from if name in TABLES else ()
    return found
