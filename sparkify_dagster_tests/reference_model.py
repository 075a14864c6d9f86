"""An independent oracle for the star schema, in plain Python (no DuckDB, no SQL).

``expected_tables(root)`` reads a raw folder laid out like the Sparkify bucket
(``song_data/**/*.json``: song objects; ``log_data/**/*.json``: JSON lines) and returns what the
data contract (/work/shared/DESIGN.md and the brief) says each star table must hold, as a list of
tuples in the table's column order, sorted by primary key:

- songplays: one row per NextSong event with a non-empty userId and a ts. songplay_id =
  md5("user|session|item"). Several copies of one (user, session, item) event: the latest ts wins.
  The song: same title and artist name, ``abs(duration - length) <= 0.01`` on IEEE doubles (the
  same arithmetic as SQL); among several, the closest duration, then the smallest song_id.
- users: one row per non-empty userId of any event; attributes from the latest event (max ts,
  then max itemInSession).
- songs: one row per song_id; the record that sorts first by content wins (title, artist_id,
  artist_name, duration, year, location, latitude, longitude, num_songs); year 0 -> None.
- artists: one row per artist_id; every attribute from one song record chosen by the name used on
  most of the artist's songs, then the smallest name, then the smallest song_id. Blank location -> None.
- time: one row per distinct songplays.start_time; ISO week; weekday 0 = Sunday.

Modelling choice where the contract is silent about duplicated song_ids: "the songs" are the
deduplicated song records (one per song_id, first by content). Matching plays and counting an
artist's names both use those records, so a second copy of a song neither counts twice nor lends
its artist_id to a play. On data without duplicated song_ids this is the plain reading.

The data is assumed valid (every record parses; numbers are numbers, ids are strings).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

EPOCH = dt.datetime(1970, 1, 1)
MATCH_TOLERANCE = 0.01

SONGPLAYS_COLUMNS = ("songplay_id", "start_time", "user_id", "level", "song_id", "artist_id",
                     "session_id", "location", "user_agent")
USERS_COLUMNS = ("user_id", "first_name", "last_name", "gender", "level")
SONGS_COLUMNS = ("song_id", "title", "artist_id", "year", "duration")
ARTISTS_COLUMNS = ("artist_id", "name", "location", "latitude", "longitude")
TIME_COLUMNS = ("start_time", "hour", "day", "week", "month", "year", "weekday")

STAR_COLUMNS = {
    "songplays": SONGPLAYS_COLUMNS,
    "users": USERS_COLUMNS,
    "songs": SONGS_COLUMNS,
    "artists": ARTISTS_COLUMNS,
    "time": TIME_COLUMNS,
}


# ----------------------------------------------------------------------------- reading
def _files(root: Path, prefix: str) -> list[tuple[str, Path]]:
    """(key relative to root, path) of every *.json file under root/prefix, sorted by key."""
    base = root / prefix
    if not base.is_dir():
        return []
    found = [(p.relative_to(root).as_posix(), p) for p in base.rglob("*.json") if p.is_file()]
    return sorted(found)


def _json_values(text: str) -> Iterable[Any]:
    """Every JSON value of a text: one per line, or several back to back, or one over many lines."""
    decoder = json.JSONDecoder()
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos >= end:
            return
        value, pos = decoder.raw_decode(text, pos)
        yield value


def _text(value: Any) -> str | None:
    """A varchar value as COPY loads it: strings as is, numbers as their text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def read_events(root: Path) -> list[dict]:
    """Every event record, with the columns the star tables use and its source file."""
    events = []
    for key, path in _files(Path(root), "log_data"):
        text = path.read_bytes().decode("utf-8-sig")
        for rec in _json_values(text):
            events.append({
                "artist": _text(rec.get("artist")),
                "first_name": _text(rec.get("firstName")),
                "gender": _text(rec.get("gender")),
                "item_in_session": _int(rec.get("itemInSession")),
                "last_name": _text(rec.get("lastName")),
                "length": _float(rec.get("length")),
                "level": _text(rec.get("level")),
                "location": _text(rec.get("location")),
                "page": _text(rec.get("page")),
                "session_id": _int(rec.get("sessionId")),
                "song": _text(rec.get("song")),
                "ts": _int(rec.get("ts")),
                "user_agent": _text(rec.get("userAgent")),
                "user_id": _text(rec.get("userId")),
                "source_file": key,
            })
    return events


def read_songs(root: Path) -> list[dict]:
    """Every song record, with its source file."""
    songs = []
    for key, path in _files(Path(root), "song_data"):
        text = path.read_bytes().decode("utf-8-sig")
        for rec in _json_values(text):
            songs.append({
                "artist_id": _text(rec.get("artist_id")),
                "artist_latitude": _float(rec.get("artist_latitude")),
                "artist_longitude": _float(rec.get("artist_longitude")),
                "artist_location": _text(rec.get("artist_location")),
                "artist_name": _text(rec.get("artist_name")),
                "song_id": _text(rec.get("song_id")),
                "title": _text(rec.get("title")),
                "duration": _float(rec.get("duration")),
                "year": _int(rec.get("year")),
                "source_file": key,
            })
    return songs


# ----------------------------------------------------------------------------- ordering helpers
def _compare(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


def _first(rows: Iterable[dict], order: list[tuple[Callable[[dict], Any], bool]]) -> dict:
    """The first row under ``order`` = [(key, descending)], NULLs last in either direction."""

    def cmp(x: dict, y: dict) -> int:
        for key, descending in order:
            vx, vy = key(x), key(y)
            if vx is None or vy is None:
                if vx is None and vy is None:
                    continue
                return 1 if vx is None else -1
            c = _compare(vx, vy)
            if c:
                return -c if descending else c
        return 0

    return min(rows, key=functools.cmp_to_key(cmp))


def _field(name: str) -> Callable[[dict], Any]:
    return lambda row: row.get(name)


def _by_pk(rows: Iterable[tuple]) -> list[tuple]:
    return sorted(rows, key=lambda r: r[0])


# ----------------------------------------------------------------------------- star tables
def to_timestamp(ts_ms: int) -> dt.datetime:
    """Epoch milliseconds -> naive UTC datetime, milliseconds kept."""
    return EPOCH + dt.timedelta(milliseconds=ts_ms)


def songplay_id(user_id: str, session_id: int | None, item_in_session: int | None) -> str:
    parts = [user_id, "" if session_id is None else str(session_id),
             "" if item_in_session is None else str(item_in_session)]
    return hashlib.md5("|".join(parts).encode("utf-8")).hexdigest()


def distinct_songs(songs: list[dict]) -> list[dict]:
    """One record per song_id: the record that sorts first by its content (never by its file)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for s in songs:
        if s["song_id"] is not None:
            groups[s["song_id"]].append(s)
    order = [(_field(name), False) for name in (
        "title", "artist_id", "artist_name", "duration", "year", "artist_location", "artist_latitude",
        "artist_longitude", "num_songs")]
    return [_first(group, order) for group in groups.values()]


def match_song(event: dict, catalog: dict[tuple[str, str], list[dict]]) -> dict | None:
    """The song a play refers to: same title and artist name, duration within 0.01 s; closest, then smallest id."""
    length = event["length"]
    if event["song"] is None or event["artist"] is None or length is None:
        return None
    candidates = [
        s for s in catalog.get((event["song"], event["artist"]), [])
        if s["duration"] is not None and abs(s["duration"] - length) <= MATCH_TOLERANCE
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda s: (abs(s["duration"] - length), s["song_id"]))


def songplays_rows(events: list[dict], songs: list[dict]) -> list[tuple]:
    plays: dict[tuple, list[dict]] = defaultdict(list)
    for e in events:
        if e["page"] == "NextSong" and e["user_id"] not in (None, "") and e["ts"] is not None:
            plays[(e["user_id"], e["session_id"], e["item_in_session"])].append(e)
    catalog: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for s in distinct_songs(songs):
        catalog[(s["title"], s["artist_name"])].append(s)
    latest = [(_field("ts"), True), (_field("source_file"), True)] + [
        (_field(name), False) for name in ("level", "song", "artist", "length", "location", "user_agent")
    ]
    rows = []
    for (user_id, session_id, item), copies in plays.items():
        e = _first(copies, latest)
        song = match_song(e, catalog)
        rows.append((
            songplay_id(user_id, session_id, item),
            to_timestamp(e["ts"]),
            user_id,
            e["level"],
            song["song_id"] if song else None,
            song["artist_id"] if song else None,
            session_id,
            e["location"],
            e["user_agent"],
        ))
    return _by_pk(rows)


def users_rows(events: list[dict]) -> list[tuple]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        if e["user_id"] not in (None, ""):
            groups[e["user_id"]].append(e)
    latest = [(_field("ts"), True), (_field("item_in_session"), True), (_field("session_id"), True),
              (_field("source_file"), True)] + [
        (_field(name), False) for name in ("level", "first_name", "last_name", "gender")
    ]
    rows = []
    for user_id, group in groups.items():
        e = _first(group, latest)
        rows.append((user_id, e["first_name"], e["last_name"], e["gender"], e["level"]))
    return _by_pk(rows)


def songs_rows(songs: list[dict]) -> list[tuple]:
    return _by_pk(
        (s["song_id"], s["title"], s["artist_id"], None if s["year"] == 0 else s["year"], s["duration"])
        for s in distinct_songs(songs)
    )


def artists_rows(songs: list[dict]) -> list[tuple]:
    by_artist: dict[str, list[dict]] = defaultdict(list)
    for s in distinct_songs(songs):
        if s["artist_id"] is not None:
            by_artist[s["artist_id"]].append(s)
    rows = []
    for artist_id, records in by_artist.items():
        name_count: dict[str | None, int] = defaultdict(int)
        for s in records:
            name_count[s["artist_name"]] += 1
        chosen = _first(records, [
            (lambda s: name_count[s["artist_name"]], True),
            (_field("artist_name"), False),
            (_field("song_id"), False),
        ])
        location = chosen["artist_location"]
        if location is not None and location.strip() == "":
            location = None
        rows.append((artist_id, chosen["artist_name"], location,
                     chosen["artist_latitude"], chosen["artist_longitude"]))
    return _by_pk(rows)


def time_row(start: dt.datetime) -> tuple:
    return (start, start.hour, start.day, start.isocalendar()[1], start.month, start.year,
            start.isoweekday() % 7)


def time_rows(songplays: list[tuple]) -> list[tuple]:
    return sorted(time_row(start) for start in {row[1] for row in songplays})


def expected_tables(root: Path) -> dict[str, list[tuple]]:
    """The expected rows of every star table for the raw folder ``root``."""
    events, songs = read_events(Path(root)), read_songs(Path(root))
    songplays = songplays_rows(events, songs)
    return {
        "songplays": songplays,
        "users": users_rows(events),
        "songs": songs_rows(songs),
        "artists": artists_rows(songs),
        "time": time_rows(songplays),
    }
