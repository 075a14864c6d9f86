"""The Redshift binding without a cluster: rendered SQL parses, COPY options, settings, secrets, load flow."""

import logging
import textwrap

import dagster as dg
import pytest
import sqlglot
from sqlglot import exp

from sparkify_dagster.catalog import STAGING_EVENTS, STAGING_SONGS
from sparkify_dagster.cli import sql as sql_cli
from sparkify_dagster.definitions import build_defs
from sparkify_dagster.source import RawFile
from sparkify_dagster.warehouse import redshift
from sparkify_dagster.warehouse.base import TooManyLoadErrors
from sparkify_dagster.warehouse.redshift import RedshiftWarehouse, UnsafeValueError, copy_sql
from sparkify_dagster.warehouse.redshift_config import RedshiftConfigError, load_settings
from sparkify_dagster_tests.conftest import FakeS3Source

ARN = "arn:aws:iam::123456789012:role/sparkify-s3-read"
PASSWORD = "S3cret-Pa55word!"
ENV = {
    "REDSHIFT_HOST": "cluster.example.us-west-2.redshift.amazonaws.com",
    "REDSHIFT_DB": "sparkify",
    "REDSHIFT_USER": "etl",
    "REDSHIFT_PASSWORD": PASSWORD,
    "REDSHIFT_IAM_ROLE_ARN": ARN,
    "SPARKIFY_DATA_URI": "s3://sparkify-raw/prod",
    "AWS_REGION": "us-west-2",
}
LOG_FILES = [RawFile(f"log_data/2018/11/2018-11-0{d}-events.json", 1, "e") for d in (1, 2)]


def rendered(env, monkeypatch, capsys, files=LOG_FILES):
    for k in list(ENV) + ["SPARKIFY_DWH_CFG"]:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(sql_cli, "_log_files", lambda settings, notes, placeholders=(): files)
    assert sql_cli.main(["--target", "redshift"]) == 0
    return capsys.readouterr().out


def statements(text):
    body = "\n".join(line for line in text.splitlines() if not line.startswith("-- "))
    return [s.strip() for s in body.split(";\n") if s.strip()]


def test_every_rendered_statement_parses_under_the_redshift_grammar(monkeypatch, capsys):
    out = rendered(ENV, monkeypatch, capsys)
    stmts = statements(out)
    assert len(stmts) > 30
    for stmt in stmts:
        if stmt.rstrip(";") in ("BEGIN", "COMMIT") or stmt.startswith("LOCK "):  # sqlglot has no LOCK
            continue
        tree = sqlglot.parse_one(stmt.rstrip(";"), read="redshift", error_level=sqlglot.ErrorLevel.RAISE)
        assert not isinstance(tree, exp.Command), f"parsed only as an opaque command: {stmt[:80]}"


def test_rendered_sql_fills_real_settings_and_never_the_password(monkeypatch, capsys):
    out = rendered(ENV, monkeypatch, capsys)
    assert ARN in out and "s3://sparkify-raw/prod/log_data/2018/11/2018-11-01-events.json" in out
    assert "s3://sparkify-raw/prod/log_json_path.json" in out
    assert PASSWORD not in out
    assert "TRUNCATE" not in out.upper().replace("TRUNCATECOLUMNS", "")  # TRUNCATE commits on Redshift
    assert "TRUNCATECOLUMNS" not in out and "ACCEPTINVCHARS" not in out


def test_dwh_cfg_of_the_seed_projects_is_reused_unchanged(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "dwh.cfg"
    cfg.write_text(textwrap.dedent(f"""\
        [CLUSTER]
        HOST=seed.cluster.redshift.amazonaws.com
        DB_NAME=dev
        DB_USER=awsuser
        DB_PASSWORD={PASSWORD}
        DB_PORT=5439

        [IAM_ROLE]
        ARN='{ARN}'

        [S3]
        LOG_DATA='s3://udacity-dend/log_data'
        LOG_JSONPATH='s3://udacity-dend/log_json_path.json'
        SONG_DATA='s3://udacity-dend/song_data'
        """))
    env = {"SPARKIFY_DWH_CFG": str(cfg), "AWS_DEFAULT_REGION": "us-west-2"}
    settings = load_settings(env)
    assert (settings.host, settings.database, settings.user, settings.port) == (
        "seed.cluster.redshift.amazonaws.com", "dev", "awsuser", 5439)
    assert settings.iam_role_arn == ARN and settings.data_uri == "s3://udacity-dend"
    # The environment wins over the file.
    assert load_settings({**env, "REDSHIFT_HOST": "other.host"}).host == "other.host"
    out = rendered(env, monkeypatch, capsys)
    assert "-- manifest entry: s3://udacity-dend/log_data/2018/11/2018-11-01-events.json" in out
    assert PASSWORD not in out


def test_missing_settings_are_listed_in_one_error():
    with pytest.raises(RedshiftConfigError) as err:
        load_settings({"REDSHIFT_HOST": "h"})
    message = str(err.value)
    for name in ("REDSHIFT_DB", "REDSHIFT_USER", "REDSHIFT_PASSWORD", "REDSHIFT_IAM_ROLE_ARN",
                 "SPARKIFY_DATA_URI", "AWS_REGION"):
        assert name in message
    assert "REDSHIFT_HOST " not in message


def test_copy_options_golden():
    events = copy_sql("staging_events_load", ["artist", "ts"], "s3://bkt/p/log_data/2018/11/2018-11-01-events.json",
                      iam_role_arn=ARN, region="us-west-2", json_option="s3://bkt/p/log_json_path.json", max_errors=10)
    assert events == (
        'COPY "staging_events_load" ("artist", "ts")\n'
        "FROM 's3://bkt/p/log_data/2018/11/2018-11-01-events.json'\n"
        f"IAM_ROLE '{ARN}'\n"
        "FORMAT AS JSON 's3://bkt/p/log_json_path.json'\n"
        "REGION 'us-west-2'\nMAXERROR 10\nCOMPUPDATE OFF\nSTATUPDATE OFF"
    )
    songs = copy_sql("staging_songs_load", ["song_id"], "s3://bkt/p/_sparkify_manifests/staging_songs/r.manifest",
                     iam_role_arn=ARN, region="us-west-2", json_option="auto", manifest=True)
    assert songs.splitlines()[3:5] == ["FORMAT AS JSON 'auto'", "MANIFEST"]
    assert "MAXERROR 0" in songs


@pytest.mark.parametrize("uri", [
    "s3://bkt/p/log_data/2018/11/x'; DROP TABLE users; --.json",
    "s3://bkt/p/log_data/back\\slash.json",
    "s3://bkt/p/log_data/new\nline.json",
    "s3://B_AD/p.json",
])
def test_hostile_or_invalid_s3_keys_never_reach_sql(uri):
    with pytest.raises(UnsafeValueError):
        copy_sql("t", ["a"], uri, iam_role_arn=ARN, region="us-west-2", json_option="auto")


@pytest.mark.parametrize("arn, region", [(ARN + "' --", "us-west-2"), ("arn:aws:iam::12:role/x", "us-west-2"),
                                         (ARN, "us-west-2'; --")])
def test_arn_and_region_are_validated(arn, region):
    with pytest.raises(UnsafeValueError):
        copy_sql("t", ["a"], "s3://bkt/k.json", iam_role_arn=arn, region=region, json_option="auto")


def test_redshift_binding_uses_envvar_for_the_password(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    defs = build_defs("redshift")
    graph = defs.resolve_asset_graph()
    assert "redshift" in graph.get(dg.AssetKey("users")).kinds
    warehouse = defs.resources["warehouse"]
    assert isinstance(warehouse, RedshiftWarehouse)
    assert PASSWORD not in repr(warehouse)  # the config holds EnvVar('REDSHIFT_PASSWORD'), not the value


class FakeConnection:
    """Records statements; answers the few queries the loader makes."""

    def __init__(self, copy_counts, errors_by_copy, fail_on_copy=None):
        self.statements, self.copy_counts, self.errors_by_copy = [], list(copy_counts), list(errors_by_copy)
        self.fail_on_copy, self.copies, self.autocommit, self.closed = fail_on_copy, 0, False, False
        self.failed, self.last_rejects = False, []

    def cursor(self):
        return FakeCursor(self)

    def close(self):
        self.closed = True


class FakeCursor:
    def __init__(self, conn):
        self.conn, self.description, self.rows = conn, None, []

    def execute(self, sql, params=None):
        self.conn.statements.append((sql, params))
        self.description, self.rows = None, []
        conn = self.conn
        if sql.startswith("COPY"):
            conn.copies += 1
            if conn.copies == conn.fail_on_copy:
                conn.failed = True
                raise RuntimeError("Load into table failed. Check 'stl_load_errors' system table for details.")
        elif "pg_last_copy_count" in sql:
            self.description, self.rows = [("n",)], [(conn.copy_counts.pop(0),)]
        elif "COALESCE(MAX(query_id)" in sql or sql == "SELECT pg_last_copy_id()":
            self.description, self.rows = [("id",)], [(0,)]
        elif "FROM sys_load_error_detail" in sql:  # this COPY's rejects (a failed one's after the rollback)
            failed = [("s3://bkt/p/log_data/2018/11/2018-11-02-events.json", 7, "ts", "Invalid digit", "{}")]
            conn.last_rejects = failed if conn.failed else conn.errors_by_copy.pop(0)
            self.description = [("query_id",)]
            self.rows = [(conn.copies, *e[:4]) for e in conn.last_rejects]
        elif "FROM stl_load_errors" in sql:  # the raw lines of those rejects
            self.description = [("query",)]
            self.rows = [(conn.copies, e[0], e[1], e[4]) for e in conn.last_rejects]

    def fetchall(self):
        return self.rows

    def close(self):
        pass


def _warehouse(monkeypatch, conn, max_errors=10):
    import redshift_connector

    monkeypatch.setattr(redshift_connector, "connect", lambda **kwargs: conn)
    return RedshiftWarehouse(host="h", database="d", user="u", password=PASSWORD, iam_role_arn=ARN,
                             region="us-west-2", max_errors=max_errors)


def test_staging_load_is_one_transaction_with_one_copy_per_log_file(monkeypatch):
    bad = [("s3://bkt/p/log_data/2018/11/2018-11-02-events.json", 3, "status", "Invalid digit", '{"status":"x"}')]
    conn = FakeConnection(copy_counts=[15, 170], errors_by_copy=[[], bad])
    report = _warehouse(monkeypatch, conn).load_staging(STAGING_EVENTS, FakeS3Source(), LOG_FILES, "run-1",
                                                        logging.getLogger("t"))
    sqls = [s for s, _ in conn.statements]
    assert sqls[0].startswith("SELECT source_file, file_version FROM")  # the load manifest, read first
    sqls = sqls[1:]
    assert sqls[0] == "BEGIN" and sqls[-1] == "COMMIT" and "ROLLBACK" not in sqls
    assert sum(s.startswith("COPY") for s in sqls) == 2
    assert not any(s.upper().startswith("TRUNCATE") for s in sqls)
    assert (report.records_read, report.records_staged, report.records_rejected) == (186, 185, 1)
    inserts = [(s, p) for s, p in conn.statements if s.startswith('INSERT INTO "load_errors"')]
    # The file relative to the data root (stl_load_errors has the full URL), counted in its log file.
    key = "log_data/2018/11/2018-11-02-events.json"
    assert inserts and inserts[0][1][:5] == ["staging_events", key, *bad[0][1:4]]
    assert inserts[0][1][7] == key
    assert sqls[1] == 'LOCK "staging_events", "load_errors", "loaded_files"'  # before anything is read
    assert conn.autocommit is True and conn.closed


def test_songs_load_one_copy_from_a_manifest_of_every_file(monkeypatch):
    conn = FakeConnection(copy_counts=[3], errors_by_copy=[[]])
    source = FakeS3Source()
    files = [RawFile(f"song_data/A/A/A/TRAAA{i}.json", 1, "e") for i in range(3)]
    _warehouse(monkeypatch, conn).load_staging(STAGING_SONGS, source, files, "run-1", logging.getLogger("t"))
    copies = [s for s, _ in conn.statements if s.startswith("COPY")]
    assert len(copies) == 1 and "MANIFEST" in copies[0] and "FORMAT AS JSON 'auto'" in copies[0]
    (manifest,) = source.written.values()
    assert b'"mandatory": true' in manifest and b"s3://bkt/p/song_data/A/A/A/TRAAA2.json" in manifest


def test_a_copy_over_maxerror_rolls_back_and_keeps_the_rejects(monkeypatch):
    conn = FakeConnection(copy_counts=[15], errors_by_copy=[[]], fail_on_copy=2)
    with pytest.raises(TooManyLoadErrors, match="2018-11-02-events.json line 7 column ts"):
        _warehouse(monkeypatch, conn).load_staging(STAGING_EVENTS, FakeS3Source(), LOG_FILES, "run-1",
                                                   logging.getLogger("t"))
    sqls = [s for s, _ in conn.statements]
    assert "ROLLBACK" in sqls
    after = sqls[sqls.index("ROLLBACK"):]
    assert any(s.startswith('INSERT INTO "load_errors"') for s in after) and after[-1] == "COMMIT"


def test_connection_errors_never_carry_the_password(monkeypatch):
    import redshift_connector

    def refuse(**kwargs):
        raise redshift_connector.InterfaceError(f"auth failed for password {kwargs['password']}")

    monkeypatch.setattr(redshift_connector, "connect", refuse)
    wh = RedshiftWarehouse(host="h", database="d", user="u", password=PASSWORD, iam_role_arn=ARN, region="us-west-2")
    with pytest.raises(ConnectionError) as err:
        wh.query("SELECT 1")
    assert PASSWORD not in str(err.value) and err.value.__cause__ is None


def test_star_order_in_rendered_sql_respects_the_asset_graph():
    from sparkify_dagster.catalog import STAR_TABLES

    order = sql_cli.star_order()
    for table, deps in {t.name: t.built_from for t in STAR_TABLES}.items():
        for dep in deps:
            if dep in order:
                assert order.index(dep) < order.index(table)
    assert redshift.MANIFEST_PREFIX.endswith("/")


def test_unchanged_files_are_not_copied_again(monkeypatch):
    conn = FakeConnection(copy_counts=[], errors_by_copy=[])
    wh = _warehouse(monkeypatch, conn)
    monkeypatch.setattr(RedshiftWarehouse, "loaded_versions", lambda self, s, table: {f.key: f.version for f in LOG_FILES})
    report = wh.load_staging(STAGING_EVENTS, FakeS3Source(), LOG_FILES, "run-2", logging.getLogger("t"))
    assert report.files_unchanged == 2 and report.files == 0
    assert not any(s.startswith(("COPY", "BEGIN", "DELETE")) for s, _ in conn.statements)


def test_max_errors_counts_the_whole_load_not_each_copy(monkeypatch):
    """Six rejects in each of two files: each COPY is under MAXERROR 10, the load (12) is not, as on
    the embedded engine. Nothing is committed but the rejects of both files."""
    def bad(day):
        return [(f"s3://bkt/p/log_data/2018/11/2018-11-0{day}-events.json", n, "ts", "Invalid digit", "{}")
                for n in range(1, 7)]

    conn = FakeConnection(copy_counts=[10, 10], errors_by_copy=[bad(1), bad(2)])
    with pytest.raises(TooManyLoadErrors, match="rejected 12 records together, more than SPARKIFY_MAX_ERRORS=10"):
        _warehouse(monkeypatch, conn).load_staging(STAGING_EVENTS, FakeS3Source(), LOG_FILES, "run-1",
                                                   logging.getLogger("t"))
    sqls = [s for s, _ in conn.statements]
    rollback = sqls.index("ROLLBACK")
    assert "COMMIT" not in sqls[:rollback]
    kept = [p for s, p in conn.statements[rollback:] if s.startswith('INSERT INTO "load_errors"')]
    assert sorted({p[1] for p in kept}) == ["log_data/2018/11/2018-11-01-events.json",
                                            "log_data/2018/11/2018-11-02-events.json"]
    assert sum(len(p) for p in kept) == 12 * 8 and sqls[-1] == "COMMIT"
    assert not any(s.startswith('INSERT INTO "loaded_files"') for s in sqls[rollback:])
