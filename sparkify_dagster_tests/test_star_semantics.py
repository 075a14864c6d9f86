"""Each rule and quirk of the star-schema data contract, pinned by a small hand-written fixture.

Every rule has its own scenario: a few song objects and log records, written next to the test that
reads them. Materializing the graph costs about two seconds, so the scenarios are loaded together,
once per module, into one folder (``world``); they are built to be disjoint (own user ids, session
ids, timestamps, song ids, artist ids, titles and song files, enforced by ``_assert_disjoint``), so
each test still reads only its own rows and asserts them exactly. The world is materialized with a
local time zone of UTC+05:30, so any local-time conversion would show in start_time and time.
The reload test needs two loads of changing data and has its own folder. Every world test also runs
against the pure-Python oracle (reference_model.py), which must meet the same expectations.

Row layouts (column order):
    songplays: songplay_id, start_time, user_id, level, song_id, artist_id, session_id, location, user_agent
    users:     user_id, first_name, last_name, gender, level
    songs:     song_id, title, artist_id, year, duration
    artists:   artist_id, name, location, latitude, longitude
    time:      start_time, hour, day, week, month, year, weekday
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sparkify_dagster_tests import reference_model as ref
from sparkify_dagster_tests.conftest import materialize_all, table_rows, write_events, write_song

EPOCH = dt.datetime(1970, 1, 1)
T0 = 1541106106796  # 2018-11-01 21:01:46.796 UTC
HOUR = 3_600_000
LOCATION = "San Jose-Sunnyvale-Santa Clara, CA"
AGENT = '"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_4) AppleWebKit/537.36 (KHTML, like Gecko)"'
STAR = ("songplays", "users", "songs", "artists", "time")
LOCAL_TZ = "Asia/Kolkata"  # UTC+05:30


# ----------------------------------------------------------------------------- record builders
def ms(moment: dt.datetime) -> int:
    """A naive UTC datetime as epoch milliseconds."""
    return (moment - EPOCH) // dt.timedelta(milliseconds=1)


def at(ts: int) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=ts)


def sp_id(user_id: str, session_id: int, item: int) -> str:
    return hashlib.md5(f"{user_id}|{session_id}|{item}".encode()).hexdigest()


def event(user_id: str, session_id: int | None, item: int, ts: int | None, *, page: str = "NextSong",
          song: str | None = None, artist: str | None = None, length: float | None = None,
          level: str = "free", first: str | None = "Lily", last: str | None = "Koch",
          gender: str | None = "F", location: str | None = LOCATION, agent: str | None = AGENT) -> dict:
    """One log record with every key of the real logs (camelCase, as in log_data)."""
    logged_out = user_id == ""
    return {
        "artist": artist, "auth": "Logged Out" if logged_out else "Logged In",
        "firstName": None if logged_out else first, "gender": None if logged_out else gender,
        "itemInSession": item, "lastName": None if logged_out else last, "length": length,
        "level": level, "location": None if logged_out else location,
        "method": "PUT" if page in ("NextSong", "Login", "Logout", "Submit Upgrade") else "GET",
        "page": page, "registration": None if logged_out else 1540806641796.0, "sessionId": session_id,
        "song": song, "status": 200, "ts": ts, "userAgent": None if logged_out else agent,
        "userId": user_id,
    }


def play(user_id: str, session_id: int | None, item: int, ts: int | None, song: str, artist: str,
         length: float, **kw) -> dict:
    return event(user_id, session_id, item, ts, song=song, artist=artist, length=length, **kw)


def song(song_id: str, title: str, artist_id: str, artist_name: str, duration: float, *, year: int = 2001,
         location: str = "", latitude: float | None = None, longitude: float | None = None) -> dict:
    """One song object with every key of song_data."""
    return {
        "num_songs": 1, "artist_id": artist_id, "artist_latitude": latitude, "artist_longitude": longitude,
        "artist_location": location, "artist_name": artist_name, "song_id": song_id, "title": title,
        "duration": duration, "year": year,
    }


# ----------------------------------------------------------------------------- scenarios and the world
@dataclass
class Scenario:
    name: str
    songs: list = field(default_factory=list)  # song dicts, or (song dict, track id) to place the file
    logs: dict[str, list[dict]] = field(default_factory=dict)  # day (YYYY-MM-DD) -> records

    def song_files(self) -> list[tuple[dict, str]]:
        return [s if isinstance(s, tuple) else (s, "TR" + s["song_id"][2:]) for s in self.songs]

    def events(self) -> list[dict]:
        return [r for records in self.logs.values() for r in records]

    def timestamps(self) -> set[dt.datetime]:
        return {at(r["ts"]) for r in self.events() if r["ts"] is not None}


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, songs: list = (), logs: dict[str, list[dict]] | None = None) -> Scenario:
    assert name not in SCENARIOS
    SCENARIOS[name] = Scenario(name, list(songs), dict(logs or {}))
    return SCENARIOS[name]


def _assert_disjoint(scenarios: list[Scenario]) -> None:
    """No two scenarios share a user, session, timestamp, song, artist, song file or (title, artist name)."""
    owners: dict[tuple, set[str]] = defaultdict(set)
    for sc in scenarios:
        for record, track in sc.song_files():
            for key in (("song_id", record["song_id"]), ("artist_id", record["artist_id"]),
                        ("title", record["title"], record["artist_name"])):
                owners[key].add(sc.name)
        for r in sc.events():
            owners[("session", r["sessionId"])].add(sc.name)
            if r["userId"]:
                owners[("user", r["userId"])].add(sc.name)
            if r["ts"] is not None:
                owners[("ts", r["ts"])].add(sc.name)
            if r["song"] is not None:
                owners[("title", r["song"], r["artist"])].add(sc.name)
    shared = {key: names for key, names in owners.items() if len(names) > 1}
    assert not shared, f"scenarios overlap: {shared}"
    tracks = [track for sc in scenarios for _, track in sc.song_files()]
    assert len(tracks) == len(set(tracks)), "two song records would be written to the same file"


def write_raw(root: Path, scenarios: list[Scenario]) -> Path:
    """Write the scenarios' songs and logs under root/raw (one log file per day) and return that folder."""
    raw = root / "raw"
    (raw / "song_data").mkdir(parents=True, exist_ok=True)
    (raw / "log_data").mkdir(parents=True, exist_ok=True)
    days: dict[str, list[dict]] = defaultdict(list)
    for sc in scenarios:
        for record, track in sc.song_files():
            write_song(raw, record, track_id=track)
        for day, records in sc.logs.items():
            days[day] += records
    for day, records in days.items():
        write_events(raw, day, records)
    return raw


def load(root: Path, scenarios: list[Scenario], db_name: str = "wh.duckdb") -> dict[str, list[tuple]]:
    """Write the scenarios, materialize everything and return every star table's rows."""
    raw = write_raw(root, scenarios)
    db = root / db_name
    assert materialize_all(raw, db).success
    return {t: table_rows(db, t) for t in STAR}


@pytest.fixture(scope="module", params=["warehouse", "oracle"])
def world(request, tmp_path_factory) -> dict[str, list[tuple]]:
    """Every star table for all scenarios together: as materialized (``warehouse``), and as computed by
    the pure-Python reference model (``oracle``), so the hand-written expectations also pin the oracle
    that test_reference_model.py compares the warehouse with."""
    scenarios = list(SCENARIOS.values())
    _assert_disjoint(scenarios)
    root = tmp_path_factory.mktemp(f"world-{request.param}")
    if request.param == "oracle":
        return ref.expected_tables(write_raw(root, scenarios))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", LOCAL_TZ)
        time.tzset()
        try:
            return load(root, scenarios)
        finally:
            mp.undo()
            time.tzset()


def songplay(tables: dict, user_id: str, session_id: int | None, item: int) -> tuple:
    key = hashlib.md5(f"{user_id}|{'' if session_id is None else session_id}|{item}".encode()).hexdigest()
    rows = [r for r in tables["songplays"] if r[0] == key]
    assert len(rows) == 1, f"expected one songplay for {user_id}|{session_id}|{item}, got {rows}"
    return rows[0]


def matched(tables: dict, user_id: str, session_id: int | None, item: int) -> tuple:
    """(song_id, artist_id) of one songplay."""
    row = songplay(tables, user_id, session_id, item)
    return row[4], row[5]


def plays_of(tables: dict, *user_ids: str) -> list[tuple]:
    return sorted(r for r in tables["songplays"] if r[2] in user_ids)


def users_of(tables: dict, *user_ids: str) -> list[tuple]:
    return sorted(r for r in tables["users"] if r[0] in user_ids)


def rows_of(tables: dict, table: str, sc: Scenario) -> list[tuple]:
    """The rows of songs/artists/time that belong to a scenario (by song id, artist id, timestamp)."""
    if table == "time":
        keys = sc.timestamps()
    else:
        column = {"songs": "song_id", "artists": "artist_id"}[table]
        keys = {record[column] for record, _ in sc.song_files()}
    return sorted(r for r in tables[table] if r[0] in keys)


def test_scenarios_are_disjoint_and_the_world_holds_them_all(world):
    _assert_disjoint(list(SCENARIOS.values()))
    plays = sum(1 for sc in SCENARIOS.values() for r in sc.events() if r["page"] == "NextSong")
    assert 0 < len(world["songplays"]) < plays  # some plays are filtered or deduplicated, most are kept


# ----------------------------------------------------------------------------- song matching
CLOSEST = scenario(
    "closest",
    songs=[
        # The smallest song_id is out of range (0.013 away); the next ones are in range but farther.
        song("SOAAAAAAAAAAAAAAA1", "Blue Road", "ARBLUE000000000001", "The Blue Roads", 200.02),
        song("SOBBBBBBBBBBBBBBB2", "Blue Road", "ARBLUE000000000001", "The Blue Roads", 200.0),
        song("SOCCCCCCCCCCCCCCC3", "Blue Road", "ARBLUE000000000001", "The Blue Roads", 200.004),
        song("SODDDDDDDDDDDDDDD4", "Blue Road", "ARBLUE000000000001", "The Blue Roads", 200.008),
    ],
    logs={"2018-11-01": [play("10", 100, 0, T0 + 1 * HOUR, "Blue Road", "The Blue Roads", 200.007)]},
)


def test_closest_duration_wins_among_several_candidates(world):
    assert matched(world, "10", 100, 0) == ("SODDDDDDDDDDDDDDD4", "ARBLUE000000000001")


TIE = scenario(
    "tie",
    songs=[
        # 1/128 either side of the play's length: both distances are exactly 0.0078125 in binary.
        # The larger id has the first file by key, the smaller id the last: file order must not decide.
        (song("SOZZZZZZZZZZZZZZZ9", "Neon Wave", "ARNEON000000000001", "Neon Wave", 199.9921875),
         "TRAAAAA00000000009"),
        (song("SOMMMMMMMMMMMMMMM5", "Neon Wave", "ARNEON000000000001", "Neon Wave", 200.0078125),
         "TRZZZZZ00000000005"),
    ],
    logs={"2018-11-01": [play("11", 110, 0, T0 + 2 * HOUR, "Neon Wave", "Neon Wave", 200.0)]},
)


def test_equal_duration_distance_goes_to_the_smallest_song_id(world):
    assert abs(199.9921875 - 200.0) == abs(200.0078125 - 200.0) == 0.0078125
    assert matched(world, "11", 110, 0) == ("SOMMMMMMMMMMMMMMM5", "ARNEON000000000001")


TOLERANCE = scenario(
    "tolerance",
    songs=[song("SOEDGE000000000001", "Edge", "AREDGE000000000001", "Edgy", 200.0)],
    logs={"2018-11-01": [
        play("12", 120, 0, T0 + 3 * HOUR, "Edge", "Edgy", 200.01),
        play("12", 120, 1, T0 + 3 * HOUR + 1000, "Edge", "Edgy", 199.99),
        play("12", 120, 2, T0 + 3 * HOUR + 2000, "Edge", "Edgy", 200.0101),
        play("12", 120, 3, T0 + 3 * HOUR + 3000, "Edge", "Edgy", 199.9899),
    ]},
)


def test_duration_tolerance_is_0_01_inclusive(world):
    # In IEEE doubles: |200.0 - 200.01| = |200.0 - 199.99| = 0.0099999999999909 <= 0.01 (a match);
    # |200.0 - 200.0101| = |200.0 - 199.9899| = 0.0100999999999942 > 0.01 (no match).
    assert abs(200.0 - 200.01) <= 0.01 and abs(200.0 - 199.99) <= 0.01
    assert abs(200.0 - 200.0101) > 0.01 and abs(200.0 - 199.9899) > 0.01
    hit = ("SOEDGE000000000001", "AREDGE000000000001")
    assert matched(world, "12", 120, 0) == hit
    assert matched(world, "12", 120, 1) == hit
    assert matched(world, "12", 120, 2) == (None, None)
    assert matched(world, "12", 120, 3) == (None, None)


OTHER_ARTIST = scenario(
    "other artist",
    songs=[song("SOHOME000000000001", "Home", "ARHOME000000000001", "Artist One", 210.5)],
    logs={"2018-11-01": [play("13", 130, 0, T0 + 4 * HOUR, "Home", "Artist Three", 210.5)]},
)


def test_same_title_by_another_artist_does_not_match(world):
    assert matched(world, "13", 130, 0) == (None, None)


UNMATCHED = scenario(
    "unmatched",
    songs=[song("SOKNOWN00000000001", "Known Song", "ARKNOWN00000000001", "Known Band", 180.0)],
    logs={"2018-11-01": [play("14", 140, 0, T0 + 5 * HOUR, "Unknown Song", "Unknown Band", 180.0,
                              level="paid")]},
)


def test_unmatched_play_is_kept_with_null_song(world):
    assert plays_of(world, "14") == [
        (sp_id("14", 140, 0), at(T0 + 5 * HOUR), "14", "paid", None, None, 140, LOCATION, AGENT),
    ]


SHARED_TITLE = scenario(
    "shared title",
    songs=[
        song("SOSTAY000000000001", "Stay", "ARSTAYONE000000001", "Stay One", 210.5),
        song("SOSTAY000000000002", "Stay", "ARSTAYTWO000000002", "Stay Two", 210.5),
    ],
    logs={"2018-11-01": [
        play("15", 150, 0, T0 + 6 * HOUR, "Stay", "Stay Two", 210.5),
        play("15", 150, 1, T0 + 6 * HOUR + 1000, "Stay", "Stay One", 210.5),
    ]},
)


def test_titles_shared_across_artists_match_by_artist(world):
    assert matched(world, "15", 150, 0) == ("SOSTAY000000000002", "ARSTAYTWO000000002")
    assert matched(world, "15", 150, 1) == ("SOSTAY000000000001", "ARSTAYONE000000001")


DUPLICATED_SONG = scenario(
    "song duplicated with another artist",
    songs=[
        # SOTWIN is in two files; songs keeps the record that sorts first by content (artist ARFIRST,
        # in the last file). The other copy carries another artist_id and is the closer duration.
        (song("SOTWIN000000000001", "Twin", "ARSECOND0000000002", "Twins", 200.005), "TRAAAAB00000000001"),
        (song("SOTWIN000000000001", "Twin", "ARFIRST00000000001", "Twins", 200.0), "TRZZZZY00000000001"),
    ],
    logs={"2018-11-01": [play("16", 160, 0, T0 + 7 * HOUR, "Twin", "Twins", 200.005)]},
)


def test_play_of_a_song_duplicated_across_files_takes_the_songs_dimension_artist(world):
    """The play's (song_id, artist_id) must describe the same song as the songs dimension."""
    assert rows_of(world, "songs", DUPLICATED_SONG) == [
        ("SOTWIN000000000001", "Twin", "ARFIRST00000000001", 2001, 200.0),
    ]
    assert matched(world, "16", 160, 0) == ("SOTWIN000000000001", "ARFIRST00000000001")


NO_SESSION = scenario(
    "no session id",
    songs=[song("SONOSESSION0000001", "Lost Star", "ARNOSESSION0000001", "Nobody", 150.0)],
    logs={"2018-11-01": [play("17", None, 0, T0 + 8 * HOUR, "Lost Star", "Nobody", 150.0)]},
)


def test_play_without_session_id_still_matches_its_song(world):
    # The key (user, session, item) may lack a session (songplay_id then hashes it as ''); which song
    # was played does not depend on it.
    assert plays_of(world, "17") == [
        (hashlib.md5(b"17||0").hexdigest(), at(T0 + 8 * HOUR), "17", "free",
         "SONOSESSION0000001", "ARNOSESSION0000001", None, LOCATION, AGENT),
    ]


# ----------------------------------------------------------------------------- which events count
LOGGED_OUT = scenario(
    "logged out",
    logs={"2018-11-01": [
        event("", 200, 0, T0 + 9 * HOUR, page="Home"),
        event("", 200, 1, T0 + 9 * HOUR + 1000, song="Ghost", artist="Nobody Else", length=100.0),  # NextSong
        event("", 200, 2, T0 + 9 * HOUR + 2000, page="Login"),
        play("20", 200, 3, T0 + 9 * HOUR + 3000, "Ghost", "Nobody Else", 100.0, first="Kate", last="Harrell"),
    ]},
)


def test_logged_out_events_make_no_songplay_and_no_user(world):
    assert [r for r in world["songplays"] if r[2] in ("", None)] == []
    assert [r for r in world["users"] if r[0] in ("", None)] == []
    assert [r[0] for r in plays_of(world, "20")] == [sp_id("20", 200, 3)]
    assert users_of(world, "20") == [("20", "Kate", "Harrell", "F", "free")]


OTHER_PAGES = scenario(
    "other pages",
    logs={"2018-11-01": [
        event("30", 300, 0, T0 + 10 * HOUR, page="Home", first="Aiden", last="Moore", gender="M", level="paid"),
        event("30", 300, 1, T0 + 10 * HOUR + 5000, page="Settings", first="Aiden", last="Moore", gender="M",
              level="paid"),
        event("31", 310, 0, T0 + 10 * HOUR + 6000, page="Home", first="Mia", last="Fox"),
        play("31", 310, 1, T0 + 10 * HOUR + 7000, "Some Song", "Some Band", 99.0, first="Mia", last="Fox"),
    ]},
)


def test_other_pages_make_no_songplay_but_make_a_user(world):
    assert [r[0] for r in plays_of(world, "30", "31")] == [sp_id("31", 310, 1)]
    assert users_of(world, "30", "31") == [("30", "Aiden", "Moore", "M", "paid"), ("31", "Mia", "Fox", "F", "free")]


NO_TS = scenario(
    "no ts",
    logs={"2018-11-01": [
        play("40", 400, 0, None, "Timeless", "Some Band", 99.0),
        play("40", 400, 1, T0 + 11 * HOUR, "Timeless", "Some Band", 99.0),
    ]},
)


def test_play_without_ts_makes_no_songplay(world):
    assert [r[0] for r in plays_of(world, "40")] == [sp_id("40", 400, 1)]
    # 2018-11-02 08:01:46.796 UTC, a Friday.
    assert rows_of(world, "time", NO_TS) == [(at(T0 + 11 * HOUR), 8, 2, 44, 11, 2018, 5)]


# ----------------------------------------------------------------------------- users
UPGRADE = scenario(
    "upgrade",
    logs={"2018-11-01": [
        # Written out of time order: the file order must not decide.
        play("50", 501, 0, T0 + 12 * HOUR + 600_000, "After", "Band", 100.0, level="paid"),  # latest, item 0
        event("50", 500, 3, T0 + 12 * HOUR + 3000, page="Submit Upgrade", level="free"),
        event("50", 500, 0, T0 + 12 * HOUR, page="Home", level="free"),
        play("50", 500, 1, T0 + 12 * HOUR + 1000, "Before", "Band", 100.0, level="free"),
        event("50", 500, 2, T0 + 12 * HOUR + 2000, page="Upgrade", level="free"),
        event("50", 500, 4, T0 + 12 * HOUR + 4000, page="Home", level="paid"),
        event("50", 500, 50, T0 + 12 * HOUR + 5000, page="Settings", level="free"),  # highest item, earlier
    ]},
)


def test_user_level_comes_from_the_latest_event_after_an_upgrade(world):
    assert users_of(world, "50") == [("50", "Lily", "Koch", "F", "paid")]
    # Each play keeps the level it was played at.
    assert songplay(world, "50", 500, 1)[3] == "free"
    assert songplay(world, "50", 501, 0)[3] == "paid"


TS_TIE = scenario(
    "ts tie",
    logs={"2018-11-01": [
        event("60", 600, 0, T0 + 13 * HOUR, page="Home", level="free", last="Old"),
        # Same ts: item 6 is the latest event, although it comes first in the file.
        event("60", 600, 6, T0 + 13 * HOUR + 9000, page="Home", level="paid", last="New"),
        event("60", 600, 5, T0 + 13 * HOUR + 9000, page="Submit Upgrade", level="free", last="Mid"),
    ]},
)


def test_user_latest_event_tie_on_ts_goes_to_the_highest_item(world):
    assert users_of(world, "60") == [("60", "Lily", "New", "F", "paid")]


NULL_TS = scenario(
    "null ts",
    logs={"2018-11-01": [
        # A null ts ranks below any ts, whatever its item.
        event("61", 610, 1, T0 + 13 * HOUR + 30_000, page="Home", level="paid", last="Timed"),
        event("61", 610, 99, None, page="Home", level="free", last="Untimed"),
        # Every event of the user without a ts: they all tie on ts, the highest item wins.
        event("62", 620, 3, None, page="Home", level="free", last="Three"),
        event("62", 620, 7, None, page="Home", level="paid", last="Seven"),
    ]},
)


def test_user_latest_event_ignores_null_ts_unless_every_event_has_one(world):
    assert users_of(world, "61") == [("61", "Lily", "Timed", "F", "paid")]
    assert users_of(world, "62") == [("62", "Lily", "Seven", "F", "paid")]


# ----------------------------------------------------------------------------- songplays identity
EQUAL_TS = scenario(
    "equal ts",
    logs={"2018-11-01": [
        play("70", 700, 0, T0 + 14 * HOUR, "Same Time A", "Band A", 100.0),
        play("71", 701, 0, T0 + 14 * HOUR, "Same Time B", "Band B", 100.0),
        play("70", 702, 3, T0 + 14 * HOUR, "Same Time C", "Band C", 100.0),
    ]},
)


def test_equal_timestamps_give_separate_songplays_and_one_time_row(world):
    plays = plays_of(world, "70", "71")
    assert sorted(r[0] for r in plays) == sorted([sp_id("70", 700, 0), sp_id("71", 701, 0), sp_id("70", 702, 3)])
    assert {r[1] for r in plays} == {at(T0 + 14 * HOUR)}
    assert [r for r in world["time"] if r[0] == at(T0 + 14 * HOUR)] == [
        (at(T0 + 14 * HOUR), 11, 2, 44, 11, 2018, 5),
    ]


DUPLICATED_EVENT = scenario(
    "duplicated event",
    songs=[song("SODUPE000000000001", "Copy Song", "ARDUPE000000000001", "Copycat", 120.0)],
    logs={
        # The later-ts copy of item 2 sits in the earlier file; its level and location differ.
        "2018-11-01": [
            play("80", 800, 2, T0 + 15 * HOUR + 1000, "Copy Song", "Copycat", 120.0, level="paid",
                 location="Later, NY"),
            play("80", 800, 3, T0 + 15 * HOUR + 2000, "Copy Song", "Copycat", 120.0),
        ],
        "2018-11-02": [
            play("80", 800, 2, T0 + 15 * HOUR, "Copy Song", "Copycat", 120.0, level="free", location="Earlier, CA"),
            play("80", 800, 3, T0 + 15 * HOUR + 2000, "Copy Song", "Copycat", 120.0),  # an exact copy
        ],
    },
)


def test_event_duplicated_in_two_files_gives_one_songplay_from_the_latest_copy(world):
    hit = ("SODUPE000000000001", "ARDUPE000000000001")
    assert plays_of(world, "80") == sorted([
        (sp_id("80", 800, 2), at(T0 + 15 * HOUR + 1000), "80", "paid", *hit, 800, "Later, NY", AGENT),
        (sp_id("80", 800, 3), at(T0 + 15 * HOUR + 2000), "80", "free", *hit, 800, LOCATION, AGENT),
    ])
    # The losing copy's start time is no play time.
    assert [r[0] for r in rows_of(world, "time", DUPLICATED_EVENT)] == [at(T0 + 15 * HOUR + 1000),
                                                                       at(T0 + 15 * HOUR + 2000)]


def test_songplay_id_is_the_md5_of_the_event_key_and_survives_a_reload(tmp_path):
    first = Scenario("first", logs={"2018-11-01": [play("42", 7, 3, T0, "Song", "Band", 100.0)]})
    tables = load(tmp_path, [first])
    expected_id = hashlib.md5(b"42|7|3").hexdigest()
    assert len(expected_id) == 32 and expected_id == expected_id.lower()
    assert [r[0] for r in tables["songplays"]] == [expected_id]
    # A later load with more data (in an earlier file, so every row position moves) keeps the id.
    more = Scenario("more", logs={"2018-10-31": [play("41", 6, 0, T0 - 86_400_000, "Song", "Band", 100.0)]})
    reloaded = load(tmp_path, [first, more])
    assert sorted(r[0] for r in reloaded["songplays"]) == sorted([expected_id, sp_id("41", 6, 0)])
    assert songplay(reloaded, "42", 7, 3) == songplay(tables, "42", 7, 3)


MILLISECONDS = scenario(
    "milliseconds",
    logs={"2018-11-01": [play("90", 900, 0, 1541106106796, "Precise", "Timer", 100.0)]},
)


def test_start_time_keeps_milliseconds(world):
    (row,) = plays_of(world, "90")
    assert row[1] == dt.datetime(2018, 11, 1, 21, 1, 46, 796000)
    assert row[1].tzinfo is None
    assert rows_of(world, "time", MILLISECONDS) == [(row[1], 21, 1, 44, 11, 2018, 4)]


# ----------------------------------------------------------------------------- time
MOMENTS = [
    dt.datetime(2018, 12, 31, 20, 0, 0, 123000),  # Monday: ISO week 1 (of 2019), calendar year 2018
    dt.datetime(2021, 1, 1, 0, 0, 0, 1000),  # Friday: ISO week 53 (of 2020), calendar year 2021
    dt.datetime(2018, 11, 4, 23, 59, 59, 999000),  # Sunday -> weekday 0
    dt.datetime(2018, 11, 3, 0, 30),  # Saturday -> weekday 6
]
CALENDAR = scenario(
    "calendar",
    logs={"2018-11-01": [play("95", 950, i, ms(m), "Calendar", "Clock", 100.0) for i, m in enumerate(MOMENTS)]},
)


def test_time_calendar_units_iso_week_weekday_and_utc_hour(world):
    # Materialized with a local zone of UTC+05:30: every unit must still be the UTC one.
    assert rows_of(world, "time", CALENDAR) == [
        (dt.datetime(2018, 11, 3, 0, 30), 0, 3, 44, 11, 2018, 6),
        (dt.datetime(2018, 11, 4, 23, 59, 59, 999000), 23, 4, 44, 11, 2018, 0),
        (dt.datetime(2018, 12, 31, 20, 0, 0, 123000), 20, 31, 1, 12, 2018, 1),
        (dt.datetime(2021, 1, 1, 0, 0, 0, 1000), 0, 1, 53, 1, 2021, 5),
    ]
    assert sorted(r[1] for r in plays_of(world, "95")) == sorted(MOMENTS)


# ----------------------------------------------------------------------------- songs and artists
SONGS = scenario(
    "songs",
    songs=[
        song("SOYEAR000000000001", "Unknown Year", "ARYEAR000000000001", "Yearless", 150.5, year=0),
        song("SOYEAR000000000002", "Known Year", "ARYEAR000000000001", "Yearless", 160.25, year=1999),
        # SODUP twice: the record whose content sorts first ("Alpha") wins, although its file
        # (song_data/Z/Z/Z/...) sorts last: the file never decides (a Redshift COPY does not know it).
        (song("SODUP0000000000001", "Zulu", "ARDUP0000000000001", "Dupes", 300.0, year=0), "TRAAAAA00000000001"),
        (song("SODUP0000000000001", "Alpha", "ARDUP0000000000001", "Dupes", 301.0, year=0),
         "TRZZZZZ00000000001"),
    ],
)


def test_songs_year_zero_is_null_and_a_duplicated_song_id_keeps_the_first_record_by_content(world):
    assert rows_of(world, "songs", SONGS) == [
        ("SODUP0000000000001", "Alpha", "ARDUP0000000000001", None, 301.0),
        ("SOYEAR000000000001", "Unknown Year", "ARYEAR000000000001", None, 150.5),
        ("SOYEAR000000000002", "Known Year", "ARYEAR000000000001", 1999, 160.25),
    ]


MULTI_NAME = scenario(
    "multi name",
    songs=[
        # ARMULTI: "Band B" on two songs beats "Band A" on one (which has the smallest song_id).
        song("SOMULTI00000000001", "One", "ARMULTI00000000001", "Band A", 100.0, location="A-Town",
             latitude=1.0, longitude=1.0),
        song("SOMULTI00000000003", "Three", "ARMULTI00000000001", "Band B", 100.0, location="",
             latitude=None, longitude=None),
        song("SOMULTI00000000002", "Two", "ARMULTI00000000001", "Band B", 100.0, location="B-City",
             latitude=2.5, longitude=-3.5),
        # ARTIE: one song each: the smallest name wins, with that song's attributes.
        song("SOTIE0000000000001", "X", "ARTIE0000000000001", "Zed", 100.0, location="Zed-Ville",
             latitude=9.0, longitude=9.0),
        song("SOTIE0000000000002", "Y", "ARTIE0000000000001", "Abe", 100.0, location="Abe-Ville",
             latitude=4.0, longitude=5.0),
    ],
)


def test_artist_with_several_names_takes_the_most_used_name_and_its_record(world):
    assert rows_of(world, "artists", MULTI_NAME) == [
        ("ARMULTI00000000001", "Band B", "B-City", 2.5, -3.5),
        ("ARTIE0000000000001", "Abe", "Abe-Ville", 4.0, 5.0),
    ]


_ZED = song("SOZED0000000000001", "Zed Song", "ARCOUNT00000000001", "Zed", 100.0, location="Zed-Ville")
NAME_COUNT = scenario(
    "name count",
    songs=[
        # SOZED sits in two files (the same song object twice). It is one song: "Zed" and "Abe" are each
        # used on one of ARCOUNT's songs, so the tie goes to the smallest name.
        (_ZED, "TRAAAAC00000000001"),
        (_ZED, "TRZZZZX00000000001"),
        song("SOABE0000000000001", "Abe Song", "ARCOUNT00000000001", "Abe", 100.0, location="Abe-Ville"),
    ],
)


def test_artist_name_count_is_per_song_not_per_song_file(world):
    assert len(rows_of(world, "songs", NAME_COUNT)) == 2
    assert rows_of(world, "artists", NAME_COUNT) == [("ARCOUNT00000000001", "Abe", "Abe-Ville", None, None)]


LOCATIONS = scenario(
    "locations",
    songs=[
        song("SOLOC0000000000001", "S1", "ARLOC0000000000001", "Empty Place", 100.0, location=""),
        song("SOLOC0000000000002", "S2", "ARLOC0000000000002", "Blank Place", 100.0, location="   "),
        song("SOLOC0000000000003", "S3", "ARLOC0000000000003", "Somewhere", 100.0, location="Nashville, TN.",
             latitude=36.16778, longitude=-86.77836),
        song("SOLOC0000000000004", "S4", "ARLOC0000000000004", "Nowhere", 100.0, location="Paris"),
    ],
)


def test_artist_blank_location_is_null_and_unknown_coordinates_stay_null(world):
    assert rows_of(world, "artists", LOCATIONS) == [
        ("ARLOC0000000000001", "Empty Place", None, None, None),
        ("ARLOC0000000000002", "Blank Place", None, None, None),
        ("ARLOC0000000000003", "Somewhere", "Nashville, TN.", 36.16778, -86.77836),
        ("ARLOC0000000000004", "Nowhere", "Paris", None, None),
    ]
