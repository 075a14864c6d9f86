"""The embedded load gives the same staging rows, rejects and manifest whichever way a file reaches
DuckDB: read straight from DuckDB's JSON reader at the insert (``duckdb_load.direct_files``) or framed.

The JSON reader splits a file into records by its own rules, so it is used only for files where they
agree with framing; these tests load the same files both ways and compare every table the load
writes, over every ASCII byte and the non-ASCII whitespace in the places a record can hold it, and
check which files the reader took (a comparison that never exercises it would prove nothing).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from sparkify_dagster.catalog import STAGING_EVENTS
from sparkify_dagster.source import LOG_PREFIX, LocalFolderSource, SourceError
from sparkify_dagster.warehouse import duckdb as duckdb_warehouse
from sparkify_dagster.warehouse import duckdb_load
from sparkify_dagster.warehouse.duckdb import DuckDBWarehouse
from sparkify_dagster_tests.conftest import REAL_SAMPLE, requires_real_sample

LOG = logging.getLogger("test_loader_paths")
JSONPATHS = [f"$['{k}']" for k in (
    "artist", "auth", "firstName", "gender", "itemInSession", "lastName", "length", "level", "location",
    "method", "page", "registration", "sessionId", "song", "status", "ts", "userAgent", "userId",
)]


def record(ts: int, **overrides) -> str:
    rec = {"artist": "Des'ree", "auth": "Logged In", "firstName": "Kaylee", "gender": "F", "itemInSession": 1,
           "lastName": "Summers", "length": 246.30812, "level": "free", "location": "Phoenix, AZ",
           "method": "PUT", "page": "NextSong", "registration": 1540344794796.0, "sessionId": 139,
           "song": "You Gotta Be", "status": 200, "ts": ts, "userAgent": "Mozilla/5.0", "userId": "8"}
    rec.update(overrides)
    return json.dumps(rec)


def write_files(root: Path, files: dict[str, bytes]) -> None:
    (root / "log_json_path.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "log_json_path.json").write_text(json.dumps({"jsonpaths": JSONPATHS}))
    for i, data in enumerate(files.values()):
        path = root / LOG_PREFIX / "2018" / "11" / f"2018-11-{i:04d}-events.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


# How a file may reach the staging table: (READ_OBJECTS, TYPED_READER).
WAYS = {"typed reader": (True, True), "objects reader": (True, False), "framed": (False, False)}


def load_all_ways(tmp_path: Path, monkeypatch, files: dict[str, bytes]) -> tuple[dict, dict[str, set[str]]]:
    """Everything the load wrote, each way (``WAYS``), and the files loaded straight from the JSON
    reader (the typed reader's, or the typing SQL over the objects reader's records)."""
    root = tmp_path / "raw"
    write_files(root, files)
    src = LocalFolderSource(root=str(root))
    keys = {f"{LOG_PREFIX}2018/11/2018-11-{i:04d}-events.json": name for i, name in enumerate(files)}
    monkeypatch.setattr(duckdb_warehouse, "IN_PLACE_MIN_BYTES", 0)
    taken: dict[str, set[str]] = {}
    real = duckdb_load.insert_load
    out = {}
    for way, (reads_objects, typed_reader) in WAYS.items():
        taken[way] = set()

        def spy(s, scratch, load, staged, *, sort, way=way):
            real(s, scratch, load, staged, sort=sort)
            taken[way].update(keys[d.file.key] for d in staged.direct.values())  # what stayed direct

        monkeypatch.setattr(duckdb_load, "insert_load", spy)
        monkeypatch.setattr(duckdb_warehouse, "READ_OBJECTS", reads_objects)
        monkeypatch.setattr(duckdb_warehouse, "TYPED_READER", typed_reader)
        wh = DuckDBWarehouse(path=str(tmp_path / f"wh-{reads_objects}-{typed_reader}.duckdb"), max_errors=10**6)
        wh.ensure_tables()
        wh.load_staging(STAGING_EVENTS, src, src.list_files(LOG_PREFIX), "load", LOG, jsonpaths=src.event_jsonpaths())
        out[way] = {
            "rows": wh.query("SELECT * FROM staging_events ORDER BY ALL"),
            "rejects": wh.query("SELECT * EXCLUDE (load_id) FROM load_errors ORDER BY ALL"),
            "manifest": wh.query("SELECT * EXCLUDE (load_id) FROM loaded_files ORDER BY ALL"),
        }
    assert not taken["framed"]
    return out, taken


def assert_same(out: dict) -> None:
    """Each way wrote what framing wrote: every staged row, reject and manifest row."""
    framed = out["framed"]
    for way in ("typed reader", "objects reader"):
        for table in ("manifest", "rejects", "rows"):
            if out[way][table] != framed[table]:
                only_here = set(out[way][table]) - set(framed[table])
                only_framed = set(framed[table]) - set(out[way][table])
                pytest.fail(f"{table} differ: only by the {way} {sorted(only_here)[:3]}, "
                            f"only when framed {sorted(only_framed)[:3]}")


def test_every_ascii_byte_and_unicode_space_around_and_inside_records_loads_the_same_both_ways(tmp_path, monkeypatch):
    chars = [chr(b) for b in range(128)] + ["\u00a0", "\u2028", "\u2029", "\ufeff", "\u3000", "\x85"]
    files: dict[str, bytes] = {"clean": (record(1) + "\n" + record(2) + "\n").encode()}
    for c in chars:
        name = f"U+{ord(c):04X}"
        files[f"{name} alone on a line"] = f"{record(1)}\n{c}\n{record(2)}\n".encode()
        files[f"{name} before a record"] = f"{c}{record(1)}\n".encode()
        files[f"{name} after a record"] = f"{record(1)}{c}\n".encode()
        # No final newline: the byte is then as many bytes outside the records as a final newline.
        files[f"{name} before the last record"] = f"{record(1)}\n{c}{record(2)}".encode()
        files[f"{name} at the end"] = f"{record(1)}\n{record(2)}{c}".encode()
        files[f"{name} between tokens"] = record(1).replace('"auth": ', f'"auth":{c}').encode() + b"\n"
        files[f"{name} inside a string"] = record(1).replace("Gotta", f"Go{c}tta").encode() + b"\n"  # not escaped
    out, taken = load_all_ways(tmp_path, monkeypatch, files)

    assert_same(out)
    # The reader took the clean file and the ones it reads as framing does, and left the rest.
    for way in ("typed reader", "objects reader"):
        assert "clean" in taken[way]
        assert {"U+0020 alone on a line", "U+0009 between tokens", "U+000D between tokens", "U+000A at the end",
                "U+0041 inside a string", "U+00A0 inside a string"} <= taken[way]
        for left in ("U+000C alone on a line", "U+000B before a record", "U+000C between tokens",
                     "U+000B at the end", "U+000C before the last record",
                     "U+0000 inside a string", "U+00A0 alone on a line", "U+0022 inside a string"):
            assert left not in taken[way], left


def test_files_the_reader_cannot_split_like_framing_are_framed_and_the_rest_taken(tmp_path, monkeypatch):
    files = {
        "clean": "\n".join(record(ts) for ts in range(1, 200)).encode(),
        "clean, CRLF, blank lines, BOM": b"\xef\xbb\xbf" + f"{record(1)}\r\n\r\n \t\r\n{record(2)}\r\n".encode(),
        "pretty-printed": json.dumps(json.loads(record(1)), indent=2).encode(),
        "two on a line": f"{record(1)}{record(2)}\n{record(3)}\n".encode(),
        "invalid UTF-8": record(1).encode() + b"\n" + record(2).encode().replace(b"Kaylee", b"Kay\xffee"),
        "a reject": f"{record(1)}\n{record(2, itemInSession='one')}\n".encode(),
        "lenient JSON": f"{record(1)}\n{record(2)[:-1]}, }}\n".encode(),
        "a top-level null": f"{record(1)}\nnull\n".encode(),
        "empty": b"",
        "only blank lines": b"\n  \n\t\r\n",
        "an array": f"{record(1)}\n[1, 2]\n".encode(),
    }
    out, taken = load_all_ways(tmp_path, monkeypatch, files)

    assert_same(out)
    # An array is a record under a JSONPaths file: the paths select nothing in it, all NULL. The
    # typing SQL over the objects reader's records stages it so; the typed reader reads a record that
    # is not an object as all NULL, which it cannot tell from one, so that file is framed.
    assert taken["objects reader"] == {"clean", "clean, CRLF, blank lines, BOM", "empty", "only blank lines",
                                       "an array"}
    assert taken["typed reader"] == taken["objects reader"] - {"an array"}
    # Staged per file, in order (the empty and blank files have none; the array and its record, two).
    assert len(out["framed"]["rows"]) == 199 + 2 + 1 + 3 + 1 + 1 + 1 + 1 + 2



@pytest.mark.parametrize("typed_reader", [True, False], ids=["typed reader", "objects reader"])
@pytest.mark.parametrize("change", ["rewritten as malformed", "removed", "a record more",
                                    "a record more and a reject: the same count of staged rows"])
def test_a_file_that_changes_between_its_count_and_the_insert_loses_nothing(tmp_path, monkeypatch, change,
                                                                            typed_reader):
    monkeypatch.setattr(duckdb_warehouse, "TYPED_READER", typed_reader)
    root = tmp_path / "raw"
    write_files(root, {"day": "\n".join(record(ts) for ts in range(1, 11)).encode()})
    (path,) = (root / LOG_PREFIX).rglob("*.json")
    src = LocalFolderSource(root=str(root))
    monkeypatch.setattr(duckdb_warehouse, "IN_PLACE_MIN_BYTES", 0)
    real = duckdb_load.direct_files

    def then_change(x, load, files):
        direct = real(x, load, files)
        assert direct, "the file should have been counted for the direct path"
        if change == "rewritten as malformed":
            path.write_text(record(1) + "\n{not json\n")
        elif change == "removed":
            path.unlink()
        elif change == "a record more":
            path.write_text("\n".join(record(ts) for ts in range(1, 12)))
        else:
            path.write_text("\n".join(record(ts) for ts in range(1, 11)) + "\n" + record(11, itemInSession="x"))
        return direct

    monkeypatch.setattr(duckdb_load, "direct_files", then_change)
    wh = DuckDBWarehouse(path=str(tmp_path / "wh.duckdb"))
    wh.ensure_tables()
    load = (lambda: wh.load_staging(STAGING_EVENTS, src, src.list_files(LOG_PREFIX), "load", LOG,
                                    jsonpaths=src.event_jsonpaths()))
    if change == "rewritten as malformed" and typed_reader:
        # The typed reader reads past a record it cannot read (ignore_errors), so the insert does not
        # fail: the file changed since it was listed, and it is framed as it is now.
        report = load()
        assert (report.records_read, report.records_staged, report.records_rejected) == (2, 1, 1)
        assert wh.query("SELECT line_number FROM load_errors") == [(2,)]
        return
    if change.startswith("a record more"):
        # It changed since it was listed, so its count proves nothing: it is framed as it is now.
        report = load()
        rejected = 1 if "reject" in change else 0
        assert (report.records_read, report.records_staged, report.records_rejected) == (11, 11 - rejected, rejected)
        assert wh.query("SELECT records_read, records_rejected FROM loaded_files") == [(11, rejected)]
        assert wh.query("SELECT line_number FROM load_errors") == ([(11,)] if rejected else [])
        return
    with pytest.raises(SourceError, match="changed or went away while it was being loaded, so nothing was loaded"):
        load()
    assert wh.query("SELECT count(*) FROM staging_events") == [(0,)]
    assert wh.query("SELECT count(*) FROM loaded_files") == [(0,)]
    monkeypatch.setattr(duckdb_load, "direct_files", real)
    if change == "removed":
        assert load().files == 0
    else:
        report = load()  # the next run loads the file as it is now
        assert (report.records_read, report.records_staged, report.records_rejected) == (2, 1, 1)


def test_every_kind_of_value_in_every_kind_of_column_loads_the_same_three_ways(tmp_path, monkeypatch):
    # The typed reader stages a file only when every value is one whose row is plainly the typing
    # SQL's (json_loader.reader_typed_sql); a file with any other is framed. Both must give framing's rows.
    base = json.loads(record(1))
    plain = [
        record(2, artist=7, song=True, location={"a": [1, 2.5]}, userAgent=[1, "x"], method=None, level=0.5,
               page=246.30812, auth=100000.0, gender=-3),
        record(3, length=7, registration=12345678901234567890123, itemInSession=-0, sessionId=2147483647,
               status=-2147483648),
        record(-9223372036854775808, sessionId=9223372036854775807),
        record(4, artist="D\u00e9s'r\u00e9e \\ \"quoted\" \u2028", song="\ud83d\ude00", firstName=""),
        record(5, length=None, registration=None, sessionId=None),
        json.dumps({k: v for k, v in base.items() if k not in ("length", "artist", "ts")}),
        record(6).replace('"artist": "Des\'ree"', '"artist": "first", "artist": "second"'),
        record(7).replace('"ts": 7', '"ts": 7, "ts": "later"'),
        record(8).replace('"song"', '"\\u0073ong"').replace('"level"', '"Level"'),
        record(9, length=1e-300, registration=5e-324),
    ]
    files = {"plain values": "\n".join(plain).encode()}
    framed_ones = {
        "a double written with an exponent into a text column": record(10, artist=1e21),
        "a text that reads like a double's": record(10, song="1e+21"),
        "a numeric string in an integer column": record(10, itemInSession=" 12 "),
        "an empty string in a double column": record(10, length=""),
        "a double in an integer column": record(10, status=200.0),
        "an integer out of range": record(10, itemInSession=3000000000),
        "a bigint out of range": record(9223372036854775808),
        "an overflowing double": record(10).replace('"length": 246.30812', '"length": 1e400'),
        "a boolean in a number column": record(10).replace('"ts": 10', '"ts": true'),
        "an object in a number column": record(10, sessionId={"a": 1}),
        "a text too long": record(10, gender="x" * 9),
        "NaN under a key no column reads": record(10, extra=float("nan")),
        "a trailing comma": record(10)[:-1] + ", }",
        "a record of nulls": json.dumps(dict.fromkeys(base)),
        "an empty object": "{}",
        "a number as a record": "42",
    }
    for name, text in framed_ones.items():
        files[name] = f"{record(1)}\n{text}\n".encode()
    magnitudes = {f"1.25e{e} into a text column": f"{record(1)}\n{record(2, artist=1.25 * 10.0 ** e)}\n".encode()
                  for e in range(-25, 26)}
    files.update(magnitudes)
    out, taken = load_all_ways(tmp_path, monkeypatch, files)

    assert_same(out)
    assert "plain values" in taken["typed reader"]
    assert not taken["typed reader"] & set(framed_ones)
    # The sweep went both ways: doubles DuckDB writes as JSON does, and those it writes otherwise.
    assert 0 < len(taken["typed reader"] & set(magnitudes)) < len(magnitudes)
    # Every record of the plain file staged, with the first of duplicate keys, keys matched by case.
    rows = out["framed"]["rows"]
    assert len(out["framed"]["rejects"]) == 10  # the framed files' reject
    staged = {r[15]: r for r in rows if r[-1].endswith("-0000-events.json")}
    assert staged[6][0] == "first" and staged[7][15] == 7 and staged[8][7] is None


@requires_real_sample
def test_the_real_sample_loads_the_same_three_ways_and_the_typed_reader_takes_every_day(tmp_path, monkeypatch):
    days = sorted((REAL_SAMPLE / "log_data").rglob("*.json"))
    files = {path.name: path.read_bytes() for path in days}
    out, taken = load_all_ways(tmp_path, monkeypatch, files)

    assert_same(out)
    assert taken["typed reader"] == set(files)  # nulls, empty user ids, logged-out events: all plain
    assert not out["framed"]["rejects"]
    assert len(out["framed"]["rows"]) == sum(1 for data in files.values() for line in data.split(b"\n") if line.strip())
