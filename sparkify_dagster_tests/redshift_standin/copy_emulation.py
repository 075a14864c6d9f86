"""Redshift's ``COPY … FROM 's3://…' FORMAT AS JSON …``: parsing, S3 reading, JSON framing, conversion.

Written from the Redshift Database Developer Guide (COPY, "COPY from JSON format", "Data format
parameters", "Data conversion parameters", "Load error reference", "Multibyte character load
errors", STL_LOAD_ERRORS, PG_LAST_COPY_ID), independently of the project's embedded loader, so the
two can check each other. Rules the guide does not state are marked *assumed* here and in README.md.

The proxy calls ``run_copy`` when the client executes a COPY (never at prepare time, so a cached
prepared COPY reads S3 again each time). It returns the payload that the stored procedure
``copy_apply`` (emulation.sql) executes inside the client's own transaction: rows already converted
to PostgreSQL input text, rejected records for the load-error log, and whether MAXERROR was exceeded.
Anything the stand-in does not emulate raises ``CopyError`` (the COPY fails loudly).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sparkify_dagster_tests.redshift_standin.sql_rewrite import (
    SqlSyntaxError,
    Token,
    significant,
    string_value,
)

MAX_RECORD_BYTES = 4 * 1024 * 1024  # docs: "The maximum size of a single JSON object or array … is 4 MB"
MAXERROR_LIMIT = 100000  # docs: "The MAXERROR default value is 0 and the limit is 100000"
JSON_WHITESPACE = b" \t\r\n"


class CopyError(Exception):
    """The COPY fails as a whole (nothing loaded); message/detail/sqlstate go to the client."""

    def __init__(self, message: str, detail: str | None = None, sqlstate: str = "XX000", code: int | None = None):
        super().__init__(message)
        self.message, self.detail, self.sqlstate, self.code = message, detail, sqlstate, code

    def payload(self, query_id: int | None = None) -> dict:
        detail = self.detail
        if detail is None and self.code is not None:
            detail = redshift_detail(self.message, self.code, query_id)
        return {"error": {"message": self.message, "detail": detail or "", "sqlstate": self.sqlstate}}


def not_emulated(what: str) -> CopyError:
    return CopyError(f"redshift stand-in: {what} is not emulated", sqlstate="0A000")


def redshift_detail(error: str, code: int, query_id: int | None, context: str = "") -> str:
    """The DETAIL block Redshift prints under COPY errors (layout as seen in Redshift's output)."""
    return (
        "\n  -----------------------------------------------\n"
        f"  error:  {error}\n  code:      {code}\n  context:   {context}\n"
        f"  query:     {query_id if query_id is not None else ''}\n"
        "  location:  redshift stand-in\n  -----------------------------------------------\n"
    )


# --- the COPY statement ---------------------------------------------------------------------------


@dataclass
class CopyCommand:
    table: str  # the table reference as written (identifiers, possibly schema-qualified)
    columns: list[str] | None  # column names as PostgreSQL folds them (unquoted: lowercase)
    source: str  # s3://bucket/key-or-prefix (or the manifest)
    iam_role: str
    json_option: str = "auto"  # 'auto', 'auto ignorecase' or s3://… JSONPaths file
    manifest: bool = False
    region: str | None = None
    maxerror: int = 0
    ignored: dict = field(default_factory=dict)  # COMPUPDATE / STATUPDATE: accepted, no effect here


def _ident(tok: Token) -> str:
    if tok.kind == "qident":
        return tok.text[1:-1].replace('""', '"')
    if tok.kind == "word":
        return tok.text.lower()
    raise CopyError(f'syntax error at or near "{tok.text}"', sqlstate="42601")


class _Cursor:
    def __init__(self, tokens: list[Token]):
        self.toks, self.i = significant(tokens), 0

    def peek(self) -> Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise CopyError("syntax error at end of input", sqlstate="42601")
        self.i += 1
        return tok

    def accept(self, *words: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.is_word(*words):
            self.i += 1
            return True
        return False

    def accept_op(self, op: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "op" and tok.text == op:
            self.i += 1
            return True
        return False

    def string(self, what: str) -> str:
        tok = self.take()
        try:
            return string_value(tok)
        except SqlSyntaxError as exc:
            raise CopyError(f"{what}: {exc}", sqlstate="42601") from None


# COPY options that exist on Redshift but are not emulated: named so the failure says so.
_KNOWN_UNEMULATED = {
    "ACCEPTANYDATE", "ACCEPTINVCHARS", "ACCESS_KEY_ID", "AVRO", "BLANKSASNULL", "BZIP2", "CREDENTIALS",
    "CSV", "DATEFORMAT", "DELIMITER", "EMPTYASNULL", "ENCODING", "ENCRYPTED", "ESCAPE", "EXPLICIT_IDS",
    "FILLRECORD", "FIXEDWIDTH", "GZIP", "IGNOREALLERRORS", "IGNOREBLANKLINES", "IGNOREHEADER", "LZOP",
    "MASTER_SYMMETRIC_KEY", "NOLOAD", "NULL", "ORC", "PARQUET", "READRATIO", "REMOVEQUOTES", "ROUNDEC",
    "SECRET_ACCESS_KEY", "SESSION_TOKEN", "SHAPEFILE", "SSH", "TIMEFORMAT", "TRIMBLANKS",
    "TRUNCATECOLUMNS", "ZSTD", "COMPROWS", "SERIALIZETOJSON", "JOB",
}


def parse_copy(tokens: list[Token]) -> CopyCommand:
    """COPY table [(cols)] FROM 's3://…' with the options this project uses, in any order."""
    c = _Cursor(tokens)
    c.take()  # COPY
    table = [_ident(c.take())]
    while c.accept_op("."):
        table.append(_ident(c.take()))
    table_sql = ".".join('"' + t.replace('"', '""') + '"' for t in table)
    columns = None
    if c.accept_op("("):
        columns = [_ident(c.take())]
        while c.accept_op(","):
            columns.append(_ident(c.take()))
        if not c.accept_op(")"):
            raise CopyError("syntax error in the COPY column list", sqlstate="42601")
    if not c.accept("FROM"):
        tok = c.peek()
        if tok is not None and tok.is_word("TO"):
            raise not_emulated("COPY … TO (use UNLOAD on Redshift)")
        raise CopyError(f'syntax error at or near "{tok.text if tok else ""}"', sqlstate="42601")
    tok = c.peek()
    if tok is None or tok.kind != "string":
        raise not_emulated(f"COPY FROM {tok.text if tok else ''} (only FROM 's3://…')")
    source = c.string("FROM")
    if not source.startswith("s3://"):
        raise not_emulated(f"COPY FROM '{source}' (only Amazon S3, 's3://…')")
    cmd = CopyCommand(table=table_sql, columns=columns, source=source, iam_role="")
    seen: set[str] = set()
    format_seen = False
    while (tok := c.peek()) is not None:
        if tok.kind == "op" and tok.text == ";":
            break
        word = c.take().upper if tok.kind == "word" else tok.text
        if tok.kind != "word":
            raise CopyError(f'syntax error at or near "{tok.text}"', sqlstate="42601")
        if word in seen and word not in ("FORMAT",):
            raise CopyError(f"conflicting or redundant COPY option {word}", sqlstate="42601")
        seen.add(word)
        if word == "IAM_ROLE":
            nxt = c.peek()
            if nxt is not None and nxt.is_word("DEFAULT"):
                raise not_emulated("IAM_ROLE default (the cluster's default role)")
            cmd.iam_role = c.string("IAM_ROLE")
        elif word in ("FORMAT", "JSON"):
            if word == "FORMAT":
                c.accept("AS")
                fmt = c.take()
                if not fmt.is_word("JSON"):
                    raise not_emulated(f"COPY FORMAT {fmt.text} (only JSON)")
                if format_seen:
                    raise CopyError("conflicting or redundant COPY option FORMAT", sqlstate="42601")
            format_seen = True
            seen.add("JSON")
            c.accept("AS")
            nxt = c.peek()
            if nxt is not None and nxt.kind == "string":
                cmd.json_option = c.string("JSON")
        elif word == "MANIFEST":
            cmd.manifest = True
        elif word == "REGION":
            c.accept("AS")
            cmd.region = c.string("REGION")
        elif word == "MAXERROR":
            c.accept("AS")
            n = c.take()
            if n.kind != "number" or not n.text.isdigit():
                raise CopyError(f"MAXERROR needs a whole number, got {n.text!r}", sqlstate="42601")
            cmd.maxerror = int(n.text)
            if cmd.maxerror > MAXERROR_LIMIT:
                raise CopyError(f"MAXERROR {cmd.maxerror} is over the limit of {MAXERROR_LIMIT}", sqlstate="22023")
        elif word in ("COMPUPDATE", "STATUPDATE"):
            values = ("ON", "OFF", "TRUE", "FALSE") + (("PRESET",) if word == "COMPUPDATE" else ())
            cmd.ignored[word] = c.take().upper if c.peek() is not None and c.peek().is_word(*values) else "ON"
        elif word in _KNOWN_UNEMULATED:
            raise not_emulated(f"COPY option {word}")
        else:
            raise CopyError(f'syntax error at or near "{tok.text}": unknown COPY option', sqlstate="42601")
    if not format_seen:
        raise not_emulated("COPY without FORMAT AS JSON (pipe-delimited text, the default format)")
    if not cmd.iam_role:
        raise not_emulated("COPY without IAM_ROLE (CREDENTIALS and access keys)")
    opt = cmd.json_option
    if opt.lower() in ("auto", "auto ignorecase"):
        cmd.json_option = opt.lower()
    elif opt.lower() == "noshred":
        raise not_emulated("JSON 'noshred' (SUPER)")
    elif not opt.startswith("s3://"):
        raise CopyError(f"Invalid JSON option '{opt}': 'auto', 'auto ignorecase' or an s3:// JSONPaths file",
                        sqlstate="22023")
    return cmd


# --- target columns -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    typname: str  # pg_type.typname: int4, varchar, …
    format_type: str  # e.g. character varying(512): used for the cast in copy_apply
    typmod: int
    not_null: bool

    @property
    def length(self) -> int | None:
        if self.typname == "varchar":
            return self.typmod - 4 if self.typmod >= 4 else 256  # Redshift: VARCHAR without n is 256
        if self.typname == "bpchar":
            return self.typmod - 4 if self.typmod >= 4 else 1
        return None


_SUPPORTED_TYPES = {"int2", "int4", "int8", "float8", "varchar", "bpchar"}


def check_columns(cmd: CopyCommand, table_columns: list[Column], table_name: str) -> list[Column]:
    """The COPY's target columns (the column list, or every column in table order)."""
    by_name = {c.name: c for c in table_columns}
    if cmd.columns is None:
        targets = list(table_columns)
    else:
        targets, seen = [], set()
        for name in cmd.columns:
            if name not in by_name:
                raise CopyError(f'column "{name}" does not exist in {table_name}', sqlstate="42703")
            if name in seen:
                raise CopyError(f'column "{name}" specified more than once', sqlstate="42701")
            seen.add(name)
            targets.append(by_name[name])
    for col in targets:
        if col.typname not in _SUPPORTED_TYPES:
            raise not_emulated(
                f'COPY into column "{col.name}" of type {col.format_type} (emulated: smallint, integer, '
                f"bigint, double precision, varchar(n), char(n))"
            )
    return targets


# --- S3 and IAM -----------------------------------------------------------------------------------


def split_s3(url: str) -> tuple[str, str]:
    rest = url[len("s3://"):]
    bucket, _, key = rest.partition("/")
    return bucket, key


class S3Reader:
    """S3 and IAM as COPY sees them, through one (moto) endpoint."""

    def __init__(self, endpoint_url: str, region: str, access_key: str = "testing", secret_key: str = "testing"):
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                        region_name=region)
        cfg = Config(retries={"max_attempts": 2, "mode": "standard"})
        self.s3 = session.client("s3", endpoint_url=endpoint_url, config=cfg)
        self.iam = session.client("iam", endpoint_url=endpoint_url, config=cfg)
        self._regions: dict[str, str] = {}

    @staticmethod
    def _s3_error(exc: Exception) -> CopyError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            err, meta = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {})
            text = (f"S3ServiceException:{err.get('Message', '')},Status {meta.get('HTTPStatusCode', '')},"
                    f"Error {err.get('Code', '')}")
            return CopyError(text, code=8001)
        return CopyError(f"S3ServiceException:{type(exc).__name__}: {exc}", code=8001)

    def check_role(self, arn: str, db_user: str, cluster_region: str, cluster_id: str) -> None:
        """The role must exist in IAM with exactly this ARN and trust redshift.amazonaws.com."""
        m = re.fullmatch(r"arn:aws[a-z-]*:iam::(\d{12}):role/(?:[^/]+/)*([^/]+)", arn)
        account = m.group(1) if m else "000000000000"
        user = f"arn:aws:redshift:{cluster_region}:{account}:dbuser:{cluster_id}/{db_user}"
        refused = CopyError(f"User {user} is not authorized to assume IAM Role {arn}", code=8001)
        if not m:
            raise refused
        try:
            role = self.iam.get_role(RoleName=m.group(2))["Role"]
        except Exception:  # NoSuchEntity, or IAM unreachable: Redshift cannot assume it either
            raise refused from None
        if role.get("Arn") != arn or not _trusts_redshift(role.get("AssumeRolePolicyDocument")):
            raise refused

    def check_region(self, bucket: str, region: str) -> None:
        """Redshift needs REGION when the bucket is in another region than the cluster (docs)."""
        if bucket not in self._regions:
            try:
                loc = self.s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
            except Exception as exc:
                raise self._s3_error(exc) from None
            self._regions[bucket] = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(loc, loc)
        if self._regions[bucket] != region:
            raise CopyError(
                "S3ServiceException:The bucket you are attempting to access must be addressed using the specified "
                f"endpoint. Please send all future requests to this endpoint.,Status 301,Error PermanentRedirect "
                f"(bucket {bucket} is in {self._regions[bucket]}, the COPY reads from {region})",
                code=8001,
            )

    def list_prefix(self, bucket: str, prefix: str) -> list[str]:
        keys = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys += [o["Key"] for o in page.get("Contents", [])]
        except Exception as exc:
            raise self._s3_error(exc) from None
        return sorted(keys)

    def get(self, bucket: str, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such key."""
        from botocore.exceptions import ClientError

        try:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self._s3_error(exc) from None
        except Exception as exc:
            raise self._s3_error(exc) from None


def _trusts_redshift(doc: Any) -> bool:
    if isinstance(doc, str):
        try:
            doc = json.loads(urllib.parse.unquote(doc))
        except ValueError:
            return False
    statements = (doc or {}).get("Statement", [])
    for st in statements if isinstance(statements, list) else [statements]:
        actions = st.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        services = (st.get("Principal") or {}).get("Service", []) if isinstance(st.get("Principal"), dict) else []
        services = [services] if isinstance(services, str) else services
        if st.get("Effect") == "Allow" and "sts:AssumeRole" in actions and "redshift.amazonaws.com" in services:
            return True
    return False


def data_files(cmd: CopyCommand, s3: S3Reader) -> list[tuple[str, bytes]]:
    """(s3 URL, bytes) of every data file, in load order (docs: COPY from Amazon S3, Using a manifest)."""
    bucket, key = split_s3(cmd.source)
    if not cmd.manifest:
        # Key prefix: custdata.txt also matches custdata.txt.1, custdata.txt.bak, custdata.txt/part (docs).
        keys = s3.list_prefix(bucket, key)
        if not keys:
            raise CopyError(f"The specified S3 prefix '{key}' does not exist", code=8001)
        return [(f"s3://{bucket}/{k}", s3.get(bucket, k) or b"") for k in keys]
    body = s3.get(bucket, key)
    if body is None:
        # Assumed wording; docs: "COPY returns an error if the specified manifest file isn't found".
        raise CopyError(f"Problem reading manifest file - S3ServiceException:The specified key does not exist.,"
                        f"Status 404,Error NoSuchKey,Key {key}", code=8001)
    try:
        manifest = json.loads(body.decode("utf-8"))
        entries = manifest["entries"]
        if not isinstance(entries, list):
            raise TypeError("entries is not a list")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CopyError(f"Manifest file is not in correct json format ({exc})", code=8001) from None
    files = []
    for entry in entries:
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not url.startswith("s3://") or not split_s3(url)[1]:
            # Load error reference 8001: "COPY with MANIFEST parameter requires full path of an S3 object."
            raise CopyError("COPY with MANIFEST parameter requires full path of an S3 object.", code=8001)
        entry_bucket, entry_key = split_s3(url)
        data = s3.get(entry_bucket, entry_key)
        if data is None:
            if entry.get("mandatory", False) is True:  # docs: default is false
                # Assumed wording; docs: "COPY terminates if it doesn't find the file for that entry".
                raise CopyError(f"Manifest file entry {url} is mandatory, but the object was not found "
                                f"(S3ServiceException:The specified key does not exist.,Status 404,Error NoSuchKey)",
                                code=8001)
            continue
        files.append((url, data))
    if not files:
        # docs: "Regardless of any mandatory settings, COPY will terminate if no files are found."
        raise CopyError(f"Manifest {cmd.source} lists no S3 object that exists", code=8001)
    return files


# --- JSONPaths ------------------------------------------------------------------------------------

_BRACKET_STEP = re.compile(r"\[\s*(?:'([^']*)'|\"([^\"]*)\"|(\d+))\s*\]")
_DOT_STEP = re.compile(r"\.([^'.\[\]\s]+)")


def parse_jsonpath(path: str) -> tuple[list[str | int], str]:
    """'$['a']['b'][0]' or '$.a.b[0]' -> (['a', 'b', 0], 'bracket' | 'dot' | 'none')."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise CopyError(f"Invalid JSONPath format: {path!r} must start with $", code=1216)
    steps: list[str | int] = []
    style = "none"
    pos = 1
    while pos < len(path):
        m = _BRACKET_STEP.match(path, pos)
        if m:
            if m.group(3) is not None:
                steps.append(int(m.group(3)))
            else:
                steps.append(m.group(1) if m.group(1) is not None else m.group(2))
                style = _style(style, "bracket", path)
            pos = m.end()
            continue
        m = _DOT_STEP.match(path, pos)
        if m:
            steps.append(m.group(1))
            style = _style(style, "dot", path)
            pos = m.end()
            continue
        raise CopyError(f"Invalid JSONPath format: {path!r}: wildcards, filters, recursive descent and negative "
                        f"indexes are not supported (only $['name'], $.name and [n])", code=1216)
    return steps, style


def _style(current: str, new: str, path: str) -> str:
    if current not in ("none", new):
        raise CopyError(f"Invalid JSONPath format: {path!r} mixes bracket and dot notation", code=1216)
    return new


def load_jsonpaths(cmd: CopyCommand, s3: S3Reader, ncolumns: int) -> list[list[str | int]] | None:
    """The paths of the JSONPaths file, or None for 'auto' (also when its key is not "jsonpaths": docs)."""
    if not cmd.json_option.startswith("s3://"):
        return None
    bucket, key = split_s3(cmd.json_option)
    body = s3.get(bucket, key)
    if body is None:
        raise CopyError(f"JSONPath file {cmd.json_option} not found (S3ServiceException:The specified key does not "
                        f"exist.,Status 404,Error NoSuchKey)", code=8001)  # wording assumed
    try:
        doc = json.loads(body.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CopyError(f"Invalid JSONPath format: the JSONPaths file is not JSON ({exc})", code=1216) from None
    if not isinstance(doc, dict) or "jsonpaths" not in doc:
        # docs: "If the key name is any string other than "jsonpaths", the COPY command doesn't return an
        # error, but it ignores jsonpaths_file and uses the 'auto' argument instead."
        return None
    paths = doc["jsonpaths"]
    if not isinstance(paths, list):
        raise CopyError("Invalid JSONPath format: \"jsonpaths\" must be an array of JSONPath expressions", code=1216)
    parsed = [parse_jsonpath(p) for p in paths]
    styles = {s for _, s in parsed} - {"none"}
    if len(styles) > 1:  # docs: "You cannot mix bracket notation and dot notation in the jsonpaths array."
        raise CopyError("Invalid JSONPath format: the jsonpaths array mixes bracket and dot notation", code=1216)
    if len(paths) != ncolumns:
        # Wording as Redshift prints it (not in the guide).
        raise CopyError(f"Number of jsonpaths and the number of columns should match. JSONPath size: {len(paths)}, "
                        f"Number of columns in table or column list: {ncolumns}", code=8001)
    return [steps for steps, _ in parsed]


def evaluate(steps: list[str | int], record: Any) -> Any:
    """A path's value; a missing key, an index out of range or a step into a scalar give None (assumed)."""
    value = record
    for step in steps:
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                return None
        elif not isinstance(value, dict) or step not in value:
            return None
        value = value[step]
    return value


# --- JSON framing ---------------------------------------------------------------------------------


class JsonNumber(str):
    """A JSON number kept as its source text (so 1.50 loads into VARCHAR as 1.50, and 1.5 is not an int)."""


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_int=JsonNumber, parse_float=JsonNumber, parse_constant=_refuse_constant)


@dataclass
class Span:
    """One record candidate: bytes [start, end) of the file and the lines it covers."""

    start: int
    end: int
    first_line: int
    last_line: int
    balanced: bool  # an object/array whose brackets closed (else: stray text or an unclosed structure)


def frame(data: bytes) -> Iterator[Span]:
    """Split a file into record candidates (docs: objects or arrays separated only by white space).

    Assumed where the guide is silent: a structure is delimited by bracket matching outside strings; a
    raw newline inside a string, or the end of the file before the brackets close, ends the candidate at
    the end of its first line (the next line is read afresh); other non-white-space text is one rejected
    candidate up to the next '{' or '[' on its line, or the end of the line. A UTF-8 byte-order mark at
    the start of the file is skipped; blank lines are not records.
    """
    pos = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    n = len(data)
    line = 1
    while True:
        while pos < n and data[pos] in JSON_WHITESPACE:
            if data[pos] == 0x0A:
                line += 1
            pos += 1
        if pos >= n:
            return
        eol = data.find(b"\n", pos)
        eol = n if eol < 0 else eol
        if data[pos] in b"{[":
            end = _structure_end(data, pos)
            balanced = end is not None
            end = end if balanced else eol
        else:
            nxt = [i for i in (data.find(b"{", pos, eol), data.find(b"[", pos, eol)) if i >= 0]
            end, balanced = (min(nxt) if nxt else eol), False
        last_line = line + data.count(b"\n", pos, max(pos, end - 1))
        yield Span(pos, end, line, last_line, balanced)
        line = last_line
        pos = end


def _structure_end(data: bytes, start: int) -> int | None:
    depth, in_string, escape = 0, False, False
    for i in range(start, len(data)):
        b = data[i]
        if in_string:
            if escape:
                escape = False
            elif b == 0x5C:  # backslash
                escape = True
            elif b == 0x22:
                in_string = False
            elif b == 0x0A:
                return None  # JSON strings cannot hold a raw newline: the structure is broken here
        elif b == 0x22:
            in_string = True
        elif b in b"{[":
            depth += 1
        elif b in b"}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


# --- UTF-8 (docs: Multibyte character load errors, error numbers 1-9) ------------------------------


def utf8_problem(raw: bytes) -> tuple[int, str] | None:
    """(Redshift's UTF-8 error number, hex of the bad sequence) of the first invalid sequence, or None."""
    i, n = 0, len(raw)
    while i < n:
        b = raw[i]
        if b < 0x80:
            i += 1
            continue
        if 0x80 <= b <= 0xBF or b in (0xFE, 0xFF):
            return 3, f"{b:02x}"  # a lone continuation byte or 254/255 cannot start a character
        if b >= 0xF8:
            return 1, raw[i:i + 5].hex()  # a 5- or 6-byte form: more than the four bytes VARCHAR supports
        need = 1 if b < 0xE0 else 2 if b < 0xF0 else 3
        seq = raw[i:i + 1 + need]
        for j, cont in enumerate(seq[1:], start=1):
            if not 0x80 <= cont <= 0xBF:
                return 4, seq[: j + 1].hex()  # a trailing byte out of range
        if len(seq) < need + 1:
            return 2, seq.hex()  # the string ended inside the character
        cp = (b & (0x3F >> need)) if need else b
        for cont in seq[1:]:
            cp = (cp << 6) | (cont & 0x3F)
        if 0xD800 <= cp <= 0xDFFF:
            return 5, seq.hex()  # a surrogate
        if cp > 0x10FFFF:
            return 8, seq.hex()  # above the highest code point
        if cp < (0x80, 0x800, 0x10000)[need - 1]:
            return 9, seq.hex()  # an overlong form: no matching code point (assumed for overlongs)
        i += need + 1
    return None


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def _bytes_of(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")  # raw bytes that were not UTF-8
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")  # \ud800-style escapes in the JSON text


def printable(text: str) -> str:
    """raw_line / raw_field_value: "Multibyte characters in the load data are replaced with a period" (docs)."""
    return "".join(ch if ord(ch) < 0x80 else "." for ch in text)


# --- conversion into the column type --------------------------------------------------------------


class Reject(Exception):
    """One record is not loaded: a row in stl_load_errors."""

    def __init__(self, code: int, reason: str, column: Column | None = None, value: str = "", position: int = 0):
        super().__init__(reason)
        self.code, self.reason, self.column, self.value, self.position = code, reason, column, value, position


_INT_TYPES = {"int2": ("Short", -32768, 32767), "int4": ("Integer", -2**31, 2**31 - 1),
              "int8": ("Long", -2**63, 2**63 - 1)}
_INT_TEXT = re.compile(r"[+-]?\d+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_BLANK = " \t"  # assumed: the white space a numeric field may carry around its digits


def compact(value: Any) -> str:
    """A nested object/array as loaded into a string column: its JSON text without insignificant white
    space, numbers as written (docs: "the entire object or array is loaded as a string"; the exact
    spacing is assumed)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, JsonNumber):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(compact(v) for v in value) + "]"
    return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + compact(v) for k, v in value.items()) + "}"


def _as_text(value: Any) -> tuple[str, bool]:
    """(text of a JSON value as COPY sees it, whether it was a JSON string)."""
    if value is True or value is False:
        return ("true" if value else "false"), False
    if isinstance(value, JsonNumber):
        return str(value), False
    if isinstance(value, str):
        return value, True
    return compact(value), False


def _first_bad(text: str, allowed: str) -> int:
    for i, ch in enumerate(text):
        if ch not in allowed and not (i == 0 and ch in "+-"):
            return i
    return 0


def convert(value: Any, col: Column) -> str | None:
    """A JSON value as PostgreSQL input text for ``col``, None for NULL; raises Reject."""
    if value is None:
        result = None  # docs: a missing key or JSON null loads NULL
    elif col.typname in _INT_TYPES:
        result = _to_int(value, col)
    elif col.typname == "float8":
        result = _to_float(value, col)
    else:
        result = _to_string(value, col)
    if result is None and col.not_null:
        # Load error reference 1213 "A field specified as NOT NULL contained no data" (wording assumed).
        raise Reject(1213, "Missing data for not-null field", col)
    return result


def _to_int(value: Any, col: Column) -> str | None:
    type_name, low, high = _INT_TYPES[col.typname]
    text, is_string = _as_text(value)
    if is_string:
        text = text.strip(_BLANK)
        if not text:
            return None  # docs (EMPTYASNULL/BLANKSASNULL): empty or blank fields for INT always load NULL
    if not _INT_TEXT.fullmatch(text):
        pos = _first_bad(text, "0123456789")
        bad = text[pos] if pos < len(text) else ""
        # docs (SYS_LOAD_ERROR_DETAIL sample): "Invalid digit, Value 'a', Pos 0, Type: Integer", code 1207.
        raise Reject(1207, f"Invalid digit, Value '{printable(bad)}', Pos {pos}, Type: {type_name}", col, text, pos)
    number = int(text)
    if not low <= number <= high:
        # 1204 "Input data exceeded the acceptable range for the data type"; wording as Redshift prints it.
        raise Reject(1204, f"Overflow ({type_name} valid range {low} to {high})", col, text)
    return str(number)


def _to_float(value: Any, col: Column) -> str | None:
    text, is_string = _as_text(value)
    if is_string:
        text = text.strip(_BLANK)
        if not text:
            return None  # docs: empty fields for non-character types always load NULL
    if not _FLOAT_TEXT.fullmatch(text):
        # 1208 "FLOAT data type format error"; the guide says nothing of "NaN"/"Infinity": rejected (assumed).
        pos = _first_bad(text, "0123456789.eE")
        bad = text[pos] if pos < len(text) else ""
        raise Reject(1208, f"Invalid digit, Value '{printable(bad)}', Pos {pos}, Type: Double", col, text, pos)
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise Reject(1204, "Overflow (Double valid range 2.2250738585072014e-308 to 1.7976931348623157e+308)",
                     col, text)  # wording assumed
    return repr(number)


def _to_string(value: Any, col: Column) -> str | None:
    text, _ = _as_text(value)  # docs: strings as is, nested objects/arrays as their JSON text
    if "\x00" in text:
        # PostgreSQL cannot store NUL in text; Redshift would load it (docs: NULL AS). Fail loudly.
        raise CopyError(f'redshift stand-in: a value for column "{col.name}" contains NUL (\\u0000), which '
                        f"PostgreSQL cannot store; not emulated", sqlstate="0A000")
    if _has_surrogate(text):
        number, hexseq = utf8_problem(_bytes_of(text)) or (5, "")
        raise Reject(1220, f"String contains invalid or unsupported UTF-8 codepoints. Bad UTF-8 hex sequence: "
                           f"{hexseq} (error {number})", col, printable(text))
    length = col.length or 0
    if col.typname == "bpchar":
        wide = next((ch for ch in text if ord(ch) > 0x7F), None)
        if wide is not None:
            raise Reject(1220, f"Multibyte character not supported for CHAR (Hint: Try using VARCHAR). Invalid char: "
                               f"{wide.encode().hex()}", col, printable(text))
        if len(text) > length:
            raise Reject(1204, "Char length exceeds DDL length", col, text)
        return text
    if len(text.encode("utf-8")) > length:
        # 1204; "String length exceeds DDL length" (as Redshift prints it). VARCHAR(n) counts bytes.
        raise Reject(1204, "String length exceeds DDL length", col, printable(text))
    return text


# --- one COPY -------------------------------------------------------------------------------------


@dataclass
class CopySettings:
    json_line_number: str = "last"  # docs: "the last line of the JSON object"; "first" is the alternative
    maxerror_rule: str = "more_than"  # fail when rejects > MAXERROR; "at_least": when rejects >= max(1, n)
    check_iam_role: bool = True
    check_bucket_region: bool = True
    cluster_region: str = "us-west-2"
    cluster_id: str = "standin"


def _error_row(url: str, span: Span, raw_text: str, rej: Reject, settings: CopySettings) -> dict:
    col = rej.column
    return {
        "filename": url,
        "line_number": span.last_line if settings.json_line_number == "last" else span.first_line,
        "colname": col.name if col else "",
        "type": col.typname if col else "",
        "col_length": str(col.length) if col and col.length is not None else "",
        "position": rej.position,
        "raw_line": printable(raw_text)[:1024],
        "raw_field_value": printable(rej.value)[:1024],
        "err_code": rej.code,
        "err_reason": rej.reason,
    }


def read_records(url: str, data: bytes, targets: list[Column], paths: list | None, ignorecase: bool,
                 settings: CopySettings, rows: list, errors: list) -> None:
    """Append the file's converted rows and rejected records."""
    for span in frame(data):
        raw = data[span.start:span.end]
        text = raw.decode("utf-8", "surrogateescape")
        if span.end - span.start > MAX_RECORD_BYTES:
            raise CopyError(f"a JSON object or array in {url} (line {span.first_line}) is larger than 4 MB", code=1216)
        try:
            record = _parse(text, span, paths)
            row = []
            for col, value in zip(targets, _values(record, targets, paths, ignorecase)):
                row.append(convert(value, col))
            rows.append(row)
        except Reject as rej:
            errors.append(_error_row(url, span, text, rej, settings))


def _parse(text: str, span: Span, paths: list | None) -> Any:
    if not span.balanced:
        # docs: non-white-space text before or between valid JSON objects or arrays is an error each time.
        problem = utf8_problem(text.encode("utf-8", "surrogateescape"))
        if problem and text.lstrip()[:1] not in ("{", "["):
            raise _utf8_reject(problem, text)
        raise Reject(1216, "Invalid JSON: text outside a JSON object or array (or a structure that does not close "
                           "on its line)", value=text)  # 1216 "Input line is not valid"; wording assumed
    try:
        record = _DECODER.decode(text)
    except ValueError as exc:
        problem = utf8_problem(text.encode("utf-8", "surrogateescape"))
        if problem:
            raise _utf8_reject(problem, text) from None
        raise Reject(1216, f"Invalid JSON: {exc}", value=text) from None  # wording assumed
    if isinstance(record, list) and paths is None:
        # docs: "If your data files use arrays, you must specify a JSONPaths file".
        raise Reject(1216, "Invalid JSON: an array record needs a JSONPaths file ('auto' maps object keys)",
                     value=text)
    return record


def _utf8_reject(problem: tuple[int, str], text: str) -> Reject:
    number, hexseq = problem
    return Reject(1220, f"String contains invalid or unsupported UTF-8 codepoints. Bad UTF-8 hex sequence: {hexseq} "
                        f"(error {number})", value=printable(text))


def _values(record: Any, targets: list[Column], paths: list | None, ignorecase: bool) -> list:
    if paths is not None:
        return [evaluate(steps, record) for steps in paths]
    if ignorecase:
        lowered = {}
        for key, value in record.items():  # assumed: of keys equal but for case, the last one wins
            lowered[key.lower()] = value
        return [lowered.get(col.name.lower()) for col in targets]
    return [record.get(col.name) for col in targets]  # 'auto': case-sensitive (docs)


def run_copy(cmd: CopyCommand, table: dict, table_columns: list[Column], s3: S3Reader, db_user: str,
             settings: CopySettings, query_id: int, delay: float) -> dict:
    """Everything but the database writes; the payload for copy_apply, or raises CopyError."""
    targets = check_columns(cmd, table_columns, table["name"])
    if settings.check_iam_role:
        s3.check_role(cmd.iam_role, db_user, settings.cluster_region, settings.cluster_id)
    region = cmd.region or settings.cluster_region
    if settings.check_bucket_region:
        s3.check_region(split_s3(cmd.source)[0], region)
        if cmd.json_option.startswith("s3://"):
            s3.check_region(split_s3(cmd.json_option)[0], region)
    paths = load_jsonpaths(cmd, s3, len(targets))
    files = data_files(cmd, s3)
    rows: list = []
    errors: list = []
    for url, data in files:
        read_records(url, data, targets, paths, cmd.json_option == "auto ignorecase", settings, rows, errors)
    if settings.maxerror_rule == "at_least":
        failed = len(errors) >= max(1, cmd.maxerror)
    else:
        failed = len(errors) > cmd.maxerror
    first = errors[0] if errors else None
    return {
        "query_id": query_id,
        "table_sql": table["sql"],
        "table_name": table["name"],
        "table_oid": table["oid"],
        "columns": [{"name": c.name, "type": c.format_type} for c in targets],
        "rows": [] if failed else rows,
        "errors": errors,
        "failed": failed,
        "failure_detail": redshift_detail(first["err_reason"], first["err_code"], query_id,
                                          first["raw_line"][:100]) if failed and first else "",
        "files": len(files),
        "delay": float(delay),
    }
