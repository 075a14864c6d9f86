"""Tests for the synthetic dataset generator (`sparkify-generate`, sparkify_dagster.cli.generate).

Every quirk is checked on several small datasets, including ones at the documented
minimum size (20 songs, 5 users, 2 days) with different seeds.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sparkify_dagster.cli import generate as gen
from sparkify_dagster.cli.generate import PRESETS, GeneratedStats, generate_dataset, main

REAL_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "udacity-sample"

SONG_KEYS = [
    "num_songs", "artist_id", "artist_latitude", "artist_longitude", "artist_location",
    "artist_name", "song_id", "title", "duration", "year",
]
EVENT_KEYS = [
    "artist", "auth", "firstName", "gender", "itemInSession", "lastName", "length", "level",
    "location", "method", "page", "registration", "sessionId", "song", "status", "ts",
    "userAgent", "userId",
]
PAGE_META = {
    "NextSong": ("PUT", 200), "Home": ("GET", 200), "Login": ("PUT", 307),
    "Logout": ("PUT", 307), "Settings": ("GET", 200), "Save Settings": ("PUT", 307),
    "About": ("GET", 200), "Help": ("GET", 200), "Error": ("GET", 404),
    "Upgrade": ("GET", 200), "Downgrade": ("GET", 200),
    "Submit Upgrade": ("PUT", 307), "Submit Downgrade": ("PUT", 307),
}
EXPECTED_JSONPATHS = "{\n    \"jsonpaths\": [\n" + ",\n".join(
    f"        \"$['{key}']\"" for key in EVENT_KEYS
) + "\n    ]\n}"

# name -> generate_dataset keyword arguments; "min-*" sit exactly at the documented minimum size.
DATASETS = {
    "min-seed0": dict(songs=20, users=5, days=2, events_per_day=40, seed=0),
    "min-seed1": dict(songs=20, users=5, days=2, events_per_day=40, seed=1),
    "min-seed2": dict(songs=20, users=5, days=2, events_per_day=40, seed=2, start_date="2018-11-30"),
    "mid": dict(songs=300, users=20, days=3, events_per_day=400, seed=7),
}


# ----------------------------------------------------------------------------- loading
@dataclass
class Event:
    path: Path
    day: dt.date
    raw: str
    data: dict


@dataclass
class Dataset:
    root: Path
    kwargs: dict
    stats: GeneratedStats
    song_paths: list[Path] = field(default_factory=list)
    songs: list[dict] = field(default_factory=list)
    log_paths: list[Path] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def logged_in(self) -> list[Event]:
        return [e for e in self.events if e.data["auth"] == "Logged In"]

    @property
    def plays(self) -> list[Event]:
        return [e for e in self.events if e.data["page"] == "NextSong"]


def load(root: Path, kwargs: dict, stats: GeneratedStats) -> Dataset:
    ds = Dataset(root, kwargs, stats)
    ds.song_paths = sorted((root / "song_data").rglob("*.json"))
    ds.songs = [json.loads(p.read_text(encoding="ascii")) for p in ds.song_paths]
    ds.log_paths = sorted((root / "log_data").rglob("*.json"))
    for path in ds.log_paths:
        day = dt.date.fromisoformat(path.name[: -len("-events.json")])
        for raw in path.read_text(encoding="ascii").split("\n"):
            ds.events.append(Event(path, day, raw, json.loads(raw)))
    return ds


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def fix_mojibake(text: str) -> str | None:
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None


@pytest.fixture(scope="module", params=list(DATASETS))
def ds(request, tmp_path_factory) -> Dataset:
    kwargs = DATASETS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    return load(root, kwargs, generate_dataset(root, **kwargs))


@pytest.fixture(scope="module")
def mid(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("mid-only")
    return load(root, DATASETS["mid"], generate_dataset(root, **DATASETS["mid"]))


# ----------------------------------------------------------------------------- layout and format
def test_layout_and_file_names(ds):
    files = {p.relative_to(ds.root).as_posix() for p in ds.root.rglob("*") if p.is_file()}
    songs = {f for f in files if f.startswith("song_data/")}
    logs = {f for f in files if f.startswith("log_data/")}
    assert files == songs | logs | {"log_json_path.json"}
    assert len(songs) == ds.kwargs["songs"]
    for name in songs:
        match = re.fullmatch(r"song_data/([A-Z])/([A-Z])/([A-Z])/(TR[A-Z0-9]{16})\.json", name)
        assert match, name
        assert match.group(4)[2:5] == "".join(match.group(1, 2, 3))
    start = dt.date.fromisoformat(ds.kwargs.get("start_date", "2018-11-01"))
    expected = {
        f"log_data/{d:%Y}/{d:%m}/{d.isoformat()}-events.json"
        for d in (start + dt.timedelta(days=i) for i in range(ds.kwargs["days"]))
    }
    assert logs == expected


def test_song_files_one_object_in_real_format(ds):
    for path, song in zip(ds.song_paths, ds.songs):
        text = path.read_text(encoding="ascii")
        assert text == json.dumps(song)  # ", " / ": " separators, \u escapes, one line, no newline
        assert list(song) == SONG_KEYS
        assert song["num_songs"] == 1
        assert re.fullmatch(r"AR[A-Z0-9]{16}", song["artist_id"])
        assert re.fullmatch(r"SO[A-Z0-9]{16}", song["song_id"])
        assert isinstance(song["duration"], float) and song["duration"] > 0
        assert round(song["duration"], 5) == song["duration"]
        assert isinstance(song["year"], int)
        assert isinstance(song["artist_location"], str)
        for key in ("artist_latitude", "artist_longitude"):
            assert song[key] is None or isinstance(song[key], float)
    assert len({s["song_id"] for s in ds.songs}) == len(ds.songs)
    assert len({p.stem for p in ds.song_paths}) == len(ds.songs)


def test_log_files_are_json_lines_in_real_format(ds):
    for path in ds.log_paths:
        text = path.read_bytes().decode("ascii")
        assert text and not text.endswith("\n") and "\n\n" not in text and "\r" not in text
    for event in ds.events:
        assert list(event.data) == EVENT_KEYS
        canonical = json.dumps(event.data, separators=(",", ":")).replace("/", "\\/")
        assert event.raw == canonical


def test_log_events_sorted_by_ts_within_their_utc_day(ds):
    by_file = collections.defaultdict(list)
    for event in ds.events:
        by_file[event.path].append(event)
    for events in by_file.values():
        stamps = [e.data["ts"] for e in events]
        assert stamps == sorted(stamps)
        day = events[0].day
        start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()) * 1000
        assert all(isinstance(ts, int) and start <= ts < start + 86_400_000 for ts in stamps)


def test_jsonpaths_file(ds):
    assert (ds.root / "log_json_path.json").read_text(encoding="ascii") == EXPECTED_JSONPATHS


@pytest.mark.skipif(not REAL_SAMPLE.is_dir(), reason="real Udacity sample not available")
def test_formats_match_the_real_udacity_sample():
    assert (REAL_SAMPLE / "log_json_path.json").read_text() == EXPECTED_JSONPATHS
    real_song = next((REAL_SAMPLE / "song_data").rglob("*.json")).read_text()
    assert list(json.loads(real_song)) == SONG_KEYS and real_song == json.dumps(json.loads(real_song))
    real_line = next((REAL_SAMPLE / "log_data").rglob("*.json")).read_text().split("\n")[0]
    real_event = json.loads(real_line)
    assert list(real_event) == EVENT_KEYS
    assert real_line == json.dumps(real_event, separators=(",", ":")).replace("/", "\\/")


@pytest.mark.skipif(not REAL_SAMPLE.is_dir(), reason="real Udacity sample not available")
def test_auth_page_method_status_combinations_occur_in_the_real_sample(mid):
    real = set()
    for path in (REAL_SAMPLE / "log_data").rglob("*.json"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line:
                e = json.loads(line)
                real.add((e["auth"], e["page"], e["method"], e["status"]))
    ours = {(e.data["auth"], e.data["page"], e.data["method"], e.data["status"]) for e in mid.events}
    assert ours <= real


# ----------------------------------------------------------------------------- quirks
def test_quirk01_logged_out_events(ds):
    logged_out = [e.data for e in ds.events if e.data["auth"] == "Logged Out"]
    assert logged_out
    assert {e["page"] for e in logged_out} <= {"Home", "Login", "About", "Help"}
    assert "Login" in {e["page"] for e in logged_out}
    for e in logged_out:
        assert e["userId"] == ""
        for key in ("firstName", "lastName", "gender", "location", "registration", "userAgent",
                    "artist", "song", "length"):
            assert e[key] is None, key
        assert e["level"] in ("free", "paid")
    assert all(e.data["userId"] != "" for e in ds.logged_in)


def test_quirk01_logged_out_events_carry_the_level_of_their_session_user(ds):
    sessions = collections.defaultdict(dict)
    for event in ds.events:
        sessions[event.data["sessionId"]][event.data["itemInSession"]] = event.data
    checked = 0
    for items in sessions.values():
        for item, e in items.items():
            if e["auth"] == "Logged Out":
                nearest = min((i for i, x in items.items() if x["auth"] == "Logged In"),
                              key=lambda i: abs(i - item), default=None)
                if nearest is not None:
                    assert e["level"] == items[nearest]["level"]
                    checked += 1
    assert checked


def test_quirk02_user_id_is_always_a_string(ds):
    for event in ds.events:
        assert isinstance(event.data["userId"], str)
        assert re.search(r'"userId":"\d*"}$', event.raw)
    assert all(e.data["userId"].isdigit() for e in ds.logged_in)


def test_quirk03_registration_is_a_float_of_epoch_ms(ds):
    for event in ds.logged_in:
        assert isinstance(event.data["registration"], float)
        assert re.search(r'"registration":\d{13}\.0,', event.raw)
        assert event.data["registration"] < event.data["ts"]


def test_quirk04_user_agents_quoted_and_slashes_escaped(ds):
    assert any('"userAgent":"\\"Mozilla\\/5.0 (' in e.raw for e in ds.logged_in)
    assert any('"userAgent":"Mozilla\\/5.0 (' in e.raw for e in ds.logged_in)
    agents = {e.data["userAgent"] for e in ds.logged_in}
    assert any(a.startswith('"') and a.endswith('"') for a in agents)
    assert any(not a.startswith('"') for a in agents)
    assert all("/" not in e.raw.replace("\\/", "") for e in ds.events)


def test_quirk05_level_changes(ds):
    per_user = collections.defaultdict(list)
    for event in ds.logged_in:  # file order == time order
        per_user[event.data["userId"]].append(event)
    submits = collections.Counter()
    change_days = set()
    first_day = min(e.day for e in ds.events)
    for events in per_user.values():
        level = events[0].data["level"]
        for previous, event in zip([None] + events, events):
            e = event.data
            assert e["level"] == level
            if e["page"] in ("Submit Upgrade", "Submit Downgrade"):
                expected_page = "Upgrade" if e["page"] == "Submit Upgrade" else "Downgrade"
                assert previous.data["page"] == expected_page
                assert previous.data["sessionId"] == e["sessionId"]
                assert level == ("free" if e["page"] == "Submit Upgrade" else "paid")
                level = "paid" if e["page"] == "Submit Upgrade" else "free"
                submits[e["page"]] += 1
                change_days.add(event.day)
                assert event is not events[-1]  # the new level is visible afterwards
    assert submits["Submit Upgrade"] >= 1 and submits["Submit Downgrade"] >= 1
    assert change_days - {first_day}


def test_quirk06_year_zero_and_unknown_artist_coordinates(ds):
    assert any(s["year"] == 0 for s in ds.songs)
    assert any(s["year"] > 0 for s in ds.songs)
    assert any(s["artist_latitude"] is None and s["artist_longitude"] is None
               and s["artist_location"] == "" for s in ds.songs)
    assert any(s["artist_latitude"] is not None for s in ds.songs)


def test_quirk07_artist_id_with_several_names(ds):
    names = collections.defaultdict(set)
    for song in ds.songs:
        names[song["artist_id"]].add(song["artist_name"])
    multi = [n for n in names.values() if len(n) > 1]
    assert multi
    assert any(b.startswith(a + " feat. ") for n in multi for a in n for b in n)


def test_quirk08_titles_shared_across_artists(ds):
    by_title = collections.defaultdict(set)
    for song in ds.songs:
        by_title[song["title"]].add((song["artist_id"], song["artist_name"]))
    assert any(len({i for i, _ in a}) > 1 and len({n for _, n in a}) > 1 for a in by_title.values())


def test_quirk09_duplicate_title_artist_with_close_durations(ds):
    by_key = collections.defaultdict(list)
    for song in ds.songs:
        by_key[(song["title"], song["artist_name"])].append(song)
    dups = [s for s in by_key.values() if len(s) > 1]
    assert len(dups) >= 2
    for songs in dups:
        assert len({s["song_id"] for s in songs}) == len(songs)
    assert any(0 < abs(s[0]["duration"] - s[1]["duration"]) < 0.01 for s in dups)
    dup_keys = {k for k, s in by_key.items() if len(s) > 1}
    assert any((e.data["song"], e.data["artist"]) in dup_keys for e in ds.plays)


def test_quirk10_events_sharing_a_timestamp(ds):
    sessions_per_ts = collections.defaultdict(set)
    for event in ds.events:
        sessions_per_ts[event.data["ts"]].add(event.data["sessionId"])
    assert any(len(s) > 1 for s in sessions_per_ts.values())  # different users, same ts


def classify_plays(ds: Dataset) -> collections.Counter:
    durations = collections.defaultdict(list)
    for song in ds.songs:
        durations[(song["title"], song["artist_name"])].append(song["duration"])
    titles = {s["title"] for s in ds.songs}
    artists = {s["artist_name"] for s in ds.songs}
    kinds = collections.Counter()
    for event in ds.plays:
        title, artist, length = event.data["song"], event.data["artist"], event.data["length"]
        if (title, artist) in durations:
            diff = min(abs(d - length) for d in durations[(title, artist)])
            kinds["exact" if diff == 0 else "near" if diff < 0.01 else "wrong_length"] += 1
            if diff >= 0.01:
                assert diff >= 0.5
        elif title not in titles and artist not in artists:
            kinds["unknown"] += 1
        else:
            fixed = (fix_mojibake(title), fix_mojibake(artist))
            assert fixed in durations, (title, artist)
            assert length in durations[fixed]
            assert not (fixed[0].isascii() and fixed[1].isascii())
            assert "\\u00c3" in event.raw
            kinds["mojibake"] += 1
    return kinds


def test_quirk11_nextsong_events(ds):
    for event in ds.plays:
        e = event.data
        assert (e["auth"], e["method"], e["status"]) == ("Logged In", "PUT", 200)
        assert isinstance(e["song"], str) and isinstance(e["artist"], str)
        assert isinstance(e["length"], float)
    kinds = classify_plays(ds)
    assert set(kinds) == {"exact", "near", "wrong_length", "unknown", "mojibake"}, kinds
    assert any(not (s["title"].isascii() and s["artist_name"].isascii()) for s in ds.songs)
    assert any("\\u00" in p.read_text(encoding="ascii") for p in ds.song_paths)


def test_quirk11_most_plays_match_a_song(mid):
    kinds = classify_plays(mid)
    total = sum(kinds.values())
    assert total >= 500
    assert 0.70 <= (kinds["exact"] + kinds["near"]) / total <= 0.90, kinds
    assert kinds["near"] < kinds["exact"] / 5


def test_quirk12_other_pages_have_no_song(ds):
    for event in ds.events:
        e = event.data
        assert (e["method"], e["status"]) == PAGE_META[e["page"]]
        if e["page"] != "NextSong":
            assert e["artist"] is None and e["song"] is None and e["length"] is None
    pages = {e.data["page"] for e in ds.events}
    assert {"NextSong", "Home", "Login", "Logout"} <= pages


def test_quirk13_sessions(ds):
    keys = [(e.data["userId"], e.data["sessionId"], e.data["itemInSession"]) for e in ds.logged_in]
    assert len(keys) == len(set(keys))
    sessions = collections.defaultdict(list)
    for event in ds.events:
        assert isinstance(event.data["sessionId"], int)
        sessions[event.data["sessionId"]].append(event)
    for events in sessions.values():
        events.sort(key=lambda e: e.data["itemInSession"])
        assert [e.data["itemInSession"] for e in events] == list(range(len(events)))
        stamps = [e.data["ts"] for e in events]
        assert stamps == sorted(stamps)
        assert len({e.data["userId"] for e in events} - {""}) == 1
        assert len({e.path for e in events}) == 1  # session ids are not reused across days


def test_quirk14_user_names_gender_location(ds):
    for event in ds.logged_in:
        e = event.data
        assert e["firstName"] and e["lastName"]
        assert e["gender"] in ("M", "F")
        assert re.fullmatch(r"[A-Z][\w .'-]+, [A-Z]{2}(-[A-Z]{2})*", e["location"]), e["location"]
    assert {e.data["gender"] for e in ds.logged_in} == {"M", "F"}


# ----------------------------------------------------------------------------- stats, determinism
def test_stats_match_the_files(ds):
    stats = ds.stats
    assert stats.song_files == len(ds.song_paths) == ds.kwargs["songs"]
    assert stats.log_files == len(ds.log_paths) == ds.kwargs["days"]
    assert stats.events == len(ds.events)
    assert stats.nextsong_events == sum(1 for e in ds.plays if e.data["userId"] != "")
    assert stats.users == len({e.data["userId"] for e in ds.events} - {""})
    assert stats.users <= ds.kwargs["users"]


def test_event_count_is_close_to_events_per_day(mid):
    target = mid.kwargs["events_per_day"] * mid.kwargs["days"]
    assert abs(mid.stats.events - target) <= 0.02 * target


def test_same_arguments_give_identical_bytes(tmp_path):
    kwargs = dict(songs=40, users=8, days=3, events_per_day=80, seed=123)
    first = generate_dataset(tmp_path / "a", **kwargs)
    second = generate_dataset(tmp_path / "b", **kwargs)
    assert first == second
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    generate_dataset(tmp_path / "c", **{**kwargs, "seed": 124})
    assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "c")


def test_invalid_sizes_are_rejected(tmp_path):
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, songs=0, users=5, days=2, events_per_day=10)


# ----------------------------------------------------------------------------- CLI and presets
def test_presets():
    assert set(PRESETS) == {"sample", "udacity", "medium", "large"}
    assert PRESETS["sample"] == {"songs": 60, "users": 12, "days": 5, "events_per_day": 60}
    assert PRESETS["udacity"] == {"songs": 14_896, "users": 97, "days": 30, "events_per_day": 270}
    for name, songs, users, total in (("medium", 100_000, 1_000, 1_000_000),
                                      ("large", 300_000, 5_000, 10_000_000)):
        preset = PRESETS[name]
        assert (preset["songs"], preset["users"], preset["days"]) == (songs, users, 30)
        assert abs(preset["days"] * preset["events_per_day"] - total) <= 0.001 * total


def test_cli_default_preset_is_sample(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--out", str(out)]) == 0
    summary = capsys.readouterr().out.strip()
    assert len(summary.splitlines()) == 1 and "60 song files" in summary and "5 log files" in summary
    assert len(list((out / "song_data").rglob("*.json"))) == 60


def test_cli_flags_override_the_preset(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--out", str(out), "--preset", "sample", "--songs", "25", "--users", "6", "--days", "2",
            "--events-per-day", "30", "--seed", "5", "--start-date", "2019-01-31"]
    assert main(args) == 0
    assert len(list((out / "song_data").rglob("*.json"))) == 25
    logs = sorted(p.relative_to(out).as_posix() for p in (out / "log_data").rglob("*.json"))
    assert logs == ["log_data/2019/01/2019-01-31-events.json", "log_data/2019/02/2019-02-01-events.json"]
    expected = generate_dataset(tmp_path / "api", songs=25, users=6, days=2, events_per_day=30,
                                seed=5, start_date="2019-01-31")
    assert tree_digest(out) == tree_digest(tmp_path / "api")
    assert f"{expected.events} events" in capsys.readouterr().out


def test_cli_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["--out", str(tmp_path), "--songs", "20"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_cli_force_replaces_previous_output(tmp_path):
    out = tmp_path / "out"
    assert main(["--out", str(out), "--songs", "30", "--days", "3"]) == 0
    (out / "notes.txt").write_text("mine")
    assert main(["--out", str(out), "--songs", "20", "--days", "2", "--force"]) == 0
    assert len(list((out / "song_data").rglob("*.json"))) == 20
    assert len(list((out / "log_data").rglob("*.json"))) == 2
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "x"), "--songs", "0"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--start-date", "2018-13-01"])


def test_unknown_song_vocabulary_is_disjoint_from_the_catalog_vocabulary():
    catalog_words = set()
    for words in (gen._ADJECTIVES, gen._NOUNS, gen._VERBS, gen._COMMON_TITLES, gen._MALE_NAMES,
                  gen._FEMALE_NAMES, gen._LAST_NAMES, gen._NON_ASCII_ARTISTS, gen._NON_ASCII_WORDS,
                  gen._TITLE_SUFFIXES):
        for phrase in words:
            catalog_words.update(phrase.split())
    unknown = set(gen._UNKNOWN_TITLE_WORDS) | set(gen._UNKNOWN_ARTIST_WORDS)
    assert not unknown & catalog_words
