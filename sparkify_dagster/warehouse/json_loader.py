"""The embedded engine's COPY rules: raw JSON files into a staging table with Redshift's rules.

Pure SQL builders and text helpers; the load that applies them, stage by stage and batch by batch, is
``duckdb_load``. Two stages, so that no record is held as a Python object and the typing rules run
vectorised:

1. Framing: one candidate record per non-blank line, numbered by its physical line. A file that is
   valid UTF-8 (the usual case) is framed inside DuckDB: Python only strips a byte-order mark and
   checks the encoding, then DuckDB gets the whole text as one value (bound, or a big local file read
   by DuckDB itself), which ``FRAME_SQL`` splits into lines. No per-line Python object is made, so
   the cost is DuckDB's, not the interpreter's (binding lines one by one cost far more). A file
   with invalid UTF-8 is framed in Python (``frame_lines``): each bad line is rejected with its line
   number and the others are bound as parameters. Files whose lines are not each one JSON value
   (pretty-printed objects spread over lines, objects back to back on one line) are re-framed with a
   streaming JSON decoder, so every JSON value becomes one record, numbered by its last line (what
   Redshift's stl_load_errors reports for JSON: "the last line of the JSON object"). A big local
   file that DuckDB's own newline-delimited JSON reader splits into exactly these records is read
   by it instead (``object_records``), unless one of its records is rejected: the reader gives no
   line numbers. Where every column is a top-level key, DuckDB's typed reader types those files
   itself (``reader_typed_sql``), staging only the records whose rows it can show are the typing
   SQL's; a file with any other record is framed.
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
import os
import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sparkify_dagster.catalog import Column, Table
from sparkify_dagster.jsonpath import parse_jsonpath
from sparkify_dagster.warehouse.dialect import quote_ident, quote_literal

BOM = b"\xef\xbb\xbf"
RAW_TEXT_LIMIT = 1024
# Files per batch, by size: DuckDB parallelises a scan by row groups of 122,880 rows, so a batch must
# hold a few hundred thousand records to keep every core busy (a smaller one of a few big files is
# typed on one core). Local files are read by DuckDB itself (one file held by Python at a time); texts
# fetched from S3 are held in Python, so their batches stay small.
# SPARKIFY_LOAD_BATCH_MB sets the local batch size (less memory, or progress lines more often).
BATCH_BYTES = int(os.environ.get("SPARKIFY_LOAD_BATCH_MB") or 256) * 1024 * 1024
REMOTE_BATCH_BYTES = 64 * 1024 * 1024
# Many small files (song_data) are cut into batches by count too, so progress moves every few seconds.
BATCH_FILES = 50_000
MALFORMED_REASON = "Malformed JSON: the record is not a valid JSON value"
# The candidate records of decoded file texts, framed in SQL exactly like ``frame_text``: split on
# "\n" (a "\r" before it stays in the record), lines that are empty after stripping " \t\r" dropped
# (ltrim: a line is blank iff it is blank once left-trimmed), lines numbered from 1. ``{texts}`` is a
# relation (file_idx, txt): texts bound as parameters, or files DuckDB reads itself (read_text).
FRAME_SQL = """
SELECT file_idx, line_number, rec FROM (
    SELECT file_idx, unnest(lines) AS rec, generate_subscripts(lines, 1)::BIGINT AS line_number
    FROM (SELECT file_idx, string_split(txt, chr(10)) AS lines FROM {texts})
)
WHERE ltrim(rec, ' ' || chr(9) || chr(13)) <> ''"""
BOUND_TEXTS = "(SELECT unnest(?::INTEGER[]) AS file_idx, unnest(?::VARCHAR[]) AS txt)"
# Parameters: file indexes and their paths (twice). The index is looked up by position, not joined:
# a join would move every whole text through a hash table.
# A leading byte-order mark (U+FEFF once decoded) is dropped, as ``decode_text`` drops it.
FILE_TEXTS = (
    "(SELECT (?::INTEGER[])[list_position(?::VARCHAR[], filename)] AS file_idx, "
    "CASE WHEN starts_with(content, chr(65279)) THEN substr(content, 2) ELSE content END AS txt "
    "FROM read_text(?::VARCHAR[]))"
)
# Big local files can be read by DuckDB's newline-delimited JSON reader instead (``object_records``):
# each line's text without the whitespace around it (which the typing ignores), with no line number.
# It fails on a file that is not one JSON value per line (pretty-printed objects, two on a line,
# invalid UTF-8, a control character), and it also skips lines of form feeds and vertical tabs, which
# ``FRAME_SQL`` keeps as (malformed) records: such files are left to ``FRAME_SQL``.
# Paths of the files (parameter: their paths) holding a byte the JSON reader skips as whitespace and
# ``FRAME_SQL`` does not.
OBJECTS_EXCLUDED_SQL = (
    "SELECT filename FROM read_text(?::VARCHAR[]) WHERE contains(content, chr(11)) OR contains(content, chr(12))"
)
_JSON_WS = re.compile(r"[ \t\n\r]*")


def _file_lists(file_idxs: Sequence[int], paths: Sequence[str], filename: str) -> tuple[str, str]:
    """Literal SQL for the list of ``paths`` (a JSON reader's first argument) and for the file_idx of
    the record whose file is in the column ``filename``: looked up by position, as in FILE_TEXTS."""
    idxs = "[" + ", ".join(str(int(i)) for i in file_idxs) + "]::INTEGER[]"
    files = "[" + ", ".join(quote_literal(p) for p in paths) + "]::VARCHAR[]"
    return files, f"({idxs})[list_position({files}, {filename})]"


def object_records(file_idxs: Sequence[int], paths: Sequence[str]) -> str:
    """A relation (file_idx, line_number, rec) of the files at ``paths`` as DuckDB's JSON reader splits
    them into records (line_number NULL); literal SQL, so that it can sit inside a bigger statement."""
    files, file_idx = _file_lists(file_idxs, paths, "filename")
    return (f"(SELECT {file_idx} AS file_idx, NULL::BIGINT AS line_number, "
            f"json::VARCHAR AS rec FROM read_ndjson_objects({files}, filename=true))")


@dataclass(frozen=True)
class Reject:
    """A record rejected before it reached SQL (framing stage)."""

    line_number: int
    reason: str
    raw_text: str


def decode_text(data: bytes) -> str | None:
    """A file's text without its byte-order mark, or None when it is not valid UTF-8 (``frame_lines``)."""
    try:
        return str(memoryview(data)[len(BOM) :] if data.startswith(BOM) else data, "utf-8")
    except UnicodeDecodeError:
        return None


def frame_text(text: str) -> list[tuple[int, str]]:
    """(line number, text) candidates of a decoded file, one per non-blank line (as ``FRAME_SQL``)."""
    return [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip(" \t\r")]


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
    """Re-frame a file's lines as a stream of JSON values: one record per value, wherever it starts,
    numbered by the line it ends on (Redshift's line_number for JSON).

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
        try:
            _value, end = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder allows
            end = text.find("\n", pos)
            end = end_of_text if end < 0 else end
        # Numbered by the line of its last character, as Redshift numbers a JSON object.
        records.append((bisect_right(starts, max(pos, end - 1)), text[pos:end]))
        pos = end


def iter_batches(files: Sequence, batch_bytes: int | None = None, max_files: int | None = None) -> Iterator[list]:
    """Group files into batches of about ``batch_bytes`` (and at most ``max_files``): memory stays bounded."""
    batch_bytes = BATCH_BYTES if batch_bytes is None else batch_bytes
    max_files = BATCH_FILES if max_files is None else max_files
    batch, size = [], 0
    for f in files:
        batch.append(f)
        size += f.size
        if size >= batch_bytes or len(batch) >= max_files:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# --- typing stage --------------------------------------------------------------------------------

def jsonpath_to_duckdb(path: str) -> str:
    """A Redshift JSONPaths expression ($['a'], $.a, $['a'][0]) in DuckDB's JSON path syntax."""
    return "$" + "".join(f"[{step}]" if isinstance(step, int) else f'."{step}"' for step in parse_jsonpath(path))


# What DuckDB's JSON parser accepts beyond JSON: a trailing comma, NaN, Infinity. A record that
# matches (possibly inside a string) is parsed again strictly, in Python: only such records are.
LENIENT_JSON = r",[ \t\r\n]*[}\]]|NaN|Infinity"
# Substrings every match of LENIENT_JSON contains (a bracket right after the comma, or after the last
# whitespace before it): substring searches are cheaper than the regular expression, which then runs
# only on the records that hold one of them.
_LENIENT_HINTS = ("NaN", "Infinity", *(c + b for c in ", \t\r\n" for b in "}]"))
STRICT_FUNCTION = "sparkify_strict_json"


def _sql_string(text: str) -> str:
    """A string literal with its control characters spelled as chr(n) (the SQL stays one readable line)."""
    if not any(ord(c) < 32 for c in text):
        return quote_literal(text)
    return " || ".join(f"chr({ord(c)})" if ord(c) < 32 else quote_literal(c) for c in text)


def lenient_json_sql(rec: str) -> str:
    """SQL: whether the record ``rec`` may hold what DuckDB's parser accepts beyond JSON (LENIENT_JSON)."""
    def any_of(hints) -> str:
        return " OR ".join(f"contains({rec}, {_sql_string(h)})" for h in hints)

    # Most records hold no "]" at all: its hints are searched only in the records that do. CASE, not
    # AND: in a projection DuckDB evaluates both sides of an AND (or OR) for every row.
    closes_array = [h for h in _LENIENT_HINTS if h.endswith("]")]
    hints = (f"{any_of(h for h in _LENIENT_HINTS if h not in closes_array)} "
             f"OR (CASE WHEN contains({rec}, ']') THEN {any_of(closes_array)} ELSE false END)")
    return f"(CASE WHEN {hints} THEN regexp_matches({rec}, {quote_literal(LENIENT_JSON)}) ELSE false END)"


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def is_strict_json(text: str) -> bool:
    """Whether ``text`` is one JSON value as RFC 8259 defines it (no NaN, Infinity or trailing comma)."""
    try:
        json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return False
    return True


def register_strict_json(con) -> None:
    """Make ``is_strict_json`` callable from SQL on ``con`` (the typing statement uses it)."""
    import duckdb

    try:
        con.create_function(STRICT_FUNCTION, is_strict_json, ["VARCHAR"], "BOOLEAN",
                            side_effects=False)
    except (duckdb.CatalogException, duckdb.NotImplementedException):  # already registered on this connection
        pass


_INT_RANGES = {"integer": "INTEGER", "bigint": "BIGINT"}


def _value_and_error(col: Column, i: int, k: int | None) -> tuple[str, str]:
    """SQL for a column's converted value and its error (NULL when fine), from s[i] (the value as text)
    and t[k] (its JSON type; looked up for number columns only, ``k`` is None for a varchar)."""
    s = f"s[{i}]"
    limit = col.max_bytes
    if limit is not None:
        # json_extract_string gives NULL exactly for a missing key or a JSON null: no type needed.
        value = s
        error = (
            f"CASE WHEN strlen({s}) > {limit} THEN "
            f"'String length exceeds DDL length: ' || strlen({s}) || ' bytes > {limit}' END"
        )
        return value, error
    t = f"t[{k}]"
    is_null = f"({t} IS NULL OR {t} = 'NULL')"
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


def typing_sql(table: Table, columns: Sequence[Column], duckdb_paths: Sequence[str], source: str = "_raw",
               arrays: bool = False) -> str:
    """One SELECT over ``source`` (file_idx, line_number, rec) giving each record's converted columns,
    its error column and reason; ``rec`` is kept for rejected records only (NULL when staged).

    ``arrays``: the paths come from a JSONPaths file, so a record may also be a JSON array (Redshift:
    "If your data files use arrays, you must specify a JSONPaths file"); its values are what the paths
    select in it (a key path selects nothing: NULL). Without JSONPaths only objects are records."""
    paths = "[" + ", ".join(quote_literal(p) for p in duckdb_paths) + "]"
    # The JSON types are looked up for the record itself ('$') and the number columns only.
    number_cols = [i for i, col in enumerate(columns) if col.max_bytes is None]
    typed_paths = "[" + ", ".join(["'$'"] + [quote_literal(duckdb_paths[i]) for i in number_cols]) + "]"
    type_index = {i: k for k, i in enumerate(number_cols, start=1)}
    pairs = [_value_and_error(col, i + 1, type_index.get(i)) for i, col in enumerate(columns)]
    values = ",\n        ".join(f"{v} AS {quote_ident(c.name)}" for c, (v, _) in zip(columns, pairs))
    errors = ",\n        ".join(f"{e} AS e{i}" for i, (_, e) in enumerate(pairs, start=1))
    col_names = ", ".join(quote_ident(c.name) for c in columns)
    err_col = " ".join(
        f"WHEN e{i} IS NOT NULL THEN {quote_literal(c.name)}" for i, c in enumerate(columns, start=1)
    )
    err_reason = ", ".join(f"e{i}" for i in range(1, len(columns) + 1))
    records = "'OBJECT', 'ARRAY'" if arrays else "'OBJECT'"
    expected = "an object or an array" if arrays else "an object"
    return f"""
SELECT file_idx, line_number, CASE WHEN err_reason IS NOT NULL THEN rec END AS rec, {col_names},
    err_column, err_reason
FROM (
SELECT file_idx, line_number, rec, {col_names},
    CASE WHEN top IS NULL OR top NOT IN ({records}) THEN NULL {err_col} END AS err_column,
    CASE WHEN top IS NULL THEN {quote_literal(MALFORMED_REASON)}
         WHEN top NOT IN ({records}) THEN 'Top-level JSON ' || lower(top) || ' where {expected} was expected'
         ELSE coalesce({err_reason}) END AS err_reason
FROM (
    SELECT file_idx, line_number, rec, top,
        {values},
        {errors}
    FROM (
        SELECT file_idx, line_number, rec, top,
            CASE WHEN top IN ({records}) THEN types[2:] END AS t,
            CASE WHEN top IN ({records}) THEN json_extract_string(rec, {paths}) END AS s
        FROM (
            -- One parse gives the record's own type ('$': NULL when it is not valid JSON) and its values' types.
            -- DuckDB's parser also takes NaN, Infinity and trailing commas, which are not JSON (Redshift
            -- rejects the record): a record that may hold one is checked strictly ({STRICT_FUNCTION}).
            SELECT file_idx, line_number, rec, types, CASE
                WHEN {lenient_json_sql('rec')} AND NOT {STRICT_FUNCTION}(rec) THEN NULL
                ELSE types[1] END AS top
            FROM (SELECT *, try(json_type(rec, {typed_paths})) AS types FROM {source})
        )
    )
)
)"""


# --- DuckDB's typed reader, for the direct files ---------------------------------------------------

# The err_reason of a record the typed reader cannot prove it types as ``typing_sql`` (never stored).
READER_FLAGGED = "not typed by the JSON reader: the file is framed"
# The column read_ndjson adds with each record's file (no staging key may be named so).
_READER_FILE = "sparkify_reader_file"
# The first character of every text DuckDB writes a double as, into a VARCHAR column ('-' to '9').
_DOUBLE_TEXT_FIRST = ("-", ":")


def reader_keys(duckdb_paths: Sequence[str]) -> tuple[str, ...] | None:
    """The top-level key each path selects, when every path selects one (``$."key"``) and DuckDB's
    typed reader can declare each as a column of its own (no two the same name to DuckDB, which
    ignores case); else None: such a table's direct files are typed by ``typing_sql``."""
    keys = []
    for path in duckdb_paths:
        if not (path.startswith('$."') and path.endswith('"') and path.count('"') == 2):
            return None
        keys.append(path[3:-1])
    names = {k.lower() for k in keys}
    if len(names) != len(keys) or _READER_FILE in names:
        return None
    return tuple(keys)


def reader_typed_sql(columns: Sequence[Column], keys: Sequence[str], file_idxs: Sequence[int],
                     paths: Sequence[str]) -> str:
    """The rows of the files at ``paths`` typed straight from DuckDB's typed JSON reader (``read_ndjson``,
    each key declared: a text column as VARCHAR, a number column as JSON), in ``typing_sql``'s shape
    (file_idx, line_number, rec, columns..., err_column, err_reason); literal SQL.

    Only for the direct files (``duckdb_load.direct_files``: every line one JSON value) with no record
    that the strict-JSON test refuses, which this reader cannot see (it counts them). The reader gives
    each key's value as ``typing_sql``'s paths see it (the first of duplicate keys, keys matched by
    case, escaped keys decoded), and a record is staged only when every value is one whose row is
    plainly the typing SQL's, by these rules:

    - text column: NULL, or at most its byte limit and not a text DuckDB may have written for a double
      (its text differs from the JSON's only in those that start with '-' or a digit and hold an
      exponent sign: ``1e+21`` against ``1e21``; strings, integers, booleans, objects and arrays read
      the same as ``json_extract_string`` gives them);
    - integer column: NULL, or an integer literal (no '.' or exponent: DuckDB would cast ``12.5``) in the
      column's range;
    - double column: NULL, or a finite number.

    Any other record (a string in a number column, a value out of range or too long, a record whose
    values are all NULL, as the reader reads one that is not an object) gets an err_reason: its file
    stages fewer rows than it has records and is framed and typed by ``typing_sql`` (``insert_load``):
    its rejects get their line numbers and the typing SQL's own reasons. The reason is never stored."""
    declared = {k: ("JSON" if col.max_bytes is None else "VARCHAR") for col, k in zip(columns, keys)}
    struct = "{" + ", ".join(f"{quote_literal(k)}: '{t}'" for k, t in declared.items()) + "}"
    files, file_idx = _file_lists(file_idxs, paths, _READER_FILE)
    values, oks = [], []
    for i, (col, key) in enumerate(zip(columns, keys), start=1):
        v = f"v{i}"
        name = quote_ident(col.name)
        if col.max_bytes is not None:
            low, high = _DOUBLE_TEXT_FIRST
            values.append(f"{v} AS {name}")
            oks.append(f"({v} IS NULL OR (strlen({v}) <= {col.max_bytes} AND NOT ({v} >= '{low}' AND {v} < '{high}' "
                       f"AND (contains({v}, 'e+') OR contains({v}, 'e-')))))")
        elif col.type in _INT_RANGES:
            sql_type = _INT_RANGES[col.type]
            values.append(f"try_cast({v} AS {sql_type}) AS {name}")
            oks.append(f"({v} IS NULL OR (try_cast({v} AS {sql_type}) IS NOT NULL "
                       f"AND NOT (contains({v}, '.') OR contains({v}, 'e') OR contains({v}, 'E'))))")
        elif col.type == "double":
            values.append(f"try_cast({v} AS DOUBLE) AS {name}")
            oks.append(f"({v} IS NULL OR isfinite(try_cast({v} AS DOUBLE)))")
        else:
            raise ValueError(f"the JSON loader cannot load column {col.name} of type {col.type}")
    some_value = " OR ".join(f"v{i} IS NOT NULL" for i in range(1, len(columns) + 1))
    # The JSON columns' values as their text (a JSON value compared with a VARCHAR would be parsed).
    read = ", ".join(f'"{k}"::VARCHAR AS v{i}' for i, k in enumerate(keys, start=1))
    col_names = ", ".join(quote_ident(c.name) for c in columns)
    return f"""(
SELECT file_idx, NULL::BIGINT AS line_number, NULL::VARCHAR AS rec, {col_names}, NULL::VARCHAR AS err_column,
    CASE WHEN NOT coalesce(ok, false) THEN {quote_literal(READER_FLAGGED)} END AS err_reason
FROM (
    SELECT file_idx, {", ".join(values)},
        ({some_value}) AND {" AND ".join(oks)} AS ok
    FROM (
        -- ignore_errors: the reader would fail the whole file on a duplicate key (the first one's
        -- value is kept, as the paths take it).
        SELECT {file_idx} AS file_idx, {read}
        FROM read_ndjson({files}, columns = {struct}, filename = '{_READER_FILE}', ignore_errors = true)
    )
))"""


def lenient_count_sql(rec: str) -> str:
    """SQL: 1 for a record ``rec`` that the strict-JSON test refuses, else 0 (to count them)."""
    return f"(CASE WHEN {lenient_json_sql(rec)} THEN (NOT {STRICT_FUNCTION}({rec}))::INTEGER ELSE 0 END)"
