"""The loopback proxy between redshift-connector and PostgreSQL: TLS, startup, SQL rewriting, COPY.

One thread per client connection relays PostgreSQL v3 messages both ways (a single thread with a
selector, so the TLS socket is never read and written from two threads at once). On the way:

- TLS: the driver opens with an SSLRequest; the proxy answers 'S' and terminates TLS with the
  stand-in's throwaway CA (PostgreSQL behind it is plain TCP on loopback).
- Startup: keys PostgreSQL does not know (client_protocol_version, driver_version, os_version, IdP
  keys…) are dropped; search_path is set (the stl_ views are left out in serverless mode).
- ParameterStatus server_version "15.18 (Debian …)" reaches the driver as "15.18" (it parses it with
  packaging.version).
- Parse (extended protocol) and Query (simple protocol): CREATE TABLE loses Redshift-only clauses
  (sql_rewrite); COPY becomes ``CALL redshift_standin_sys.copy_apply($1)``. When the client executes
  it (Bind), the proxy looks the target table up *in the client's own session* (an injected simple
  query whose response is swallowed, so TEMP tables resolve), reads S3, converts the records
  (copy_emulation) and binds the result as the parameter. TRUNCATE inside a transaction gets an
  injected COMMIT first (TRUNCATE commits on Redshift).
- Errors: a PostgreSQL serialization failure (40001) is reworded as Redshift's "1023 … Serializable
  isolation violation"; the tag "CALL" of an emulated COPY becomes "COPY <rows>".
Every SQL text a client sends is recorded in the statement log.
"""

from __future__ import annotations

import itertools
import json
import re
import selectors
import socket
import ssl
import struct
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sparkify_dagster_tests.redshift_standin import copy_emulation as ce
from sparkify_dagster_tests.redshift_standin import pgwire
from sparkify_dagster_tests.redshift_standin.sql_rewrite import (
    SqlSyntaxError,
    quote_literal,
    rewrite_statement,
    split_statements,
    statement_kind,
)

if TYPE_CHECKING:
    from sparkify_dagster_tests.redshift_standin.standin import RedshiftStandin

# Startup keys PostgreSQL understands (case-insensitive GUC names); everything else is dropped.
STARTUP_KEYS = {"user", "database", "options", "application_name", "client_encoding", "datestyle",
                "timezone", "intervalstyle", "extra_float_digits"}
COPY_CALL = "CALL redshift_standin_sys.copy_apply($1::jsonb)"

_LOOKUP_SQL = """
SELECT a.attname, t.typname, format_type(a.atttypid, a.atttypmod), a.atttypmod, a.attnotnull,
       c.oid, c.relname, c.oid::regclass::text, nextval('redshift_standin_sys.query_ids')
FROM pg_class AS c
LEFT JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_type AS t ON t.oid = a.atttypid
WHERE c.oid = to_regclass({table})
ORDER BY a.attnum
"""


@dataclass
class LoggedStatement:
    connection: int
    event: str  # "parse", "execute" (Bind of a prepared statement) or "query" (simple protocol)
    sql: str
    rewritten: str
    at: float = field(default_factory=time.time)


class StatementLog:
    """Every SQL text clients sent, in order, with the connection number (1, 2, …) it came on."""

    def __init__(self) -> None:
        self.entries: list[LoggedStatement] = []
        self.connections: list[dict] = []  # {"connection", "user", "database", "application_name", "pid"}
        self._lock = threading.Lock()

    def add(self, entry: LoggedStatement) -> None:
        with self._lock:
            self.entries.append(entry)

    def executed(self, connection: int | None = None) -> list[str]:
        """SQL as executed: every Bind of a prepared statement and every simple query."""
        return [e.sql for e in list(self.entries)
                if e.event in ("execute", "query") and (connection is None or e.connection == connection)]

    def count(self, pattern: str, flags: int = re.IGNORECASE) -> int:
        """How many executed statements match a regular expression (re.search)."""
        rx = re.compile(pattern, flags)
        return sum(1 for sql in self.executed() if rx.search(sql))

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()
            self.connections.clear()


@dataclass
class _Prepared:
    sql: str
    kind: str
    copy: ce.CopyCommand | None = None


class Proxy:
    """Listens on 127.0.0.1:<port>; one ``_Session`` thread per client connection."""

    def __init__(self, standin: RedshiftStandin, ssl_context: ssl.SSLContext):
        self.standin = standin
        self.ssl_context = ssl_context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.log = StatementLog()
        self._ids = itertools.count(1)
        self._sessions: set[_Session] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="redshift-standin-proxy", daemon=True)

    def start(self) -> Proxy:
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            # Without TCP_NODELAY, Nagle's algorithm and delayed ACKs cost ~40 ms per message round trip.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = _Session(self, sock, next(self._ids))
            with self._lock:
                self._sessions.add(session)
            session.start()

    def forget(self, session: _Session) -> None:
        with self._lock:
            self._sessions.discard(session)

    def stop(self) -> None:
        self._closed = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self._lock:
            sessions = list(self._sessions)
        for s in sessions:
            s.close()


class _Session(threading.Thread):
    def __init__(self, proxy: Proxy, sock: socket.socket, number: int):
        super().__init__(name=f"redshift-standin-conn-{number}", daemon=True)
        self.proxy, self.standin = proxy, proxy.standin
        self.client: socket.socket = sock
        self.backend: socket.socket | None = None
        self.number = number
        self.user = ""
        self.backend_pid: int | None = None
        self.prepared: dict[str, _Prepared] = {}
        self.pending = 0  # Sync/Query cycles sent to the backend whose ReadyForQuery has not come back
        self.unsynced = False  # extended-protocol messages sent since the last Sync
        self.txn_status = b"I"
        self.copy_tags: list[int] = []  # row counts of emulated COPYs awaiting their CommandComplete

    # --- plumbing -----------------------------------------------------------------------------

    def close(self) -> None:
        for s in (self.client, self.backend):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    def run(self) -> None:
        try:
            if self._startup():
                self._relay()
        except (pgwire.ConnectionClosed, OSError, ssl.SSLError):
            pass
        finally:
            self.close()
            self.proxy.forget(self)

    def _startup(self) -> bool:
        code, rest = pgwire.read_startup(self.client)
        tls = False
        while code in (pgwire.SSL_REQUEST, pgwire.GSSENC_REQUEST):
            if code == pgwire.SSL_REQUEST and not tls:
                self.client.sendall(b"S")
                self.client = self.proxy.ssl_context.wrap_socket(self.client, server_side=True)
                tls = True
            else:
                self.client.sendall(b"N")
            code, rest = pgwire.read_startup(self.client)
        if code == pgwire.CANCEL_REQUEST:
            # The client holds the real backend's pid/key (BackendKeyData is passed through): forward it.
            with socket.create_connection(("127.0.0.1", self.standin.cluster.port)) as pg:
                pg.sendall(struct.pack("!ii", 16, code) + rest)
            return False
        if code != pgwire.PROTOCOL_3:
            self.client.sendall(pgwire.error_response(f"unsupported frontend protocol {code}", "08P01", "FATAL"))
            return False
        params = pgwire.parse_startup_params(rest)
        if self.standin.require_ssl and not tls:
            self.client.sendall(pgwire.error_response(
                f'no pg_hba.conf entry for host "127.0.0.1", user "{params.get("user", "")}", database '
                f'"{params.get("database", "")}", SSL off (the stand-in requires SSL, as require_ssl=true)',
                "28000", "FATAL"))
            return False
        kept = {k: v for k, v in params.items() if k.lower() in STARTUP_KEYS}
        kept["search_path"] = self.standin.search_path()
        self.user = params.get("user", "")
        self.proxy.log.connections.append({
            "connection": self.number, "user": self.user, "database": params.get("database", ""),
            "application_name": params.get("application_name", ""), "tls": tls, "pid": None,
        })
        self.backend = socket.create_connection(("127.0.0.1", self.standin.cluster.port))
        self.backend.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.backend.sendall(pgwire.startup_packet(kept))
        self.pending = 1  # the ReadyForQuery that ends authentication
        return True

    def _relay(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.client, selectors.EVENT_READ, "client")
        sel.register(self.backend, selectors.EVENT_READ, "backend")
        while True:
            if isinstance(self.client, ssl.SSLSocket) and self.client.pending():
                ready = ["client"]  # decrypted bytes already buffered: select() would not see them
            else:
                ready = [key.data for key, _ in sel.select()]
            for side in ready:
                if side == "client":
                    if not self._from_client(*pgwire.read_message(self.client)):
                        return
                else:
                    self._from_backend(*pgwire.read_message(self.backend))

    def _to_backend(self, data: bytes) -> None:
        self.backend.sendall(data)

    # --- client -> backend --------------------------------------------------------------------

    def _from_client(self, kind: bytes, body: bytes) -> bool:
        if kind == b"P":
            self._to_backend(self._on_parse(body))
            self.unsynced = True
        elif kind == b"B":
            self._to_backend(self._on_bind(body))
            self.unsynced = True
        elif kind == b"Q":
            out = self._on_query(body)
            self.pending += 1
            self._to_backend(out)
        elif kind == b"S":
            self.pending += 1
            self.unsynced = False
            self._to_backend(pgwire.message(kind, body))
        elif kind == b"C":
            if body[:1] == b"S":
                self.prepared.pop(body[1:-1].decode(), None)
            self.unsynced = True
            self._to_backend(pgwire.message(kind, body))
        elif kind == b"X":
            self._to_backend(pgwire.message(kind, body))
            return False
        else:
            if kind in (b"D", b"E", b"H"):
                self.unsynced = True
            self._to_backend(pgwire.message(kind, body))
        return True

    def _log(self, event: str, sql: str, rewritten: str) -> None:
        self.proxy.log.add(LoggedStatement(self.number, event, sql, rewritten))

    def _on_parse(self, body: bytes) -> bytes:
        name_end = body.index(b"\0")
        name = body[:name_end].decode()
        query_end = body.index(b"\0", name_end + 1)
        sql = body[name_end + 1 : query_end].decode()
        params = body[query_end + 1 :]
        prepared, rewritten = self._rewrite_one(sql)
        self.prepared[name] = prepared
        self._log("parse", sql, rewritten)
        return pgwire.message(b"P", pgwire.cstr(name) + pgwire.cstr(rewritten) + params)

    def _rewrite_one(self, sql: str) -> tuple[_Prepared, str]:
        """A prepared statement's text for PostgreSQL (a prepared statement holds one statement)."""
        try:
            statements = split_statements(sql)
        except SqlSyntaxError:
            return _Prepared(sql, "other"), sql  # PostgreSQL reports the syntax error
        if len(statements) != 1:
            return _Prepared(sql, "other"), sql  # PostgreSQL refuses several commands in one Parse
        tokens = statements[0]
        kind = statement_kind(tokens)
        if kind == "copy":
            try:
                cmd = ce.parse_copy(tokens)
            except ce.CopyError as exc:
                return _Prepared(sql, "copy_error"), _call_literal(exc.payload())
            return _Prepared(sql, "copy", cmd), COPY_CALL
        return _Prepared(sql, kind), rewrite_statement(tokens) if kind == "create_table" else sql

    def _on_bind(self, body: bytes) -> bytes:
        portal_end = body.index(b"\0")
        stmt_end = body.index(b"\0", portal_end + 1)
        name = body[portal_end + 1 : stmt_end].decode()
        prepared = self.prepared.get(name)
        if prepared is None:
            return pgwire.message(b"B", body)  # PostgreSQL reports the unknown statement
        self._log("execute", prepared.sql, "")
        delay = self.standin.statement_delay(prepared.sql)
        if delay and self.pending == 0 and not self.unsynced:
            self._hold(delay)
        if prepared.kind == "truncate":
            self._commit_before_truncate()
        if prepared.kind != "copy":
            return pgwire.message(b"B", body)
        payload = self._emulate_copy(prepared.copy)
        rest = _bind_result_formats(body, stmt_end + 1)
        value = json.dumps(payload, ensure_ascii=False).encode()
        new = (body[: stmt_end + 1] + struct.pack("!hh", 0, 1) + struct.pack("!i", len(value)) + value + rest)
        return pgwire.message(b"B", new)

    def _on_query(self, body: bytes) -> bytes:
        sql = body[:-1].decode()
        try:
            statements = split_statements(sql)
        except SqlSyntaxError:
            self._log("query", sql, sql)
            return pgwire.message(b"Q", body)
        kinds = [statement_kind(s) for s in statements]
        if "copy" in kinds:
            if len(statements) != 1:
                err = ce.CopyError("redshift stand-in: send a COPY as a statement of its own (not emulated inside "
                                   "a multi-statement query string)", sqlstate="0A000")
                rewritten = _call_literal(err.payload())
            else:
                try:
                    payload = self._emulate_copy(ce.parse_copy(statements[0]))
                except ce.CopyError as exc:
                    payload = exc.payload()
                rewritten = _call_literal(payload)
        else:
            parts = []
            for i, (tokens, kind) in enumerate(zip(statements, kinds)):
                if kind == "truncate":
                    if i == 0:
                        self._commit_before_truncate()
                    else:
                        parts.append("COMMIT")  # TRUNCATE commits the transaction it runs in
                parts.append(rewrite_statement(tokens))
            rewritten = ";".join(parts)
        self._log("query", sql, rewritten)
        return pgwire.query_message(rewritten)

    def _commit_before_truncate(self) -> None:
        # docs TRUNCATE: "commits the transaction in which it is run". In an aborted transaction the
        # TRUNCATE fails as it would anyway, so nothing is injected then.
        if self.txn_status == b"T" and self.pending == 0 and not self.unsynced:
            self._inject("COMMIT")

    # --- COPY ---------------------------------------------------------------------------------

    def _emulate_copy(self, cmd: ce.CopyCommand) -> dict:
        """The copy_apply payload for one execution of a COPY (an error payload when it must fail)."""
        if self.pending or self.unsynced:
            return ce.CopyError("redshift stand-in: a COPY must be executed as the first message after a Sync "
                                "(pipelined COPY is not emulated)", sqlstate="0A000").payload()
        rows, error = self._inject(_LOOKUP_SQL.format(table=quote_literal(cmd.table)))
        if error is not None:
            # Typically 25P02 (the transaction is aborted): the CALL then fails the same way.
            return ce.CopyError(error.get("M", "lookup failed"), sqlstate=error.get("C", "XX000")).payload()
        if not rows:
            return ce.CopyError(f'relation "{_unquote(cmd.table)}" does not exist', sqlstate="42P01").payload()
        query_id = int(rows[0][8])
        table = {"oid": int(rows[0][5]), "name": rows[0][6], "sql": rows[0][7]}
        columns = [ce.Column(r[0], r[1], r[2], int(r[3]), r[4] == "t") for r in rows if r[0] is not None]
        try:
            payload = ce.run_copy(cmd, table, columns, self.standin.s3(), self.user, self.standin.copy_settings(),
                                  query_id, self.standin.copy_delay_seconds)
        except ce.CopyError as exc:
            return exc.payload(query_id)
        except Exception as exc:  # a bug in the stand-in must not look like a Redshift answer
            return ce.CopyError(f"redshift stand-in internal error: {type(exc).__name__}: {exc}",
                                detail=traceback.format_exc(), sqlstate="XX000").payload()
        payload["source"] = cmd.source
        if not payload["failed"]:
            self.copy_tags.append(len(payload["rows"]))
        return payload

    def _hold(self, seconds: float) -> None:
        """Keep the client's backend busy (pg_sleep, in its transaction) before its statement runs, so a
        test can terminate the session mid-transaction. An error (the session terminated) reaches the
        client as the server sent it; the client's own messages then find the session gone."""
        self._to_backend(pgwire.query_message(f"SELECT pg_sleep({float(seconds)})"))
        while True:
            kind, body = pgwire.read_message(self.backend)
            if kind == b"E":
                self.client.sendall(pgwire.message(kind, _redshift_error(body)))
            elif kind == b"Z":
                self.txn_status = body[:1]
                return

    def _inject(self, sql: str) -> tuple[list[list[str | None]], dict | None]:
        """Run a simple query on the client's backend; its whole response is swallowed."""
        self._to_backend(pgwire.query_message(sql))
        rows: list[list[str | None]] = []
        error = None
        while True:
            kind, body = pgwire.read_message(self.backend)
            if kind == b"D":
                rows.append(_data_row_text(body))
            elif kind == b"E":
                error = pgwire.parse_fields(body)
            elif kind == b"Z":
                self.txn_status = body[:1]
                return rows, error

    # --- backend -> client --------------------------------------------------------------------

    def _from_backend(self, kind: bytes, body: bytes) -> None:
        if kind == b"S":
            body = _parameter_status(body)
        elif kind == b"K":
            self.backend_pid = struct.unpack("!i", body[:4])[0]
            for c in self.proxy.log.connections:
                if c["connection"] == self.number:
                    c["pid"] = self.backend_pid
        elif kind == b"E":
            body = _redshift_error(body)
        elif kind == b"C" and body == b"CALL\0" and self.copy_tags:
            body = f"COPY {self.copy_tags.pop(0)}".encode() + b"\0"
        elif kind == b"Z":
            self.pending = max(0, self.pending - 1)
            self.txn_status = body[:1]
            self.copy_tags.clear()
        self.client.sendall(pgwire.message(kind, body))


def _call_literal(payload: dict) -> str:
    return f"CALL redshift_standin_sys.copy_apply({quote_literal(json.dumps(payload, ensure_ascii=False))}::jsonb)"


def _unquote(table_sql: str) -> str:
    """'"public"."t"' (as parse_copy writes a table reference) -> 'public.t'."""
    return ".".join(p.replace('""', '"') for p in re.findall(r'"((?:[^"]|"")*)"', table_sql))


def _bind_result_formats(body: bytes, pos: int) -> bytes:
    """The tail of a Bind (result-column format codes), after its parameter formats and values."""
    nfmt = struct.unpack("!h", body[pos : pos + 2])[0]
    pos += 2 + 2 * nfmt
    nparams = struct.unpack("!h", body[pos : pos + 2])[0]
    pos += 2
    for _ in range(nparams):
        length = struct.unpack("!i", body[pos : pos + 4])[0]
        pos += 4 + max(length, 0)
    return body[pos:]


def _data_row_text(body: bytes) -> list[str | None]:
    count = struct.unpack("!h", body[:2])[0]
    pos, values = 2, []
    for _ in range(count):
        length = struct.unpack("!i", body[pos : pos + 4])[0]
        pos += 4
        values.append(None if length < 0 else body[pos : pos + length].decode())
        pos += max(length, 0)
    return values


def _parameter_status(body: bytes) -> bytes:
    key, value = body.split(b"\0")[:2]
    if key == b"server_version":
        m = re.match(rb"\d+(\.\d+)*", value)
        if m:
            value = m.group(0)
    return key + b"\0" + value + b"\0"


def _redshift_error(body: bytes) -> bytes:
    fields = pgwire.parse_fields(body)
    if fields.get("C") == "40001":
        original = fields.get("M", "")
        fields["M"] = "1023"
        fields["D"] = (f"Serializable isolation violation on table in Redshift (stand-in: PostgreSQL said "
                       f"\"{original}\"{': ' + fields['D'] if fields.get('D') else ''})")
        return pgwire.build_fields(fields)
    return body


def describe_error(exc: Any) -> str:
    """A redshift-connector error as one line: its message and SQLSTATE (for test assertions)."""
    arg = exc.args[0] if getattr(exc, "args", None) else exc
    if isinstance(arg, dict):
        return f"{arg.get('M', '')} [{arg.get('C', '')}] {arg.get('D', '')}".strip()
    return str(exc)
