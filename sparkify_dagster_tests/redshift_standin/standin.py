"""``RedshiftStandin``: PostgreSQL + the emulation schema + the TLS proxy, with test knobs and helpers.

    with RedshiftStandin(aws_endpoint_url=moto_url) as rs:
        os.environ.update(rs.env())            # REDSHIFT_HOST/PORT/DB/USER/PASSWORD, SSL_CERT_FILE
        conn = rs.connect()                    # the real redshift_connector, over TLS
        rs.admin("SELECT count(*) FROM stl_load_errors")
        rs.statements.count(r"^\\s*CREATE TABLE")

Knobs read at run time (set the attribute between statements): ``copy_delay_seconds``, ``serverless``
(new connections), ``json_line_number``, ``maxerror_rule``, ``check_iam_role``, ``check_bucket_region``.
``set_isolation()`` changes the isolation of new connections.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from sparkify_dagster_tests.redshift_standin import copy_emulation as ce
from sparkify_dagster_tests.redshift_standin.certs import make_certificates
from sparkify_dagster_tests.redshift_standin.proxy import Proxy, StatementLog
from sparkify_dagster_tests.redshift_standin.server import SUPERUSER, PostgresCluster
from sparkify_dagster_tests.redshift_standin.sql_rewrite import (
    quote_ident,
    quote_literal,
)

EMULATION_SQL = Path(__file__).with_name("emulation.sql")
ISOLATION = {"serializable": "serializable", "snapshot": "repeatable read", "read committed": "read committed"}
# Redshift's "snapshot isolation" is PostgreSQL's REPEATABLE READ for what this project needs.

REDSHIFT_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "redshift.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}


class RedshiftStandin:
    """A Redshift stand-in on 127.0.0.1:<port> for redshift-connector (TLS required by default).

    aws_endpoint_url: the moto server that COPY reads S3 from and checks IAM_ROLE against.
    isolation: "serializable" (default: Redshift's long-standing default), "snapshot" (PostgreSQL
        REPEATABLE READ) or "read committed".
    serverless: stl_/stv_/svl_ relations do not exist (sys_ views do), as on Redshift Serverless.
    json_line_number: "last" (docs: the last line of the JSON object) or "first" (the line it starts on).
    maxerror_rule: "more_than" (a COPY fails when rejects > MAXERROR) or "at_least" (the guide's
        wording: fails when rejects >= MAXERROR, and at the first reject for MAXERROR 0 or 1).
    """

    def __init__(self, aws_endpoint_url: str, *, database: str = "sparkify", user: str = "sparkify",
                 password: str = "Standin-Pa55word", isolation: str = "serializable", serverless: bool = False,
                 require_ssl: bool = True, json_line_number: str = "last", maxerror_rule: str = "more_than",
                 check_iam_role: bool = True, check_bucket_region: bool = True, region: str = "us-west-2",
                 copy_delay_seconds: float = 0.0, aws_access_key_id: str = "testing",
                 aws_secret_access_key: str = "testing", cluster: PostgresCluster | None = None):
        if isolation not in ISOLATION:
            raise ValueError(f"isolation must be one of {sorted(ISOLATION)}, not {isolation!r}")
        if json_line_number not in ("first", "last"):
            raise ValueError("json_line_number must be 'first' or 'last'")
        if maxerror_rule not in ("more_than", "at_least"):
            raise ValueError("maxerror_rule must be 'more_than' or 'at_least'")
        self.aws_endpoint_url = aws_endpoint_url
        self.database, self.user, self.password = database, user, password
        self.isolation = isolation
        self.serverless = serverless
        self.require_ssl = require_ssl
        self.json_line_number = json_line_number
        self.maxerror_rule = maxerror_rule
        self.check_iam_role = check_iam_role
        self.check_bucket_region = check_bucket_region
        self.region = region
        self.copy_delay_seconds = copy_delay_seconds
        # (text, seconds): a statement containing the text waits that long in the server first (pg_sleep
        # in the client's session and transaction), so a test can terminate it mid-transaction.
        self.statement_delays: list[tuple[str, float]] = []
        self.aws_access_key_id, self.aws_secret_access_key = aws_access_key_id, aws_secret_access_key
        self.host = "127.0.0.1"
        self.cluster = cluster or PostgresCluster()
        self._own_cluster = cluster is None
        self.proxy: Proxy | None = None
        self._s3: ce.S3Reader | None = None
        self._s3_lock = threading.Lock()
        self.certificates = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> RedshiftStandin:
        try:
            if not self.cluster.started:
                self.cluster.start()
            self.certificates = make_certificates(self.cluster.root / "tls")
            self._create_database()
            self.proxy = Proxy(self, self.certificates.server_context()).start()
        except BaseException:
            self.stop()  # never leave a postgres running behind a failed start
            raise
        return self

    def stop(self) -> None:
        if self.proxy:
            self.proxy.stop()
        if self._own_cluster:
            self.cluster.stop()

    def __enter__(self) -> RedshiftStandin:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _create_database(self) -> None:
        self.cluster.query(f"CREATE ROLE {quote_ident(self.user)} LOGIN PASSWORD {quote_literal(self.password)}")
        self.cluster.query(f"CREATE DATABASE {quote_ident(self.database)} OWNER {quote_ident(self.user)}")
        connstr = self.cluster.dblink_connstr(self.database) + " application_name=redshift_standin_log"
        sql = EMULATION_SQL.read_text().replace("@DBLINK_CONNSTR@", quote_literal(connstr))
        self.admin(sql)
        self.admin(f"ALTER DATABASE {quote_ident(self.database)} SET search_path = {self.search_path()}")
        self.set_isolation(self.isolation)

    # --- connection settings ------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.proxy.port

    @property
    def ca_file(self) -> str:
        return str(self.certificates.ca_file)

    @property
    def trust_bundle(self) -> str:
        """The stand-in's CA followed by the system CAs: what SSL_CERT_FILE should name."""
        return str(self.certificates.trust_bundle)

    @property
    def statements(self) -> StatementLog:
        return self.proxy.log

    def env(self) -> dict[str, str]:
        """Settings for the project (and subprocesses): REDSHIFT_* and SSL_CERT_FILE."""
        return {
            "REDSHIFT_HOST": self.host,
            "REDSHIFT_PORT": str(self.port),
            "REDSHIFT_DB": self.database,
            "REDSHIFT_USER": self.user,
            "REDSHIFT_PASSWORD": self.password,
            "SSL_CERT_FILE": self.trust_bundle,
        }

    def connect(self, **overrides: Any):
        """A redshift_connector connection as the stand-in's user (SSL_CERT_FILE must name trust_bundle)."""
        import redshift_connector

        kwargs = dict(host=self.host, port=self.port, database=self.database, user=self.user,
                      password=self.password, timeout=30)
        kwargs.update(overrides)
        return redshift_connector.connect(**kwargs)

    def search_path(self) -> str:
        # pg_catalog named after redshift_standin_sys: its Redshift-typed overloads (sum(bigint)) win.
        path = '"$user", public, redshift_standin_sys, pg_catalog'
        return path if self.serverless else path + ", redshift_standin_stl"

    # --- used by the proxy --------------------------------------------------------------------

    def s3(self) -> ce.S3Reader:
        with self._s3_lock:
            if self._s3 is None:
                self._s3 = ce.S3Reader(self.aws_endpoint_url, self.region, self.aws_access_key_id,
                                       self.aws_secret_access_key)
            return self._s3

    def copy_settings(self) -> ce.CopySettings:
        return ce.CopySettings(json_line_number=self.json_line_number, maxerror_rule=self.maxerror_rule,
                               check_iam_role=self.check_iam_role, check_bucket_region=self.check_bucket_region,
                               cluster_region=self.region)

    # --- helpers for tests --------------------------------------------------------------------

    def statement_delay(self, sql: str) -> float:
        """Seconds to hold the session before a statement containing a text in ``statement_delays``."""
        return max((seconds for text, seconds in list(self.statement_delays) if text in sql), default=0.0)

    def admin(self, sql: str) -> list[tuple]:
        """Superuser SQL in the stand-in's database (unix socket, not through the proxy, not logged)."""
        return self.cluster.query(sql, self.database)

    def set_isolation(self, isolation: str) -> None:
        """The default isolation of connections opened from now on."""
        if isolation not in ISOLATION:
            raise ValueError(f"isolation must be one of {sorted(ISOLATION)}, not {isolation!r}")
        self.isolation = isolation
        self.admin(f"ALTER DATABASE {quote_ident(self.database)} "
                   f"SET default_transaction_isolation = {quote_literal(ISOLATION[isolation])}")

    def backends(self) -> list[dict]:
        """The client sessions (through the proxy) with what each is running now."""
        rows = self.admin(
            "SELECT pid, usename, application_name, state, query, backend_start::text, xact_start::text "
            f"FROM pg_stat_activity WHERE datname = {quote_literal(self.database)} "
            f"AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
            f"AND coalesce(application_name, '') <> 'redshift_standin_log' "
            f"AND usename <> {quote_literal(SUPERUSER)} ORDER BY backend_start"
        )
        keys = ("pid", "user", "application_name", "state", "query", "backend_start", "xact_start")
        return [dict(zip(keys, r)) for r in rows]

    def terminate(self, pid: int) -> bool:
        return bool(self.admin(f"SELECT pg_terminate_backend({int(pid)})")[0][0])

    def load_errors(self) -> list[dict]:
        """Every logged reject (what stl_load_errors shows a superuser), oldest first."""
        rows = self.admin("SELECT query, session, filename, line_number, colname, err_code, err_reason, raw_line "
                          "FROM redshift_standin.load_errors ORDER BY query, filename, line_number")
        keys = ("query", "session", "filename", "line_number", "colname", "err_code", "err_reason", "raw_line")
        return [dict(zip(keys, r)) for r in rows]

    def grant_temporary_login(self, login: str, password: str, expiration: Any, db_user: str,
                              auto_create: bool) -> bool:
        """Redshift's side of temporary credentials (GetClusterCredentials, Serverless GetCredentials):
        ``login`` (``IAM:<user>``, ``IAMA:<user>``, ``IAMR:<role>``…) logs in with ``password`` until
        ``expiration`` and works as the database user ``db_user`` (a role whose default ``role`` is
        that user: what it creates, the user owns), or, when ``db_user`` is ``login`` itself (Serverless), as a
        user of its own. A user that does not exist is created only with ``auto_create``; otherwise
        nothing is granted and the login fails as it would on Redshift."""
        exists = bool(self.admin(f"SELECT 1 FROM pg_roles WHERE rolname = {quote_literal(db_user)}"))
        if not exists and not auto_create:
            return False
        user, name = quote_ident(db_user), quote_ident(login)
        until = quote_literal(expiration.isoformat() if hasattr(expiration, "isoformat") else str(expiration))
        login_exists = bool(self.admin(f"SELECT 1 FROM pg_roles WHERE rolname = {quote_literal(login)}"))
        if db_user == login:
            # Serverless maps an IAM identity to a database user of its own name (IAM:<user>,
            # IAMR:<role>), created on first sign-in with what PUBLIC may do on Redshift: create in public.
            verb = "ALTER" if login_exists else "CREATE"
            sql = [f"{verb} ROLE {name} LOGIN PASSWORD {quote_literal(password)} VALID UNTIL {until}",
                   f"GRANT USAGE, CREATE ON SCHEMA public TO {name}"]
        else:
            sql = [] if exists else [f"CREATE ROLE {user} NOLOGIN"]
            if login_exists:
                sql.append(f"ALTER ROLE {name} LOGIN PASSWORD {quote_literal(password)} VALID UNTIL {until}")
            else:
                sql.append(f"CREATE ROLE {name} LOGIN PASSWORD {quote_literal(password)} VALID UNTIL {until} "
                           f"IN ROLE {user}")
            sql.append(f"ALTER ROLE {name} SET role = {quote_literal(db_user)}")
        sql.append(f"GRANT CONNECT, TEMPORARY ON DATABASE {quote_ident(self.database)} TO {name}")
        self.admin("; ".join(sql))
        return True

    def temporary_logins(self) -> list[tuple]:
        """(login, valid until) of every temporary login granted so far."""
        return self.admin("SELECT rolname, rolvaliduntil::text FROM pg_roles WHERE rolname ~ '^IAM[A-Z]*:' "
                          "ORDER BY rolname")

    def create_copy_role(self, name: str = "standin-redshift-copy") -> str:
        """An IAM role in moto that trusts redshift.amazonaws.com (what IAM_ROLE must name); its ARN."""
        iam = self.s3().iam
        try:
            return iam.get_role(RoleName=name)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(REDSHIFT_TRUST_POLICY))[
                "Role"]["Arn"]

    def reset(self) -> None:
        """Drop every schema but the system's and the emulation's (public comes back empty, the user's),
        whoever made it (a temporary login's user too), and clear the logs of loads and statements."""
        schemas = [r[0] for r in self.admin(
            "SELECT nspname FROM pg_namespace WHERE nspname !~ '^(pg_|redshift_standin)' "
            "AND nspname <> 'information_schema'")]
        sql = [f"DROP SCHEMA {quote_ident(s)} CASCADE" for s in schemas]
        sql += [f"CREATE SCHEMA IF NOT EXISTS public AUTHORIZATION {quote_ident(self.user)}",
                "TRUNCATE redshift_standin.load_errors, redshift_standin.copies"]
        self.admin("; ".join(sql))
        self.statements.clear()


def apply_env(standin: RedshiftStandin, environ: dict | None = None) -> dict:
    """Put standin.env() into os.environ (or ``environ``); returns the previous values to restore."""
    target = os.environ if environ is None else environ
    previous = {k: target.get(k) for k in standin.env()}
    target.update(standin.env())
    return previous
