"""Generate a synthetic Sparkify dataset in the layout of the public Udacity S3 bucket.

``sparkify-generate --out DIR`` writes, deterministically from ``--seed``:

* ``song_data/A/B/C/TR….json`` - one Million-Song-Dataset-style song object per file
  (``json.dumps`` default formatting, one line, no trailing newline); the folders are
  characters 3-5 of the track id, and like the Udacity bucket every track id starts
  with ``TRA`` (so everything lives under ``song_data/A/``);
* ``log_data/YYYY/MM/YYYY-MM-DD-events.json`` - one file of app events per UTC day,
  compact JSON lines sorted by ``ts``, ``/`` escaped as ``\\/``, no trailing newline;
* ``log_json_path.json`` - the JSONPaths file used by the Redshift ``COPY``.

The data reproduces the quirks of the real sample that a loader has to cope with:
logged-out events with ``userId == ""``, string user ids, float registrations,
quoted user agents, free/paid level changes, year-0 songs and unknown artist
coordinates, artists with several names, shared titles, duplicate
(title, artist_name) pairs with nearly equal durations, equal timestamps, plays of
songs that are not in ``song_data`` or whose length is slightly/clearly off, and
mojibake (UTF-8 read as Latin-1) in some titles and artist names.  Every quirk is
planted explicitly, so it occurs in every dataset of at least 20 songs, 5 users
and 2 days.

Memory stays bounded: song files are written as they are generated (only
``(title, artist_name, duration)`` is kept for sampling plays) and events are
generated, sorted and written one day at a time.  Only the standard library is used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from operator import itemgetter
from pathlib import Path
from typing import Callable, NamedTuple

from sparkify_dagster.cli.args import positive_int

__all__ = ["GeneratedStats", "PRESETS", "generate_dataset", "main"]

PRESETS: dict[str, dict] = {
    "sample": {"songs": 60, "users": 12, "days": 5, "events_per_day": 60},
    "udacity": {"songs": 14_896, "users": 97, "days": 30, "events_per_day": 270},
    "medium": {"songs": 100_000, "users": 1_000, "days": 30, "events_per_day": 33_334},
    "large": {"songs": 300_000, "users": 5_000, "days": 30, "events_per_day": 333_334},
}

JSONPATHS_FIELDS = (
    "artist", "auth", "firstName", "gender", "itemInSession", "lastName", "length", "level",
    "location", "method", "page", "registration", "sessionId", "song", "status", "ts",
    "userAgent", "userId",
)

_DAY_SECONDS = 86_400
_MAX_SESSION_EVENTS = 100
_MAX_PLAY_GAP = 600  # seconds; (100 + 9) events * 600 s < one day: a day's first session always fits
_MAX_USER_EVENTS_PER_DAY = 300
_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# (method, status) per page, as in the real logs.
_PAGE_META = {
    "NextSong": ("PUT", 200), "Home": ("GET", 200), "Login": ("PUT", 307),
    "Logout": ("PUT", 307), "Settings": ("GET", 200), "Save Settings": ("PUT", 307),
    "About": ("GET", 200), "Help": ("GET", 200), "Error": ("GET", 404),
    "Upgrade": ("GET", 200), "Downgrade": ("GET", 200),
    "Submit Upgrade": ("PUT", 307), "Submit Downgrade": ("PUT", 307),
}
_LEVEL_PAGE = "<level page>"  # resolved to Upgrade (free user) or Downgrade (paid user)
_BODY_PAGES = ("NextSong", "Home", _LEVEL_PAGE, "Settings", "Help", "About", "Error")
_BODY_WEIGHTS = (0.86, 0.09, 0.012, 0.008, 0.006, 0.003, 0.001)
_CHANGES = {
    "upgrade": ("free", "paid", "Upgrade", "Submit Upgrade"),
    "downgrade": ("paid", "free", "Downgrade", "Submit Downgrade"),
}
# Play kinds forced at the start of the dataset so that every quirk occurs at least once.
_FORCED_PLAY_KINDS = ("exact", "unknown", "wrong_length", "mojibake", "near", "dup", "exact")

# ----------------------------------------------------------------------------- vocabulary
_ADJECTIVES = (
    "Blue", "Broken", "Golden", "Silent", "Electric", "Lonely", "Wild", "Sweet", "Dark",
    "Little", "Crazy", "Holy", "Lost", "Burning", "Cold", "Endless", "Hidden", "Midnight",
    "Neon", "Perfect", "Secret", "Strange", "Velvet", "Wicked", "Young", "Bitter", "Bright",
    "Distant", "Empty", "Faded", "Fallen", "Gentle", "Heavy", "Hollow", "Honest", "Last",
    "Lazy", "Lucky", "Magic", "Mellow", "Naked", "Quiet", "Restless", "Rusty", "Sacred",
    "Simple", "Slow", "Stolen", "Summer", "Tender", "Twisted", "Wasted", "Winter", "Crimson",
    "Silver", "Paper", "Happy", "Red", "Black", "White", "Green", "Big", "Sad", "Dirty",
)
_NOUNS = (
    "Heart", "Road", "River", "Fire", "Rain", "Night", "Dream", "Sky", "Train", "Love",
    "Soul", "City", "Ocean", "Moon", "Sun", "Star", "Girl", "Boy", "Highway", "Mountain",
    "Garden", "Shadow", "Window", "Mirror", "Thunder", "Island", "Kingdom", "Desert",
    "Letter", "Diamond", "Memory", "Morning", "Echo", "Storm", "Whisper", "Horizon",
    "Bridge", "Candle", "Circus", "Engine", "Feather", "Harbor", "Machine", "Melody",
    "Stone", "Wolf", "Rose", "Bird", "Tiger", "Queen", "King", "Ghost", "Wave", "Wind",
    "Home", "Money", "Time", "World", "Summer", "Radio", "Party", "Street", "Dance",
)
_VERBS = (
    "Dancing", "Running", "Falling", "Waiting", "Chasing", "Dreaming", "Calling", "Crying",
    "Driving", "Flying", "Holding", "Leaving", "Losing", "Riding", "Searching", "Singing",
    "Walking", "Breaking", "Coming", "Shining", "Rolling", "Sleeping", "Fighting", "Talking",
)
_COMMON_TITLES = (
    "Intro", "Home", "Hold On", "Angel", "Forever", "Stay", "Tonight", "Alive", "Breathe",
    "Hallelujah", "Heaven", "Sorry", "Crazy", "Runaway", "Outro", "Without You", "Yesterday",
)
_TITLE_SUFFIXES = (
    " (Album Version)", " (Live)", " (Remix)", " (Radio Edit)", " (LP Version)",
    " (Digital Remaster)", " (Acoustic)", " (Explicit)",
)
_MALE_NAMES = (
    "Jacob", "Ryan", "Kevin", "Aiden", "Chase", "Jayden", "Elijah", "Lucas", "Matthew",
    "Samuel", "Tucker", "Wyatt", "Connor", "Dustin", "Emanuel", "Frank", "Harper", "Isaac",
    "Jordan", "Kaleb", "Liam", "Mason", "Noah", "Oliver", "Preston", "Quinn", "Theodore",
)
_FEMALE_NAMES = (
    "Chloe", "Kate", "Lily", "Tegan", "Jacqueline", "Mia", "Layla", "Aleena", "Anabelle",
    "Sara", "Ava", "Brooklyn", "Cecilia", "Emily", "Hannah", "Jasmine", "Katherine", "Madison",
    "Natalie", "Olivia", "Paige", "Rylie", "Stephanie", "Valerie", "Zoe", "Kinsley", "Molly",
)
_LAST_NAMES = (
    "Cuevas", "Harrell", "Koch", "Levine", "Lynch", "Bell", "Klein", "Moore", "Jones", "Smith",
    "Garrison", "Rodriguez", "Beck", "Fox", "Hamilton", "Kirby", "Leonard", "Montgomery",
    "Newton", "Owens", "Palmer", "Reynolds", "Santiago", "Thornton", "Underwood", "Vincent",
    "Walton", "Young", "Zimmerman", "Ortiz", "Hicks", "Griffin", "Dixon", "Carter", "Baker",
)
_NON_ASCII_ARTISTS = (
    "Beyoncé", "Björk", "Sigur Rós", "Mötley Crüe", "Motörhead", "Maná", "Café Tacvba",
    "Françoise Hardy", "Ólafur Arnalds", "Jóhann Jóhannsson", "Héroes del Silencio",
    "Zé Ramalho", "Röyksopp", "Émilie Simon", "Anaïs", "Édith Piaf", "Ñu", "Mägo de Oz",
)
_NON_ASCII_WORDS = (
    "Café", "Corazón", "Niño", "Mañana", "Canción", "Déjà Vu", "Für Dich", "Été", "Noël",
    "São Paulo", "Señorita", "Jalousie Décembre", "Über", "Fiançée", "Crème", "Débâcle",
)
# Vocabulary for songs that exist nowhere in song_data: disjoint from every word above.
_UNKNOWN_TITLE_WORDS = (
    "Cardboard", "Lemonade", "Satellite", "Velcro", "Glacier", "Hammock", "Jukebox",
    "Kerosene", "Limousine", "Meteor", "Nectar", "Oasis", "Pelican", "Quicksand", "Radiator",
    "Scarecrow", "Telescope", "Umbrella", "Volcano", "Waffle", "Xylophone", "Zeppelin",
    "Avalanche", "Biscuit", "Cactus", "Dynamite", "Escalator", "Flamingo", "Gumball",
)
_UNKNOWN_ARTIST_WORDS = (
    "Zephyr", "Quasar", "Marmalade", "Obsidian", "Pixel", "Tundra", "Vortex", "Cobalt",
    "Juniper", "Nebula", "Kaleidoscope", "Lantern", "Monsoon", "Origami", "Paradox",
    "Quartz", "Saffron", "Tangerine", "Ultraviolet", "Walrus", "Yeti", "Zigzag",
)
# Artist places: (location, latitude, longitude); latitude None = location known, no coordinates.
_ARTIST_PLACES = (
    ("Nashville, TN.", 36.16778, -86.77836), ("California - SF", 37.77916, -122.42005),
    ("Denmark", 56.27609, 9.51695), ("Zagreb Croatia", 45.80726, 15.9676),
    ("Orlando, FL", 28.53823, -81.37739), ("London, England", 51.50632, -0.12714),
    ("New York, NY", 40.71455, -74.00712), ("Chicago, IL", 41.88415, -87.63241),
    ("Los Angeles, CA", 34.05349, -118.24532), ("Austin, TX", 30.26715, -97.74306),
    ("Seattle, WA", 47.60356, -122.32944), ("Detroit, MI", 42.33168, -83.04792),
    ("Atlanta, GA", 33.74831, -84.39111), ("Kingston, Jamaica", 17.99702, -76.79358),
    ("Paris, France", 48.85692, 2.34121), ("Berlin, Germany", 52.51607, 13.37698),
    ("Stockholm, Sweden", 59.32591, 18.0642), ("Toronto, Ontario, Canada", 43.64856, -79.38533),
    ("Rio de Janeiro, Brazil", -22.97673, -43.19508), ("Melbourne, Australia", -37.81753, 144.96715),
    ("Gainesville, FL", None, None), ("Hamtramck, MI", None, None), ("Texas", None, None),
    ("Memphis, TN", None, None), ("Ireland", None, None), ("Brooklyn, NY", None, None),
)
_USER_LOCATIONS = (
    "San Francisco-Oakland-Hayward, CA", "Dallas-Fort Worth-Arlington, TX",
    "Tampa-St. Petersburg-Clearwater, FL", "Atlanta-Sandy Springs-Roswell, GA",
    "Chicago-Naperville-Elgin, IL-IN-WI", "New York-Newark-Jersey City, NY-NJ-PA",
    "Los Angeles-Long Beach-Anaheim, CA", "Houston-The Woodlands-Sugar Land, TX",
    "Philadelphia-Camden-Wilmington, PA-NJ-DE-MD", "Phoenix-Mesa-Scottsdale, AZ",
    "Seattle-Tacoma-Bellevue, WA", "Detroit-Warren-Dearborn, MI", "Lansing-East Lansing, MI",
    "Miami-Fort Lauderdale-West Palm Beach, FL", "Portland-Vancouver-Hillsboro, OR-WA",
    "Nashville-Davidson--Murfreesboro--Franklin, TN", "Salt Lake City, UT", "Eugene, OR",
    "Washington-Arlington-Alexandria, DC-VA-MD-WV", "Minneapolis-St. Paul-Bloomington, MN-WI",
    "San Jose-Sunnyvale-Santa Clara, CA", "Raleigh, NC", "Columbia, SC", "Red Bluff, CA",
    "Sacramento--Roseville--Arden-Arcade, CA", "Winston-Salem, NC", "St. Louis, MO-IL",
)
_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/36.0.1985.143 Safari/537.36",
    "Mozilla/5.0 (Windows NT 5.1; rv:31.0) Gecko/20100101 Firefox/31.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_4) AppleWebKit/537.78.2 (KHTML, like Gecko) Version/7.0.6 Safari/537.78.2",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.9; rv:31.0) Gecko/20100101 Firefox/31.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/37.0.2062.94 Safari/537.36",
    "Mozilla/5.0 (Windows NT 6.1; WOW64; rv:31.0) Gecko/20100101 Firefox/31.0",
    "Mozilla/5.0 (Windows NT 6.3; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/36.0.1985.125 Safari/537.36",
    "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; WOW64; Trident/6.0)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 7_1_2 like Mac OS X) AppleWebKit/537.51.2 (KHTML, like Gecko) Version/7.0 Mobile/11D257 Safari/9537.53",
    "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/36.0.1985.143 Safari/537.36",
)


# ----------------------------------------------------------------------------- public API
@dataclass(frozen=True)
class GeneratedStats:
    """What ``generate_dataset`` wrote."""

    song_files: int
    log_files: int
    events: int  # total event records written
    nextsong_events: int  # page == NextSong and userId != ""
    users: int  # distinct non-empty userIds that appear in events


def generate_dataset(
    out_dir: str | os.PathLike,
    *,
    songs: int,
    users: int,
    days: int,
    events_per_day: int,
    seed: int = 0,
    start_date: str = "2018-11-01",
    progress: Callable[[str], None] | None = None,
) -> GeneratedStats:
    """Write a synthetic Sparkify dataset under ``out_dir`` and return what was written."""
    for name, value in (("songs", songs), ("users", users), ("days", days),
                        ("events_per_day", events_per_day)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    first_day = dt.date.fromisoformat(start_date)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda message: None)
    rng = random.Random(seed)

    _write_jsonpaths(out)
    catalog = _write_songs(out, rng, songs, report)
    events = _EventGenerator(rng, catalog, users, days, events_per_day, _day_start_ms(first_day))
    totals = {"events": 0, "nextsong": 0, "users": set()}
    for day in range(days):
        date = first_day + dt.timedelta(days=day)
        rows = events.day_rows(day, _day_start_ms(date))
        written, nextsong, active = _write_log_file(_log_path(out, date), rows, events.users)
        totals["events"] += written
        totals["nextsong"] += nextsong
        totals["users"] |= active
        report(f"log_data: {date.isoformat()} {written} events")
    return GeneratedStats(
        song_files=songs,
        log_files=days,
        events=totals["events"],
        nextsong_events=totals["nextsong"],
        users=len(totals["users"]),
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sparkify-generate`` console script."""
    args = _parse_args(argv)
    params = dict(PRESETS[args.preset])
    for key in ("songs", "users", "days", "events_per_day"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    out: Path = args.out
    if out.exists() and not out.is_dir():
        print(f"sparkify-generate: error: {out} exists and is not a directory", file=sys.stderr)
        return 2
    if out.is_dir() and any(out.iterdir()):
        if not args.force:
            print(f"sparkify-generate: error: {out} is not empty (use --force to overwrite)",
                  file=sys.stderr)
            return 2
        _remove_previous_output(out)
    big = params["songs"] >= 50_000 or params["days"] * params["events_per_day"] >= 200_000
    started = time.monotonic()
    stats = generate_dataset(
        out, seed=args.seed, start_date=args.start_date,
        progress=(lambda message: print(message, file=sys.stderr, flush=True)) if big else None,
        **params,
    )
    print(
        f"sparkify-generate: wrote {stats.song_files} song files, {stats.log_files} log files, "
        f"{stats.events} events ({stats.nextsong_events} NextSong) from {stats.users} users "
        f"to {out} in {time.monotonic() - started:.1f}s"
    )
    return 0


# ----------------------------------------------------------------------------- CLI helpers
def _iso_date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from exc


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sparkify-generate",
        description="Write a synthetic Sparkify dataset (song_data, log_data, log_json_path.json) "
                    "in the layout of the Udacity S3 bucket, deterministically from a seed.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--preset", choices=list(PRESETS), default="sample",
                        help="size preset (default: sample); explicit flags override it")
    parser.add_argument("--songs", type=positive_int, help="number of song files")
    parser.add_argument("--users", type=positive_int, help="number of users")
    parser.add_argument("--days", type=positive_int, help="number of daily log files")
    parser.add_argument("--events-per-day", type=positive_int, help="events per log file")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--start-date", type=_iso_date, default="2018-11-01",
                        help="first day, YYYY-MM-DD (default: 2018-11-01)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty folder (replaces song_data/, log_data/ "
                             "and log_json_path.json there)")
    return parser.parse_args(argv)


def _remove_previous_output(out: Path) -> None:
    for name in ("song_data", "log_data"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    if (out / "log_json_path.json").is_file():
        (out / "log_json_path.json").unlink()


# ----------------------------------------------------------------------------- small helpers
def _js(value: str) -> str:
    """Encode a string like the real logs: ASCII-only JSON with ``/`` escaped."""
    return encode_basestring_ascii(value).replace("/", "\\/")


def _mojibake(text: str) -> str:
    """Double-encode: the UTF-8 bytes of ``text`` read back as Latin-1."""
    return text.encode("utf-8").decode("latin-1")


def _day_start_ms(date: dt.date) -> int:
    midnight = dt.datetime(date.year, date.month, date.day, tzinfo=dt.timezone.utc)
    return int(midnight.timestamp()) * 1000


def _log_path(out: Path, date: dt.date) -> Path:
    return out / "log_data" / f"{date.year:04d}" / f"{date.month:02d}" / f"{date.isoformat()}-events.json"


def _write_jsonpaths(out: Path) -> None:
    paths = {"jsonpaths": [f"$['{name}']" for name in JSONPATHS_FIELDS]}
    (out / "log_json_path.json").write_text(json.dumps(paths, indent=4), encoding="ascii")


def _unique(rng: random.Random, make: Callable[[random.Random], str], seen: set[str]) -> str:
    while True:
        value = make(rng)
        if value not in seen:
            seen.add(value)
            return value


def _artist_id(rng: random.Random) -> str:
    return "AR" + "".join(rng.choices(_ID_CHARS, k=16))


def _song_id(rng: random.Random) -> str:
    return "SO" + "".join(rng.choices(_ID_CHARS, k=16))


def _track_id(rng: random.Random) -> str:
    return "TRA" + "".join(rng.choices(_LETTERS, k=4)) + "".join(rng.choices(_ID_CHARS, k=11))


def _person_name(rng: random.Random) -> str:
    return f"{rng.choice(_MALE_NAMES + _FEMALE_NAMES)} {rng.choice(_LAST_NAMES)}"


def _artist_name(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.03:
        return rng.choice(_NON_ASCII_ARTISTS)
    if r < 0.35:
        return _person_name(rng)
    if r < 0.55:
        return f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}s"
    if r < 0.70:
        return f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    if r < 0.78:
        return f"DJ {rng.choice(_NOUNS)}"
    if r < 0.88:
        return f"{rng.choice(_LAST_NAMES)} & {rng.choice(_NOUNS)}"
    if r < 0.97:
        return f"{_person_name(rng)} & The {rng.choice(_NOUNS)}s"
    return f"{_person_name(rng)} / {_person_name(rng)}"


def _song_title(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.04:
        title = f"{rng.choice(_NON_ASCII_WORDS)} {rng.choice(_NOUNS)}"
    elif r < 0.07:
        title = rng.choice(_COMMON_TITLES)
    elif r < 0.40:
        title = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    elif r < 0.55:
        title = f"{rng.choice(_VERBS)} In The {rng.choice(_NOUNS)}"
    elif r < 0.70:
        title = f"{rng.choice(_NOUNS)} Of {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    elif r < 0.82:
        title = f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    elif r < 0.92:
        title = f"{rng.choice(_VERBS)} {rng.choice(_NOUNS)}"
    else:
        title = f"Song For {rng.choice(_MALE_NAMES + _FEMALE_NAMES)}"
    if rng.random() < 0.15:
        title += rng.choice(_TITLE_SUFFIXES)
    return title


def _duration(rng: random.Random) -> float:
    return round(min(max(rng.lognormvariate(5.45, 0.35), 20.0), 1800.0), 5)


def _year(rng: random.Random) -> int:
    return 0 if rng.random() < 0.5 else rng.randint(1955, 2010)


# ----------------------------------------------------------------------------- songs
class _Artist(NamedTuple):
    artist_id: str
    name: str
    latitude: float | None
    longitude: float | None
    location: str


class _Song(NamedTuple):
    artist: _Artist
    artist_name: str  # may differ from artist.name ("X feat. Y")
    title: str
    duration: float
    year: int


class _Catalog:
    """Writes song files and keeps only what the event generator needs."""

    def __init__(self, out: Path, rng: random.Random):
        self.songs: list[tuple[str, str, float]] = []  # (title, artist_name, duration)
        self.non_ascii: list[int] = []  # indexes of songs with a non-ASCII title or artist name
        self.dup_pairs: list[tuple[int, int]] = []  # planted (title, artist_name) duplicates
        self._root = out / "song_data"
        self._rng = rng
        self._dirs: set[str] = set()
        self._track_ids: set[str] = set()
        self._song_ids: set[str] = set()
        self.artist_ids: set[str] = set()

    def new_artist(self, *, name: str | None = None, located: bool | None = None) -> _Artist:
        """A new artist with a unique id; ``located`` forces (True) or forbids (False) coordinates."""
        rng = self._rng
        artist_id = _unique(rng, _artist_id, self.artist_ids)
        name = name or _artist_name(rng)
        if located is False:
            return _Artist(artist_id, name, None, None, "")
        if located is None and rng.random() < 0.45:
            location = "" if rng.random() < 0.6 else rng.choice(_ARTIST_PLACES)[0]
            return _Artist(artist_id, name, None, None, location)
        place, lat, lon = rng.choice([p for p in _ARTIST_PLACES if p[1] is not None])
        return _Artist(artist_id, name, lat, lon, place)

    def release_id_sets(self) -> None:
        """Free the uniqueness sets once every song is written (they are large at 300k songs)."""
        self.artist_ids = set()
        self._track_ids = set()
        self._song_ids = set()

    def add(self, song: _Song) -> int:
        """Write one song file and return the song's index in ``self.songs``."""
        rng = self._rng
        track_id = _unique(rng, _track_id, self._track_ids)
        record = {
            "num_songs": 1,
            "artist_id": song.artist.artist_id,
            "artist_latitude": song.artist.latitude,
            "artist_longitude": song.artist.longitude,
            "artist_location": song.artist.location,
            "artist_name": song.artist_name,
            "song_id": _unique(rng, _song_id, self._song_ids),
            "title": song.title,
            "duration": song.duration,
            "year": song.year,
        }
        folder = f"{track_id[2]}/{track_id[3]}/{track_id[4]}"
        if folder not in self._dirs:
            os.makedirs(self._root / folder, exist_ok=True)
            self._dirs.add(folder)
        with open(self._root / folder / f"{track_id}.json", "w", encoding="ascii") as handle:
            handle.write(json.dumps(record))
        index = len(self.songs)
        self.songs.append((song.title, song.artist_name, song.duration))
        if not (song.title.isascii() and song.artist_name.isascii()):
            self.non_ascii.append(index)
        return index


def _planted_songs(rng: random.Random, catalog: _Catalog) -> list[_Song]:
    """Songs carrying the catalog quirks (multi-name artist, shared title, duplicates, ...)."""
    names: set[str] = set(_NON_ASCII_ARTISTS)
    multi = catalog.new_artist(name=_unique(rng, _artist_name, names), located=True)
    shared_a = catalog.new_artist(name=_unique(rng, _artist_name, names), located=True)
    shared_b = catalog.new_artist(name=_unique(rng, _artist_name, names), located=False)
    dup_a = catalog.new_artist(name=_unique(rng, _artist_name, names))
    dup_b = catalog.new_artist(name=_unique(rng, _artist_name, names), located=False)
    accented = catalog.new_artist(name=rng.choice(_NON_ASCII_ARTISTS), located=True)
    plain = catalog.new_artist(name=_unique(rng, _artist_name, names))
    shared_title = rng.choice(_COMMON_TITLES)
    dup_title_a = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} (Album Version)"
    dup_title_b = f"{rng.choice(_VERBS)} In The {rng.choice(_NOUNS)} (Live)"
    dur_a, dur_b = _duration(rng), _duration(rng)
    feat = f"{multi.name} feat. {_person_name(rng)}"
    return [
        _Song(multi, multi.name, _song_title(rng), _duration(rng), _year(rng)),
        _Song(multi, feat, _song_title(rng), _duration(rng), rng.randint(1990, 2010)),
        _Song(shared_a, shared_a.name, shared_title, _duration(rng), rng.randint(1970, 2010)),
        _Song(shared_b, shared_b.name, shared_title, _duration(rng), 0),
        _Song(dup_a, dup_a.name, dup_title_a, dur_a, rng.randint(1970, 2010)),
        _Song(dup_a, dup_a.name, dup_title_a, round(dur_a + 0.004, 5), 0),
        _Song(dup_b, dup_b.name, dup_title_b, dur_b, 0),
        _Song(dup_b, dup_b.name, dup_title_b, round(dur_b - 0.00731, 5), 0),
        _Song(accented, accented.name, _song_title(rng), _duration(rng), _year(rng)),
        _Song(plain, plain.name, f"{rng.choice(_NON_ASCII_WORDS)} {rng.choice(_NOUNS)}",
              _duration(rng), _year(rng)),
    ]


def _random_song(rng: random.Random, catalog: _Catalog, artists: list[_Artist]) -> _Song:
    if artists and rng.random() < 0.4:
        artist = rng.choice(artists)
    else:
        artist = catalog.new_artist()
        artists.append(artist)
    name = artist.name
    if rng.random() < 0.03:
        name = f"{artist.name} feat. {_person_name(rng)}"
    return _Song(artist, name, _song_title(rng), _duration(rng), _year(rng))


def _write_songs(out: Path, rng: random.Random, count: int,
                 report: Callable[[str], None]) -> _Catalog:
    """Write ``count`` song files; return the catalog used to sample plays."""
    catalog = _Catalog(out, rng)
    planted = _planted_songs(rng, catalog)[:count]
    for song in planted:
        catalog.add(song)
    for first in (4, 6):
        if first + 1 < len(planted):
            catalog.dup_pairs.append((first, first + 1))
    artists = [song.artist for song in planted]
    while len(catalog.songs) < count:
        song = _random_song(rng, catalog, artists)
        catalog.add(song)
        if rng.random() < 0.002 and len(catalog.songs) < count:
            delta = rng.choice((-1, 1)) * rng.randint(1, 9) / 1000
            catalog.add(song._replace(duration=round(song.duration + delta, 5)))
        if len(catalog.songs) % 50_000 == 0:
            report(f"song_data: {len(catalog.songs)}/{count} songs")
    catalog.release_id_sets()
    return catalog


# ----------------------------------------------------------------------------- users
@dataclass
class _User:
    user_id: str
    level: str
    change: str | None  # "upgrade" / "downgrade" / None
    change_day: int | None
    json: tuple[str, ...]  # encoded firstName, gender, lastName, location, registration, userAgent, userId


def _make_users(rng: random.Random, count: int, days: int, first_day_ms: int,
                phase_ms: int) -> list[_User]:
    """Users sorted by numeric id; users 0/1 carry the planted upgrade/downgrade."""
    ids = sorted(rng.sample(range(2, count + count // 5 + 3), count))
    wrapped = [ua for ua in _USER_AGENTS if "," in ua]
    bare = [ua for ua in _USER_AGENTS if "," not in ua]
    users = []
    for index, user_id in enumerate(ids):
        gender = "MF"[index] if index < 2 else rng.choice("MF")
        first = rng.choice(_MALE_NAMES if gender == "M" else _FEMALE_NAMES)
        agent = rng.choice(wrapped if index == 0 else bare if index == 1 else _USER_AGENTS)
        if "," in agent:  # the real logs quote the agents that contain a comma
            agent = f'"{agent}"'
        registration = float(first_day_ms - rng.randint(3_600, 120 * _DAY_SECONDS) * 1000 + phase_ms)
        change, change_day = _planned_change(rng, index, days)
        if change:
            level = _CHANGES[change][0]
        else:
            level = "paid" if rng.random() < 0.35 else "free"
        encoded = (_js(first), _js(gender), _js(rng.choice(_LAST_NAMES)),
                   _js(rng.choice(_USER_LOCATIONS)), repr(registration), _js(agent), _js(str(user_id)))
        users.append(_User(str(user_id), level, change, change_day, encoded))
    return users


def _planned_change(rng: random.Random, index: int, days: int) -> tuple[str | None, int | None]:
    if index == 0:
        return "upgrade", min(1, days - 1)
    if index == 1:
        return "downgrade", 0
    if rng.random() < 0.1:
        return rng.choice(("upgrade", "downgrade")), rng.randrange(days)
    return None, None


# ----------------------------------------------------------------------------- events
def _plan_pages(rng: random.Random, length: int, *, start_logged_out: bool = False,
                end_logout: bool = False, change: str | None = None) -> list[tuple[str, bool]]:
    """The (page, logged_in) sequence of one session, about ``length`` events long."""
    head: list[tuple[str, bool]] = []
    if start_logged_out:
        if rng.random() < 0.5:
            head.append(("Home", False))
        head.append(("Login", False))
    tail: list[tuple[str, bool]] = []
    if end_logout:
        tail = [("Logout", True), ("Home", False)]
        if rng.random() < 0.3:
            tail.append((rng.choice(("About", "Help")), False))
    body_length = max(length - len(head) - len(tail), 3 if change else 1)
    body: list[tuple[str, bool]] = []
    while len(body) < body_length:
        page = rng.choices(_BODY_PAGES, _BODY_WEIGHTS)[0]
        body.append((page, True))
        if page == "Settings" and rng.random() < 0.4:
            body.append(("Save Settings", True))
    if change:
        _, _, visit, submit = _CHANGES[change]
        at = rng.randint(1, len(body) - 1)
        body[at:at] = [(visit, True), (submit, True)]
    return head + body + tail


class _EventGenerator:
    """Generates the events of one day at a time, keeping user state across days."""

    def __init__(self, rng: random.Random, catalog: _Catalog, users: int, days: int,
                 events_per_day: int, first_day_ms: int):
        self.rng = rng
        self.catalog = catalog
        self.events_per_day = events_per_day
        self.phase_ms = rng.randrange(1000)  # like the real data, every ts shares its milliseconds
        self.users = _make_users(rng, users, days, first_day_ms, self.phase_ms)
        self._user_range = range(len(self.users))
        self._cum_weights = self._activity_weights()
        self._popularity = list(range(len(catalog.songs)))
        rng.shuffle(self._popularity)
        self._unknown = self._unknown_songs(max(20, min(20_000, len(catalog.songs) // 3)))
        self._forced_plays = 0
        self._next_session_id = rng.randint(1, 200)

    def _activity_weights(self) -> list[float]:
        total, cumulative = 0.0, []
        for _ in self._user_range:
            total += self.rng.lognormvariate(0.0, 1.0)
            cumulative.append(total)
        return cumulative

    def _unknown_songs(self, count: int) -> list[tuple[str, str, float]]:
        rng = self.rng
        songs = []
        for _ in range(count):
            title = " ".join(rng.sample(_UNKNOWN_TITLE_WORDS, rng.randint(1, 3)))
            artist = " ".join(rng.sample(_UNKNOWN_ARTIST_WORDS, rng.randint(1, 2)))
            songs.append((title, artist, _duration(rng)))
        return songs

    # -- plays
    def _next_play_kind(self) -> str:
        if self._forced_plays < len(_FORCED_PLAY_KINDS):
            self._forced_plays += 1
            return _FORCED_PLAY_KINDS[self._forced_plays - 1]
        r = self.rng.random()
        if r < 0.13:
            return "unknown"
        if r < 0.15:
            return "wrong_length"
        if r < 0.17:
            return "mojibake"
        if r < 0.20:
            return "near"
        return "exact"

    def _popular_song(self) -> tuple[str, str, float]:
        order = self._popularity
        return self.catalog.songs[order[int(len(order) * self.rng.random() ** 2)]]

    def _pick_play(self) -> tuple[str, str, float]:
        """(title, artist, length) of a NextSong event."""
        rng, catalog = self.rng, self.catalog
        kind = self._next_play_kind()
        if kind == "unknown":
            return self._unknown[int(len(self._unknown) * rng.random() ** 2)]
        if kind == "mojibake" and catalog.non_ascii:
            title, artist, length = catalog.songs[rng.choice(catalog.non_ascii)]
            return _mojibake(title), _mojibake(artist), length
        if kind == "dup" and catalog.dup_pairs:
            return catalog.songs[rng.choice(rng.choice(catalog.dup_pairs))]
        title, artist, length = self._popular_song()
        if kind == "near":
            return title, artist, round(length + rng.choice((-1, 1)) * rng.randint(1, 9) / 1000, 5)
        if kind == "wrong_length":
            return title, artist, round(length + rng.choice((-1, 1)) * rng.uniform(0.5, 5.0), 5)
        if not (title.isascii() and artist.isascii()) and rng.random() < 0.5:
            return _mojibake(title), _mojibake(artist), length
        return title, artist, length

    # -- sessions
    def _pick_user(self, load: dict[int, int]) -> int:
        rng = self.rng
        for _ in range(8):
            user = rng.choices(self._user_range, cum_weights=self._cum_weights)[0]
            if load.get(user, 0) < _MAX_USER_EVENTS_PER_DAY:
                return user
        return rng.randrange(len(self.users))

    def _session_length(self) -> int:
        return min(1 + int(self.rng.expovariate(1 / 14)), _MAX_SESSION_EVENTS)

    def _plan_day(self, day: int) -> tuple[dict[int, list], tuple[int, int]]:
        """Page plans per user; the first two sessions (users a != b) carry planted quirks."""
        rng = self.rng
        plans: dict[int, list] = {}
        load: dict[int, int] = {}
        a = self._pick_user(load)
        b = a
        while b == a and len(self.users) > 1:
            b = rng.randrange(len(self.users))
        forced: dict[int, dict] = {a: {"start_logged_out": True}}
        forced.setdefault(b, {})["end_logout"] = True
        for index, user in enumerate(self.users):
            if user.change_day == day:
                forced.setdefault(index, {})["change"] = user.change
        remaining = self.events_per_day
        share = max(3, remaining // len(forced))
        for user, flags in forced.items():
            length = min(self._session_length(), share)
            remaining -= self._add_plan(plans, load, user, length, flags)
        while remaining > 0:
            flags = {"start_logged_out": rng.random() < 0.1, "end_logout": rng.random() < 0.1}
            length = min(self._session_length(), remaining)
            remaining -= self._add_plan(plans, load, self._pick_user(load), length, flags)
        return plans, (a, b)

    def _add_plan(self, plans, load, user: int, length: int, flags: dict) -> int:
        pages = _plan_pages(self.rng, length, **flags)
        plans.setdefault(user, []).append(pages)
        load[user] = load.get(user, 0) + len(pages)
        return len(pages)

    def _build_session(self, user: _User, pages: list[tuple[str, bool]]):
        """Events (offset_s, item, page, logged_in, level, play) and duration of one session."""
        rng = self.rng
        events = []
        offset = duration = 0
        level = user.level
        for item, (page, logged_in) in enumerate(pages):
            if page == _LEVEL_PAGE:
                page = "Upgrade" if level == "free" else "Downgrade"
            play = self._pick_play() if page == "NextSong" else None
            duration = offset
            events.append((offset, item, page, logged_in, level, play))
            if page == "Submit Upgrade":
                level = "paid"
            elif page == "Submit Downgrade":
                level = "free"
            if play is not None:
                offset += max(1, min(int(play[2]), _MAX_PLAY_GAP))
            elif page in ("Upgrade", "Downgrade", "Settings", "Logout") or rng.random() < 0.05:
                offset += rng.choice((0, 1, 1, 2))
            else:
                offset += rng.randint(1, 90)
        user.level = level
        return events, duration

    def _build_user_day(self, user: _User, plans: list) -> list:
        """Build a user's sessions in order, dropping the ones that no longer fit in the day."""
        built, used = [], 0
        for pages in plans:
            snapshot = (user.level, self._forced_plays)
            events, duration = self._build_session(user, pages)
            if used + duration + 1 > _DAY_SECONDS:
                user.level, self._forced_plays = snapshot
                break
            built.append((events, duration))
            used += duration + 1
        return built

    def _place(self, built: list) -> list[int]:
        """Non-overlapping start seconds for a user's sessions, all ending within the day."""
        free = _DAY_SECONDS - sum(duration + 1 for _, duration in built)
        points = sorted(self.rng.randint(0, free) for _ in built)
        starts, elapsed = [], 0
        for point, (_, duration) in zip(points, built):
            starts.append(point + elapsed)
            elapsed += duration + 1
        return starts

    def day_rows(self, day: int, day_start_ms: int) -> list[tuple]:
        """All events of one day, sorted by ts: (ts, sessionId, item, page, logged_in, level, user, play)."""
        plans, (a, b) = self._plan_day(day)
        placed: dict[int, list] = {}
        for user in sorted(plans):
            built = self._build_user_day(self.users[user], plans[user])
            placed[user] = [[start, events] for start, (events, _) in zip(self._place(built), built)]
        if a != b and placed.get(a) and placed.get(b):  # two users start at the same ts
            same = min(placed[a][0][0], placed[b][0][0])
            placed[a][0][0] = placed[b][0][0] = same
        sessions = sorted(((start, user, events) for user, items in placed.items()
                           for start, events in items), key=itemgetter(0, 1))
        rows = []
        for start, user, events in sessions:
            session_id = self._next_session_id
            self._next_session_id += 1 if self.rng.random() < 0.85 else 2
            base = day_start_ms + start * 1000 + self.phase_ms
            for offset, item, page, logged_in, level, play in events:
                rows.append((base + offset * 1000, session_id, item, page, logged_in, level, user, play))
        rows.sort(key=itemgetter(0))
        return rows


# ----------------------------------------------------------------------------- serialization
def _event_line(row: tuple, users: list[_User]) -> str:
    ts, session_id, item, page, logged_in, level, user, play = row
    method, status = _PAGE_META[page]
    if not logged_in:
        return (
            f'{{"artist":null,"auth":"Logged Out","firstName":null,"gender":null,'
            f'"itemInSession":{item},"lastName":null,"length":null,"level":"{level}",'
            f'"location":null,"method":"{method}","page":"{page}","registration":null,'
            f'"sessionId":{session_id},"song":null,"status":{status},"ts":{ts},'
            f'"userAgent":null,"userId":""}}'
        )
    if play is None:
        artist = song = length = "null"
    else:
        song, artist, length = _js(play[0]), _js(play[1]), repr(play[2])
    first, gender, last, location, registration, agent, user_id = users[user].json
    return (
        f'{{"artist":{artist},"auth":"Logged In","firstName":{first},"gender":{gender},'
        f'"itemInSession":{item},"lastName":{last},"length":{length},"level":"{level}",'
        f'"location":{location},"method":"{method}","page":"{page}",'
        f'"registration":{registration},"sessionId":{session_id},"song":{song},'
        f'"status":{status},"ts":{ts},"userAgent":{agent},"userId":{user_id}}}'
    )


def _write_log_file(path: Path, rows: list[tuple], users: list[_User]) -> tuple[int, int, set[int]]:
    """Write one day as JSON lines without a trailing newline; return (events, nextsong, users)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nextsong = 0
    active: set[int] = set()
    with open(path, "w", encoding="ascii", newline="") as handle:
        for start in range(0, len(rows), 10_000):
            chunk = rows[start:start + 10_000]
            for row in chunk:
                if row[4]:
                    active.add(row[6])
                    nextsong += row[3] == "NextSong"
            text = "\n".join(_event_line(row, users) for row in chunk)
            handle.write(text if start == 0 else "\n" + text)
    return len(rows), nextsong, active


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
