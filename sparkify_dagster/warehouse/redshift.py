"""The production engine: Amazon Redshift through redshift-connector, staging by COPY from S3.

Load plan (per staging load, inside one transaction):
- events: one ``COPY … FORMAT AS JSON '<log_json_path.json>'`` per new or changed daily log file into
  a temp table, then ``INSERT … SELECT`` into staging_events with the file's key, so every row keeps
  its source file; the rows of changed and vanished files are deleted by ``source_file`` first (the
  plan is ``planning.plan_load``, the embedded engine's): a new day is one COPY whatever the history.
- songs: when any song file changed, one ``COPY … FORMAT AS JSON 'auto' MANIFEST`` of every song file (the song keys are
  lowercase and equal the column names, so 'auto' maps them; a manifest instead of a prefix, so
  neighbouring keys are never picked up and ~15k small files load in one COPY). Rows carry the
  manifest's key as ``source_file``.
- COPY options: IAM_ROLE (never inline keys), REGION, MAXERROR = SPARKIFY_MAX_ERRORS, no
  TRUNCATECOLUMNS / ACCEPTINVCHARS / IGNOREHEADER (nothing is silently dropped or cut), COMPUPDATE and
  STATUPDATE off for staging. ``ts`` is loaded as BIGINT epoch ms, so no TIMEFORMAT is needed; the
  transforms convert it with millisecond precision.
- Rejected rows are read back from ``SYS_LOAD_ERROR_DETAIL`` (file, line, column, reason; on a
  provisioned cluster the raw line too, from ``STL_LOAD_ERRORS``, which Serverless does not have)
  into the shared ``load_errors`` table, with the file's key relative to the data
  root (as the embedded engine writes it) and the loaded_files entry that counts it (``load_unit``:
  the log file, or the song manifest).
- Every write transaction locks the tables it writes first (``LOCK``, Redshift's remedy for
  "ERROR: 1023 Serializable isolation violation"): the two staging loads, or two runs, then wait for
  each other instead of one failing under SERIALIZABLE isolation.
- Within a run the connection is kept open and reused (a connection is a TLS handshake plus
  authentication on a cluster); a second one is opened only while the first is busy (the two staging
  loads run side by side).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import Field, PrivateAttr

from sparkify_dagster.catalog import LOAD_ERRORS, LOADED_FILES, STAGING_EVENTS, Table
from sparkify_dagster.source import DEFAULT_EVENT_JSONPATHS, JSONPATHS_KEY, RawDataSource, RawFile
from sparkify_dagster.text import digest, scrub
from sparkify_dagster.warehouse.base import LoadReport, RunLog, TooManyLoadErrors, Warehouse, rollback
from sparkify_dagster.warehouse.dialect import Dialect, RedshiftDialect, quote_ident, quote_literal, relation
from sparkify_dagster.warehouse.planning import plan_load

MANIFEST_PREFIX = "_sparkify_manifests/"
_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
# Characters allowed in an S3 key that ends up inside a COPY string literal.
_SAFE_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9!\-_.*()/=+,@ &$:;~]*)?$")


class UnsafeValueError(ValueError):
    """A configured or listed value cannot be placed in SQL safely."""


def checked_arn(arn: str) -> str:
    if not _ARN.match(arn or ""):
        raise UnsafeValueError(f"not an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>): {arn!r}")
    return arn


def checked_region(region: str) -> str:
    if not _REGION.match(region or ""):
        raise UnsafeValueError(f"not an AWS region name: {region!r}")
    return region


def checked_s3_uri(uri: str) -> str:
    """An s3:// URI made only of characters that need no escaping inside a COPY literal."""
    if not _SAFE_S3_URI.match(uri or ""):
        raise UnsafeValueError(
            f"S3 URI {uri!r} has characters that cannot be used in a COPY statement safely (quotes, "
            f"backslashes, control characters or non-ASCII): rename the object."
        )
    return uri


def copy_sql(
    target: str,
    columns: Sequence[str],
    from_uri: str,
    *,
    iam_role_arn: str,
    region: str,
    json_option: str,
    manifest: bool = False,
    max_errors: int = 0,
) -> str:
    """One COPY statement; every interpolated value is validated first."""
    json_literal = "'auto'" if json_option == "auto" else quote_literal(checked_s3_uri(json_option))
    lines = [
        f"COPY {quote_ident(target)} ({', '.join(quote_ident(c) for c in columns)})",
        f"FROM {quote_literal(checked_s3_uri(from_uri))}",
        f"IAM_ROLE {quote_literal(checked_arn(iam_role_arn))}",
        f"FORMAT AS JSON {json_literal}",
    ]
    if manifest:
        lines.append("MANIFEST")
    lines += [
        f"REGION {quote_literal(checked_region(region))}",
        f"MAXERROR {int(max_errors)}",
        "COMPUPDATE OFF",
        "STATUPDATE OFF",
    ]
    return "\n".join(lines)


def manifest_json(uris: Sequence[str]) -> bytes:
    """A COPY manifest naming every file exactly (mandatory: a missing file fails the COPY)."""
    return json.dumps({"entries": [{"url": u, "mandatory": True} for u in uris]}, indent=1).encode()


def event_manifest_key(load_id: str, n: int) -> str:
    """Where the one-entry COPY manifest of the n-th log file of a load is written."""
    return f"{MANIFEST_PREFIX}{STAGING_EVENTS.name}/{load_id}/{n:05d}.manifest"


@dataclass(frozen=True)
class StagingScript:
    """A staging load on Redshift as statements, in order: what ``load_staging`` sends (with the
    reads of each COPY's counts and rejects in between) and ``sparkify-sql`` prints.

    COPY goes into a temp table, then ``INSERT … SELECT`` moves the rows into the staging table tagged
    with their ``loaded_files`` entry (``units``: that entry, and its COPY)."""

    table: Table
    units: list[tuple[str, str]]
    # The loaded_files entries whose rows the load replaces; None: every row of the table (a full load).
    replaced: tuple[str, ...] | None = None

    @property
    def temp(self) -> str:
        return quote_ident(f"{self.table.name}_load")

    @property
    def locks(self) -> list[Table]:
        """The tables the load writes: locked first, so concurrent loads wait for each other."""
        return [self.table, LOAD_ERRORS, LOADED_FILES]

    def opening(self, dialect: Dialect) -> list[str]:
        """The locks, then ``setup``."""
        return [*dialect.lock_statements(self.locks), *self.setup()]

    def setup(self) -> list[str]:
        """A temp table to COPY into, and the rows and bookkeeping the load replaces removed (all of
        them, or those of the ``replaced`` entries: changed or vanished files, and files about to be
        loaded again, whose rejects of a failed earlier load go too)."""
        lit = quote_literal(self.table.name)
        out = [f"CREATE TEMP TABLE {self.temp} (LIKE {relation(self.table)})"]
        if self.replaced is None:
            return out + [
                f"DELETE FROM {relation(self.table)}",
                f"DELETE FROM {relation(LOAD_ERRORS)} WHERE table_name = {lit}",
                f"DELETE FROM {relation(LOADED_FILES)} WHERE table_name = {lit}",
            ]
        if not self.replaced:
            return out
        # Keys are listed S3 keys, checked like a COPY path (no quote can reach the literal unescaped).
        keys = ", ".join(quote_literal(k) for k in self.replaced if checked_s3_uri(f"s3://bucket/{k}"))
        return out + [
            f"DELETE FROM {relation(self.table)} WHERE source_file IN ({keys})",
            f"DELETE FROM {relation(LOAD_ERRORS)} WHERE table_name = {lit} AND source_file IN ({keys})",
            f"DELETE FROM {relation(LOADED_FILES)} WHERE table_name = {lit} AND source_file IN ({keys})",
        ]

    def clear(self) -> str:
        """Before each COPY: the temp table emptied."""
        return f"DELETE FROM {self.temp}"

    def move(self, unit_key: str) -> str:
        """After each COPY: its rows into the staging table, tagged with their source."""
        cols = ", ".join(quote_ident(c.name) for c in self.table.copied_columns)
        checked_s3_uri(f"s3://bucket/{unit_key}")  # same character rules as the COPY path it came from
        return (
            f"INSERT INTO {relation(self.table)} ({cols}, \"source_file\")\n"
            f"SELECT {cols}, {quote_literal(unit_key)} FROM {self.temp}"
        )

    def closing(self) -> list[str]:
        """Before COMMIT: the temp table goes (the connection lives on in the run)."""
        return [f"DROP TABLE {self.temp}"]

    def statements(self, dialect: Dialect, notes: dict[str, str] | None = None) -> list[str]:
        """The whole load as one transaction (``notes``: a comment above a unit's COPY)."""
        out = ["BEGIN", *self.opening(dialect)]
        for key, copy in self.units:
            note = f"-- {notes[key]}\n" if notes and key in notes else ""
            out += [self.clear(), note + copy, self.move(key)]
        return [*out, *self.closing(), "COMMIT"]


class RedshiftError(Exception):
    """A statement failed on Redshift: the server's message and SQLSTATE, and which statement it was."""


def _fields(exc: BaseException) -> dict:
    """The protocol's error fields (S severity, C SQLSTATE, M message…) a redshift-connector error
    carries as its argument; empty for other errors."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}


def server_message(exc: BaseException) -> str:
    """The server's own words from a redshift-connector error (its args hold the protocol's fields)."""
    import redshift_connector

    fields = _fields(exc)
    if fields.get("M"):
        return f"{fields['M']} (SQLSTATE {fields.get('C', '?')})"
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, redshift_connector.InterfaceError):
        return f"the connection was lost (the session was ended by the server, or the network failed): {text}"
    return text


class _RedshiftSession:
    def __init__(self, conn: Any):
        self.conn = conn
        self.broken = False  # the connection itself failed (dropped, terminated): do not reuse it

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        import redshift_connector

        try:
            cur = self.conn.cursor()
            cur.paramstyle = "qmark"
            try:
                cur.execute(sql, params) if params is not None else cur.execute(sql)
                return [tuple(r) for r in cur.fetchall()] if cur.description else []
            finally:
                _close(cur)
        except (OSError, redshift_connector.Error) as exc:
            # The socket itself failing (reset, closed, TLS EOF), the driver losing it, or a FATAL error
            # (e.g. the session terminated by an administrator) ends the session: not reusable.
            lost = isinstance(exc, (OSError, redshift_connector.InterfaceError))
            self.broken = self.broken or lost or _fields(exc).get("S") == "FATAL"
            why = (f"the connection was lost ({type(exc).__name__}: {exc})" if isinstance(exc, OSError)
                   else server_message(exc))
            raise RedshiftError(f"Redshift: {why}; statement: {' '.join(sql.split())[:160]}") from exc


class RedshiftWarehouse(Warehouse):
    """The Sparkify warehouse on Amazon Redshift (production binding of the ``warehouse`` key)."""

    host: str
    port: int = 5439
    database: str
    user: str | None = Field(None, description="The database user (with IAM on a cluster: the one to get credentials for).")
    password: str | None = Field(
        None, description="From REDSHIFT_PASSWORD through dg.EnvVar: never shown or logged. Unset with IAM auth.")
    auth: str = Field("password", description="password, or iam: temporary credentials from the AWS credential chain.")
    cluster_identifier: str | None = Field(None, description="The provisioned cluster (REDSHIFT_CLUSTER_ID), for IAM auth.")
    workgroup: str | None = Field(
        None, description="A Serverless workgroup (REDSHIFT_WORKGROUP): loads read SYS views, which both deployments have.")
    iam_role_arn: str
    region: str
    schema_name: str = "public"
    connect_timeout_seconds: int = 30
    sslmode: str | None = Field(
        None, description="verify-ca or verify-full (REDSHIFT_SSLMODE); unset: the driver's default (TLS, CA checked).")

    _idle: list = PrivateAttr(default_factory=list)
    _pool_lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def dialect(self) -> Dialect:
        return RedshiftDialect()

    @property
    def kind(self) -> str:
        return "redshift"

    @property
    def incremental_star(self) -> bool:
        return True

    def is_deadlock(self, exc: BaseException) -> bool:
        cause = exc if _fields(exc) else exc.__cause__
        return cause is not None and _fields(cause).get("C") == "40P01"

    @property
    def serverless(self) -> bool:
        """A Serverless workgroup: no STL views (rejects come from SYS_LOAD_ERROR_DETAIL on both)."""
        return self.workgroup is not None

    def describe(self) -> str:
        who = self.user or "iam"
        where = f"workgroup {self.workgroup} " if self.serverless else ""
        return f"{where}redshift://{who}@{self.host}:{self.port}/{self.database}".strip()

    def connect_arguments(self) -> dict[str, Any]:
        """What ``redshift_connector.connect`` gets, for the deployment and authentication method.

        IAM: the driver calls GetClusterCredentials (a cluster: ``cluster_identifier``, ``db_user``,
        ``auto_create``) or the Serverless GetCredentials (the workgroup) itself, with boto3's
        standard credential chain (profile, environment, instance role), and caches the temporary
        password until it expires; none is configured here."""
        args: dict[str, Any] = dict(host=self.host, port=self.port, database=self.database,
                                    timeout=self.connect_timeout_seconds)
        if self.sslmode:
            args["sslmode"] = self.sslmode
        if self.auth == "iam":
            args.update(iam=True, region=self.region)
            if self.serverless:
                args.update(is_serverless=True, serverless_work_group=self.workgroup)
            else:
                args.update(cluster_identifier=self.cluster_identifier, db_user=self.user, auto_create=True)
            return args
        return {**args, "user": self.user, "password": self.password}

    def qualified_name(self, table: Table) -> str:
        return f"{self.database}.{self.schema_name}.{table.name}"

    def _connect(self) -> Any:
        import redshift_connector

        try:
            conn = redshift_connector.connect(**self.connect_arguments())
        except Exception as exc:
            # The driver's message never carries the password; the exception's args might, so drop them.
            raise ConnectionError(
                f"cannot connect to {self.describe()}: {_connect_error(exc, self.password)}"
            ) from None
        conn.autocommit = True  # transactions are explicit (BEGIN/COMMIT), as on DuckDB
        # The driver keeps ``timeout`` on the socket for every read after connecting: a COPY or a rebuild
        # that runs longer would fail with "read operation timed out". It is meant for the connect only.
        sock = getattr(conn, "_usock", None)
        if sock is not None:
            sock.settimeout(None)
        return conn

    def close_run_connections(self) -> None:
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)

    @contextmanager
    def session(self) -> Iterator[_RedshiftSession]:
        """A connection: within a run, an idle one of the run's (opened on first use, kept until the
        run ends); outside a run, a new one closed on exit."""
        conn = None
        if self._in_run:
            with self._pool_lock:
                conn = self._idle.pop() if self._idle else None
        session = _RedshiftSession(conn or self._connect())
        reusable = False
        try:
            yield session
            reusable = self._in_run and not session.broken
        finally:
            if reusable:
                with self._pool_lock:
                    self._idle.append(session.conn)
            else:
                _close(session.conn)

    def load_staging(
        self, table: Table, source: RawDataSource, files: Sequence[RawFile], load_id: str, log: RunLog,
        jsonpaths: Sequence[str] | None = None, full_refresh: bool = False,
        reload_keys: frozenset[str] = frozenset(),
    ) -> LoadReport:
        """COPY the files into ``table`` in one transaction; rejects (SYS_LOAD_ERROR_DETAIL) to load_errors.

        A table copied per file (events) is planned against the load manifest like the embedded
        engine's: one COPY per new or changed file, none for unchanged ones, the rows of changed or
        vanished files removed by ``source_file``. A table loaded by one manifest (songs) is reloaded
        whole when any of its files changed, and left as it is otherwise.
        """
        started = time.monotonic()
        report = LoadReport(table=table.name)
        versions = {f.key: f.version for f in files}
        with self.session() as s:
            loaded = self.loaded_versions(s, table)
        replaced: tuple[str, ...] | None = None
        if table.raw.copy_per_file:
            plan = plan_load(loaded, files, full_refresh=full_refresh, reload_keys=reload_keys)
            report.files_unchanged = plan.unchanged
            report.files_removed = plan.removed
            if plan.is_empty:
                log.info(f"{table.name}: all {len(files):,} files unchanged since the last load")
                return report
            log.info(f"{table.name}: {len(plan.to_load):,} new or changed files to COPY, {plan.unchanged:,} "
                     f"unchanged, {report.files_removed:,} gone from the source")
            files = plan.to_load
            if not full_refresh:
                replaced = tuple(plan.replaced)
        elif not full_refresh and loaded and list(loaded.values()) == [digest(versions)]:
            report.files_unchanged = len(files)
            log.info(f"{table.name}: all {len(files):,} files unchanged since the last load")
            return report
        elif not full_refresh and not loaded and not files:
            return report
        script = self.staging_script(table, files, source.s3_uri, self._jsonpaths_uri(table, source),
                                     self._manifest_key(table, source, files, load_id),
                                     self._event_manifests(table, source, files, load_id), replaced=replaced)
        units = script.units
        root = source.s3_uri("")  # rejects name files by their full s3:// URL
        unit_key = units[0][0] if units else ""
        # SPARKIFY_MAX_ERRORS counts the rejects of the whole load, as on the embedded engine; each COPY's
        # MAXERROR only bounds that COPY, so the load's total is checked here after every COPY.
        rejects: list[tuple[str, tuple]] = []  # (load unit, reject) of this load so far
        with self.session() as s:
            self.begin_locked(s, script.locks)
            in_copy = False  # the failing statement was a COPY
            try:
                seen = self._rejects_seen(s)
                for statement in script.setup():
                    s.execute(statement)
                for done, (unit_key, copy) in enumerate(units, start=1):
                    s.execute(script.clear())
                    in_copy = True
                    s.execute(copy)
                    in_copy = False
                    staged = s.execute("SELECT pg_last_copy_count()")[0][0]
                    errors, seen = self._new_rejects(s, seen)
                    errors = _with_raw_lines(source, _relative(root, errors))
                    s.execute(script.move(unit_key))
                    version = versions.get(unit_key) or digest(versions)
                    self._record(s, table, unit_key, staged, errors, load_id, version=version)
                    report.add(staged + len(errors), staged, len(errors))
                    rejects += [(unit_key, e) for e in errors]
                    if len(rejects) > self.max_errors:
                        raise _OverTheLimit()
                    report.first_errors += [
                        dict(source_file=e[0], line_number=e[1], column_name=e[2], reason=e[3]) for e in errors
                    ][: max(0, 10 - len(report.first_errors))]
                    log.info(f"{table.name}: {done}/{len(units)} COPY statements, {report.records_staged:,} rows")
                for statement in script.closing():
                    s.execute(statement)
            except BaseException as exc:
                # Only a COPY that failed on its data has rejects of its own (newer than the last COPY
                # that loaded); any other failure, or a dead connection, surfaces as it is.
                over = isinstance(exc, _OverTheLimit)
                rolled_back = rollback(s, exc)
                failed = (_with_raw_lines(source, _relative(root, self._new_rejects(s, seen)[0]))
                          if rolled_back and in_copy else [])
                if failed or (over and rolled_back):
                    # Keep the failed load's rejects visible (its earlier COPYs' too, as the embedded
                    # engine does), like the system views themselves; the table is untouched.
                    s.execute("BEGIN")
                    for unit, group in _by_unit(rejects + [(unit_key, e) for e in failed]):
                        self._record(s, table, unit, 0, group, load_id, files_row=False)
                    s.execute("COMMIT")
                    first = (failed or [e for _, e in rejects])[0]
                    how = ("a COPY rejected more than" if failed else
                           f"the load's COPYs rejected {len(rejects)} records together, more than")
                    raise TooManyLoadErrors(
                        f"{table.name}: {how} SPARKIFY_MAX_ERRORS={self.max_errors}; "
                        f"nothing was loaded. First bad record: {first[0]} line {first[1]} column {first[2]}: "
                        f"{first[3]}. All rejects are in the load_errors table."
                    ) from (None if over else exc)
                raise
            s.execute("COMMIT")
        report.seconds = time.monotonic() - started
        return report

    def staging_script(self, table: Table, files: Sequence[RawFile], s3_uri: Callable[[str], str],
                       jsonpaths_uri: str | None, manifest_key: str | None,
                       event_manifests: dict[str, str], replaced: tuple[str, ...] | None = None) -> StagingScript:
        """The load's statements, with its (source_file, COPY) units: one per file where the table's
        raw input is copied per file (a day of events), else one manifest of every file (songs). Pure.

        COPY FROM 's3://…/key' loads every object whose key starts with that string (…events.json.bak,
        …events.json/part-0.json), so each log file is read through a one-entry manifest
        (``event_manifests``: log file key -> manifest key) naming exactly that object."""
        columns = [c.name for c in table.copied_columns]
        common = dict(iam_role_arn=self.iam_role_arn, region=self.region, max_errors=self.max_errors)
        temp = f"{table.name}_load"
        if table.raw.copy_per_file:
            units = []
            for f in files:
                checked_s3_uri(s3_uri(f.key))  # a refusal names the object, not its manifest
                units.append((f.key, copy_sql(temp, columns, s3_uri(event_manifests[f.key]),
                                              json_option=jsonpaths_uri, manifest=True, **common)))
            return StagingScript(table, units, replaced)
        if not files:  # every song file gone: the table is emptied, there is nothing to COPY
            return StagingScript(table, [])
        return StagingScript(table, [(manifest_key, copy_sql(temp, columns, s3_uri(manifest_key), json_option="auto",
                                                             manifest=True, **common))])

    @staticmethod
    def _jsonpaths_uri(table: Table, source: RawDataSource) -> str | None:
        if not table.raw.jsonpaths:
            return None
        if source.has(JSONPATHS_KEY):
            return source.s3_uri(JSONPATHS_KEY)
        # COPY reads JSONPaths from S3: publish the default mapping beside the manifests.
        body = json.dumps({"jsonpaths": DEFAULT_EVENT_JSONPATHS}, indent=4).encode()
        return source.s3_uri(source.write_bytes(f"{MANIFEST_PREFIX}{JSONPATHS_KEY}", body))

    @staticmethod
    def _event_manifests(table: Table, source: RawDataSource, files: Sequence[RawFile],
                         load_id: str) -> dict[str, str]:
        """Write one manifest per log file (every key checked before anything is written)."""
        if not table.raw.copy_per_file:
            return {}
        bodies = [(f.key, manifest_json([checked_s3_uri(source.s3_uri(f.key))])) for f in files]
        return {key: source.write_bytes(event_manifest_key(load_id, n), body) for n, (key, body) in enumerate(bodies)}

    @staticmethod
    def _manifest_key(table: Table, source: RawDataSource, files: Sequence[RawFile], load_id: str) -> str | None:
        if table.raw.copy_per_file:
            return None
        body = manifest_json([checked_s3_uri(source.s3_uri(f.key)) for f in files])
        return source.write_bytes(f"{MANIFEST_PREFIX}{table.name}/{load_id}.manifest", body)

    def _rejects_seen(self, s: _RedshiftSession) -> RejectsSeen:
        """Where this session's rejects stand before the load: only newer ones are the load's."""
        sys_id = s.execute("SELECT COALESCE(MAX(query_id), -1) FROM sys_load_error_detail "
                           "WHERE session_id = pg_backend_pid()")[0][0]
        # A leader-node function, asked on its own rather than beside a system view.
        stl_id = -1 if self.serverless else s.execute("SELECT pg_last_copy_id()")[0][0]
        return RejectsSeen(int(sys_id), int(stl_id))

    def _new_rejects(self, s: _RedshiftSession, seen: RejectsSeen) -> tuple[list[tuple], RejectsSeen]:
        """The rejects of this session's last COPY (file URL, line, column, reason, raw line), and
        where the rejects stand after it.

        From SYS_LOAD_ERROR_DETAIL, which a provisioned cluster and a Serverless workgroup both have
        (rows of a failed COPY survive its rollback): this session's rows newer than the last seen.
        A COPY refused before loading (access denied, a missing object) has none, so nothing older is
        ever blamed on it. SYS views number queries apart from STL's ``query`` and
        ``pg_last_copy_id()``, so the two are never compared; the raw line, which only
        STL_LOAD_ERRORS keeps, is matched by file and line among this session's newer STL rows,
        where the deployment has STL at all."""
        rows = s.execute(
            "SELECT query_id, TRIM(file_name), line_number, TRIM(column_name), TRIM(error_message) "
            "FROM sys_load_error_detail WHERE session_id = pg_backend_pid() AND query_id > ? "
            "ORDER BY file_name, line_number", [seen.sys_query_id])
        if not rows:
            return [], seen
        raw: dict[tuple[str, int], str] = {}
        stl_id = seen.stl_query_id
        if not self.serverless:
            for query, file, line, text in s.execute(
                    "SELECT query, TRIM(filename), line_number, TRIM(raw_line) FROM stl_load_errors "
                    "WHERE session = pg_backend_pid() AND query > ?", [seen.stl_query_id]):
                raw[(file, line)] = text
                stl_id = max(stl_id, query)
        errors = [(file, line, column, reason, raw.get((file, line), "")) for _, file, line, column, reason in rows]
        return errors, RejectsSeen(max(r[0] for r in rows), stl_id)

    @staticmethod
    def _record(s: _RedshiftSession, table: Table, unit_key: str, staged: int, errors: list, load_id: str,
                files_row: bool = True, version: str = "") -> None:
        if errors:
            values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(errors))
            params = [v for e in errors
                      for v in (table.name, e[0], e[1], e[2], e[3], (e[4] or "")[:1024], load_id, unit_key)]
            s.execute(f"INSERT INTO {quote_ident(LOAD_ERRORS.name)} VALUES {values}", params)
        if files_row:
            s.execute(
                f"INSERT INTO {quote_ident(LOADED_FILES.name)} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [table.name, unit_key, version, None, staged + len(errors), staged, len(errors), load_id],
            )


@dataclass(frozen=True)
class RejectsSeen:
    """The newest reject of a session already accounted for, in SYS's and in STL's query numbering."""

    sys_query_id: int
    stl_query_id: int


class _OverTheLimit(Exception):
    """The load's COPYs together rejected more records than SPARKIFY_MAX_ERRORS."""


def _by_unit(rejects: list[tuple[str, tuple]]) -> list[tuple[str, list[tuple]]]:
    groups: dict[str, list[tuple]] = {}
    for unit, reject in rejects:
        groups.setdefault(unit, []).append(reject)
    return list(groups.items())


def _relative(root: str, errors: list[tuple]) -> list[tuple]:
    """Rejects as the embedded engine records them: the file's key relative to the data root
    (the system views have the full URL) and no column when none is named (a CHAR column, blank)."""
    return [(e[0][len(root):] if e[0] and e[0].startswith(root) else e[0], e[1], e[2] or None, *e[3:])
            for e in errors]


def _with_raw_lines(source: RawDataSource, errors: list[tuple]) -> list[tuple]:
    """Rejects whose raw line the server did not give (Serverless has no STL_LOAD_ERRORS) get it
    from the file itself: the line the reject names, as the embedded engine records it."""
    missing = sorted({e[0] for e in errors if not e[4]})
    lines: dict[str, list[str]] = {}
    for key in missing:
        try:
            lines[key] = source.read_bytes(key).decode("utf-8", errors="replace").splitlines()
        except Exception:  # gone or unreadable since the COPY: the reject still names file and line
            lines[key] = []
    out = []
    for e in errors:
        text = e[4]
        if not text and 0 < (e[1] or 0) <= len(lines.get(e[0], [])):
            text = lines[e[0]][e[1] - 1]
        out.append((*e[:4], text))
    return out


def _connect_error(exc: Exception, password: str | None) -> str:
    """One line for a failed connection: the server's message, or the socket error the driver wraps."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and not _fields(exc):
        return f"{type(exc).__name__}: {scrub(str(cause), password)}"
    return f"{type(exc).__name__}: {scrub(server_message(exc), password)}"


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # already gone (terminated, dropped): nothing to release
        pass
