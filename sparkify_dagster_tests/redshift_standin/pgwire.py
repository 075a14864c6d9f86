"""PostgreSQL wire protocol (v3) pieces shared by the proxy and the admin client.

Only what the stand-in needs: reading and building messages, ErrorResponse fields, and a tiny
simple-query client (``SimpleClient``) for superuser work on the server's unix socket, so setup and
test helpers need no database driver besides the one under test.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 196608


class ConnectionClosed(Exception):
    """The peer closed the connection (or it broke) in the middle of a message."""


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError as exc:  # reset, TLS alert, closed under us
            raise ConnectionClosed(str(exc)) from exc
        if not chunk:
            raise ConnectionClosed("connection closed")
        buf += chunk
    return bytes(buf)


def read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    """One typed message: (type byte, body without the length)."""
    head = recv_exact(sock, 5)
    length = struct.unpack("!i", head[1:])[0]
    return head[:1], recv_exact(sock, length - 4)


def read_startup(sock: socket.socket) -> tuple[int, bytes]:
    """An untyped startup-phase packet: (code, rest of the body)."""
    length = struct.unpack("!i", recv_exact(sock, 4))[0]
    body = recv_exact(sock, length - 4)
    return struct.unpack("!i", body[:4])[0], body[4:]


def message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def cstr(text: str | bytes) -> bytes:
    return (text.encode() if isinstance(text, str) else text) + b"\0"


def split_cstrings(data: bytes) -> list[bytes]:
    return data.split(b"\0")


def startup_packet(params: dict[str, str]) -> bytes:
    body = struct.pack("!i", PROTOCOL_3)
    for key, value in params.items():
        body += cstr(key) + cstr(value)
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


def parse_startup_params(rest: bytes) -> dict[str, str]:
    parts = rest.split(b"\0")
    params = {}
    for i in range(0, len(parts) - 1, 2):
        if not parts[i]:
            break
        params[parts[i].decode()] = parts[i + 1].decode()
    return params


def parse_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse body -> {field code: value}."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def build_fields(fields: dict[str, str]) -> bytes:
    return b"".join(code.encode() + cstr(value) for code, value in fields.items()) + b"\0"


def error_response(message_text: str, sqlstate: str = "XX000", severity: str = "ERROR",
                   detail: str | None = None) -> bytes:
    fields = {"S": severity, "V": severity, "C": sqlstate, "M": message_text}
    if detail:
        fields["D"] = detail
    return message(b"E", build_fields(fields))


def query_message(sql: str) -> bytes:
    return message(b"Q", cstr(sql))


class PostgresError(Exception):
    """An ErrorResponse from the server, with its fields (``sqlstate``, ``fields``)."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        self.sqlstate = fields.get("C", "")
        super().__init__(f"{fields.get('M', '')} (SQLSTATE {self.sqlstate})")


_INT_OIDS = {20, 21, 23, 26}
_FLOAT_OIDS = {700, 701}


def _convert(oid: int, raw: bytes | None):
    if raw is None:
        return None
    text = raw.decode()
    if oid in _INT_OIDS:
        return int(text)
    if oid in _FLOAT_OIDS:
        return float(text)
    if oid == 16:
        return text == "t"
    return text


class SimpleClient:
    """A superuser session on the unix socket (trust auth): simple queries, rows as Python values."""

    def __init__(self, socket_dir: str, port: int, database: str, user: str = "postgres"):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(f"{socket_dir}/.s.PGSQL.{port}")
        self.sock.sendall(startup_packet({"user": user, "database": database, "client_encoding": "UTF8"}))
        self.backend_pid = None
        while True:
            kind, body = read_message(self.sock)
            if kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                raise PostgresError({"M": "admin connection asked for a password (expected trust on the socket)"})
            if kind == b"K":
                self.backend_pid = struct.unpack("!i", body[:4])[0]
            if kind == b"E":
                raise PostgresError(parse_fields(body))
            if kind == b"Z":
                break

    def query(self, sql: str) -> list[tuple]:
        """Run one or more statements; the rows of the last one that returned rows."""
        self.sock.sendall(query_message(sql))
        rows: list[tuple] = []
        oids: list[int] = []
        error = None
        while True:
            kind, body = read_message(self.sock)
            if kind == b"T":
                oids, rows = self._row_description(body), []
            elif kind == b"D":
                rows.append(self._data_row(body, oids))
            elif kind == b"E":
                error = PostgresError(parse_fields(body))
            elif kind == b"Z":
                break
        if error:
            raise error
        return rows

    @staticmethod
    def _row_description(body: bytes) -> list[int]:
        count = struct.unpack("!h", body[:2])[0]
        pos, oids = 2, []
        for _ in range(count):
            pos = body.index(b"\0", pos) + 1
            oids.append(struct.unpack("!i", body[pos + 6 : pos + 10])[0])
            pos += 18
        return oids

    @staticmethod
    def _data_row(body: bytes, oids: Iterable[int]) -> tuple:
        count = struct.unpack("!h", body[:2])[0]
        pos, values = 2, []
        oids = list(oids)
        for i in range(count):
            length = struct.unpack("!i", body[pos : pos + 4])[0]
            pos += 4
            raw = None if length < 0 else body[pos : pos + length]
            pos += max(length, 0)
            values.append(_convert(oids[i] if i < len(oids) else 25, raw))
        return tuple(values)

    def close(self) -> None:
        try:
            self.sock.sendall(message(b"X", b""))
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> SimpleClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
