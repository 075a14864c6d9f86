"""A throwaway PostgreSQL cluster: initdb, start, superuser queries on its unix socket, stop.

PostgreSQL refuses to run as root, so when the tests run as root (CI does) every server binary runs as
the ``postgres`` OS user (created by the Debian package) through ``runuser``, on a data directory it
owns. Durability is switched off (fsync, full_page_writes, synchronous_commit): the cluster lives for
one test module.

Authentication: ``md5`` for TCP connections (the proxy relays the client's password exchange, and
SCRAM fails inside redshift-connector 2.x), ``trust`` on the unix socket (setup, test helpers and the
autonomous dblink connection that writes the load-error log).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sparkify_dagster_tests.redshift_standin.pgwire import PostgresError, SimpleClient

SUPERUSER = "postgres"


class PostgresNotFound(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    """The directory holding initdb/pg_ctl/postgres: $SPARKIFY_PG_BINDIR, Debian's layout, or PATH."""
    candidates = [os.environ.get("SPARKIFY_PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    on_path = shutil.which("pg_ctl")
    candidates.append(str(Path(on_path).parent) if on_path else "")
    for c in candidates:
        if c and all((Path(c) / b).is_file() for b in ("initdb", "pg_ctl", "postgres")):
            return Path(c)
    raise PostgresNotFound(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found in $SPARKIFY_PG_BINDIR, "
        "/usr/lib/postgresql/*/bin or PATH; install the Debian package `postgresql`"
    )


def _version_key(path: str) -> float:
    try:
        return float(Path(path).parent.name)
    except ValueError:
        return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """One PostgreSQL server on 127.0.0.1:<port> (and a unix socket), for the life of a test module."""

    def __init__(self, bindir: Path | None = None, shared_buffers: str = "16MB", max_connections: int = 60):
        self.bindir = bindir or find_bindir()
        self.shared_buffers = shared_buffers
        self.max_connections = max_connections
        self.root = Path(tempfile.mkdtemp(prefix="rs-standin-"))
        self.datadir = self.root / "data"
        self.socket_dir = str(self.root)  # short: unix socket paths are limited to ~107 bytes
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        self.started = False

    # --- lifecycle ------------------------------------------------------------------------------

    def _run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        if self.as_postgres:
            cmd = ["runuser", "-u", SUPERUSER, "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)

    def start(self) -> PostgresCluster:
        if self.as_postgres:
            pw = pwd.getpwnam(SUPERUSER)  # KeyError: the Debian package was not installed
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        try:
            # --no-sync: nothing here needs to survive a crash; -U: the same superuser name as root's case.
            self._run(self.bindir / "initdb", "-D", self.datadir, "-U", SUPERUSER, "-A", "trust",
                      "-E", "UTF8", "--locale=C", "--no-sync")
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr or exc.stdout}") from None
        self._configure()
        try:
            self._run(self.bindir / "pg_ctl", "-D", self.datadir, "-l", self.root / "postgres.log",
                      "-w", "-t", "30", "start")
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"pg_ctl start failed: {exc.stderr or exc.stdout}\n{self.log_tail()}") from None
        self.started = True
        return self

    def _configure(self) -> None:
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": str(self.max_connections),
            "shared_buffers": f"'{self.shared_buffers}'",
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "off",
            "password_encryption": "md5",  # SCRAM fails inside redshift-connector 2.x
            "timezone": "'UTC'",  # Redshift sessions are UTC
            "log_min_messages": "warning",
            "max_pred_locks_per_transaction": "128",
        }
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write("\n# redshift stand-in\n")
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")
        (self.datadir / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all all 127.0.0.1/32 md5\n"
        )

    def stop(self) -> None:
        if self.started:
            try:
                self._run(self.bindir / "pg_ctl", "-D", self.datadir, "-m", "immediate", "-w", "stop")
            except subprocess.CalledProcessError:
                pass
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join((self.root / "postgres.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    # --- superuser access -----------------------------------------------------------------------

    def client(self, database: str = "postgres") -> SimpleClient:
        return SimpleClient(self.socket_dir, self.port, database, SUPERUSER)

    def query(self, sql: str, database: str = "postgres") -> list[tuple]:
        """Superuser SQL (one or more statements); the rows of the last statement."""
        with self.client(database) as c:
            return c.query(sql)

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.query("SELECT 1")
                return
            except (OSError, PostgresError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def dblink_connstr(self, database: str) -> str:
        """How a backend reaches this cluster as superuser for autonomous writes (socket, trust)."""
        return f"host={self.socket_dir} port={self.port} dbname={database} user={SUPERUSER}"
