"""The embedded engine's COPY: raw JSON files into a staging table with Redshift's rules.

Two stages, so that no record is held as a Python object and the typing rules run vectorised:

1. Framing (Python, byte level): strip a UTF-8 byte-order mark, reject lines that are not valid UTF-8,
   split into one candidate record per non-blank line. Files whose lines are not each one JSON value
   (pretty-printed objects spread over lines, objects back to back on one line) are re-framed with a
   streaming JSON decoder, so every JSON value becomes one record, numbered by the line it starts on.
2. Typing (SQL in DuckDB): each record is matched to the table's columns (JSONPaths by position, or
   the column names), each value is converted under Redshift's COPY rules, and the record goes either
   to the staging table or to ``load_errors`` with its file, line, column and reason.

Redshift rules mirrored (COPY ... FORMAT AS JSON, no TRUNCATECOLUMNS, no ACCEPTINVCHARS):
- a missing key or JSON null loads NULL; unknown keys are ignored;
- into a number column, an empty string loads NULL; a numeric string loads its value; any other
  string, a boolean, an object or an array rejects the record ("Invalid digit"); a fraction into an
  integer column rejects it; out-of-range values reject it (never a silently NULLed field);
- into a varchar(n) column, numbers and booleans load as their text, objects and arrays as their JSON
  text; a value longer than n bytes rejects the record (never truncated);
- invalid UTF-8 rejects the line; a top-level value that is not an object rejects the record.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sparkify_dagster.catalog import Column, Table
from sparkify_dagster.warehouse.base import quote_ident, quote_literal

BOM = b"\xef\xbb\xbf"
RAW_TEXT_LIMIT = 1024
BATCH_BYTES = 64 * 1024 * 1024
_JSON_WS = re.compile(r"[ \t\n\r]*")


@dataclass(frozen=True)
class Reject:
    """A record rejected before it reached SQL (framing stage)."""

    line_number: int
    reason: str
    raw_text: str


def frame_lines(data: bytes) -> tuple[list[tuple[int, str]], list[Reject]]:
    """Split a file into (line number, text) candidates, one per non-blank line; reject bad UTF-8."""
    if data.startswith(BOM):
        data = data[len(BOM) :]
    try:
        lines = data.decode("utf-8").split("\n")
        rejects: list[Reject] = []
    except UnicodeDecodeError:
        lines, rejects = [], []
        for number, raw in enumerate(data.split(b"\n"), start=1):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                lines.append("")
                rejects.append(
                    Reject(
                        number,
                        f"Invalid UTF-8 byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line",
                        raw.decode("utf-8", "replace")[:RAW_TEXT_LIMIT],
                    )
                )
    return [(n, line) for n, line in enumerate(lines, start=1) if line.strip(" \t\r")], rejects


def frame_stream(candidates: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """Re-frame a file's lines as a stream of JSON values: one record per value, wherever it starts.

    Text that does not parse becomes a record of its own (the rest of its line), which the typing
    stage rejects as malformed JSON, so nothing is dropped.
    """
    if not candidates:
        return []
    # Rebuild the text with the original line numbering (blank or rejected lines stay empty).
    last = candidates[-1][0]
    lines = [""] * last
    for number, text in candidates:
        lines[number - 1] = text
    text = "\n".join(lines)
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    decoder = json.JSONDecoder()
    records, pos, end_of_text = [], 0, len(text)
    while True:
        pos = _JSON_WS.match(text, pos).end()
        if pos >= end_of_text:
            return records
        line_number = bisect_right(starts, pos)
        try:
            _value, end = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder allows
            end = text.find("\n", pos)
            end = end_of_text if end < 0 else end
        records.append((line_number, text[pos:end]))
        pos = end


def iter_batches(files: Sequence, batch_bytes: int = BATCH_BYTES) -> Iterator[list]:
    """Group files into batches of about ``batch_bytes`` so memory stays bounded."""
    batch, size = [], 0
    for f in files:
        batch.append(f)
        size += f.size
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# --- typing stage --------------------------------------------------------------------------------

_PATH_PART = re.compile(r"""\[\s*'([^']*)'\s*\]|\[\s*"([^"]*)"\s*\]|\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*(\d+)\s*\]""")


def jsonpath_to_duckdb(path: str) -> str:
    """Translate a Redshift JSONPaths expression ($['a'], $.a, $['a'][0]) to a DuckDB JSON path."""
    if not path.startswith("$"):
        raise ValueError(f"JSONPath must start with $: {path!r}")
    out, pos = "$", 1
    while pos < len(path):
        m = _PATH_PART.match(path, pos)
        if not m:
            raise ValueError(f"unsupported JSONPath {path!r} at position {pos}")
        key = m.group(1) if m.group(1) is not None else m.group(2) if m.group(2) is not None else m.group(3)
        if key is not None:
            if '"' in key:
                raise ValueError(f"unsupported JSONPath key with a double quote: {path!r}")
            out += f'."{key}"'
        else:
            out += f"[{m.group(4)}]"
        pos = m.end()
    if out == "$":
        raise ValueError(f"JSONPath selects the whole record: {path!r}")
    return out


_INT_RANGES = {"integer": "INTEGER", "bigint": "BIGINT"}


def _value_and_error(col: Column, i: int) -> tuple[str, str]:
    """SQL for a column's converted value and its error (NULL when fine), from t[i]/s[i]."""
    t, s = f"t[{i}]", f"s[{i}]"
    is_null = f"({t} IS NULL OR {t} = 'NULL')"
    limit = col.max_bytes
    if limit is not None:
        value = f"CASE WHEN {is_null} THEN NULL ELSE {s} END"
        error = (
            f"CASE WHEN octet_length(encode({s})) > {limit} AND NOT {is_null} THEN "
            f"'String length exceeds DDL length: ' || octet_length(encode({s})) || ' bytes > {limit}' END"
        )
        return value, error
    if col.type in _INT_RANGES:
        sql_type = _INT_RANGES[col.type]
        digits = f"regexp_full_match(trim({s}), '[+-]?[0-9]+')"
        value = (
            f"CASE WHEN {t} IN ('BIGINT', 'UBIGINT') THEN try_cast({s} AS {sql_type}) "
            f"WHEN {t} = 'VARCHAR' AND {digits} THEN try_cast(trim({s}) AS {sql_type}) END"
        )
        error = (
            f"CASE WHEN {is_null} THEN NULL "
            f"WHEN {t} IN ('BIGINT', 'UBIGINT') THEN CASE WHEN try_cast({s} AS {sql_type}) IS NULL "
            f"THEN 'Numeric overflow: ' || {s} || ' out of range for {col.type}' END "
            f"WHEN {t} = 'VARCHAR' THEN CASE WHEN trim({s}) = '' THEN NULL "
            f"WHEN NOT {digits} THEN 'Invalid digit: ' || left(to_json({s})::VARCHAR, 60) || ' is not an {col.type}' "
            f"WHEN try_cast(trim({s}) AS {sql_type}) IS NULL "
            f"THEN 'Numeric overflow: ' || left({s}, 60) || ' out of range for {col.type}' END "
            f"WHEN {t} = 'DOUBLE' THEN CASE WHEN regexp_full_match({s}, '-?[0-9]+') "
            f"THEN 'Numeric overflow: ' || left({s}, 60) || ' out of range for {col.type}' "
            f"ELSE 'Invalid digit: ' || left({s}, 60) || ' is not an {col.type}' END "
            f"ELSE 'Invalid digit: a JSON ' || lower({t}) || ' is not an {col.type}' END"
        )
        return value, error
    if col.type == "double":
        # Only what Redshift reads as a number: DuckDB's cast also takes "1_000" or "+-1".
        numeric = (
            f"CASE WHEN regexp_full_match(trim({s}), '[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?') "
            f"THEN try_cast(trim({s}) AS DOUBLE) END"
        )
        value = (
            f"CASE WHEN {t} IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN try_cast({s} AS DOUBLE) "
            f"WHEN {t} = 'VARCHAR' AND trim({s}) <> '' THEN {numeric} END"
        )
        error = (
            f"CASE WHEN {is_null} THEN NULL "
            f"WHEN {t} IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN CASE WHEN NOT isfinite(try_cast({s} AS DOUBLE)) "
            f"THEN 'Numeric overflow: ' || left({s}, 60) || ' is not a finite double' END "
            f"WHEN {t} = 'VARCHAR' THEN CASE WHEN trim({s}) = '' THEN NULL "
            f"WHEN {numeric} IS NULL OR NOT isfinite({numeric}) "
            f"THEN 'Invalid digit: ' || left(to_json({s})::VARCHAR, 60) || ' is not a double' END "
            f"ELSE 'Invalid digit: a JSON ' || lower({t}) || ' is not a double' END"
        )
        return value, error
    raise ValueError(f"the JSON loader cannot load column {col.name} of type {col.type}")


def typing_sql(table: Table, columns: Sequence[Column], duckdb_paths: Sequence[str]) -> str:
    """One SELECT over ``_raw`` giving each record's converted columns, its error column and reason."""
    paths = "[" + ", ".join(quote_literal(p) for p in duckdb_paths) + "]"
    pairs = [_value_and_error(col, i) for i, col in enumerate(columns, start=1)]
    values = ",\n        ".join(f"{v} AS {quote_ident(c.name)}" for c, (v, _) in zip(columns, pairs))
    errors = ",\n        ".join(f"{e} AS e{i}" for i, (_, e) in enumerate(pairs, start=1))
    col_names = ", ".join(quote_ident(c.name) for c in columns)
    err_col = " ".join(
        f"WHEN e{i} IS NOT NULL THEN {quote_literal(c.name)}" for i, c in enumerate(columns, start=1)
    )
    err_reason = ", ".join(f"e{i}" for i in range(1, len(columns) + 1))
    return f"""
SELECT file_idx, line_number, rec, {col_names},
    CASE WHEN top IS DISTINCT FROM 'OBJECT' THEN NULL {err_col} END AS err_column,
    CASE WHEN top IS NULL THEN 'Malformed JSON: the record is not a valid JSON value'
         WHEN top <> 'OBJECT' THEN 'Top-level JSON ' || lower(top) || ' where an object was expected'
         ELSE coalesce({err_reason}) END AS err_reason
FROM (
    SELECT file_idx, line_number, rec, top,
        {values},
        {errors}
    FROM (
        SELECT file_idx, line_number, rec, top,
            CASE WHEN top = 'OBJECT' THEN json_type(rec, {paths}) END AS t,
            CASE WHEN top = 'OBJECT' THEN json_extract_string(rec, {paths}) END AS s
        FROM (SELECT *, CASE WHEN json_valid(rec) THEN json_type(rec) END AS top FROM _raw)
    )
)"""
