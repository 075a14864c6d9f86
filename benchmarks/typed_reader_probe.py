"""Where DuckDB's typed JSON reader (``read_ndjson`` with declared columns) parts from the typing SQL's
view of a record (``read_ndjson_objects`` + ``json_extract_string``), on small probe files.

    python benchmarks/typed_reader_probe.py

Not the project's code: the facts behind "DuckDB's typed reader for the direct files" in
benchmarks/README.md (what a loader built on it would have to fall back on, or prove equal). Prints,
for each probe, what each reader gives or the error it raises; then, over ~12,000 JSON numbers
(edge cases and random doubles of every magnitude), which ones a VARCHAR column of the typed reader
holds as another text than ``json_extract_string`` gives, and whether every one of those texts has
the shape ``json_loader.reader_typed_sql`` leaves to the typing SQL (a digit or '-' first, an
exponent sign).
"""

from __future__ import annotations

import math
import random
import re
import struct
import tempfile
from pathlib import Path

import duckdb

PROBES = {
    "duplicate key": '{"a": 1, "b": "x", "a": 2}',
    "key case, a double into a text column": '{"A": 1, "b": 1.7976931348623157e308}',
    "an array and a number as records": '[1,2]\n3\n{"a": 1}',
    "NaN and a trailing comma": '{"a": NaN, "b": "y",}',
    "an escaped key": '{"\\u0061": 5, "b": "z"}',
}
DECLARED = {
    "text column as VARCHAR": "{'a': 'JSON', 'b': 'VARCHAR'}",
    "text column as JSON": "{'a': 'JSON', 'b': 'JSON'}",
}


def main() -> int:
    con = duckdb.connect()
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in PROBES.items():
            path = Path(tmp) / "probe.json"
            path.write_text(text + "\n")
            print(f"-- {name}: {text!r}")
            queries = {
                "typing SQL's view (objects reader + json_extract_string)":
                    f"SELECT json_extract_string(json, ['$.a', '$.b']) FROM read_ndjson_objects('{path}')",
                **{f"typed reader, {label}": f"SELECT a, b FROM read_ndjson('{path}', columns={cols})"
                   for label, cols in DECLARED.items()},
            }
            for label, sql in queries.items():
                try:
                    result = con.execute(sql).fetchall()
                except duckdb.Error as exc:
                    result = f"error: {str(exc).splitlines()[0][:120]}"
                print(f"   {label}: {result}")
        numbers_into_text(con, Path(tmp))
    return 0


def numbers_into_text(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    values = ["0", "-0", "1.0", "1.50", "-0.0", "1e5", "1E5", "1e-5", "1e-7", "1e16", "1e17", "1e21", "1e22",
              "18446744073709551615", "18446744073709551616", "-9223372036854775809", "12345678901234567890123",
              "1.7976931348623157e308", "5e-324", "0.1", "0.30000000000000004", "123.456e10", "12.0e0",
              "1000000000000000000000.0", "0.000001", "0.0000001", "true", "null", "[1e400]", '{"k": 1e308}']
    rng = random.Random(1)
    for _ in range(3000):
        bits = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        if math.isfinite(bits):
            values.append(repr(bits))
        values += [repr(rng.uniform(-1e6, 1e6)), str(rng.randint(-10**20, 10**20)),
                   f"{rng.random() * 10 ** rng.randint(-30, 30):.{rng.randint(1, 17)}g}"]
    path = folder / "numbers.json"
    path.write_text("\n".join('{"v": %s}' % v for v in values) + "\n")
    typed = con.execute(f"SELECT v FROM read_ndjson('{path}', columns = {{'v': 'VARCHAR'}})").fetchall()
    paths = con.execute(f"SELECT json_extract_string(json, '$.v'), json_type(json, '$.v') "
                        f"FROM read_ndjson_objects('{path}')").fetchall()
    differ = [(v, a, b, kind) for v, (a,), (b, kind) in zip(values, typed, paths) if a != b]
    shape = re.compile(r"-?[0-9]+([.][0-9]+)?e[+-][0-9]+")
    print(f"-- {len(values):,} JSON values into a VARCHAR column: {len(differ):,} differ from json_extract_string, "
          f"of JSON types {sorted({k for *_, k in differ})}; all of them shaped like "
          f"'{shape.pattern}': {all(shape.fullmatch(a) for _, a, _, _ in differ)}")
    for v, a, b, _ in differ[:5]:
        print(f"   {v}: typed reader {a!r}, json_extract_string {b!r}")


if __name__ == "__main__":
    raise SystemExit(main())
