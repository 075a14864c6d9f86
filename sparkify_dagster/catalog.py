"""Every warehouse table once: columns, types, keys, descriptions and Redshift physical design.

Types are logical (``varchar(n)``, ``integer``, ``bigint``, ``double``, ``timestamp``); each
engine's dialect renders them (see ``warehouse/base.py``). ``varchar(n)`` counts bytes, as on
Redshift, and the embedded loader rejects longer values instead of truncating them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    not_null: bool = False

    @property
    def max_bytes(self) -> int | None:
        """The byte limit of a varchar column, else None."""
        if self.type.startswith("varchar("):
            return int(self.type[len("varchar(") : -1])
        return None


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    # Redshift physical design (rendered only for Redshift).
    diststyle: str = "AUTO"
    distkey: str | None = None
    sortkey: tuple[str, ...] = ()
    foreign_keys: dict[str, str] = field(default_factory=dict)
    schema: str | None = None  # None: the warehouse's default schema

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


def _cols(*specs: tuple) -> tuple[Column, ...]:
    return tuple(Column(*spec) for spec in specs)


# Staging columns follow log_json_path.json position by position (COPY maps JSONPaths by position).
STAGING_EVENTS = Table(
    name="staging_events",
    description="One row per JSON record of the daily event logs, as loaded (COPY semantics).",
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
    columns=_cols(
        ("songplay_id", "varchar(32)", "md5 of user_id|session_id|item_in_session: stable across reloads.", True),
        ("start_time", "timestamp", "Play time, UTC, millisecond precision.", True),
        ("user_id", "varchar(64)", "User who played the song.", True),
        ("level", "varchar(16)", "User's level at the time of the play."),
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
    columns=_cols(
        ("user_id", "varchar(64)", "User id (a string in the logs).", True),
        ("first_name", "varchar(256)", "First name on the user's latest event."),
        ("last_name", "varchar(256)", "Last name on the user's latest event."),
        ("gender", "varchar(8)", "Gender on the user's latest event."),
        ("level", "varchar(16)", "Level (free/paid) on the user's latest event."),
    ),
    primary_key=("user_id",),
    diststyle="ALL",
    sortkey=("user_id",),
)

SONGS = Table(
    name="songs",
    description="Dimension: one row per song_id of song_data.",
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

STAGING_TABLES = (STAGING_EVENTS, STAGING_SONGS)
STAR_TABLES = (SONGPLAYS, USERS, SONGS, ARTISTS, TIME)
BOOKKEEPING_TABLES = (LOAD_ERRORS, LOADED_FILES)
ALL_TABLES = STAGING_TABLES + STAR_TABLES + BOOKKEEPING_TABLES
TABLES = {t.name: t for t in ALL_TABLES}
