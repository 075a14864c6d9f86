"""Where DuckDB's typed JSON reader (``read_ndjson`` with declared columns) parts from the typing SQL's
view of a record (``read_ndjson_objects`` + ``json_extract_string``), on small probe files.

    python benchmarks/typed_reader_probe.py

Not the project's code: the facts behind "DuckDB's typed reader for the direct files" in
benchmarks/README.md (what a loader built on it would have to fall back on, or prove equal). Prints,
for each probe, what each reader gives or the error it raises.
"""

from __future__ import annotations

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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
