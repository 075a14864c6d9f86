"""The embedded COPY (json_loader + DuckDBWarehouse.load_staging) against Redshift's JSON COPY rules.

Tests write raw bytes into a folder laid out like the bucket, load them with ``load_staging`` and check
exactly what reached the staging table and ``load_errors`` (file, physical line, column, reason, raw text)
and what ``loaded_files`` counted. The value-typing cases share one file and one load (speed); the
property test reuses one DuckDB file across examples (each example is a full refresh).
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sparkify_dagster.catalog import STAGING_EVENTS, STAGING_SONGS
from sparkify_dagster.source import (
    DEFAULT_EVENT_JSONPATHS,
    LOG_PREFIX,
    SONG_PREFIX,
    LocalFolderSource,
    SourceError,
)
from sparkify_dagster.warehouse import json_loader
from sparkify_dagster.warehouse.base import TooManyLoadErrors
from sparkify_dagster.warehouse import duckdb as duckdb_warehouse
from sparkify_dagster.warehouse.duckdb import DuckDBWarehouse
from sparkify_dagster_tests.conftest import REAL_SAMPLE, requires_real_sample

LOG = logging.getLogger("test_json_loader")
DAY1 = "log_data/2018/11/2018-11-01-events.json"
DAY2 = "log_data/2018/11/2018-11-02-events.json"
DAY3 = "log_data/2018/11/2018-11-03-events.json"

EVENT_COLUMNS = [c.name for c in STAGING_EVENTS.columns if c.name != "source_file"]
JSON_KEYS = [
    "artist", "auth", "firstName", "gender", "itemInSession", "lastName", "length", "level", "location",
    "method", "page", "registration", "sessionId", "song", "status", "ts", "userAgent", "userId",
]

# Real lines of the Udacity sample, verbatim (escaped slashes, literal quotes, "" user id, float registration).
REAL_LOGGED_OUT = (
    r'{"artist":null,"auth":"Logged Out","firstName":null,"gender":null,"itemInSession":0,"lastName":null,'
    r'"length":null,"level":"free","location":null,"method":"PUT","page":"Login","registration":null,'
    r'"sessionId":52,"song":null,"status":307,"ts":1541207073796,"userAgent":null,"userId":""}'
)
REAL_NEXT_SONG = (
    '{"artist":"Des\'ree","auth":"Logged In","firstName":"Kaylee","gender":"F","itemInSession":1,'
    r'"lastName":"Summers","length":246.30812,"level":"free","location":"Phoenix-Mesa-Scottsdale, AZ",'
    r'"method":"PUT","page":"NextSong","registration":1540344794796.0,"sessionId":139,"song":"You Gotta Be",'
    r'"status":200,"ts":1541106106796,"userAgent":"\"Mozilla\/5.0 (Windows NT 6.1; WOW64) AppleWebKit\/537.36 '
    r'(KHTML, like Gecko) Chrome\/35.0.1916.153 Safari\/537.36\"","userId":"8"}'
)
REAL_MOJIBAKE = (
    r'{"artist":"Calle 13 Featuring Caf\u00c3\u0083\u00c2\u00a9 Tacuba","auth":"Logged In","firstName":"Lily",'
    r'"gender":"F","itemInSession":37,"lastName":"Koch","length":293.32853,"level":"paid",'
    r'"location":"Chicago-Naperville-Elgin, IL-IN-WI","method":"PUT","page":"NextSong",'
    r'"registration":1541048010796.0,"sessionId":172,"song":"No Hay Nadie Como T\u00c3\u0083\u00c2\u00ba",'
    r'"status":200,"ts":1541157637796,"userAgent":"\"Mozilla\/5.0 (X11; Linux x86_64) AppleWebKit\/537.36 '
    r'(KHTML, like Gecko) Ubuntu Chromium\/36.0.1985.125 Chrome\/36.0.1985.125 Safari\/537.36\"","userId":"15"}'
)


# --- helpers ---------------------------------------------------------------------------------------

@pytest.fixture(autouse=True, params=["bound", "read_text", "objects"])
def framing_path(request, monkeypatch):
    """Every loader test runs on each way a local file reaches DuckDB: its text bound from Python
    (small files), read by DuckDB itself and framed (``read_text``), and first typed straight from
    DuckDB's JSON reader, framed only when that could differ (``objects``, big files by default);
    here every file takes the path."""
    if request.param != "bound":
        monkeypatch.setattr(duckdb_warehouse, "IN_PLACE_MIN_BYTES", 0)
    monkeypatch.setattr(duckdb_warehouse, "READ_OBJECTS", request.param == "objects")
    return request.param



def event(ts: int, **overrides) -> dict:
    """A complete, valid event record (shaped like the real logs) identified by ``ts``."""
    rec = {
        "artist": "Des'ree", "auth": "Logged In", "firstName": "Kaylee", "gender": "F", "itemInSession": 1,
        "lastName": "Summers", "length": 246.30812, "level": "free", "location": "Phoenix-Mesa-Scottsdale, AZ",
        "method": "PUT", "page": "NextSong", "registration": 1540344794796.0, "sessionId": 139,
        "song": "You Gotta Be", "status": 200, "ts": ts,
        "userAgent": '"Mozilla/5.0 (Windows NT 6.1; WOW64)"', "userId": "8",
    }
    rec.update(overrides)
    return rec


def line(ts: int, **overrides) -> str:
    return json.dumps(event(ts, **overrides))


def write_raw(root: Path, key: str, content: bytes | str) -> Path:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def load_events(warehouse: DuckDBWarehouse, root: Path, load_id: str = "test-load", **options):
    src = LocalFolderSource(root=str(root))
    return warehouse.load_staging(
        STAGING_EVENTS, src, src.list_files(LOG_PREFIX), load_id, LOG, jsonpaths=src.event_jsonpaths(), **options
    )


def load_songs(warehouse: DuckDBWarehouse, root: Path, load_id: str = "test-load", **options):
    src = LocalFolderSource(root=str(root))
    return warehouse.load_staging(STAGING_SONGS, src, src.list_files(SONG_PREFIX), load_id, LOG, **options)


def staged(warehouse: DuckDBWarehouse, *cols: str, table: str = "staging_events") -> list[tuple]:
    cols_sql = ", ".join(cols)
    return warehouse.query(f"SELECT {cols_sql} FROM {table} ORDER BY ALL")


def rejects(warehouse: DuckDBWarehouse, table: str = "staging_events") -> list[tuple]:
    return warehouse.query(
        "SELECT source_file, line_number, column_name, reason, raw_text FROM load_errors "
        "WHERE table_name = ? ORDER BY source_file, line_number, reason",
        [table],
    )


def loaded_files(warehouse: DuckDBWarehouse, table: str = "staging_events") -> list[tuple]:
    return warehouse.query(
        "SELECT source_file, records_read, records_staged, records_rejected FROM loaded_files "
        "WHERE table_name = ? ORDER BY source_file",
        [table],
    )


def assert_bookkeeping_consistent(warehouse: DuckDBWarehouse, table: str = "staging_events") -> None:
    """read == staged + rejected per file; staging rows and load_errors rows match the counts."""
    per_file_rows = dict(warehouse.query(f"SELECT source_file, count(*) FROM {table} GROUP BY ALL"))
    per_file_errs = dict(
        warehouse.query("SELECT source_file, count(*) FROM load_errors WHERE table_name = ? GROUP BY ALL", [table])
    )
    files = loaded_files(warehouse, table)
    for source_file, read, n_staged, n_rejected in files:
        assert read == n_staged + n_rejected, source_file
        assert per_file_rows.get(source_file, 0) == n_staged, source_file
        assert per_file_errs.get(source_file, 0) == n_rejected, source_file
    known = {f[0] for f in files}
    assert set(per_file_rows) <= known and set(per_file_errs) <= known


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return tmp_path / "raw"


# --- valid lines and framing -----------------------------------------------------------------------


def test_real_lines_with_their_quirks_are_staged_unescaped(warehouse, raw):
    # Real layout: blank lines between some records, no trailing newline.
    write_raw(raw, DAY1, REAL_LOGGED_OUT + "\n\n" + REAL_NEXT_SONG + "\n" + REAL_MOJIBAKE)
    report = load_events(warehouse, raw)

    assert (report.files, report.records_read, report.records_staged, report.records_rejected) == (1, 3, 3, 0)
    assert rejects(warehouse) == []
    rows = warehouse.query(f"SELECT {', '.join(EVENT_COLUMNS)}, source_file FROM staging_events ORDER BY ts")
    expected = sorted(
        (
            tuple(json.loads(text)[k] for k in JSON_KEYS) + (DAY1,)
            for text in (REAL_LOGGED_OUT, REAL_NEXT_SONG, REAL_MOJIBAKE)
        ),
        key=lambda r: r[15],
    )
    assert rows == expected

    row = {r[15]: dict(zip(EVENT_COLUMNS, r)) for r in rows}
    logged_out, next_song, mojibake = row[1541207073796], row[1541106106796], row[1541157637796]
    assert logged_out["user_id"] == ""  # an empty string, not NULL
    assert logged_out["first_name"] is None and logged_out["registration"] is None and logged_out["artist"] is None
    assert logged_out["status"] == 307 and logged_out["session_id"] == 52 and logged_out["item_in_session"] == 0
    assert next_song["user_agent"] == (
        '"Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) '
        'Chrome/35.0.1916.153 Safari/537.36"'
    )
    assert next_song["artist"] == "Des'ree"
    assert next_song["registration"] == 1540344794796.0 and next_song["length"] == 246.30812
    assert next_song["user_id"] == "8"
    assert mojibake["artist"] == "Calle 13 Featuring Caf\u00c3\u0083\u00c2\u00a9 Tacuba"
    assert loaded_files(warehouse) == [(DAY1, 3, 3, 0)]


def test_blank_lines_keep_physical_line_numbers_and_no_trailing_newline(warehouse, raw):
    content = "\n".join([line(1), "", "   ", "\t", line(2), "", "{not json", "", "", line(3), "", "42"])
    write_raw(raw, DAY1, content)  # no trailing newline; the last record is a reject on line 12
    report = load_events(warehouse, raw)

    assert staged(warehouse, "ts") == [(1,), (2,), (3,)]
    errs = rejects(warehouse)
    assert [(e[0], e[1], e[2]) for e in errs] == [(DAY1, 7, None), (DAY1, 12, None)]
    assert "Malformed JSON" in errs[0][3] and errs[0][4] == "{not json"
    assert "Top-level JSON ubigint" in errs[1][3] and errs[1][4] == "42"
    assert (report.records_read, report.records_staged, report.records_rejected) == (5, 3, 2)


def test_last_record_without_trailing_newline_is_staged(warehouse, raw):
    write_raw(raw, DAY1, line(1) + "\n" + line(2))
    write_raw(raw, DAY2, line(3) + "\n" + line(4) + "\n")
    load_events(warehouse, raw)
    assert staged(warehouse, "source_file", "ts") == [(DAY1, 1), (DAY1, 2), (DAY2, 3), (DAY2, 4)]
    assert loaded_files(warehouse) == [(DAY1, 2, 2, 0), (DAY2, 2, 2, 0)]


def test_a_file_that_grew_or_shrank_after_listing_is_read_whole(warehouse, raw):
    """The load reads what is in the file, not the size the listing saw (the reader trusts that size
    for one read, then reads on to the end)."""
    write_raw(raw, DAY1, line(1) + "\n")
    write_raw(raw, DAY2, line(3) + "\n" + line(4) + "\n")
    src = LocalFolderSource(root=str(raw))
    listed = src.list_files(LOG_PREFIX)
    write_raw(raw, DAY1, line(1) + "\n" + line(2) + "\n" + "x" * 3_000_000 + "\n")  # grew past one read
    write_raw(raw, DAY2, line(3) + "\n")
    warehouse.load_staging(STAGING_EVENTS, src, listed, "test-load", LOG, jsonpaths=src.event_jsonpaths())
    assert staged(warehouse, "source_file", "ts") == [(DAY1, 1), (DAY1, 2), (DAY2, 3)]
    assert [(e[0], e[1]) for e in rejects(warehouse)] == [(DAY1, 3)]
    assert loaded_files(warehouse) == [(DAY1, 3, 2, 1), (DAY2, 1, 1, 0)]


def test_crlf_line_endings(warehouse, raw):
    content = "\r\n".join([line(1, userId="39"), "", line(2, userId="40"), "{bad", line(3, userId="41")]) + "\r\n"
    write_raw(raw, DAY1, content)
    report = load_events(warehouse, raw)

    # The last key of each record (userId) carries no stray carriage return.
    assert staged(warehouse, "ts", "user_id") == [(1, "39"), (2, "40"), (3, "41")]
    errs = rejects(warehouse)
    assert [(e[0], e[1], e[2]) for e in errs] == [(DAY1, 4, None)]
    assert "Malformed JSON" in errs[0][3]
    assert errs[0][4].rstrip("\r") == "{bad"
    assert (report.records_read, report.records_staged, report.records_rejected) == (4, 3, 1)


def test_malformed_json_line_is_rejected_with_its_line_others_staged(warehouse, raw):
    bad = '{"artist": "x", "ts": 2'
    write_raw(raw, DAY1, "\n".join([line(1), bad, line(3), '{"ts": 4,, }', line(5)]))
    report = load_events(warehouse, raw)

    assert staged(warehouse, "ts") == [(1,), (3,), (5,)]
    errs = rejects(warehouse)
    assert [(e[0], e[1], e[2], e[4]) for e in errs] == [(DAY1, 2, None, bad), (DAY1, 4, None, '{"ts": 4,, }')]
    assert all("Malformed JSON" in e[3] for e in errs)
    assert loaded_files(warehouse) == [(DAY1, 5, 3, 2)]
    assert (report.records_read, report.records_staged, report.records_rejected) == (5, 3, 2)


def test_what_is_not_json_is_rejected_though_duckdb_parses_it(warehouse, raw):
    """Trailing commas, NaN and Infinity are not JSON (RFC 8259); DuckDB's parser accepts them, Redshift
    rejects the record. The same characters inside strings are fine."""
    lenient = ['{"ts": 2, "artist": "x",}', '{"ts": 3, "length": NaN}', '{"ts": 4, "registration": Infinity}',
               '{"ts": 5, "location": {"a": [1, ]}}', '{"ts": 6, "unknown": -Infinity}']
    fine = [line(7, artist="NaN,}", song="Infinity, ]")]
    write_raw(raw, DAY1, "\n".join([line(1), *lenient, *fine]))
    load_events(warehouse, raw)
    assert staged(warehouse, "ts") == [(1,), (7,)]
    assert [(e[1], e[2]) for e in rejects(warehouse)] == [(n, None) for n in range(2, 7)]
    assert all("Malformed JSON" in e[3] for e in rejects(warehouse))


def test_raw_text_of_a_reject_is_cut_at_1024_characters(warehouse, raw):
    long_bad = '{"artist": "' + "\u00e9" * 3000  # malformed (unterminated), 3,012 characters
    write_raw(raw, DAY1, "\n".join([line(1), long_bad, line(3, userAgent="u" * 2000)]))
    load_events(warehouse, raw)
    errs = rejects(warehouse)
    assert [(e[1], e[2]) for e in errs] == [(2, None), (3, "user_agent")]
    assert errs[0][4] == long_bad[:1024]
    assert errs[1][4] == line(3, userAgent="u" * 2000)[:1024]


DEEP = 3000  # deeper than Python's recursion limit


@pytest.mark.parametrize(
    ("deep", "staged_ts", "rejected_lines"),
    [
        ("[" * DEEP, [1, 4], [2, 3]),  # unterminated: malformed JSON
        ('{"a":' * DEEP + "1", [1, 4], [2, 3]),  # unterminated: malformed JSON
        ("[" * DEEP + "]" * DEEP, [1, 4, None], [2]),  # valid: an array, which the JSONPaths map to NULLs
        ('{"ts": 3, "x": ' + '{"a":' * DEEP + "1" + "}" * DEEP + "}", [1, 3, 4], [2]),  # valid object
    ],
    ids=["open-array", "open-object", "deep-array", "deep-object"],
)
def test_deeply_nested_value_in_a_reframed_file_is_one_record_not_a_crash(
    warehouse, raw, deep, staged_ts, rejected_lines
):
    # "{oops" makes the file be re-framed as a stream of JSON values; the deep value must stay one record.
    write_raw(raw, DAY1, "\n".join([line(1), "{oops", deep, line(4)]))
    report = load_events(warehouse, raw)

    assert staged(warehouse, "ts") == [(ts,) for ts in staged_ts]
    assert [(e[1], e[2]) for e in rejects(warehouse)] == [(n, None) for n in rejected_lines]
    assert (report.records_read, report.records_staged, report.records_rejected) == (
        4, len(staged_ts), len(rejected_lines),
    )


def test_record_with_several_bad_values_names_the_first_column(warehouse, raw):
    write_raw(raw, DAY1, "\n".join([
        line(1, status="abc", gender="toolongvalue", length="x"),
        line(2, status="abc", userId="u" * 65),
    ]))
    load_events(warehouse, raw)
    errs = rejects(warehouse)
    assert [(e[1], e[2]) for e in errs] == [(1, "gender"), (2, "status")]
    assert "String length exceeds" in errs[0][3] and "Invalid digit" in errs[1][3]


def test_invalid_utf8_rejects_only_that_line(warehouse, raw):
    content = b"\n".join([
        line(1).encode(),
        b'{"artist": "caf\xe9", "ts": 2}',  # latin-1 byte, not UTF-8
        b"",
        line(4, artist="Beyonc\u00e9").encode(),
        b'{"artist": "\xc3\x28", "ts": 5}',  # broken two-byte sequence
        line(6).encode(),
    ])
    write_raw(raw, DAY1, content)
    report = load_events(warehouse, raw)

    assert staged(warehouse, "ts", "artist") == [(1, "Des'ree"), (4, "Beyonc\u00e9"), (6, "Des'ree")]
    errs = rejects(warehouse)
    assert [(e[0], e[1], e[2]) for e in errs] == [(DAY1, 2, None), (DAY1, 5, None)]
    assert all("UTF-8" in e[3] for e in errs)
    assert "0xe9" in errs[0][3] and "0xc3" in errs[1][3]
    assert (report.records_read, report.records_staged, report.records_rejected) == (5, 3, 2)
    assert_bookkeeping_consistent(warehouse)


def test_utf8_bom_at_file_start_is_ignored(warehouse, raw):
    write_raw(raw, DAY1, b"\xef\xbb\xbf" + line(1, artist="A").encode() + b"\n" + line(2).encode())
    write_raw(raw, DAY2, b"\xef\xbb\xbf" + json.dumps({"ts": 3, "itemInSession": "x"}).encode())
    load_events(warehouse, raw)

    assert staged(warehouse, "ts", "artist") == [(1, "A"), (2, "Des'ree")]
    errs = rejects(warehouse)
    assert [(e[0], e[1], e[2]) for e in errs] == [(DAY2, 1, "item_in_session")]
    assert not errs[0][4].startswith("\ufeff")
    assert loaded_files(warehouse) == [(DAY1, 2, 2, 0), (DAY2, 1, 0, 1)]


@pytest.mark.parametrize(
    "content", [b"", b"\n\n   \n\t\r\n", b"\xef\xbb\xbf"], ids=["empty", "blank-lines", "bom-only"]
)
def test_empty_file_is_listed_with_zero_records(warehouse, raw, content):
    write_raw(raw, DAY1, content)
    write_raw(raw, DAY2, line(1))
    report = load_events(warehouse, raw)

    assert loaded_files(warehouse) == [(DAY1, 0, 0, 0), (DAY2, 1, 1, 0)]
    assert (report.files, report.records_read, report.records_staged, report.records_rejected) == (2, 1, 1, 0)
    assert staged(warehouse, "source_file", "ts") == [(DAY2, 1)]
    assert rejects(warehouse) == []


def test_top_level_values_that_are_not_objects_are_rejected(warehouse, raw):
    """Scalars are never records. An array is one when a JSONPaths file maps it (Redshift: "If your data
    files use arrays, you must specify a JSONPaths file"): the events' key paths select nothing in it,
    so it loads a row of NULLs; index paths would select its elements."""
    write_raw(raw, DAY1, "\n".join([line(1), "[1,2]", "42", '"text"', "null", "true", f"[{line(7)}]", line(8)]))
    load_events(warehouse, raw)

    assert staged(warehouse, "ts") == [(1,), (8,), (None,), (None,)]
    errs = rejects(warehouse)
    assert [(e[1], e[2], e[4]) for e in errs] == [
        (3, None, "42"), (4, None, '"text"'), (5, None, "null"), (6, None, "true"),
    ]
    assert all("where an object or an array was expected" in e[3] for e in errs)
    assert "bigint" in errs[0][3] and "boolean" in errs[3][3]
    assert_bookkeeping_consistent(warehouse)
    assert loaded_files(warehouse) == [(DAY1, 8, 4, 4)]


def test_an_array_record_is_rejected_without_a_jsonpaths_file(warehouse, raw):
    key = "song_data/A/A/A/TRAAAAW128F429D538.json"
    write_raw(raw, key, "[1, 2]")  # songs load with 'auto': it maps object keys only
    load_songs(warehouse, raw)
    assert [(e[1], e[2], e[4]) for e in rejects(warehouse, "staging_songs")] == [(1, None, "[1, 2]")]
    assert "where an object was expected" in rejects(warehouse, "staging_songs")[0][3]


def test_objects_back_to_back_on_one_line_are_separate_records(warehouse, raw):
    write_raw(raw, DAY1, "\n".join([line(1) + line(2), "", line(3) + " " + line(4), "{oops", line(6)]))
    report = load_events(warehouse, raw)

    assert staged(warehouse, "ts") == [(1,), (2,), (3,), (4,), (6,)]
    errs = rejects(warehouse)
    # Re-framing the file as a stream keeps physical line numbers for what follows.
    assert [(e[0], e[1], e[2], e[4]) for e in errs] == [(DAY1, 4, None, "{oops")]
    assert (report.records_read, report.records_staged, report.records_rejected) == (6, 5, 1)


SONG = {
    "num_songs": 1, "artist_id": "ARD7TVE1187B99BFB1", "artist_latitude": None, "artist_longitude": None,
    "artist_location": "California - LA", "artist_name": "Casual", "song_id": "SOMZWCG12A8C13C480",
    "title": "I Didn't Mean To", "duration": 218.93179, "year": 0,
}
SONG_COLUMNS = [c.name for c in STAGING_SONGS.columns if c.name != "source_file"]


def test_pretty_printed_song_object_is_one_record(warehouse, raw):
    pretty = "song_data/A/A/A/TRAAAAW128F429D538.json"
    compact = "song_data/A/A/B/TRAABJL12903CDCF1A.json"
    write_raw(raw, pretty, json.dumps(SONG, indent=2))
    write_raw(raw, compact, json.dumps({**SONG, "song_id": "SOX", "artist_latitude": 35.14968}))
    report = load_songs(warehouse, raw)

    assert (report.records_read, report.records_staged, report.records_rejected) == (2, 2, 0)
    rows = warehouse.query(f"SELECT {', '.join(SONG_COLUMNS)}, source_file FROM staging_songs ORDER BY source_file")
    assert rows == [
        tuple(SONG[c] for c in SONG_COLUMNS) + (pretty,),
        tuple({**SONG, "song_id": "SOX", "artist_latitude": 35.14968}[c] for c in SONG_COLUMNS) + (compact,),
    ]
    assert loaded_files(warehouse, "staging_songs") == [(pretty, 1, 1, 0), (compact, 1, 1, 0)]


def test_pretty_printed_objects_are_numbered_by_their_last_line(warehouse, raw):
    """stl_load_errors.line_number for COPY from JSON: "the last line of the JSON object"."""
    key = "song_data/A/A/A/TRAAAAW128F429D538.json"
    first = json.dumps(SONG, indent=2)  # 12 lines
    second = json.dumps({**SONG, "song_id": "SOBAD", "year": "nineteen"}, indent=2)
    write_raw(raw, key, first + "\n" + second + "\n")
    load_songs(warehouse, raw)

    assert staged(warehouse, "song_id", table="staging_songs") == [("SOMZWCG12A8C13C480",)]
    errs = rejects(warehouse, "staging_songs")
    assert [(e[0], e[1], e[2]) for e in errs] == [(key, first.count("\n") + second.count("\n") + 2, "year")]
    assert "Invalid digit" in errs[0][3]
    assert loaded_files(warehouse, "staging_songs") == [(key, 2, 1, 1)]


def test_unknown_keys_are_ignored_and_missing_keys_load_null(warehouse, raw):
    extra = {**event(1), "extraKey": "ignored", "nested": {"a": [1]}}
    missing = {"ts": 2, "userId": "7", "page": "Home"}
    write_raw(raw, DAY1, json.dumps(extra) + "\n" + json.dumps(missing))
    load_events(warehouse, raw)

    rows = warehouse.query(f"SELECT {', '.join(EVENT_COLUMNS)} FROM staging_events ORDER BY ts")
    assert rows[0] == tuple(event(1)[k] for k in JSON_KEYS)
    assert rows[1] == tuple(missing.get(k) for k in JSON_KEYS)
    assert rejects(warehouse) == []


# --- value typing ----------------------------------------------------------------------------------

STAGED, REJECTED = "staged", "rejected"

TYPING_CASES = [
    # (json key, raw JSON value text, outcome, staged value | (column, reason substring))
    ("itemInSession", '"abc"', REJECTED, ("item_in_session", "Invalid digit")),
    ("sessionId", '"abc"', REJECTED, ("session_id", "Invalid digit")),
    ("status", '"abc"', REJECTED, ("status", "Invalid digit")),
    ("ts", '"abc"', REJECTED, ("ts", "Invalid digit")),
    ("itemInSession", '""', STAGED, None),
    ("status", '""', STAGED, None),
    ("length", '""', STAGED, None),
    ("registration", '""', STAGED, None),
    ("length", '"   "', STAGED, None),
    ("itemInSession", "null", STAGED, None),
    ("itemInSession", '"12"', STAGED, 12),
    ("sessionId", '"-12"', STAGED, -12),
    ("sessionId", "-5", STAGED, -5),
    ("ts", '"1541105830796"', STAGED, 1541105830796),
    ("status", "2147483647", STAGED, 2147483647),
    ("status", "-2147483648", STAGED, -2147483648),
    ("ts", "9223372036854775807", STAGED, 9223372036854775807),
    ("itemInSession", "1.5", REJECTED, ("item_in_session", "Invalid digit")),
    ("itemInSession", '"1.5"', REJECTED, ("item_in_session", "Invalid digit")),
    # 1.0 is a fraction literal: Redshift rejects it into an integer column (Invalid digit), so does the loader.
    ("itemInSession", "1.0", REJECTED, ("item_in_session", "Invalid digit")),
    ("itemInSession", "1e2", REJECTED, ("item_in_session", "Invalid digit")),
    ("status", "2147483648", REJECTED, ("status", "overflow")),
    ("status", "3000000000", REJECTED, ("status", "overflow")),
    ("itemInSession", '"3000000000"', REJECTED, ("item_in_session", "overflow")),
    ("ts", "9223372036854775808", REJECTED, ("ts", "overflow")),
    ("ts", '"9223372036854775808"', REJECTED, ("ts", "overflow")),
    # Integers past 64 bits are still integers out of range: an overflow, not an invalid digit.
    ("status", "99999999999999999999", REJECTED, ("status", "overflow")),
    ("ts", "99999999999999999999", REJECTED, ("ts", "overflow")),
    ("ts", "-9223372036854775809", REJECTED, ("ts", "overflow")),
    ("itemInSession", "true", REJECTED, ("item_in_session", "Invalid digit")),
    ("status", "false", REJECTED, ("status", "Invalid digit")),
    ("itemInSession", '{"a": 1}', REJECTED, ("item_in_session", "Invalid digit")),
    ("sessionId", "[1]", REJECTED, ("session_id", "Invalid digit")),
    ("length", '"abc"', REJECTED, ("length", "Invalid digit")),
    ("length", '"1e3"', STAGED, 1000.0),
    ("length", '"246.30812"', STAGED, 246.30812),
    ("length", "300", STAGED, 300.0),
    ("registration", "1540919166796.0", STAGED, 1540919166796.0),
    ("length", "true", REJECTED, ("length", "Invalid digit")),
    ("length", "[1.5]", REJECTED, ("length", "Invalid digit")),
    ("length", '"NaN"', REJECTED, ("length", "Invalid digit")),
    ("length", '"Infinity"', REJECTED, ("length", "Invalid digit")),
    ("length", "1e400", REJECTED, ("length", "overflow")),
    # Not numbers in Redshift's grammar (DuckDB's own cast accepts both).
    ("length", '"1_000"', REJECTED, ("length", "Invalid digit")),
    ("registration", '"+-1"', REJECTED, ("registration", "Invalid digit")),
    # Into varchar: numbers and booleans as their text, objects and arrays as JSON text.
    ("userId", "39", STAGED, "39"),
    ("userId", "true", STAGED, "true"),
    ("artist", '{"a": [1, 2]}', STAGED, '{"a":[1,2]}'),
    ("userId", '""', STAGED, ""),
    ("userId", '"NULL"', STAGED, "NULL"),
]

KEY_TO_COLUMN = dict(zip(JSON_KEYS, EVENT_COLUMNS))


def typing_case_line(k: int, key: str, value: str) -> str:
    """Line k of the typing file: a valid event (ts 1000+k, userId case-k) with ``key`` set to ``value``."""
    rec = event(1000 + k, userId=f"case-{k}")
    rec.pop(key)
    return json.dumps(rec)[:-1] + f', "{key}": {value}}}'


@pytest.fixture(scope="module")
def typing_load(tmp_path_factory):
    """All typing cases in one file, one per line, loaded once."""
    base = tmp_path_factory.mktemp("typing")
    wh = DuckDBWarehouse(path=str(base / "wh.duckdb"), max_errors=10**6)
    wh.ensure_tables()
    lines = [typing_case_line(k, key, value) for k, (key, value, _, _) in enumerate(TYPING_CASES, start=1)]
    write_raw(base / "raw", DAY1, "\n".join(lines))
    return wh, load_events(wh, base / "raw")


def test_typing_cases_bookkeeping(typing_load):
    wh, report = typing_load
    n_staged = sum(1 for case in TYPING_CASES if case[2] == STAGED)
    assert (report.records_read, report.records_staged, report.records_rejected) == (
        len(TYPING_CASES), n_staged, len(TYPING_CASES) - n_staged,
    )
    assert_bookkeeping_consistent(wh)


@pytest.mark.parametrize(
    ("k", "key", "value", "outcome", "expected"),
    [(k, *case) for k, case in enumerate(TYPING_CASES, start=1)],
    ids=[f"{c[0]}={c[1]}" for c in TYPING_CASES],
)
def test_value_typing(typing_load, k, key, value, outcome, expected):
    wh, _report = typing_load
    column = KEY_TO_COLUMN[key]
    if key == "ts":  # identify the record by another field
        rows = wh.query(f"SELECT {column} FROM staging_events WHERE user_id = ?", [f"case-{k}"])
    else:
        rows = wh.query(f"SELECT {column} FROM staging_events WHERE ts = ?", [1000 + k])
    errs = wh.query(
        "SELECT source_file, line_number, column_name, reason, raw_text FROM load_errors WHERE line_number = ?", [k]
    )
    if outcome == STAGED:
        assert errs == []
        assert rows == [(expected,)]
        assert rows[0][0] is None if expected is None else type(rows[0][0]) is type(expected)
    else:
        err_column, reason = expected
        assert rows == []
        assert [(e[0], e[1], e[2], e[4]) for e in errs] == [(DAY1, k, err_column, typing_case_line(k, key, value))]
        assert reason.lower() in errs[0][3].lower(), errs[0][3]


def test_varchar_limit_counts_bytes_and_never_truncates(warehouse, raw):
    lines = [
        line(1, gender="\u00e9" * 4),  # 4 chars, 8 bytes: fits varchar(8)
        line(2, gender="\u00e9" * 5),  # 5 chars, 10 bytes: too long
        line(3, gender="M" * 8),
        line(4, gender="M" * 9),
        json.dumps(event(5, gender="\U0001f600\U0001f600")),  # 2 chars, 8 bytes (escaped surrogate pair)
        json.dumps(event(6, gender="\U0001f600\U0001f600M"), ensure_ascii=False),  # 3 chars, 9 bytes
        json.dumps(event(7, gender="\u00e9" * 4), ensure_ascii=True),  # 24 characters of escapes, 8 bytes
        line(8, userAgent="u" * 1023 + "\u00e9"),  # 1025 bytes into varchar(1024)
        line(9, userAgent="u" * 1024),
    ]
    write_raw(raw, DAY1, "\n".join(lines))
    load_events(warehouse, raw)

    assert staged(warehouse, "ts", "gender") == [
        (1, "\u00e9" * 4), (3, "M" * 8), (5, "\U0001f600\U0001f600"), (7, "\u00e9" * 4), (9, "F"),
    ]
    errs = rejects(warehouse)
    assert [(e[1], e[2]) for e in errs] == [(2, "gender"), (4, "gender"), (6, "gender"), (8, "user_agent")]
    assert all("String length exceeds DDL length" in e[3] for e in errs)
    assert "10 bytes > 8" in errs[0][3] and "9 bytes > 8" in errs[1][3] and "1025 bytes > 1024" in errs[3][3]
    assert warehouse.query("SELECT max(octet_length(encode(user_agent))) FROM staging_events") == [(1024,)]


def test_nested_jsonpaths_and_custom_names_map_by_position(warehouse, raw):
    paths = [
        "$['band']", "$.auth", '$["first name"]', "$['user']['gender']", "$['pos'][0]", "$.lastName",
        "$['len']", "$['level']", "$['location']", "$['method']", "$['page']", "$['registration']",
        "$['session']['id']", "$['song']", "$['status']", "$['ts']", "$['userAgent']", "$['user']['id']",
    ]
    write_raw(raw, "log_json_path.json", json.dumps({"jsonpaths": paths}, indent=4))
    rec = {
        "ts": 1, "user": {"id": "42", "gender": "M"}, "band": "Blur", "auth": "Logged In", "first name": "Ann",
        "pos": [7, 8], "lastName": "Lee", "len": "12.5", "level": "paid", "location": "X", "method": "GET",
        "page": "NextSong", "registration": 1.0, "session": {"id": 99}, "song": "Song 2", "status": 200,
        "userAgent": "UA", "artist": "ignored: not in the JSONPaths", "gender": "F", "itemInSession": 3,
    }
    write_raw(raw, DAY1, json.dumps(rec) + "\n" + json.dumps({**rec, "ts": 2, "pos": ["x"]}))
    load_events(warehouse, raw)

    rows = warehouse.query(f"SELECT {', '.join(EVENT_COLUMNS)} FROM staging_events")
    assert rows == [
        ("Blur", "Logged In", "Ann", "M", 7, "Lee", 12.5, "paid", "X", "GET", "NextSong", 1.0, 99,
         "Song 2", 200, 1, "UA", "42"),
    ]
    errs = rejects(warehouse)
    assert [(e[1], e[2]) for e in errs] == [(2, "item_in_session")] and "Invalid digit" in errs[0][3]


def test_jsonpaths_in_a_different_order_map_by_position_not_by_name(warehouse, raw):
    paths = list(DEFAULT_EVENT_JSONPATHS)
    paths[0], paths[1] = paths[1], paths[0]  # artist <- $['auth'], auth <- $['artist']
    write_raw(raw, "log_json_path.json", json.dumps({"jsonpaths": paths}))
    write_raw(raw, DAY1, line(1, artist="Muse", auth="Logged In"))
    load_events(warehouse, raw)
    assert staged(warehouse, "artist", "auth") == [("Logged In", "Muse")]


@requires_real_sample
def test_real_jsonpaths_file_is_used(warehouse, raw):
    write_raw(raw, "log_json_path.json", (REAL_SAMPLE / "log_json_path.json").read_bytes())
    assert LocalFolderSource(root=str(raw)).event_jsonpaths() == list(DEFAULT_EVENT_JSONPATHS)
    write_raw(raw, DAY1, REAL_NEXT_SONG)
    load_events(warehouse, raw)
    assert staged(warehouse, "artist", "user_id") == [("Des'ree", "8")]


MALFORMED_JSONPATHS = {
    "not-json": "{jsonpaths: [",
    "no-jsonpaths-key": json.dumps({"paths": list(DEFAULT_EVENT_JSONPATHS)}),
    "top-level-array": json.dumps(list(DEFAULT_EVENT_JSONPATHS)),
    "too-few-paths": json.dumps({"jsonpaths": list(DEFAULT_EVENT_JSONPATHS)[:-1]}),
    "non-string-path": json.dumps({"jsonpaths": list(DEFAULT_EVENT_JSONPATHS)[:-1] + [5]}),
    "jsonpaths-null": json.dumps({"jsonpaths": None}),
    "jsonpaths-number": json.dumps({"jsonpaths": 18}),
    "jsonpaths-a-string": json.dumps({"jsonpaths": "$" * 18}),
    "path-without-dollar": json.dumps({"jsonpaths": ["artist"] + list(DEFAULT_EVENT_JSONPATHS)[1:]}),
    "wildcard-path": json.dumps({"jsonpaths": ["$['artist'][*]"] + list(DEFAULT_EVENT_JSONPATHS)[1:]}),
}


@pytest.mark.parametrize("content", list(MALFORMED_JSONPATHS.values()), ids=list(MALFORMED_JSONPATHS))
def test_malformed_jsonpaths_file_is_a_source_error(warehouse, raw, content):
    write_raw(raw, DAY1, line(1))
    write_raw(raw, "log_json_path.json", content)
    with pytest.raises(SourceError, match="log_json_path.json"):
        load_events(warehouse, raw)  # event_jsonpaths() or the load itself: either way a SourceError
    assert staged(warehouse, "ts") == []


# --- MAXERROR, atomicity and bookkeeping -----------------------------------------------------------


@pytest.mark.parametrize("full_refresh", [False, True], ids=["incremental", "full-refresh"])
def test_too_many_errors_fails_and_keeps_the_previous_table(tmp_path, raw, full_refresh):
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"), max_errors=2)
    wh.ensure_tables()
    write_raw(raw, DAY1, "\n".join([line(1), line(2)]))
    load_events(wh, raw, load_id="good-load")
    before_rows = wh.query("SELECT * FROM staging_events ORDER BY ALL")
    before_files = loaded_files(wh)
    assert len(before_rows) == 2 and rejects(wh) == []

    write_raw(raw, DAY2, "\n".join([line(3), '{"ts": 4, "status": "abc"}', "", "{bad", line(6), "7"]))
    with pytest.raises(TooManyLoadErrors) as excinfo:
        load_events(wh, raw, load_id="bad-load", full_refresh=full_refresh)

    message = str(excinfo.value)
    assert "3 records rejected" in message and "SPARKIFY_MAX_ERRORS=2" in message
    assert f"{DAY2} line 2 column status" in message and "Invalid digit" in message
    assert wh.query("SELECT * FROM staging_events ORDER BY ALL") == before_rows
    assert loaded_files(wh) == before_files
    assert wh.query(
        "SELECT source_file, line_number, column_name, load_id FROM load_errors ORDER BY line_number"
    ) == [(DAY2, 2, "status", "bad-load"), (DAY2, 4, None, "bad-load"), (DAY2, 6, None, "bad-load")]


def test_errors_up_to_the_limit_are_accepted(tmp_path, raw):
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"), max_errors=3)
    wh.ensure_tables()
    write_raw(raw, DAY1, "\n".join([line(1), '{"ts": 2, "status": "abc"}', "{bad", line(4), "5"]))
    report = load_events(wh, raw)

    assert (report.records_read, report.records_staged, report.records_rejected) == (5, 2, 3)
    assert staged(wh, "ts") == [(1,), (4,)]
    assert [(e[1], e[2]) for e in rejects(wh)] == [(2, "status"), (3, None), (5, None)]
    assert [(e["line_number"], e["column_name"]) for e in report.first_errors] == [(2, "status"), (3, None), (5, None)]


def test_invalid_utf8_rejects_count_towards_max_errors(tmp_path, raw):
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"), max_errors=0)
    wh.ensure_tables()
    write_raw(raw, DAY1, line(1).encode() + b"\n\n" + b'{"artist": "\xff"}')
    with pytest.raises(TooManyLoadErrors, match=f"{DAY1} line 3: Invalid UTF-8"):
        load_events(wh, raw, load_id="utf8")
    assert staged(wh, "ts") == [] and loaded_files(wh) == []
    assert [(e[0], e[1], e[2]) for e in rejects(wh)] == [(DAY1, 3, None)]


def test_bookkeeping_invariant_across_files_and_batches(warehouse, raw, monkeypatch):
    write_raw(raw, DAY1, "\n".join([line(1), "{bad", line(3, gender="ééééé")]))
    write_raw(raw, DAY2, b"\xef\xbb\xbf" + line(4).encode() + b"\r\n\xff\r\n" + (line(5) + line(6)).encode())
    write_raw(raw, DAY3, "")
    write_raw(raw, "log_data/2018/12/2018-12-01-events.json", json.dumps(event(7), indent=2) + "\n42")
    single = load_events(warehouse, raw)
    assert_bookkeeping_consistent(warehouse)
    expected_files = [
        (DAY1, 3, 1, 2), (DAY2, 4, 3, 1), (DAY3, 0, 0, 0), ("log_data/2018/12/2018-12-01-events.json", 2, 1, 1),
    ]
    assert loaded_files(warehouse) == expected_files
    contents = (staged(warehouse, "*"), rejects(warehouse))

    original = json_loader.iter_batches
    monkeypatch.setattr(json_loader, "iter_batches", lambda files, *_: original(files, batch_bytes=1))
    batched = load_events(warehouse, raw, load_id="batched", full_refresh=True)  # re-read, one file per batch
    assert_bookkeeping_consistent(warehouse)
    assert loaded_files(warehouse) == expected_files
    assert (staged(warehouse, "*"), rejects(warehouse)) == contents
    assert (batched.files, batched.records_read, batched.records_staged, batched.records_rejected) == (
        single.files, single.records_read, single.records_staged, single.records_rejected,
    ) == (4, 9, 5, 4)


def test_a_load_that_fits_the_sort_goes_in_in_file_and_line_order_in_full_row_groups(warehouse, raw, monkeypatch):
    """Several batches typed side by side still end up as full row groups in file and line order, so a
    later day's append does not make the checkpoint merge part-filled groups; above the row limit the
    load is not sorted (not checked here: DuckDB then lays rows out as its threads finish)."""
    per_file = 100_000
    keys = [DAY1, DAY2, DAY3]
    for n, key in enumerate(keys):
        write_raw(raw, key, "".join(f'{{"ts":{n * per_file + i},"userId":"{i % 7}"}}\n' for i in range(per_file)))
    original = json_loader.iter_batches
    monkeypatch.setattr(json_loader, "iter_batches", lambda files, *_: original(files, batch_bytes=1))
    report = load_events(warehouse, raw)
    assert report.records_staged == 3 * per_file
    in_storage_order = warehouse.query("SELECT source_file, ts FROM staging_events ORDER BY rowid")
    assert in_storage_order == sorted(in_storage_order)
    groups = [count for (count,) in warehouse.query(
        "SELECT max(count) FROM pragma_storage_info('staging_events') GROUP BY row_group_id ORDER BY row_group_id")]
    assert sum(groups) == 3 * per_file
    assert all(count == groups[0] for count in groups[:-1]) and groups[-1] <= groups[0]


@pytest.mark.parametrize("shown, expected", [
    ("1.1 GiB", 1.1 * 2**30), ("953.6 MiB", 953.6 * 2**20), ("1200MB", 1.2e9), ("512 KiB", 512 * 1024),
    ("100B", 100), ("no limit", None),
])
def test_memory_limit_as_duckdb_shows_it_is_read_in_bytes(shown, expected):
    """The sorted-insert row limit scales with the memory limit, read from DuckDB's own display."""
    if expected is None:
        assert duckdb_warehouse._bytes(shown) is None
    else:
        assert duckdb_warehouse._bytes(shown) == pytest.approx(expected)


def _contents(warehouse: DuckDBWarehouse):
    return (
        staged(warehouse, "*"),
        rejects(warehouse),
        warehouse.query(
            "SELECT source_file, records_read, records_staged, records_rejected FROM loaded_files ORDER BY ALL"
        ),
    )


def test_reload_is_idempotent(warehouse, raw):
    write_raw(raw, DAY1, "\n".join([line(1), "{bad", line(3, itemInSession="x")]))
    write_raw(raw, DAY2, line(4) + "\n\n" + line(5))
    load_events(warehouse, raw, load_id="first")
    first = _contents(warehouse)
    assert len(first[0]) == 3 and len(first[1]) == 2

    load_events(warehouse, raw, load_id="second")  # same files again
    assert _contents(warehouse) == first

    report = load_events(warehouse, raw, load_id="third", full_refresh=True)  # every file read again
    assert _contents(warehouse) == first
    assert (report.files, report.records_read, report.records_staged, report.records_rejected) == (2, 5, 3, 2)
    assert warehouse.query("SELECT DISTINCT load_id FROM load_errors") == [("third",)]
    assert warehouse.query("SELECT DISTINCT load_id FROM loaded_files") == [("third",)]


def test_reloading_one_table_keeps_the_other_tables_bookkeeping(warehouse, raw):
    write_raw(raw, DAY1, line(1) + "\n{bad")
    write_raw(raw, "song_data/A/A/A/TRAAAAW128F429D538.json", json.dumps({**SONG, "year": "x"}))
    load_events(warehouse, raw)
    load_songs(warehouse, raw)
    load_events(warehouse, raw, load_id="again", full_refresh=True)
    assert [(e[0], e[1], e[2]) for e in rejects(warehouse)] == [(DAY1, 2, None)]
    assert [(e[0], e[1], e[2]) for e in rejects(warehouse, "staging_songs")] == [
        ("song_data/A/A/A/TRAAAAW128F429D538.json", 1, "year")
    ]
    assert loaded_files(warehouse, "staging_songs") == [("song_data/A/A/A/TRAAAAW128F429D538.json", 1, 0, 1)]


@requires_real_sample
def test_real_sample_loads_every_line(warehouse):
    src = LocalFolderSource(root=str(REAL_SAMPLE))
    files = src.list_files(LOG_PREFIX)[:5]
    report = warehouse.load_staging(STAGING_EVENTS, src, files, "real", LOG, jsonpaths=src.event_jsonpaths())
    expected = []
    for f in files:
        n = sum(1 for ln in (REAL_SAMPLE / f.key).read_text(encoding="utf-8").split("\n") if ln.strip())
        expected.append((f.key, n, n, 0))
    assert loaded_files(warehouse) == expected
    assert report.records_rejected == 0 and report.records_staged == sum(e[1] for e in expected)
    assert_bookkeeping_consistent(warehouse)
    assert warehouse.query("SELECT count(*) FROM staging_events WHERE user_agent LIKE '%\\/%'") == [(0,)]

    songs = src.list_files(SONG_PREFIX)
    song_report = warehouse.load_staging(STAGING_SONGS, src, songs, "real", LOG)
    assert (song_report.records_read, song_report.records_staged, song_report.records_rejected) == (
        len(songs), len(songs), 0,
    )


# --- property: every line accounted for, values as an oracle of the rules predicts -------------------

class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()  # the key is left out of the record
INT32 = (-(2**31), 2**31 - 1)
_REDSHIFT_INT = re.compile(r"[+-]?[0-9]+")
_REDSHIFT_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


class Rejected(Exception):
    def __init__(self, column: str, reason: str):
        self.column, self.reason = column, reason


def oracle_varchar(column: str, value, limit: int):
    if value is MISSING or value is None:
        return None
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    if len(text.encode("utf-8")) > limit:
        raise Rejected(column, "String length exceeds")
    return text


def oracle_integer(column: str, value, lo: int, hi: int):
    if value is MISSING or value is None:
        return None
    if isinstance(value, bool) or isinstance(value, float):
        raise Rejected(column, "Invalid digit")
    if isinstance(value, str):
        text = value.strip(" ")
        if text == "":
            return None
        if not _REDSHIFT_INT.fullmatch(text):
            raise Rejected(column, "Invalid digit")
        value = int(text)
    if not lo <= value <= hi:
        raise Rejected(column, "overflow")
    return value


def oracle_double(column: str, value):
    if value is MISSING or value is None:
        return None
    if isinstance(value, bool):
        raise Rejected(column, "Invalid digit")
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        return value
    text = value.strip(" ")
    if text == "":
        return None
    if not _REDSHIFT_FLOAT.fullmatch(text) or not math.isfinite(float(text)):
        raise Rejected(column, "Invalid digit")
    return float(text)


def oracle(fields: dict):
    """(artist, gender, item_in_session, length) as staged, or Rejected for the first bad column."""
    return (
        oracle_varchar("artist", fields["artist"], 512),
        oracle_varchar("gender", fields["gender"], 8),
        oracle_integer("item_in_session", fields["itemInSession"], *INT32),
        oracle_double("length", fields["length"]),
    )


short_text = st.text(max_size=12)
long_text = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x10000, max_codepoint=0x1F64F), min_size=127, max_size=130),
    st.sampled_from(["x" * 512, "x" * 513, "\u00e9" * 256, "\u00e9" * 256 + "x"]),
)
# Weighted so that most records reach the numeric columns (an early bad varchar rejects the record first).
varchar_values = st.one_of(
    short_text, short_text, short_text, st.just(MISSING), st.none(), st.booleans(), st.integers(-(10**6), 10**6),
    long_text,
)
gender_values = st.one_of(
    st.sampled_from(["M", "F"]), st.sampled_from(["M", "F"]), st.just(MISSING), st.none(),
    st.sampled_from(["\u00e9" * 4, "\u00e9" * 5, "MMMMMMMM", "MMMMMMMMM"]), st.text(max_size=5),
)
int_values = st.one_of(
    st.integers(-100, 100), st.just(MISSING), st.none(), st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**40), 2**40).map(str), st.integers(0, 99).map(lambda i: f"  {i} "),
    st.sampled_from(["", "  ", "abc", "1.5", "1e3", "+7", "-0", "007", "0x1F", "1_000", "\u0661"]),
    st.text(alphabet="0123456789+-. eE_", max_size=6),
)
double_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.just(MISSING), st.none(), st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["", "  ", "abc", "1e3", " 2.5 ", "NaN", "Infinity", "-inf", "1e999", ".5", "5.", "1_000", "+-1"]),
    st.text(alphabet="0123456789+-. eE_", max_size=6),
)
record_fields = st.fixed_dictionaries(
    {"artist": varchar_values, "gender": gender_values, "itemInSession": int_values, "length": double_values}
)
MALFORMED = ["{bad", '{"artist": }', "{'ts': 1}", "not json", '{"ts": 1', '"unterminated', "{", "]",
             # Not JSON, though DuckDB's own parser takes them: Redshift rejects the record.
             '{"ts": 1,}', '{"length": NaN}', '{"length": -Infinity}', '{"a": [1, ]}']

LINE_STRATEGIES = {
    "record": st.tuples(st.just("record"), record_fields, st.booleans()),
    "malformed": st.tuples(st.just("malformed"), st.one_of(
        st.sampled_from(MALFORMED),
        st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=20).map(
            lambda t: "#" + t
        ),
    )),
    "blank": st.tuples(st.just("blank"), st.sampled_from(["", " ", "\t", "  \t "])),
    "badutf8": st.tuples(
        st.just("badutf8"), st.sampled_from([b'{"artist": "\xff", "ts": 0}', b"\xc3\x28", b"\xed\xa0\x80"])
    ),
    "nonobject": st.tuples(st.just("nonobject"), st.sampled_from(["42", '"s"', "null", "true", "-1.5"])),
}
# Mostly records: they carry the typing rules; the other kinds exercise framing and line accounting.
line_kinds = st.sampled_from(["record"] * 6 + ["malformed", "blank", "badutf8", "nonobject"]).flatmap(
    LINE_STRATEGIES.__getitem__
)
file_specs = st.tuples(
    st.lists(line_kinds, max_size=12), st.sampled_from([b"\n", b"\r\n"]), st.booleans(), st.booleans()
)


def render(lines: list, eol: bytes, trailing: bool, bom: bool) -> tuple[bytes, dict]:
    """File bytes and, per physical line number, what the loader must do with that line."""
    out, expect = [], {}
    for number, (kind, *args) in enumerate(lines, start=1):
        if kind == "record":
            fields, ascii_only = args
            rec = {k: v for k, v in fields.items() if v is not MISSING}
            rec["ts"] = number
            out.append(json.dumps(rec, ensure_ascii=ascii_only).encode("utf-8"))
            try:
                expect[number] = ("staged", oracle(fields))
            except Rejected as rej:
                expect[number] = ("rejected", rej.column, rej.reason)
        elif kind == "badutf8":
            out.append(args[0])
            expect[number] = ("rejected", None, "UTF-8")
        elif kind == "malformed":
            out.append(args[0].encode("utf-8"))
            expect[number] = ("rejected", None, "Malformed JSON")
        elif kind == "nonobject":
            out.append(args[0].encode("utf-8"))
            expect[number] = ("rejected", None, "where an object or an array was expected")
        else:
            out.append(args[0].encode("utf-8"))
    data = eol.join(out) + (eol if trailing and out else b"")
    return (b"\xef\xbb\xbf" if bom else b"") + data, expect


@pytest.fixture(scope="module")
def property_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("property")
    wh = DuckDBWarehouse(path=str(base / "wh.duckdb"), max_errors=10**6)
    wh.ensure_tables()
    return wh, base / "raw"


# Deterministic and bounded: no example database written into the repository, no shrinking (the assertion
# messages name the file, line and reason already), so a failing run stays as fast as a passing one.
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(specs=st.lists(file_specs, min_size=1, max_size=2))
def test_property_every_line_accounted_for_and_values_follow_the_rules(property_env, specs):
    wh, root = property_env
    shutil.rmtree(root, ignore_errors=True)
    expected = {}
    for i, spec in enumerate(specs):
        key = f"log_data/2018/11/2018-11-0{i + 1}-events.json"
        data, expect = render(*spec)
        write_raw(root, key, data)
        expected[key] = expect

    report = load_events(wh, root, full_refresh=True)  # each example stands alone

    assert report.records_read == report.records_staged + report.records_rejected
    assert report.records_read == sum(len(e) for e in expected.values())
    assert_bookkeeping_consistent(wh)
    rows = wh.query("SELECT source_file, ts, artist, gender, item_in_session, length FROM staging_events")
    errs = wh.query(
        "SELECT source_file, line_number, column_name, reason FROM load_errors WHERE table_name = 'staging_events'"
    )
    got_staged = {(f, ts): tuple(v) for f, ts, *v in rows}
    got_rejected = {}
    for f, n, column, reason in errs:
        assert (f, n) not in got_rejected, f"line {n} of {f} rejected twice"
        got_rejected[(f, n)] = (column, reason)
    assert len(got_staged) == len(rows), "two staged rows claim the same line"
    assert not set(got_staged) & set(got_rejected)

    for key, expect in expected.items():
        for number, outcome in expect.items():
            where = f"{key} line {number}"
            if outcome[0] == "staged":
                assert (key, number) in got_staged, f"{where} should be staged, got {got_rejected.get((key, number))}"
                assert got_staged[(key, number)] == outcome[1], where
            else:
                assert (key, number) in got_rejected, f"{where} should be rejected ({outcome[2]})"
                column, reason = got_rejected[(key, number)]
                assert column == outcome[1], f"{where}: {reason}"
                assert outcome[2].lower() in reason.lower(), f"{where}: {reason}"
    accounted = set(got_staged) | set(got_rejected)
    assert accounted == {(k, n) for k, e in expected.items() for n in e}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list(', \t\r\n}]{["aNInfity:1')), max_size=30))
def test_the_substring_hints_select_every_record_the_lenient_pattern_matches(text):
    """The cheap substring test in front of LENIENT_JSON is exact: the SQL agrees with the pattern."""
    import duckdb

    con = duckdb.connect()
    (found,) = con.execute(f"SELECT {json_loader.lenient_json_sql('r')} FROM (SELECT ?::VARCHAR AS r)", [text]).fetchone()
    assert found == bool(re.search(json_loader.LENIENT_JSON, text))

